"""Reading and writing the tile catalog files (stac-geoparquet and side tables).

Every file is written whole and atomically (local: temp + rename; object stores:
a single PUT), so a reader sees the previous catalog or the new one, never a mix
within one file. ``collection.json`` is written last by the index job.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from spectralearth.platform.storage import atomic_write_bytes, filesystem, join

__all__ = [
    "QUARANTINE_COLUMNS",
    "SUPERSEDED_COLUMNS",
    "TILE_COLUMNS",
    "read_ids",
    "read_item_dicts",
    "read_table",
    "read_tile_groups",
    "read_tiles",
    "tile_layout",
    "write_items",
    "write_table",
]

TILES_FILE = "tiles.parquet"
QUARANTINE_COLUMNS = ("product", "stage", "error_class", "message", "url", "snapshot", "retryable")
SUPERSEDED_COLUMNS = ("product", "superseded_by", "datatake", "tile", "snapshot")
#: columns of :func:`read_tiles` besides ``geometry``
TILE_COLUMNS = (
    "id",
    "datetime",
    "proj:code",
    "proj:shape",
    "proj:transform",
    "enmap:datatake_id",
    "enmap:tile_id",
    "enmap:processor_version",
    "eo:cloud_cover",
)


def write_items(items: Sequence[Mapping[str, Any]], catalog_url: str, *, storage_options: Mapping[str, Any] | None = None) -> None:
    """Write the tile items as stac-geoparquet ``tiles.parquet`` (atomically)."""
    from stac_geoparquet.arrow import parse_stac_items_to_arrow, to_parquet

    url = join(catalog_url, TILES_FILE)
    with tempfile.TemporaryDirectory(prefix="spectralearth-items-") as tmp:
        path = os.path.join(tmp, TILES_FILE)
        if items:
            reader = parse_stac_items_to_arrow(list(items), chunk_size=CATALOG_ROW_GROUP)
            to_parquet(reader, path + ".whole")
            _regroup(path + ".whole", path)
        else:
            pq.write_table(pa.table({"id": pa.array([], pa.string())}), path)
        with open(path, "rb") as f:
            atomic_write_bytes(url, f.read(), storage_options)


CATALOG_ROW_GROUP = 8_192
"""Rows per row group of ``tiles.parquet``: the planning jobs' tasks read a few groups each (their bytes, not
the catalog's), so the process that schedules them never decodes the footprints of a whole archive."""


def _regroup(src: str, dst: str) -> None:
    """Copy a parquet file into row groups of :data:`CATALOG_ROW_GROUP` rows (schema and its metadata kept).

    stac-geoparquet's writer buffers its batches into row groups of up to 1 Mi rows, i.e. one
    group for any catalog this size; a task could then only read all of it.
    """
    pf = pq.ParquetFile(src)
    with pq.ParquetWriter(dst, pf.schema_arrow) as writer:
        for batch in pf.iter_batches(batch_size=CATALOG_ROW_GROUP):
            writer.write_batch(batch, row_group_size=CATALOG_ROW_GROUP)


def _read_parquet(url: str, storage_options: Mapping[str, Any] | None, columns=None) -> pa.Table | None:
    """The table at ``url`` (None if absent): read whole in one request, or with ``columns`` only those
    columns' chunks (the footer says where they are), so one column of a large catalog costs its own bytes."""
    fs, path = filesystem(url, storage_options)
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as f:
        if columns is not None:
            return pq.read_table(f, columns=columns)
        data = f.read()
    return pq.read_table(io.BytesIO(data), columns=columns)


