"""The overlap graph: nodes are tiles, an edge joins two tiles whose footprints share area.

Footprints are WGS84 polygons or multipolygons (a footprint crossing the antimeridian
is split there into a MultiPolygon). Candidate pairs come from the footprints'
envelopes (one vectorised STRtree query); the exact test then runs in dask tasks of
spatially close pairs (Hilbert order): each intersects the exact footprints and
measures the intersection in a metric CRS.

Areas are never in degree²: every intersection is projected, vertex by vertex, to
the UTM zone of its own centroid (``utm_epsg``) and measured there, so a pair of
tiles on either side of a zone boundary is measured in the zone where most of the
shared area lies. The regular 6° zones are used (no Norway/Svalbard exceptions).
A geometry whose parts lie on both sides of the antimeridian gets the zone of its
centroid taken with longitudes unwrapped (east of 180° rather than -180°); once
projected, its parts are one polygon again (they are joined along the cut).
"""

from __future__ import annotations

import functools
import io
import logging
import math
import posixpath
import time
from dataclasses import asdict, dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from spectralearth.platform.cluster import ClusterSpec, cluster_client

__all__ = [
    "GRID_COLUMNS",
    "OverlapReport",
    "PreparedTiles",
    "connected_components",
    "degree_stats",
    "metric_geometry",
    "overlap_edges",
    "overlaps_job",
    "prepare_tiles",
    "read_planning_tiles",
    "utm_epsg",
]

log = logging.getLogger(__name__)

DATATAKE = "enmap:datatake_id"
TILE_ID = "enmap:tile_id"
EDGES_NAME = "overlap_edges.parquet"
COMPONENTS_NAME = "overlap_components.parquet"
PLANNING_TILES_NAME = "planning_tiles.parquet"


# --------------------------------------------------------------------------- geometry helpers


def utm_epsg(lon, lat) -> np.ndarray:
    """EPSG code (326zz north / 327zz south) of the regular UTM zone holding each point."""
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    zone = np.clip(np.floor((lon + 180.0) / 6.0).astype(np.int64) + 1, 1, 60)
    return np.where(lat >= 0, 32600 + zone, 32700 + zone).astype(np.int64)


@functools.lru_cache(maxsize=256)
def _transformer(epsg: int) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(4326, int(epsg), always_xy=True)


def crosses_antimeridian(geoms: np.ndarray) -> np.ndarray:
    """True for geometries with parts on both sides of the antimeridian (lon span > 180°)."""
    geoms = np.asarray(geoms, dtype=object)
    if len(geoms) == 0:
        return np.zeros(0, dtype=bool)
    b = shapely.bounds(geoms)
    return np.nan_to_num(b[:, 2] - b[:, 0], nan=0.0) > 180.0


def _unwrap(geoms: np.ndarray) -> np.ndarray:
    """Longitudes below 0 moved by +360° (for geometries cut at the antimeridian)."""
    return shapely.transform(geoms, lambda xy: np.column_stack([np.where(xy[:, 0] < 0, xy[:, 0] + 360.0, xy[:, 0]), xy[:, 1]]))


