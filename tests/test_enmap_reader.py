"""EnMAP L2A reader: names, METADATA.XML, discovery, image checks and footprints.

Test products are built from the real pre-launch sample (METADATA.XML + QL_QUALITY_CLASSES.TIF)
plus a 218-band SPECTRAL_IMAGE.TIF written on the sample's grid.
"""

from __future__ import annotations

import csv
import os
import pickle
import re
import shutil
import xml.etree.ElementTree as ET
import zipfile
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Transformer
from rasterio.windows import Window
from shapely.geometry import Polygon

from spectralearth.catalog.enmap import (
    SUFFIXES,
    ProductName,
    check_image,
    discover_products,
    mask_footprint,
    open_raster,
    parse_metadata,
    read_metadata,
    split_file_name,
    valid_footprint,
)
from spectralearth.catalog.errors import ImageError, MetadataError, NamingError
from spectralearth.platform.storage import resolve_storage_options

SAMPLE = Path(__file__).resolve().parent / "data" / "enmap-l2a-sample"
STEM = "ENMAP01-____L2A-DT0000326721_20170626T102020Z_001_V000204_20200406T201930Z"
XML_NAME = f"{STEM}-METADATA.XML"
CLASSES_NAME = f"{STEM}-QL_QUALITY_CLASSES.TIF"
IMAGE_NAME = f"{STEM}-SPECTRAL_IMAGE.TIF"
NODATA = -32768


# ---------------------------------------------------------------- helpers


def sample_xml() -> bytes:
    return (SAMPLE / XML_NAME).read_bytes()


def sample_classes() -> tuple[np.ndarray, dict]:
    with rasterio.open(SAMPLE / CLASSES_NAME) as src:
        return src.read(1), src.profile


def write_image(path: Path, classes: np.ndarray, profile: dict, *, bands: int = 218) -> None:
    """A real-size int16 image: band b is class*1000 + b, nodata where class 3 (background)."""
    height, width = classes.shape
    numbers = np.arange(1, bands + 1, dtype=np.int16)[:, None, None]
    with rasterio.open(
        path, "w", driver="GTiff", dtype="int16", count=bands, width=width, height=height,
        crs=profile["crs"], transform=profile["transform"], nodata=NODATA, tiled=True,
        blockxsize=128, blockysize=128, interleave="pixel", compress="deflate", zlevel=1,
    ) as dst:
        for row in range(0, height, 128):
            c = classes[row : row + 128][None]
            block = np.where(c == 3, np.int16(NODATA), c.astype(np.int16) * 1000 + numbers)
            dst.write(block, window=Window(0, row, width, c.shape[1]))


def band_section(xml: str) -> tuple[str, str, str]:
    i = xml.index("<bandCharacterisation>")
    j = xml.index("</bandCharacterisation>")
    return xml[:i], xml[i:j], xml[j:]


def drop_band(xml: bytes, number: int) -> bytes:
    head, bands, tail = band_section(xml.decode())
    bands = re.sub(rf'<bandID number="{number}">.*?</bandID>\s*', "", bands, flags=re.S)
    return (head + bands + tail).encode()


