"""Temporal combinations (SpectralEarth's Algorithm 1): sets of tiles whose footprints share a patch.

For every seed tile the search starts from the seed's edges (pairs); n-tuples grow
from the (n−1)-tuples kept at the previous size by adding a tile that overlaps every
member; the intersection of each n-tuple is computed and the ``beam`` largest by
area are kept; the search for a seed stops at the first size where no tuple's
intersection can hold one patch. Rules:

- **Distinct acquisitions only.** Two tiles of one datatake (along-track neighbours,
  duplicate deliveries) never appear in one tuple: the adjacency used here leaves
  out same-datatake edges, so a grown tuple never holds two of them.
- **Patch test is a shape test.** A patch is ``patch_px × patch_px`` pixels of
  ``pixel_m`` (3.84 km for 128 px of 30 m), axis-aligned with the UTM grid. An
  intersection ``P`` (in the UTM zone of its centroid) holds one iff the erosion
  of ``P`` by the square ``[-h, h]²`` (``h`` = half the side) keeps a positive area
  (> 0.01 m²). For a convex ``P`` the erosion is exactly the intersection of ``P``
  translated by the square's four corners; otherwise it is ``P`` minus the union of
  every boundary segment dilated by the square (the convex hull of the segment
  moved to the four corners). Both are exact. (A negative ``buffer`` would erode by
  a disc, which accepts e.g. a 45°-rotated 5.4 km square that cannot hold a 3.84 km
  axis-aligned patch.)
- **Pruning (exact):** an intersection only shrinks as members are added, so the
  adjacency is first reduced to the pairs that hold a 0.85 × side patch themselves
  (the margin covers the rotation between neighbouring UTM zones' grids).
- **Pairs:** all pairs that hold a patch are kept; growth starts from the ``beam``
  largest pairs of the seed. For n ≥ 3 the ``beam`` largest n-tuples of each seed
  (that hold a patch) are kept and grown. Ranking is by area rounded to 1 m²
  (so that floating-point noise between two computations of one shape cannot flip
  ties), then by the sorted member rows.
- **Candidate bound (optional, changes the output).** With ``max_candidates = K`` a kept
  tuple is grown only by the ``K`` tiles whose smallest pair overlap with its members is
  largest (that overlap bounds the child's intersection from above; ties by row). The
  exact search grows every tuple by every tile that overlaps all its members, which on a
  place revisited k times costs ~k³ (see ``docs/scale.md``); the bound makes the work per
  seed and size at most ``beam × K``.
- **Canonical output.** Tuples are sorted member rows; a tuple reached from several
  seeds is kept once (the instance from the smallest seed); the output is sorted by
  (n, members), so it does not depend on how the work was partitioned.

Work is split into tasks of seed tiles, ordered by connected component and cut by
an estimate of their cost, so giant components are spread over several tasks and
small ones are bundled; every seed's search is independent of the others.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import asdict, dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from spectralearth.pipelines.overlaps import (
    connected_components,
    metric_geometry,
    output_base,
    prepare_tiles,
)
from spectralearth.platform.cluster import ClusterSpec, cluster_client

__all__ = [
    "CombinationParams",
    "CombinationReport",
    "combinations",
    "combinations_job",
    "fits_square",
]

COMBINATIONS_NAME = "combinations.parquet"
_MIN_ERODED_AREA = 1e-2


@dataclass(frozen=True)
class CombinationParams:
    """How combinations are searched."""

    beam: int = 16
    """n-tuples (n ≥ 3) kept per seed tile and size; also the pairs growth starts from."""
    patch_px: int = 128
    """Patch side in pixels."""
    pixel_m: float = 30.0
    """Pixel size in metres."""
    max_n: int | None = None
    """Largest tuple size searched (None: until no tuple holds a patch)."""
    max_candidates: int | None = None
    """Tiles a kept tuple is grown by, those with the largest smallest pair overlap with its
    members (None: every tile that overlaps all its members, the exact search)."""

    def __post_init__(self) -> None:
        if self.beam < 1:
            raise ValueError(f"beam must be at least 1, not {self.beam}")
        if self.patch_px < 1 or self.pixel_m <= 0:
            raise ValueError("patch_px and pixel_m must be positive")
        if self.max_n is not None and self.max_n < 2:
            raise ValueError("max_n must be at least 2")
        if self.max_candidates is not None and self.max_candidates < 1:
            raise ValueError(f"max_candidates must be at least 1, not {self.max_candidates}")

    @property
    def side_m(self) -> float:
        """Patch side in metres."""
        return self.patch_px * self.pixel_m


# --------------------------------------------------------------------------- the patch test


def _shift(geoms: np.ndarray, dx: float, dy: float) -> np.ndarray:
    return shapely.transform(geoms, lambda xy: xy + np.array([dx, dy]))


def _erode_convex(parts: np.ndarray, h: float) -> np.ndarray:
    """Erosion of convex polygons by ``[-h, h]²``: by a horizontal, then a vertical segment.

    For a convex set, the erosion by a segment is the intersection of the set moved
    to the segment's two ends.
    """
    ex = shapely.intersection(_shift(parts, h, 0.0), _shift(parts, -h, 0.0))
    return shapely.intersection(_shift(ex, 0.0, h), _shift(ex, 0.0, -h))


def erode_square(poly, h: float):
    """Erosion of a (multi)polygon by the square ``[-h, h]²``, exact for any shape."""
    segs = []
    for ring in [poly.exterior, *poly.interiors] if poly.geom_type == "Polygon" else []:
        xy = np.asarray(ring.coords)
        segs.append(np.stack([xy[:-1], xy[1:]], axis=1))
    if poly.geom_type == "MultiPolygon":
        return shapely.union_all([erode_square(p, h) for p in poly.geoms])
    if not segs:
        return shapely.Polygon()
    seg = np.concatenate(segs)  # (k, 2 endpoints, 2)
    corners = np.array([[h, h], [h, -h], [-h, h], [-h, -h]])
    pts = (seg[:, :, None, :] + corners[None, None, :, :]).reshape(len(seg), 8, 2)
    hulls = shapely.convex_hull(shapely.multipoints(pts))
    return shapely.difference(poly, shapely.union_all(hulls))


def fits_square(geoms_utm, side_m: float) -> np.ndarray:
    """True where a metric (multi)polygon can hold an axis-aligned square of side ``side_m``."""
    geoms = np.asarray(geoms_utm, dtype=object)
    n = len(geoms)
    if n == 0:
        return np.zeros(0, dtype=bool)
    h = side_m / 2.0
    parts, idx = shapely.get_parts(geoms, return_index=True)
    ok = np.zeros(len(parts), dtype=bool)
    if len(parts):
        b = shapely.bounds(parts)
        big = (b[:, 2] - b[:, 0] > side_m) & (b[:, 3] - b[:, 1] > side_m) & (shapely.area(parts) > side_m**2)
        area = shapely.area(parts)
        hull = shapely.area(shapely.convex_hull(parts))
        convex = big & (np.abs(hull - area) <= 1e-9 * np.maximum(area, 1.0)) & (shapely.get_num_interior_rings(parts) == 0)
        # quick accept: the patch centred on the part's centroid lies strictly inside it
        c = shapely.centroid(parts[big])
        cx, cy = shapely.get_x(c), shapely.get_y(c)
        centred = shapely.box(cx - h, cy - h, cx + h, cy + h)
        ok[big] = shapely.contains_properly(parts[big], centred)
        convex &= ~ok
        if convex.any():
            ok[convex] = shapely.area(_erode_convex(parts[convex], h)) > _MIN_ERODED_AREA
        rest = np.flatnonzero(big & ~convex & ~ok)
        if len(rest):
            # Nearly convex parts (intersections of simplified outlines with a few tiny dents): the
            # square centred in the eroded convex hull is tried first, and accepted only if the part
            # itself contains it; the exact erosion (a union of one hull per edge, ~15x slower) runs
            # for the parts where that fails.
            eroded = _erode_convex(shapely.convex_hull(parts[rest]), h)
            has = shapely.area(eroded) > _MIN_ERODED_AREA
            if has.any():
                p = shapely.centroid(eroded[has])  # inside: the eroded hull is convex
                px, py = shapely.get_x(p), shapely.get_y(p)
                ok[rest[has]] = shapely.contains(parts[rest[has]], shapely.box(px - h, py - h, px + h, py + h))
            for i in rest[has & ~ok[rest]]:
                ok[i] = shapely.area(erode_square(parts[i], h)) > _MIN_ERODED_AREA
    out = np.zeros(n, dtype=bool)
    np.logical_or.at(out, idx, ok)
    return out


# --------------------------------------------------------------------------- the search


def _rank_key(area: float, members: tuple) -> tuple:
    return (-round(area), members)


def _measure(inter: np.ndarray, side_m: float):
    """Metric form, zone, area and patch test of WGS84 intersections."""
    utm, epsg, area = metric_geometry(inter)
    fits = np.zeros(len(inter), dtype=bool)
    cand = area > side_m**2
    if cand.any():
        fits[cand] = fits_square(utm[cand], side_m)
    return utm, epsg, area, fits


def _evaluate(left, right, side_m: float):
    """Intersections of geometry pairs, their metric form, area and patch test."""
    inter = shapely.intersection(np.asarray(left, dtype=object), np.asarray(right, dtype=object))
    return (inter, *_measure(inter, side_m))


def _bounded(common, score: dict, k: int) -> list:
    """The ``k`` tiles of ``common`` with the largest ``score`` (ties by row), sorted."""
    cands = sorted(common)
    if len(cands) <= k:
        return cands
    return sorted(sorted(cands, key=lambda c: (-round(score[c]), c))[:k])


def search_seeds(seeds, geom: dict, adj: dict, params: CombinationParams, work: dict | None = None,
                 pair_area: dict | None = None) -> list[tuple]:
    """Algorithm 1 for a batch of seed tiles, all seeds advanced one size at a time.

    Args:
        seeds: seed tile rows.
        geom: tile row -> WGS84 footprint, for the seeds and all their neighbours.
        adj: tile row -> frozenset of neighbours (distinct datatakes only).
        params: search parameters.
        work: if given, counts the intersections computed per tuple size (``{n: count}``).
        pair_area: ``(a, b) -> area`` (a < b) of every pair in ``adj``; needed when
            ``params.max_candidates`` is set.

    Returns:
        Records ``(members, seed, area_m2, utm_epsg, geom_wgs84, geom_utm)``.
    """
    side = params.side_m
    bound = params.max_candidates
    if bound is not None and pair_area is None:
        raise ValueError("max_candidates needs the pair areas (pair_area)")
    out: list[tuple] = []
    # size 2: every pair of the seed, computed as geom[min] ∩ geom[max]
    keys, left, right = [], [], []
    for s in seeds:
        for t in sorted(adj.get(s, ())):
            a, b = (s, t) if s < t else (t, s)
            keys.append((s, (a, b)))
            left.append(geom[a])
            right.append(geom[b])
    frontier: dict = {}
    if work is not None and keys:
        work[2] = work.get(2, 0) + len(keys)
    if keys:
        inter, utm, epsg, area, fits = _evaluate(left, right, side)
        for i in np.flatnonzero(fits):
            s, members = keys[i]
            out.append((members, s, area[i], epsg[i], inter[i], utm[i]))
            frontier.setdefault(s, []).append((members, inter[i], area[i], None))
    n = 2

    def area_of(x: int, y: int) -> float:
        return pair_area[(x, y) if x < y else (y, x)]

    while frontier and (params.max_n is None or n < params.max_n):
        n += 1
        keys, left, right, origin = [], [], [], []
        for s, level in frontier.items():
            level.sort(key=lambda r: _rank_key(r[2], r[0]))
            seen = set()
            for members, g, _, info in level[: params.beam]:
                if info is None:  # a pair: what overlaps both members (and, bounded, the smaller pair area)
                    x, y = members
                    common = (adj[x] & adj[y]) - {x, y}
                    score = {c: min(area_of(x, c), area_of(y, c)) for c in common} if bound is not None else None
                else:
                    common, score = info
                for c in (sorted(common) if bound is None else _bounded(common, score, bound)):
                    child = tuple(sorted((*members, c)))
                    if child in seen:
                        continue
                    seen.add(child)
                    keys.append((s, child))
                    left.append(g)
                    right.append(geom[c])
                    origin.append((common, score, c))
        frontier = {}
        if not keys:
            break
        if work is not None:
            work[n] = work.get(n, 0) + len(keys)
        inter, utm, epsg, area, fits = _evaluate(left, right, side)
        for i in np.flatnonzero(fits):
            s, members = keys[i]
            frontier.setdefault(s, []).append((members, inter[i], area[i], i))
        for s, level in frontier.items():
            level.sort(key=lambda r: _rank_key(r[2], r[0]))
            del level[params.beam :]
            for j, (members, g, a, i) in enumerate(level):
                out.append((members, s, area[i], epsg[i], inter[i], utm[i]))
                # the child's candidates: its parent's that also overlap the added tile (the same set
                # whichever parent reached it), and their smallest pair area with its members
                common, score, c = origin[i]
                child_common = (common & adj[c]) - {c}
                child_score = {x: min(score[x], area_of(c, x)) for x in child_common} if bound is not None else None
                level[j] = (members, g, a, (child_common, child_score))
    return out


def _task_tiles(geo: tuple, local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Footprints and ids of a task's tiles (``local``, sorted): shipped as WKB, or read from the planning copy."""
    if geo[0] == "wkb":
        _, wkb, ids = geo
        return shapely.from_wkb(wkb), np.asarray(ids, dtype=object)
    from spectralearth.pipelines.overlaps import read_planning_tiles

    _, urls, storage_options = geo
    frame = read_planning_tiles(urls, local, storage_options=storage_options)
    return np.asarray(frame.geometry.values, dtype=object), frame["id"].astype(str).to_numpy(dtype=object)


