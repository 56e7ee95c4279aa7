"""The synthetic L2A archive generator and `spectralearth synth`."""

from __future__ import annotations

import shutil

import contextlib
import glob
import hashlib
import json
import os
import re
import xml.etree.ElementTree as ET
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from numcodecs import Blosc
from shapely import Polygon, STRtree

from spectralearth.catalog.synth import FAULT_KINDS, MANIFEST_NAME, SynthConfig, plan_archive, synthesize_archive
from spectralearth.catalog.synth.spectra import band_table
from spectralearth.platform.cli import main as cli_main

STEM_RE = re.compile(
    r"^ENMAP01-____L2A-DT(?P<dt>\d{10})_(?P<start>\d{8}T\d{6}Z)_(?P<tile>\d{3})_V(?P<v>\d{6})_(?P<proc>\d{8}T\d{6}Z)$"
)
SAMPLE_XML = glob.glob(str(Path(__file__).resolve().parent / "data" / "enmap-l2a-sample" / "*-METADATA.XML"))
BRIEF_PATHS = [
    "base/spatialCoverage/boundingPolygon/point/frame",
    "base/spatialCoverage/boundingPolygon/point/latitude",
    "base/spatialCoverage/boundingPolygon/point/longitude",
    "base/temporalCoverage/startTime",
    "base/temporalCoverage/stopTime",
    "base/revision",
    "metadata/schema/versionSchema",
    "metadata/name",
    *(f"specific/{k}" for k in ("datatakeID", "tileID", "numberOfTiles", "widthOfOrthoScene", "heightOfOrthoScene",
                                 "pixelSizeOfOrthoScene", "orbitDirection", "backgroundValue", "processingDateTime")),
    *(f"specific/qualityFlag/{k}" for k in ("cloudCover", "cloudShadow", "hazeCover", "cirrusCover", "snowCover",
                                            "waterCover")),
    *(f"specific/{k}/center" for k in ("acrossOffNadirAngle", "sceneAzimuthAngle", "sunElevationAngle",
                                       "sunAzimuthAngle")),
    *(f"specific/bandCharacterisation/bandID/{k}" for k in ("wavelengthCenterOfBand", "FWHMOfBand", "GainOfBand",
                                                           "OffsetOfBand")),
    "product/ortho/projection",
    "product/image/merge/channels",
    "product/image/merge/dimension/columns",
    "product/image/merge/dimension/rows",
    "product/productFileInformation/file/name",
]
SMALL = SynthConfig(tiles=9, tile_size=96, seed=3, faults=FAULT_KINDS, zip_fraction=0.5)


def _paths(el, prefix=""):
    out = set()
    for ch in el:
        p = f"{prefix}/{ch.tag}" if prefix else ch.tag
        out.add(p)
        out |= _paths(ch, p)
    return out


