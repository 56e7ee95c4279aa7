"""The patch plan: where the 128×128 windows go and which acquisitions view each one.

Placement (geometry only, deterministic):

- **Grid.** Windows lie on the 30 m UTM grid of their tiles (pixel corners ≡ 15 mod 30,
  as the tiles themselves), so a window is a plain pixel window of every tile of the
  same UTM zone that contains it. A patch's CRS is its tiles' ``proj:code``;
  combinations whose members are on different zones are skipped (counted).
- **Order.** Combinations by decreasing ``n``, then decreasing area, then member rows;
  then every single tile, in catalog order, for the rest of the archive.
- **Rows.** In a combination's intersection ``P`` (in the patch CRS) the centres that
  fit lie in the erosion of ``P`` by the window square. Windows are laid in rows
  (``side`` apart, from the top of that region); each row starts at the leftmost
  grid position that fits in that row and steps ``side`` to the right. A window is
  kept only if it lies inside the valid footprint of every member.
- **De-duplication.** Accepted windows go into a grid hash per CRS (cells of eight
  window sides) and a coarse WGS84 hash across CRSs; a window overlapping an
  accepted one by more than ``max_overlap`` of its area is rejected. Windows of
  different zones are compared after projecting the other window into this zone.

Views: every acquisition of the patch CRS whose valid footprint (projected into that
CRS) contains the window and whose pixel grid holds it is a view (``wide_views``;
otherwise the combination's members only); of several tiles of one datatake, only one
(a member first, then the smallest tile row). Superseded deliveries are not views
(they are not in the catalog; ``prepare_tiles`` drops any left).

Quality filters (tiles with pixels; footprint-only catalogs skip them): per view, the
fraction of the window flagged in QL_QUALITY_CLASSES as background (nodata),
QL_QUALITY_CLOUD, QL_QUALITY_CLOUDSHADOW and QL_QUALITY_SNOW. Masks are read once per
tile in a dask task. A patch keeps its passing views and is dropped without any.

Outputs beside the catalog: the ``patches.parquet`` (GeoParquet parts) and
``views.parquet`` tables (:mod:`spectralearth.platform.tables`: one part per task,
committed by a manifest) and ``plan-report.json``. :func:`plan_job` runs as dask
tasks, one per bundle of whole components of the footprints; the process that starts
it holds the tile table and the tasks' counts, not the plan.
"""

from __future__ import annotations

import functools
import io
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

__all__ = [
    "PlanParams",
    "PlanReport",
    "filter_views",
    "place_patches",
    "plan_job",
    "plan_tables",
    "read_plan",
    "select_views",
    "tile_source",
]

PATCHES_NAME = "patches.parquet"
VIEWS_NAME = "views.parquet"
REPORT_NAME = "plan-report.json"
MASKS = {
    "nodata": ("QL_QUALITY_CLASSES.TIF", 3),
    "cloud": ("QL_QUALITY_CLOUD.TIF", 1),
    "cloud_shadow": ("QL_QUALITY_CLOUDSHADOW.TIF", 1),
    "snow": ("QL_QUALITY_SNOW.TIF", 1),
}
"""Filter name -> (QL file, flagged value)."""


@dataclass(frozen=True)
class PlanParams:
    """How patches are placed and views filtered."""

    patch_px: int = 128
    """Window side in pixels."""
    pixel_m: float = 30.0
    """Pixel size in metres (the grid has pixel corners at pixel_m/2 mod pixel_m)."""
    max_overlap: float = 0.0
    """Largest accepted overlap of a new window with an accepted one (fraction of its area)."""
    wide_views: bool = True
    """Every acquisition containing the window is a view (False: only the combination's members)."""
    singles: bool = True
    """After the combinations, also place windows in single tiles (the rest of the archive)."""
    max_nodata: float = 0.0
    """Largest background (nodata) fraction of a view."""
    max_cloud: float = 0.01
    """Largest cloud fraction of a view."""
    max_cloud_shadow: float = 0.01
    """Largest cloud-shadow fraction of a view."""
    max_snow: float = 0.05
    """Largest snow fraction of a view."""
    pixel_filters: bool = True
    """Apply the QL-mask filters where tiles have masks (footprint-only tiles are never filtered)."""

    def __post_init__(self) -> None:
        if self.patch_px < 1 or self.pixel_m <= 0:
            raise ValueError("patch_px and pixel_m must be positive")
        if not 0.0 <= self.max_overlap < 1.0:
            raise ValueError(f"max_overlap must be within [0, 1), not {self.max_overlap}")
        for name in ("max_nodata", "max_cloud", "max_cloud_shadow", "max_snow"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a fraction within [0, 1]")

    @property
    def side_m(self) -> float:
        """Window side in metres."""
        return self.patch_px * self.pixel_m

    def thresholds(self) -> dict[str, float]:
        """Filter name -> largest accepted fraction."""
        return {
            "nodata": self.max_nodata,
            "cloud": self.max_cloud,
            "cloud_shadow": self.max_cloud_shadow,
            "snow": self.max_snow,
        }


# --------------------------------------------------------------------------- tiles


def _epsg_of(code) -> int:
    s = str(code or "")
    return int(s.split(":")[-1]) if s and s.split(":")[-1].isdigit() else 0


def _tile_frame(tiles: gpd.GeoDataFrame) -> pd.DataFrame:
    """Usable tiles with their grid: tile, id, datatake, epsg, transform, shape, datetime, geometry (WGS84)."""
    from spectralearth.pipelines.overlaps import prepare_tiles

    usable = prepare_tiles(tiles).tiles
    return _grid_frame(usable, tiles.iloc[usable["tile"].to_numpy()])


def _grid_frame(usable: pd.DataFrame, src: pd.DataFrame) -> pd.DataFrame:
    """:func:`_tile_frame` of prepared tiles ``usable`` (tile, id, datatake, geometry) and their catalog rows ``src``
    (datetime, proj:code, proj:transform, proj:shape; same order); rows without a grid are left out."""
    out = pd.DataFrame(
        {
            "tile": usable["tile"].to_numpy().astype(np.int64),
            "id": usable["id"].to_numpy(),
            "datatake": usable["datatake"].to_numpy(),
            "epsg": [_epsg_of(c) for c in src["proj:code"]],
            "transform": list(src["proj:transform"]),
            "shape": list(src["proj:shape"]),
            "datetime": src["datetime"].to_numpy(),
        }
    )
    out["geometry"] = np.asarray(usable.geometry.values, dtype=object)
    ok = (out["epsg"] > 0) & out["transform"].map(lambda t: t is not None and len(t) >= 6) & out["shape"].map(
        lambda s: s is not None and len(s) >= 2
    )
    return out[ok.to_numpy()].reset_index(drop=True)


def _project_to(geoms, epsg: int):
    from spectralearth.pipelines.overlaps import project

    geoms = np.asarray(geoms, dtype=object)
    return project(geoms, np.full(len(geoms), int(epsg), dtype=np.int64))


@functools.lru_cache(maxsize=256)
def _to_wgs84(epsg: int):
    import pyproj

    return pyproj.Transformer.from_crs(int(epsg), 4326, always_xy=True)


# --------------------------------------------------------------------------- placement


def _snap_up(v, pixel: float):
    """The first grid position (pixel corners ≡ pixel/2 mod pixel) at or above ``v`` (a number or an array)."""
    half = pixel / 2
    return np.ceil((v - half) / pixel - 1e-9) * pixel + half


def _snap_down(v, pixel: float):
    """The last grid position at or below ``v`` (a number or an array)."""
    half = pixel / 2
    return np.floor((v - half) / pixel + 1e-9) * pixel + half


_CORNERS = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])


def _erode_convex_all(polys: np.ndarray, h: float) -> np.ndarray:
    """Erosion of convex polygons (one ring each) by ``[-h, h]²``: each polygon ∩ its four corner-shifted copies."""
    polys = np.asarray(polys, dtype=object)
    xy, idx = shapely.get_coordinates(shapely.get_exterior_ring(polys), return_index=True)
    out = polys
    for c in _CORNERS:  # in turn, as intersection_all reduces (whose axis= form crashed on large arrays here)
        out = shapely.intersection(out, shapely.polygons(shapely.linearrings(xy + h * c, indices=idx)))
    return out