def xml_points() -> list[tuple[str, float, float]]:
    root = ET.fromstring(sample_xml())
    return [
        (p.findtext("frame"), float(p.findtext("longitude")), float(p.findtext("latitude")))
        for p in root.findall("base/spatialCoverage/boundingPolygon/point")
    ]


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> dict[str, Path]:
    """Folder and ZIP deliveries of the sample, plus variants without CLASSES and XML-only."""
    base = tmp_path_factory.mktemp("enmap")
    classes, profile = sample_classes()
    folder = base / "folder" / "2017" / STEM
    folder.mkdir(parents=True)
    shutil.copy(SAMPLE / XML_NAME, folder / XML_NAME)
    shutil.copy(SAMPLE / CLASSES_NAME, folder / CLASSES_NAME)
    write_image(folder / IMAGE_NAME, classes, profile)

    zipped = base / "zipped" / "deliveries"
    zipped.mkdir(parents=True)
    with zipfile.ZipFile(zipped / f"{STEM}.ZIP", "w", zipfile.ZIP_DEFLATED) as z:
        for f in folder.iterdir():
            z.write(f, f"{STEM}/{f.name}")

    no_classes = base / "no_classes" / STEM
    no_classes.mkdir(parents=True)
    for name in (XML_NAME, IMAGE_NAME):
        os.link(folder / name, no_classes / name)

    xml_only = base / "xml_only" / STEM
    xml_only.mkdir(parents=True)
    shutil.copy(SAMPLE / XML_NAME, xml_only / XML_NAME)
    yield {"base": base, "folder": base / "folder", "zipped": base / "zipped",
           "no_classes": base / "no_classes", "xml_only": base / "xml_only", "product": folder}
    shutil.rmtree(base, ignore_errors=True)  # module data goes once the module is done (CI disk)


def only_source(url: Path | str):
    found = discover_products(str(url))
    assert found.problems == ()
    assert len(found.sources) == 1
    return found.sources[0]


def lonlat_to_utm32(geom):
    t = Transformer.from_crs(4326, 32632, always_xy=True)
    return shapely.transform(geom, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))


# ---------------------------------------------------------------- names


def test_name_parse_and_format_round_trip():
    name = ProductName.parse(STEM)
    assert (name.datatake, name.tile, name.version) == (326721, 1, "000204")
    assert name.start == datetime(2017, 6, 26, 10, 20, 20, tzinfo=UTC)
    assert name.processed == datetime(2020, 4, 6, 20, 19, 30, tzinfo=UTC)
    assert name.stem == STEM
    for text in (XML_NAME, f"/a/b/{STEM}/", f"s3://bucket/x/{STEM}.ZIP", f"{STEM}.zip", f"x/{STEM}/{IMAGE_NAME}"):
        assert ProductName.parse(text) == name, text
    assert split_file_name(CLASSES_NAME) == (name, "QL_QUALITY_CLASSES.TIF")
    assert name.filename("SPECTRAL_IMAGE.TIF") == IMAGE_NAME
    assert all(ProductName.parse(name.filename(s)) == name for s in SUFFIXES)
    assert name.tile_key == (326721, 1)
    newer = ProductName.parse(STEM.replace("V000204", "V000300"))
    reprocessed = ProductName.parse(STEM.replace("20200406T201930Z", "20210101T000000Z"))
    assert max([name, newer, reprocessed], key=lambda n: n.version_key) == newer
    assert reprocessed.version_key > name.version_key
    assert pickle.loads(pickle.dumps(name)) == name


@pytest.mark.parametrize(
    ("bad", "key"),
    [
        ("S2A_MSIL2A_20200101.SAFE", "name"),
        (STEM.replace("DT0000326721", "DT326721"), "name"),
        (STEM.replace("_001_", "_1_"), "name"),
        (STEM.replace("20170626T102020Z", "20171326T102020Z"), "start"),
        (STEM.replace("20200406T201930Z", "20200406T251930Z"), "processed"),
        (STEM + "-", "suffix"),
    ],
)
def test_name_errors_name_the_input(bad, key):
    with pytest.raises(NamingError) as err:
        ProductName.parse(bad)
    assert err.value.key == key
    assert bad.rstrip("-") in str(err.value) or bad in str(err.value)


# ---------------------------------------------------------------- metadata


