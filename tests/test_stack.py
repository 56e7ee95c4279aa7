"""The local stack end to end, through the command line as a user runs it.

stack up -> status -> `eval "$(spectralearth stack env)"` in bash -> jobs on a
dask-gateway cluster writing to the stack's S3 -> the outputs are there and hold
no secret -> stack down -> no process of the stack is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from spectralearth.platform.stack import LocalStack, stack_processes

SPECTRALEARTH = str(Path(sys.executable).parent / "spectralearth")
CLI = [SPECTRALEARTH]
_FOREIGN = ("AWS_", "DASK_GATEWAY", "SPECTRALEARTH_S3_ENDPOINT", "SPECTRALEARTH_STACK")


def _clean_env() -> dict[str, str]:
    """This process's environment without any S3 or gateway settings (the stack must supply them)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN)}


def _cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*CLI, *args], env=_clean_env(), capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, f"{args}: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def _bash(script: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=_clean_env(), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f"rc={proc.returncode}\nSTDOUT:\n{proc.stdout}\nSTDERR:\n{proc.stderr}"
    return proc


def _stack_pids(data_dir: Path) -> set[int]:
    """Every live process that looks like part of the stack in ``data_dir``."""
    pids = {p.pid for p in stack_processes(data_dir)}
    for p in psutil.process_iter(["cmdline", "cwd"]):
        try:
            text = " ".join(p.info["cmdline"] or []) + " " + (p.info["cwd"] or "")
            if str(data_dir) in text and p.status() != psutil.STATUS_ZOMBIE:
                pids.add(p.pid)
        except psutil.Error:
            continue
    pids.discard(os.getpid())
    return pids


# Seed 4, 10 tiles of 224 px: overlapping tiles with 2- and 3-tile combinations and a multi-date patch.
SYNTH_TILES, SYNTH_SIZE, SYNTH_SEED = 10, 224, 4
FILTERS = "--max-cloud 0.6 --max-cloud-shadow 0.6 --max-snow 1.0"


@contextlib.contextmanager
def _stack_environment(stack_dir: Path):
    """This process's environment pointed at the stack (as `eval "$(spectralearth stack env)"` does)."""
    env = LocalStack(stack_dir).environment()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _cube_contents(cube_url: str) -> dict:
    """Every view of the cube as streamed by PatchStream, with the cube's index arrays (opened with xarray)."""
    import numpy as np

    from spectralearth.platform.stream import PatchStream

    samples = list(PatchStream(cube_url, every_view=True, shuffle=False))
    views = {int(x["view"]): (int(x["patch"]), x["image"].numpy().tobytes()) for x in samples}
    from spectralearth.platform.cube import open_cube

    ds = open_cube(cube_url, decode=False)
    assert ds["reflectance"].shape[0] == len(views) and ds["reflectance"].dtype == np.int16
    first = ds["reflectance"].isel(view=0).values  # the stream and plain xarray agree
    assert first.tobytes() == views[0][1]
    index = {k: ds[k].values.tolist() for k in ("view_patch", "view_tile", "patch_x0", "patch_y0", "patch_crs")}
    return {"n_views": len(views), "views": views, "index": index}


def _worker_processes(stack_dir: Path) -> list[psutil.Process]:
    """The gateway's `dask worker` processes (nannies) of the stack."""
    found = []
    for p in stack_processes(stack_dir, include_services=False):
        try:
            if "worker" in " ".join(p.cmdline()):
                found.append(p)
        except psutil.Error:
            continue
    return found


