"""Extraction into versions: SIGKILL and rerun commit the same version; concurrent builders; readers."""

from __future__ import annotations

import shutil

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from spectralearth.pipelines.extract import EmptyPlanError, ExtractParams, extract_cube
from spectralearth.pipelines.plan import PlanParams
from spectralearth.platform import storage
from spectralearth.platform.cluster import ClusterSpec
from spectralearth.platform.cube import (
    CubeNotCommittedError,
    VersionConflictError,
    cube_checksums,
    list_versions,
    open_cube,
    verify_version,
)

PLAN = PlanParams(max_cloud=0.6, max_cloud_shadow=0.6, max_snow=1.0)
CLI = os.path.join(os.path.dirname(sys.executable), "spectralearth")
SYNC = ClusterSpec(kind="sync")


@pytest.fixture(scope="module")
def planned_catalog(tmp_path_factory, pixel_archive) -> str:
    """A local catalog with overlaps, combinations and the patch plan of the shared archive."""
    from spectralearth.catalog import index_archive
    from spectralearth.pipelines.combinations import combinations_job
    from spectralearth.pipelines.overlaps import overlaps_job
    from spectralearth.pipelines.plan import plan_job

    archive = pixel_archive
    catalog = str(tmp_path_factory.mktemp("extract") / "catalog")
    index_archive(archive, catalog_url=catalog, cluster=SYNC)
    overlaps_job(catalog, cluster=SYNC)
    combinations_job(catalog, cluster=SYNC)
    plan_job(catalog, params=PLAN, cluster=SYNC)
    yield catalog
    shutil.rmtree(os.path.dirname(catalog), ignore_errors=True)  # module data goes once the module is done (CI disk)


def _moment_chunks(fs, cube_path: str) -> list[str]:
    fs.invalidate_cache()
    try:
        return [p for p in fs.find(f"{cube_path}/builds") if "/view_moments/c/" in p]
    except FileNotFoundError:
        return []


