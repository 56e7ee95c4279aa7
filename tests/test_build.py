"""End-to-end: synthetic archive -> ``build`` -> cube, on the local filesystem and on S3.

The cube is checked against the source tiles themselves: every view equals the
window of its tile (read here with rasterio from the tile's bytes, band for band),
every window lies inside each of its views' valid footprints, the statistics equal
a direct numpy computation, and no output object contains the S3 secret.
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pyproj
import pytest
import shapely

from spectralearth.pipelines.build import BuildConfig, build
from spectralearth.pipelines.extract import SPECTRALEARTH_BANDS, ExtractParams
from spectralearth.pipelines.plan import PlanParams, read_plan
from spectralearth.platform import storage
from spectralearth.platform.cluster import ClusterSpec

# 10 tiles of 240 px (the session archive): this seed has 2- and 3-tile combinations and multi-date patches.
# The synthetic scenes are cloudier than SpectralEarth's selection: permissive filters keep views to check.
PLAN = PlanParams(max_cloud=0.6, max_cloud_shadow=0.6, max_snow=1.0)


@pytest.fixture(scope="module")
def local_archive(pixel_archive) -> str:
    return pixel_archive


def _archive_on(root, local_archive: str) -> str:
    if root.kind == "local":
        return local_archive
    url = storage.join(root.url, "archive")
    fs, path = storage.filesystem(url, root.storage_options)
    fs.put(local_archive.rstrip("/") + "/", path, recursive=True)
    return url


def _read_window(href: str, bands, row0: int, col0: int, px: int, storage_options) -> np.ndarray:
    """The window straight from the tile's bytes (folder file or ZIP member, local or S3)."""
    import fsspec
    import rasterio
    from rasterio.windows import Window

    if "::" in href:
        outer = href.split("::", 1)[1]
        opts = {storage.protocol_of(outer): storage.resolve_storage_options(outer, storage_options)}
    else:
        opts = storage.resolve_storage_options(href, storage_options)
    with fsspec.open(href, "rb", **opts) as f:
        data = f.read()
    with rasterio.MemoryFile(data) as mem, mem.open() as ds:
        return ds.read(indexes=list(bands), window=Window(col0, row0, px, px))


