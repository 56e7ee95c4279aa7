"""Splits: the seeded random 75/10/15 split, and the blocked split that leaks no neighbours."""

from __future__ import annotations

import numpy as np
import pyproj
import pytest
import shapely

from spectralearth.pipelines.splits import blocked_split, neighbour_pairs, random_split

SIDE = 3840.0


def _patch_field(n_side: int = 24, seed: int = 3):
    """Patches on 30 m grids of two UTM zones across 12 E, some touching, some overlapping, some apart."""
    rng = np.random.default_rng(seed)
    rows = []
    for epsg, lon0 in ((32632, 11.36), (32633, 12.02)):
        fwd = pyproj.Transformer.from_crs(4326, epsg, always_xy=True)
        bx, by = fwd.transform(lon0, 48.0)
        bx, by = np.floor(bx / 30) * 30, np.floor(by / 30) * 30
        for i in range(n_side):
            for j in range(n_side // 2):
                if rng.random() < 0.15:
                    continue  # holes
                step = SIDE * rng.choice([1.0, 1.0, 0.75, 1.5])  # touching, overlapping, apart
                rows.append((epsg, bx + j * SIDE * 1.1 + (step - SIDE), by - i * SIDE))
    crs = np.array([r[0] for r in rows])
    x0 = np.round(np.array([r[1] for r in rows]) / 30) * 30
    y0 = np.round(np.array([r[2] for r in rows]) / 30) * 30
    lon, lat = np.zeros(len(rows)), np.zeros(len(rows))
    for epsg in np.unique(crs):
        inv = pyproj.Transformer.from_crs(int(epsg), 4326, always_xy=True)
        s = crs == epsg
        lon[s], lat[s] = inv.transform(x0[s] + SIDE / 2, y0[s] - SIDE / 2)
    return crs, x0, y0, lon, lat


def _polygons_wgs84(crs, x0, y0):
    polys = []
    for epsg, x, y in zip(crs, x0, y0, strict=True):
        t = pyproj.Transformer.from_crs(int(epsg), 4326, always_xy=True)
        square = shapely.segmentize(shapely.box(x, y - SIDE, x + SIDE, y), 240.0)
        polys.append(shapely.transform(square, lambda xy, t=t: np.column_stack(t.transform(xy[:, 0], xy[:, 1]))))
    return np.array(polys)


def test_random_split_is_seeded_75_10_15_and_skips_dropped():
    keep = np.ones(1000, bool)
    keep[::10] = False
    a = random_split(keep, seed=5)
    assert np.array_equal(a, random_split(keep, seed=5))
    assert not np.array_equal(a, random_split(keep, seed=6))
    assert np.all(a[~keep] == -1)
    counts = np.bincount(a[keep], minlength=3)
    assert counts.tolist() == [675, 90, 135]
    with pytest.raises(ValueError, match="summing to 1"):
        random_split(keep, fractions=(0.8, 0.1, 0.2))


def test_blocked_split_has_no_neighbours_across_splits():
    crs, x0, y0, lon, lat = _patch_field()
    n = len(crs)
    keep = np.ones(n, bool)
    keep[::17] = False
    split, guards = blocked_split(keep, crs=crs, x0=x0, y0=y0, lon=lon, lat=lat, side_m=SIDE, block_m=4 * SIDE, seed=1)
    again, _ = blocked_split(keep, crs=crs, x0=x0, y0=y0, lon=lon, lat=lat, side_m=SIDE, block_m=4 * SIDE, seed=1)
    assert np.array_equal(split, again), "blocked split must be deterministic"
    assert np.all(split[~keep] == -1)
    counts = np.bincount(split[split >= 0], minlength=3)
    assert all(counts > 0), counts
    assert guards == int(((split == -1) & keep).sum()) and guards < 0.3 * keep.sum()
    # independent check: squares (densified, in WGS84) of different splits never touch or overlap
    polys = _polygons_wgs84(crs, x0, y0)
    tree = shapely.STRtree(polys)
    a, b = tree.query(polys, predicate="intersects")
    sa, sb = split[a], split[b]
    cross = (a != b) & (sa >= 0) & (sb >= 0) & (sa != sb)
    assert not cross.any(), f"{cross.sum()} touching pairs across splits, e.g. {a[cross][:3]}, {b[cross][:3]}"
    # the field really has touching pairs, across both zones, that a plain random split would leak
    touching = a != b
    assert touching.sum() > 100 and (crs[a[touching]] != crs[b[touching]]).any()
    rnd = random_split(keep, seed=1)
    assert ((rnd[a] != rnd[b]) & touching & (rnd[a] >= 0) & (rnd[b] >= 0)).any()


def test_neighbour_pairs_find_every_touching_pair():
    crs, x0, y0, lon, lat = _patch_field(n_side=10, seed=9)
    pairs = {tuple(p) for p in neighbour_pairs(lon, lat, side_m=SIDE).tolist()}
    polys = _polygons_wgs84(crs, x0, y0)
    a, b = shapely.STRtree(polys).query(polys, predicate="intersects")
    touching = {(int(i), int(j)) for i, j in zip(a, b, strict=True) if i < j}
    assert touching and touching <= pairs