def _run_task(payload: tuple, params: CombinationParams) -> tuple[pd.DataFrame, dict[int, int], pd.Series]:
    """One task: the search of its seeds; returns the records, the work per size and the ids of its tiles."""
    seeds, local, geo, local_edges, local_areas = payload
    geoms, ids = _task_tiles(geo, local)
    geom = dict(zip(local.tolist(), geoms))
    adj: dict[int, set] = {t: set() for t in local.tolist()}
    for a, b in local_edges.tolist():
        adj[a].add(b)
        adj[b].add(a)
    fadj = {k: frozenset(v) for k, v in adj.items()}
    pair_area = None
    if local_areas is not None:
        lo, hi = np.minimum(local_edges[:, 0], local_edges[:, 1]), np.maximum(local_edges[:, 0], local_edges[:, 1])
        pair_area = dict(zip(zip(lo.tolist(), hi.tolist()), local_areas.tolist()))
    work: dict[int, int] = {}
    recs = search_seeds(seeds.tolist(), geom, fadj, params, work, pair_area)
    return _records_frame(recs), work, pd.Series(ids, index=local)


def _records_frame(recs: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "members": [r[0] for r in recs],
            "seed": np.array([r[1] for r in recs], dtype=np.int64),
            "area_m2": np.array([r[2] for r in recs], dtype=float),
            "utm_epsg": np.array([r[3] for r in recs], dtype=np.int64),
            "wkb": shapely.to_wkb(np.array([r[4] for r in recs], dtype=object)) if recs else [],
            "geometry_utm": shapely.to_wkb(np.array([r[5] for r in recs], dtype=object)) if recs else [],
        }
    )


