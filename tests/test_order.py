"""Epoch order, view draws, rank/worker split and world detection (pure functions, no I/O)."""

from __future__ import annotations

import numpy as np
import pytest

from spectralearth.platform.order import (
    ShuffleSpec,
    draw_views,
    epoch_order,
    rank_positions,
    shuffle_quality,
    worker_batches,
)
from spectralearth.platform.world import World, detect_world


def test_epoch_order_is_a_pure_function_of_seed_and_epoch():
    a = epoch_order(1000, seed=3, epoch=2)
    assert np.array_equal(a, epoch_order(1000, seed=3, epoch=2))
    assert np.array_equal(np.sort(a), np.arange(1000))
    assert not np.array_equal(a, epoch_order(1000, seed=3, epoch=3))
    assert not np.array_equal(a, epoch_order(1000, seed=4, epoch=2))
    assert np.array_equal(epoch_order(50, seed=1, epoch=0, shuffle=ShuffleSpec(enabled=False)), np.arange(50))


def test_shuffle_quality_separates_storage_order_from_shuffled():
    n = 20000
    assert shuffle_quality(np.arange(n)) == pytest.approx(1.0)
    assert abs(shuffle_quality(epoch_order(n, seed=0, epoch=0))) < 0.03
    blocky = epoch_order(n, seed=0, epoch=0, shuffle=ShuffleSpec(block=64, window=512))
    assert np.array_equal(np.sort(blocky), np.arange(n))
    assert abs(shuffle_quality(blocky)) < 0.05
    # within a block, consecutive units stay together apart from the window's mixing
    windowed_only = epoch_order(n, seed=0, epoch=0, shuffle=ShuffleSpec(block=n, window=100))
    assert np.max(np.abs(windowed_only - np.arange(n))) < 100


@pytest.mark.parametrize("world_size", [1, 2, 3, 7])
@pytest.mark.parametrize("start", [0, 5, 99])
def test_rank_positions_equal_counts_and_exact_cover(world_size, start):
    n = 101
    pad = [rank_positions(n, start=start, rank=r, world_size=world_size, policy="pad") for r in range(world_size)]
    drop = [rank_positions(n, start=start, rank=r, world_size=world_size, policy="drop") for r in range(world_size)]
    assert len({p.size for p in pad}) == 1 and len({p.size for p in drop}) == 1
    merged = np.concatenate(pad)
    remaining = np.arange(start, n)
    # every remaining position read; the padding repeats the start of the order
    assert set(merged.tolist()) >= set(remaining.tolist())
    assert merged.size - remaining.size == (-remaining.size) % world_size
    extra = np.sort(merged)[: merged.size - remaining.size] if start else None
    if start and merged.size > remaining.size:
        assert np.all(extra < world_size)
    dropped = np.sort(np.concatenate(drop))
    assert np.array_equal(dropped, remaining[: remaining.size - remaining.size % world_size])


def test_worker_batches_round_robin_cover_each_position_once():
    n, batch, workers = 23, 4, 3
    seen = []
    per_worker = [worker_batches(n, batch=batch, worker=w, num_workers=workers) for w in range(workers)]
    # the DataLoader takes one batch from each worker in turn
    for j in range(-(-n // batch)):
        seen.extend(per_worker[j % workers][j // workers])
    assert seen == list(range(n))


def test_draw_views_pairs_distinct_unless_single_date():
    start = np.array([0, 1, 4, 6])
    count = np.array([1, 3, 2, 5])
    seen = set()
    for epoch in range(60):
        pairs = draw_views(start, count, seed=0, epoch=epoch, pair=True)
        assert pairs.shape == (4, 2)
        assert pairs[0, 0] == pairs[0, 1] == 0
        for p in range(1, 4):
            a, b = pairs[p]
            assert a != b
            assert start[p] <= a < start[p] + count[p] and start[p] <= b < start[p] + count[p]
        seen.add(tuple(pairs[1]))
        single = draw_views(start, count, seed=0, epoch=epoch, pair=False)
        assert np.all((single >= start) & (single < start + count))
    assert seen == {(a, b) for a in (1, 2, 3) for b in (1, 2, 3) if a != b}


def test_detect_world_precedence(monkeypatch):
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert detect_world() == World(rank=2, world_size=4)
    assert detect_world(rank=0, world_size=3) == World(rank=0, world_size=3)
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert detect_world() == World()
    with pytest.raises(ValueError):
        detect_world(rank=1)
    with pytest.raises(ValueError):
        World(rank=3, world_size=3)
    w = World(rank=1, world_size=2, worker=2, num_workers=3)
    assert (w.global_worker, w.total_workers) == (5, 6)
