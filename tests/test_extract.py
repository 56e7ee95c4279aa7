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
