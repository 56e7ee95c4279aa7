"""Patch items: publish a cube's patches, round-trip an item to the cube's pixels, versions, bad input."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from spectralearth.catalog.patches import (
    CUBE_MEDIA_TYPE,
    find_patch_item,
    publish_patches,
    published_versions,
    read_patch_items,
    rgb_bands,
    thumbnail_png,
)
from spectralearth.catalog.pixels import export_patch, open_patch
from spectralearth.catalog.schemas import validate_collection, validate_item
from spectralearth.platform import storage

CLI = [os.path.join(os.path.dirname(sys.executable), "spectralearth")]


def _cube(url, **kw):
    from spectralearth.platform.cube import open_cube

    return open_cube(url, **kw)  # the latest committed version


def test_items_describe_every_patch(patch_catalog):
    pc = patch_catalog
    ds = _cube(pc.cube)
    items = read_patch_items(pc.catalog)
    starts, counts = ds["patch_view_start"].values, ds["patch_view_count"].values
    assert len(items) == ds.sizes["patch"] == pc.cfg.n_patches
    assert sum(it["properties"]["spectralearth:view_count"] for it in items) == ds.sizes["view"] >= 150
    from spectralearth.catalog import read_tiles

    tile_ids = read_tiles(pc.catalog)["id"].tolist()
    times = ds["view_time"].values
    crs = ds["patch_crs"].values
    x0, y0 = ds["patch_x0"].values, ds["patch_y0"].values
    from pyproj import Transformer

    for it in items:
        p = it["properties"]["spectralearth:patch"]
        s, n = int(starts[p]), int(counts[p])
        props = it["properties"]
        want = [str(t)[:19] + "Z" for t in times[s : s + n]]
        assert props["spectralearth:view_datetimes"] == want
        assert pd.Timestamp(props["start_datetime"]) == pd.Timestamp(min(want)) == pd.Timestamp(props["datetime"])
        assert pd.Timestamp(props["end_datetime"]) == pd.Timestamp(max(want))
        assert props["spectralearth:view_tiles"] == [tile_ids[r] for r in ds["view_tile"].values[s : s + n]]
        assert props["proj:code"] == f"EPSG:{crs[p]}"
        assert props["proj:transform"] == [30.0, 0.0, x0[p], 0.0, -30.0, y0[p]]
        assert props["proj:shape"] == [128, 128]
        asset = it["assets"]["cube"]
        assert asset["type"] == CUBE_MEDIA_TYPE and asset["cube:version"] == pc.version
        assert (asset["spectralearth:view_start"], asset["spectralearth:view_count"]) == (s, n)
        # the footprint holds the patch centre, projected to WGS84
        lon, lat = Transformer.from_crs(int(crs[p]), 4326, always_xy=True).transform(x0[p] + 1920, y0[p] - 1920)
        w, so, e, no = it["bbox"]
        assert w < lon < e and so < lat < no
        # stored items carry no links (the API adds them); a collection link is what STAC 1.1 requires beside `collection`
        validate_item({**it, "links": [{"rel": "collection", "href": "../../collection.json", "type": "application/json"}]})
    coll = json.loads(storage.read_bytes(storage.join(pc.catalog, "patches", "collection.json")))
    validate_collection(coll)
    assert len(coll["bands"]) == ds.sizes["band"] == len(pc.cfg.bands) and coll["cube:dimensions"]["wavelength"]["values"][0] == pytest.approx(float(ds["wavelength"][0]), abs=1e-3)
    assert coll["summaries"]["cube:version"] == [pc.version]


def test_items_are_hilbert_sorted_in_small_row_groups(patch_catalog):
    import pyarrow.parquet as pq

    from spectralearth.catalog.patches import ROW_GROUP_ROWS, _hilbert_order, version_files

    files = version_files(patch_catalog.catalog, patch_catalog.version)
    assert len(files) == 6 and [f.rsplit("/", 1)[-1] for f in files] == [f"part-{k:05d}.parquet" for k in range(6)]  # 90 items, 16 a file
    pfs = [pq.ParquetFile(storage.strip_protocol(f)) for f in files]
    assert all(pf.metadata.row_group(i).num_rows <= ROW_GROUP_ROWS for pf in pfs for i in range(pf.metadata.num_row_groups))
    # the files follow each other along the curve: read in order, they are one Hilbert-sorted sequence
    bbox = [b for pf in pfs for b in pf.read(columns=["bbox"]).column("bbox").to_pylist()]
    cx = np.array([(b["xmin"] + b["xmax"]) / 2 for b in bbox])
    cy = np.array([(b["ymin"] + b["ymax"]) / 2 for b in bbox])
    # the rows are in Hilbert order of their centres (bbox centres: a hair off the corner means publish uses)
    assert np.mean(_hilbert_order(cx, cy) == np.arange(len(cx))) > 0.9
    # and a Hilbert order keeps neighbours together: on random points, steps far shorter than in random order
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-10, 10, 5000), rng.uniform(40, 60, 5000)
    o = _hilbert_order(x, y)
    assert np.hypot(np.diff(x[o]), np.diff(y[o])).mean() < 0.1 * np.hypot(np.diff(x), np.diff(y)).mean()


def test_thumbnails_are_rgb_of_640_550_460_with_nodata_transparent(patch_catalog):
    from PIL import Image

    pc = patch_catalog
    ds = _cube(pc.cube)
    r, g, b = rgb_bands(ds["wavelength"].values)
    wl = ds["wavelength"].values
    for band, target in zip((r, g, b), (640, 550, 460), strict=True):
        assert abs(wl[band] - target) == np.min(np.abs(wl - target))
    items = read_patch_items(pc.catalog)
    with_nodata = 0
    for it in items[:30]:
        href = it["assets"]["thumbnail"]["href"]
        img = np.asarray(Image.open(io.BytesIO(storage.read_bytes(href))))
        assert img.shape == (128, 128, 4)
        a = it["assets"]["cube"]
        raw = ds["reflectance"].isel(view=slice(a["spectralearth:view_start"], a["spectralearth:view_start"] + a["spectralearth:view_count"]))
        raw = raw.isel(band=[r, g, b]).values  # decoded: NaN at nodata
        best = int(np.argmax(np.isfinite(raw).all(axis=1).sum(axis=(1, 2))))
        valid = np.isfinite(raw[best]).all(axis=0)
        np.testing.assert_array_equal(img[..., 3] == 255, valid)
        with_nodata += int((~valid).any())
        expected = thumbnail_png(np.where(np.isfinite(raw[best]), np.rint(raw[best] * 1e4), -32768).astype(np.int16))
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(expected))), img)
    assert with_nodata >= 1


def test_open_patch_equals_the_cube_for_every_item(patch_catalog, tmp_path):
    import rasterio

    pc = patch_catalog
    ds = _cube(pc.cube)
    refl = ds["reflectance"]
    raw_refl = _cube(pc.cube, decode=False)["reflectance"]
    views = 0
    for it in read_patch_items(pc.catalog):
        da = open_patch(it)
        a = it["assets"]["cube"]
        s, n = a["spectralearth:view_start"], a["spectralearth:view_count"]
        assert da.dims == ("time", "wavelength", "y", "x") and da.shape == (n, ds.sizes["band"], 128, 128)
        raw = raw_refl.isel(view=slice(s, s + n)).values  # the stored int16
        valid = raw != -32768
        np.testing.assert_array_equal(np.isnan(da.values), ~valid)
        np.testing.assert_array_equal(np.rint(da.values[valid] * 1e4).astype(np.int16), raw[valid])
        np.testing.assert_allclose(da.values, refl.isel(view=slice(s, s + n)).values, rtol=1e-6)  # xarray's own decoding
        assert da.rio.crs.to_epsg() == int(it["properties"]["proj:code"].split(":")[1])
        assert list(da.rio.transform())[:6] == it["properties"]["proj:transform"]
        np.testing.assert_array_equal(da["time"].values, ds["view_time"].values[s : s + n])
        views += n
    assert views == ds.sizes["view"]

    # export-patch: the GeoTIFF holds the same values, grid and band order
    it = max(read_patch_items(pc.catalog), key=lambda i: i["properties"]["spectralearth:view_count"])
    out = tmp_path / "patch.tif"
    res = subprocess.run([*CLI, "export-patch", it["id"], "--catalog", pc.catalog, "--to", str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    da = open_patch(it)
    with rasterio.open(out) as src:
        nb = ds.sizes["band"]
        assert src.count == da.shape[0] * nb and src.crs.to_epsg() == da.rio.crs.to_epsg()
        assert list(src.transform)[:6] == it["properties"]["proj:transform"]
        np.testing.assert_array_equal(src.read(), da.values.reshape(-1, 128, 128))
        assert src.descriptions[nb + 1].startswith(it["properties"]["spectralearth:view_datetimes"][1])


def test_new_version_adds_files_and_republish_writes_nothing(patch_catalog, tmp_path):
    from spectralearth.platform.samplecube import SampleCube, write_sample_cube

    pc = patch_catalog
    cat = tmp_path / "catalog"
    first = publish_patches(pc.cube, str(cat), tiles_catalog_url=pc.catalog, thumbnails=False)
    before = {p: p.read_bytes() for p in cat.rglob("*.parquet")}
    again = publish_patches(pc.cube, str(cat), tiles_catalog_url=pc.catalog, thumbnails=False)
    assert again.already_published and again.items == 0
    import shutil

    cube2 = str(tmp_path / "cube2.zarr")
    shutil.copytree(pc.cube, cube2)  # the same cube, then a new version committed on top of v1
    write_sample_cube(cube2, SampleCube(n_patches=5, quick=True, seed=8))
    second = publish_patches(cube2, str(cat), tiles_catalog_url=pc.catalog, thumbnails=False)
    assert (first.items, second.items) == (90, 5)
    assert published_versions(str(cat)) == sorted([pc.version, "v2"])
    assert {p: p.read_bytes() for p in before} == before  # earlier files untouched
    assert len(read_patch_items(str(cat), version="v2")) == 5
    assert find_patch_item(str(cat), "patch-0000003-v2")["properties"]["cube:version"] == "v2"
    # a version folder without its manifest (a crash before commit) is not visible
    (cat / "patches" / "version=v2" / "manifest.json").unlink()
    assert published_versions(str(cat)) == [pc.version]


def test_bad_input_is_named(patch_catalog, tmp_path):
    from spectralearth.platform.cube import CubeNotCommittedError

    with pytest.raises(CubeNotCommittedError, match="no committed cube"):
        publish_patches(str(tmp_path / "absent.zarr"), str(tmp_path / "cat"))
    item = find_patch_item(patch_catalog.catalog, read_patch_items(patch_catalog.catalog)[0]["id"])
    broken = json.loads(json.dumps(item))
    del broken["assets"]["cube"]["spectralearth:view_start"]
    with pytest.raises(ValueError, match="spectralearth:view_start"):
        open_patch(broken)
    wrong = json.loads(json.dumps(item))
    wrong["assets"]["cube"]["cube:version"] = "other"
    with pytest.raises(ValueError, match="describes cube version other"):
        open_patch(wrong)
    with pytest.raises(KeyError, match="no patch item 'patch-9999999"):
        find_patch_item(patch_catalog.catalog, f"patch-9999999-{patch_catalog.version}")
    res = subprocess.run([*CLI, "export-patch", "nope", "--catalog", patch_catalog.catalog, "--to", str(tmp_path / "x.tif")],
                         capture_output=True, text=True)
    assert res.returncode == 1 and "no patch item 'nope'" in res.stderr
    with pytest.raises(FileNotFoundError, match="no published patch items"):
        read_patch_items(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="outside"):
        from spectralearth.catalog.pixels import pixel_spectra

        pixel_spectra(item, 128, 0)
    buf = io.BytesIO()
    assert export_patch(item, buf) == len(patch_catalog.cfg.bands) * item["properties"]["spectralearth:view_count"]


def test_column_wise_table_equals_stac_geoparquet_conversion(patch_catalog):
    """The fast column-wise items table holds exactly what stac-geoparquet makes of the item dicts."""
    import pyarrow as pa
    from stac_geoparquet.arrow import parse_stac_items_to_arrow, stac_table_to_items

    from spectralearth.catalog.patches import _footprints, items_table, patch_item_dicts, read_cube_index

    index = read_cube_index(patch_catalog.cube)
    fp = _footprints(index)
    order = np.random.default_rng(1).permutation(len(index.view_start))
    thumb = lambda iid: f"thumbs/{iid}.png"  # noqa: E731
    ids = [f"T{i:03d}" for i in range(100)]
    dicts = list(patch_item_dicts(index, cube_href="cube.zarr", tile_ids=ids, thumbnail_href=thumb, patches=order, footprints=fp))
    via_dicts = [dict(it) for it in stac_table_to_items(pa.Table.from_batches(list(parse_stac_items_to_arrow(dicts))))]
    table = items_table(index, order, cube_href="cube.zarr", footprints=fp, tile_ids=ids, thumbnail_href=thumb)
    assert [dict(it) for it in stac_table_to_items(table)] == via_dicts
