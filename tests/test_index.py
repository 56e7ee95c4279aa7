"""The index job end to end: synthetic archive with every fault -> STAC catalog, on local and S3."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
import xarray as xr

from spectralearth.catalog import index_archive, read_item_dicts, read_table, read_tiles
from spectralearth.catalog.enmap import parse_metadata
from spectralearth.catalog.schemas import validate_collection, validate_item
from spectralearth.catalog.synth import FAULT_KINDS, SynthConfig, synthesize_archive
from spectralearth.platform.cluster import ClusterSpec
from spectralearth.platform.storage import filesystem, join, read_bytes

SAMPLE = Path(__file__).resolve().parent / "data" / "enmap-l2a-sample"
SYNC = ClusterSpec(kind="sync")


def _faulty_config(**kw) -> SynthConfig:
    # stored (not deflated) ZIP members can be referenced in place by kerchunk
    return SynthConfig(tiles=10, tile_size=160, seed=3, faults=tuple(FAULT_KINDS), zip_fraction=0.3, zip_deflate=False, **kw)


def _kerchunk_options(storage_root) -> dict:
    if storage_root.kind == "local":
        return {}
    from spectralearth.platform.storage import resolve_storage_options

    return {"remote_protocol": "s3", "remote_options": resolve_storage_options("s3://x", storage_root.storage_options)}


def test_index_archive_with_every_fault(storage_root, test_secret):
    archive = join(storage_root.url, "archive")
    catalog = join(storage_root.url, "catalog")
    synth = synthesize_archive(archive, _faulty_config(), storage_options=storage_root.storage_options)
    assert set(synth.faults.values()) == set(FAULT_KINDS)

    report = index_archive(archive, catalog_url=catalog, storage_options=storage_root.storage_options, cluster=SYNC)

    items = read_item_dicts(catalog, storage_options=storage_root.storage_options)
    ids = {it["id"] for it in items}
    quarantine = {r["product"]: r for r in read_table(catalog, "quarantine", storage_options=storage_root.storage_options)}
    superseded = read_table(catalog, "superseded", storage_options=storage_root.storage_options)

    bad = {stem for stem, kind in synth.faults.items() if kind != "duplicate"}
    # every product that is not broken is in the catalog unless a newer delivery superseded it
    good = set(synth.products) - bad - set(synth.superseded)
    assert good <= ids, f"good products missing: {sorted(good - ids)}"
    assert not (ids & bad)
    # every injected fault has a clear quarantine record naming the product
    expected_stage = {
        "truncated-tiff": ("image", "ImageError"),
        "malformed-xml": ("metadata", "MetadataError"),
        "missing-xml": ("metadata", "MetadataError"),
        "band-mismatch": ("image", "ImageError"),
        "all-nodata": ("footprint", "ImageError"),
    }
    for stem, kind in synth.faults.items():
        if kind == "duplicate":
            continue
        assert stem in quarantine, f"{kind} product {stem} not quarantined"
        rec = quarantine[stem]
        assert (rec["stage"], rec["error_class"]) == expected_stage[kind], (kind, rec)
        assert stem in rec["message"]
    assert report.quarantined == len(bad)
    # the older delivery of a duplicate is superseded by the newer one
    assert synth.superseded
    by_product = {r["product"]: r for r in superseded}
    for old in synth.superseded:
        assert old in by_product and by_product[old]["superseded_by"] in ids
        assert old not in ids

    for it in items:
        validate_item(it)
        assert it["properties"]["proj:code"].startswith("EPSG:326") or it["properties"]["proj:code"].startswith("EPSG:327")
        bands = it["assets"]["spectral_image"]["bands"]
        assert len(bands) == 224
        assert 0.40 < bands[0]["eo:center_wavelength"] < 0.43 and 2.4 < bands[-1]["eo:center_wavelength"] < 2.5
    collection = json.loads(read_bytes(join(catalog, "collection.json"), storage_root.storage_options))
    validate_collection(collection)

    tiles = read_tiles(catalog, storage_options=storage_root.storage_options)
    assert list(tiles["id"]) == [it["id"] for it in items]
    assert tiles.crs.to_epsg() == 4326 and tiles.geometry.is_valid.all()
    assert str(tiles["datetime"].dt.tz) == "UTC"

    # kerchunk references reproduce the GeoTIFF pixels, for a folder and a ZIP delivery
    seen = set()
    for it in items:
        delivery = it["properties"]["enmap:delivery"]
        if delivery in seen:
            continue
        seen.add(delivery)
        # plain kerchunk + xarray: load the references, let fsspec fetch the chunks
        refs = json.loads(read_bytes(it["assets"]["references"]["href"], storage_root.storage_options))
        ds = xr.open_dataset(
            refs,
            engine="kerchunk",
            storage_options=_kerchunk_options(storage_root),
            mask_and_scale=False,
        )
        refl = ds["reflectance"].transpose("band", "y", "x")
        fs, path = filesystem(it["assets"]["spectral_image"]["href"], storage_root.storage_options)
        with fs.open(path, "rb") as f, rasterio.open(f) as src:
            window = src.read(window=((20, 84), (30, 94)))
            assert refl.shape == (src.count, src.height, src.width)
        assert np.array_equal(refl[:, 20:84, 30:94].values, window)
        assert np.allclose(ds["wavelength"].values[:3], [b["eo:center_wavelength"] * 1000 for b in it["assets"]["spectral_image"]["bands"][:3]], atol=1e-3)
    assert seen == {"folder", "zip"}

    # no credential anywhere in what the job wrote
    fs, root = filesystem(catalog, storage_root.storage_options)
    for path in fs.find(root):
        assert test_secret.encode() not in fs.cat_file(path), path


def test_rerun_indexes_only_what_is_new(tmp_path):
    archive, catalog = tmp_path / "archive", str(tmp_path / "catalog")
    synthesize_archive(str(archive / "batch1"), SynthConfig(tiles=6, tile_size=128, seed=11))
    first = index_archive(str(archive), catalog_url=catalog, cluster=SYNC)
    assert first.indexed == 6 and first.quarantined == 0
    again = index_archive(str(archive), catalog_url=catalog, cluster=SYNC)
    assert again.indexed == 0 and again.already_indexed == 6
    before = [it["id"] for it in read_item_dicts(catalog)]

    grown = synthesize_archive(str(archive / "batch2"), SynthConfig(tiles=4, tile_size=128, seed=12))
    third = index_archive(str(archive), catalog_url=catalog, cluster=SYNC)
    assert third.indexed == len(set(grown.products) - set(before))
    after = [it["id"] for it in read_item_dicts(catalog)]
    # existing rows keep their positions; new ones are appended
    assert after[: len(before)] == before
    assert set(after) == set(before) | set(grown.products)


def test_index_on_a_local_dask_cluster_matches_in_process(tmp_path):
    archive = str(tmp_path / "archive")
    synthesize_archive(archive, SynthConfig(tiles=8, tile_size=128, seed=5, footprints_only=True))
    a = index_archive(archive, catalog_url=str(tmp_path / "a"), cluster=SYNC)
    b = index_archive(archive, catalog_url=str(tmp_path / "b"), cluster=ClusterSpec(kind="local", n_workers=2))
    assert a.indexed == b.indexed == 8
    ia, ib = read_item_dicts(str(tmp_path / "a")), read_item_dicts(str(tmp_path / "b"))
    assert [i["id"] for i in ia] == [i["id"] for i in ib]
    assert [i["geometry"] for i in ia] == [i["geometry"] for i in ib]
    # footprint-only products: footprint from the XML polygon, bands at item level
    assert all(i["properties"]["enmap:footprint_source"] == "xml" for i in ia)
    assert all(len(i["properties"]["bands"]) == 224 for i in ia)


def test_cli_strict_exit_codes(tmp_path):
    archive = str(tmp_path / "archive")
    synthesize_archive(archive, SynthConfig(tiles=6, tile_size=128, seed=2, faults=("malformed-xml",)))
    exe = shutil.which("spectralearth") or os.path.join(os.path.dirname(sys.executable), "spectralearth")
    ok = subprocess.run([exe, "-q", "index", archive, "--catalog", str(tmp_path / "c1"), "--cluster", "sync"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "QUARANTINED" in ok.stderr and "metadata" in ok.stderr
    strict = subprocess.run(
        [exe, "-q", "index", archive, "--catalog", str(tmp_path / "c2"), "--cluster", "sync", "--strict"], capture_output=True, text=True
    )
    assert strict.returncode == 1


def _sample_product(tmp_path: Path) -> tuple[Path, str]:
    """The real sample's METADATA.XML and CLASSES raster plus a 218-band image on its grid."""
    xml = next(iter(glob.glob(str(SAMPLE / "*-METADATA.XML"))))
    classes = next(iter(glob.glob(str(SAMPLE / "*-QL_QUALITY_CLASSES.TIF"))))
    stem = Path(xml).name[: -len("-METADATA.XML")]
    folder = tmp_path / "archive" / stem
    folder.mkdir(parents=True)
    shutil.copy(xml, folder)
    shutil.copy(classes, folder)
    with rasterio.open(classes) as src:
        cls = src.read(1)
        profile = src.profile
    valid = cls != 3
    profile.update(count=218, dtype="int16", nodata=-32768, compress="deflate", tiled=True, blockxsize=256, blockysize=256, interleave="band")
    with rasterio.open(folder / f"{stem}-SPECTRAL_IMAGE.TIF", "w", **profile) as dst:
        for b in range(1, 219):
            band = np.where(valid, (cls.astype("int16") * 1000 + b), -32768).astype("int16")
            dst.write(band, b)
    return folder, stem