def centroid_lonlat(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centroid longitude and latitude; geometries cut at the antimeridian are unwrapped first."""
    geoms = np.asarray(geoms, dtype=object)
    c = shapely.centroid(geoms)
    lon, lat = shapely.get_x(c), shapely.get_y(c)
    am = crosses_antimeridian(geoms)
    if am.any():
        cu = shapely.centroid(_unwrap(geoms[am]))
        lon[am] = (shapely.get_x(cu) + 180.0) % 360.0 - 180.0
        lat[am] = shapely.get_y(cu)
    return lon, lat


def project(geoms: np.ndarray, epsg: np.ndarray) -> np.ndarray:
    """Project WGS84 geometries vertex by vertex to per-geometry EPSG codes.

    The parts of a geometry cut at the antimeridian are adjacent once projected (PROJ
    takes longitudes relative to the zone's meridian); they are joined into one.
    """
    geoms = np.asarray(geoms, dtype=object)
    epsg = np.asarray(epsg, dtype=np.int64)
    out = np.empty(len(geoms), dtype=object)
    for code in np.unique(epsg):
        sel = epsg == code
        tr = _transformer(int(code))

        def fwd(xy: np.ndarray, tr=tr) -> np.ndarray:
            x, y = tr.transform(xy[:, 0], xy[:, 1])
            return np.column_stack([x, y])

        out[sel] = shapely.transform(geoms[sel], fwd)
    am = np.flatnonzero(crosses_antimeridian(geoms))
    for k in am:
        out[k] = _join_cut(out[k])
    return out


def _join_cut(geom):
    """One polygon from the projected parts of a geometry cut at the antimeridian."""
    parts = shapely.get_parts(geom)
    if len(parts) < 2:
        return geom
    # the cut edges coincide up to rounding of the two projected longitudes (±180°)
    try:
        joined = shapely.union_all(parts, grid_size=1e-3)
    except shapely.errors.GEOSException:
        # parts that are not a clean cut (e.g. a footprint wrapped the wrong way round the
        # globe, repaired by make_valid): measured as they are rather than failing the job
        joined = shapely.union_all(shapely.make_valid(parts))
    return polygonal(np.array([joined], dtype=object))[0]


def polygonal(geoms: np.ndarray) -> np.ndarray:
    """Keep only the areal part of each geometry (drop points/lines of collections)."""
    geoms = np.asarray(geoms, dtype=object)
    out = geoms.copy()
    kind = shapely.get_type_id(geoms)
    for i in np.flatnonzero(kind == 7):  # GeometryCollection
        parts = [p for p in shapely.get_parts(geoms[i]) if shapely.get_type_id(p) in (3, 6)]
        polys = []
        for p in parts:
            polys.extend(shapely.get_parts(p))
        out[i] = shapely.multipolygons(polys) if polys else shapely.Polygon()
    return out


def metric_geometry(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Project WGS84 geometries to the UTM zone of their centroid.

    Returns:
        ``(geoms_utm, epsg, area_m2)``; empty input geometries get area 0 and EPSG 0.
    """
    geoms = np.asarray(geoms, dtype=object)
    n = len(geoms)
    epsg = np.zeros(n, dtype=np.int64)
    area = np.zeros(n, dtype=float)
    utm = np.empty(n, dtype=object)
    if n == 0:
        return utm, epsg, area
    ok = ~shapely.is_empty(geoms) & (shapely.area(geoms) > 0)
    if ok.any():
        lon, lat = centroid_lonlat(geoms[ok])
        epsg[ok] = utm_epsg(lon, lat)
        # Vertices on a straight WGS84 edge change nothing in WGS84 but bend the edge once
        # projected: one shape intersected in two orders (with and without such vertices)
        # would measure differently. They are dropped first (tolerance 1e-10°, 0.01 mm).
        wgs = geoms[ok]
        simple = shapely.simplify(wgs, 1e-10, preserve_topology=False)
        keep = shapely.is_empty(simple) | ~shapely.is_valid(simple)  # Douglas-Peucker may break a sliver
        simple[keep] = wgs[keep]
        utm[ok] = project(simple, epsg[ok])
        area[ok] = shapely.area(utm[ok].astype(object))
    utm[~ok] = shapely.Polygon()
    return utm, epsg, area


# --------------------------------------------------------------------------- input checks


@dataclass(frozen=True)
class PreparedTiles:
    """The usable part of a tile table, with what was repaired or set aside."""

    tiles: gpd.GeoDataFrame
    """Usable tiles: columns tile (row in the input table), id, datatake, geometry (WGS84)."""
    n_tiles: int
    """Rows in the input table."""
    repaired: int
    """Invalid footprints (e.g. self-intersecting) repaired with make_valid."""
    quarantined: pd.DataFrame
    """Rows set aside: columns tile, id, reason."""


PLANNING_SIMPLIFY_DEG = 1e-5
"""Tolerance (degrees) to which planning simplifies footprints: at most 1.1 m anywhere, 1/27 of a
30 m pixel. A catalog footprint from METADATA.XML is the swath outline densified to ~130
vertices along nearly straight edges; every intersection the overlap graph, the combination
search and the placement compute is linear in the vertex count, and the simplified outline
has ~13. Measured on the 11,636 tiles of the scale benchmark: the largest change of a
footprint's area is 1e-13 of it (see ``tests/test_overlaps.py``)."""


def _check_rows(geoms: np.ndarray, datatake: np.ndarray, simplify_deg: float, *, simplified: bool):
    """The per-row checks of :func:`prepare_tiles` (everything but the duplicates, which need the whole table).

    Returns:
        ``(geoms, reason, invalid)``: the footprints (invalid ones repaired, usable ones
        simplified; ``simplified``: the valid ones already were), the reason a row is set
        aside ("" if usable so far) and which rows were repaired.
    """
    reason = np.full(len(geoms), "", dtype=object)
    missing = pd.isna(geoms)
    geoms = np.where(missing, shapely.Polygon(), geoms)
    reason[missing | shapely.is_empty(geoms)] = "empty footprint"
    invalid = (reason == "") & ~shapely.is_valid(geoms)
    if invalid.any():
        geoms[invalid] = polygonal(shapely.make_valid(geoms[invalid]))
    areal = np.isin(shapely.get_type_id(geoms), (3, 6))
    reason[(reason == "") & ~areal] = "footprint is not a polygon"
    reason[(reason == "") & (shapely.area(geoms) <= 0)] = "footprint has no area"
    reason[(reason == "") & np.isnan(np.asarray(datatake, dtype=float))] = f"missing {DATATAKE}"
    ok = reason == ""
    todo = ok & invalid if simplified else ok
    if simplify_deg > 0 and todo.any():
        geoms[todo] = shapely.simplify(geoms[todo], simplify_deg, preserve_topology=True)
    return geoms, reason, invalid


def _supersede(reason: np.ndarray, datatake: np.ndarray, tile_id: np.ndarray, ids) -> None:
    """Set aside (in ``reason``) every delivery of a (datatake, tile) but the newest (largest product id).

    Only the rows of keys that occur more than once are compared (sorted integers find them;
    ``ids`` is any sequence that numpy can index, e.g. a pyarrow array), so a catalog without
    duplicates costs two sorts of integers, not a group-by of its ids.
    """
    pos = np.flatnonzero(reason == "")
    dt, t = np.asarray(datatake, dtype=float)[pos], np.asarray(tile_id)[pos]
    order = np.lexsort((t, dt))
    same = (dt[order][1:] == dt[order][:-1]) & (t[order][1:] == t[order][:-1])
    if not same.any():
        return
    in_dup = np.zeros(len(order), dtype=bool)
    in_dup[1:] |= same
    in_dup[:-1] |= same
    rows = np.sort(pos[order[in_dup]])
    picked = ids.take(rows).to_pylist() if hasattr(ids, "to_pylist") else list(np.asarray(ids, dtype=object)[rows])
    key = pd.DataFrame({"dt": np.asarray(datatake, dtype=float)[rows], "t": np.asarray(tile_id)[rows],
                        "id": np.array([str(v) for v in picked], dtype=object), "pos": rows})
    newest = key.groupby(["dt", "t"])["id"].transform("max")
    dup = (key["id"] != newest).to_numpy()
    reason[key["pos"].to_numpy()[dup]] = "superseded by " + newest.to_numpy()[dup].astype(str)


def _checked_table(tiles: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The tile table in WGS84, after checking it has rows and the columns the graph needs."""
    if tiles is None or len(tiles) == 0:
        raise ValueError("the tile table is empty: no tiles to build an overlap graph from")
    for col in ("id", DATATAKE):
        if col not in tiles.columns:
            raise ValueError(f"the tile table has no column {col!r} (columns: {list(tiles.columns)})")
    if tiles.crs is not None and not tiles.crs.equals(pyproj.CRS.from_epsg(4326)):
        tiles = tiles.to_crs(4326)
    return tiles


def prepare_tiles(tiles: gpd.GeoDataFrame, *, simplify_deg: float = PLANNING_SIMPLIFY_DEG) -> PreparedTiles:
    """Check a tile table and keep the rows that can take part in the graph.

    Invalid footprints are repaired with ``shapely.make_valid`` (their areal part
    is kept); missing, empty or zero-area footprints are quarantined; of several
    deliveries of the same (datatake, tile) only the newest (largest product id,
    i.e. newest version, then processing time) is kept. The usable footprints are
    simplified by ``simplify_deg`` (see :data:`PLANNING_SIMPLIFY_DEG`).

    Args:
        tiles: the tile table (row position = tile index), WGS84 or any CRS.
        simplify_deg: Douglas-Peucker tolerance in degrees (topology preserved); 0 keeps
            every vertex.

    Raises:
        ValueError: the table is empty or lacks a required column.
    """
    tiles = _checked_table(tiles)
    n = len(tiles)
    ids = tiles["id"].astype(str).to_numpy()
    datatake = pd.to_numeric(tiles[DATATAKE], errors="coerce").to_numpy()
    from spectralearth.catalog.catalogio import SIMPLIFIED_ATTR

    # read_tiles(simplify_deg=...) already simplified the footprints that were valid
    geoms, reason, invalid = _check_rows(np.asarray(tiles.geometry.values, dtype=object), datatake, simplify_deg,
                                         simplified=tiles.attrs.get(SIMPLIFIED_ATTR) == simplify_deg)
    repaired = int(invalid.sum())
    if repaired:
        log.warning("repaired %d invalid footprints with make_valid", repaired)
    if TILE_ID in tiles.columns:
        _supersede(reason, datatake, tiles[TILE_ID].to_numpy(), ids)
    keep = reason == ""
    usable = gpd.GeoDataFrame(
        {
            "tile": np.flatnonzero(keep).astype(np.int64),
            "id": ids[keep],
            "datatake": datatake[keep].astype(np.int64),
        },
        geometry=gpd.GeoSeries(geoms[keep], crs=4326).values,
        crs=4326,
    )
    quarantined = pd.DataFrame({"tile": np.flatnonzero(~keep), "id": ids[~keep], "reason": reason[~keep]})
    if len(quarantined):
        log.warning("quarantined %d tiles: %s", len(quarantined), quarantined["reason"].value_counts().to_dict())
    return PreparedTiles(tiles=usable, n_tiles=n, repaired=repaired, quarantined=quarantined)


# --------------------------------------------------------------------------- the graph


_EDGE_META = pd.DataFrame(
    {
        "a": pd.Series([], dtype="int64"),
        "b": pd.Series([], dtype="int64"),
        "area_m2": pd.Series([], dtype="float64"),
        "utm_epsg": pd.Series([], dtype="int64"),
        "wkb": pd.Series([], dtype="object"),
    }
)


def _exact_pairs(wkb_a: np.ndarray, wkb_b: np.ndarray, a: np.ndarray, b: np.ndarray, min_area_m2: float,
                 keep_geometry: bool, tiles: tuple[pd.Series, pd.Series] | None = None, writer=None, k: int = 0):
    """One task: candidate pairs (a < b, envelopes intersect) -> exact edges (positive metric area).

    The candidates come from the footprints' envelopes (the cheapest simplified footprint);
    the exact footprints are intersected here and measured in the UTM zone of each
    intersection's centroid. With ``writer`` (a :class:`~spectralearth.platform.tables.TableWriter`)
    and ``tiles`` (id and datatake by tile row), the task writes its edges as part ``k`` of
    the edges table and returns ``(entry, (a, b) of its edges as an int32 array, same-datatake edges)``.
    """
    if len(a) == 0:
        out = _EDGE_META.copy()
    else:
        ga = shapely.from_wkb(wkb_a) if isinstance(wkb_a[0], bytes) else wkb_a  # WKB shipped, or geometries read by the task
        gb = shapely.from_wkb(wkb_b) if isinstance(wkb_b[0], bytes) else wkb_b
        hit = shapely.intersects(ga, gb)
        ga, gb, a, b = ga[hit], gb[hit], a[hit], b[hit]
        inter = shapely.intersection(ga, gb)
        _, epsg, area = metric_geometry(inter)
        keep = area > min_area_m2
        wkb = shapely.to_wkb(polygonal(inter[keep])) if keep_geometry else np.full(int(keep.sum()), None, dtype=object)
        out = pd.DataFrame(
            {
                "a": a[keep].astype("int64"),
                "b": b[keep].astype("int64"),
                "area_m2": area[keep],
                "utm_epsg": epsg[keep],
                "wkb": pd.Series(list(wkb), dtype="object"),
            }
        )
    if writer is None:
        return out
    full = _edge_frame(out, *tiles, keep_geometry=keep_geometry)
    # what the scheduling process needs of the edges: their tiles (as int32: 8 bytes an edge) and the same-datatake count
    ends = np.column_stack([full["a"].to_numpy(), full["b"].to_numpy()]).astype(np.int32)
    return writer.part(k, full), (ends, int(full["same_datatake"].sum()))


def _edge_frame(edges: pd.DataFrame, ids: pd.Series, datatakes: pd.Series, *, keep_geometry: bool) -> pd.DataFrame:
    """Edges (a, b, area_m2, utm_epsg, wkb) as written: sorted by (a, b), with tile ids, same_datatake and geometry."""
    edges = edges.sort_values(["a", "b"], kind="stable").reset_index(drop=True)
    out = pd.DataFrame(
        {
            "a": edges["a"].to_numpy(dtype=np.int64),
            "b": edges["b"].to_numpy(dtype=np.int64),
            "id_a": ids.reindex(edges["a"]).to_numpy(dtype=object),
            "id_b": ids.reindex(edges["b"]).to_numpy(dtype=object),
            "area_m2": edges["area_m2"].to_numpy(dtype=float),
            "utm_epsg": edges["utm_epsg"].to_numpy(dtype=np.int64),
            "same_datatake": datatakes.reindex(edges["a"]).to_numpy() == datatakes.reindex(edges["b"]).to_numpy(),
        }
    )
    if keep_geometry:
        geom = shapely.from_wkb(edges["wkb"].to_numpy()) if len(edges) else np.array([], dtype=object)
        return gpd.GeoDataFrame(out, geometry=gpd.GeoSeries(geom, crs=4326).values, crs=4326)
    return out


def default_npartitions(n_tiles: int) -> int:
    """Tasks of the exact edge test: about 2,000 footprints each, at least 1.

    A task of 2,000 footprints and their candidate pairs is a few MB and ~0.5 s of
    shapely work; smaller tasks only add scheduling overhead.
    """
    return max(1, math.ceil(n_tiles / 2000))


def candidate_pairs(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(i, j)``, ``i < j``, of geometries whose envelopes intersect (STRtree, vectorised)."""
    geoms = np.asarray(geoms, dtype=object)
    if len(geoms) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    env = shapely.envelope(geoms)
    tree = shapely.STRtree(env)
    i, j = tree.query(env, predicate="intersects")
    k = i < j
    return i[k].astype(np.int64), j[k].astype(np.int64)


def _edges_from_prepared(
    prepared: PreparedTiles,
    *,
    client=None,
    npartitions: int | None = None,
    min_area_m2: float = 1.0,
    keep_geometry: bool = False,
) -> pd.DataFrame:
    usable = prepared.tiles
    geoms = np.asarray(usable.geometry.values, dtype=object)
    rows = usable["tile"].to_numpy(dtype=np.int64)
    ids = usable.set_index("tile")["id"]
    dts = usable.set_index("tile")["datatake"]
    i, j = candidate_pairs(geoms)
    if len(i) == 0:
        edges = _EDGE_META.copy()
    else:
        # tasks of spatially close tiles (pairs grouped by the Hilbert order of their first tile)
        nparts = max(1, min(npartitions or default_npartitions(len(usable)), len(usable)))
        part = _hilbert_parts(shapely.bounds(geoms), nparts)[i]
        sort = np.argsort(part, kind="stable")
        i, j, part = i[sort], j[sort], part[sort]
        bounds = np.searchsorted(part, np.arange(nparts + 1))
        wkb = shapely.to_wkb(geoms)
        chunks = [slice(bounds[k], bounds[k + 1]) for k in range(nparts) if bounds[k + 1] > bounds[k]]

        def submit(k, sl):  # i < j, so a = rows[i] < b = rows[j]
            args = (wkb[i[sl]], wkb[j[sl]], rows[i[sl]], rows[j[sl]], min_area_m2, keep_geometry)
            if client is None:
                return _exact_pairs(*args)
            return client.submit(_exact_pairs, *args, key=f"overlap-edges-{k}-{len(chunks)}", pure=False)

        parts = [submit(k, sl) for k, sl in enumerate(chunks)]
        if client is not None:
            parts = client.gather(parts)
        edges = pd.concat(parts, ignore_index=True) if parts else _EDGE_META.copy()
    return _edge_frame(edges, ids, dts, keep_geometry=keep_geometry)


def _hilbert_parts(bounds: np.ndarray, nparts: int) -> np.ndarray:
    """Part (0 .. nparts - 1) of each envelope: ``nparts`` runs of about equal size along the Hilbert order of
    :func:`_hilbert_order_of_bounds` (the planning copy's parts, and the edge tasks' by their first tile)."""
    order = _hilbert_order_of_bounds(bounds) if len(bounds) else np.zeros(0, np.int64)
    cuts = np.linspace(0, len(order), nparts + 1).astype(np.int64)
    part = np.empty(len(order), dtype=np.int64)
    part[order] = np.repeat(np.arange(nparts), np.diff(cuts))
    return part


def _hilbert_order_of_bounds(b: np.ndarray) -> np.ndarray:
    """Order of envelopes (rows of minx, miny, maxx, maxy) along a Hilbert curve of their centres (level 16)."""
    x = ((b[:, 0] + b[:, 2]) / 2 + 180.0) / 360.0
    y = ((b[:, 1] + b[:, 3]) / 2 + 90.0) / 180.0
    n = 1 << 16
    xi = np.clip((x * (n - 1)).astype(np.int64), 0, n - 1)
    yi = np.clip((y * (n - 1)).astype(np.int64), 0, n - 1)
    d = np.zeros(len(b), dtype=np.int64)
    s = n >> 1
    while s > 0:
        rx = (xi & s) > 0
        ry = (yi & s) > 0
        d += s * s * ((3 * rx) ^ ry)
        swap = ~ry
        flip = swap & rx
        xi = np.where(flip, n - 1 - xi, xi)
        yi = np.where(flip, n - 1 - yi, yi)
        xi, yi = np.where(swap, yi, xi), np.where(swap, xi, yi)
        s >>= 1
    return np.argsort(d, kind="stable")


def overlap_edges(
    tiles: gpd.GeoDataFrame,
    *,
    client=None,
    npartitions: int | None = None,
    min_area_m2: float = 1.0,
    keep_geometry: bool = False,
) -> pd.DataFrame:
    """Edges of the overlap graph of a tile table.

    Args:
        tiles: the tile table (row position = tile index); see :func:`prepare_tiles`.
        client: a ``distributed.Client`` to run on; None runs the dask graph with
            the default (threaded) scheduler in this process.
        npartitions: tasks of the exact edge test (default: ~2,000 tiles each).
        min_area_m2: an edge needs an intersection larger than this (m², measured
            in the UTM zone of the intersection's centroid); touching tiles are no edge.
        keep_geometry: also return the WGS84 intersection polygons (a GeoDataFrame).

    Returns:
        One row per edge, sorted by (a, b): ``a < b`` (tile rows), ``id_a``, ``id_b``,
        ``area_m2``, ``utm_epsg`` (the zone the area was measured in),
        ``same_datatake`` (both tiles from one datatake: not distinct acquisitions),
        and ``geometry`` when ``keep_geometry``.
    """
    prepared = prepare_tiles(tiles)
    return _edges_from_prepared(
        prepared, client=client, npartitions=npartitions, min_area_m2=min_area_m2, keep_geometry=keep_geometry
    )


def connected_components(n_tiles: int, edges: pd.DataFrame | dict) -> np.ndarray:
    """Component label of every tile (0.., numbered by their smallest tile row).

    A numpy union-find: hook roots onto the smaller label, then pointer-jump until
    every edge joins two tiles of one label. Tiles without edges are components of one.
    """
    labels = np.arange(n_tiles, dtype=np.int64)
    a = np.asarray(edges["a"], dtype=np.int64)
    b = np.asarray(edges["b"], dtype=np.int64)
    while len(a):
        la, lb = labels[a], labels[b]
        if np.array_equal(la, lb):
            break
        m = np.minimum(la, lb)
        np.minimum.at(labels, la, m)
        np.minimum.at(labels, lb, m)
        while True:
            jumped = labels[labels]
            if np.array_equal(jumped, labels):
                break
            labels = jumped
    _, comp = np.unique(labels, return_inverse=True)
    return comp.astype(np.int64)


def degree_stats(n_tiles: int, edges: pd.DataFrame | dict) -> dict:
    """Degree of each tile and summary statistics of the overlap graph."""
    a = np.asarray(edges["a"], dtype=np.int64)
    b = np.asarray(edges["b"], dtype=np.int64)
    deg = np.bincount(a, minlength=n_tiles) + np.bincount(b, minlength=n_tiles)
    return {
        "degree": deg,
        "degree_max": int(deg.max()) if n_tiles else 0,
        "degree_mean": float(deg.mean()) if n_tiles else 0.0,
        "degree_median": float(np.median(deg)) if n_tiles else 0.0,
        "degree_p99": float(np.percentile(deg, 99)) if n_tiles else 0.0,
        "degree_gt_30": int((deg > 30).sum()),
        "isolated": int((deg == 0).sum()),
    }


# --------------------------------------------------------------------------- the planning copy of the tiles


GRID_COLUMNS = ("datetime", "proj:code", "proj:transform", "proj:shape")
"""Catalog columns the planning copy carries besides the footprint, when the catalog has them (the plan job's grid)."""


def read_planning_tiles(part_urls: list[str], rows: np.ndarray, *, storage_options=None) -> gpd.GeoDataFrame:
    """The rows ``rows`` of the planning copy of the tiles, read from the parts that hold them (sorted by tile).

    Raises:
        ValueError: a row is in none of the parts (the copy is older than the graph or the
            components it was looked up in: run the overlaps job again).
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from spectralearth.platform import storage

    rows = np.unique(np.asarray(rows, dtype=np.int64))
    want = pa.array(rows)
    found = []
    for u in part_urls:
        table = pq.read_table(io.BytesIO(storage.read_bytes(u, storage_options)))
        found.append(table.filter(pc.is_in(table.column("tile"), value_set=want)))
    if found:
        table = pa.concat_tables(found)
        frame = gpd.GeoDataFrame.from_arrow(table) if table.num_rows else gpd.GeoDataFrame(
            table.to_pandas().drop(columns="geometry"), geometry=gpd.GeoSeries([], crs=4326).values, crs=4326)
    else:
        frame = gpd.GeoDataFrame({"tile": np.zeros(0, np.int64)}, geometry=gpd.GeoSeries([], crs=4326).values, crs=4326)
    frame = frame.sort_values("tile", kind="stable").reset_index(drop=True)
    missing = np.setdiff1d(rows, frame["tile"].to_numpy(dtype=np.int64))
    if len(missing):
        raise ValueError(f"tile rows {missing[:5].tolist()}{' ...' if len(missing) > 5 else ''} are not in the planning "
                         f"copy of the tiles ({len(part_urls)} parts read): it is older than the overlap graph; "
                         "run `spectralearth overlaps` again")
    return frame


# --------------------------------------------------------------------------- the job


@dataclass(frozen=True)
class OverlapReport:
    """What an overlap job found and wrote."""

    n_tiles: int
    """Rows in the tile catalog."""
    n_repaired: int
    """Invalid footprints repaired with make_valid."""
    n_quarantined: int
    """Tiles set aside (empty footprint, superseded duplicate, ...)."""
    n_edges: int
    """Edges of the overlap graph."""
    n_same_datatake: int
    """Edges between two tiles of one datatake."""
    n_components: int
    """Connected components (isolated tiles count as components)."""
    largest_component: int
    """Tiles in the largest component."""
    isolated: int
    """Tiles without any overlap."""
    degree_max: int
    """Largest degree."""
    degree_mean: float
    """Mean degree."""
    degree_gt_30: int
    """Tiles overlapping more than 30 others."""
    edges_url: str
    """Where the edges were written."""
    components_url: str
    """Where the per-tile components and degrees were written."""
    plot_url: str | None
    """Where the map was written, if asked for."""
    seconds: float
    """Wall time of the job."""

    def as_dict(self) -> dict:
        """Plain dict (for JSON and summaries)."""
        return asdict(self)


def output_base(catalog_url: str) -> str:
    """The folder beside which job outputs go: the catalog folder (or a parquet file's folder)."""
    url = catalog_url.rstrip("/")
    if url.endswith(".parquet"):
        head, _, _ = url.rpartition("/")
        return head or posixpath.dirname(url) or "."
    return url


def frame_to_parquet_bytes(df: pd.DataFrame) -> bytes:
    """Serialize a (Geo)DataFrame to (Geo)Parquet bytes."""
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def write_overlap_outputs(
    tiles: gpd.GeoDataFrame,
    out_url: str,
    *,
    storage_options=None,
    client=None,
    npartitions: int | None = None,
    min_area_m2: float = 1.0,
    plot: str | None = None,
) -> OverlapReport:
    """Build the graph of ``tiles`` and write edges, planning copy and components under ``out_url``.

    The same tasks as :func:`overlaps_job`, on slices of a table in memory instead of
    row groups of a catalog.
    """
    tiles = _checked_table(tiles)
    from spectralearth.catalog.catalogio import CATALOG_ROW_GROUP, SIMPLIFIED_ATTR

    simplified = tiles.attrs.get(SIMPLIFIED_ATTR) == PLANNING_SIMPLIFY_DEG
    frame = tiles.reset_index(drop=True)
    sources = [("frame", frame.iloc[s : s + CATALOG_ROW_GROUP], simplified) for s in range(0, len(frame), CATALOG_ROW_GROUP)]
    return _overlap_outputs(sources, len(frame), TILE_ID in frame.columns, out_url, storage_options=storage_options,
                            client=client, npartitions=npartitions, min_area_m2=min_area_m2, plot=plot,
                            plot_tiles=lambda: tiles)


def _check_chunk(source: tuple, has_tile_id: bool) -> tuple[dict[str, np.ndarray], gpd.GeoDataFrame]:
    """One task: read a slice of the tile table, check and simplify its footprints (:func:`_check_rows`).

    ``source`` is ``("catalog", catalog_url, storage_options, row_groups)`` (the task reads
    those row groups, a batch at a time) or ``("frame", rows, simplified)`` (a slice of a
    table in memory, indexed by table row).

    Returns:
        ``(rows, piece)``: arrays of every row for the process that schedules the job
        (``tile``, ``id`` as one arrow array, about a third of Python strings, ``datatake``,
        ``tile_id``, ``reason``, "" if usable so far, ``repaired`` and ``bounds``, its
        envelope), and the rows usable so far with their footprints and grid (which stay on
        the cluster for the tasks that write the planning copy).
    """
    import pyarrow as pa

    if source[0] == "catalog":
        from spectralearth.catalog.catalogio import read_tile_groups

        _, url, opts, groups = source
        frame = read_tile_groups(url, groups, storage_options=opts, simplify_deg=PLANNING_SIMPLIFY_DEG)
        simplified = True
    else:
        _, frame, simplified = source
    rows = frame.index.to_numpy(dtype=np.int64)
    ids = frame["id"].astype(str).to_numpy(dtype=object)
    datatake = pd.to_numeric(frame[DATATAKE], errors="coerce").to_numpy(dtype=float)
    geoms, reason, invalid = _check_rows(np.asarray(frame.geometry.values, dtype=object), datatake, PLANNING_SIMPLIFY_DEG,
                                         simplified=simplified)
    ok = reason == ""
    bounds = np.full((len(rows), 4), np.nan)
    if ok.any():
        bounds[ok] = shapely.bounds(geoms[ok])
    tile_id = frame[TILE_ID].to_numpy() if has_tile_id else np.zeros(len(rows), dtype=np.int64)
    small = {"tile": rows, "id": pa.array(ids, type=pa.string()), "datatake": datatake, "tile_id": tile_id,
             "reason": reason, "repaired": invalid, "bounds": bounds}
    piece = gpd.GeoDataFrame({"tile": rows[ok], "id": ids[ok], "datatake": datatake[ok].astype(np.int64)},
                             geometry=gpd.GeoSeries(geoms[ok], crs=4326).values, crs=4326)
    if all(c in frame.columns for c in GRID_COLUMNS):
        piece = piece.assign(**{c: frame[c].to_numpy()[ok] for c in GRID_COLUMNS})
    return small, piece


def _planning_part(k: int, pieces: list[gpd.GeoDataFrame], rows: np.ndarray, writer) -> dict:
    """One task: part ``k`` of the planning copy (the usable rows ``rows``, sorted), from the reading tasks' pieces."""
    frame = pd.concat([p[p["tile"].isin(rows)] for p in pieces], ignore_index=True)
    frame = frame.sort_values("tile", kind="stable").reset_index(drop=True)
    frame = gpd.GeoDataFrame(frame, geometry="geometry", crs=4326)
    facts = {"tile_min": int(frame["tile"].min()), "tile_max": int(frame["tile"].max())} if len(frame) else {}
    return writer.part(k, frame, **facts)


def _edge_part(k: int, a: np.ndarray, b: np.ndarray, part_urls: list[str], storage_options, min_area_m2: float, writer):
    """One task: the exact test of candidate pairs ``(a, b)`` on footprints read from the planning copy; writes edge part ``k``."""
    held = read_planning_tiles(part_urls, np.union1d(a, b), storage_options=storage_options)
    tile = held["tile"].to_numpy(dtype=np.int64)
    geoms = np.asarray(held.geometry.values, dtype=object)
    ia, ib = np.searchsorted(tile, a), np.searchsorted(tile, b)
    lookup = (pd.Series(held["id"].to_numpy(dtype=object), index=tile), pd.Series(held["datatake"].to_numpy(), index=tile))
    return _exact_pairs(geoms[ia], geoms[ib], a, b, min_area_m2, True, tiles=lookup, writer=writer, k=k)


def _candidates_of_bounds(bounds: np.ndarray, budget: int = 500_000) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(i, j)``, ``i < j``, of rows of ``bounds`` (minx, miny, maxx, maxy) whose boxes intersect (touching
    included): the pairs :func:`candidate_pairs` finds on the envelopes, from numbers alone.

    A sweep along x: boxes sorted by minx; box ``i`` meets the later boxes whose minx is at
    most its maxx, tested in y. Rows are taken a chunk at a time so that a chunk tests about
    ``budget`` pairs. Measured on the 232k-tile archive of the scale benchmark: an STRtree of
    the envelopes costs this process ~125 MB of boxes and tree; the sweep costs its arrays.
    """
    n = len(bounds)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.argsort(bounds[:, 0], kind="stable")
    x0, y0, x1, y1 = (bounds[order, c] for c in range(4))
    stop = np.searchsorted(x0, x1, side="right")  # boxes order[i + 1 : stop[i]] start within box i's x range
    count = np.maximum(stop - np.arange(n) - 1, 0)
    total = np.concatenate([[0], np.cumsum(count)])  # pairs tested before each row
    out_i, out_j = [], []
    start = 0
    while start < n:  # rows start .. end - 1: about budget pairs, at least one row
        end = min(n, max(start + 1, int(np.searchsorted(total, total[start] + budget, side="right")) - 1))
        c = count[start:end]
        si = np.repeat(np.arange(start, end), c)
        sj = si + 1 + (np.arange(len(si)) - np.repeat(np.cumsum(c) - c, c))
        hit = (y0[sj] <= y1[si]) & (y1[sj] >= y0[si])
        oi, oj = order[si[hit]], order[sj[hit]]
        out_i.append(np.minimum(oi, oj))
        out_j.append(np.maximum(oi, oj))
        start = end
    return np.concatenate(out_i).astype(np.int64), np.concatenate(out_j).astype(np.int64)


def _overlap_outputs(sources: list[tuple], n_rows: int, has_tile_id: bool, out_url: str, *, storage_options, client,
                     npartitions: int | None, min_area_m2: float, plot: str | None, plot_tiles) -> OverlapReport:
    """The overlaps job as three rounds of tasks; this process holds per-tile numbers and ids, never a footprint.

    1. One task per slice of the table (``sources``) reads and checks it (:func:`_check_chunk`):
       this process gets each row's id, datatake, tile, reason and envelope; the checked
       footprints stay on the cluster.
    2. Here: duplicates are set aside, the usable tiles are cut into parts along the Hilbert
       curve of their envelope centres (about 2,000 tiles each) and candidate pairs are the
       pairs of intersecting envelopes. One task per part writes it into the planning copy
       (:func:`_planning_part`).
    3. One task per part tests the candidate pairs whose first tile it holds on the
       footprints of the planning copy and writes its part of the edges (:func:`_edge_part`).

    Then the components (union-find on the edges' integers) are written here.
    """
    from operator import itemgetter

    import pyarrow as pa
    import pyarrow.parquet as pq

    from spectralearth.platform import storage, tables

    t0 = time.perf_counter()

    def submit(fn, *args, key: str):
        return client.submit(fn, *args, key=key, pure=False) if client is not None else fn(*args)

    def gather(futs):
        return client.gather(futs) if client is not None else futs

    run = tables.new_run()
    read = [submit(_check_chunk, src, has_tile_id, key=f"overlaps-read-{c}-{run}") for c, src in enumerate(sources)]
    if client is not None:
        smalls = gather([client.submit(itemgetter(0), f, key=f"overlaps-rows-{c}-{run}") for c, f in enumerate(read)])
        pieces = [client.submit(itemgetter(1), f, key=f"overlaps-piece-{c}-{run}") for c, f in enumerate(read)]
    else:
        smalls, pieces = [r[0] for r in read], [r[1] for r in read]
    del read
    source_of = np.repeat(np.arange(len(sources)), [len(x["tile"]) for x in smalls])  # the reading task of each row
    tile = np.concatenate([x["tile"] for x in smalls])
    if len(tile) != n_rows or not (tile == np.arange(n_rows)).all():
        raise RuntimeError(f"the reading tasks returned {len(tile)} rows of a table of {n_rows}")
    ids = pa.chunked_array([x["id"] for x in smalls], type=pa.string()).combine_chunks()
    reason = np.concatenate([x["reason"] for x in smalls])
    datatake = np.concatenate([x["datatake"] for x in smalls])
    if has_tile_id:
        _supersede(reason, datatake, np.concatenate([x["tile_id"] for x in smalls]), ids)
    repaired = int(sum(int(x["repaired"].sum()) for x in smalls))
    if repaired:
        log.warning("repaired %d invalid footprints with make_valid", repaired)
    keep = reason == ""
    bounds = np.concatenate([x["bounds"] for x in smalls])[keep]
    del smalls, tile, datatake
    out_rows = np.flatnonzero(~keep)
    quarantined = pd.DataFrame({"tile": out_rows, "id": ids.take(out_rows).to_numpy(zero_copy_only=False),
                                "reason": reason[~keep]})
    if len(quarantined):
        log.warning("quarantined %d tiles: %s", len(quarantined), quarantined["reason"].value_counts().to_dict())
    usable = np.flatnonzero(keep).astype(np.int64)

    # 2. parts of the planning copy along the Hilbert curve; candidate pairs from the envelopes
    nparts = max(1, min(npartitions or default_npartitions(len(usable)), len(usable)))
    part = _hilbert_parts(bounds, nparts)
    part_of = np.full(n_rows, -1, dtype=np.int32)
    part_of[usable] = part
    by_part = np.argsort(part, kind="stable")  # usable is sorted: so is each part's run
    part_rows = np.split(usable[by_part], np.searchsorted(part[by_part], np.arange(1, nparts)))
    planning_url = storage.join(out_url, PLANNING_TILES_NAME)
    planning = tables.TableWriter(planning_url, storage_options)
    try:
        entries = gather([submit(_planning_part, k, [pieces[c] for c in np.unique(source_of[rows]).tolist()], rows, planning,
                                 key=f"overlaps-planning-{k}-{run}") for k, rows in enumerate(part_rows)])
        planning_doc = planning.commit(entries, min_area_m2=float(min_area_m2))
    except BaseException:
        planning.abandon()
        raise
    del pieces
    planning_parts = tables.part_urls(planning_url, storage_options, doc=planning_doc)
    i, j = _candidates_of_bounds(bounds)
    del bounds
    a, b = usable[i], usable[j]  # a < b: usable is sorted
    del i, j

    # 3. the exact test, a part of the planning copy (the pairs' first tiles) per task
    edges_url = storage.join(out_url, EDGES_NAME)
    writer = tables.TableWriter(edges_url, storage_options)
    opts = dict(storage_options or {})
    try:
        first = part_of[a]
        sort = np.argsort(first, kind="stable")
        a, b, first = a[sort], b[sort], first[sort]
        cut = np.searchsorted(first, np.arange(nparts + 1))
        futs = []
        for k in range(nparts):
            sl = slice(cut[k], cut[k + 1])
            if cut[k + 1] == cut[k]:
                continue
            held = np.union1d([k], part_of[b[sl]])
            futs.append(submit(_edge_part, k, a[sl], b[sl], [planning_parts[p] for p in held.tolist()], opts, min_area_m2,
                               writer, key=f"overlaps-edges-{k}-{run}"))
        done = gather(futs)
        entries = [d[0] for d in done]
        if not entries:  # no edges: the table still gets its (empty) part
            empty = pd.Series([], dtype=object)
            entries = [writer.part(0, _edge_frame(_EDGE_META, empty, empty, keep_geometry=True))]
        writer.commit(entries)
    except BaseException:
        writer.abandon()
        raise
    ends = np.concatenate([d[1][0] for d in done]) if done else np.zeros((0, 2), np.int32)
    n_same = sum(d[1][1] for d in done)
    del done, a, b
    edges = {"a": ends[:, 0], "b": ends[:, 1]}  # components and degrees do not depend on the edges' order

    n = n_rows
    comp = connected_components(n, edges)
    stats = degree_stats(n, edges)
    components = pa.table(
        {
            "tile": np.arange(n, dtype=np.int64),
            "id": ids,
            "component": comp,
            "degree": stats["degree"],
            "usable": keep,
            "quarantine_reason": pa.array(np.where(keep, "", reason).astype(str), type=pa.string()),
            "planning_part": part_of,
        }
    )
    from spectralearth.catalog.catalogio import IDS_DIGEST_KEY, ids_digest

    # the plan job checks that the components describe the catalog by this digest, not by reading the ids
    components = components.replace_schema_metadata({**(components.schema.metadata or {}),
                                                     IDS_DIGEST_KEY: ids_digest([ids]).encode()})
    comps_url = storage.join(out_url, COMPONENTS_NAME)
    buf = io.BytesIO()
    pq.write_table(components, buf)
    storage.atomic_write_bytes(comps_url, buf.getvalue(), storage_options)
    if plot:
        from spectralearth.pipelines.plot import plot_overlaps

        plot_overlaps(plot_tiles(), tables.read_table(edges_url, storage_options=storage_options), plot,
                      storage_options=storage_options)
    sizes = np.bincount(comp) if n else np.zeros(1, np.int64)
    return OverlapReport(
        n_tiles=n,
        n_repaired=repaired,
        n_quarantined=len(quarantined),
        n_edges=len(ends),
        n_same_datatake=int(n_same),
        n_components=int(comp.max() + 1) if n else 0,
        largest_component=int(sizes.max()),
        isolated=stats["isolated"],
        degree_max=stats["degree_max"],
        degree_mean=round(stats["degree_mean"], 3),
        degree_gt_30=stats["degree_gt_30"],
        edges_url=storage.redact(edges_url),
        components_url=storage.redact(comps_url),
        plot_url=plot,
        seconds=round(time.perf_counter() - t0, 3),
    )


def overlaps_job(
    catalog_url: str,
    *,
    storage_options=None,
    cluster: ClusterSpec = ClusterSpec(),
    plot: str | None = None,
    min_area_m2: float = 1.0,
    npartitions: int | None = None,
) -> OverlapReport:
    """Build a tile catalog's overlap graph on a dask cluster and write it beside the catalog.

    The tasks read the catalog (a few row groups of ``tiles.parquet`` each, see
    :func:`_overlap_outputs`); this process reads its footer and receives per-tile numbers.
    Writes the ``overlap_edges.parquet`` table (GeoParquet parts, one row per edge with
    its WGS84 intersection, sorted by (a, b) within each part; each task writes its own
    part, :mod:`spectralearth.platform.tables`), ``planning_tiles.parquet`` (the usable,
    simplified footprints and the tiles' grid in parts of spatial neighbours, which the
    combinations and plan tasks read) and ``overlap_components.parquet`` (tile, id,
    component, degree, usable, quarantine_reason, planning_part; one file) next to the catalog.

    Args:
        catalog_url: the tile catalog (folder or parquet URL) as ``read_tiles`` takes it.
        storage_options: fsspec options (never credentials).
        cluster: where to run (a LocalCluster by default).
        plot: also draw the map to this PNG path/URL (this process then reads the footprints).
        min_area_m2: smallest intersection that makes an edge.
        npartitions: parts of the planning copy and tasks of the exact edge test (default: ~2,000 tiles each).

    Raises:
        FileNotFoundError: no catalog at ``catalog_url``.
        ValueError: the catalog has no tiles, or no id or datatake column.
    """
    from spectralearth.catalog import read_tiles
    from spectralearth.catalog.catalogio import CATALOG_ROW_GROUP, tile_layout

    groups, names = tile_layout(catalog_url, storage_options=storage_options)
    for col in ("id", DATATAKE):
        if col not in names:
            raise ValueError(f"the tile catalog at {catalog_url} has no column {col!r} (columns: {names})")
    cuts = [0]  # row groups per reading task: about CATALOG_ROW_GROUP rows each, at least one group
    total = 0
    for k, rows in enumerate(groups):
        total += rows
        if total >= CATALOG_ROW_GROUP and k + 1 < len(groups):
            cuts.append(k + 1)
            total = 0
    cuts.append(len(groups))
    opts = dict(storage_options or {})
    sources = [("catalog", catalog_url, opts, list(range(cuts[c], cuts[c + 1]))) for c in range(len(cuts) - 1)]
    with cluster_client(cluster) as client:
        return _overlap_outputs(
            sources, int(sum(groups)), TILE_ID in names, output_base(catalog_url), storage_options=storage_options,
            client=client, npartitions=npartitions, min_area_m2=min_area_m2, plot=plot,
            plot_tiles=lambda: read_tiles(catalog_url, storage_options=storage_options, simplify_deg=PLANNING_SIMPLIFY_DEG))

