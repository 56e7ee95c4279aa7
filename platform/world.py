"""Who reads what: rank, world size and DataLoader worker, worked out in one place.

The stream never repeats this logic. Precedence for the distributed part:

1. explicit ``rank`` / ``world_size`` arguments;
2. an initialised ``torch.distributed`` process group;
3. the ``RANK`` / ``WORLD_SIZE`` environment variables (set by ``torchrun``);
4. a single process (rank 0 of 1).

The worker part comes from ``torch.utils.data.get_worker_info()`` in the
process that iterates (worker 0 of 1 in the main process).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["World", "detect_world"]


@dataclass(frozen=True)
class World:
    """Position of one iterating process among all readers of an epoch."""

    rank: int = 0
    """Distributed rank (one per training process / GPU)."""
    world_size: int = 1
    """Number of ranks."""
    worker: int = 0
    """DataLoader worker id inside the rank (0 in the main process)."""
    num_workers: int = 1
    """DataLoader workers of the rank (1 when iterating in the main process)."""

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not within a world of size {self.world_size}")
        if self.num_workers < 1 or not 0 <= self.worker < self.num_workers:
            raise ValueError(f"worker {self.worker} is not within {self.num_workers} workers")

    @property
    def global_worker(self) -> int:
        """Index of this worker among all ``world_size * num_workers`` readers."""
        return self.rank * self.num_workers + self.worker

    @property
    def total_workers(self) -> int:
        """All readers of the epoch: ranks times workers per rank."""
        return self.world_size * self.num_workers


def _distributed() -> tuple[int, int] | None:
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch without distributed support
        return None
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return None


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


def detect_world(*, rank: int | None = None, world_size: int | None = None) -> World:
    """Work out this process's place among the readers.

    Args:
        rank: explicit rank (overrides torch.distributed and the environment).
        world_size: explicit world size (given together with ``rank``).

    Returns:
        The :class:`World` of the calling process (and DataLoader worker, if any).
    """
    if (rank is None) != (world_size is None):
        raise ValueError("give both rank and world_size, or neither")
    if rank is None:
        found = _distributed()
        if found is None:
            env_rank, env_size = _env_int("RANK"), _env_int("WORLD_SIZE")
            found = (env_rank or 0, env_size or 1) if env_size is not None else (0, 1)
        rank, world_size = found
    worker, num_workers = 0, 1
    try:
        from torch.utils.data import get_worker_info
    except ImportError:  # pragma: no cover
        info = None
    else:
        info = get_worker_info()
    if info is not None:
        worker, num_workers = info.id, info.num_workers
    return World(rank=int(rank), world_size=int(world_size), worker=worker, num_workers=num_workers)