def plan_tasks(seeds: np.ndarray, comp: np.ndarray, degree: np.ndarray, *, beam: int, n_tasks: int) -> list[np.ndarray]:
    """Cut the seeds (ordered by component, then row) into about ``n_tasks`` chunks of similar cost.

    The cost of a seed is estimated as ``1 + d·min(d, beam)`` for its degree ``d``:
    a giant component is split across tasks, small components share one.
    """
    if len(seeds) == 0:
        return []
    order = np.lexsort((seeds, comp[seeds]))
    seeds = seeds[order]
    d = degree[seeds].astype(float)
    cost = 1.0 + d * np.minimum(d, beam)
    target = cost.sum() / max(1, n_tasks)
    cut = np.floor(np.cumsum(cost) / target - 1e-9).astype(np.int64)
    return [seeds[cut == k] for k in np.unique(cut)]


PAIR_SIDE = 0.85
"""A pair is kept for the search if its intersection holds a square of this × the patch side.

A tuple holds a patch only if each of its pairs does, and a tuple may be measured in the
next UTM zone, whose grid is rotated by a few degrees (a side-s square rotated by θ ≤ 8°
contains an axis-aligned square of side s / (cos θ + sin θ) > 0.87 s)."""


def _pairs_from_tiles(tiles: gpd.GeoDataFrame, edges: pd.DataFrame, params: CombinationParams):
    """The pair test in this process, from a tile table and its edges.

    Returns:
        ``(n, a, b, pair_area, geometry_of)``: rows in the table, the pairs that hold a
        0.85-side patch and their areas, and a function giving a task's tile payload.
    """
    prepared = prepare_tiles(tiles)
    n = prepared.n_tiles
    usable = np.zeros(n, dtype=bool)
    usable[prepared.tiles["tile"].to_numpy()] = True
    if len(edges):
        e = edges[~edges["same_datatake"].to_numpy(dtype=bool)] if "same_datatake" in edges else edges
        a = e["a"].to_numpy(dtype=np.int64)
        b = e["b"].to_numpy(dtype=np.int64)
        if len(a) and (max(a.max(), b.max()) >= n or min(a.min(), b.min()) < 0):
            raise ValueError(f"edges refer to tile rows outside the table of {n} tiles")
        keep = usable[a] & usable[b] & (a != b)
        a, b = a[keep], b[keep]
    else:
        a = b = np.zeros(0, dtype=np.int64)
    geoms_all = np.empty(n, dtype=object)
    geoms_all[prepared.tiles["tile"].to_numpy()] = np.asarray(prepared.tiles.geometry.values, dtype=object)
    if len(a):
        _, _, _, pair_area, fits = _evaluate(geoms_all[np.minimum(a, b)], geoms_all[np.maximum(a, b)], PAIR_SIDE * params.side_m)
        a, b, pair_area = a[fits], b[fits], pair_area[fits]
    else:
        pair_area = np.zeros(0)
    ids = tiles["id"].astype(str).to_numpy()
    return n, a, b, pair_area, lambda local: ("wkb", shapely.to_wkb(geoms_all[local]), ids[local])