def _build_killing_a_worker(stack_dir: Path, out_url: str) -> bool:
    """Run `build` on the gateway, SIGKILL one worker (nanny and its worker process) once
    extraction has started, rerun if the build failed; return whether a worker was killed."""
    from spectralearth.platform.storage import exists

    cmd = [SPECTRALEARTH, "-q", "build", f"{os.environ['SPECTRALEARTH_STACK_BUCKET']}/archive", "--out", out_url,
           *FILTERS.split(), "--cluster", "gateway", "--workers", "2"]
    env = {**_clean_env(), **LocalStack(stack_dir).environment()}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = False
    lease = f"{out_url}/cube.zarr/builds"  # extraction has started writing its build
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline and not killed:
        if exists(lease):
            workers = _worker_processes(stack_dir)
            if workers:
                victim = workers[0]
                family = [victim, *victim.children(recursive=True)]
                for p in family:
                    with contextlib.suppress(psutil.Error):
                        p.kill()
                killed = True
        time.sleep(0.1)
    out, err = proc.communicate(timeout=300)
    print(f"build with a killed worker: rc={proc.returncode}, killed={killed}")
    if proc.returncode != 0:  # the interrupted run failed: the rerun resumes and completes
        rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, f"rerun failed:\n{rerun.stdout}\n{rerun.stderr}\nfirst run:\n{err}"
    return killed


@pytest.fixture
def stack_dir(tmp_path):
    d = tmp_path / "stack"
    yield d
    if (d / "state.json").exists():  # a failed test must not leave servers behind
        LocalStack(d).down()


def test_stack_end_to_end(stack_dir, tmp_path):
    d = str(stack_dir)
    up = _cli("stack", "up", "--data-dir", d)
    assert "stack started" in up.stdout
    assert "already running" in _cli("stack", "up", "--data-dir", d).stdout

    status = json.loads(_cli("stack", "status", "--data-dir", d, "--json").stdout)
    assert status["running"] is True
    assert set(status["services"]) == {"seaweed", "gateway"}
    assert all(s["alive"] and s["healthy"] for s in status["services"].values())
    for s in status["services"].values():
        assert s["endpoint"].startswith("http://127.0.0.1:")
    assert status["services"]["gateway"]["proxy_address"].startswith("gateway://127.0.0.1:")
    creds_path = stack_dir / "credentials.json"
    assert stat.S_IMODE(creds_path.stat().st_mode) == 0o600
    creds = json.loads(creds_path.read_text())
    secrets = [creds["s3_secret_key"], creds["gateway_password"]]
    for text in (up.stdout, up.stderr, json.dumps(status)):
        assert not any(s in text for s in secrets), "`stack up/status` printed a secret"

    # Servers listen on loopback only.
    pids = {s["pid"] for s in status["services"].values()}
    for pid in pids:
        for conn in psutil.Process(pid).net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN:
                assert conn.laddr.ip in ("127.0.0.1", "::1"), f"pid {pid} listens on {conn.laddr}"

    # A shell configured by `stack env` reaches S3 and the gateway; the jobs run on 2 gateway workers.
    t0 = time.monotonic()
    jobs = _bash(f"""
        eval "$(spectralearth stack env --data-dir {d})"
        test -n "$DASK_GATEWAY__AUTH__KWARGS__PASSWORD"
        B="$SPECTRALEARTH_STACK_BUCKET"
        spectralearth -q synth "$B/archive" --tiles {SYNTH_TILES} --tile-size {SYNTH_SIZE} --seed {SYNTH_SEED}
        spectralearth -q index "$B/archive" --catalog "$B/out/catalog" --cluster gateway --workers 2 --json
        spectralearth -q build "$B/archive" --out "$B/out" {FILTERS} --cluster gateway --workers 2
    """.replace("spectralearth ", f"{SPECTRALEARTH} "))
    print(f"synth + index + build: {time.monotonic() - t0:.1f} s")
    report = json.loads(jobs.stdout[jobs.stdout.index("{"): jobs.stdout.index("\n}") + 2])
    assert report["indexed"] == SYNTH_TILES and report["tiles_total"] == SYNTH_TILES and report["quarantined"] == 0
    assert "built" in jobs.stdout

    with _stack_environment(stack_dir) as env:
        from spectralearth.catalog import read_tiles
        from spectralearth.platform.storage import filesystem

        bucket = env["SPECTRALEARTH_STACK_BUCKET"]
        tiles = read_tiles(f"{bucket}/out/catalog")
        assert len(tiles) == SYNTH_TILES and tiles["id"].is_unique
        reference = _cube_contents(f"{bucket}/out/cube.zarr")
        assert reference["n_views"] > 0

        # A second build whose worker is killed during extraction completes (after a rerun
        # if it failed) with the same cube.
        fs, root = filesystem(bucket)
        fs.copy(f"{root}/out/catalog", f"{root}/out2/catalog", recursive=True)  # indexing is not what is tested here
        t0 = time.monotonic()
        killed = _build_killing_a_worker(stack_dir, f"{bucket}/out2")
        print(f"interrupted build + rerun: {time.monotonic() - t0:.1f} s")
        assert killed, "no gateway worker was running during extraction"
        assert _cube_contents(f"{bucket}/out2/cube.zarr") == reference

        # No secret in any output object, in the jobs' output, or in the stack's logs.
        outputs = [p for p in fs.find(root) if "/archive/" not in p]
        assert any(p.endswith("tiles.parquet") for p in outputs) and any("cube.zarr" in p for p in outputs)
        for path in outputs:
            blob = fs.cat_file(path)
            assert not any(s.encode() in blob for s in secrets), f"secret found in s3://{path}"
    assert not any(s in jobs.stdout + jobs.stderr for s in secrets), "a job printed a secret"
    for path in stack_dir.rglob("*"):
        if path.is_file() and path.name.endswith(".log"):
            text = path.read_text(errors="replace")
            assert not any(s in text for s in secrets), f"secret found in {path}"
    assert creds["gateway_password"] not in (stack_dir / "gateway" / "dask_gateway_config.py").read_text()
    assert stat.S_IMODE((stack_dir / "gateway" / "password").stat().st_mode) == 0o600

    # down stops everything, the gateway's schedulers and workers included.
    before = _stack_pids(stack_dir)
    assert pids <= before
    down = _cli("stack", "down", "--data-dir", d)
    assert "gateway" in down.stdout and "seaweed" in down.stdout
    assert not (stack_dir / "state.json").exists()
    for pid in before:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, f"pid {pid} survived"
    assert _stack_pids(stack_dir) == set()
    stopped = _cli("stack", "status", "--data-dir", d, check=False)
    assert stopped.returncode == 1 and "not running" in stopped.stdout
    assert "nothing was running" in _cli("stack", "down", "--data-dir", d).stdout


