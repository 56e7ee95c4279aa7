"""Naive versions of the overlap graph and the combinations, for tests and benchmarks.

Every pair of tiles is tested, one shapely call at a time; every tuple's
intersection is folded from its member footprints in sorted order, and the patch
test always uses the general (any-shape) erosion. Quadratic: only for small tables.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from spectralearth.pipelines.combinations import CombinationParams, erode_square
from spectralearth.pipelines.overlaps import centroid_lonlat, crosses_antimeridian, prepare_tiles

__all__ = ["naive_combinations", "naive_edges", "rectangles_frame"]


def _metric(geom) -> tuple[float, int, object]:
    if geom.is_empty or geom.area <= 0:
        return 0.0, 0, geom
    lon, lat = centroid_lonlat(np.array([geom], dtype=object))
    zone = min(60, max(1, int(np.floor((lon[0] + 180.0) / 6.0)) + 1))
    epsg = (32600 if lat[0] >= 0 else 32700) + zone
    tr = pyproj.Transformer.from_crs(4326, epsg, always_xy=True)
    geom = shapely.simplify(geom, 1e-10, preserve_topology=False)  # the definition: vertices on a straight WGS84 edge do not count
    utm = shapely.transform(geom, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
    if crosses_antimeridian(np.array([geom], dtype=object))[0]:
        utm = shapely.union_all(shapely.get_parts(utm), grid_size=1e-3)
    return float(utm.area), epsg, utm


def naive_edges(tiles: gpd.GeoDataFrame, *, min_area_m2: float = 1.0) -> pd.DataFrame:
    """All-pairs overlap edges: columns a, b, area_m2, utm_epsg, same_datatake, sorted by (a, b)."""
    prep = prepare_tiles(tiles).tiles
    rows = list(zip(prep["tile"], prep.geometry, prep["datatake"]))
    out = []
    for i in range(len(rows)):
        ta, ga, da = rows[i]
        for j in range(i + 1, len(rows)):
            tb, gb, db = rows[j]
            if not ga.intersects(gb):
                continue
            area, epsg, _ = _metric(ga.intersection(gb))
            if area > min_area_m2:
                out.append((min(ta, tb), max(ta, tb), area, epsg, da == db))
    df = pd.DataFrame(out, columns=["a", "b", "area_m2", "utm_epsg", "same_datatake"])
    df = df.astype({"a": "int64", "b": "int64", "area_m2": "float64", "utm_epsg": "int64", "same_datatake": "bool"})
    return df.sort_values(["a", "b"]).reset_index(drop=True)


def _holds_patch(utm, side: float) -> bool:
    if utm.area <= side * side:
        return False
    return erode_square(utm, side / 2.0).area > 1e-2


def naive_combinations(
    tiles: gpd.GeoDataFrame, edges: pd.DataFrame, *, params: CombinationParams = CombinationParams()
) -> pd.DataFrame:
    """Algorithm 1 seed by seed: columns members (tuple), n, area_m2, sorted by (n, members).

    With ``params.max_candidates`` a kept tuple is grown by the tiles that overlap all its
    members and whose pairs with them hold a 0.85 × side patch, the ``K`` with the largest
    smallest pair area (ties by row).
    """
    prep = prepare_tiles(tiles).tiles
    geom = dict(zip(prep["tile"], prep.geometry))
    e = edges[~edges["same_datatake"].to_numpy(dtype=bool)]
    adj: dict[int, set] = {}
    for a, b in zip(e["a"], e["b"]):
        if a in geom and b in geom:
            adj.setdefault(a, set()).add(b)
            adj.setdefault(b, set()).add(a)
    side = params.side_m
    cache: dict[tuple, tuple] = {}

    def evaluate(members: tuple) -> tuple[float, bool]:
        if members not in cache:
            g = geom[members[0]]
            for m in members[1:]:
                g = g.intersection(geom[m])
            area, _, utm = _metric(g)
            cache[members] = (area, area > side * side and _holds_patch(utm, side))
        return cache[members]

    pair_ok: dict[tuple, bool] = {}

    def pair_fits(a: int, b: int) -> bool:
        pair = tuple(sorted((a, b)))
        if pair not in pair_ok:
            pair_ok[pair] = _holds_patch(_metric(geom[pair[0]].intersection(geom[pair[1]]))[2], 0.85 * side)
        return pair_ok[pair]

    found: dict[tuple, float] = {}
    for seed in sorted(adj):
        pairs = [tuple(sorted((seed, t))) for t in adj[seed]]
        valid = [(evaluate(p)[0], p) for p in pairs if evaluate(p)[1]]
        for area, p in valid:
            found[p] = area
        n = 2
        while valid and (params.max_n is None or n < params.max_n):
            n += 1
            valid.sort(key=lambda r: (-round(r[0]), r[1]))
            grown = set()
            for _, members in valid[: params.beam]:
                cands = sorted(set.intersection(*(adj[m] for m in members)) - set(members))
                if params.max_candidates is not None:
                    cands = [c for c in cands if all(pair_fits(m, c) for m in members)]
                    score = {c: min(evaluate(tuple(sorted((m, c))))[0] for m in members) for c in cands}
                    cands = sorted(cands, key=lambda c: (-round(score[c]), c))[: params.max_candidates]
                for c in cands:
                    grown.add(tuple(sorted((*members, c))))
            valid = [(evaluate(t)[0], t) for t in grown if evaluate(t)[1]]
            valid.sort(key=lambda r: (-round(r[0]), r[1]))
            valid = valid[: params.beam]
            for area, t in valid:
                found[t] = area
    keys = sorted(found, key=lambda t: (len(t), t))
    return pd.DataFrame({"members": keys, "n": [len(t) for t in keys], "area_m2": [found[t] for t in keys]})


def rectangles_frame(specs) -> gpd.GeoDataFrame:
    """A tile table of rotated rectangles, for tests and benchmarks.

    Args:
        specs: sequence of ``(lon, lat, width_m, height_m, angle_deg, datatake)``;
            the rectangle is built in metres around its centre and mapped to WGS84
            with a local equirectangular approximation.

    Returns:
        Columns id (``T00000``...), enmap:datatake_id, enmap:tile_id (row), geometry.
    """
    geoms = []
    for lon, lat, w, h, angle, _ in specs:
        t = np.radians(angle)
        dx = np.array([-w, w, w, -w]) / 2.0
        dy = np.array([-h, -h, h, h]) / 2.0
        x = dx * np.cos(t) - dy * np.sin(t)
        y = dx * np.sin(t) + dy * np.cos(t)
        geoms.append(shapely.Polygon(np.column_stack([lon + x / (111_320.0 * np.cos(np.radians(lat))), lat + y / 110_574.0])))
    return gpd.GeoDataFrame(
        {
            "id": [f"T{i:05d}" for i in range(len(geoms))],
            "enmap:datatake_id": np.array([int(s[5]) for s in specs], dtype=np.int64),
            "enmap:tile_id": np.arange(len(geoms), dtype=np.int64),
        },
        geometry=gpd.GeoSeries(geoms, crs=4326).values,
        crs=4326,
    )
