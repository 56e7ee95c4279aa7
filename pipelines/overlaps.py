"""The overlap graph: nodes are tiles, an edge joins two tiles whose footprints share area.

Footprints are WGS84 polygons. Candidate pairs come from a dask-geopandas spatial
join (Hilbert-shuffled partitions, predicate ``intersects``); each partition then
drops self and mirrored pairs and measures the exact intersection in a metric CRS.

Areas are never in degree²: every intersection is projected, vertex by vertex, to
the UTM zone of its own centroid (``utm_epsg``) and measured there, so a pair of
tiles on either side of a zone boundary is measured in the zone where most of the
shared area lies. The regular 6° zones are used (no Norway/Svalbard exceptions),
and footprints crossing the antimeridian are not supported (their WGS84 polygons
would wrap the globe; EnMAP has no such tiles over land of interest).
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
    "OverlapReport",
    "PreparedTiles",
    "connected_components",
    "degree_stats",
    "metric_geometry",
    "overlap_edges",
    "overlaps_job",
    "prepare_tiles",
    "utm_epsg",
]

log = logging.getLogger(__name__)

DATATAKE = "enmap:datatake_id"
TILE_ID = "enmap:tile_id"
EDGES_NAME = "overlap_edges.parquet"
COMPONENTS_NAME = "overlap_components.parquet"


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


def project(geoms: np.ndarray, epsg: np.ndarray) -> np.ndarray:
    """Project WGS84 geometries vertex by vertex to per-geometry EPSG codes."""
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
    return out


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
        c = shapely.centroid(geoms[ok])
        epsg[ok] = utm_epsg(shapely.get_x(c), shapely.get_y(c))
        utm[ok] = project(geoms[ok], epsg[ok])
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


def prepare_tiles(tiles: gpd.GeoDataFrame) -> PreparedTiles:
    """Check a tile table and keep the rows that can take part in the graph.

    Invalid footprints are repaired with ``shapely.make_valid`` (their areal part
    is kept); missing, empty or zero-area footprints are quarantined; of several
    deliveries of the same (datatake, tile) only the newest (largest product id,
    i.e. newest version, then processing time) is kept.

    Args:
        tiles: the tile table (row position = tile index), WGS84 or any CRS.

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


def _exact_pairs(df: pd.DataFrame, min_area_m2: float, keep_geometry: bool) -> pd.DataFrame:
    """One partition of the spatial join -> exact edges (a < b, positive metric area)."""
    df = df[df["tile_left"].to_numpy() < df["tile_right"].to_numpy()]
    if len(df) == 0:
        return _EDGE_META.copy()
    ga = np.asarray(df.geometry.values, dtype=object)
    gb = shapely.from_wkb(df["wkb_right"].to_numpy())
    inter = shapely.intersection(ga, gb)
    _, epsg, area = metric_geometry(inter)
    keep = area > min_area_m2
    wkb = shapely.to_wkb(polygonal(inter[keep])) if keep_geometry else np.full(int(keep.sum()), None, dtype=object)
    return pd.DataFrame(
        {
            "a": df["tile_left"].to_numpy()[keep].astype("int64"),
            "b": df["tile_right"].to_numpy()[keep].astype("int64"),
            "area_m2": area[keep],
            "utm_epsg": epsg[keep],
            "wkb": pd.Series(list(wkb), dtype="object"),
        }
    )


def default_npartitions(n_tiles: int) -> int:
    """Partitions for the spatial join: about 8,000 footprints each, at least 1.

    A partition of 8,000 footprints is a few MB; more, smaller partitions only add
    partition pairs to the join (measured: 2 partitions beat 8 and 16 at 11,636 tiles).
    """
    return max(1, math.ceil(n_tiles / 8000))


def _edges_from_prepared(
    prepared: PreparedTiles,
    *,
    client=None,
    npartitions: int | None = None,
    min_area_m2: float = 1.0,
    keep_geometry: bool = False,
) -> pd.DataFrame:
    import dask_geopandas

    usable = prepared.tiles
    if len(usable) < 2:
        edges = _EDGE_META.drop(columns="wkb").copy()
    else:
        nparts = npartitions or default_npartitions(len(usable))
        nparts = max(1, min(nparts, len(usable)))
        base = usable[["tile", "geometry"]].reset_index(drop=True)
        ddf = dask_geopandas.from_geopandas(base, npartitions=nparts)
        ddf = ddf.spatial_shuffle(by="hilbert", npartitions=nparts)
        right = ddf.assign(wkb_right=ddf.geometry.to_wkb())[["tile", "wkb_right", "geometry"]]
        joined = dask_geopandas.sjoin(ddf[["tile", "geometry"]], right, predicate="intersects")
        pairs = joined.map_partitions(_exact_pairs, min_area_m2, keep_geometry, meta=_EDGE_META)
        if client is not None:
            edges = client.compute(pairs).result()
        else:
            edges = pairs.compute()
    edges = edges.sort_values(["a", "b"], kind="stable").reset_index(drop=True)
    ids = prepared.tiles.set_index("tile")["id"]
    dts = prepared.tiles.set_index("tile")["datatake"]
    out = pd.DataFrame(
        {
            "a": edges["a"].to_numpy(dtype=np.int64),
            "b": edges["b"].to_numpy(dtype=np.int64),
            "id_a": ids.reindex(edges["a"]).to_numpy(dtype=object),
            "id_b": ids.reindex(edges["b"]).to_numpy(dtype=object),
            "area_m2": edges["area_m2"].to_numpy(dtype=float),
            "utm_epsg": edges["utm_epsg"].to_numpy(dtype=np.int64),
            "same_datatake": dts.reindex(edges["a"]).to_numpy() == dts.reindex(edges["b"]).to_numpy(),
        }
    )
    if keep_geometry:
        geom = shapely.from_wkb(edges["wkb"].to_numpy()) if len(edges) else np.array([], dtype=object)
        return gpd.GeoDataFrame(out, geometry=gpd.GeoSeries(geom, crs=4326).values, crs=4326)
    return out


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
        npartitions: partitions of the spatial join (default: ~8,000 tiles each).
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
    from spectralearth.platform import storage

    t0 = time.perf_counter()
    prepared = prepare_tiles(tiles)
    edges = _edges_from_prepared(
        prepared, client=client, npartitions=npartitions, min_area_m2=min_area_m2, keep_geometry=True
    )
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
    edges_url = storage.join(out_url, EDGES_NAME)
    comps_url = storage.join(out_url, COMPONENTS_NAME)
    storage.atomic_write_bytes(edges_url, frame_to_parquet_bytes(edges), storage_options)
    storage.atomic_write_bytes(comps_url, frame_to_parquet_bytes(components), storage_options)
    if plot:
        from spectralearth.pipelines.plot import plot_overlaps

        plot_overlaps(tiles, edges, plot, storage_options=storage_options)
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

    Writes ``overlap_edges.parquet`` (GeoParquet, one row per edge with its WGS84
    intersection) and ``overlap_components.parquet`` (tile, id, component, degree,
    usable, quarantine_reason) next to the catalog, each in one atomic write.

    Args:
        catalog_url: the tile catalog (folder or parquet URL) as ``read_tiles`` takes it.
        storage_options: fsspec options (never credentials).
        cluster: where to run (a LocalCluster by default).
        plot: also draw the map to this PNG path/URL.
        min_area_m2: smallest intersection that makes an edge.
        npartitions: partitions of the spatial join.
    """
    from spectralearth.catalog import read_tiles

    tiles = read_tiles(catalog_url, storage_options=storage_options)
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