def _pixels(url: str, version=None, storage_options=None) -> np.ndarray:
    return open_cube(url, version, storage_options=storage_options, decode=False)["reflectance"].values


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_kill_and_rerun_commits_the_same_version(planned_catalog, tmp_path, s3_bucket, fault_proxy):
    reference = str(tmp_path / "reference.zarr")
    ref = extract_cube(planned_catalog, reference, cluster=SYNC)
    assert ref.committed and ref.version == "v1" and ref.tasks >= 3 and ref.tasks_run == ref.tasks

    cube = f"s3://{s3_bucket}/cube.zarr"
    # a slow object store (every request delayed) so the run can be caught mid-way
    _proxy, slow = fault_proxy(fail_rate=1.0, kinds=("latency",), latency_s=0.15)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        [CLI, "-q", "extract", "--catalog", planned_catalog, "--cube", cube, "--cluster", "sync",
         "--storage-options", json.dumps(slow)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    fs, path = storage.filesystem(cube)
    try:
        deadline = time.monotonic() + 120
        while not _moment_chunks(fs, path):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no task finished"
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
    done_before = len(_moment_chunks(fs, path))
    assert 1 <= done_before < ref.tasks
    assert list_versions(cube) == []
    with pytest.raises(CubeNotCommittedError):  # readers see nothing of the killed run
        open_cube(cube)

    # the rerun finishes the same build: only the rest is extracted
    again = extract_cube(planned_catalog, cube, cluster=SYNC)
    assert again.committed and again.version == "v1" and again.build == ref.build
    assert again.resumed and again.tasks_done_before == done_before
    assert again.tasks_run == ref.tasks - done_before
    prefix = f"builds/{ref.build}/"
    ours = {k: v for k, v in cube_checksums(cube).items() if k.startswith(prefix) and "/index/" not in k}
    theirs = {k: v for k, v in cube_checksums(reference).items() if k.startswith(prefix) and "/index/" not in k}
    assert ours == theirs and len(ours) > ref.views
    np.testing.assert_array_equal(_pixels(cube), _pixels(reference))
    a, b = open_cube(cube), open_cube(reference)
    np.testing.assert_array_equal(a["band_mean"].values, b["band_mean"].values)
    np.testing.assert_array_equal(a["view_time"].values, b["view_time"].values)
    # the same plan again: nothing new, nothing committed
    same = extract_cube(planned_catalog, cube, cluster=SYNC)
    assert same.up_to_date and not same.committed and [v.id for v in list_versions(cube)] == ["v1"]


def test_two_builders_one_commits_the_other_names_the_conflict(planned_catalog, storage_root):
    cube = storage.join(storage_root.url, "cube.zarr")
    opts = storage_root.storage_options
    other: dict = {}

    def rival_commits_first() -> None:
        # a second builder on the same (empty) cube, another encoding, runs to the end meanwhile
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        res = subprocess.run([CLI, "-q", "extract", "--catalog", planned_catalog, "--cube", cube, "--cluster", "sync",
                              "--clevel", "1", "--json"], env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
        other.update(json.loads(res.stdout))

    with pytest.raises(VersionConflictError) as err:
        extract_cube(planned_catalog, cube, storage_options=opts, cluster=SYNC, before_commit=rival_commits_first)
    msg = str(err.value)
    assert "version v1 was committed by run " + other["run_id"] in msg and other["build"] in msg
    assert "another plan or other settings" in msg and err.value.version == "v1"
    versions = list_versions(cube, storage_options=opts)
    assert [(v.id, v.build, v.run_id) for v in versions] == [("v1", other["build"], other["run_id"])]
    assert verify_version(cube, storage_options=opts)["bad"] == []
    # the loser, rerun, builds on the winner's version
    after = extract_cube(planned_catalog, cube, storage_options=opts, cluster=SYNC)
    assert after.committed and after.version == "v2" and after.parent == "v1"


def test_polling_reader_never_sees_a_partial_version(planned_catalog, storage_root):
    cube = storage.join(storage_root.url, "cube.zarr")
    opts = storage_root.storage_options
    v1 = extract_cube(planned_catalog, cube, storage_options=opts, params=ExtractParams(bands=(1, 2, 3, 50, 224)), cluster=SYNC)
    expected = {"v1": _pixels(cube, "v1", opts)}
    seen: dict[str, int] = {}
    failures: list[str] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            try:
                ds = open_cube(cube, storage_options=opts, decode=False)
                vid = ds.attrs["spectralearth:version"]
                px = ds["reflectance"].values  # every chunk of what the reader sees
                assert px.shape[0] == ds.sizes["view"] and ds["band_mean"].notnull().all()
                if vid in expected:
                    assert np.array_equal(px, expected[vid])
                seen[vid] = seen.get(vid, 0) + 1
            except Exception as exc:  # noqa: BLE001
                failures.append(repr(exc))

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        v2 = extract_cube(planned_catalog, cube, storage_options=opts, cluster=SYNC)  # all 202 bands: rebuilt
    finally:
        deadline = time.monotonic() + 120
        while "v2" not in seen and not failures and time.monotonic() < deadline and reader.is_alive():
            time.sleep(0.1)  # the reader finds the new version at its next poll
        stop.set()
        reader.join(timeout=120)
    assert v1.version == "v1" and v2.version == "v2" and v2.reused_views == 0
    assert failures == [] and seen.get("v1", 0) >= 2 and seen.get("v2", 0) >= 1, (failures[:3], seen)
    assert open_cube(cube, storage_options=opts)["reflectance"].shape[1] == 202
    np.testing.assert_array_equal(_pixels(cube, "v1", opts), expected["v1"])  # the old version, still as it was


def test_empty_plan_is_an_error(planned_catalog, tmp_path):
    import pandas as pd

    from spectralearth.pipelines.plan import read_plan
    from spectralearth.platform import tables

    empty = tmp_path / "catalog"
    fs, _ = storage.filesystem(planned_catalog)
    fs.put(planned_catalog.rstrip("/") + "/", str(empty), recursive=True)
    patches, views = read_plan(planned_catalog)
    for name, frame in (("views.parquet", views.iloc[:0]), ("patches.parquet", patches.iloc[:0])):
        writer = tables.TableWriter(str(empty / name))
        writer.commit([writer.part(0, frame)])
    with pytest.raises(EmptyPlanError, match="has no views"):
        extract_cube(str(empty), str(tmp_path / "cube.zarr"), cluster=SYNC)
    assert not (tmp_path / "cube.zarr" / "versions").exists()
    kept = tables.read_table(str(empty / "views.parquet"))
    assert isinstance(kept, pd.DataFrame) and list(kept.columns) == list(views.columns)


# --------------------------------------------------------------------------- reading side: image layouts

LAYOUTS = [("tiled", "pixel"), ("tiled", "band"), ("cog", "pixel"), ("stripped", "pixel"), ("stripped", "band")]


class _CountingDataset:
    """A rasterio dataset that records every region ``read`` asks for."""

    def __init__(self, ds):
        self._ds, self.regions = ds, []

    def __getattr__(self, name):
        return getattr(self._ds, name)

    def read(self, *args, window=None, **kw):
        self.regions.append((int(window.row_off), int(window.col_off), int(window.height), int(window.width)))
        return self._ds.read(*args, window=window, **kw)


def _windows_of(height: int, width: int, px: int, rng) -> np.ndarray:
    """Windows that overlap each other, cross read bands and blocks, and touch the image's last row and column."""
    rows = sorted({0, 1, px - 1, px, height // 2, height - px - 1, height - px, *rng.integers(0, height - px + 1, 4).tolist()})
    cols = [0, width - px, int(rng.integers(0, width - px + 1)), px // 2]
    return np.array([[i, r, cols[i % len(cols)]] for i, r in enumerate(rows)] + [[len(rows), rows[-1], cols[0] + 3]])


@pytest.fixture(scope="module", params=LAYOUTS, ids=[f"{a}-{b}" for a, b in LAYOUTS])
def layout_catalog(request, tmp_path_factory):
    """A 2-tile archive of one image layout, indexed and planned (single tiles, geometry only)."""
    from spectralearth.catalog import index_archive
    from spectralearth.catalog.synth import SynthConfig, synthesize_archive
    from spectralearth.pipelines.plan import plan_job

    layout, interleave = request.param
    root = tmp_path_factory.mktemp(f"layout-{layout}-{interleave}")
    archive, catalog = str(root / "archive"), str(root / "catalog")
    synthesize_archive(archive, SynthConfig(tiles=2, tile_size=320, seed=6, zip_fraction=0.5, zip_deflate=False,
                                            layout=layout, interleave=interleave))
    sync = ClusterSpec(kind="sync")
    rep = index_archive(archive, catalog_url=catalog, cluster=sync)
    assert rep.indexed == 2 and rep.quarantined == 0, rep.quarantine
    plan_job(catalog, params=PlanParams(pixel_filters=False), cluster=sync)
    yield layout, interleave, catalog
    shutil.rmtree(root, ignore_errors=True)  # module data goes once the module is done (CI disk)


def test_layouts_are_read_correctly_each_block_once(layout_catalog):
    """Every layout: the image check sees its structure, kerchunk references and read_windows give its pixels,
    and read_windows reads no source pixel twice."""
    import xarray as xr
    from rasterio.windows import Window

    from spectralearth.catalog import read_item_dicts
    from spectralearth.catalog.enmap.image import open_image, read_windows
    from spectralearth.pipelines.plan import tile_source

    layout, interleave, catalog = layout_catalog
    items = read_item_dicts(catalog)
    assert {it["properties"]["enmap:delivery"] for it in items} == {"folder", "zip"}
    rng = np.random.default_rng(3)
    for it in items:
        src = tile_source(it)
        with open_image(src) as ds:
            tags = ds.tags(ns="IMAGE_STRUCTURE")
            assert tags.get("INTERLEAVE") == interleave.upper()
            assert bool(ds.profile.get("tiled")) == (layout != "stripped")
            if layout == "cog":
                assert tags.get("LAYOUT") == "COG" and ds.block_shapes[0] == (256, 256) and ds.overviews(1)
            if layout == "stripped":
                assert ds.block_shapes[0][1] == ds.width
            bands = (1, 2, 77, 131, 200, 224)
            windows = _windows_of(ds.height, ds.width, 64, rng)
            counting = _CountingDataset(ds)
            got = {v: d for v, _r, _c, d in read_windows(counting, windows, indexes=bands, patch_px=64, product=it["id"])}
            assert sorted(got) == sorted(windows[:, 0].tolist())
            for v, r, c in windows:
                np.testing.assert_array_equal(got[int(v)], ds.read(indexes=list(bands), window=Window(int(c), int(r), 64, 64)))
            # no pixel of the source is read twice
            seen = np.zeros((ds.height, ds.width), dtype=np.int32)
            for r, c, h, w in counting.regions:
                seen[r : r + h, c : c + w] += 1
            assert seen.max() == 1
            whole = ds.read(indexes=[1, 224])
        # kerchunk references reproduce the pixels (ZIP members referenced in place)
        refs = json.loads(storage.read_bytes(it["assets"]["references"]["href"]))
        xa = xr.open_dataset(refs, engine="kerchunk", mask_and_scale=False)["reflectance"].transpose("band", "y", "x")
        np.testing.assert_array_equal(xa.isel(band=[0, 223]).values, whole)
        assert it["assets"]["spectral_image"]["href"] == src.file("SPECTRAL_IMAGE.TIF")


def test_layouts_extract_pixel_equal(layout_catalog, tmp_path):
    """The cube of every layout holds exactly the source windows."""
    from rasterio.windows import Window

    from spectralearth.catalog import read_item_dicts
    from spectralearth.catalog.enmap.image import open_image
    from spectralearth.pipelines.plan import read_plan, tile_source

    _layout, _interleave, catalog = layout_catalog
    cube = str(tmp_path / "cube.zarr")
    bands = (1, 2, 3, 100, 224)
    rep = extract_cube(catalog, cube, params=ExtractParams(bands=bands, views_per_task=3), cluster=ClusterSpec(kind="sync"))
    _, views = read_plan(catalog)
    assert rep.views == len(views) >= 2
    refl = _pixels(cube)
    items = read_item_dicts(catalog)
    for tile, g in views.groupby("tile"):
        with open_image(tile_source(items[int(tile)])) as ds:
            for v in g.itertuples():
                want = ds.read(indexes=list(bands), window=Window(int(v.col0), int(v.row0), 128, 128))
                np.testing.assert_array_equal(refl[int(v.view)], want)


def test_read_windows_names_bad_windows_and_bands(layout_catalog):
    from spectralearth.catalog import read_item_dicts
    from spectralearth.catalog.enmap.image import open_image, read_windows
    from spectralearth.catalog.errors import ImageError
    from spectralearth.pipelines.plan import tile_source

    _layout, _interleave, catalog = layout_catalog
    it = read_item_dicts(catalog)[0]
    with open_image(tile_source(it)) as ds:
        with pytest.raises(ImageError, match=rf"{it['id']}.*window at row {ds.height - 10}, col 0"):
            list(read_windows(ds, [[0, ds.height - 10, 0]], indexes=[1], patch_px=64, product=it["id"]))
        with pytest.raises(ImageError, match=r"bands.*225"):
            list(read_windows(ds, [[0, 0, 0]], indexes=[1, 225], patch_px=64, product=it["id"]))
        assert list(read_windows(ds, np.zeros((0, 3)), indexes=[1], patch_px=64)) == []
