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
    if tiles is None or len(tiles) == 0:
        raise ValueError("the tile table is empty: no tiles to build an overlap graph from")
    for col in ("id", DATATAKE):
        if col not in tiles.columns:
            raise ValueError(f"the tile table has no column {col!r} (columns: {list(tiles.columns)})")
    if tiles.crs is not None and not tiles.crs.equals(pyproj.CRS.from_epsg(4326)):
        tiles = tiles.to_crs(4326)
    n = len(tiles)
    geoms = np.asarray(tiles.geometry.values, dtype=object)
    ids = tiles["id"].astype(str).to_numpy()
    reason = np.full(n, "", dtype=object)
    missing = pd.isna(geoms)
    geoms = np.where(missing, shapely.Polygon(), geoms)
    reason[missing | shapely.is_empty(geoms)] = "empty footprint"
    invalid = (reason == "") & ~shapely.is_valid(geoms)
    repaired = int(invalid.sum())
    if repaired:
        fixed = polygonal(shapely.make_valid(geoms[invalid]))
        geoms[invalid] = fixed
        log.warning("repaired %d invalid footprints with make_valid", repaired)
    areal = np.isin(shapely.get_type_id(geoms), (3, 6))
    reason[(reason == "") & ~areal] = "footprint is not a polygon"
    reason[(reason == "") & (shapely.area(geoms) <= 0)] = "footprint has no area"
    datatake = pd.to_numeric(tiles[DATATAKE], errors="coerce").to_numpy()
    reason[(reason == "") & np.isnan(datatake.astype(float))] = f"missing {DATATAKE}"
    if TILE_ID in tiles.columns:
        key = pd.DataFrame({"dt": datatake, "t": tiles[TILE_ID].to_numpy(), "id": ids, "pos": np.arange(n)})
        key = key[reason == ""]
        newest = key.groupby(["dt", "t"])["id"].transform("max")
        dup = (key["id"] != newest).to_numpy()
        reason[key["pos"].to_numpy()[dup]] = "superseded by " + newest.to_numpy()[dup].astype(str)
    keep = reason == ""
    from spectralearth.catalog.catalogio import SIMPLIFIED_ATTR

    # read_tiles(simplify_deg=...) already simplified the footprints that were valid
    todo = keep & invalid if tiles.attrs.get(SIMPLIFIED_ATTR) == simplify_deg else keep
    if simplify_deg > 0 and todo.any():
        geoms[todo] = shapely.simplify(geoms[todo], simplify_deg, preserve_topology=True)
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
    the edges table and returns ``(entry, edges without ids and geometry)``.
    """
    if len(a) == 0:
        out = _EDGE_META.copy()
    else:
        ga = shapely.from_wkb(wkb_a)
        gb = shapely.from_wkb(wkb_b)
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
    return writer.part(k, full), full[["a", "b", "area_m2", "utm_epsg", "same_datatake"]]


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
    writer=None,
) -> pd.DataFrame:
    usable = prepared.tiles
    geoms = np.asarray(usable.geometry.values, dtype=object)
    rows = usable["tile"].to_numpy(dtype=np.int64)
    ids = usable.set_index("tile")["id"]
    dts = usable.set_index("tile")["datatake"]
    entries: list[dict] = []
    i, j = candidate_pairs(geoms)
    if len(i) == 0:
        edges = _EDGE_META.copy()
    else:
        # tasks of spatially close tiles (pairs grouped by the Hilbert order of their first tile)
        nparts = max(1, min(npartitions or default_npartitions(len(usable)), len(usable)))
        order = _hilbert_order(geoms)
        rank = np.empty(len(geoms), dtype=np.int64)
        rank[order] = np.arange(len(geoms))
        part = rank[i] * nparts // len(geoms)
        sort = np.argsort(part, kind="stable")
        i, j, part = i[sort], j[sort], part[sort]
        bounds = np.searchsorted(part, np.arange(nparts + 1))
        wkb = shapely.to_wkb(geoms)
        chunks = [slice(bounds[k], bounds[k + 1]) for k in range(nparts) if bounds[k + 1] > bounds[k]]

        def args(sl):
            ii, jj = i[sl], j[sl]
            a, b = rows[ii], rows[jj]
            flip = a > b
            a, b = np.where(flip, b, a), np.where(flip, a, b)
            wa, wb = np.where(flip, wkb[jj], wkb[ii]), np.where(flip, wkb[ii], wkb[jj])
            return wa, wb, a, b, min_area_m2, keep_geometry

        def tiles_of(sl):  # id and datatake of the chunk's tiles, for the task that writes its part
            held = np.union1d(rows[i[sl]], rows[j[sl]])
            return ids.reindex(held), dts.reindex(held)

        def submit(k, sl):
            extra = {"tiles": tiles_of(sl), "writer": writer, "k": k} if writer is not None else {}
            if client is None:
                return _exact_pairs(*args(sl), **extra)
            return client.submit(_exact_pairs, *args(sl), **extra, key=f"overlap-edges-{k}-{len(chunks)}", pure=False)

        parts = [submit(k, sl) for k, sl in enumerate(chunks)]
        if client is not None:
            parts = client.gather(parts)
        if writer is not None:
            entries, parts = [p[0] for p in parts], [p[1] for p in parts]
        edges = pd.concat(parts, ignore_index=True) if parts else _EDGE_META.copy()
    if writer is None:
        return _edge_frame(edges, ids, dts, keep_geometry=keep_geometry)
    if not entries:  # no edges: the table still gets its (empty) part
        entries = [writer.part(0, _edge_frame(_EDGE_META, ids, dts, keep_geometry=keep_geometry))]
    writer.commit(entries)
    if "same_datatake" not in edges:
        edges = edges.assign(same_datatake=np.zeros(len(edges), dtype=bool))
    cols = ["a", "b", "area_m2", "utm_epsg", "same_datatake"]
    return edges[cols].sort_values(["a", "b"], kind="stable").reset_index(drop=True)


def _hilbert_order(geoms: np.ndarray) -> np.ndarray:
    """Order of geometries along a Hilbert curve of their envelope centres (level 16)."""
    b = shapely.bounds(geoms)
    x = ((b[:, 0] + b[:, 2]) / 2 + 180.0) / 360.0
    y = ((b[:, 1] + b[:, 3]) / 2 + 90.0) / 180.0
    n = 1 << 16
    xi = np.clip((x * (n - 1)).astype(np.int64), 0, n - 1)
    yi = np.clip((y * (n - 1)).astype(np.int64), 0, n - 1)
    d = np.zeros(len(geoms), dtype=np.int64)
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


def connected_components(n_tiles: int, edges: pd.DataFrame) -> np.ndarray:
    """Component label of every tile (0.., numbered by their smallest tile row).

    A numpy union-find: hook roots onto the smaller label, then pointer-jump until
    every edge joins two tiles of one label. Tiles without edges are components of one.
    """
    labels = np.arange(n_tiles, dtype=np.int64)
    a = np.asarray(edges["a"], dtype=np.int64) if len(edges) else np.zeros(0, np.int64)
    b = np.asarray(edges["b"], dtype=np.int64) if len(edges) else np.zeros(0, np.int64)
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


def degree_stats(n_tiles: int, edges: pd.DataFrame) -> dict:
    """Degree of each tile and summary statistics of the overlap graph."""
    a = np.asarray(edges["a"], dtype=np.int64) if len(edges) else np.zeros(0, np.int64)
    b = np.asarray(edges["b"], dtype=np.int64) if len(edges) else np.zeros(0, np.int64)
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


def write_planning_tiles(prepared: PreparedTiles, url: str, storage_options=None, *, npartitions: int | None = None,
                         grid: pd.DataFrame | None = None, min_area_m2: float = 1.0) -> np.ndarray:
    """Write the usable, simplified footprints as a table of spatially close parts; returns each tile row's part.

    The later planning jobs (combinations, plan) run their tasks on a few spatial
    neighbourhoods each: a task reads the parts that hold its tiles, so the client that
    schedules it holds per-tile integers (component, degree, part), never the footprints.
    Parts follow the Hilbert order of the footprints (about 2,000 tiles each, as the edge
    tasks); rows are sorted by tile within a part. Columns: tile, id, datatake, geometry
    (WGS84, as :func:`prepare_tiles` leaves it, i.e. the geometry the overlap graph was
    built from), and the :data:`GRID_COLUMNS` of ``grid`` (the catalog's rows, by
    position) when given. The manifest records ``min_area_m2``, the graph's smallest edge
    (the plan job relies on its components only when no window could straddle two).

    Returns:
        ``part`` of every row of the input table (−1 for a row that is not usable).
    """
    from spectralearth.platform import tables

    usable = prepared.tiles
    part_of = np.full(prepared.n_tiles, -1, dtype=np.int32)
    writer = tables.TableWriter(url, storage_options)
    geoms = np.asarray(usable.geometry.values, dtype=object)
    nparts = max(1, min(npartitions or default_npartitions(len(usable)), len(usable)))
    order = _hilbert_order(geoms) if len(usable) else np.zeros(0, np.int64)
    cuts = np.linspace(0, len(order), nparts + 1).astype(np.int64)
    entries = []
    try:
        for k in range(nparts):
            sel = np.sort(order[cuts[k] : cuts[k + 1]])
            sub = usable.iloc[sel].sort_values("tile", kind="stable").reset_index(drop=True)
            part_of[sub["tile"].to_numpy()] = k
            facts = {"tile_min": int(sub["tile"].min()), "tile_max": int(sub["tile"].max())} if len(sub) else {}
            frame = sub[["tile", "id", "datatake", "geometry"]]
            if grid is not None:
                extra = grid.iloc[sub["tile"].to_numpy()].reset_index(drop=True)
                frame = frame.assign(**{c: extra[c].to_numpy() for c in GRID_COLUMNS})
            entries.append(writer.part(k, frame, **facts))
        writer.commit(entries, min_area_m2=float(min_area_m2))
    except BaseException:
        writer.abandon()
        raise
    return part_of


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
    """Build the graph of ``tiles`` and write edges and components under ``out_url``."""
    from spectralearth.platform import storage, tables

    t0 = time.perf_counter()
    prepared = prepare_tiles(tiles)
    edges_url = storage.join(out_url, EDGES_NAME)
    writer = tables.TableWriter(edges_url, storage_options)
    try:  # the tasks write the edges table; this process keeps (a, b, area, zone, same_datatake)
        edges = _edges_from_prepared(
            prepared, client=client, npartitions=npartitions, min_area_m2=min_area_m2, keep_geometry=True, writer=writer
        )
    except BaseException:
        writer.abandon()
        raise
    n = prepared.n_tiles
    comp = connected_components(n, edges)
    stats = degree_stats(n, edges)
    usable = np.zeros(n, dtype=bool)
    usable[prepared.tiles["tile"].to_numpy()] = True
    reasons = pd.Series("", index=np.arange(n), dtype=object)
    reasons[prepared.quarantined["tile"].to_numpy()] = prepared.quarantined["reason"].to_numpy()
    components = pd.DataFrame(
        {
            "tile": np.arange(n, dtype=np.int64),
            "id": tiles["id"].astype(str).to_numpy(),
            "component": comp,
            "degree": stats["degree"],
            "usable": usable,
            "quarantine_reason": reasons.to_numpy(),
        }
    )
    # the planning copy before the components that point into it (a job that dies between
    # the two leaves the old components, whose parts the combinations job then finds missing)
    grid = tiles[list(GRID_COLUMNS)] if all(c in tiles.columns for c in GRID_COLUMNS) else None
    components["planning_part"] = write_planning_tiles(prepared, storage.join(out_url, PLANNING_TILES_NAME), storage_options,
                                                       npartitions=npartitions, grid=grid, min_area_m2=min_area_m2)
    comps_url = storage.join(out_url, COMPONENTS_NAME)
    storage.atomic_write_bytes(comps_url, frame_to_parquet_bytes(components), storage_options)
    if plot:
        from spectralearth.pipelines.plot import plot_overlaps

        plot_overlaps(tiles, tables.read_table(edges_url, storage_options=storage_options), plot, storage_options=storage_options)
    sizes = np.bincount(comp) if n else np.zeros(1, np.int64)
    return OverlapReport(
        n_tiles=n,
        n_repaired=prepared.repaired,
        n_quarantined=len(prepared.quarantined),
        n_edges=len(edges),
        n_same_datatake=int(edges["same_datatake"].sum()),
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
    """Read a tile catalog, build its overlap graph on a dask cluster, write it beside the catalog.

    Writes the ``overlap_edges.parquet`` table (GeoParquet parts, one row per edge with
    its WGS84 intersection, sorted by (a, b) within each part; each task writes its own
    part, :mod:`spectralearth.platform.tables`), ``planning_tiles.parquet`` (the usable,
    simplified footprints and the tiles' grid in parts of spatial neighbours,
    :func:`write_planning_tiles`, which the combinations and plan tasks read) and ``overlap_components.parquet`` (tile, id, component,
    degree, usable, quarantine_reason, planning_part; one file) next to the catalog.

    Args:
        catalog_url: the tile catalog (folder or parquet URL) as ``read_tiles`` takes it.
        storage_options: fsspec options (never credentials).
        cluster: where to run (a LocalCluster by default).
        plot: also draw the map to this PNG path/URL.
        min_area_m2: smallest intersection that makes an edge.
        npartitions: tasks of the exact edge test.
    """
    from spectralearth.catalog import read_tiles

    tiles = read_tiles(catalog_url, storage_options=storage_options, simplify_deg=PLANNING_SIMPLIFY_DEG)
    with cluster_client(cluster) as client:
        return write_overlap_outputs(
            tiles,
            output_base(catalog_url),
            storage_options=storage_options,
            client=client,
            npartitions=npartitions,
            min_area_m2=min_area_m2,
            plot=plot,
        )