def _erode_convex(poly, h: float):
    """:func:`_erode_convex_all` of one polygon."""
    return _erode_convex_all(np.array([poly], dtype=object), h)[0]


def _centres_of(regions: np.ndarray, side: float, pixel: float) -> tuple[np.ndarray, np.ndarray]:
    """Window centres in rows across the (hull of each) region, on the pixel-corner grid.

    Returns ``(centres, owner)``: centres (n, 2) grouped by region in order, and the
    position in ``regions`` each belongs to.
    """
    hull = shapely.convex_hull(np.asarray(regions, dtype=object))
    fit = np.flatnonzero(~shapely.is_empty(hull) & (shapely.area(hull) >= side * side))
    cen = np.full(len(hull), None, dtype=object)
    if len(fit):
        cen[fit] = _erode_convex_all(hull[fit], side / 2)
    ok = fit[~shapely.is_empty(cen[fit])] if len(fit) else fit
    kind = shapely.get_type_id(cen[ok]) if len(ok) else np.zeros(0, np.int64)
    poly = ok[kind == 3]
    rows_xy, rows_of = _rows_centres(cen[poly], side, pixel)
    parts, owners = [rows_xy], [poly[rows_of]]
    for r in ok[kind != 3].tolist():  # a degenerate erosion (a segment or a point)
        c = _line_centres(cen[r], side, pixel)
        parts.append(c)
        owners.append(np.full(len(c), r, dtype=np.int64))
    xy = np.concatenate(parts).reshape(-1, 2)
    owner = np.concatenate(owners).astype(np.int64)
    order = np.argsort(owner, kind="stable")
    return xy[order], owner[order]


def _line_centres(cen, side: float, pixel: float) -> np.ndarray:
    """Window-centre rows of any region: one intersection with a horizontal line per row."""
    ex0, ey0, ex1, ey1 = cen.bounds
    out = []
    cy = _snap_down(ey1, pixel)
    while cy >= ey0 - 1e-6:
        seg = shapely.intersection(cen, shapely.LineString([(ex0 - 1.0, cy), (ex1 + 1.0, cy)]))
        if not seg.is_empty:
            a, _, b, _ = seg.bounds
            cx = _snap_up(a, pixel)
            while cx <= b + 1e-6:
                out.append((cx, cy))
                cx += side
        cy -= side
    return np.asarray(out, dtype=float).reshape(-1, 2)


def _row_centres(cen, side: float, pixel: float) -> np.ndarray:
    """:func:`_rows_centres` of one convex polygon."""
    return _rows_centres(np.array([cen], dtype=object), side, pixel)[0]


def _rows_centres(cens: np.ndarray, side: float, pixel: float) -> tuple[np.ndarray, np.ndarray]:
    """The rows of window centres of convex polygons, from their edges, all polygons at once.

    Each row ``y`` meets a convex polygon in one interval ``[a, b]``, spanned by the points
    where the edges cross ``y`` (both ends of an edge that lies on it). Centres step
    ``side`` from the first grid position at or right of ``a`` (by repeated addition, as
    one walk along the row would). Returns ``(centres (n, 2), polygon of each)``, rows
    from the top, each left to right.
    """
    empty = (np.zeros((0, 2)), np.zeros(0, np.int64))
    if not len(cens):
        return empty
    xy, idx = shapely.get_coordinates(shapely.get_exterior_ring(np.asarray(cens, dtype=object)), return_index=True)
    n_pts = np.bincount(idx, minlength=len(cens))
    start = np.concatenate([[0], np.cumsum(n_pts)[:-1]])
    ey0 = np.minimum.reduceat(xy[:, 1], start)
    ey1 = np.maximum.reduceat(xy[:, 1], start)
    top = _snap_down(ey1, pixel)
    n_rows = np.where(top >= ey0 - 1e-6, np.floor((top - (ey0 - 1e-6)) / side + 1e-12).astype(np.int64) + 1, 0)
    if not n_rows.sum():
        return empty
    # rows: (polygon, y)
    row_poly = np.repeat(np.arange(len(cens)), n_rows)
    row_k = np.arange(len(row_poly)) - np.repeat(np.cumsum(n_rows) - n_rows, n_rows)
    cy = top[row_poly] - side * row_k.astype(float)
    # (row, edge) pairs of the same polygon; a polygon's edges are its points but the last
    n_edges = n_pts - 1
    per_row = n_edges[row_poly]
    pair_row = np.repeat(np.arange(len(row_poly)), per_row)
    pair_edge = np.repeat(start[row_poly], per_row) + (np.arange(len(pair_row)) - np.repeat(np.cumsum(per_row) - per_row, per_row))
    x1, y1 = xy[pair_edge, 0], xy[pair_edge, 1]
    x2, y2 = xy[pair_edge + 1, 0], xy[pair_edge + 1, 1]
    y = cy[pair_row]
    crosses = (np.minimum(y1, y2) <= y) & (y <= np.maximum(y1, y2))
    dy = y2 - y1
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(dy != 0, (y - y1) / dy, 0.0)
    xa = x1 + t * (x2 - x1)
    xb = np.where(dy != 0, xa, x2)  # an edge on the row: both of its ends
    first = np.cumsum(per_row) - per_row
    a = np.minimum.reduceat(np.where(crosses, np.minimum(xa, xb), np.inf), first)
    b = np.maximum.reduceat(np.where(crosses, np.maximum(xa, xb), -np.inf), first)
    keep = a <= b
    cx = _snap_up(a, pixel)
    cols_x, cols_row = [], []
    live = np.flatnonzero(keep & (cx <= b + 1e-6))
    step = cx[live]
    while len(live):
        cols_x.append(step)
        cols_row.append(live)
        step = step + side
        more = step <= b[live] + 1e-6
        live, step = live[more], step[more]
    if not cols_x:
        return empty
    rx, rr = np.concatenate(cols_x), np.concatenate(cols_row)
    order = np.lexsort((rx, rr))  # by row (rows are in polygon, top-down order), then left to right
    rx, rr = rx[order], rr[order]
    return np.column_stack([rx, cy[rr]]), row_poly[rr]


def _overlaps_within(x0: np.ndarray, y0: np.ndarray, ax: np.ndarray, ay: np.ndarray, s: float, limit: float) -> np.ndarray:
    """(len(x0), len(ax)) overlap areas of windows with upper-left corners (x0, y0) and (ax, ay) above ``limit``."""
    ov = np.maximum(0.0, s - np.abs(ax[None, :] - x0[:, None])) * np.maximum(0.0, s - np.abs(ay[None, :] - y0[:, None]))
    return ov > limit