def _products(root):
    """stem -> ('dir', path) | ('zip', path)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith("_")]
        for d in dirnames:
            if STEM_RE.match(d):
                out[d] = ("dir", os.path.join(dirpath, d))
        for f in filenames:
            if f.endswith(".ZIP"):
                out[f[:-4]] = ("zip", os.path.join(dirpath, f))
    return out


def _read_member(kind, path, stem, suffix):
    if kind == "dir":
        p = os.path.join(path, f"{stem}-{suffix}")
        return open(p, "rb").read() if os.path.exists(p) else None
    with zipfile.ZipFile(path) as zf:
        names = [n for n in zf.namelist() if n.endswith(f"-{suffix}")]
        return zf.read(names[0]) if names else None


@contextlib.contextmanager
def _tif(kind, path, stem, suffix):
    data = _read_member(kind, path, stem, suffix)
    with rasterio.MemoryFile(data) as mem, mem.open() as ds:
        yield ds


@pytest.fixture(scope="module")
def small_archive(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synth") / "archive")
    report = synthesize_archive(root, SMALL)
    yield root, report
    shutil.rmtree(os.path.dirname(root), ignore_errors=True)  # module data goes once the module is done (CI disk)


def _digest(root):
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        for f in sorted(filenames):
            p = os.path.join(dirpath, f)
            h.update(os.path.relpath(p, root).encode())
            h.update(open(p, "rb").read())
    return h.hexdigest()


def test_plan_deterministic_and_seed_dependent():
    a = plan_archive(SynthConfig(tiles=40, tile_size=128, seed=1))
    b = plan_archive(SynthConfig(tiles=40, tile_size=128, seed=1))
    c = plan_archive(SynthConfig(tiles=40, tile_size=128, seed=2))
    assert a == b
    assert [s.stem for s in a] != [s.stem for s in c]
    assert len(a) == 40 and len({(s.datatake, s.tile) for s in a}) == 40


def test_archive_bytes_deterministic(tmp_path):
    cfg = SynthConfig(tiles=3, tile_size=48, seed=5, zip_fraction=0.5)
    synthesize_archive(str(tmp_path / "a"), cfg)
    synthesize_archive(str(tmp_path / "b"), cfg)
    synthesize_archive(str(tmp_path / "c"), SynthConfig(tiles=3, tile_size=48, seed=6, zip_fraction=0.5))
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_names_layout_and_manifest(small_archive):
    root, report = small_archive
    found = _products(root)
    assert set(found) == set(report.products)
    assert len(report.products) == SMALL.tiles + 1  # the duplicate delivery
    for stem, (kind, path) in found.items():
        m = STEM_RE.match(stem)
        assert m, stem
        assert datetime.strptime(m["start"], "%Y%m%dT%H%M%SZ") < datetime.strptime(m["proc"], "%Y%m%dT%H%M%SZ")
        if kind == "zip":
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
            assert all(n.startswith(f"{stem}/{stem}-") for n in names)
            assert f"{stem}/{stem}-SPECTRAL_IMAGE.TIF" in names
    assert any(k == "zip" for k, _ in found.values()) and any(k == "dir" for k, _ in found.values())
    manifest = json.load(open(os.path.join(root, MANIFEST_NAME)))
    assert manifest["faults"] == dict(report.faults)
    assert manifest["config"]["seed"] == SMALL.seed


def test_xml_paths_and_bands(small_archive):
    root, report = small_archive
    sample = _paths(ET.parse(SAMPLE_XML[0]).getroot())
    wl_table, _ = band_table()
    found = _products(root)
    checked = 0
    for stem, (kind, path) in found.items():
        if stem in report.faults:
            continue
        xroot = ET.fromstring(_read_member(kind, path, stem, "METADATA.XML"))
        assert xroot.tag == "level_X"
        ours = _paths(xroot)
        # every element path of the real file, and none it lacks
        assert ours == sample, (sorted(sample - ours)[:5], sorted(ours - sample)[:5])
        raw = _read_member(kind, path, stem, "METADATA.XML")
        assert 3_500_000 < len(raw) < 5_000_000  # the real one has 4.2 MB
        for p in BRIEF_PATHS:
            assert p in sample, p
            assert p in ours, p
        bands = xroot.findall("specific/bandCharacterisation/bandID")
        assert [int(b.get("number")) for b in bands] == list(range(1, 225))
        wl = np.array([float(b.find("wavelengthCenterOfBand").text) for b in bands])
        assert np.all(np.abs(wl - wl_table) <= 0.5)
        assert np.any(wl != wl_table)
        assert {b.find("GainOfBand").text for b in bands} == {"0.0001"}
        assert xroot.find("specific/backgroundValue").text == "-32768"
        m = STEM_RE.match(stem)
        rev = xroot.find("base/revision").text
        assert rev.replace(".", "") == m["v"]
        pts = xroot.findall("base/spatialCoverage/boundingPolygon/point")
        assert [p.find("frame").text for p in pts][-1] == "center" and len(pts) == 6
        with _tif(kind, path, stem, "SPECTRAL_IMAGE.TIF") as ds:
            assert int(xroot.find("product/image/merge/channels").text) == ds.count == 224
            assert int(xroot.find("specific/widthOfOrthoScene").text) == ds.width
            zone = ds.crs.to_epsg() % 100
            assert xroot.find("product/ortho/projection").text.startswith(f"UTM_Zone{zone}_")
            lon = float(pts[0].find("longitude").text)
            # the polygon corner lies inside the grid
            from pyproj import Transformer

            x, y = Transformer.from_crs(4326, ds.crs, always_xy=True).transform(lon, float(pts[0].find("latitude").text))
            assert ds.bounds.left - 30 <= x <= ds.bounds.right + 30 and ds.bounds.bottom - 30 <= y <= ds.bounds.top + 30
        checked += 1
    assert checked >= 2


def test_raster_contract(small_archive):
    root, report = small_archive
    found = _products(root)
    checked = 0
    for stem, (kind, path) in found.items():
        if stem in report.faults:
            continue
        with _tif(kind, path, stem, "SPECTRAL_IMAGE.TIF") as ds:
            assert ds.dtypes[0] == "int16" and ds.nodata == -32768 and ds.count == 224
            assert ds.block_shapes[0] == (128, 128) or ds.height < 128
            assert ds.profile.get("interleave") == "pixel"
            t = ds.transform
            assert t.a == 30 and t.e == -30 and t.b == 0 and t.d == 0
            assert t.c % 30 == 15 and t.f % 30 == 15
            img = ds.read()
        assert np.all(img[129:135] == -32768)
        nodata = np.all(img == -32768, axis=0)
        frac = nodata.mean()
        assert 0.22 <= frac <= 0.34, frac
        valid = img[:, ~nodata]
        good = np.delete(valid, range(126, 141), axis=0)
        assert 0 < np.median(good) < 6000 and good.min() > -1000
        with _tif(kind, path, stem, "QL_QUALITY_CLASSES.TIF") as cl:
            classes = cl.read(1)
        assert np.array_equal(classes == 3, nodata)
        assert set(np.unique(classes)) <= {0, 1, 2, 3}
        xroot = ET.fromstring(_read_member(kind, path, stem, "METADATA.XML"))
        with _tif(kind, path, stem, "QL_QUALITY_CLOUD.TIF") as cm:
            cloud = cm.read(1)
        pct = 100.0 * cloud[~nodata].sum() / (~nodata).sum()
        assert abs(float(xroot.find("specific/qualityFlag/cloudCover").text) - pct) <= 0.51
        # class 0 where clouds hide land or water, as in the real sample's CLASSES (which has 0-3)
        assert np.array_equal(classes == 0, (cloud == 1) & ~nodata)
        if cloud.any():  # clouds are bright
            assert np.median(img[40][cloud.astype(bool)]) > np.median(img[40][~nodata & (cloud == 0)])
        with _tif(kind, path, stem, "QL_VNIR.TIF") as q:
            assert q.count == 3 and q.dtypes[0] == "uint16"
            ql = q.read()
        assert np.all(ql[:, nodata] == 0) and ql[:, ~nodata].max() > 255  # 16-bit values, 0 outside
        checked += 1
    assert checked >= 2


def test_full_geometry_nodata_fraction():
    specs = plan_archive(SynthConfig(tiles=200, seed=0))
    fr = []
    for s in specs:
        poly = Polygon(s.swath_xy)
        fr.append(1.0 - poly.area / (s.width * s.height * 900.0))
        assert 1100 <= s.width <= 1400 and 1100 <= s.height <= 1400
        assert 190.0 <= s.heading_deg <= 215.0  # descending, south-south-west
    # the real sample's CLASSES raster is 30.0 % background (class 3)
    assert 0.27 <= float(np.mean(fr)) <= 0.34


def test_scene_azimuth_follows_the_orbit():
    """The descending track leans further from south toward the poles; at the real sample's
    latitude it has the sample's scene azimuth (14.25°)."""
    import math
    import xml.etree.ElementTree as ET

    from spectralearth.catalog.synth.plan import _deviation

    class NoNoise:
        def normal(self, mean, std):
            return mean

    sample = ET.parse(SAMPLE_XML[0])
    real = float(sample.find(".//sceneAzimuthAngle/center").text)
    lat = float(np.mean([float(e.text) for e in sample.findall("base/spatialCoverage/boundingPolygon/point/latitude")]))
    assert 47.0 < lat < 48.5
    assert abs(_deviation(lat, NoNoise()) - real) < 0.5
    devs = [_deviation(x, NoNoise()) for x in (0.0, 20.0, 40.0, 60.0, 75.0)]
    assert all(a < b for a, b in zip(devs, devs[1:], strict=False)) and 11.0 < devs[0] < 12.5
    assert not math.isnan(_deviation(89.9, NoNoise()))
    specs = plan_archive(SynthConfig(tiles=300, seed=2))
    for s in specs:
        assert abs((s.heading_deg - 180.0) - _deviation(s.center_lat, NoNoise())) < 1.5, s.stem


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_fault_kinds(small_archive, kind):
    root, report = small_archive
    found = _products(root)
    stems = [s for s, k in report.faults.items() if k == kind]
    assert len(stems) == 1
    stem = stems[0]
    where, path = found[stem]
    if kind == "duplicate":
        old = report.superseded[0]
        mo, mn = STEM_RE.match(old), STEM_RE.match(stem)
        assert (mo["dt"], mo["tile"]) == (mn["dt"], mn["tile"]) and mn["v"] > mo["v"] and mn["proc"] > mo["proc"]
        assert old in found
    elif kind == "truncated-tiff":
        data = _read_member(where, path, stem, "SPECTRAL_IMAGE.TIF")
        assert data[:4] in (b"II*\x00", b"MM\x00*")
        with rasterio.MemoryFile(data) as mem, mem.open() as ds:
            assert ds.count == 224
            with pytest.raises(rasterio.errors.RasterioIOError):
                ds.read()
    elif kind == "malformed-xml":
        with pytest.raises(ET.ParseError):
            ET.fromstring(_read_member(where, path, stem, "METADATA.XML"))
    elif kind == "missing-xml":
        assert _read_member(where, path, stem, "METADATA.XML") is None
        assert _read_member(where, path, stem, "SPECTRAL_IMAGE.TIF") is not None
    elif kind == "all-nodata":
        with _tif(where, path, stem, "SPECTRAL_IMAGE.TIF") as ds:
            assert np.all(ds.read() == -32768)
        with _tif(where, path, stem, "QL_QUALITY_CLASSES.TIF") as ds:
            assert np.all(ds.read(1) == 3)
    elif kind == "band-mismatch":
        xroot = ET.fromstring(_read_member(where, path, stem, "METADATA.XML"))
        declared = len(xroot.findall("specific/bandCharacterisation/bandID"))
        with _tif(where, path, stem, "SPECTRAL_IMAGE.TIF") as ds:
            assert declared == 224 and ds.count != declared


