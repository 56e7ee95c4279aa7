"""The embedded backend reads only the part files that can hold a match, and finds what a search of all files finds."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow


class _Recording:
    """The real DuckDB client, remembering which hrefs each search read."""

    def __init__(self, client):
        self.client, self.hrefs = client, []

    def search(self, href, **kwargs):
        self.hrefs.append(href)
        return self.client.search(href, **kwargs)


@pytest.fixture(scope="module")
def clients(patch_catalog):
    from spectralearth.catalog.api.app import _duckdb_client
    from spectralearth.catalog.api.pruning import PrunedSearchClient
    from spectralearth.catalog.api.temporal import SpanSearchClient
    from spectralearth.catalog.patches import version_files
    from spectralearth.platform import storage

    files = [storage.strip_protocol(f) for f in version_files(patch_catalog.catalog, patch_catalog.version)]
    href = files[0].rsplit("/", 1)[0] + "/part-*.parquet"
    full = SpanSearchClient(_duckdb_client())
    rec = _Recording(full)
    return full, PrunedSearchClient(rec), rec, href, files


def _ids(items):
    return [it["id"] for it in items]


def test_pruned_searches_equal_full_searches(clients, patch_catalog):
    from spectralearth.catalog.patches import read_patch_items

    full, pruned, rec, href, files = clients
    items = read_patch_items(patch_catalog.catalog)
    some = [items[5]["id"], items[40]["id"], items[88]["id"], "patch-9999999-v1"]
    b = items[30]["bbox"]
    around = [b[0] - 0.3, b[1] - 0.3, b[2] + 0.3, b[3] + 0.3]
    year = "2022-01-01T00:00:00Z/2022-12-31T23:59:59Z"
    cases = [  # (search, whether it runs over all files at once)
        ({"bbox": around, "limit": 100}, False),
        ({"bbox": around, "datetime": year, "limit": 100}, False),
        ({"bbox": [8.0, 48.0, 11.0, 49.5], "datetime": "2022-06-01T00:00:00Z/2023-06-30T00:00:00Z", "limit": 7, "offset": 0}, False),
        ({"bbox": [8.0, 48.0, 11.0, 49.5], "datetime": "2022-06-01T00:00:00Z/2023-06-30T00:00:00Z", "limit": 7, "offset": 7}, False),
        ({"bbox": [8.0, 48.0, 11.0, 49.5], "limit": 5, "offset": 19}, False),
        ({"bbox": [-70, -30, -69, -29], "limit": 100}, False),  # no patch there
        ({"ids": some, "limit": 10}, False),
        ({"ids": [items[7]["id"]], "bbox": [-70, -30, -69, -29], "limit": 10}, False),
        ({"intersects": {"type": "Polygon", "coordinates": [[[9, 48.5], [10, 48.5], [10, 48.8], [9, 48.8], [9, 48.5]]]}, "limit": 50}, False),
        ({"bbox": around, "filter": "\"spectralearth:view_count\" >= 2", "limit": 100}, False),
        ({"datetime": "2023-01-01T00:00:00Z/..", "limit": 20, "offset": 30}, False),
        ({"limit": 10}, False),  # plain pages: from the file the offset falls in
        ({"limit": 10, "offset": 37}, False),
        ({"limit": 100, "offset": 85}, False),
        ({"limit": 10, "offset": 90}, False),
        ({"filter": "\"spectralearth:view_count\" >= 2", "limit": 10, "offset": 3}, True),
        ({"bbox": [6.0, 47.0, 16.0, 50.0], "sortby": [{"field": "datetime", "direction": "desc"}], "limit": 10}, True),
    ]
    for kw, whole in cases:
        want = _ids(full.search(href, **kw))
        rec.hrefs.clear()
        got = _ids(pruned.search(href, **dict(kw)))
        assert got == want, kw
        assert (rec.hrefs == [href]) if whole else (href not in rec.hrefs), (kw, rec.hrefs)
        if "bbox" in kw or "ids" in kw or "offset" in kw:
            assert len(set(rec.hrefs)) < len(files), (kw, rec.hrefs)
    assert all(_ids(full.search(href, **kw)) for kw, _ in cases[9:10] + cases[10:13])  # these have matches
    # a page walk across the part files gives every match once, in the order of one search over all of them
    box = {"bbox": [6.0, 47.0, 16.0, 50.0], "datetime": "2022-01-01T00:00:00Z/2024-12-31T23:59:59Z"}
    everything = _ids(full.search(href, **box, limit=1000))
    pages = [_ids(pruned.search(href, **box, limit=6, offset=o)) for o in range(0, len(everything) + 6, 6)]
    assert [i for p in pages for i in p] == everything and len(everything) > 12 and pages[-1] == []
    # no candidate: answered without a query
    rec.hrefs.clear()
    assert pruned.search(href, bbox=[-70, -30, -69, -29], limit=10) == [] and rec.hrefs == []
    assert pruned.search(href, ids=["patch-9999999-v1"], limit=10) == [] and rec.hrefs == []


def test_index_is_a_superset(clients, patch_catalog):
    """Every item's own bbox and span select its file; an id selects exactly the file holding it."""
    from spectralearth.catalog.patches import read_patch_items

    _, pruned, _, href, files = clients
    index = pruned.index(href)
    assert len(index) == 90 and index.files == files
    for it in read_patch_items(patch_catalog.catalog)[::7]:
        p = it["properties"]
        start = int(np.datetime64(p["start_datetime"].rstrip("Z"), "us").astype(np.int64))
        end = int(np.datetime64(p["end_datetime"].rstrip("Z"), "us").astype(np.int64))
        (home,) = index.candidates(ids=[it["id"]])
        assert home in index.candidates(bounds=tuple(it["bbox"]), interval=(end, end))
        assert home in index.candidates(bounds=tuple(it["bbox"]), interval=(start, None))
        assert home not in index.candidates(ids=[it["id"]], interval=(None, start - 1))
