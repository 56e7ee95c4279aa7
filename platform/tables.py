"""Partitioned parquet tables on any fsspec storage, committed atomically by a manifest.

The planning jobs (overlap edges, combinations, patch plan) write their outputs as
tables of many part files, each written by the dask task that computed it, so no
process ever holds a whole output. A table at ``URL`` (e.g. ``.../patches.parquet``) is
a folder::

    URL/_manifest.json                     the committed run: its part files, rows, per-part facts
    URL/run=<token>/part-00000.parquet     the part files of one run (plain (Geo)Parquet)

Writers put every part under a new ``run=<token>/`` prefix and then replace
``_manifest.json`` in one atomic write: readers see the previous run or the new one,
never a mix, and a job that dies half-way leaves only unreferenced files (removed by the
next commit). Part files are ordinary parquet, so dask-geopandas, DuckDB or pyarrow read
them directly from :func:`part_urls`.

A plain single parquet file at ``URL`` (the layout before tables, or a user's own file)
is read as a table of one part.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from spectralearth.platform import storage

__all__ = ["MANIFEST", "TableWriter", "commit", "exists", "manifest", "part_urls", "read_part", "read_table", "write_part"]

MANIFEST = "_manifest.json"
FORMAT = "spectralearth-table/1"


def new_run() -> str:
    """A fresh run token (sortable by time, unique)."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


def part_name(run: str, k: int) -> str:
    """The path of part ``k`` of run ``run``, relative to the table."""
    return f"run={run}/part-{k:05d}.parquet"


def write_part(url: str, run: str, k: int, frame: pd.DataFrame, storage_options: Mapping[str, Any] | None = None,
               **facts: Any) -> dict[str, Any]:
    """Write one part (called in the task that computed it); returns its manifest entry.

    ``facts`` (JSON values, e.g. the range of components the part holds) are kept in the
    manifest entry, so readers can pick parts without opening them.
    """
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False, compression="zstd")
    name = part_name(run, k)
    fs, path = storage.filesystem(url, storage_options)
    if storage.protocol_of(url) == "file" and fs.isfile(path):
        # a single-file table of an earlier layout holds the folder's name: it goes first
        try:
            fs.rm(path)
        except FileNotFoundError:  # another task removed it
            pass
    storage.atomic_write_bytes(storage.join(url, name), buf.getvalue(), storage_options)
    return {"file": name, "rows": int(len(frame)), "bytes": buf.tell(), **facts}