def test_footprints_only(tmp_path):
    report = synthesize_archive(str(tmp_path / "fp"), SynthConfig(tiles=8, footprints_only=True, zip_fraction=0.0))
    files = [f for _, _, fs in os.walk(tmp_path / "fp") for f in fs if not f.startswith("_")]
    assert len(files) == 8 == len(report.products)
    assert all(f.endswith("-METADATA.XML") for f in files)


def test_full_scale_plan_overlaps():
    specs = plan_archive(SynthConfig(tiles=11636, seed=0))
    assert len(specs) == 11636
    polys = np.array([Polygon(s.footprint_lonlat) for s in specs])
    assert shapely.is_valid(polys).all()
    a, b = STRtree(polys).query(polys, predicate="intersects")
    keep = a != b
    degree = np.bincount(a[keep], minlength=len(specs))
    assert degree.max() > 30
    lo, hi = datetime(2022, 4, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)
    assert all(lo <= s.start < hi for s in specs)
    lats = np.array([s.center_lat for s in specs])
    assert lats.min() > -60 and lats.max() < 75
    assert len({s.epsg for s in specs}) > 20
    days = np.array([s.start.toordinal() for s in specs])
    multi = (days[a[keep]] != days[b[keep]]).sum()
    assert multi > 1000


def test_small_plan_has_multidate_overlaps():
    specs = plan_archive(SynthConfig(tiles=12, tile_size=256, seed=0))
    polys = [Polygon(s.footprint_lonlat) for s in specs]
    pairs = [(i, j) for i in range(12) for j in range(i + 1, 12) if polys[i].intersection(polys[j]).area > 0]
    assert len(pairs) >= 3
    assert any(specs[i].start.date() != specs[j].start.date() for i, j in pairs)


