"""STAC API ``datetime`` search as the spec defines it, for the embedded backend.

STAC API item-search matches an item when its temporal extent *intersects* the query:
its ``datetime``, or, for an item with ``start_datetime``/``end_datetime`` (a patch item
spans the dates of its views), the interval between them. rustac's DuckDB search (0.9.9)
keeps only items whose whole span lies inside the query interval, so a patch seen in
June and October is not found by a search for July to December.

:class:`SpanSearchClient` wraps the DuckDB client handed to stac-fastapi-geoparquet: it
takes ``datetime`` out of each search and adds the intersection test as a CQL2 filter
(joined with ``and`` to the request's own filter, text or JSON): on the span when every
item of the files has one (the patch collection), on ``datetime`` otherwise (the tiles).
Everything else goes to the wrapped client unchanged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

__all__ = ["SpanSearchClient", "intersects_filter", "parse_interval"]


def _instant(text: str) -> str | None:
    """RFC 3339 instant → ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC); ``..`` or empty → None (open)."""
    text = text.strip()
    if text in ("", ".."):
        return None
    from pystac.utils import str_to_datetime

    try:
        value = str_to_datetime(text)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"datetime: {text!r} is not an RFC 3339 date-time") from exc
    if value.tzinfo is None:
        raise ValueError(f"datetime: {text!r} has no time zone (RFC 3339 needs one, e.g. a trailing Z)")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_interval(value: str) -> tuple[str | None, str | None]:
    """``datetime`` parameter → (start, end), either open (None); an instant gives (t, t)."""
    parts = value.split("/")
    if len(parts) == 1:
        t = _instant(parts[0])
        if t is None:
            raise ValueError(f"datetime: {value!r} is neither an instant nor an interval")
        return t, t
    if len(parts) != 2:
        raise ValueError(f"datetime: {value!r} has more than one '/'")
    start, end = _instant(parts[0]), _instant(parts[1])
    if start is None and end is None:
        raise ValueError(f"datetime: {value!r} is open at both ends")
    if start is not None and end is not None and start > end:
        raise ValueError(f"datetime: {value!r} ends before it starts")
    return start, end


def _cmp(op: str, prop: str, ts: str) -> dict:
    return {"op": op, "args": [{"property": prop}, {"timestamp": ts}]}


def _all(args: list[dict]) -> dict:
    return args[0] if len(args) == 1 else {"op": "and", "args": args}


def intersects_filter(value: str, *, has_span: bool, has_datetime: bool = True) -> dict:
    """CQL2-JSON: the item's datetime lies in ``value``, or its start/end span intersects it."""
    start, end = parse_interval(value)
    alternatives = []
    if has_span:
        span = []
        if end is not None:
            span.append(_cmp("<=", "start_datetime", end))
        if start is not None:
            span.append(_cmp(">=", "end_datetime", start))
        alternatives.append(_all(span))
    if has_datetime:
        inside = []
        if start is not None:
            inside.append(_cmp(">=", "datetime", start))
        if end is not None:
            inside.append(_cmp("<=", "datetime", end))
        alternatives.append(_all(inside))
    if not alternatives:
        raise ValueError("datetime: the items have no datetime, start_datetime or end_datetime to search")
    return alternatives[0] if len(alternatives) == 1 else {"op": "or", "args": alternatives}


@lru_cache(maxsize=256)
def _temporal_columns(href: str) -> tuple[bool, bool]:
    """(every item has start/end_datetime, the files have a datetime column) for ``href`` (a path or a glob).

    Read from the parquet footers: the column names and their null counts.
    """
    import pyarrow.parquet as pq

    from spectralearth.catalog.api.pruning import href_files

    files = href_files(href)
    if not files:
        return False, True
    span, has_datetime = True, False
    for path in files:
        meta = pq.ParquetFile(path).metadata
        names = {meta.schema.column(i).name: i for i in range(meta.num_columns)}
        has_datetime = has_datetime or "datetime" in names
        for col in ("start_datetime", "end_datetime"):
            if col not in names:
                span = False
                continue
            for rg in range(meta.num_row_groups):
                st = meta.row_group(rg).column(names[col]).statistics
                if st is None or not st.has_null_count or st.null_count > 0:
                    span = False
    return span, has_datetime


class SpanSearchClient:
    """A rustac ``DuckdbClient`` whose ``search`` matches ``datetime`` by intersection (see the module)."""

    def __init__(self, client: Any):
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def search(self, href: str, **kwargs: Any) -> Any:
        value = kwargs.pop("datetime", None)
        if value:
            span, has_datetime = _temporal_columns(href)
            try:
                # one branch, never an ``or``: rustac 0.9.9 joins the bbox to a filter without
                # parentheses, so ``bbox and a or b`` would match b anywhere (measured on the
                # patch files). Items with a span are matched by it (their datetime lies inside);
                # the rest by datetime.
                ours = intersects_filter(value, has_span=span, has_datetime=has_datetime and not span)
            except ValueError as exc:
                from fastapi import HTTPException

                raise HTTPException(400, str(exc)) from None
            theirs = kwargs.get("filter")
            if theirs is None:
                kwargs["filter"] = ours
            else:
                if isinstance(theirs, str):
                    import cql2

                    theirs = cql2.parse_text(theirs).to_json()
                kwargs["filter"] = {"op": "and", "args": [theirs, ours]}
            kwargs.pop("filter-lang", None)
            kwargs.pop("filter_lang", None)
        return self._client.search(href, **kwargs)