def commit(url: str, run: str, parts: Sequence[Mapping[str, Any]], storage_options: Mapping[str, Any] | None = None,
           **meta: Any) -> dict[str, Any]:
    """Make run ``run`` (its ``parts``, in table order) the table at ``url``; drop older runs.

    Raises:
        ValueError: a part does not belong to ``run``.
    """
    for p in parts:
        if not str(p["file"]).startswith(f"run={run}/"):
            raise ValueError(f"{storage.redact(url)}: part {p['file']!r} is not of run {run!r}")
    fs, path = storage.filesystem(url, storage_options)
    if fs.isfile(path):  # a single-file table written before: the folder replaces it
        fs.rm(path)
    doc = {"format": FORMAT, "run": run, "rows": int(sum(int(p["rows"]) for p in parts)),
           "committed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **meta, "parts": [dict(p) for p in parts]}
    storage.atomic_write_bytes(storage.join(url, MANIFEST), json.dumps(doc, indent=1).encode(), storage_options)
    _drop_other_runs(fs, path, run)
    return doc


def _drop_other_runs(fs, path: str, keep: str) -> None:
    fs.invalidate_cache(path)  # s3fs caches listings: the runs written by other processes must show
    try:
        entries = fs.ls(path, detail=False)
    except FileNotFoundError:
        return
    for entry in entries:
        name = entry.rstrip("/").rsplit("/", 1)[-1]
        if name.startswith("run=") and name != f"run={keep}":
            try:
                fs.rm(entry, recursive=True)
            except FileNotFoundError:  # a concurrent commit removed it
                pass
    fs.invalidate_cache(path)


def manifest(url: str, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The committed manifest of the table at ``url`` (a one-part manifest for a single file).

    Raises:
        FileNotFoundError: no committed table (and no parquet file) at ``url``.
    """
    fs, path = storage.filesystem(url, storage_options)
    murl = storage.join(url, MANIFEST)
    if storage.exists(murl, storage_options):
        doc = json.loads(storage.read_bytes(murl, storage_options))
        if doc.get("format") != FORMAT:
            raise ValueError(f"{storage.redact(murl)}: not a table manifest (format {doc.get('format')!r})")
        return doc
    if fs.isfile(path):
        return {"format": FORMAT, "run": None, "rows": None, "parts": [{"file": "", "rows": None}]}
    raise FileNotFoundError(f"no table at {storage.redact(url)} (no {MANIFEST})")


def exists(url: str, storage_options: Mapping[str, Any] | None = None) -> bool:
    """True if a committed table (or a single parquet file) is at ``url``."""
    try:
        manifest(url, storage_options)
    except FileNotFoundError:
        return False
    return True


def part_urls(url: str, storage_options: Mapping[str, Any] | None = None, *, doc: Mapping[str, Any] | None = None) -> list[str]:
    """URLs of the table's part files, in table order."""
    doc = doc or manifest(url, storage_options)
    return [storage.join(url, p["file"]) if p["file"] else url for p in doc["parts"]]


def read_part(part_url: str, *, columns: Sequence[str] | None = None, storage_options: Mapping[str, Any] | None = None,
              filters=None, geo: bool | None = None):
    """Read one part file (a GeoDataFrame when it holds GeoParquet metadata, unless ``geo=False``)."""
    import pyarrow.parquet as pq

    data = storage.read_bytes(part_url, storage_options)
    table = pq.read_table(io.BytesIO(data), columns=list(columns) if columns is not None else None, filters=filters)
    is_geo = b"geo" in (table.schema.metadata or {}) and (columns is None or "geometry" in columns)
    if geo is not False and is_geo:
        import geopandas as gpd

        return gpd.GeoDataFrame.from_arrow(table)
    return table.to_pandas()


def read_table(url: str, *, columns: Sequence[str] | None = None, storage_options: Mapping[str, Any] | None = None,
               parts: Iterable[int] | None = None, filters=None, geo: bool | None = None):
    """Read the table (or the parts numbered ``parts``) into one frame, in table order."""
    doc = manifest(url, storage_options)
    urls = part_urls(url, storage_options, doc=doc)
    if parts is not None:
        urls = [urls[k] for k in parts]
    frames = [read_part(u, columns=columns, storage_options=storage_options, filters=filters, geo=geo) for u in urls]
    if not frames:
        raise ValueError(f"{storage.redact(url)}: the table has no parts")
    if len(frames) == 1:
        return frames[0]
    out = pd.concat(frames, ignore_index=True)
    if hasattr(frames[0], "geometry") and not hasattr(out, "geometry"):
        import geopandas as gpd

        out = gpd.GeoDataFrame(out, geometry="geometry", crs=frames[0].crs)
    return out


class TableWriter:
    """The writer side of one run, to hand to tasks: ``writer.part(k, frame, **facts)`` in each task,
    ``writer.commit(entries)`` once at the end (a picklable value: URL, run and options only)."""

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None, run: str | None = None) -> None:
        self.url = url
        self.storage_options = dict(storage_options or {})
        self.run = run or new_run()

    def part(self, k: int, frame: pd.DataFrame, **facts: Any) -> dict[str, Any]:
        return write_part(self.url, self.run, k, frame, self.storage_options, **facts)

    def commit(self, parts: Sequence[Mapping[str, Any]], **meta: Any) -> dict[str, Any]:
        return commit(self.url, self.run, sorted(parts, key=lambda p: p["file"]), self.storage_options, **meta)

    def abandon(self) -> None:
        """Remove this run's parts (after a failure; the committed table is untouched)."""
        fs, path = storage.filesystem(storage.join(self.url, f"run={self.run}"), self.storage_options)
        try:
            fs.rm(path, recursive=True)
        except FileNotFoundError:
            pass