def test_real_sample_metadata():
    meta = parse_metadata(sample_xml(), product=STEM)
    assert meta.product_id == STEM and meta.name == ProductName.parse(STEM)
    assert meta.datatake_id == 326721 and meta.tile_id == 1 and meta.number_of_tiles == 3
    assert meta.start_time == datetime(2017, 6, 26, 10, 20, 20, 999936, tzinfo=UTC)
    assert meta.stop_time == datetime(2017, 6, 26, 10, 20, 25, 545157, tzinfo=UTC)
    assert (meta.schema_version, meta.processing_level, meta.processor_version) == ("00.02.00", "L2A", "00.02.04")
    root = ET.fromstring(sample_xml())
    expected = [
        (int(b.get("number")), float(b.findtext("wavelengthCenterOfBand")), float(b.findtext("FWHMOfBand")))
        for b in root.findall("specific/bandCharacterisation/bandID")
    ]
    assert len(meta.bands) == len(expected) == 218
    assert [(b.number, b.wavelength_nm, b.fwhm_nm) for b in meta.bands] == expected
    assert meta.bands[0].wavelength_nm == 423.03 and meta.bands[-1].wavelength_nm == 2438.6
    assert meta.bands[0].gain == 0.0001 and meta.bands[0].offset == 0.0
    assert (meta.epsg, meta.width, meta.height, meta.pixel_size) == (32632, 1128, 1212, 30.0)
    points = xml_points()
    assert list(meta.corners_lonlat) == [(lon, lat) for f, lon, lat in points if f != "center"]
    assert meta.corners_lonlat[0] == pytest.approx(meta.corners_lonlat[-1], abs=1e-6)
    assert meta.center_lonlat == next((lon, lat) for f, lon, lat in points if f == "center")
    assert (meta.cloud_cover, meta.cloud_shadow_cover, meta.water_cover) == (0.0, 8.0, 2.0)
    assert meta.orbit_direction == "DESCENDING"
    assert meta.sun_elevation_deg == 63.038384 and meta.across_off_nadir_deg == -0.0871606570525
    assert len(meta.files) == 12 and IMAGE_NAME in meta.files
    assert pickle.loads(pickle.dumps(meta)) == meta


def test_224_band_metadata_comes_from_the_file():
    table = resources.files("spectralearth.catalog.enmap").joinpath("data/enmap_l2a_bands.csv")
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == 224
    head, _, tail = band_section(sample_xml().decode())
    bands = "".join(
        f'<bandID number="{r["band"]}"><wavelengthCenterOfBand>{r["wavelength_nm"]}</wavelengthCenterOfBand>'
        f'<FWHMOfBand>{r["fwhm_nm"]}</FWHMOfBand><GainOfBand>0.0001</GainOfBand><OffsetOfBand>0</OffsetOfBand></bandID>\n'
        for r in rows
    )
    xml = head + "<bandCharacterisation>\n" + bands + tail
    xml = xml.replace("<channels>218</channels>", "<channels>224</channels>")
    meta = parse_metadata(xml, product=STEM)
    assert len(meta.bands) == 224
    assert list(meta.wavelengths_nm) == [float(r["wavelength_nm"]) for r in rows]


