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
    """CPU time of the reading processes (user + system): this process when it reads
    itself, the DataLoader workers otherwise."""
    consumer_cpu_seconds: float = 0.0
    """CPU time of this process while DataLoader workers read (0 when it reads itself)."""

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


def _cpu(who: int = resource.RUSAGE_SELF) -> float:
    """CPU seconds (user + system) of this process (all threads) or of its reaped children."""
    use = resource.getrusage(who)
    return use.ru_utime + use.ru_stime


class _WorkerCPU:
    """CPU seconds of a DataLoader iterator's worker processes, read at each batch.

    Read while the workers live: an exhausted worker exits before the loader is
    done, and a forkserver worker is not this process's child (``RUSAGE_CHILDREN``
    never sees it).
    """

    def __init__(self, batches) -> None:
        self.procs = list(getattr(batches, "_workers", None) or [])
        self.seen: dict[int, float] = {}

    def update(self) -> None:
        import psutil

        for w in self.procs:
            try:
                t = psutil.Process(w.pid).cpu_times()
            except (psutil.Error, ValueError, TypeError):
                continue
            self.seen[w.pid] = max(self.seen.get(w.pid, 0.0), t.user + t.system)

    @property
    def total(self) -> float | None:
        return sum(self.seen.values()) if self.seen else None


def measure_throughput(stream, *, num_workers: int = 0, max_batches: int | None = None,
                       multiprocessing_context: str | None = None, **dataloader_kwargs) -> Throughput:
    """Iterate ``stream`` through a DataLoader and time it.

    Args:
        stream: a PatchStream (with or without ``batch_size``).
        num_workers: DataLoader worker processes (0: read in this process).
        max_batches: stop after this many items (None: the whole epoch).
        multiprocessing_context: ``fork``, ``spawn`` or ``forkserver`` (None: the default).
        dataloader_kwargs: further DataLoader arguments (``pin_memory``, ``prefetch_factor``).
    """
    from torch.utils.data import DataLoader

    cpu0, kids0 = _cpu(), _cpu(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    loader = DataLoader(stream, batch_size=None, num_workers=num_workers,
                        multiprocessing_context=multiprocessing_context if num_workers else None,
                        **dataloader_kwargs)
    first = None
    samples = 0
    nbytes = 0
    batches = iter(loader)
    workers_cpu = _WorkerCPU(batches)
    for i, item in enumerate(batches):
        workers_cpu.update()
        if first is None:
            first = time.perf_counter() - t0
        image = item["image"]
        samples += int(item["patch"].numel())
        nbytes += image.numel() * image.element_size()
        if max_batches is not None and i + 1 >= max_batches:
            break
    workers_cpu.update()
    workers = workers_cpu.total
    del batches, loader  # joins the workers
    seconds = time.perf_counter() - t0
    own = _cpu() - cpu0
    if workers is None:
        workers = _cpu(resource.RUSAGE_CHILDREN) - kids0
    return Throughput(samples=samples, seconds=seconds, first_batch_s=first or 0.0, megabytes=nbytes / 1e6,
                      cpu_seconds=workers if num_workers else own, consumer_cpu_seconds=own if num_workers else 0.0)