def test_env_without_a_running_stack_fails_clearly(tmp_path):
    proc = _cli("stack", "env", "--data-dir", str(tmp_path / "none"), check=False)
    assert proc.returncode == 1
    assert "not running" in proc.stderr and "stack up" in proc.stderr
    assert proc.stdout == ""


def test_down_never_signals_a_recycled_pid(tmp_path):
    """A recorded pid whose start time does not match is someone else's process: left alone."""
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        d = tmp_path / "stack"
        d.mkdir()
        created = psutil.Process(bystander.pid).create_time()
        state = {
            "version": 1,
            "s3": {"endpoint_url": "http://127.0.0.1:9", "bucket": "spectralearth"},
            "gateway": {"address": "http://127.0.0.1:9", "proxy_address": "gateway://127.0.0.1:9"},
            "processes": [
                {"name": "seaweed", "pid": bystander.pid, "create_time": created - 100.0},
                {"name": "gateway", "pid": bystander.pid, "create_time": created + 100.0},
            ],
        }
        (d / "state.json").write_text(json.dumps(state))
        status = LocalStack(d).status()
        assert status["running"] is False and not any(s["alive"] for s in status["services"].values())
        assert LocalStack(d).down() == []
        time.sleep(0.2)
        assert bystander.poll() is None, "down() signalled a process it did not start"
    finally:
        bystander.kill()
        bystander.wait()