def test_real_sample_indexes_correctly(tmp_path):
    folder, stem = _sample_product(tmp_path)
    report = index_archive(str(tmp_path / "archive"), catalog_url=str(tmp_path / "catalog"), cluster=SYNC)
    assert report.indexed == 1, report.quarantine
    (item,) = read_item_dicts(str(tmp_path / "catalog"))
    validate_item(item)
    meta = parse_metadata((folder / f"{stem}-METADATA.XML").read_bytes(), product=stem)
    p = item["properties"]
    assert item["id"] == stem
    assert p["datetime"] == "2017-06-26T10:20:20.999936Z"
    assert p["proj:code"] == "EPSG:32632"
    assert p["proj:transform"] == [30.0, 0.0, 628785.0, 0.0, -30.0, 5294265.0]
    assert p["proj:shape"] == [1212, 1128]
    assert p["enmap:datatake_id"] == 326721 and p["enmap:tile_id"] == 1
    bands = item["assets"]["spectral_image"]["bands"]
    assert len(bands) == 218
    assert [b["eo:center_wavelength"] for b in bands] == [round(b.wavelength_nm / 1000, 6) for b in meta.bands]
    assert bands[0]["eo:center_wavelength"] == pytest.approx(0.42303)
    assert bands[-1]["eo:center_wavelength"] == pytest.approx(2.4386)
    # footprint from the CLASSES raster: inside the XML polygon (small tolerance), covering most of it
    footprint = shapely.geometry.shape(item["geometry"])
    xml_poly = shapely.Polygon(meta.corners_lonlat)
    assert footprint.difference(xml_poly.buffer(0.003)).area < 0.005 * footprint.area
    assert footprint.intersection(xml_poly).area > 0.9 * xml_poly.area
    assert p["enmap:footprint_source"] == "classes-mask"


def test_empty_and_missing_catalogs_give_clear_errors(tmp_path):
    from spectralearth.catalog.catalogio import write_items

    with pytest.raises(FileNotFoundError, match="no tile catalog"):
        read_tiles(str(tmp_path / "nothing"))
    write_items([], str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="empty"):
        read_tiles(str(tmp_path / "empty"))