def test_compression_ratio(small_archive):
    root, report = small_archive
    codec = Blosc(cname="zstd", clevel=5, shuffle=Blosc.SHUFFLE)
    keep = [i for i in range(224) if not (126 <= i <= 140 or 160 <= i <= 166)]
    ratios = []
    for stem, (kind, path) in _products(root).items():
        if stem in report.faults:
            continue
        with _tif(kind, path, stem, "SPECTRAL_IMAGE.TIF") as ds:
            img = ds.read()
        valid = ~np.all(img == -32768, axis=0)
        ys, xs = np.nonzero(valid)
        cy, cx = int(np.median(ys)), int(np.median(xs))
        view = np.ascontiguousarray(img[keep, cy - 32: cy + 32, cx - 32: cx + 32])
        ratios.append(view.nbytes / len(codec.encode(view)))
    assert ratios and all(1.2 <= r <= 4.0 for r in ratios), ratios


def test_cli(tmp_path, capsys):
    rc = cli_main(["-q", "synth", str(tmp_path / "c"), "--tiles", "2", "--tile-size", "32", "--zip-fraction", "1"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "products" in out and "zipped" in out
    assert len(glob.glob(str(tmp_path / "c" / "*" / "*" / "*.ZIP"))) == 2
    with pytest.raises(SystemExit) as exc:
        cli_main(["synth", str(tmp_path / "d"), "--tiles", "2", "--faults", "duplicate,nope"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "nope" in err and "truncated-tiff" in err


def test_compact_xml_reads_the_same_and_is_small(tmp_path):
    """compact_xml drops only the calibration/navigation bodies: the parsed metadata is identical."""
    from dataclasses import asdict

    from spectralearth.catalog.enmap import discover_products, read_metadata

    metas, sizes = {}, {}
    for compact in (False, True):
        root = str(tmp_path / f"compact-{compact}")
        synthesize_archive(root, SynthConfig(tiles=3, footprints_only=True, seed=21, compact_xml=compact))
        found = discover_products(root)
        metas[compact] = {s.product_id: asdict(read_metadata(s)) for s in found.sources}
        sizes[compact] = [os.path.getsize(s.file("METADATA.XML")) for s in found.sources]
    assert metas[True] == metas[False] and len(metas[True]) == 3
    assert max(sizes[True]) * 8 < min(sizes[False]), sizes
