"""Train / validation / test splits of a label cube: seeded random, and spatially blocked.

Both are pure functions of the patch table and a seed (deterministic, same answer on
every machine). Split codes: 0 train, 1 validation, 2 test, -1 not in any split
(a dropped patch, or a guard patch of the blocked split).

The blocked split assigns whole blocks (``block_m`` squares of each patch's own UTM
grid) to the splits, in a seeded order, until each split holds its share of the
patches. Neighbouring patches in different blocks can still touch; every such pair
across two splits loses one member to the guard (-1): the train patch when the other
is validation or test, else the validation patch. Two patches count as neighbours when
their centres are closer than ``side * sqrt(2) * 1.01 + gap_m`` (squares farther apart
than that cannot touch, whatever their grids' rotation), measured as the chord between
the centres on the WGS84 ellipsoid, so pairs across UTM zones are found too.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

__all__ = ["SPLIT_NAMES", "blocked_split", "neighbour_pairs", "random_split"]

SPLIT_NAMES = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.75, 0.10, 0.15)


def _check_fractions(fractions) -> np.ndarray:
    f = np.asarray(fractions, dtype=float)
    if f.shape != (3,) or np.any(f < 0) or not math.isclose(float(f.sum()), 1.0, abs_tol=1e-6):
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {tuple(fractions)}")
    return f


def random_split(keep: np.ndarray, *, seed: int = 0, fractions=DEFAULT_FRACTIONS) -> np.ndarray:
    """SpectralEarth's random split: the kept patches in a seeded random order, cut at the fractions.

    Args:
        keep: bool per patch (False: not in any split).
        seed: permutation seed.
        fractions: train, validation, test shares.

    Returns:
        int8 split code per patch.
    """
    f = _check_fractions(fractions)
    keep = np.asarray(keep, bool)
    idx = np.flatnonzero(keep)
    order = idx[np.random.default_rng(seed).permutation(len(idx))]
    cuts = np.round(np.cumsum(f)[:2] * len(idx)).astype(int)
    out = np.full(keep.shape, -1, np.int8)
    out[order[: cuts[0]]] = 0
    out[order[cuts[0]: cuts[1]]] = 1
    out[order[cuts[1]:]] = 2
    return out


def _ecef(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    import pyproj

    t = pyproj.Transformer.from_crs(4326, 4978, always_xy=True)
    x, y, z = t.transform(np.asarray(lon, float), np.asarray(lat, float), np.zeros(len(lon)))
    return np.column_stack([x, y, z])


def neighbour_pairs(lon: np.ndarray, lat: np.ndarray, *, side_m: float, gap_m: float = 0.0) -> np.ndarray:
    """Pairs ``(i, j)``, ``i < j``, of patches that may touch or lie within ``gap_m`` of each other.

    Args:
        lon, lat: patch centres (WGS84).
        side_m: patch side in metres.
        gap_m: extra distance that still counts as neighbouring.

    Returns:
        ``(n_pairs, 2)`` int64 array.
    """
    from scipy.spatial import cKDTree

    if len(lon) < 2:
        return np.zeros((0, 2), np.int64)
    radius = side_m * math.sqrt(2.0) * 1.01 + gap_m
    return cKDTree(_ecef(lon, lat)).query_pairs(radius, output_type="ndarray").astype(np.int64)


def _block_rank(key: tuple, seed: int) -> int:
    h = hashlib.blake2b(repr((seed, *key)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little")


def blocked_split(
    keep: np.ndarray,
    *,
    crs: np.ndarray,
    x0: np.ndarray,
    y0: np.ndarray,
    lon: np.ndarray,
    lat: np.ndarray,
    side_m: float,
    block_m: float = 15360.0,
    gap_m: float = 0.0,
    seed: int = 0,
    fractions=DEFAULT_FRACTIONS,
) -> tuple[np.ndarray, int]:
    """A spatially blocked split in which no two neighbouring patches sit in different splits.

    Args:
        keep: bool per patch (False: not in any split).
        crs, x0, y0: each patch's EPSG code and upper-left corner (its grid).
        lon, lat: patch centres (WGS84), for neighbours across grids.
        side_m: patch side in metres.
        block_m: side of the blocks assigned as a whole.
        gap_m: patches closer than this (beyond touching) count as neighbours.
        seed: order of the blocks.
        fractions: train, validation, test shares (of the kept patches, before guards).

    Returns:
        (int8 split code per patch, number of guard patches taken out).
    """
    f = _check_fractions(fractions)
    keep = np.asarray(keep, bool)
    idx = np.flatnonzero(keep)
    out = np.full(keep.shape, -1, np.int8)
    if not len(idx):
        return out, 0
    bx = np.floor(np.asarray(x0, float)[idx] / block_m).astype(np.int64)
    by = np.floor(np.asarray(y0, float)[idx] / block_m).astype(np.int64)
    keys = list(zip(np.asarray(crs)[idx].tolist(), bx.tolist(), by.tolist(), strict=True))
    blocks: dict[tuple, list[int]] = {}
    for i, k in zip(idx.tolist(), keys, strict=True):
        blocks.setdefault(k, []).append(i)
    order = sorted(blocks, key=lambda k: (_block_rank(k, seed), k))
    targets = np.cumsum(f) * len(idx)
    done = 0
    split = 0
    for k in order:
        members = blocks[k]
        # move on once this split has its share (a block goes where it fits best)
        while split < 2 and done + len(members) / 2.0 > targets[split]:
            split += 1
        out[members] = split
        done += len(members)
    pairs = neighbour_pairs(np.asarray(lon)[idx], np.asarray(lat)[idx], side_m=side_m, gap_m=gap_m)
    guards = 0
    for a, b in idx[pairs] if len(pairs) else ():
        sa, sb = out[a], out[b]
        if sa < 0 or sb < 0 or sa == sb:
            continue
        drop = a if sa < sb else b  # the lower split code: train before validation
        out[drop] = -1
        guards += 1
    return out, guards