def _compute(tasks: list, client) -> list:
    """Results of dask ``tasks``: on ``client``, else in this process (threads when there are several)."""
    import dask

    if client is not None:
        return client.gather(client.compute(tasks))
    return list(dask.compute(*tasks, scheduler="threads" if len(tasks) > 1 else "sync"))


def _pair_test_part(url: str, side_m: float, storage_options) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One task: the edges of one part of the graph (distinct datatakes) whose intersection holds a square of ``side_m``.

    The intersection is the one the overlaps job stored (the same simplified footprints,
    intersected in the same order), so the test equals :func:`_pairs_from_tiles`'.
    """
    from spectralearth.platform import tables

    part = tables.read_part(url, columns=["a", "b", "same_datatake", "geometry"], storage_options=storage_options, geo=False)
    part = part[~part["same_datatake"].to_numpy(dtype=bool)]
    a, b = part["a"].to_numpy(dtype=np.int64), part["b"].to_numpy(dtype=np.int64)
    if not len(a):
        return a, b, np.zeros(0)
    _, _, area, fits = _measure(shapely.from_wkb(part["geometry"].to_numpy()), side_m)
    keep = fits & (a != b)
    return a[keep], b[keep], area[keep]


def _pairs_from_graph(base: str, params: CombinationParams, storage_options, client):
    """The pair test as tasks over the graph's parts; tiles come from the overlaps job's planning copy.

    This process reads the per-tile components file (integers) and receives the pairs that
    pass; it never reads a footprint.

    Returns:
        As :func:`_pairs_from_tiles`; a task's payload names the planning parts holding its tiles.

    Raises:
        FileNotFoundError: the graph, its components or its planning copy is missing.
    """
    import dask
    from pyarrow import ArrowInvalid

    from spectralearth.pipelines.overlaps import COMPONENTS_NAME, EDGES_NAME, PLANNING_TILES_NAME
    from spectralearth.platform import storage, tables

    edges_url = storage.join(base, EDGES_NAME)
    planning_url = storage.join(base, PLANNING_TILES_NAME)
    comps_url = storage.join(base, COMPONENTS_NAME)
    for what, url in (("overlap graph", edges_url), ("planning copy of the tiles", planning_url)):
        if not tables.exists(url, storage_options):
            raise FileNotFoundError(f"no {what} at {storage.redact(url)}: run `spectralearth overlaps` first")
    try:
        comps = pd.read_parquet(io.BytesIO(storage.read_bytes(comps_url, storage_options)), columns=["usable", "planning_part"])
    except FileNotFoundError:
        raise FileNotFoundError(f"no overlap components at {storage.redact(comps_url)}: run `spectralearth overlaps` first") from None
    except (KeyError, ValueError, ArrowInvalid):  # written before the planning copy existed
        raise ValueError(f"{storage.redact(comps_url)} has no planning_part column (an older overlaps job wrote it): "
                         "run `spectralearth overlaps` again") from None
    n = len(comps)
    usable = comps["usable"].to_numpy(dtype=bool)
    part_of = comps["planning_part"].to_numpy(dtype=np.int64)
    planning_parts = tables.part_urls(planning_url, storage_options)
    opts = dict(storage_options or {})
    side = PAIR_SIDE * params.side_m
    urls = tables.part_urls(edges_url, storage_options)
    tasks = [dask.delayed(_pair_test_part, pure=False)(u, side, opts, dask_key_name=f"combinations-pairs-{k}-{tables.new_run()}")
             for k, u in enumerate(urls)]
    found = _compute(tasks, client)
    a = np.concatenate([f[0] for f in found]) if found else np.zeros(0, np.int64)
    b = np.concatenate([f[1] for f in found]) if found else np.zeros(0, np.int64)
    pair_area = np.concatenate([f[2] for f in found]) if found else np.zeros(0)
    if len(a) and (max(a.max(), b.max()) >= n or min(a.min(), b.min()) < 0):
        raise ValueError(f"edges refer to tile rows outside the components of {n} tiles: run `spectralearth overlaps` again")
    keep = usable[a] & usable[b]
    a, b, pair_area = a[keep], b[keep], pair_area[keep]
    order = np.lexsort((b, a))  # as the in-process test sees them (edges sorted by (a, b))

    def geometry_of(local: np.ndarray) -> tuple:
        held = np.unique(part_of[local])
        if (held < 0).any():
            raise ValueError(f"tile rows {local[part_of[local] < 0][:5].tolist()} are not usable but have edges: "
                             "run `spectralearth overlaps` again")
        return ("parts", [planning_parts[k] for k in held.tolist()], opts)

    return n, a[order], b[order], pair_area[order], geometry_of


def _search_groups(n: int, a: np.ndarray, b: np.ndarray, pair_area: np.ndarray, geometry_of, params: CombinationParams, *,
                   client=None, n_tasks: int | None = None) -> tuple[list[list[tuple]], list[pd.Series]]:
    """The search as groups of task payloads: a group holds whole components (its tasks' results
    are de-duplicated together), groups are in component order.

    Args:
        n: rows of the tile table.
        a, b, pair_area: the pairs that hold a 0.85-side patch (distinct datatakes), and their areas.
        geometry_of: a task's tile rows -> the tile part of its payload (see :func:`_task_tiles`).

    Returns:
        ``(groups, lookups)``: per group its task payloads, and the component of the tiles
        its tasks touch, by tile row.
    """
    pair = pd.DataFrame({"a": a, "b": b})
    comp = connected_components(n, pair)
    degree = np.bincount(a, minlength=n) + np.bincount(b, minlength=n)
    seeds = np.flatnonzero(degree > 0)
    nbrs_of = pd.DataFrame({"s": np.concatenate([a, b]), "t": np.concatenate([b, a])})
    if n_tasks is None:
        threads = sum(client.nthreads().values()) if client is not None else (os.cpu_count() or 1)
        n_tasks = 8 * max(1, threads)
    chunks = plan_tasks(seeds, comp, degree, beam=params.beam, n_tasks=n_tasks)
    groups: list[list[tuple]] = []
    touched: list[np.ndarray] = []
    for k, chunk in enumerate(chunks):
        local = np.union1d(chunk, nbrs_of["t"][np.isin(nbrs_of["s"].to_numpy(), chunk)].to_numpy())
        inside = np.isin(a, local) & np.isin(b, local)
        payload = (chunk, local, geometry_of(local), np.column_stack([a[inside], b[inside]]),
                   pair_area[inside] if params.max_candidates is not None else None)
        # chunks are cut in component order: a component cut across chunks joins them in one group
        if groups and comp[chunk[0]] == comp[chunks[k - 1][-1]]:
            groups[-1].append(payload)
            touched[-1] = np.union1d(touched[-1], local)
        else:
            groups.append([payload])
            touched.append(local)
    return groups, [pd.Series(comp[rows], index=rows) for rows in touched]


def _group_frame(parts: list[tuple[pd.DataFrame, dict, pd.Series]], comp: pd.Series) -> gpd.GeoDataFrame:
    """The combinations of one group of components (its tasks' records, de-duplicated and sorted)."""
    ids = pd.concat([p[2] for p in parts])
    ids = ids[~ids.index.duplicated()]
    return _finalize(pd.concat([p[0] for p in parts], ignore_index=True), ids, comp)


def _work_of(parts: list[tuple[pd.DataFrame, dict, pd.Series]]) -> dict[int, int]:
    """Intersections the group's tasks computed, per tuple size."""
    out: dict[int, int] = {}
    for _, w, _ in parts:
        for k, v in w.items():
            out[k] = out.get(k, 0) + v
    return out


def combinations(
    tiles: gpd.GeoDataFrame,
    edges: pd.DataFrame,
    *,
    beam: int = 16,
    patch_px: int = 128,
    pixel_m: float = 30.0,
    max_n: int | None = None,
    max_candidates: int | None = None,
    client=None,
    n_tasks: int | None = None,
) -> gpd.GeoDataFrame:
    """Temporal combinations of a tile table (Algorithm 1), see the module docstring.

    Returns the whole result in this process; :func:`write_combinations` writes it as a
    table, part by part from the tasks.

    Args:
        tiles: the tile table the edges were built from (row position = tile index).
        edges: overlap edges (columns a, b; ``same_datatake`` edges are ignored).
        beam: n-tuples kept per seed tile and size (n ≥ 3).
        patch_px: patch side in pixels.
        pixel_m: pixel size in metres.
        max_n: largest tuple size (None: no limit).
        max_candidates: tiles a kept tuple is grown by (None: all, the exact search).
        client: a ``distributed.Client``; None runs the tasks on local threads.
        n_tasks: number of tasks (default: 8 per worker thread).

    Returns:
        One row per combination, sorted by (n, members): ``members`` (sorted tile
        rows), ``member_ids``, ``n``, ``component``, ``area_m2`` (in ``utm_epsg``),
        ``utm_epsg`` (UTM zone of the intersection's centroid), ``geometry_utm``
        (WKB, in ``utm_epsg``) and ``geometry`` (WGS84 intersection).
    """
    import dask

    params = CombinationParams(beam=beam, patch_px=patch_px, pixel_m=pixel_m, max_n=max_n, max_candidates=max_candidates)
    groups, lookups = _search_groups(*_pairs_from_tiles(tiles, edges, params), params, client=client, n_tasks=n_tasks)
    tasks = []
    for g, (payloads, lookup) in enumerate(zip(groups, lookups)):
        parts = [dask.delayed(_run_task, pure=False)(p, params, dask_key_name=f"combinations-task-{g}-{j}")
                 for j, p in enumerate(payloads)]
        tasks.append(dask.delayed(_group_frame, pure=False)(parts, lookup, dask_key_name=f"combinations-group-{g}"))
    if not tasks:
        return _finalize(_records_frame([]), pd.Series(dtype=object), pd.Series(dtype=np.int64))
    frames = _compute(tasks, client)
    out = pd.concat(frames, ignore_index=True)
    keys = [tuple(m) for m in out["members"]]
    order = sorted(range(len(keys)), key=lambda i: (len(keys[i]), keys[i]))
    return gpd.GeoDataFrame(out.iloc[order].reset_index(drop=True), geometry="geometry", crs=4326)


def _finalize(found: pd.DataFrame, ids, comp) -> gpd.GeoDataFrame:
    """De-duplicate (keep the smallest seed's instance), sort by (n, members), add ids and components.

    ``ids`` and ``comp`` are looked up by tile row (arrays, or Series indexed by tile row).
    """
    if len(found):
        found = found.assign(key=found["members"].map(tuple), n=found["members"].map(len))
        found = found.sort_values(["seed"], kind="stable").drop_duplicates("key", keep="first")
        keys = found["key"].tolist()
        order = sorted(range(len(keys)), key=lambda i: (len(keys[i]), keys[i]))
        found = found.iloc[order].reset_index(drop=True)
    members = [list(map(int, m)) for m in found["members"]] if len(found) else []
    sizes = np.array([len(m) for m in members], dtype=np.int64)
    flat = np.fromiter((t for m in members for t in m), dtype=np.int64, count=int(sizes.sum()))
    ids_flat = ids.reindex(flat).to_numpy() if isinstance(ids, pd.Series) else np.asarray(ids, dtype=object)[flat]
    comp_of = comp.reindex(flat).to_numpy() if isinstance(comp, pd.Series) else np.asarray(comp)[flat]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64) if len(sizes) else np.zeros(0, np.int64)
    out = pd.DataFrame(
        {
            "members": pd.Series(members, dtype=object),
            "member_ids": pd.Series([list(ids_flat[a : a + k]) for a, k in zip(starts.tolist(), sizes.tolist())], dtype=object),
            "n": sizes,
            "component": comp_of[starts].astype(np.int64) if len(sizes) else np.zeros(0, np.int64),
            "area_m2": found["area_m2"].to_numpy(dtype=float) if len(found) else np.zeros(0),
            "utm_epsg": found["utm_epsg"].to_numpy(dtype=np.int64) if len(found) else np.zeros(0, np.int64),
            "geometry_utm": pd.Series(list(found["geometry_utm"]) if len(found) else [], dtype=object),
        }
    )
    geom = shapely.from_wkb(found["wkb"].to_numpy()) if len(found) else np.array([], dtype=object)
    return gpd.GeoDataFrame(out, geometry=gpd.GeoSeries(geom, crs=4326).values, crs=4326)


