"""Extraction: resume after SIGKILL gives the same bytes; a concurrent run is refused; commit rules."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from spectralearth.pipelines.extract import (
    CubeExistsError,
    ExtractParams,
    LeaseHeldError,
    PlanMismatchError,
    extract_cube,
)
from spectralearth.pipelines.plan import PlanParams
from spectralearth.platform import storage
from spectralearth.platform.cluster import ClusterSpec
from spectralearth.platform.cube import CubeNotCommittedError, cube_checksums, open_cube

PLAN = PlanParams(max_cloud=0.6, max_cloud_shadow=0.6, max_snow=1.0)
CLI = os.path.join(os.path.dirname(sys.executable), "spectralearth")


@pytest.fixture(scope="module")
def planned_catalog(tmp_path_factory, pixel_archive) -> str:
    """A local catalog with overlaps, combinations and the patch plan of the shared archive."""
    from spectralearth.catalog import index_archive
    from spectralearth.pipelines.combinations import combinations_job
    from spectralearth.pipelines.overlaps import overlaps_job
    from spectralearth.pipelines.plan import plan_job

    archive = pixel_archive
    catalog = str(tmp_path_factory.mktemp("extract") / "catalog")
    sync = ClusterSpec(kind="sync")
    index_archive(archive, catalog_url=catalog, cluster=sync)
    overlaps_job(catalog, cluster=sync)
    combinations_job(catalog, cluster=sync)
    plan_job(catalog, params=PLAN, cluster=sync)
    return catalog


def _without_root(sums: dict[str, str]) -> dict[str, str]:
    # the root group metadata holds the run id and creation time; everything else must match
    return {k: v for k, v in sums.items() if k != "zarr.json"}


def _markers(fs, cube_path: str) -> list[str]:
    fs.invalidate_cache()
    prog = f"{cube_path}/_progress"
    try:
        return [p for p in fs.ls(prog, detail=False) if p.rsplit("/", 1)[-1].startswith("tile-")]
    except FileNotFoundError:
        return []


def test_kill_and_resume_is_identical_and_concurrent_run_refused(planned_catalog, tmp_path, s3_bucket, fault_proxy):
    reference = str(tmp_path / "reference.zarr")
    ref = extract_cube(planned_catalog, reference, cluster=ClusterSpec(kind="sync"))
    assert ref.tasks >= 3 and ref.tasks_run == ref.tasks

    cube = f"s3://{s3_bucket}/cube.zarr"
    # a slow object store (every request delayed) so the run can be caught mid-way
    _proxy, slow = fault_proxy(fail_rate=1.0, kinds=("latency",), latency_s=0.15)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        [CLI, "-q", "extract", "--catalog", planned_catalog, "--cube", cube, "--cluster", "sync",
         "--heartbeat", "0.5", "--lease-timeout", "60", "--storage-options", json.dumps(slow)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    fs, path = storage.filesystem(cube)
    try:
        deadline = time.monotonic() + 120
        while not _markers(fs, path):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no progress marker appeared"
            time.sleep(0.02)
        # a second run while the first is alive: a clear error naming the holder
        with pytest.raises(LeaseHeldError, match="being written by run"):
            extract_cube(planned_catalog, cube, cluster=ClusterSpec(kind="sync"))
        assert proc.poll() is None, "the first run finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
    done_before = len(_markers(fs, path))
    assert 1 <= done_before < ref.tasks
    with pytest.raises(CubeNotCommittedError):  # readers see nothing of the killed run
        open_cube(cube)

    # the rerun takes over the dead run's lease (its process is gone), redoes only the rest
    again = extract_cube(planned_catalog, cube, cluster=ClusterSpec(kind="local", n_workers=2))
    assert again.resumed and again.tasks_done_before == done_before
    assert again.tasks_run == ref.tasks - done_before
    assert _without_root(cube_checksums(cube)) == _without_root(cube_checksums(reference))
    np.testing.assert_array_equal(open_cube(cube)["band_mean"][:], open_cube(reference)["band_mean"][:])


def test_commit_rules(planned_catalog, tmp_path):
    cube = str(tmp_path / "cube.zarr")
    params = ExtractParams(bands=(1, 2, 3, 50, 224))
    partial = extract_cube(planned_catalog, cube, params=params, cluster=ClusterSpec(kind="sync"), max_tasks=1)
    assert partial.tasks_run == 1 and not (tmp_path / "cube.zarr" / "zarr.json").exists()
    # another band selection is another cube: refused while the unfinished one is there
    with pytest.raises(PlanMismatchError):
        extract_cube(planned_catalog, cube, cluster=ClusterSpec(kind="sync"))
    done = extract_cube(planned_catalog, cube, params=params, cluster=ClusterSpec(kind="sync"))
    assert done.tasks_done_before == 1 and open_cube(cube)["reflectance"].shape[1] == 5
    with pytest.raises(CubeExistsError):
        extract_cube(planned_catalog, cube, params=params, cluster=ClusterSpec(kind="sync"))
    redo = extract_cube(planned_catalog, cube, cluster=ClusterSpec(kind="sync"), overwrite=True)
    assert not redo.resumed and open_cube(cube)["reflectance"].shape[1] == 202
    assert not (tmp_path / "cube.zarr" / "_progress" / "lease.json").exists()


def test_stale_lease_is_taken_over_and_live_lease_is_not(planned_catalog, tmp_path):
    import socket

    cube = tmp_path / "cube.zarr"
    lease = cube / "_progress" / "lease.json"
    lease.parent.mkdir(parents=True)
    # alive: this very process, fresh heartbeat
    lease.write_text(json.dumps({"run_id": "other", "host": socket.gethostname(), "pid": os.getpid(), "heartbeat": time.time()}))
    with pytest.raises(LeaseHeldError):
        extract_cube(planned_catalog, str(cube), cluster=ClusterSpec(kind="sync"))
    # another host whose heartbeat stopped long ago: dead
    lease.write_text(json.dumps({"run_id": "other", "host": "elsewhere", "pid": 1, "heartbeat": time.time() - 3600}))
    report = extract_cube(planned_catalog, str(cube), cluster=ClusterSpec(kind="sync"))
    assert report.tasks_run == report.tasks and not lease.exists()


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
    synthesize_archive(archive, SynthConfig(tiles=2, tile_size=224, seed=6, zip_fraction=0.5, zip_deflate=False,
                                            layout=layout, interleave=interleave))
    sync = ClusterSpec(kind="sync")
    rep = index_archive(archive, catalog_url=catalog, cluster=sync)
    assert rep.indexed == 2 and rep.quarantined == 0, rep.quarantine
    plan_job(catalog, params=PlanParams(pixel_filters=False), cluster=sync)
    return layout, interleave, catalog


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
    refl = open_cube(cube)["reflectance"]
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
