"""`spectralearth train` end to end from a cube on SeaweedFS S3: tiny runs whose loss falls, kill and
resume, encoder export, 2-rank gloo DDP. Every run is a real CLI process; models and batches are tiny
and each process uses one thread, so the whole file stays within a few minutes on two cores.
"""

from __future__ import annotations

import shutil

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from spectralearth.platform.cube import open_cube
from spectralearth.platform.samplecube import SampleCube, write_sample_cube
from spectralearth.platform.stream import PatchStream
from spectralearth.training import load_encoder
from spectralearth.training.backbones import BACKBONES, build_backbone
from spectralearth.training.ssl import OBJECTIVES, build_objective

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
# 96 places of 32 px (60 % multi-date, up to 3 dates): >= 150 views, 202 bands
CUBE = SampleCube(n_patches=96, patch_px=32, multi_date_fraction=0.6, max_views=3, seed=3)
BATCH = 8
CROP = 16
TINY = {
    "moco": ("resnet50", {"depths": [1, 1], "widths": [8, 16]}, {"hidden": 64, "dim": 32, "queue": BATCH}, 3e-3),
    "dino": ("vit_s", {"depth": 1, "embed_dim": 48, "num_heads": 3},
             {"hidden": 64, "bottleneck": 32, "out_dim": 128, "local_crops": 2}, 1e-3),
    "mae": ("vit_s", {"depth": 1, "embed_dim": 48, "num_heads": 3}, {"decoder_dim": 64, "decoder_heads": 4}, 1e-3),
}
LOSS_STEPS = 40
MARGIN = 0.10
"""A run's loss falls when the mean of its last 10 steps is at least 10 % below that of its first 10."""


@pytest.fixture(scope="module")
def s3_cube(s3_server) -> str:
    bucket = s3_server.create_bucket(f"train-{uuid.uuid4().hex[:12]}")
    url = f"s3://{bucket}/cube"
    write_sample_cube(url, CUBE)
    assert open_cube(url)["reflectance"].shape[0] >= 150
    yield url
    s3_server.delete_bucket(bucket)


def _env() -> dict:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


SPECTRALEARTH = str(Path(sys.executable).parent / "spectralearth")


def _cli() -> list[str]:
    return [SPECTRALEARTH, "-q"]


def _args(cube: str, ssl: str, out: Path, *, steps: int, workers: int = 0, extra: tuple = ()) -> list[str]:
    backbone, bargs, sargs, lr = TINY[ssl]
    return ["train", cube, "--ssl", ssl, "--backbone", backbone, "--steps", str(steps), "--batch-size", str(BATCH),
            "--crop", str(CROP), "--lr", str(lr), "--workers", str(workers), "--backbone-args", json.dumps(bargs),
            "--ssl-args", json.dumps(sargs), "--out", str(out), *extra]