def _write_group(g: int, parts: list[tuple[pd.DataFrame, dict, pd.Series]], lookup: pd.Series, writer) -> dict:
    """One group's combinations as part ``g`` of the table; returns its entry and what the report needs."""
    frame = _group_frame(parts, lookup)
    work = _work_of(parts)
    comp = frame["component"].to_numpy()
    facts = {"component_min": int(comp.min()), "component_max": int(comp.max())} if len(frame) else {}
    entry = writer.part(g, frame, **facts)
    sizes = frame["n"].value_counts()
    return {"entry": entry, "by_size": {int(k): int(v) for k, v in sizes.items()}, "work": work,
            "tiles": np.unique(np.concatenate([np.asarray(m, dtype=np.int64) for m in frame["members"]]))
            if len(frame) else np.zeros(0, np.int64)}


# --------------------------------------------------------------------------- the job


@dataclass(frozen=True)
class CombinationReport:
    """What a combinations job found and wrote."""

    n_tiles: int
    """Rows in the tile catalog."""
    n_edges: int
    """Edges read from the overlap graph."""
    n_combinations: int
    """Combinations written."""
    by_size: dict
    """Combinations per tuple size n."""
    max_n: int
    """Largest tuple size found."""
    tiles_in_combinations: int
    """Distinct tiles that are member of at least one combination."""
    evaluated: dict
    """Intersections computed (and patch-tested) per tuple size n: the search's work."""
    url: str
    """Where the combinations were written."""
    seconds: float
    """Wall time of the job."""

    def as_dict(self) -> dict:
        """Plain dict (for JSON and summaries)."""
        return asdict(self)


