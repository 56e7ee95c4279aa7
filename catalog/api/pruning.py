"""Searches of the embedded backend read only the files that can hold a match.

rustac's DuckDB search (0.9.9) turns a ``bbox`` into ``ST_Intersects(geometry, ...)``
and nothing else, so DuckDB reads every row group of every file of a collection, and
looks ``ids`` up the same way: on the ~431k patch items of the full-archive simulation
a bbox with no hit took seconds. Row-group statistics do not help, since no predicate
on the ``bbox`` columns reaches DuckDB.

:class:`PrunedSearchClient` wraps the client handed to stac-fastapi-geoparquet. For each
collection href (one file or a glob over a version's part files) it holds an
:class:`ItemIndex` (read once from the files: each item's bbox, temporal extent, a hash
of its id, and which file it is in; ~50 bytes an item). A search with ``bbox``,
``intersects``, ``datetime`` or ``ids`` first picks the items that *may* match (a superset:
bbox intersects the query's bounds, temporal extent intersects the interval, id hash
equal), then runs the wrapped search on the files holding those only, one file after
the other in the files' order, and stops when the page is full. No candidate: an empty
page without a query. The wrapped search still decides every match (geometry, datetime,
CQL2 filter), so results are those of a search over all files. A search that selects
nothing (a plain page of items) reads the files the same way, from the file its offset
falls in.

Paging stays that of stac-fastapi-geoparquet: ``offset`` counts matches in file order
and row order, the order DuckDB reads a glob in (sorted file names). A ``sortby`` over
several candidate files, and a CQL2 ``filter`` (or ``query``) with nothing else to prune
by, go to the wrapped search over the whole href unchanged: one DuckDB query over all
files beats many small ones when few items match.
"""

from __future__ import annotations

import glob
import threading
from typing import Any

import numpy as np

__all__ = ["ItemIndex", "PrunedSearchClient", "href_files"]

_NO_TIME = np.iinfo(np.int64)
# search parameters that select items (any of them: not every item of the files matches)
_SELECTING = ("bbox", "intersects", "datetime", "ids", "filter", "query", "collections", "sortby")


def href_files(href: str) -> list[str]:
    """The files of a collection href: a path, or a glob (sorted, the order DuckDB reads them in)."""
    return sorted(glob.glob(href)) if any(c in href for c in "*?[") else [href]


def _micros(table, name: str, fill: int) -> np.ndarray:
    """A timestamp column as int64 microseconds since the epoch (nulls, or not a timestamp column: ``fill``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = table.column(name)
    if not pa.types.is_timestamp(col.type):
        return np.full(table.num_rows, fill, np.int64)
    col = pc.cast(pc.cast(col, pa.timestamp("us", tz=col.type.tz)), pa.int64())
    return pc.fill_null(col, fill).to_numpy()


class ItemIndex:
    """Per item of a collection's files: bbox, temporal extent, id hash and file."""

    def __init__(self, files: list[str]):
        import pyarrow.parquet as pq

        self.files = list(files)
        self.rows: list[int] = []
        boxes, tmin, tmax, hashes, file_of = [], [], [], [], []
        for k, path in enumerate(self.files):
            pf = pq.ParquetFile(path)
            names = set(pf.schema_arrow.names)
            cols = [c for c in ("id", "bbox", "datetime", "start_datetime", "end_datetime") if c in names]
            t = pf.read(columns=cols)
            n = t.num_rows
            self.rows.append(n)
            if "bbox" in cols:
                bb = t.column("bbox").combine_chunks()
                boxes.append(np.stack([bb.field(f).to_numpy(zero_copy_only=False).astype(np.float64)
                                       for f in ("xmin", "ymin", "xmax", "ymax")], axis=1))
            else:  # no bbox column: every item may match any bbox
                boxes.append(np.full((n, 4), np.nan))
            # the extent covers datetime and the start..end span: a superset of either test
            lo = [_micros(t, c, _NO_TIME.max) for c in ("datetime", "start_datetime") if c in cols]
            hi = [_micros(t, c, _NO_TIME.min) for c in ("datetime", "end_datetime") if c in cols]
            tmin.append(np.minimum.reduce(lo) if lo else np.full(n, _NO_TIME.min))
            tmax.append(np.maximum.reduce(hi) if hi else np.full(n, _NO_TIME.max))
            hashes.append(np.fromiter((hash(i) for i in t.column("id").to_pylist()), np.int64, n))
            file_of.append(np.full(n, k, np.int32))
        self.bbox = np.concatenate(boxes) if boxes else np.zeros((0, 4))
        tmin, tmax = (np.concatenate(a) if a else np.zeros(0, np.int64) for a in (tmin, tmax))
        # an item without any time (extent inverted by the fills) may match any interval
        untimed = tmin > tmax
        self.tmin, self.tmax = np.where(untimed, _NO_TIME.min, tmin), np.where(untimed, _NO_TIME.max, tmax)
        self.file_of = np.concatenate(file_of) if file_of else np.zeros(0, np.int32)
        h = np.concatenate(hashes) if hashes else np.zeros(0, np.int64)
        self._order = np.argsort(h, kind="stable")
        self._hashes = h[self._order]

    def __len__(self) -> int:
        return len(self.file_of)

    def candidates(self, *, bounds=None, interval=None, ids=None) -> list[str]:
        """Files (in order) holding an item that may match; each criterion None: not used.

        Args:
            bounds: (west, south, east, north) the item's bbox must intersect.
            interval: (start, end) microseconds, either None (open), its temporal extent must intersect.
            ids: item ids, one of which it must have.
        """
        if ids is not None:
            keys = np.fromiter((hash(str(i)) for i in ids), np.int64, len(ids))
            lo = np.searchsorted(self._hashes, keys, "left")
            hi = np.searchsorted(self._hashes, keys, "right")
            pos = np.concatenate([self._order[a:b] for a, b in zip(lo, hi, strict=True)] or [np.zeros(0, np.int64)])
        else:
            pos = None
        sel = np.ones(len(self) if pos is None else len(pos), bool)
        if bounds is not None:
            w, s, e, n = bounds
            bb = self.bbox if pos is None else self.bbox[pos]
            with np.errstate(invalid="ignore"):  # NaN (no bbox): never excluded
                sel &= ~((bb[:, 0] > e) | (bb[:, 2] < w) | (bb[:, 1] > n) | (bb[:, 3] < s))
        if interval is not None:
            start, end = interval
            if end is not None:
                sel &= (self.tmin if pos is None else self.tmin[pos]) <= end
            if start is not None:
                sel &= (self.tmax if pos is None else self.tmax[pos]) >= start
        files = self.file_of if pos is None else self.file_of[pos]
        return [self.files[k] for k in np.unique(files[sel]).tolist()]