class _Accepted:
    """Accepted windows: a grid hash per CRS plus a coarse WGS84 hash across CRSs, queried a region at a time.

    The CRS hash has cells of ``_CELL`` window sides holding arrays of corners; the WGS84
    hash (0.25° cells) holds the windows' polygons and bounds for the comparison across zones.
    """

    _CELL = 8

    def __init__(self, side: float, max_overlap: float, across_crs: bool) -> None:
        self.side = side
        self.cell = self._CELL * side
        self.limit = max_overlap * side * side + 1e-6
        self.across_crs = across_crs
        self.by_crs: dict[int, dict[tuple[int, int], list[tuple[np.ndarray, np.ndarray]]]] = {}
        self.wgs: dict[tuple[int, int], list[tuple[int, np.ndarray, np.ndarray]]] = {}
        self.cell_deg = 0.25
        self.crs_seen: set[int] = set()

    def free(self, epsg: int, x0: np.ndarray, y0: np.ndarray, boxes: np.ndarray, polys: np.ndarray,
             bounds: np.ndarray) -> np.ndarray:
        """Which of one region's windows overlap no accepted window by more than the limit.

        Windows of one region are compared with each other as if accepted one after the
        other (rows ``side`` apart never overlap, so this is a check, not a cost).
        """
        s, c = self.side, self.cell
        ok = np.ones(len(x0), dtype=bool)
        grid = self.by_crs.get(epsg)
        if grid:
            i0, i1 = math.floor((x0.min() - s) / c), math.floor((x0.max() + s) / c)
            j0, j1 = math.floor((y0.min() - s) / c), math.floor((y0.max() + s) / c)
            near = [chunk for i in range(i0, i1 + 1) for j in range(j0, j1 + 1) for chunk in grid.get((i, j), ())]
            if near:
                ax = np.concatenate([n[0] for n in near])
                ay = np.concatenate([n[1] for n in near])
                ok &= ~_overlaps_within(x0, y0, ax, ay, s, self.limit).any(axis=1)
        if self.across_crs and (self.crs_seen - {epsg}) and ok.any():
            ok &= ~self._across(epsg, boxes, polys, bounds)
        if len(x0) > 1:
            mutual = _overlaps_within(x0, y0, x0, y0, s, self.limit)
            np.fill_diagonal(mutual, False)
            if mutual.any():  # accept one after the other
                for k in range(len(x0)):
                    if ok[k]:
                        later = mutual[k].copy()
                        later[: k + 1] = False
                        ok &= ~later
        return ok

    def _across(self, epsg: int, boxes, polys, bounds) -> np.ndarray:
        """Which windows overlap an accepted window of another zone by more than the limit."""
        d = self.cell_deg
        x0, y0 = math.floor(bounds[:, 0].min() / d), math.floor(bounds[:, 1].min() / d)
        x1, y1 = math.floor(bounds[:, 2].max() / d), math.floor(bounds[:, 3].max() / d)
        near = [chunk for i in range(x0, x1 + 1) for j in range(y0, y1 + 1) for chunk in self.wgs.get((i, j), ())
                if chunk[0] != epsg]
        hit = np.zeros(len(boxes), dtype=bool)
        if not near:
            return hit
        opoly = np.concatenate([n[1] for n in near])
        ob = np.concatenate([n[2] for n in near])
        pi, oi = np.nonzero((ob[None, :, 0] <= bounds[:, None, 2]) & (ob[None, :, 2] >= bounds[:, None, 0])
                            & (ob[None, :, 1] <= bounds[:, None, 3]) & (ob[None, :, 3] >= bounds[:, None, 1]))
        if not len(pi):
            return hit
        touch = shapely.intersects(opoly[oi], polys[pi])
        pi, oi = pi[touch], oi[touch]
        if not len(pi):
            return hit
        theirs = _project_to(opoly[oi], epsg)
        big = shapely.area(shapely.intersection(boxes[pi], theirs)) > self.limit
        hit[pi[big]] = True
        return hit

    def add(self, epsg: int, x0: np.ndarray, y0: np.ndarray, polys: np.ndarray, bounds: np.ndarray) -> None:
        """Accept windows (of one zone)."""
        if not len(x0):
            return
        c = self.cell
        grid = self.by_crs.setdefault(epsg, {})
        ci, cj = np.floor(x0 / c).astype(np.int64), np.floor(y0 / c).astype(np.int64)
        for i, j in set(zip(ci.tolist(), cj.tolist())):
            sel = (ci == i) & (cj == j)
            grid.setdefault((i, j), []).append((x0[sel], y0[sel]))
        self.crs_seen.add(epsg)
        if not self.across_crs:
            return
        d = self.cell_deg
        i0, j0 = np.floor(bounds[:, 0] / d).astype(np.int64), np.floor(bounds[:, 1] / d).astype(np.int64)
        i1, j1 = np.floor(bounds[:, 2] / d).astype(np.int64), np.floor(bounds[:, 3] / d).astype(np.int64)
        for i in range(int(i0.min()), int(i1.max()) + 1):
            for j in range(int(j0.min()), int(j1.max()) + 1):
                sel = (i0 <= i) & (i <= i1) & (j0 <= j) & (j <= j1)
                if sel.any():
                    self.wgs.setdefault((i, j), []).append((epsg, polys[sel], bounds[sel]))


def _windows_wgs84(epsg: int, x0: np.ndarray, y0: np.ndarray, side: float):
    """WGS84 polygons (4 corners) and centres of windows with upper-left corners (x0, y0)."""
    tr = _to_wgs84(epsg)
    xs = np.stack([x0, x0 + side, x0 + side, x0, x0 + side / 2], axis=1)
    ys = np.stack([y0, y0, y0 - side, y0 - side, y0 - side / 2], axis=1)
    lon, lat = tr.transform(xs.ravel(), ys.ravel())
    lon = np.asarray(lon).reshape(-1, 5)
    lat = np.asarray(lat).reshape(-1, 5)
    polys = shapely.polygons(np.stack([lon[:, :4], lat[:, :4]], axis=2))
    return polys, lon[:, 4], lat[:, 4]


def _no_records() -> dict[str, np.ndarray]:
    return {k: np.zeros(0, dtype=object if k in ("members", "geometry") else float if k in ("x0", "y0", "lon", "lat") else np.int64)
            for k in _REC}


_REC = ("position", "crs", "x0", "y0", "lon", "lat", "priority", "combination", "members", "geometry")