def _train(args: list[str], *, timeout: float = 400) -> subprocess.CompletedProcess:
    proc = subprocess.run(_cli() + args, capture_output=True, text=True, env=_env(), cwd=REPO, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _start(args: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen(_cli() + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                            cwd=REPO, **kw)


def _finish(proc: subprocess.Popen, *, timeout: float = 600) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def loss_runs(s3_cube, tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """The three tiny runs, started together (each is single-threaded; two cores share them)."""
    root = tmp_path_factory.mktemp("loss-runs")
    procs = {ssl: _start(_args(s3_cube, ssl, root / ssl, steps=LOSS_STEPS)) for ssl in TINY}
    runs = {}
    for ssl, proc in procs.items():
        rc, out, err = _finish(proc)
        assert rc == 0, f"{ssl}: {out[-3000:]}{err[-3000:]}"
        runs[ssl] = (root / ssl, out + err)
    yield runs
    shutil.rmtree(root, ignore_errors=True)  # module data goes once the module is done (CI disk)


@pytest.mark.parametrize("ssl", ["moco", "dino", "mae"])
def test_tiny_run_loss_falls_and_encoder_exports(loss_runs, s3_cube, ssl, test_secret):
    out, output = loss_runs[ssl]
    metrics = _jsonl(out / "metrics.jsonl")
    assert [m["step"] for m in metrics] == list(range(1, LOSS_STEPS + 1))
    for m in metrics:
        assert set(m) >= {"step", "loss", "samples_per_s", "data_wait_fraction"}
        assert m["samples_per_s"] > 0 and 0 <= m["data_wait_fraction"] <= 1 and np.isfinite(m["loss"])
    losses = np.array([m["loss"] for m in metrics])
    first, last = losses[:10].mean(), losses[-10:].mean()
    assert last < (1 - MARGIN) * first, f"{ssl}: loss did not fall by {MARGIN:.0%}: first 10 {first:.4f}, last 10 {last:.4f}"
    assert metrics[-1]["epoch"] >= 2  # several epochs of the 96-place cube

    # the exported encoder is the final checkpoint's encoder: same outputs to the bit
    encoder = load_encoder(out / "encoder")
    config = json.loads((out / "encoder" / "encoder.json").read_text())
    assert config["ssl"] == ssl and len(config["bands"]) == 202 and len(config["band_mean"]) == 202
    assert test_secret not in (out / "encoder" / "encoder.json").read_text() + output
    backbone, bargs, sargs, _ = TINY[ssl]
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ckpt["step"] == LOSS_STEPS
    objective = build_objective(ssl, build_backbone(backbone, 202, **bargs), crop=CROP, **sargs)
    objective.load_state_dict(ckpt["objective"])
    reference = objective.encoder.eval()
    stream = PatchStream(s3_cube, batch_size=4, shuffle=False)
    x = stream.normalizer()(next(iter(stream))["image"])
    with torch.no_grad():
        assert torch.equal(encoder(x), reference(x))
        assert encoder(x).shape[:2] == (4, encoder.out_channels)


def test_kill_and_resume_continues_the_same_sample_sequence(s3_cube, tmp_path):
    steps, every = 14, 4  # 12 batches per epoch: the run crosses into a second epoch
    extra = ("--trace-samples", "--checkpoint-every", str(every))
    ref = tmp_path / "reference"
    reference_proc = _start(_args(s3_cube, "mae", ref, steps=steps, workers=1, extra=extra))

    run = tmp_path / "killed"
    args = _args(s3_cube, "mae", run, steps=steps, workers=1, extra=extra)
    proc = _start(args)
    trace = run / "samples.rank0.jsonl"
    deadline = time.monotonic() + 400
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if trace.exists() and len(_jsonl(trace)) >= every + 2:  # step `every` is checkpointed
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    saved = torch.load(run / "checkpoint.pt", weights_only=False)["step"]
    assert saved % every == 0 and every <= saved < steps
    assert not (run / "encoder").exists()

    _train(args)
    rc, out, err = _finish(reference_proc)
    assert rc == 0, out[-3000:] + err[-3000:]
    reference = _jsonl(ref / "samples.rank0.jsonl")
    assert [r["step"] for r in reference] == list(range(1, steps + 1))
    assert len({r["epoch"] for r in reference}) >= 2  # the run crosses an epoch boundary
    resumed = _jsonl(trace)
    assert [r["step"] for r in resumed] == list(range(1, steps + 1))
    assert [(r["epoch"], r["position"], r["view"]) for r in resumed] == \
        [(r["epoch"], r["position"], r["view"]) for r in reference]
    # the same views, augmentations and masks: the resumed losses are the uninterrupted run's
    ref_loss = [m["loss"] for m in _jsonl(ref / "metrics.jsonl")]
    run_loss = [m["loss"] for m in _jsonl(run / "metrics.jsonl")]
    assert [m["step"] for m in _jsonl(run / "metrics.jsonl")] == list(range(1, steps + 1))
    np.testing.assert_allclose(run_loss, ref_loss, rtol=1e-4)

    # a run with other settings refuses the checkpoint, naming the difference
    other = list(args)
    other[other.index("--batch-size") + 1] = "4"
    rc, out, _ = _finish(_start(other), timeout=300)
    assert rc == 1 and "batch_size=8" in out and "batch_size=4" in out, out


def test_two_rank_gloo_ddp_ranks_see_disjoint_samples(s3_cube, tmp_path):
    out = tmp_path / "ddp"
    steps = 8
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           SPECTRALEARTH, "-q", *_args(s3_cube, "moco", out, steps=steps,
                                                            extra=("--trace-samples",))]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=REPO, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [_jsonl(out / f"samples.rank{r}.jsonl") for r in range(2)]
    assert all([t["step"] for t in trace] == list(range(1, steps + 1)) for trace in ranks)
    per_epoch: dict[int, list[set]] = {}
    for r, trace in enumerate(ranks):
        for t in trace:
            per_epoch.setdefault(t["epoch"], [set(), set()])[r].update(t["position"])
    for epoch, (a, b) in per_epoch.items():
        assert a and b and not a & b, f"epoch {epoch}: ranks share positions {sorted(a & b)[:5]}"
        assert all(p % 2 == 0 for p in a) and all(p % 2 == 1 for p in b)  # rank r reads every 2nd position
    # pair mode: each patch at most once per epoch across both ranks
    group = open_cube(s3_cube)
    view_patch = group["view_patch"][:]
    for epoch in per_epoch:
        patches = [int(view_patch[v[0]]) for trace in ranks for t in trace if t["epoch"] == epoch for v in t["view"]]
        assert len(patches) == len(set(patches))
    metrics = _jsonl(out / "metrics.jsonl")
    assert [m["step"] for m in metrics] == list(range(1, steps + 1))
    assert load_encoder(out / "encoder").out_channels == 64


def test_bad_settings_fail_with_a_clear_error(s3_cube, tmp_path):
    cases = {
        "MAE needs a ViT backbone": ["--ssl", "mae", "--backbone", "resnet50", "--batch-size", "4", "--crop", "16"],
        "fewer than one batch of 4096": ["--ssl", "moco", "--backbone", "adapter", "--batch-size", "4096"],
    }
    procs = {msg: _start(["train", s3_cube, "--steps", "2", "--out", str(tmp_path / str(i)), *extra])
             for i, (msg, extra) in enumerate(cases.items())}
    for msg, proc in procs.items():
        rc, out, err = _finish(proc, timeout=300)
        assert rc == 1 and msg in out, out + err


def test_cli_choices_match_the_registries():
    from spectralearth.platform.cli.train import BACKBONE_NAMES, OBJECTIVE_NAMES

    assert set(OBJECTIVE_NAMES) == set(OBJECTIVES) and tuple(BACKBONE_NAMES) == tuple(BACKBONES)


def test_gpu_benchmark_refuses_to_run_without_a_gpu():
    env = {**_env(), "CUDA_VISIBLE_DEVICES": ""}  # hides a GPU where there is one
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_train_gpu.py")], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=120)
    assert proc.returncode == 2 and "no CUDA GPU" in proc.stderr, proc.stderr
