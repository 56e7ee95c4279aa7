"""Real delivery layouts and bad or unusual products, on local disk and on S3.

The products are small synthetic ones (written once per module), rearranged the ways DLR
deliveries and users' copies arrive: loose files, product folders, order folders, ZIP and
tar downloads, suffixes in any case, a product present twice.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Transformer
from shapely.geometry import MultiPolygon

from spectralearth.catalog import IndexConfig, index_archive, read_item_dicts, read_table
from spectralearth.catalog.enmap import discover_products, parse_metadata, unsafe_member_reason, valid_footprint
from spectralearth.catalog.enmap.product import ProductSource
from spectralearth.catalog.errors import MetadataError, NothingFoundError
from spectralearth.catalog.synth import SynthConfig, synthesize_archive
from spectralearth.platform.cluster import ClusterSpec
from spectralearth.platform.storage import filesystem

SYNC = ClusterSpec(kind="sync")
SAMPLE = Path(__file__).resolve().parent / "data" / "enmap-l2a-sample"
DUPLICATE = "duplicate delivery of a product found elsewhere"


@pytest.fixture(scope="module")
def products(tmp_path_factory) -> dict[str, Path]:
    """stem -> local folder of 6 small synthetic products with pixels."""
    root = tmp_path_factory.mktemp("products")
    report = synthesize_archive(str(root), SynthConfig(tiles=6, tile_size=96, seed=11, zip_fraction=0.0))
    folders = {p.name: p for p in root.rglob("ENMAP01-*") if p.is_dir()}
    assert sorted(folders) == sorted(report.products)
    yield dict(sorted(folders.items()))
    shutil.rmtree(root, ignore_errors=True)  # module data goes once the module is done (CI disk)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file())


def _upload(local: Path, storage_root) -> str:
    """The tree under ``local`` at ``storage_root.url`` (copied to S3 for the S3 run)."""
    if storage_root.kind == "local":
        shutil.copytree(local, storage_root.url)
        return storage_root.url
    fs, path = filesystem(storage_root.url, storage_root.storage_options)
    for f in sorted(p for p in local.rglob("*") if p.is_file()):
        fs.put_file(str(f), f"{path}/{f.relative_to(local).as_posix()}")
    return storage_root.url


def _layouts(products: dict[str, Path], tmp: Path) -> dict[str, tuple[str, str]]:
    """Each product in another layout; returns stem -> (layout, expected delivery)."""
    stems = list(products)
    out: dict[str, tuple[str, str]] = {}
    # 1. loose in a folder not named after the product, suffixes in lower case
    loose = tmp / "downloads" / "misc"
    loose.mkdir(parents=True)
    for f in _files(products[stems[0]]):
        stem, suffix = f.name[:len(stems[0])], f.name[len(stems[0]) + 1:]
        shutil.copy(f, loose / f"{stem}-{suffix.lower()}")
    (loose / "notes.txt").write_text("my downloads")
    out[stems[0]] = ("loose", "folder")
    # 2. the folder named after the product
    shutil.copytree(products[stems[1]], tmp / "named" / stems[1])
    out[stems[1]] = ("named folder", "folder")
    # 3. a DLR order folder, and the same product again as a ZIP beside it: one product
    order = tmp / "dims_op_oc_oc-en_700123_1" / "ENMAP.HSI.L2A" / stems[2]
    shutil.copytree(products[stems[2]], order)
    with zipfile.ZipFile(tmp / "dims_op_oc_oc-en_700123_1.ZIP", "w", zipfile.ZIP_STORED) as z:
        for f in _files(products[stems[2]]):
            z.write(f, f"ENMAP.HSI.L2A/{stems[2]}/{f.name}")
    out[stems[2]] = ("order folder + its ZIP", "folder")
    # 4. a ZIP named after the product, lower-case suffix
    (tmp / "zips").mkdir()
    with zipfile.ZipFile(tmp / "zips" / f"{stems[3]}.zip", "w") as z:
        for f in _files(products[stems[3]]):
            z.write(f, f"{stems[3]}/{f.name}")
    out[stems[3]] = ("zip", "zip")
    # 5. an order download as .tar.gz with two products in DLR's order layout
    with tarfile.open(tmp / "order_700124.tar.gz", "w:gz", compresslevel=1) as t:
        for stem in stems[4:6]:
            for f in _files(products[stem]):
                t.add(f, f"order_700124/ENMAP.HSI.L2A/{stem}/{f.name}")
            out[stem] = ("tar.gz order", "tar")
    return out


def test_every_layout_found_once_and_indexed(products, tmp_path, storage_root):
    local = tmp_path / "archive"
    expected = _layouts(products, local)
    # a .TGZ copy of product 6 as well: found, but the tar.gz (same files) is used once
    with tarfile.open(local / "again.TGZ", "w:gz", compresslevel=1) as t:
        stem = list(products)[5]
        for f in _files(products[stem]):
            t.add(f, f"./{stem}/{f.name}")
    url = _upload(local, storage_root)
    found = discover_products(url, storage_options=storage_root.storage_options)
    assert found.problems == ()
    got = {s.product_id: s.delivery for s in found.sources}
    assert got == {stem: delivery for stem, (_, delivery) in expected.items()}
    assert found.skipped == {DUPLICATE: 2, "not an EnMAP product file": 1}
    assert found.files_listed == len([p for p in local.rglob("*") if p.is_file()])
    for s in found.sources:
        # every product file found, whatever the case of its suffix
        assert len(s.files) == len(_files(products[s.product_id])), (expected[s.product_id], s.suffixes)
    loose = next(s for s in found.sources if expected[s.product_id][0] == "loose")
    assert loose.url.rstrip("/").endswith("downloads/misc")

    catalog = f"{url}-catalog"
    report = index_archive(url, catalog_url=catalog, storage_options=storage_root.storage_options, cluster=SYNC)
    assert report.quarantine == [] and report.indexed == len(products)
    items = {it["id"]: it for it in read_item_dicts(catalog, storage_options=storage_root.storage_options)}
    assert set(items) == set(products)
    for stem, (_, delivery) in expected.items():
        assert items[stem]["properties"]["enmap:delivery"] == delivery
    # the footprint of a tar member equals the one of the same product's folder
    plain = index_archive(str(products[list(products)[4]].parent), catalog_url=str(tmp_path / "plain"), cluster=SYNC)
    assert plain.indexed >= 1
    ref = {it["id"]: it for it in read_item_dicts(str(tmp_path / "plain"))}
    stem = list(products)[4]
    assert shapely.geometry.shape(ref[stem]["geometry"]).equals_exact(
        shapely.geometry.shape(items[stem]["geometry"]), 1e-9)


def test_nothing_found_is_an_error_that_says_why(tmp_path, storage_root):
    local = tmp_path / "empty"
    (local / "_staging").mkdir(parents=True)
    (local / "_staging" / "ENMAP-partial.tmp").write_bytes(b"x")
    (local / "README.md").write_text("nothing here")
    with zipfile.ZipFile(local / "photos.zip", "w") as z:
        z.writestr("a.jpg", b"jpeg")
    url = _upload(local, storage_root)
    with pytest.raises(NothingFoundError) as err:
        index_archive(url, catalog_url=f"{url}-catalog", storage_options=storage_root.storage_options, cluster=SYNC)
    message = str(err.value)
    assert "searched" in message and url.split("://")[-1] in message
    for why in ("1 archive without EnMAP product files", "1 hidden or staging", "2 not an EnMAP product file"):  # README + a.jpg
        assert why in message
    if storage_root.kind == "local":
        exe = shutil.which("spectralearth") or os.path.join(os.path.dirname(sys.executable), "spectralearth")
        run = subprocess.run([exe, "-q", "index", url, "--catalog", str(tmp_path / "c"), "--cluster", "sync"],
                             capture_output=True, text=True)
        assert run.returncode == 2
        assert "no EnMAP L2A products found" in run.stderr and "archive without EnMAP product files" in run.stderr


@pytest.mark.parametrize("member,why", [
    ("{stem}/x::memory://evil/{stem}-METADATA.XML", "'::'"),
    ("../{stem}-METADATA.XML", "'..'"),
    ("/etc/{stem}-METADATA.XML", "absolute"),
    ("C:/temp/{stem}-METADATA.XML", "absolute"),
    ("a\\{stem}-METADATA.XML", "backslash"),
])
def test_unsafe_member_names_quarantine_their_product(products, tmp_path, member, why):
    bad, good = list(products)[:2]
    with zipfile.ZipFile(tmp_path / "order.zip", "w") as z:
        for f in _files(products[good]):
            z.write(f, f"{good}/{f.name}")
        for f in _files(products[bad]):
            name = member.format(stem=bad) if f.name.endswith("METADATA.XML") else f"{bad}/{f.name}"
            z.writestr(zipfile.ZipInfo(name), f.read_bytes())  # the name exactly as given
    assert why.strip("'") in (unsafe_member_reason(member.format(stem=bad)) or "")
    found = discover_products(str(tmp_path))
    assert [s.product_id for s in found.sources] == [good]
    (problem,) = found.problems
    assert problem.product == bad and problem.key == "member" and "order.zip" in problem.message


def test_tar_links_are_never_followed(products, tmp_path):
    stem = list(products)[0]
    with tarfile.open(tmp_path / "o.tar", "w") as t:
        for f in _files(products[stem]):
            if f.name.endswith("METADATA.XML"):
                info = tarfile.TarInfo(f"{stem}/{f.name}")
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                t.addfile(info)
            else:
                t.add(f, f"{stem}/{f.name}")
    found = discover_products(str(tmp_path))
    assert found.sources == ()
    assert found.problems[0].key == "member" and "link" in found.problems[0].message


# ---------------------------------------------------------------- bad and unusual products


def _copy_products(products, dest: Path, n: int = 4) -> list[str]:
    stems = list(products)[:n]
    for stem in stems:
        shutil.copytree(products[stem], dest / stem)
    return stems


def _rewrite_image(path: Path, *, fill: int | None = None, nodata: float | None = None) -> None:
    with rasterio.open(path) as src:
        profile, data = src.profile, src.read()
    if fill is not None:
        data[:] = fill
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


def test_bad_products_quarantined_and_good_ones_indexed(products, tmp_path, storage_root):
    local = tmp_path / "bad"
    stems = _copy_products(products, local, 6)
    f = lambda i, suffix: local / stems[i] / f"{stems[i]}-{suffix}"  # noqa: E731
    f(0, "SPECTRAL_IMAGE.TIF").unlink()                               # missing image
    _rewrite_image(f(1, "SPECTRAL_IMAGE.TIF"), fill=-32768)           # all nodata, masks normal
    _rewrite_image(f(2, "SPECTRAL_IMAGE.TIF"), nodata=0)              # nodata against the contract
    xml = f(3, "METADATA.XML").read_bytes()
    f(3, "METADATA.XML").write_bytes(xml.replace(b"<GainOfBand>0.0001</GainOfBand>",
                                                 b"<GainOfBand>0.0002</GainOfBand>", 1))
    # entity expansion ("billion laughs") in an untrusted XML
    f(4, "METADATA.XML").write_bytes(
        b'<?xml version="1.0"?><!DOCTYPE level_X [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
        b"<level_X><metadata><name>&b;</name></metadata></level_X>")
    url = _upload(local, storage_root)
    catalog = f"{url}-catalog"
    report = index_archive(url, catalog_url=catalog, storage_options=storage_root.storage_options, cluster=SYNC)
    got = {q["product"]: q for q in report.quarantine}
    assert set(got) == set(stems[:5]) and report.indexed == 1
    expect = [("image", "SPECTRAL_IMAGE.TIF", "missing"), ("image", "pixels", "all nodata"),
              ("image", "nodata", "nodata -32768"), ("image", "gain", "band 1: gain 0.0002"),
              ("metadata", "xml", "refused unsafe XML")]
    for stem, (stage, key, words) in zip(stems, expect):
        q = got[stem]
        assert q["stage"] == stage and f"[{key}]" in q["message"] and words in q["message"], q
        assert q["message"].startswith(stem) and q["retryable"] is False
    # size limits on the XML and the masks
    limits = index_archive(url, catalog_url=f"{url}-limits", storage_options=storage_root.storage_options,
                           cluster=SYNC, config=IndexConfig(max_xml_bytes=4096, max_mask_pixels=1000))
    msgs = {q["product"]: q["message"] for q in limits.quarantine}
    assert "larger than the limit of 4096 bytes" in msgs[stems[5]]
    limits2 = index_archive(url, catalog_url=f"{url}-limits2", storage_options=storage_root.storage_options,
                            cluster=SYNC, config=IndexConfig(max_mask_pixels=1000))
    msgs = {q["product"]: q["message"] for q in limits2.quarantine}
    assert "above the read limit of 1000 pixels" in msgs[stems[5]]


def test_parse_refuses_external_entities():
    xml = (b'<?xml version="1.0"?><!DOCTYPE level_X [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           b"<level_X><metadata><name>&x;</name></metadata></level_X>")
    with pytest.raises(MetadataError, match="refused unsafe XML") as err:
        parse_metadata(xml, product="P")
    assert err.value.product == "P" and err.value.key == "xml"


def test_footprint_only_grid_is_the_xml_grid(tmp_path):
    archive = tmp_path / "fp"
    synthesize_archive(str(archive), SynthConfig(tiles=5, seed=4, footprints_only=True))
    report = index_archive(str(archive), catalog_url=str(tmp_path / "c"), cluster=SYNC)
    assert report.indexed == 5, report.quarantine
    for item in read_item_dicts(str(tmp_path / "c")):
        xml = next(archive.rglob(f"{item['id']}-METADATA.XML")).read_bytes()
        meta = parse_metadata(xml, product=item["id"])
        props = item["properties"]
        assert props["proj:shape"] == [meta.height, meta.width]
        # placed where the ortho-scene corners say, to the pixel
        t = Transformer.from_crs(4326, props["proj:code"].split(":")[1], always_xy=True)
        x, y = t.transform(*meta.ortho_corners_lonlat[0])
        assert abs(props["proj:transform"][2] - x) <= 30 and abs(props["proj:transform"][5] - y) <= 30


def test_antimeridian_footprint_is_split(tmp_path):
    """A tile of UTM zone 60 that reaches past 180°E: two parts, one on either side."""
    stem = next(SAMPLE.glob("*-METADATA.XML")).name[: -len("-METADATA.XML")]
    folder = tmp_path / stem
    folder.mkdir()
    shutil.copy(next(SAMPLE.glob("*-METADATA.XML")), folder)
    with rasterio.open(next(SAMPLE.glob("*-QL_QUALITY_CLASSES.TIF"))) as src:
        classes, profile = src.read(1), src.profile
    # at 60°N, 180° lies ~167 km east of zone 60's central meridian (x = 667 km)
    profile.update(crs="EPSG:32660", transform=rasterio.Affine(30, 0, 650_000, 0, -30, 6_690_000))
    with rasterio.open(folder / f"{stem}-QL_QUALITY_CLASSES.TIF", "w", **profile) as dst:
        dst.write(classes, 1)
    meta = parse_metadata((folder / f"{stem}-METADATA.XML").read_bytes(), product=stem)
    source = ProductSource(stem, meta.name, str(folder), "folder",
                           tuple((s, str(folder / f"{stem}-{s}")) for s in ("METADATA.XML", "QL_QUALITY_CLASSES.TIF")))
    fp = valid_footprint(source, meta)
    assert fp.epsg == 32660 and fp.utm.is_valid
    assert isinstance(fp.wgs84, MultiPolygon) and fp.wgs84.is_valid
    east = [p for p in fp.wgs84.geoms if p.bounds[0] > 0]
    west = [p for p in fp.wgs84.geoms if p.bounds[2] < 0]
    assert east and west and len(east) + len(west) == len(fp.wgs84.geoms)
    assert max(p.bounds[2] for p in east) == pytest.approx(180.0) and min(p.bounds[0] for p in west) == pytest.approx(-180.0)
    assert fp.wgs84.bounds[0] == pytest.approx(-180) and all(p.bounds[2] - p.bounds[0] < 2 for p in fp.wgs84.geoms)
    # the parts, back in UTM, are the UTM footprint (same area, nothing lost or doubled)
    to_utm = Transformer.from_crs(4326, 32660, always_xy=True)
    back = shapely.union_all([shapely.transform(p, lambda xy: np.column_stack(to_utm.transform(xy[:, 0], xy[:, 1])))
                              for p in fp.wgs84.geoms])
    assert back.area == pytest.approx(fp.utm.area, rel=2e-3)
    assert back.symmetric_difference(fp.utm).area / fp.utm.area < 5e-3


@pytest.mark.s3
def test_storage_errors_are_retried_then_recorded_retryable(products, tmp_path, fault_proxy, s3_bucket):
    proxy, opts = fault_proxy(fail_rate=0.0, kinds=("500",), max_attempts=1)
    local = tmp_path / "a"
    stems = _copy_products(products, local, 3)
    fs, _ = filesystem(f"s3://{s3_bucket}", opts)
    for f in sorted(p for p in local.rglob("*") if p.is_file()):
        fs.put_file(str(f), f"{s3_bucket}/arc/{f.relative_to(local).as_posix()}")
    url, catalog = f"s3://{s3_bucket}/arc", str(tmp_path / "catalog")
    found = discover_products(url, storage_options=opts)
    # every request fails: after the retries each product is recorded as retryable
    proxy.set_fail_rate(1.0)
    config = IndexConfig(attempts=2, retry_wait_s=0.01)
    first = index_archive(url, catalog_url=catalog, storage_options=opts, cluster=SYNC, config=config,
                          discovery=found)
    assert first.indexed == 0 and {q["product"] for q in first.quarantine} == set(stems)
    assert all(q["retryable"] and q["error_class"] == "TransientError" for q in first.quarantine), first.quarantine
    assert proxy.stats()["by_kind"]["500"] >= 2 * len(stems)  # tried twice each
    assert all(r["retryable"] for r in read_table(catalog, "quarantine"))
    # the storage is back: the next run tries them again, without any flag
    proxy.set_fail_rate(0.0)
    second = index_archive(url, catalog_url=catalog, storage_options=opts, cluster=SYNC, config=config)
    assert second.retried == 3 and second.indexed == 3 and second.quarantine == []
    assert read_table(catalog, "quarantine") == []


@pytest.mark.slow
def test_product_exhausting_worker_memory_is_quarantined(products, tmp_path):
    """One product whose mask decompresses to 1.2 GB, workers limited to 600 MB: it alone is quarantined."""
    import dask

    local = tmp_path / "mem"
    stems = _copy_products(products, local, 3)
    big = local / stems[0]
    side = 35_000
    xml = (big / f"{stems[0]}-METADATA.XML").read_bytes()
    meta = parse_metadata(xml, product=stems[0])
    xml = xml.replace(f"<widthOfOrthoScene>{meta.width}<".encode(), f"<widthOfOrthoScene>{side}<".encode())
    xml = xml.replace(f"<heightOfOrthoScene>{meta.height}<".encode(), f"<heightOfOrthoScene>{side}<".encode())
    (big / f"{stems[0]}-METADATA.XML").write_bytes(xml)
    (big / f"{stems[0]}-SPECTRAL_IMAGE.TIF").unlink()
    with rasterio.open(big / f"{stems[0]}-QL_QUALITY_CLASSES.TIF") as src:
        profile = src.profile
    profile.update(width=side, height=side, compress="deflate", tiled=True, blockxsize=512, blockysize=512)
    with rasterio.open(big / f"{stems[0]}-QL_QUALITY_CLASSES.TIF", "w", **profile) as dst:
        dst.write(np.ones((512, 512), np.uint8), 1, window=rasterio.windows.Window(0, 0, 512, 512))
    # the XML lists no SPECTRAL_IMAGE (footprint-only), so the mask is what gets read
    xml = (big / f"{stems[0]}-METADATA.XML").read_bytes()
    (big / f"{stems[0]}-METADATA.XML").write_bytes(
        xml.replace(f"<name>{stems[0]}-SPECTRAL_IMAGE.TIF</name>".encode(), b"<name>x</name>"))
    cluster = ClusterSpec(kind="local", n_workers=1, memory_limit="600MB")
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        report = index_archive(str(local), catalog_url=str(tmp_path / "c"), cluster=cluster,
                               config=IndexConfig(max_mask_pixels=side * side, batch_size=3))
    assert report.indexed == 2
    (q,) = report.quarantine
    assert q["product"] == stems[0] and q["stage"] == "worker" and "memory" in q["message"]


def test_ranged_xml_read_equals_the_whole_file(tmp_path, storage_root):
    """Remote METADATA.XML read by two range requests around its large sections: the same metadata."""
    from spectralearth.catalog.enmap import read_metadata
    from spectralearth.catalog.enmap.product import _xml_ranges

    xml = next(SAMPLE.glob("*-METADATA.XML"))
    stem = xml.name[: -len("-METADATA.XML")]
    data = xml.read_bytes()
    (tmp_path / "src" / stem).mkdir(parents=True)
    (tmp_path / "src" / stem / xml.name).write_bytes(data)
    # a second product whose XML lacks the large sections: the whole file is read
    brief = stem.replace("20200406T201930Z", "20200407T201930Z")  # a later processing of the same tile
    i, j = data.index(b"<calibration>"), data.index(b"</time>") + len(b"</time>")
    (tmp_path / "src" / brief).mkdir()
    (tmp_path / "src" / brief / f"{brief}-METADATA.XML").write_bytes((data[:i] + data[j:]).replace(stem.encode(), brief.encode()))
    url = _upload(tmp_path / "src", storage_root)
    by_id = {s.product_id: s for s in discover_products(url, storage_options=storage_root.storage_options).sources}
    for pid in (stem, brief):
        ranged = read_metadata(by_id[pid], storage_options=storage_root.storage_options, ranges=True)
        whole = read_metadata(by_id[pid], storage_options=storage_root.storage_options, ranges=False)
        assert ranged == whole and len(ranged.bands) == 218
    fs, path = filesystem(by_id[stem].file("METADATA.XML"), storage_root.storage_options)
    part = _xml_ranges(fs, path, fs.size(path))
    assert part is not None and len(part) < 0.05 * len(data)  # ~2.6 % of the real file is read