def _place_group(regions: list[tuple[int, int, int, tuple[int, ...]]], geoms: dict[int, Any], epsg_of: dict[int, int],
                 params: PlanParams) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Place the windows of one group of regions (whole components of the overlap graph), in order.

    The geometry (regions, candidate windows, which lie inside every member, their WGS84
    polygons) is computed for all regions at once; only the acceptance walks the regions
    in order, a region's windows at a time.

    Args:
        regions: ``(position, priority, combination row, members)`` in placement order.
        geoms: tile row -> WGS84 footprint (a geometry or its WKB) of every member.
        epsg_of: tile row -> EPSG code of its grid.

    Returns:
        ``(records, counts)``: arrays per window (``_REC``) in placement order; records carry
        ``position`` (of their region) so that groups can be merged back into the global
        placement order.
    """
    side, pixel = params.side_m, params.pixel_m
    counts = dict(candidates=0, outside=0, overlapping=0)
    if not regions:
        return _no_records(), counts
    tiles = sorted(geoms)
    col = {t: i for i, t in enumerate(tiles)}
    wgs = np.asarray([geoms[t] for t in tiles], dtype=object)
    if len(wgs) and isinstance(wgs[0], (bytes, bytearray)):
        wgs = shapely.from_wkb(wgs)
    t_epsg = np.asarray([int(epsg_of[t]) for t in tiles], dtype=np.int64)
    utm = np.empty(len(tiles), dtype=object)
    for e in np.unique(t_epsg).tolist():  # each tile in its own zone (regions never mix zones)
        sel = t_epsg == e
        utm[sel] = _project_to(wgs[sel], e)
    shapely.prepare(utm)

    n_reg = len(regions)
    n_mem = np.asarray([len(r[3]) for r in regions], dtype=np.int64)
    mem = np.full((n_reg, int(n_mem.max())), -1, dtype=np.int64)
    for r, (_, _, _, members) in enumerate(regions):
        mem[r, : len(members)] = [col[m] for m in members]
    r_epsg = t_epsg[mem[:, 0]]
    area = utm[mem[:, 0]].copy()
    for k in range(1, mem.shape[1]):
        sel = np.flatnonzero(n_mem > k)
        area[sel] = shapely.intersection(area[sel], utm[mem[sel, k]])
    centres, owner = _centres_of(area, side, pixel)
    counts["candidates"] = len(centres)
    x0 = centres[:, 0] - side / 2
    y0 = centres[:, 1] + side / 2
    boxes = shapely.box(x0, y0 - side, x0 + side, y0)
    inside = np.ones(len(boxes), dtype=bool)
    for k in range(mem.shape[1]):
        sel = np.flatnonzero(n_mem[owner] > k)
        inside[sel] &= shapely.contains(utm[mem[owner[sel], k]], boxes[sel])
    counts["outside"] = int((~inside).sum())
    keep = np.flatnonzero(inside)
    x0, y0, boxes, owner = x0[keep], y0[keep], boxes[keep], owner[keep]
    polys = np.empty(len(keep), dtype=object)
    lon, lat = np.zeros(len(keep)), np.zeros(len(keep))
    w_epsg = r_epsg[owner]
    for e in np.unique(w_epsg).tolist():
        sel = np.flatnonzero(w_epsg == e)
        polys[sel], lon[sel], lat[sel] = _windows_wgs84(e, x0[sel], y0[sel], side)
    bounds = shapely.bounds(polys) if len(polys) else np.zeros((0, 4))

    acc = _Accepted(side, params.max_overlap, across_crs=len(set(t_epsg.tolist())) > 1)
    edges = np.flatnonzero(np.diff(np.concatenate([[-1], owner, [n_reg]])))  # region runs among the windows
    taken = np.zeros(len(owner), dtype=bool)
    for a, b in zip(edges[:-1].tolist(), edges[1:].tolist()):
        e = int(w_epsg[a])
        ok = acc.free(e, x0[a:b], y0[a:b], boxes[a:b], polys[a:b], bounds[a:b])
        taken[a:b] = ok
        acc.add(e, x0[a:b][ok], y0[a:b][ok], polys[a:b][ok], bounds[a:b][ok])
    counts["overlapping"] = int((~taken).sum())
    pick = np.flatnonzero(taken)
    reg = owner[pick]
    members = np.empty(n_reg, dtype=object)
    for r, region in enumerate(regions):
        members[r] = list(region[3])
    rec = {
        "position": np.asarray([r[0] for r in regions], dtype=np.int64)[reg],
        "crs": w_epsg[pick],
        "x0": x0[pick],
        "y0": y0[pick],
        "lon": lon[pick],
        "lat": lat[pick],
        "priority": np.asarray([r[1] for r in regions], dtype=np.int64)[reg],
        "combination": np.asarray([r[2] for r in regions], dtype=np.int64)[reg],
        "members": members[reg],
        "geometry": polys[pick],
    }
    return rec, counts


def tile_components(geoms: np.ndarray) -> np.ndarray:
    """Component label of each footprint: footprints that intersect (or touch) are connected.

    Windows of different components can never overlap, so each component is placed on
    its own (in any order, on any worker) and the result equals one placement of all.
    """
    from spectralearth.pipelines.overlaps import candidate_pairs, connected_components

    geoms = np.asarray(geoms, dtype=object)
    i, j = candidate_pairs(geoms)
    if len(i):
        hit = shapely.intersects(geoms[i], geoms[j])
        i, j = i[hit], j[hit]
    return connected_components(len(geoms), pd.DataFrame({"a": i, "b": j}))


def place_patches(
    tiles: gpd.GeoDataFrame,
    combos: gpd.GeoDataFrame | None,
    params: PlanParams = PlanParams(),
    *,
    progress: Callable[[int], None] | None = None,
    client=None,
    n_tasks: int | None = None,
) -> tuple[gpd.GeoDataFrame, dict[str, int]]:
    """Place the windows (geometry only; deterministic).

    Regions (combinations, then single tiles) are grouped by connected component of
    the footprints; groups of components are placed in parallel tasks (on ``client``,
    or in this process) and merged back into the global placement order, which gives
    exactly the windows of one sequential placement.

    Args:
        tiles: the tile table (``read_tiles``; row position = tile index).
        combos: the combinations (``combinations.parquet``), or None for single tiles only.
        params: placement parameters.
        progress: called with the number of tasks done.
        client: a ``distributed.Client`` to place on (None: in this process).
        n_tasks: tasks (default: 4 per worker thread, at most one per component).

    Returns:
        ``(patches, counts)``: one row per window in placement order (columns patch, crs,
        x0, y0, lon, lat, priority (the combination's n, 1 for a single tile),
        combination (row in ``combos``, -1 for a single tile), members (tile rows),
        geometry (WGS84)), and counts of what placement did.
    """
    tf = _tile_frame(tiles)
    by_tile = {int(t): i for i, t in enumerate(tf["tile"])}
    regions: list[tuple[int, int, tuple[int, ...]]] = []  # (priority, combination row, members)
    counts = {"combinations": 0, "combinations_mixed_crs": 0, "combinations_unusable": 0, "single_tiles": 0}
    if combos is not None and len(combos):
        c_n = combos["n"].to_numpy(dtype=np.int64).tolist()
        c_area = combos["area_m2"].to_numpy(dtype=float).tolist()
        c_members = [tuple(int(m) for m in ms) for ms in combos["members"]]
        tf_epsg = tf["epsg"].to_numpy(dtype=np.int64).tolist()
        order = sorted(range(len(combos)), key=lambda i: (-c_n[i], -round(c_area[i]), c_members[i]))
        for i in order:
            members = c_members[i]
            counts["combinations"] += 1
            if any(m not in by_tile for m in members):
                counts["combinations_unusable"] += 1
                continue
            if len({tf_epsg[by_tile[m]] for m in members}) != 1:
                counts["combinations_mixed_crs"] += 1
                continue
            regions.append((len(members), i, members))
    if params.singles:
        for t in tf["tile"]:
            regions.append((1, -1, (int(t),)))
            counts["single_tiles"] += 1

    geoms = np.asarray(tf["geometry"].to_numpy(), dtype=object)
    comp = tile_components(geoms) if len(geoms) else np.zeros(0, np.int64)
    wkb_all = shapely.to_wkb(geoms) if len(geoms) else np.zeros(0, dtype=object)
    epsg_all = tf["epsg"].to_numpy(dtype=np.int64)
    by_comp: dict[int, list] = {}
    for pos, (priority, combo, members) in enumerate(regions):
        by_comp.setdefault(int(comp[by_tile[members[0]]]), []).append((pos, priority, combo, members))
    if n_tasks is None:
        threads = sum(client.nthreads().values()) if client is not None else 1
        n_tasks = 4 * max(1, threads)
    # bundle components into tasks of similar size (regions, weighted by tuple size)
    comps = sorted(by_comp, key=lambda c: -len(by_comp[c]))
    load = np.zeros(max(1, min(n_tasks, len(comps))), dtype=float)
    bundles: list[list[int]] = [[] for _ in range(len(load))]
    for c in comps:
        k = int(np.argmin(load))
        bundles[k].append(c)
        load[k] += sum(len(r[3]) for r in by_comp[c])
    payloads = []
    for bundle in bundles:
        if not bundle:
            continue
        regs = sorted((r for c in bundle for r in by_comp[c]), key=lambda r: r[0])
        members = {m for r in regs for m in r[3]}
        payloads.append((regs, {m: wkb_all[by_tile[m]] for m in members}, {m: int(epsg_all[by_tile[m]]) for m in members}))
    results = []
    if client is not None and len(payloads) > 1:
        from distributed import as_completed

        futs = [client.submit(_place_group, *pl, params, key=f"plan-place-{k}-{len(payloads)}", pure=False) for k, pl in enumerate(payloads)]
        for fut in as_completed(futs):
            results.append(fut.result())
            fut.release()
            if progress:
                progress(1)
    else:
        for pl in payloads:
            results.append(_place_group(*pl, params))
            if progress:
                progress(1)
    counts.update(candidates=0, outside=0, overlapping=0)
    for _, c in results:
        for k, v in c.items():
            counts[k] += v
    rec = {k: np.concatenate([r[k] for r, _ in results]) for k in _REC} if results else _no_records()
    # back to the global placement order: by region, then by position within the region
    seq = np.concatenate([np.arange(len(r["position"])) for r, _ in results]) if results else np.zeros(0, np.int64)
    pos = np.asarray(rec["position"], dtype=np.int64)
    order = np.lexsort((seq, np.zeros(len(pos), np.int64) if not len(results) else np.repeat(np.arange(len(results)), [len(r["position"]) for r, _ in results]), pos))
    out = _patches_frame(rec, order)
    counts["placed"] = len(out)
    return out, counts


def select_views(
    patches: pd.DataFrame,
    tiles: gpd.GeoDataFrame,
    params: PlanParams = PlanParams(),
) -> pd.DataFrame:
    """Candidate views of placed windows: every same-CRS tile whose footprint and grid hold the window.

    Returns:
        One row per (patch, tile): patch, tile, id, datatake, datetime, row0, col0, member;
        at most one tile per (patch, datatake) (a member first, then the smallest row);
        sorted by (patch, datetime, tile).
    """
    return _views_of(patches, _tile_frame(tiles), params)


def _views_of(patches: pd.DataFrame, tf: pd.DataFrame, params: PlanParams) -> pd.DataFrame:
    """:func:`select_views` on a tile frame (``_tile_frame``, or the rows of one plan task)."""
    side, px = params.side_m, params.patch_px
    parts = []
    for epsg in sorted(set(int(c) for c in patches["crs"])):
        sel = np.flatnonzero(patches["crs"].to_numpy() == epsg)
        tsel = np.flatnonzero(tf["epsg"].to_numpy() == epsg)
        if not len(sel) or not len(tsel):
            continue
        tgeom = _project_to(tf["geometry"].to_numpy()[tsel], epsg)
        tree = shapely.STRtree(tgeom)
        x0 = patches["x0"].to_numpy()[sel]
        y0 = patches["y0"].to_numpy()[sel]
        boxes = shapely.box(x0, y0 - side, x0 + side, y0)
        pi, ti = tree.query(boxes, predicate="within")
        if not len(pi):
            continue
        trans = np.asarray([list(t)[:6] for t in tf["transform"].to_numpy()[tsel]], dtype=float)
        shape = np.asarray([list(s)[-2:] for s in tf["shape"].to_numpy()[tsel]], dtype=np.int64)
        colf = (x0[pi] - trans[ti, 2]) / trans[ti, 0]
        rowf = (y0[pi] - trans[ti, 5]) / trans[ti, 4]
        col0, row0 = np.rint(colf), np.rint(rowf)
        aligned = (np.abs(colf - col0) < 1e-6) & (np.abs(rowf - row0) < 1e-6)
        aligned &= (col0 >= 0) & (row0 >= 0) & (col0 + px <= shape[ti, 1]) & (row0 + px <= shape[ti, 0])
        pi, ti, col0, row0 = pi[aligned], ti[aligned], col0[aligned], row0[aligned]
        parts.append(
            pd.DataFrame(
                {
                    "patch": patches["patch"].to_numpy()[sel][pi].astype(np.int64),
                    "tf": tsel[ti],
                    "row0": row0.astype(np.int64),
                    "col0": col0.astype(np.int64),
                }
            )
        )
    cols = ["patch", "tile", "id", "datatake", "datetime", "row0", "col0", "member"]
    if not parts:
        return pd.DataFrame({c: [] for c in cols})
    v = pd.concat(parts, ignore_index=True)
    v["tile"] = tf["tile"].to_numpy()[v["tf"]]
    v["id"] = tf["id"].to_numpy()[v["tf"]]
    v["datatake"] = tf["datatake"].to_numpy()[v["tf"]]
    v["datetime"] = tf["datetime"].to_numpy()[v["tf"]]
    ms = patches["members"].to_numpy()
    n_ms = np.fromiter((len(m) for m in ms), dtype=np.int64, count=len(ms))
    flat = np.fromiter((t for m in ms for t in m), dtype=np.int64, count=int(n_ms.sum()))
    width = np.int64(max(int(tf["tile"].max()) if len(tf) else 0, int(flat.max()) if len(flat) else 0) + 1)
    pairs = np.repeat(patches["patch"].to_numpy(dtype=np.int64), n_ms) * width + flat
    v["member"] = np.isin(v["patch"].to_numpy(dtype=np.int64) * width + v["tile"].to_numpy(dtype=np.int64), pairs)
    if not params.wide_views:
        v = v[v["member"].to_numpy()]
    v = v.sort_values(["patch", "datatake", "member", "tile"], ascending=[True, True, False, True], kind="stable")
    v = v.drop_duplicates(["patch", "datatake"], keep="first")
    v = v.sort_values(["patch", "datetime", "tile"], kind="stable").reset_index(drop=True)
    return v[cols]


# --------------------------------------------------------------------------- pixel filters


def tile_source(item: Mapping[str, Any]):
    """A ``ProductSource`` for a catalog item, from its asset hrefs (to open its rasters)."""
    from spectralearth.catalog.enmap import ProductName, ProductSource
    from spectralearth.catalog.items import ASSET_KEYS

    by_key = {key: suffix for suffix, (key, *_rest) in ASSET_KEYS.items()}
    files = tuple(
        (by_key[k], a["href"]) for k, a in sorted((item.get("assets") or {}).items()) if k in by_key and a.get("href")
    )
    delivery = (item.get("properties") or {}).get("enmap:delivery", "folder")
    return ProductSource(str(item["id"]), ProductName.parse(str(item["id"])), "", delivery, files)


def _filter_tile(item: dict, windows: np.ndarray, patch_px: int, storage_options) -> np.ndarray:
    """Flagged fractions (n_windows, 4: nodata, cloud, cloud_shadow, snow) of one tile's windows; NaN = no mask."""
    from spectralearth.catalog.enmap import open_raster

    src = tile_source(item)
    out = np.full((len(windows), len(MASKS)), np.nan)
    for j, (suffix, flag) in enumerate(MASKS.values()):
        if src.file(suffix) is None:
            continue
        with open_raster(src, suffix, storage_options=storage_options) as ds:
            mask = ds.read(1)
        for k, (r, c) in enumerate(windows):
            w = mask[r : r + patch_px, c : c + patch_px]
            out[k, j] = float(np.count_nonzero(w == flag)) / (patch_px * patch_px)
    return out


def filter_views(
    views: pd.DataFrame,
    items: list[dict] | Mapping[int, dict],
    params: PlanParams = PlanParams(),
    *,
    storage_options: Mapping[str, Any] | None = None,
    client=None,
    progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Measure the QL-mask fractions of every candidate view (one task per tile) and flag failures.

    Adds columns ``nodata_frac``, ``cloud_frac``, ``cloud_shadow_frac``, ``snow_frac``
    (NaN where the tile has no such mask) and ``fail`` (the first failing filter, or "").
    """
    views = views.copy()
    fracs = np.full((len(views), len(MASKS)), np.nan)
    pairs = items.items() if isinstance(items, Mapping) else enumerate(items)
    has_masks = {
        int(i): any(a in (it.get("assets") or {}) for a in ("ql_quality_classes", "ql_quality_cloud"))
        for i, it in pairs
    }
    if params.pixel_filters and len(views):
        groups = {int(t): np.flatnonzero(views["tile"].to_numpy() == t) for t in np.unique(views["tile"]) if has_masks.get(int(t))}
        payload = {t: views[["row0", "col0"]].to_numpy()[idx] for t, idx in groups.items()}
        opts = dict(storage_options or {})
        if client is None:
            for t, w in payload.items():
                fracs[groups[t]] = _filter_tile(items[t], w, params.patch_px, opts)
                if progress:
                    progress(1)
        else:
            from distributed import as_completed

            futs = {
                client.submit(_filter_tile, items[t], w, params.patch_px, opts, key=f"plan-filter-{t}-{items[t]['id'][-40:]}", pure=False): t
                for t, w in payload.items()
            }
            for fut in as_completed(list(futs)):
                fracs[groups[futs[fut]]] = fut.result()
                fut.release()
                if progress:
                    progress(1)
    for j, name in enumerate(MASKS):
        views[f"{name}_frac"] = fracs[:, j]
    fail = np.full(len(views), "", dtype=object)
    for j, (name, limit) in enumerate(params.thresholds().items()):
        bad = (fail == "") & ~np.isnan(fracs[:, j]) & (fracs[:, j] > limit + 1e-12)
        fail[bad] = name
    views["fail"] = fail
    return views


# --------------------------------------------------------------------------- the job


@dataclass
class PlanReport:
    """What a planning run did."""

    catalog_url: str
    tiles: int = 0
    placement: dict[str, int] = field(default_factory=dict)
    candidate_views: int = 0
    candidate_views_members_only: int = 0
    removed_by_filter: dict[str, int] = field(default_factory=dict)
    patches_without_views: int = 0
    patches: int = 0
    views: int = 0
    views_members_only: int = 0
    multi_date_patches: int = 0
    patches_by_views: dict[str, int] = field(default_factory=dict)
    pixel_filters: bool = False
    tiles_from: str = ""
    """'planning copy' (the overlaps job's, read by the tasks) or 'catalog' (read by the job's process)."""
    params: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, float] = field(default_factory=dict)
    tasks: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _finalize(patches: gpd.GeoDataFrame, views: pd.DataFrame, patch_px: int) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """Keep passing views, drop patches without one, renumber (placement order; views contiguous)."""
    keep = views[views["fail"].to_numpy() == ""]
    counts = keep.groupby("patch").size()
    patches = patches[patches["patch"].isin(counts.index)].copy()
    new = pd.Series(np.arange(len(patches), dtype=np.int64), index=patches["patch"].to_numpy())
    patches["n_views"] = counts.reindex(patches["patch"]).to_numpy().astype(np.int16)
    keep = keep.assign(patch=new.reindex(keep["patch"]).to_numpy())
    keep = keep.sort_values(["patch", "datetime", "tile"], kind="stable").reset_index(drop=True)
    keep.insert(0, "view", np.arange(len(keep), dtype=np.int64))
    patches["patch"] = np.arange(len(patches), dtype=np.int64)
    start = np.zeros(len(patches), dtype=np.int64)
    if len(patches):
        start[1:] = np.cumsum(patches["n_views"].to_numpy(dtype=np.int64))[:-1]
    patches["view_start"] = start
    patches["patch_px"] = np.full(len(patches), patch_px, dtype=np.int16)
    patches = patches.drop(columns=["members"]).reset_index(drop=True)
    return patches, keep.drop(columns=["fail"])


def read_plan(catalog_url: str, *, storage_options: Mapping[str, Any] | None = None) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """Read the whole plan (``patches.parquet`` and ``views.parquet`` tables beside a catalog).

    For a plan too large for one process, read its parts one at a time
    (:func:`spectralearth.platform.tables.part_urls` of :func:`plan_tables`): patch ``k``
    of the plan is row ``k`` of the patches table, its views are rows
    ``view_start … view_start + n_views − 1`` of the views table, and the parts of the
    two tables cover the same patches.

    Raises:
        FileNotFoundError: no plan beside the catalog (run ``spectralearth plan``).
    """
    from spectralearth.platform import tables

    purl, vurl = plan_tables(catalog_url)
    if not tables.exists(purl, storage_options) or not tables.exists(vurl, storage_options):
        from spectralearth.platform import storage

        raise FileNotFoundError(f"no patch plan beside {storage.redact(catalog_url)}: run `spectralearth plan` first")
    patches = tables.read_table(purl, storage_options=storage_options)
    views = tables.read_table(vurl, storage_options=storage_options, geo=False)
    return patches, views


def plan_tables(catalog_url: str) -> tuple[str, str]:
    """URLs of the plan's two tables (patches, views) beside a catalog."""
    from spectralearth.pipelines.overlaps import output_base
    from spectralearth.platform import storage

    base = output_base(catalog_url)
    return storage.join(base, PATCHES_NAME), storage.join(base, VIEWS_NAME)


# The job runs in two passes of dask tasks, one task per bundle of whole components of the
# footprints (windows and views never cross a component):
#   1. place → views → QL filters → drop failing views, in the task; the task writes its
#      patches and views (numbered from 0) to a staging run and returns only counts;
#   2. with the counts, the client knows each bundle's first patch and view number; a
#      second task per bundle renumbers its staged part and writes the final part.
# The client holds the tile table and the counts, never the plan.

_STAGE = "stage"


def _task_regions(combo_parts: list[tuple[str, int]], owned: np.ndarray,
                  tile_rows: np.ndarray, epsg: np.ndarray, params: PlanParams,
                  storage_options) -> tuple[list[tuple[int, int, int, tuple[int, ...]]], dict[str, int]]:
    """The task's regions in placement order: its combinations (by −n, −area, members), then its single tiles.

    A combination belongs to the task owning its first member; ``combo_parts`` are the
    combinations table's part URLs with the global row of their first row.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from spectralearth.platform import storage

    counts = {"combinations": 0, "combinations_mixed_crs": 0, "combinations_unusable": 0, "single_tiles": 0}
    by_tile = {int(t): int(e) for t, e in zip(tile_rows.tolist(), epsg.tolist())}
    found: list[tuple[int, float, tuple[int, ...], int]] = []
    owned_arr = None
    for url, offset in combo_parts:
        table = pq.read_table(io.BytesIO(storage.read_bytes(url, storage_options)), columns=["members", "n", "area_m2"])
        if owned_arr is None:
            import pyarrow as pa

            owned_arr = pa.array(owned.astype(np.int64))
        first = pc.list_element(table.column("members"), 0).cast("int64")
        sel = np.flatnonzero(pc.is_in(first, value_set=owned_arr).to_numpy(zero_copy_only=False))
        if not len(sel):
            continue
        sub = table.take(sel)
        for row, ms, nn, area in zip((sel + offset).tolist(), sub.column("members").to_pylist(),
                                     sub.column("n").to_pylist(), sub.column("area_m2").to_pylist()):
            found.append((int(nn), float(area), tuple(int(m) for m in ms), int(row)))
    found.sort(key=lambda r: (-r[0], -round(r[1]), r[2]))
    regions: list[tuple[int, int, int, tuple[int, ...]]] = []
    for _n, _area, members, row in found:
        counts["combinations"] += 1
        if any(m not in by_tile for m in members):
            counts["combinations_unusable"] += 1
            continue
        if len({by_tile[m] for m in members}) != 1:
            counts["combinations_mixed_crs"] += 1
            continue
        regions.append((len(regions), len(members), row, members))
    if params.singles:
        for t in tile_rows.tolist():
            regions.append((len(regions), 1, -1, (int(t),)))
            counts["single_tiles"] += 1
    return regions, counts


def _patches_frame(rec: dict[str, np.ndarray], order: np.ndarray | None = None) -> gpd.GeoDataFrame:
    """Placed windows (``_place_group`` records) as a frame, numbered from 0, in ``order`` (default: by region
    position, then as placed)."""
    pos = np.asarray(rec["position"], dtype=np.int64)
    if order is None:
        order = np.lexsort((np.arange(len(pos)), pos))
    n = len(pos)

    def col(key: str, dtype) -> np.ndarray:
        return np.asarray(rec[key], dtype=dtype)[order] if n else np.zeros(0, dtype)

    return gpd.GeoDataFrame(
        {
            "patch": np.arange(n, dtype=np.int64),
            "crs": col("crs", np.int32),
            "x0": col("x0", float),
            "y0": col("y0", float),
            "lon": col("lon", float),
            "lat": col("lat", float),
            "priority": col("priority", np.int16),
            "combination": col("combination", np.int64),
            "members": pd.Series(list(col("members", object)), dtype=object),
        },
        geometry=gpd.GeoSeries(col("geometry", object), crs=4326).values,
        crs=4326,
    )


def _plan_bundle(k: int, tf: pd.DataFrame | tuple, owned: np.ndarray, combo_parts: list[tuple[str, int]],
                 items: dict[int, dict], params: PlanParams, patches_stage, views_stage, storage_options) -> dict[str, Any]:
    """Pass 1 for one bundle of components: place, select and filter views, write the staged parts; return counts."""
    if isinstance(tf, tuple):  # ("parts", part URLs, rows): the task reads its tiles from the planning copy
        from spectralearth.pipelines.overlaps import read_planning_tiles

        rows = read_planning_tiles(tf[1], tf[2], storage_options=storage_options)
        tf = _grid_frame(rows, rows)
    else:
        tf = tf.copy()
        tf["geometry"] = shapely.from_wkb(tf["geometry"].to_numpy())
    tile_rows = tf["tile"].to_numpy(dtype=np.int64)
    epsg = tf["epsg"].to_numpy(dtype=np.int64)
    regions, counts = _task_regions(combo_parts, owned, tile_rows, epsg, params, storage_options)
    members = {m for r in regions for m in r[3]}
    row_of = {int(t): i for i, t in enumerate(tile_rows.tolist())}
    footprints = tf["geometry"].to_numpy()
    rec, placed = _place_group(regions, {m: footprints[row_of[m]] for m in members},
                               {m: int(epsg[row_of[m]]) for m in members}, params)
    counts.update(placed)
    patches = _patches_frame(rec)
    counts["placed"] = len(patches)
    views = _views_of(patches, tf, params)
    out: dict[str, Any] = {"k": k, "counts": counts, "candidate_views": len(views),
                           "candidate_views_members_only": int(views["member"].sum()) if len(views) else 0}
    views = filter_views(views, items, params, storage_options=storage_options)
    out["removed_by_filter"] = {name: int((views["fail"] == name).sum()) for name in MASKS}
    patches, views = _finalize(patches, views, params.patch_px)
    out["patches"], out["views"] = len(patches), len(views)
    out["views_members_only"] = int(views["member"].sum()) if len(views) else 0
    nv = patches["n_views"].to_numpy() if len(patches) else np.zeros(0, int)
    out["multi_date_patches"] = int((nv > 1).sum())
    out["patches_by_views"] = {str(int(a)): int(b) for a, b in zip(*np.unique(nv, return_counts=True))}
    out["patches_part"] = patches_stage.part(k, patches)
    out["views_part"] = views_stage.part(k, views)
    return out


def _renumber_bundle(k: int, patch_offset: int, view_offset: int, patches_stage, views_stage,
                     patches_out, views_out, storage_options) -> tuple[dict, dict]:
    """Pass 2 for one bundle: its staged parts with the plan-wide patch and view numbers."""
    from spectralearth.platform import storage, tables

    patches = tables.read_part(storage.join(patches_stage.url, tables.part_name(patches_stage.run, k)), storage_options=storage_options)
    views = tables.read_part(storage.join(views_stage.url, tables.part_name(views_stage.run, k)), storage_options=storage_options, geo=False)
    patches["patch"] += patch_offset
    patches["view_start"] += view_offset
    views["patch"] += patch_offset
    views["view"] += view_offset
    first = {"first_patch": patch_offset, "first_view": view_offset}
    return patches_out.part(k, patches, **first), views_out.part(k, views, **first)


def _bundles(tf: pd.DataFrame, n_tasks: int) -> list[np.ndarray]:
    """Tile-frame rows per task: whole components of the footprints, contiguous in component order."""
    geoms = np.asarray(tf["geometry"].to_numpy(), dtype=object)
    return _cut_components(tile_components(geoms) if len(geoms) else np.zeros(0, np.int64), n_tasks)


def _cut_components(comp: np.ndarray, n_tasks: int) -> list[np.ndarray]:
    """Positions in ``comp`` per task: whole components, contiguous in component order, about equal tiles each."""
    if not len(comp):
        return [np.zeros(0, np.int64)]
    sizes = np.bincount(comp).astype(float)
    target = sizes.sum() / max(1, n_tasks)
    cut = np.floor(np.cumsum(sizes) / target - 1e-9).astype(np.int64)  # component -> bundle, contiguous
    order = np.argsort(comp, kind="stable")
    by_bundle = cut[comp[order]]
    return [order[by_bundle == b] for b in np.unique(by_bundle)]


def _planning_copy(catalog_url: str, base: str, storage_options, patch_px: int) -> tuple[pd.DataFrame, list[str]] | None:
    """The overlaps job's components and planning-copy parts when they describe this catalog with its grid, else None.

    The copy is used only when the components' ids are the catalog's ids, row for row: the
    components' footer holds the digest of the ids they were computed from, compared with the
    catalog's ids read a batch at a time, so a catalog indexed again after the overlaps job is
    read itself (and so are components written before the digest was).
    """
    import pyarrow.parquet as pq

    from spectralearth.catalog.catalogio import IDS_DIGEST_KEY, _read_parquet, catalog_ids_digest
    from spectralearth.pipelines.overlaps import COMPONENTS_NAME, GRID_COLUMNS, PLANNING_TILES_NAME
    from spectralearth.platform import storage, tables

    purl, curl = storage.join(base, PLANNING_TILES_NAME), storage.join(base, COMPONENTS_NAME)
    if not tables.exists(purl, storage_options):
        return None
    doc = tables.manifest(purl, storage_options)
    # a window (patch_px² px of at least 1 m²) within two footprints is an edge of any graph
    # whose smallest edge is below that: windows and views then never cross its components
    if float(doc.get("min_area_m2", math.inf)) > float(patch_px) ** 2:
        return None
    parts = tables.part_urls(purl, storage_options, doc=doc)
    if not parts:
        return None
    fs, path = storage.filesystem(parts[0], storage_options)
    with fs.open(path, "rb") as f:  # the footer only
        if not set(GRID_COLUMNS) <= set(pq.read_schema(f).names):
            return None
    try:
        fs, path = storage.filesystem(curl, storage_options)
        with fs.open(path, "rb") as f:  # the footer: the digest of the ids the components were computed from
            written = (pq.read_schema(f).metadata or {}).get(IDS_DIGEST_KEY)
        if written is None or written.decode() != catalog_ids_digest(catalog_url, storage_options=storage_options):
            return None
        comps = _read_parquet(curl, storage_options, columns=["component", "usable", "planning_part"])
    except (FileNotFoundError, KeyError, ValueError):
        return None
    return (comps.to_pandas(), parts) if comps is not None else None


def plan_job(
    catalog_url: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    params: PlanParams = PlanParams(),
    cluster=None,
    progress: bool = False,
    n_tasks: int | None = None,
) -> PlanReport:
    """Plan patches and views for a catalog and write them beside it, as dask tasks.

    Reads the ``combinations.parquet`` table (optional: without it only single tiles are
    planned) and the tiles. When the overlaps job's outputs describe this catalog (same
    ids, row for row), the tiles are split into bundles of whole components of the overlap
    graph and each task reads its own tiles from ``planning_tiles.parquet``: this process
    reads integers per tile, not footprints. Otherwise this process reads
    ``tiles.parquet`` (simplified footprints) and bundles whole components of the
    footprints. ``report.tiles_from`` says which. One task per bundle places its windows, selects
    their views and filters them with the QL masks (skipped for footprint-only tiles)
    and writes its part of the ``patches.parquet`` and ``views.parquet`` tables
    (:mod:`spectralearth.platform.tables`); a second task per bundle gives its part the
    plan-wide patch and view numbers. Patches are ordered by bundle (components in
    label order), then in placement order. ``plan-report.json`` sums the tasks' counts.

    Args:
        catalog_url: the tile catalog.
        storage_options: fsspec options (no secrets).
        params: placement and filter parameters.
        cluster: a ``ClusterSpec`` to run the tasks on; None or ``kind="sync"`` runs
            them one after the other in this process.
        progress: show progress bars.
        n_tasks: bundles (default: 4 per worker thread; 1 in this process).
    """
    from spectralearth.catalog import read_item_dicts, read_tiles
    from spectralearth.pipelines.combinations import COMBINATIONS_NAME
    from spectralearth.pipelines.overlaps import output_base
    from spectralearth.platform import storage, tables
    from spectralearth.platform.cluster import cluster_client

    t0 = time.perf_counter()
    report = PlanReport(catalog_url=storage.redact(catalog_url), params=asdict(params))
    base = output_base(catalog_url)
    t = time.perf_counter()
    from spectralearth.pipelines.overlaps import PLANNING_SIMPLIFY_DEG

    copy = _planning_copy(catalog_url, base, storage_options, params.patch_px)
    if copy is None:  # no (current) overlaps outputs: the catalog itself, here
        tiles = read_tiles(catalog_url, storage_options=storage_options, simplify_deg=PLANNING_SIMPLIFY_DEG)
        report.tiles = len(tiles)
        tf = _tile_frame(tiles)
        del tiles
    else:
        comps, planning_parts = copy
        report.tiles = len(comps)
    report.tiles_from = "catalog" if copy is None else "planning copy"
    curl = storage.join(base, COMBINATIONS_NAME)
    combo_parts: list[tuple[str, int]] = []
    if tables.exists(curl, storage_options):
        doc = tables.manifest(curl, storage_options)
        offsets = np.concatenate([[0], np.cumsum([int(p["rows"] or 0) for p in doc["parts"]])])
        combo_parts = list(zip(tables.part_urls(curl, storage_options, doc=doc), offsets[:-1].tolist()))
    with_masks = _tiles_with_masks(catalog_url, storage_options)
    report.pixel_filters = bool(params.pixel_filters and with_masks)
    # the item dicts (11,636 of them take ~20 s to build) only when there are masks to read
    items = read_item_dicts(catalog_url, storage_options=storage_options) if report.pixel_filters else []
    report.stages["load"] = round(time.perf_counter() - t, 3)

    local = cluster is None or cluster.kind == "sync"
    purl, vurl = plan_tables(catalog_url)
    p_out, v_out = tables.TableWriter(purl, storage_options), tables.TableWriter(vurl, storage_options)
    p_stage = tables.TableWriter(purl, storage_options, run=f"{p_out.run}-{_STAGE}")
    v_stage = tables.TableWriter(vurl, storage_options, run=f"{v_out.run}-{_STAGE}")
    opts = dict(storage_options or {})
    if copy is None:
        n_rows = int(tf["tile"].max()) + 1 if len(tf) else 0
    all_rows = np.arange(report.tiles if copy is not None else max(n_rows, report.tiles), dtype=np.int64)

    def payloads(n: int):
        if copy is None:
            bundles = _bundles(tf, n)
            tile_of = tf["tile"].to_numpy()
        else:  # the overlap graph's components (usable tiles); each task reads the planning parts of its tiles
            tile_of = np.flatnonzero(comps["usable"].to_numpy(dtype=bool) & (comps["planning_part"].to_numpy() >= 0))
            bundles = _cut_components(np.unique(comps["component"].to_numpy()[tile_of], return_inverse=True)[1], n)
        assigned = np.zeros(len(all_rows), dtype=bool)
        for rows in bundles:
            assigned[tile_of[rows]] = True
        for k, rows in enumerate(bundles):
            owned = np.sort(tile_of[rows]).astype(np.int64)
            if copy is None:
                sub = tf.iloc[rows].copy()
                sub["geometry"] = shapely.to_wkb(np.asarray(sub["geometry"].to_numpy(), dtype=object))
                sub = sub.reset_index(drop=True)
            else:
                held = np.unique(comps["planning_part"].to_numpy()[owned])
                sub = ("parts", [planning_parts[j] for j in held.tolist()], owned)
            its = {int(t): items[int(t)] for t in owned} if items else {}
            if k == 0:  # unusable rows own the combinations they start (counted as unusable there)
                owned = np.concatenate([owned, all_rows[~assigned]])
            yield k, sub, owned, its

    renumber_started = [0.0]

    def passes(client) -> tuple[list[dict], list[tuple[dict, dict]]]:
        """Pass 1 (place, views, filter; staged parts) and pass 2 (renumbered parts), here or on ``client``."""
        t = time.perf_counter()
        threads = sum(client.nthreads().values()) if client is not None else 0
        jobs = list(payloads(n_tasks or (4 * max(1, threads) if client is not None else 1)))
        bar = _bar(progress, "plan: place, views, filter", len(jobs))
        firsts = []
        if client is None:
            for k, sub, owned, its in jobs:
                firsts.append(_plan_bundle(k, sub, owned, combo_parts, its, params, p_stage, v_stage, opts))
                if bar:
                    bar.update(1)
        else:
            from distributed import as_completed

            futs = [client.submit(_plan_bundle, k, sub, owned, combo_parts, its, params, p_stage, v_stage, opts,
                                  key=f"plan-bundle-{k}-{p_out.run}", pure=False) for k, sub, owned, its in jobs]
            for fut in as_completed(futs):
                firsts.append(fut.result())
                fut.release()
                if bar:
                    bar.update(1)
        if bar:
            bar.close()
        firsts.sort(key=lambda f: f["k"])
        report.stages["place_views_filter"] = round(time.perf_counter() - t, 3)
        renumber_started[0] = time.perf_counter()
        p_off, v_off = _offsets(firsts)
        second = [(f["k"], int(p_off[i]), int(v_off[i]), p_stage, v_stage, p_out, v_out, opts) for i, f in enumerate(firsts)]
        if client is None:
            return firsts, [_renumber_bundle(*arg) for arg in second]
        return firsts, client.gather([client.submit(_renumber_bundle, *arg, key=f"plan-renumber-{arg[0]}-{p_out.run}", pure=False)
                                      for arg in second])

    try:
        if local:
            firsts, finals = passes(None)
        else:
            with cluster_client(cluster) as client:
                firsts, finals = passes(client)
    except BaseException:
        for w in (p_stage, v_stage, p_out, v_out):
            w.abandon()
        raise
    p_entries, v_entries = [f[0] for f in finals], [f[1] for f in finals]
    meta = {"patches": int(sum(f["patches"] for f in firsts)), "views": int(sum(f["views"] for f in firsts))}
    v_out.commit(v_entries, **meta)
    p_out.commit(p_entries, **meta)
    report.stages["renumber_write"] = round(time.perf_counter() - renumber_started[0], 3)

    counts: dict[str, int] = {}
    for f in firsts:
        for key, v in f["counts"].items():
            counts[key] = counts.get(key, 0) + int(v)
    report.placement = counts
    report.candidate_views = int(sum(f["candidate_views"] for f in firsts))
    report.candidate_views_members_only = int(sum(f["candidate_views_members_only"] for f in firsts))
    report.removed_by_filter = {name: int(sum(f["removed_by_filter"][name] for f in firsts)) for name in MASKS}
    report.patches = meta["patches"]
    report.views = meta["views"]
    report.patches_without_views = counts.get("placed", 0) - report.patches
    report.views_members_only = int(sum(f["views_members_only"] for f in firsts))
    report.multi_date_patches = int(sum(f["multi_date_patches"] for f in firsts))
    by_views: dict[int, int] = {}
    for f in firsts:
        for key, v in f["patches_by_views"].items():
            by_views[int(key)] = by_views.get(int(key), 0) + v
    report.patches_by_views = {str(key): by_views[key] for key in sorted(by_views)}
    report.tasks = len(firsts)
    report.seconds = round(time.perf_counter() - t0, 3)
    storage.atomic_write_bytes(storage.join(base, REPORT_NAME), json.dumps(report.to_dict(), indent=2).encode(), storage_options)
    return report


def _offsets(firsts: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """First plan-wide patch and view number of each bundle (bundles in order)."""
    p = np.concatenate([[0], np.cumsum([f["patches"] for f in firsts])])[:-1]
    v = np.concatenate([[0], np.cumsum([f["views"] for f in firsts])])[:-1]
    return p.astype(np.int64), v.astype(np.int64)


def _tiles_with_masks(catalog_url: str, storage_options: Mapping[str, Any] | None) -> int:
    """Tiles of the catalog with a QL quality mask asset, counted from those assets' ``href`` alone.

    Only the mask assets' href column chunks are read, a batch at a time: the whole ``assets``
    column of a 232k-tile catalog takes ~190 MB in this process, these leaves a few MB.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from spectralearth.catalog.catalogio import TILES_FILE
    from spectralearth.platform import storage

    fs, path = storage.filesystem(storage.join(catalog_url, TILES_FILE), storage_options)
    if not fs.exists(path):
        raise FileNotFoundError(f"no tile table in the catalog {storage.redact(catalog_url)}")
    with fs.open(path, "rb") as f:
        pf = pq.ParquetFile(f)
        schema = pf.schema_arrow
        atype = schema.field("assets").type if "assets" in schema.names else None
        if atype is None or not hasattr(atype, "num_fields"):
            return 0
        fields = {atype.field(i).name: atype.field(i).type for i in range(atype.num_fields)}
        keys = [k for k in ("ql_quality_classes", "ql_quality_cloud") if k in fields]
        if not keys:
            return 0
        leaf = {k: "href" if hasattr(fields[k], "num_fields") and fields[k].get_field_index("href") >= 0 else None for k in keys}
        cols = [f"assets.{k}.{leaf[k]}" if leaf[k] else f"assets.{k}" for k in keys]
        count = 0
        for batch in pf.iter_batches(batch_size=65_536, columns=cols):
            assets = batch.column("assets")
            mask = None
            for k in keys:
                valid = pc.is_valid(pc.struct_field(assets, k))
                mask = valid if mask is None else pc.or_(mask, valid)
            count += int(pc.sum(mask).as_py() or 0)
        return count


def _bar(enabled: bool, desc: str, total: int):
    if not enabled or not total:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="task", dynamic_ncols=True, leave=False)
