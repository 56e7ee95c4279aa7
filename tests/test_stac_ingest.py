"""Indexing from a STAC API and extracting from remote COGs, against a loopback replica of real servers.

The replica: the session's synthetic archive, its images converted to Cloud-Optimized
GeoTIFFs, served by :class:`AuthFileServer` (HTTPS with a throw-away CA, HTTP basic auth,
byte ranges), and a STAC API (``stac-fastapi-geoparquet`` under uvicorn) whose items
carry an ``image`` and a ``metadata`` asset pointing at that server, like DLR's
``ENMAP_HSI_L2A`` collection. Credentials are in a netrc file named by ``$NETRC``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spectralearth.platform import storage
from spectralearth.platform.cluster import ClusterSpec

# the replica's setup converts the session archive's images to COGs: on a loaded 2-core machine
# that alone can pass the default 600 s
pytestmark = pytest.mark.timeout(1800)

COLLECTION = "ENMAP_HSI_L2A"
CLI = os.path.join(os.path.dirname(sys.executable), "spectralearth")
PASSWORD = "PW-" + secrets.token_hex(10)
USER = "enmap-user"


def _cog_copy(src: Path, dst: Path) -> None:
    from rasterio.shutil import copy as rio_copy

    rio_copy(str(src), str(dst), driver="COG", BLOCKSIZE=256, OVERVIEWS="AUTO", NUM_THREADS=1)


def _item(metadata, product: str, files: dict[str, str]) -> dict:
    lon = [p[0] for p in metadata.corners_lonlat]
    lat = [p[1] for p in metadata.corners_lonlat]
    ring = [list(p) for p in metadata.corners_lonlat] + [list(metadata.corners_lonlat[0])]
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": product,
        "collection": COLLECTION,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": [min(lon), min(lat), max(lon), max(lat)],
        "properties": {"datetime": metadata.start_time.isoformat().replace("+00:00", "Z"), "platform": "EnMAP",
                       "eo:cloud_cover": metadata.cloud_cover},
        "links": [],
        "assets": {
            "image": {"href": files["SPECTRAL_IMAGE.TIF"], "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                      "roles": ["data"]},
            "metadata": {"href": files["METADATA.XML"], "type": "application/xml", "roles": ["metadata"]},
        },
    }


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    import trustme

    d = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    cert.private_key_and_cert_chain_pem.write_to_path(str(d / "server.pem"))
    return d


@pytest.fixture(scope="module")
def netrc_env(tls, tmp_path_factory):
    """The process environment of a user of the replica: their netrc and the CA that signed its certificate."""
    d = tmp_path_factory.mktemp("home")
    good = d / "netrc"
    good.write_text(f"machine 127.0.0.1 login {USER} password {PASSWORD}\n")
    good.chmod(0o600)
    env = {"NETRC": str(good), "SSL_CERT_FILE": str(tls / "ca.pem"), "REQUESTS_CA_BUNDLE": str(tls / "ca.pem"),
           "CURL_CA_BUNDLE": str(tls / "ca.pem")}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        yield env


@contextlib.contextmanager
def serve_replica(archive: str, root: Path, tls: Path, *, ghost: bool = True):
    """The folder products of ``archive`` as COGs on an HTTPS server with basic auth, and a STAC API over their items.

    Products that deliver the same image file (hard links: revisits) share one COG.
    ``ghost``: add an item whose files the server does not have (404).
    """
    from spectralearth.catalog.enmap import discover_products, read_metadata
    from spectralearth.platform.fileserver import AuthFileServer
    from spectralearth.platform.stacserver import StacApiServer, write_items_parquet

    served = root / "files"
    found = discover_products(archive)
    server = AuthFileServer(str(served), username=USER, password=PASSWORD, certfile=str(tls / "server.pem"),
                            keyfile=str(tls / "server.pem")).start()
    api = None
    try:
        items, local, cogs = [], {}, {}
        for src in found.sources:
            if src.delivery != "folder":
                continue  # the ZIP deliveries stay out: the provider serves loose files
            folder = served / "ENMAP.HSI.L2A" / src.product_id
            folder.mkdir(parents=True)
            image = folder / f"{src.product_id}-SPECTRAL_IMAGE.TIF"
            st = os.stat(src.file("SPECTRAL_IMAGE.TIF"))
            if (st.st_dev, st.st_ino) in cogs:
                os.link(cogs[st.st_dev, st.st_ino], image)
            else:
                _cog_copy(Path(src.file("SPECTRAL_IMAGE.TIF")), image)
                cogs[st.st_dev, st.st_ino] = image
            shutil.copy(src.file("METADATA.XML"), folder / f"{src.product_id}-METADATA.XML")
            files = {s: server.url_of(str((folder / f"{src.product_id}-{s}").relative_to(served)))
                     for s in ("SPECTRAL_IMAGE.TIF", "METADATA.XML")}
            items.append(_item(read_metadata(src), src.product_id, files))
            local[src.product_id] = image
        extra, ghost_id = [], None
        if ghost:  # an item whose files the server does not have: 404
            g = dict(items[0], id=items[0]["id"].replace("_V010", "_V019"))
            g["assets"] = {k: dict(v, href=v["href"].replace("ENMAP.HSI.L2A/", "gone/")) for k, v in items[0]["assets"].items()}
            extra, ghost_id = [g], g["id"]
        api = StacApiServer(write_items_parquet(items + extra, root / "items.parquet")).start()
        yield {"api": api, "files": server, "items": items, "ghost": ghost_id, "local": local}
    finally:
        if api is not None:
            api.stop()
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def replica(pixel_archive, tmp_path_factory, tls, netrc_env):
    """The session archive's products as COGs on an HTTPS server with basic auth, and a STAC API over their items."""
    with serve_replica(pixel_archive, tmp_path_factory.mktemp("replica"), tls) as r:
        yield r


