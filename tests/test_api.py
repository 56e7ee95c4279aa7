"""The STAC API on both backends: stac-api-validator, pystac-client, guards, the browse endpoints.

The embedded backend (stac-fastapi-geoparquet over the published files) and pgstac (a
real PostgreSQL + PostGIS started by :class:`PgstacServer`, loaded with pypgstac) serve
the same catalog; both must pass stac-api-validator's core, features, item-search and
filter classes, and answer pystac-client's searches with the same items.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from spectralearth.catalog.api.thread import ServerThread

pytestmark = pytest.mark.slow

PATCHES = "spectralearth-patches"


@pytest.fixture(scope="module")
def pgstac_db(patch_catalog):
    from spectralearth.catalog.api import PgstacServer, load_pgstac

    pg = PgstacServer().start()
    try:
        counts = load_pgstac(patch_catalog.catalog, pg.dsn)
        assert counts == {"enmap-l2a-tiles": 100, PATCHES: 90}
        yield pg
    finally:
        pg.stop()


@pytest.fixture(scope="module", params=["geoparquet", "pgstac"])
def api(request, patch_catalog):
    from spectralearth.catalog.api import ServeConfig, create_app

    saved = dict(os.environ)
    if request.param == "pgstac":
        os.environ.update(request.getfixturevalue("pgstac_db").env)
    try:
        served = ServerThread(create_app(ServeConfig(catalog_url=patch_catalog.catalog, backend=request.param, max_limit=200)))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    served.backend = request.param
    yield served
    served.stop()

def test_stac_api_validator_passes(api, patch_catalog):
    from spectralearth.catalog.api.conformance import validate_api

    geometry = json.dumps({"type": "Polygon", "coordinates": [[[6, 48], [15, 48], [15, 49.5], [6, 49.5], [6, 48]]]})
    passed, report = validate_api(api.url, collection=PATCHES, geometry=geometry)
    tail = report[report.find("Warnings"):] if "Warnings" in report else report[-4000:]
    assert passed, f"{api.backend}: {tail}"
    assert "Errors: none" in report and "not shipped offline" not in report


def _search_ids(client, **kw) -> list[str]:
    return sorted(it.id for it in client.search(**kw).items())


def _span(item: dict) -> tuple[str, str]:
    p = item["properties"]
    return p.get("start_datetime") or p["datetime"], p.get("end_datetime") or p["datetime"]


def test_pystac_client_searches(api, patch_catalog):
    import pystac_client

    from spectralearth.catalog.patches import read_patch_items

    client = pystac_client.Client.open(api.url)
    items = read_patch_items(patch_catalog.catalog)
    bboxes = {it["id"]: it["bbox"] for it in items}
    # bbox + datetime: exactly the items whose bbox intersects and whose start/end span intersects
    # the range (STAC API item-search: a temporal property that intersects the value)
    box = [8.0, 48.0, 11.0, 49.5]
    first, last = "2022-06-01", "2023-06-30"
    got = _search_ids(client, collections=[PATCHES], bbox=box, datetime=f"{first}/{last}", limit=7)
    in_box = {i for i, b in bboxes.items() if not (b[2] < box[0] or b[0] > box[2] or b[3] < box[1] or b[1] > box[3])}
    want = sorted(it["id"] for it in items if it["id"] in in_box and _span(it)[0][:10] <= last and _span(it)[1][:10] >= first)
    assert got == want and len(want) > 7  # several pages of 7
    # some of them only overlap the range: a search keeping whole spans inside it would miss them
    crossing = [it["id"] for it in items if it["id"] in want and not (first <= _span(it)[0][:10] and _span(it)[1][:10] <= last)]
    assert crossing, "the sample has no patch whose span crosses the range"
    # ids
    some = sorted(bboxes)[:3]
    assert _search_ids(client, ids=some, collections=[PATCHES]) == some
    # CQL2 on view count and datetime
    got = _search_ids(client, collections=[PATCHES], filter={"op": "and", "args": [
        {"op": ">=", "args": [{"property": "spectralearth:view_count"}, 3]},
        {"op": ">=", "args": [{"property": "datetime"}, {"timestamp": "2022-09-01T00:00:00Z"}]}]}, filter_lang="cql2-json")
    want = sorted(it["id"] for it in items if it["properties"]["spectralearth:view_count"] >= 3 and it["properties"]["datetime"] >= "2022-09-01")
    assert got == want and want
    # intersects
    poly = {"type": "Polygon", "coordinates": [[[9, 48.5], [10, 48.5], [10, 48.8], [9, 48.8], [9, 48.5]]]}
    got = _search_ids(client, collections=[PATCHES], intersects=poly)
    assert got and set(got) <= {i for i, b in bboxes.items() if b[0] < 10 and b[2] > 9}
    # a bbox with no patches is an empty page, not an error
    assert _search_ids(client, collections=[PATCHES], bbox=[-70, -30, -69, -29]) == []
    # the tile collection is served too
    tiles = list(client.search(collections=["enmap-l2a-tiles"], max_items=150).items())
    assert len(tiles) == 100


def test_guards(api, patch_catalog):
    status, _, body = api.get("/search?limit=100000&collections=" + PATCHES)
    assert status == 200 and len(json.loads(body)["features"]) == 90  # clamped to max_limit (200): all 90
    status, _, body = api.get("/search?limit=-3")
    assert status == 400 and b"limit" in body
    status, _, body = api.get("/search?limit=abc")
    assert status == 400 and b"limit" in body
    status, _, body = api.get("/search", method="POST", body={"limit": 0})
    assert status == 400 and b"limit" in body
    for method, path in (("POST", "/collections"), ("DELETE", f"/collections/{PATCHES}"), ("PUT", f"/collections/{PATCHES}/items/x")):
        status, _, body = api.get(path, method=method, body={})
        assert status == 405 and b"read-only" in body, (method, path, status)
    for path in ("/browse/static/../../../etc/passwd", "/browse/static/%2e%2e/%2e%2e/etc/passwd", "/browse/api/thumbnail/..%2f..%2fetc.png",
                 "/browse/api/item/patch-0000001-elsewhere", f"/browse/api/item/patch-9999999-{patch_catalog.version}"):
        status, _, body = api.get(path)
        assert status in (400, 404, 422) and b"root:" not in body, (path, status)


def test_browse_endpoints(api, patch_catalog):
    from spectralearth.catalog.patches import read_patch_items
    from spectralearth.catalog.pixels import open_patch

    status, ctype, body = api.get("/browse/")
    assert status == 200 and "text/html" in ctype and b"leaflet.js" in body
    status, ctype, _ = api.get("/browse/static/vendor/leaflet.js")
    assert status == 200 and "javascript" in ctype
    status, _, body = api.get("/browse/api/aggregate?bbox=-180,-90,180,90&cells=10")
    agg = json.loads(body)
    assert status == 200 and agg["total"] == 90 and sum(c["count"] for c in agg["cells"]) == 90
    item = max(read_patch_items(patch_catalog.catalog), key=lambda i: i["properties"]["spectralearth:view_count"])
    status, _, body = api.get(f"/browse/api/spectrum/{item['id']}?row=100&col=37")
    spec = json.loads(body)
    da = open_patch(item)
    assert status == 200 and len(spec["views"]) == da.shape[0]
    got = np.array([[np.nan if v is None else v for v in view["reflectance"]] for view in spec["views"]])
    np.testing.assert_allclose(got, da.values[:, :, 100, 37], atol=6e-6)
    status, _, body = api.get(f"/browse/api/spectrum/{item['id']}?row=128&col=0")
    assert status == 400 and b"outside" in body
    status, ctype, body = api.get(f"/browse/api/download/{item['id']}.tif")
    assert status == 200 and "tiff" in ctype and body[:4] in (b"II*\x00", b"MM\x00*")
    status, ctype, body = api.get(f"/browse/api/thumbnail/{item['id']}.png")
    assert status == 200 and body[:8] == b"\x89PNG\r\n\x1a\n"