def _bounds(kwargs: dict) -> tuple[float, float, float, float] | None:
    """(west, south, east, north) of the search's bbox or intersects geometry; None: nothing to prune by."""
    bbox, geom = kwargs.get("bbox"), kwargs.get("intersects")
    if bbox is not None:
        try:
            b = [float(v) for v in bbox]
        except (TypeError, ValueError):
            return None
        if len(b) == 6:
            b = [b[0], b[1], b[3], b[4]]
        if len(b) != 4 or b[0] > b[2] or b[1] > b[3]:  # antimeridian-crossing or invalid: the wrapped search decides
            return None
        out = b
    else:
        out = None
    if geom is not None:
        import json

        import shapely.geometry

        try:
            g = shapely.geometry.shape(json.loads(geom) if isinstance(geom, str) else geom)
        except Exception:  # an invalid geometry: the wrapped search answers with its error
            return tuple(out) if out else None
        if g.is_empty:
            return tuple(out) if out else None
        gb = list(g.bounds)
        out = gb if out is None else [max(out[0], gb[0]), max(out[1], gb[1]), min(out[2], gb[2]), min(out[3], gb[3])]
    return tuple(out) if out else None


def _interval(value: Any) -> tuple[int | None, int | None] | None:
    if not value:
        return None
    from spectralearth.catalog.api.temporal import parse_interval

    try:
        start, end = parse_interval(str(value))
    except ValueError:  # the wrapped search answers with the error
        return None
    micros = lambda t: None if t is None else int(np.datetime64(t.rstrip("Z"), "us").astype(np.int64))  # noqa: E731
    return micros(start), micros(end)


class PrunedSearchClient:
    """A DuckDB search client that runs each search on the files that can hold a match (see the module)."""

    def __init__(self, client: Any):
        self._client = client
        self._indexes: dict[str, ItemIndex] = {}
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def index(self, href: str) -> ItemIndex:
        """The item index of ``href`` (read from its files on first use)."""
        with self._lock:
            if href not in self._indexes:
                self._indexes[href] = ItemIndex(href_files(href))
            return self._indexes[href]

    def search(self, href: str, **kwargs: Any) -> list[dict[str, Any]]:
        index = self.index(href)
        if not any(kwargs.get(k) for k in _SELECTING):
            # every item matches: the offset skips whole files by their row counts
            return self._paged(index.files, kwargs, rows=index.rows)
        bounds, interval = _bounds(kwargs), _interval(kwargs.get("datetime"))
        ids = kwargs.get("ids")
        if isinstance(ids, str):
            ids = [ids]
        files = index.candidates(bounds=bounds, interval=interval, ids=ids or None)
        narrowed = kwargs.get("filter") or kwargs.get("query") or kwargs.get("collections")
        if (kwargs.get("sortby") and len(files) > 1) or (narrowed and len(files) == len(index.files)):
            # an order over several files; or a filter of unknown selectivity over all of them
            return self._client.search(href, **kwargs)
        return self._paged(files, kwargs)

    def _paged(self, files: list[str], kwargs: dict, rows: list[int] | None = None) -> list[dict[str, Any]]:
        """Matches of ``files`` in order, ``offset`` skipped, at most ``limit``: as one search over them would give.

        ``rows``: the number of matches of each file, when known (every item matches).
        """
        limit = kwargs.pop("limit", None)
        offset = int(kwargs.pop("offset", None) or 0)
        kwargs.pop("max_items", None)
        out: list[dict[str, Any]] = []
        for k, path in enumerate(files):
            want = None if limit is None else int(limit) - len(out)
            if want is not None and want <= 0:
                break
            if rows is not None:
                if offset >= rows[k]:
                    offset -= rows[k]
                    continue
                got = self._client.search(path, **kwargs, limit=want, offset=offset)
                offset = 0
            else:
                # the matches before the offset are read and dropped (rustac projects before it
                # filters, so they cannot be counted on the id alone)
                got = self._client.search(path, **kwargs, limit=None if want is None else offset + want)
                skipped = min(offset, len(got))
                offset -= skipped
                got = got[skipped:]
            out.extend(got)
        return out