def read_ids(catalog_url: str, *, storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """Ids of the catalog's tiles in row order (reads one column only)."""
    table = _read_parquet(join(catalog_url, TILES_FILE), storage_options, columns=["id"])
    return [] if table is None else table.column("id").to_pylist()


IDS_DIGEST_KEY = b"spectralearth:ids_sha256"
"""Parquet footer key of a side table's digest of the catalog ids it was computed from (:func:`ids_digest`)."""


def ids_digest(arrays) -> str:
    """SHA-256 of tile ids in row order (each id and a newline), from arrow string arrays or lists, in order."""
    import hashlib

    h = hashlib.sha256()
    for arr in arrays:
        step = 16_384  # a slice of Python strings at a time
        for s in range(0, len(arr), step):
            part = arr[s : s + step]
            values = part.to_pylist() if hasattr(part, "to_pylist") else part
            h.update("".join(f"{v}\n" for v in values).encode())
    return h.hexdigest()


def catalog_ids_digest(catalog_url: str, *, storage_options: Mapping[str, Any] | None = None) -> str | None:
    """:func:`ids_digest` of the catalog's ids, read a batch at a time (None: no catalog).

    A process that only has to know whether a side table describes this catalog compares
    digests: the ids of a 232k-tile catalog read whole cost ~70 MB of arrow's pool, a batch a few.
    """
    fs, path = filesystem(join(catalog_url, TILES_FILE), storage_options)
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as f:
        pf = pq.ParquetFile(f)
        return ids_digest(b.column(0) for b in pf.iter_batches(batch_size=16_384, columns=["id"]))


def read_item_dicts(catalog_url: str, *, storage_options: Mapping[str, Any] | None = None) -> list[dict]:
    """All tile items of the catalog as STAC dicts, in catalog row order (empty if none)."""
    from stac_geoparquet.arrow import stac_table_to_items

    table = _read_parquet(join(catalog_url, TILES_FILE), storage_options)
    if table is None or table.num_rows == 0:
        return []
    return [dict(it) for it in stac_table_to_items(table)]


SIMPLIFIED_ATTR = "spectralearth:simplified_deg"
"""``GeoDataFrame.attrs`` key: the tolerance ``read_tiles(simplify_deg=...)`` simplified the valid footprints to."""

READ_BATCH_ROWS = 8_192
"""Rows decoded at a time by ``read_tiles``: with ``simplify_deg`` only one batch of full footprints is in memory."""


def read_tiles(catalog_url: str, *, storage_options: Mapping[str, Any] | None = None, columns: Sequence[str] | None = None,
               simplify_deg: float | None = None):
    """The tile table: a GeoDataFrame (EPSG:4326) with one row per tile, in catalog order.

    Columns: ``id``, ``geometry``, ``datetime`` (UTC), ``proj:code``, ``proj:shape``,
    ``proj:transform``, ``enmap:datatake_id``, ``enmap:tile_id``,
    ``enmap:processor_version``, ``eo:cloud_cover`` (plus any in ``columns``).
    The row position is the tile's index in the catalog. Only these columns are read
    from the file (column chunks, not the whole object).

    Args:
        simplify_deg: simplify every valid polygonal footprint (Douglas-Peucker, topology
            preserved) to this tolerance while decoding, a batch of rows at a time, and
            record it in ``attrs`` (:data:`SIMPLIFIED_ATTR`). Planning reads tiles this way:
            it works on footprints simplified to ``PLANNING_SIMPLIFY_DEG`` anyway, and the
            ~130-vertex outlines of a whole archive never sit in memory at once (~9 KB of
            the ~10 KB a tile takes there). Invalid footprints are left as they are, for
            ``prepare_tiles`` to repair (and then simplify).

    Raises:
        FileNotFoundError: no catalog at ``catalog_url``.
        ValueError: the catalog has no tiles.
    """
    with _open_tiles(catalog_url, storage_options) as pf:
        return _tile_frame(pf, None, columns, simplify_deg)


@contextlib.contextmanager
def _open_tiles(catalog_url: str, storage_options: Mapping[str, Any] | None):
    """The catalog's tile table as an open ``ParquetFile`` (its footer read), after checking it has tiles.

    Raises:
        FileNotFoundError: no catalog at ``catalog_url``.
        ValueError: the catalog has no tiles.
    """
    fs, path = filesystem(join(catalog_url, TILES_FILE), storage_options)
    if not fs.exists(path):
        raise FileNotFoundError(f"no tile catalog at {catalog_url} (expected {TILES_FILE}; run `spectralearth index` first)")
    with fs.open(path, "rb") as f:
        pf = pq.ParquetFile(f)
        if pf.metadata.num_rows == 0 or "geometry" not in pf.schema_arrow.names:
            raise ValueError(f"the tile catalog at {catalog_url} is empty (no tiles indexed; see quarantine.parquet)")
        yield pf


def tile_layout(catalog_url: str, *, storage_options: Mapping[str, Any] | None = None) -> tuple[list[int], list[str]]:
    """Rows in each row group of the catalog's tile table and its column names (the footer only), for tasks
    that read a few groups each.

    Raises:
        FileNotFoundError: no catalog at ``catalog_url``.
        ValueError: the catalog has no tiles.
    """
    with _open_tiles(catalog_url, storage_options) as pf:
        return _group_rows(pf), list(pf.schema_arrow.names)


def _group_rows(pf) -> list[int]:
    """Rows in each row group of an open ``ParquetFile``."""
    return [pf.metadata.row_group(k).num_rows for k in range(pf.metadata.num_row_groups)]


def read_tile_groups(catalog_url: str, row_groups: Sequence[int], *, storage_options: Mapping[str, Any] | None = None,
                     columns: Sequence[str] | None = None, simplify_deg: float | None = None):
    """The rows of some row groups of the tile table, as :func:`read_tiles` gives them (index: row in the whole table).

    Only those groups' column chunks are read (the footer says where they are), so a task
    that reads a few groups costs their bytes, not the catalog's.
    """
    with _open_tiles(catalog_url, storage_options) as pf:
        sizes = _group_rows(pf)
        gdf = _tile_frame(pf, list(row_groups), columns, simplify_deg)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    gdf.index = np.concatenate([np.arange(starts[k], starts[k] + sizes[k]) for k in row_groups]) if len(row_groups) else []
    return gdf


def _tile_frame(pf, row_groups, columns, simplify_deg):
    """Decode the tile table (or some of its row groups) a batch at a time; see :func:`read_tiles`."""
    import geopandas as gpd
    import pandas as pd
    import shapely

    names = set(pf.schema_arrow.names)
    want = [c for c in dict.fromkeys([*TILE_COLUMNS, *(columns or ())]) if c in names and c != "geometry"]
    frames, geoms = [], []
    for batch in pf.iter_batches(batch_size=READ_BATCH_ROWS, columns=["geometry", *want], row_groups=row_groups):
        g = shapely.from_wkb(batch.column("geometry").to_numpy(zero_copy_only=False))
        if simplify_deg:
            ok = ~pd.isna(g)
            ok[ok] = ~shapely.is_empty(g[ok]) & shapely.is_valid(g[ok]) & np.isin(shapely.get_type_id(g[ok]), (3, 6))
            g[ok] = shapely.simplify(g[ok], simplify_deg, preserve_topology=True)
        geoms.append(g)
        frames.append(pa.Table.from_batches([batch.drop_columns(["geometry"])]))
    if frames:
        df = pa.concat_tables(frames).to_pandas()
    else:  # no row groups asked for
        df = pa.schema([pf.schema_arrow.field(c) for c in want]).empty_table().to_pandas()
    gdf = gpd.GeoDataFrame(df, geometry=np.concatenate(geoms) if geoms else np.array([], dtype=object), crs="EPSG:4326")
    if "datetime" in gdf:
        gdf["datetime"] = pd.to_datetime(gdf["datetime"], utc=True)
    for col in ("enmap:datatake_id", "enmap:tile_id"):
        if col in gdf:
            gdf[col] = gdf[col].astype("int64")
    gdf = gdf.reset_index(drop=True)
    if simplify_deg:
        gdf.attrs[SIMPLIFIED_ATTR] = float(simplify_deg)
    return gdf


def read_table(catalog_url: str, name: str, *, storage_options: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Rows of a side table (``quarantine`` or ``superseded``) as dicts (empty if absent)."""
    table = _read_parquet(join(catalog_url, f"{name}.parquet"), storage_options)
    return [] if table is None else table.to_pylist()


def write_table(
    rows: Sequence[Mapping[str, Any]],
    catalog_url: str,
    name: str,
    columns: Sequence[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> None:
    """Write a side table with a fixed column order (atomically)."""
    data = {c: [r.get(c) for r in rows] for c in columns}
    types = {c: (pa.int64() if c in ("datatake", "tile") else pa.bool_() if c == "retryable" else pa.string())
             for c in columns}
    table = pa.table({c: pa.array(v, type=types[c]) for c, v in data.items()})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic_write_bytes(join(catalog_url, f"{name}.parquet"), buf.getvalue(), storage_options)