def _no_secret_under(url: str, secret: str) -> None:
    fs, root = storage.filesystem(url)
    for path in fs.find(root):
        assert secret.encode() not in fs.cat_file(path), path


@pytest.mark.slow
def test_stac_api_ingest_end_to_end(replica, tmp_path):
    """index stac:URL (CLI) -> build -> a cube whose every view equals its window of the source COG."""
    import rasterio
    from rasterio.windows import Window

    from spectralearth.catalog import read_item_dicts
    from spectralearth.pipelines.build import BuildConfig, build
    from spectralearth.pipelines.extract import SPECTRALEARTH_BANDS
    from spectralearth.pipelines.plan import PlanParams, read_plan
    from spectralearth.platform.cube import open_cube

    api, files = replica["api"], replica["files"]
    out = tmp_path / "out"
    catalog = out / "catalog"
    files.reset_stats()
    proc = subprocess.run(
        [CLI, "-q", "index", f"stac:{api.url}", "--catalog", str(catalog), "--collection", COLLECTION,
         "--bbox", "-180", "-90", "180", "90", "--datetime", "2020-01-01T00:00:00Z/2030-01-01T00:00:00Z",
         "--cluster", "sync", "--json"],
        capture_output=True, text=True, timeout=600, env=os.environ.copy(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    n = len(replica["items"])
    assert report["discovered"] == n + 1 and report["indexed"] == n and report["quarantined"] == 1, report["quarantine"]
    (q,) = report["quarantine"]
    assert q["product"] == replica["ghost"] and q["error_class"] == "RemoteNotFoundError" and "404" in q["message"]
    assert "SPECTRAL_IMAGE" not in q["message"] or "gone/" in q["message"]
    # the index read headers and XML only, by range requests: far less than the images
    image_bytes = sum(p.stat().st_size for p in replica["local"].values())
    st = files.stats()
    assert st["bytes_sent"] < 0.1 * image_bytes, st

    items = read_item_dicts(str(catalog))
    by_id = {it["id"]: it for it in items}
    assert set(by_id) == {it["id"] for it in replica["items"]}
    for up in replica["items"]:
        it = by_id[up["id"]]
        assert it["properties"]["enmap:upstream_id"] == up["id"]
        assert it["properties"]["enmap:delivery"] == "stac"
        assert it["assets"]["spectral_image"]["href"] == up["assets"]["image"]["href"]
        assert it["assets"]["metadata"]["href"] == up["assets"]["metadata"]["href"]
        assert it["properties"]["enmap:upstream_item"].startswith(api.url)

    # build: the index step finds everything indexed; plan and extract read the remote COGs
    files.reset_stats()
    plan = PlanParams(max_cloud=0.6, max_cloud_shadow=0.6, max_snow=1.0)
    rep = build(f"stac:{api.url}", str(out), config=BuildConfig(plan=plan), cluster=ClusterSpec(kind="local", n_workers=2))
    assert rep.stages["index"]["already_indexed"] == n + 1  # the 404 product stays quarantined (not retryable)
    st = files.stats()
    assert st["ranged"] > 0 and st.get("status_200", 0) == 0, st  # range requests only, no whole-file download

    patches, views = read_plan(str(catalog))
    assert len(views) >= 5  # the session archive's folder deliveries, XML footprints: a handful of multi-date views
    refl = open_cube(str(out / "cube.zarr"), decode=False)["reflectance"]  # the stored int16 DNs
    assert refl.shape[0] == len(views)
    for tile, g in views.groupby("tile"):
        with rasterio.open(replica["local"][items[int(tile)]["id"]]) as ds:
            for v in g.itertuples():
                want = ds.read(indexes=list(SPECTRALEARTH_BANDS), window=Window(int(v.col0), int(v.row0), 128, 128))
                np.testing.assert_array_equal(refl[int(v.view)], want, err_msg=f"view {v.view}")
    _no_secret_under(str(out), PASSWORD)


def test_refused_credentials_missing_assets_and_failing_server(replica, tmp_path, monkeypatch):
    from spectralearth.catalog import index_archive
    from spectralearth.catalog.stacapi import StacSearch

    api, files = replica["api"], replica["files"]
    sync = ClusterSpec(kind="sync")
    first = replica["items"][0]["id"]
    search = StacSearch(collection=COLLECTION, max_items=3)

    # wrong password: every product quarantined with a named error saying so; no secret in the output
    wrong = tmp_path / "wrong-netrc"
    wrong.write_text(f"machine 127.0.0.1 login {USER} password not-{PASSWORD}\n")
    wrong.chmod(0o600)
    monkeypatch.setenv("NETRC", str(wrong))
    cat = str(tmp_path / "cat-wrong")
    rep = index_archive(f"stac:{api.url}", catalog_url=cat, cluster=sync, search=search)
    assert rep.indexed == 0 and rep.quarantined == 3
    assert {q["error_class"] for q in rep.quarantine} == {"RemoteAuthError"}
    assert all("refused the credentials" in q["message"] and "127.0.0.1" in q["message"] for q in rep.quarantine)
    _no_secret_under(cat, PASSWORD)
    monkeypatch.undo()

    # a few 503s are retried away; a server that keeps failing quarantines the product as retryable,
    # and the next run tries it again by itself
    files.fail(f"{first}-METADATA.XML", 503, count=2)
    cat = str(tmp_path / "cat-5xx")
    rep = index_archive(f"stac:{api.url}", catalog_url=cat, cluster=sync, search=search)
    assert rep.indexed == 3 and rep.quarantined == 0, rep.quarantine
    second = replica["items"][3]["id"]
    files.fail(f"{second}-SPECTRAL_IMAGE.TIF", 503, count=1000)
    rep = index_archive(f"stac:{api.url}", catalog_url=cat, cluster=sync, search=StacSearch(collection=COLLECTION, max_items=4))
    assert rep.indexed == 0 and [q["error_class"] for q in rep.quarantine] == ["RemoteUnavailableError"]
    assert second in rep.quarantine[0]["message"] and "503" in rep.quarantine[0]["message"]
    files.clear_faults()
    rep = index_archive(f"stac:{api.url}", catalog_url=cat, cluster=sync, search=StacSearch(collection=COLLECTION, max_items=4))
    assert rep.indexed == 1 and rep.quarantined_total == 0 and rep.tiles_total == 4


def test_remote_image_errors_are_named(replica, monkeypatch, tmp_path):
    from spectralearth.catalog.enmap import ProductName, ProductSource
    from spectralearth.catalog.enmap.image import open_image, read_windows
    from spectralearth.catalog.stacapi import RemoteAuthError, RemoteNotFoundError

    import rasterio

    it = replica["items"][0]
    src = ProductSource(it["id"], ProductName.parse(it["id"]), "", "stac", (("SPECTRAL_IMAGE.TIF", it["assets"]["image"]["href"]),))
    with open_image(src) as ds:  # the extraction reader on the remote COG: equal to the local file
        got = next(read_windows(ds, [[0, 5, 7]], indexes=[1, 100, 224], patch_px=128))[3]
        with rasterio.open(replica["local"][it["id"]]) as local:
            np.testing.assert_array_equal(got, local.read(indexes=[1, 100, 224], window=((5, 133), (7, 135))))
    gone = ProductSource(it["id"], src.name, "", "stac", (("SPECTRAL_IMAGE.TIF", it["assets"]["image"]["href"] + ".missing"),))
    with pytest.raises(RemoteNotFoundError, match=it["id"]):
        with open_image(gone):
            pass
    wrong = tmp_path / "netrc"
    wrong.write_text(f"machine 127.0.0.1 login {USER} password nope\n")
    wrong.chmod(0o600)
    monkeypatch.setenv("NETRC", str(wrong))
    # GDAL caches what it learnt of a URL for the life of the process: ask it not to for this one
    with rasterio.Env(CPL_VSIL_CURL_NON_CACHED="/vsicurl/" + it["assets"]["image"]["href"]):
        with pytest.raises(RemoteAuthError, match="refused the credentials"):
            with open_image(src):
                pass


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_stac_api_ingest_more_than_150_views(tls, netrc_env, tmp_path):
    """At a size where counts mean something: 8 tiles acquired 24 times each (192 products on the
    HTTPS replica), indexed from the STAC API and built on 2 workers into a cube of more than 150
    views, every one of them equal to its window of the remote COG."""
    import rasterio
    from rasterio.windows import Window

    from spectralearth.catalog import read_item_dicts
    from spectralearth.catalog.synth import SynthConfig, write_revisit_archive
    from spectralearth.pipelines.build import BuildConfig, build
    from spectralearth.pipelines.combinations import CombinationParams
    from spectralearth.pipelines.extract import SPECTRALEARTH_BANDS
    from spectralearth.pipelines.plan import PlanParams, read_plan
    from spectralearth.platform.cube import open_cube

    bases, revisits = 8, 24
    archive = str(tmp_path / "archive")
    specs = write_revisit_archive(archive, SynthConfig(tiles=bases, tile_size=256, seed=11, hotspots=1, compact_xml=True), revisits)
    with serve_replica(archive, tmp_path / "replica", tls, ghost=False) as rep:
        api, files = rep["api"], rep["files"]
        assert len(rep["items"]) == len(specs) == bases * revisits
        out = tmp_path / "out"
        config = BuildConfig(combinations=CombinationParams(max_n=2, beam=4),
                             plan=PlanParams(max_cloud=1.0, max_cloud_shadow=1.0, max_snow=1.0, max_nodata=0.0))
        report = build(f"stac:{api.url}", str(out), config=config, cluster=ClusterSpec(kind="local", n_workers=2))
        assert report.stages["index"]["indexed"] == len(specs), report.stages["index"]
        st = files.stats()
        assert st["ranged"] > 0 and st.get("status_200", 0) == 0, st  # range requests only, no whole-file download

        catalog = str(out / "catalog")
        patches, views = read_plan(catalog)
        assert len(views) >= 150, report.stages["plan"]
        assert views["tile"].nunique() >= 2 * revisits  # from several tiles, each seen on many dates
        items = read_item_dicts(catalog)
        refl = open_cube(str(out / "cube.zarr"), decode=False)["reflectance"]
        assert refl.shape[0] == len(views)
        for tile, g in views.groupby("tile"):
            with rasterio.open(rep["local"][items[int(tile)]["id"]]) as ds:
                for v in g.itertuples():
                    want = ds.read(indexes=list(SPECTRALEARTH_BANDS), window=Window(int(v.col0), int(v.row0), 128, 128))
                    np.testing.assert_array_equal(refl[int(v.view)].values, want, err_msg=f"view {v.view}")
        _no_secret_under(str(out), PASSWORD)