def write_combinations(
    tiles: gpd.GeoDataFrame,
    edges: pd.DataFrame,
    out_url: str,
    *,
    storage_options=None,
    client=None,
    params: CombinationParams = CombinationParams(),
    n_tasks: int | None = None,
) -> CombinationReport:
    """Compute the combinations of ``tiles`` and write the ``combinations.parquet`` table under ``out_url``.

    Each group of components is searched, de-duplicated and written as one part by the
    tasks themselves (:mod:`spectralearth.platform.tables`); this process receives counts
    only. Parts are in component order and sorted by (n, members) within; a part's
    manifest entry names its component range. The pair test runs here, on ``tiles``
    (:func:`combinations_job` runs it in tasks, on the stored graph).
    """
    t0 = time.perf_counter()
    groups, lookups = _search_groups(*_pairs_from_tiles(tiles, edges, params), params, client=client, n_tasks=n_tasks)
    return _write_groups(groups, lookups, out_url, storage_options, client, params, n_tiles=len(tiles), n_edges=len(edges), t0=t0)


def _write_groups(groups: list[list[tuple]], lookups: list[pd.Series], out_url: str, storage_options, client,
                  params: CombinationParams, *, n_tiles: int, n_edges: int, t0: float) -> CombinationReport:
    """Run the search's groups as tasks that write their parts; commit the table; sum the tasks' counts."""
    import dask

    from spectralearth.platform import storage, tables

    url = storage.join(out_url, COMBINATIONS_NAME)
    writer = tables.TableWriter(url, storage_options)
    tasks = []
    for g, (payloads, lookup) in enumerate(zip(groups, lookups)):
        parts = [dask.delayed(_run_task, pure=False)(p, params, dask_key_name=f"combinations-task-{g}-{j}-{writer.run}")
                 for j, p in enumerate(payloads)]
        tasks.append(dask.delayed(_write_group, pure=False)(g, parts, lookup, writer,
                                                            dask_key_name=f"combinations-write-{g}-{writer.run}"))
    try:
        if not tasks:
            nothing = (_records_frame([]), {}, pd.Series(dtype=object))
            done = [_write_group(0, [nothing], pd.Series(dtype=np.int64), writer)]
        else:
            done = _compute(tasks, client)
        doc = writer.commit([d["entry"] for d in done])
    except BaseException:
        writer.abandon()
        raise
    by_size: dict[int, int] = {}
    for d in done:
        for k, v in d["by_size"].items():
            by_size[k] = by_size.get(k, 0) + v
    used = np.unique(np.concatenate([d["tiles"] for d in done])) if done else np.zeros(0, np.int64)
    evaluated: dict[int, int] = {}
    for d in done:
        for k, v in d["work"].items():
            evaluated[k] = evaluated.get(k, 0) + v
    return CombinationReport(
        n_tiles=n_tiles,
        n_edges=n_edges,
        n_combinations=int(doc["rows"]),
        by_size={k: by_size[k] for k in sorted(by_size)},
        max_n=max(by_size) if by_size else 0,
        tiles_in_combinations=int(len(used)),
        evaluated={k: evaluated[k] for k in sorted(evaluated)},
        url=storage.redact(url),
        seconds=round(time.perf_counter() - t0, 3),
    )


