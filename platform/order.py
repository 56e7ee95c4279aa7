"""Epoch order: a pure function of ``(seed, epoch)``, then split over ranks and workers.

The global order of an epoch never depends on the world size or the number of
DataLoader workers, so a run can stop and resume elsewhere with a different
world and still consume exactly the rest of the same sequence.

Order of an epoch (positions ``0..n-1`` of the units, in storage order):

* **block shuffle**: consecutive runs of ``block`` units are permuted as wholes
  (``block=1``: a uniform random permutation);
* **windowed shuffle**: each unit's position gets a uniform jitter in ``[0, window)``
  and the sequence is re-sorted by it. This is the deterministic equivalent of a
  shuffle buffer of ``window`` samples (every unit moves less than ``window``
  places), computed on the global sequence so that it is the same for every world.

Split: the remaining part ``order[start:]`` is made a multiple of the world size
(``pad``: repeat units from the start of the epoch order; ``drop``: cut the
tail), rank ``r`` takes every ``world_size``-th position from ``r``; inside a
rank, batch ``j`` (``batch`` consecutive rank positions) goes to worker
``j % num_workers``, which is the order in which ``torch.utils.data.DataLoader``
collects batches from its workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "ShuffleSpec",
    "draw_views",
    "epoch_order",
    "rank_positions",
    "shuffle_quality",
    "worker_batches",
]

_ORDER_STREAM = 0x0D3E
_VIEW_STREAM = 0x71E5
POLICIES = ("pad", "drop")


@dataclass(frozen=True)
class ShuffleSpec:
    """How an epoch's units are ordered."""

    enabled: bool = True
    """False: storage order (evaluation, debugging)."""
    block: int = 1
    """Units (patches, or views with ``every_view``) permuted together as one block."""
    window: int = 0
    """Extra windowed shuffle (the equivalent of a shuffle buffer of this many samples)."""

    def __post_init__(self) -> None:
        if self.block < 1 or self.window < 0:
            raise ValueError(f"shuffle block must be >= 1 and window >= 0, got {self.block}, {self.window}")


def epoch_order(n: int, *, seed: int, epoch: int, shuffle: ShuffleSpec = ShuffleSpec()) -> np.ndarray:
    """The global order of the ``n`` units of one epoch (a permutation of ``arange(n)``)."""
    idx = np.arange(n, dtype=np.int64)
    if not shuffle.enabled or n <= 1:
        return idx
    rng = np.random.default_rng([int(seed), int(epoch), _ORDER_STREAM])
    if shuffle.block == 1:
        order = rng.permutation(n).astype(np.int64)
    else:
        n_blocks = -(-n // shuffle.block)
        block_rank = rng.permutation(n_blocks)
        order = idx[np.lexsort((idx, block_rank[idx // shuffle.block]))]
    if shuffle.window > 1:
        key = np.arange(n, dtype=np.float64) + rng.uniform(0.0, float(shuffle.window), n)
        order = order[np.argsort(key, kind="stable")]
    return order


def draw_views(
    view_start: np.ndarray, view_count: np.ndarray, *, seed: int, epoch: int, pair: bool
) -> np.ndarray:
    """Views drawn for each patch in one epoch: shape ``(patches,)``, or ``(patches, 2)`` for pairs.

    Single: one view uniformly. Pair: two distinct views uniformly (the same view
    twice for a patch with a single view).
    """
    start = np.asarray(view_start, np.int64)
    count = np.asarray(view_count, np.int64)
    if np.any(count < 1):
        bad = int(np.flatnonzero(count < 1)[0])
        raise ValueError(f"patch {bad} has no views (patch_view_count={int(count[bad])})")
    rng = np.random.default_rng([int(seed), int(epoch), _VIEW_STREAM])
    u = rng.random((start.size, 2))
    first = np.minimum((u[:, 0] * count).astype(np.int64), count - 1)
    if not pair:
        return start + first
    other = np.minimum((u[:, 1] * np.maximum(count - 1, 1)).astype(np.int64), np.maximum(count - 2, 0))
    second = np.where(count > 1, other + (other >= first), first)
    return np.stack([start + first, start + second], axis=1)


def rank_positions(n: int, *, start: int, rank: int, world_size: int, policy: str = "pad") -> np.ndarray:
    """Positions in the epoch order that ``rank`` reads, from global position ``start`` on.

    Every rank gets the same count. ``pad`` repeats positions from the start of the
    epoch order to fill the last round; ``drop`` leaves out the incomplete last round.
    """
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    remaining = np.arange(min(max(int(start), 0), n), n, dtype=np.int64)
    m = remaining.size
    if policy == "pad":
        extra = (-m) % world_size
        if extra and n:
            remaining = np.concatenate([remaining, np.arange(extra, dtype=np.int64) % n])
    else:
        remaining = remaining[: m - m % world_size]
    return remaining[rank::world_size]


def worker_batches(n_local: int, *, batch: int, worker: int, num_workers: int) -> list[range]:
    """Ranges of rank-local positions that one worker yields, batch by batch, in order."""
    n_batches = -(-n_local // batch)
    return [range(j * batch, min((j + 1) * batch, n_local)) for j in range(worker, n_batches, num_workers)]


def shuffle_quality(storage_position: np.ndarray) -> float:
    """Spearman correlation between yield order and storage position (0: no trace of storage order).

    Args:
        storage_position: storage index (view or patch) of each sample, in the order yielded.
    """
    pos = np.asarray(storage_position, dtype=np.float64)
    if pos.size < 2:
        return 0.0
    ranks = np.empty(pos.size)
    ranks[np.argsort(pos, kind="stable")] = np.arange(pos.size)
    t = np.arange(pos.size, dtype=np.float64)
    return float(np.corrcoef(t, ranks)[0, 1])
