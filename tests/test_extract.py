"""Extraction into versions: SIGKILL and rerun commit the same version; concurrent builders; readers."""

from __future__ import annotations

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
    return catalog


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

    empty = tmp_path / "catalog"
    fs, _ = storage.filesystem(planned_catalog)
    fs.put(planned_catalog.rstrip("/") + "/", str(empty), recursive=True)
    patches, views = read_plan(planned_catalog)
    views.iloc[:0].to_parquet(empty / "views.parquet")
    patches.iloc[:0].to_parquet(empty / "patches.parquet")
    with pytest.raises(EmptyPlanError, match="has no views"):
        extract_cube(str(empty), str(tmp_path / "cube.zarr"), cluster=SYNC)
    assert not (tmp_path / "cube.zarr" / "versions").exists()
    assert isinstance(pd.read_parquet(empty / "views.parquet"), pd.DataFrame)
