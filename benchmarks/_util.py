"""Shared helpers for the benchmark scripts: memory sampling, machine info, JSON results."""

from __future__ import annotations

import json
import os
import platform as _stdlib_platform
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil

RESULTS = Path(__file__).resolve().parent / "results"


class PeakRSS:
    """Sample the RSS of this process and all its children (e.g. dask workers) in a thread."""

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.peak_total = 0
        self.peak_single = 0
        self.peak_self = 0  # this process alone (the client of a dask job)
        self.peak_single_child = 0  # the largest child (a dask worker)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            single = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    rss = p.memory_info().rss
                except psutil.Error:
                    continue
                total += rss
                single = max(single, rss)
                if p is me:
                    self.peak_self = max(self.peak_self, rss)
                else:
                    self.peak_single_child = max(self.peak_single_child, rss)
            self.peak_total = max(self.peak_total, total)
            self.peak_single = max(self.peak_single, single)
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": _stdlib_platform.python_version(),
        "machine": _stdlib_platform.machine(),
    }


def write_result(name: str, result: dict) -> Path:
    """Write ``results/<name>.json`` with a timestamp and machine info."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": name, "when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(), **result}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


class Timer:
    def __enter__(self) -> "Timer":
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.t0