def test_build_end_to_end(storage_root, local_archive, test_secret):
    from spectralearth.catalog import read_item_dicts, read_tiles
    from spectralearth.platform.cube import cube_checksums, list_versions, open_cube

    archive = _archive_on(storage_root, local_archive)
    out = storage.join(storage_root.url, "out")
    opts = storage_root.storage_options
    config = BuildConfig(plan=PLAN, extract=ExtractParams())
    report = build(archive, out, storage_options=opts, config=config,
                   cluster=ClusterSpec(kind="local", n_workers=2))

    # the report: written, every stage present, no secret
    rep = json.loads(storage.read_bytes(storage.join(out, "build-report.json"), opts))
    assert list(rep["stages"]) == ["index", "overlaps", "combinations", "plan", "extract"]
    assert rep["stages"]["plan"]["patches"] == report.stages["extract"]["patches"] > 0
    assert rep["stages"]["plan"]["multi_date_patches"] >= 1, json.dumps({k: rep["stages"][k] for k in ("index", "plan")}, default=str)[:3000]

    catalog = storage.join(out, "catalog")
    cube_url = storage.join(out, "cube.zarr")
    patches, views = read_plan(catalog, storage_options=opts)
    tiles = read_tiles(catalog, storage_options=opts)
    items = read_item_dicts(catalog, storage_options=opts)

    # the version opens as an xarray dataset; its index group also with plain xarray
    import xarray as xr

    from spectralearth.platform.cube import locate_version, open_store

    ds = open_cube(cube_url, storage_options=opts, decode=False)
    assert ds.attrs["spectralearth:version"] == "v1" == report.stages["extract"]["version"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = xr.open_zarr(open_store(locate_version(cube_url, storage_options=opts).index_url, storage_options=opts,
                                        read_only=True), consolidated=False)
    np.testing.assert_array_equal(plain["view_patch"].values, ds["view_patch"].values)
    nb = len(SPECTRALEARTH_BANDS)
    assert dict(ds.sizes) == {"view": len(views), "band": nb, "y": 128, "x": 128, "patch": len(patches)}
    assert ds["reflectance"].dtype == np.int16
    assert ds.attrs["spectralearth:bands"] == list(SPECTRALEARTH_BANDS)
    assert ds.attrs["spectralearth:patch_px"] == 128
    assert ds.attrs["spectralearth:config_hash"] == config.hash()
    assert ds.attrs["spectralearth:catalog_snapshot"]
    np.testing.assert_array_equal(ds["band"].values, SPECTRALEARTH_BANDS)
    np.testing.assert_array_equal(ds["view_patch"].values, views["patch"].to_numpy())
    np.testing.assert_array_equal(ds["view_tile"].values, views["tile"].to_numpy())
    starts, counts = ds["patch_view_start"].values, ds["patch_view_count"].values
    for p in range(len(patches)):  # CSR index: contiguous views of each patch
        assert (ds["view_patch"].values[starts[p] : starts[p] + counts[p]] == p).all()
    assert counts.sum() == len(views)

    refl = ds["reflectance"].values
    # every view equals its tile's window, band for band; footprints contain the window
    side = 128 * 30.0
    for v in views.itertuples():
        item = items[v.tile]
        assert item["id"] == v.id == tiles["id"].iat[v.tile]
        expected = _read_window(item["assets"]["spectral_image"]["href"], SPECTRALEARTH_BANDS, v.row0, v.col0, 128, opts)
        np.testing.assert_array_equal(refl[v.view], expected, err_msg=f"view {v.view} ({v.id})")
        p = patches.iloc[v.patch]
        assert pyproj.CRS(f"EPSG:{int(p.crs)}") == pyproj.CRS(tiles["proj:code"].iat[v.tile])
        tr = pyproj.Transformer.from_crs(4326, int(p.crs), always_xy=True)
        footprint = shapely.transform(tiles.geometry.iat[v.tile], lambda xy, tr=tr: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
        window = shapely.box(p.x0, p.y0 - side, p.x0 + side, p.y0)
        assert footprint.contains(window), f"patch {v.patch} not inside the footprint of {v.id}"
        t = tiles["proj:transform"].iat[v.tile]
        assert (p.x0 - t[2]) / 30.0 == v.col0 and (t[5] - p.y0) / 30.0 == v.row0
        assert p.x0 % 30 == 15 and p.y0 % 30 == 15
    # no two views of one patch from the same datatake
    assert not views.duplicated(["patch", "datatake"]).any()

    # statistics = a direct computation over all views
    flat = refl.transpose(1, 0, 2, 3).reshape(nb, -1).astype(np.float64)
    valid = flat != -32768
    n = valid.sum(axis=1)
    mean = np.where(valid, flat, 0).sum(axis=1) / n
    std = np.sqrt((np.where(valid, flat - mean[:, None], 0) ** 2).sum(axis=1) / n)
    np.testing.assert_allclose(ds["band_mean"].values, mean, rtol=1e-6)
    np.testing.assert_allclose(ds["band_std"].values, std, rtol=1e-5)
    assert np.all(np.isfinite(ds["wavelength"].values)) and np.all(np.diff(ds["wavelength"].values) > 0)

    # no credentials in any output object
    fs, path = storage.filesystem(out, opts)
    secret = test_secret.encode()
    for obj in fs.find(path):
        assert secret not in fs.cat_file(obj), f"secret found in {obj}"

    # committed: a rebuild of the same archive commits nothing and rewrites nothing
    before = cube_checksums(cube_url, storage_options=opts)
    again = build(archive, out, storage_options=opts, config=config, cluster=ClusterSpec(kind="sync"))
    assert again.stages["extract"]["up_to_date"] and again.stages["extract"]["version"] == "v1"
    assert cube_checksums(cube_url, storage_options=opts) == before
    assert [v.id for v in list_versions(cube_url, storage_options=opts)] == ["v1"]


def test_build_cli_writes_report(tmp_path, local_archive):
    """The command line runs the same job and prints where the outputs are."""
    import subprocess
    import sys

    CLI = os.path.join(os.path.dirname(sys.executable), "spectralearth")

    out = tmp_path / "out"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    res = subprocess.run(
        [CLI, "-q", "build", local_archive, "--out", str(out),
         "--cluster", "sync", "--max-cloud", "0.6", "--max-cloud-shadow", "0.6", "--max-snow", "1.0", "--json"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    rep = json.loads(res.stdout)
    on_disk = json.loads((out / "build-report.json").read_text())
    assert rep["stages"]["extract"]["views"] == on_disk["stages"]["extract"]["views"] > 0
    assert (out / "cube.zarr" / "versions" / "00000001.json").exists()
    again = subprocess.run(
        [CLI, "-q", "build", local_archive, "--out", str(out),
         "--cluster", "sync", "--max-cloud", "0.6", "--max-cloud-shadow", "0.6", "--max-snow", "1.0"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert again.returncode == 0 and "up to date, nothing committed" in again.stdout, again.stdout[-2000:]
    listed = subprocess.run([CLI, "versions", str(out / "cube.zarr")], capture_output=True, text=True, env=env, timeout=120)
    assert listed.returncode == 0 and listed.stdout.count("\nv") + listed.stdout.startswith("v") == 1, listed.stdout
