"""Measure how fast a :class:`~spectralearth.platform.stream.PatchStream` delivers.

Used by ``spectralearth stream-bench`` and ``benchmarks/bench_stream.py``.
"""

from __future__ import annotations

import resource
import time
from dataclasses import asdict, dataclass

__all__ = ["Throughput", "measure_throughput"]


@dataclass(frozen=True)
class Throughput:
    """What one pass over (part of) a stream measured."""

    samples: int
    """Samples delivered."""
    seconds: float
    """Wall time from creating the loader to the last batch."""
    first_batch_s: float
    """Wall time from creating the loader to the first batch."""
    megabytes: float
    """Decoded image bytes delivered (MB, 10^6 bytes)."""
    cpu_seconds: float
    """CPU time of this process and its finished children (user + system)."""

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.megabytes / self.seconds if self.seconds > 0 else 0.0

    @property
    def samples_per_cpu_s(self) -> float:
        """Samples per CPU-second: the per-core throughput."""
        return self.samples / self.cpu_seconds if self.cpu_seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "samples_per_s": self.samples_per_s, "mb_per_s": self.mb_per_s,
                "samples_per_cpu_s": self.samples_per_cpu_s}


def _cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def measure_throughput(stream, *, num_workers: int = 0, max_batches: int | None = None,
                       multiprocessing_context: str | None = None) -> Throughput:
    """Iterate ``stream`` through a DataLoader and time it.

    Args:
        stream: a PatchStream (with or without ``batch_size``).
        num_workers: DataLoader worker processes (0: read in this process).
        max_batches: stop after this many items (None: the whole epoch).
        multiprocessing_context: ``fork``, ``spawn`` or ``forkserver`` (None: the default).
    """
    from torch.utils.data import DataLoader

    cpu0 = _cpu()
    t0 = time.perf_counter()
    loader = DataLoader(stream, batch_size=None, num_workers=num_workers,
                        multiprocessing_context=multiprocessing_context if num_workers else None)
    first = None
    samples = 0
    nbytes = 0
    for i, item in enumerate(loader):
        if first is None:
            first = time.perf_counter() - t0
        image = item["image"]
        samples += int(item["patch"].numel())
        nbytes += image.numel() * image.element_size()
        if max_batches is not None and i + 1 >= max_batches:
            break
    del loader  # joins the workers, so their CPU time is counted
    seconds = time.perf_counter() - t0
    return Throughput(samples=samples, seconds=seconds, first_batch_s=first or 0.0,
                      megabytes=nbytes / 1e6, cpu_seconds=_cpu() - cpu0)