@pytest.mark.parametrize(
    ("edit", "key", "words"),
    [
        (lambda x: x[: len(x) // 3], "xml", "not well-formed XML at line"),
        (lambda x: x.replace(b"<startTime>2017-06-26T10:20:20.999936Z</startTime>", b""),
         "base/temporalCoverage/startTime", "missing"),
        (lambda x: x.replace(b"<widthOfOrthoScene>1128<", b"<widthOfOrthoScene>11x8<"),
         "specific/widthOfOrthoScene", "not a number"),
        (lambda x: drop_band(x, 100), "specific/bandCharacterisation/bandID[@number=101]", "gap"),
        (lambda x: x.replace(b"<datatakeID>0000326721<", b"<datatakeID>0000326722<"), "specific/datatakeID", "326722"),
        (lambda x: x.replace(b"<projection>UTM_Zone32_North<", b"<projection>Mercator<"),
         "product/ortho/projection", "UTM"),
        (lambda x: x.replace(b"<stopTime>2017-06-26T10:20:25", b"<stopTime>2017-06-26T10:20:99"),
         "base/temporalCoverage/stopTime", "not a valid date"),
    ],
)
def test_bad_metadata_names_product_and_key(edit, key, words):
    with pytest.raises(MetadataError) as err:
        parse_metadata(edit(sample_xml()), product=STEM)
    assert err.value.product == STEM and err.value.key == key
    assert words in str(err.value) and STEM in str(err.value)


def test_projection_names_and_south_zone():
    xml = sample_xml().replace(b"UTM_Zone32_North", b"UTM_Zone33_South")
    assert parse_metadata(xml, product=STEM).epsg == 32733
    xml = sample_xml().replace(b"<projection>UTM_Zone32_North</projection>", b"")
    assert parse_metadata(xml, product=STEM).epsg is None


# ---------------------------------------------------------------- discovery


def test_discovery_of_folder_and_zip(archive):
    folder = only_source(archive["folder"])
    assert (folder.product_id, folder.delivery) == (STEM, "folder")
    assert folder.url == str(archive["product"])
    assert set(folder.suffixes) == {"METADATA.XML", "SPECTRAL_IMAGE.TIF", "QL_QUALITY_CLASSES.TIF"}
    assert folder.file("QL_QUALITY_CLOUD.TIF") is None
    zipped = only_source(archive["zipped"])
    assert zipped.delivery == "zip" and zipped.url.endswith(f"{STEM}.ZIP")
    assert zipped.file("SPECTRAL_IMAGE.TIF") == f"zip://{STEM}/{IMAGE_NAME}::{zipped.url}"
    assert pickle.loads(pickle.dumps(zipped)) == zipped
    both = discover_products(str(archive["base"]))
    assert [s.product_id for s in both.sources] == [STEM]  # four deliveries of one product
    assert both.problems == ()  # one product, not a quarantine
    assert both.skipped == {"duplicate delivery of a product found elsewhere": 3}
    # the most complete delivery wins, a folder before the ZIP with the same files
    assert both.sources[0].delivery == "folder" and both.sources[0].url == str(archive["product"])
    assert {d[1] for d in both.duplicates} == {str(archive["no_classes"] / STEM), str(archive["xml_only"] / STEM),
                                                str(archive["zipped"] / "deliveries" / f"{STEM}.ZIP")}


def test_discovery_reports_problems(tmp_path):
    good = tmp_path / "a" / STEM
    good.mkdir(parents=True)
    shutil.copy(SAMPLE / XML_NAME, good / XML_NAME)
    (tmp_path / "a" / "README.txt").write_text("not a product")
    (tmp_path / "ENMAP01-____L2A-DT12_broken").mkdir()
    (tmp_path / "ENMAP01-____L2A-DT12_broken" / "ENMAP01-____L2A-DT12_broken-METADATA.XML").write_bytes(b"x")
    other = STEM.replace("_001_", "_002_")
    (tmp_path / "b" / other).mkdir(parents=True)
    (tmp_path / "b" / other / f"{other}-QL_VNIR.TIF").write_bytes(b"x")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / f"{STEM.replace('_001_', '_003_')}.ZIP").write_bytes(b"not a zip at all")
    for hidden in ("_staging", ".trash"):
        (tmp_path / hidden / STEM).mkdir(parents=True)
        shutil.copy(SAMPLE / XML_NAME, tmp_path / hidden / STEM / XML_NAME)

    found = discover_products(str(tmp_path))
    assert [(s.product_id, s.url) for s in found.sources] == [(STEM, str(good))]
    kinds = sorted((type(p).__name__, p.key) for p in found.problems)
    assert kinds == [("MetadataError", "METADATA.XML"), ("NamingError", "name"), ("NamingError", "zip")]
    messages = " ".join(str(p) for p in found.problems)
    assert "DT12_broken" in messages and "_003_" in messages and "METADATA.XML missing" in messages


# ---------------------------------------------------------------- images and footprints


def test_read_check_and_footprint_folder_and_zip(archive):
    classes, profile = sample_classes()
    exact, _ = mask_footprint(classes != 3, profile["transform"], product=STEM, simplify_px=0, min_area_px=0)
    xml_meta = parse_metadata(sample_xml(), product=STEM)
    xml_utm = lonlat_to_utm32(Polygon(xml_meta.corners_lonlat))
    results = {}
    for kind in ("folder", "zipped"):
        source = only_source(archive[kind])
        meta = read_metadata(source)
        assert meta == xml_meta
        info = check_image(source, meta)
        assert info.epsg == 32632
        assert info.transform == tuple(profile["transform"])[:6]
        assert info.shape == (1212, 1128) and info.count == 218
        assert (info.dtype, info.nodata, info.interleave, info.tiled) == ("int16", NODATA, "PIXEL", True)
        with open_raster(source, "SPECTRAL_IMAGE.TIF") as ds:
            block = ds.read(window=Window(600, 640, 64, 32))
        want = np.where(classes[640:672, 600:664] == 3, NODATA, classes[640:672, 600:664].astype(np.int16) * 1000)
        assert np.array_equal(block, want[None] + np.where(want == NODATA, 0, np.arange(1, 219)[:, None, None]))

        fp = valid_footprint(source, meta)
        assert (fp.source, fp.epsg, fp.repaired) == ("classes-mask", 32632, False)
        assert fp.valid_fraction == pytest.approx(float((classes != 3).mean()))
        assert fp.utm.is_valid and fp.wgs84.is_valid
        # Conservative: nothing more than 1 px beyond the valid pixels ...
        assert fp.utm.difference(exact.buffer(30.0 * 1.001)).area == pytest.approx(0, abs=1.0)
        # ... inside the XML polygon (grown by 3 px) and covering >= 95 % of it.
        assert fp.utm.difference(xml_utm.buffer(90.0)).area == pytest.approx(0, abs=1.0)
        assert fp.utm.intersection(xml_utm).area / xml_utm.area >= 0.95
        xml_lonlat = Polygon(xml_meta.corners_lonlat)
        assert fp.wgs84.difference(xml_lonlat.buffer(0.0015)).area == pytest.approx(0, abs=1e-9)
        assert fp.wgs84.intersection(xml_lonlat).area / xml_lonlat.area >= 0.95
        results[kind] = fp
    assert shapely.equals_exact(results["folder"].utm, results["zipped"].utm, tolerance=1e-6)


def test_footprint_fallbacks(archive):
    by_mask = valid_footprint(only_source(archive["folder"]), parse_metadata(sample_xml(), product=STEM))
    source = only_source(archive["no_classes"])
    fp = valid_footprint(source, read_metadata(source))
    assert fp.source == "image-nodata"
    assert fp.utm.symmetric_difference(by_mask.utm).area < 900 * 10
    source = only_source(archive["xml_only"])
    meta = read_metadata(source)
    fp = valid_footprint(source, meta)
    assert (fp.source, fp.epsg, fp.valid_fraction) == ("xml", 32632, None)
    # Edges straight in UTM bow slightly in lon/lat (0.12 % of the area here).
    assert fp.wgs84.symmetric_difference(Polygon(meta.corners_lonlat)).area / fp.wgs84.area < 5e-3
    assert fp.utm.intersection(by_mask.utm).area / by_mask.utm.area > 0.99


def test_all_nodata_footprint(tmp_path):
    with pytest.raises(ImageError, match="no valid pixels"):
        mask_footprint(np.zeros((50, 40), bool), (30, 0, 0, 0, -30, 0), product=STEM)
    classes, profile = sample_classes()
    product = tmp_path / STEM
    product.mkdir()
    shutil.copy(SAMPLE / XML_NAME, product / XML_NAME)
    with rasterio.open(product / CLASSES_NAME, "w", **profile) as dst:
        dst.write(np.full_like(classes, 3), 1)
    source = only_source(tmp_path)
    with pytest.raises(ImageError, match="no valid pixels") as err:
        valid_footprint(source, read_metadata(source))
    assert err.value.product == STEM


def _variant(tmp_path: Path, archive, *, xml: bytes | None = None, image: bytes | None = None):
    product = tmp_path / STEM
    product.mkdir(parents=True)
    (product / XML_NAME).write_bytes(xml if xml is not None else sample_xml())
    (product / IMAGE_NAME).write_bytes(image if image is not None else (archive["product"] / IMAGE_NAME).read_bytes())
    return only_source(tmp_path)


def test_band_count_mismatch(tmp_path, archive):
    xml = drop_band(sample_xml(), 218).replace(b"<channels>218</channels>", b"<channels>217</channels>")
    source = _variant(tmp_path, archive, xml=xml)
    meta = read_metadata(source)
    assert len(meta.bands) == 217
    with pytest.raises(ImageError) as err:
        check_image(source, meta)
    assert err.value.product == STEM and err.value.key == "bands"
    assert "218" in err.value.message and "217" in err.value.message


def test_truncated_and_unreadable_images(tmp_path, archive):
    full = (archive["product"] / IMAGE_NAME).read_bytes()
    meta = parse_metadata(sample_xml(), product=STEM)
    source = _variant(tmp_path / "t", archive, image=full[: len(full) - 4096])
    with pytest.raises(ImageError) as err:
        check_image(source, meta)
    assert err.value.key == "SPECTRAL_IMAGE.TIF" and "truncated" in err.value.message
    assert str(len(full)) in err.value.message
    source = _variant(tmp_path / "g", archive, image=b"II*\x00garbage" * 10)
    with pytest.raises(ImageError) as err:
        check_image(source, meta)
    assert err.value.product == STEM and err.value.key == "SPECTRAL_IMAGE.TIF"


def test_missing_metadata_file_in_read(archive):
    source = only_source(archive["folder"])
    bare = type(source)(source.product_id, source.name, source.url, source.delivery, source.files[1:])
    with pytest.raises(MetadataError, match="METADATA.XML missing"):
        read_metadata(bare)


@pytest.mark.s3
def test_products_on_s3(archive, s3_bucket):
    import fsspec

    fs = fsspec.filesystem("s3", **resolve_storage_options(f"s3://{s3_bucket}"))
    for kind, prefix in (("folder", "folder"), ("zipped", "zipped")):
        for f in sorted(p for p in archive[kind].rglob("*") if p.is_file()):
            rel = f.relative_to(archive[kind]).as_posix()
            fs.put_file(str(f), f"{s3_bucket}/{prefix}/{rel}")
    found = discover_products(f"s3://{s3_bucket}/")
    assert found.problems == ()
    assert found.skipped == {"duplicate delivery of a product found elsewhere": 1}
    assert [s.product_id for s in found.sources] == [STEM]
    folder = found.sources[0]
    assert folder.url == f"s3://{s3_bucket}/folder/2017/{STEM}" and folder.delivery == "folder"
    zipped = only_source(f"s3://{s3_bucket}/zipped")
    assert zipped.file("METADATA.XML") == f"zip://{STEM}/{XML_NAME}::s3://{s3_bucket}/zipped/deliveries/{STEM}.ZIP"
    local = only_source(archive["folder"])
    want = valid_footprint(local, read_metadata(local))
    for source in (folder, zipped):
        meta = read_metadata(source)
        assert meta == parse_metadata(sample_xml(), product=STEM)
        info = check_image(source, meta)
        assert (info.epsg, info.count, info.shape) == (32632, 218, (1212, 1128))
        fp = valid_footprint(source, meta)
        assert shapely.equals_exact(fp.utm, want.utm, tolerance=1e-6)
    # A truncated object on S3 is caught from its directory and size alone.
    image = (archive["product"] / IMAGE_NAME).read_bytes()
    fs.pipe_file(f"{s3_bucket}/folder/2017/{STEM}/{IMAGE_NAME}", image[:-10000])
    with pytest.raises(ImageError, match="truncated"):
        check_image(folder, read_metadata(folder))