def combinations_job(
    catalog_url: str,
    *,
    storage_options=None,
    cluster: ClusterSpec = ClusterSpec(),
    params: CombinationParams = CombinationParams(),
    n_tasks: int | None = None,
) -> CombinationReport:
    """Search the combinations of a catalog's overlap graph and write the ``combinations.parquet`` table beside it.

    Everything is read by the tasks: the pair test runs per part of the graph
    (``overlap_edges.parquet``, on the intersections stored there), and each search task
    reads its tiles from the parts of ``planning_tiles.parquet`` that hold them. This
    process reads only the per-tile components file and the pairs that pass, so its memory
    is integers per tile and per pair, not footprints. Same output as
    :func:`write_combinations` on the catalog's tiles and edges.

    Args:
        catalog_url: the tile catalog (folder or parquet URL) whose outputs the overlaps job wrote.
        storage_options: fsspec options (never credentials).
        cluster: where to run (a LocalCluster by default).
        params: search parameters.
        n_tasks: search tasks (default: 8 per worker thread).

    Raises:
        FileNotFoundError: the overlap graph or its planning copy is missing: run the
            overlaps job first.
    """
    t0 = time.perf_counter()
    base = output_base(catalog_url)
    with cluster_client(cluster) as client:
        n, a, b, pair_area, geometry_of = _pairs_from_graph(base, params, storage_options, client)
        groups, lookups = _search_groups(n, a, b, pair_area, geometry_of, params, client=client, n_tasks=n_tasks)
        n_edges = _edge_rows(base, storage_options)
        return _write_groups(groups, lookups, base, storage_options, client, params, n_tiles=n, n_edges=n_edges, t0=t0)


def _edge_rows(base: str, storage_options) -> int:
    """Rows of the overlap graph, from its manifest."""
    from spectralearth.pipelines.overlaps import EDGES_NAME
    from spectralearth.platform import storage, tables

    doc = tables.manifest(storage.join(base, EDGES_NAME), storage_options)
    return int(doc.get("rows") or sum(int(p.get("rows") or 0) for p in doc["parts"]))


def read_edges(url: str, *, storage_options=None) -> pd.DataFrame:
    """Read the ``overlap_edges.parquet`` table (without its geometry), sorted by (a, b)."""
    from spectralearth.platform import tables

    edges = tables.read_table(url, columns=["a", "b", "id_a", "id_b", "area_m2", "utm_epsg", "same_datatake"],
                              storage_options=storage_options, geo=False)
    return edges.sort_values(["a", "b"], kind="stable").reset_index(drop=True)
