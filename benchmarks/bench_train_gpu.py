"""GPU training benchmark: samples/s and data-wait share of ViT-S/MoCo and ViT-S/MAE at batch 64, streamed from S3.

Needs a CUDA GPU; without one it exits with status 2 and says so (a CPU figure is
never reported in its place). It starts a SeaweedFS S3 server on this machine,
writes a synthetic 202-band cube of 128 px patches to it, and runs the real
training loop (:func:`spectralearth.training.loop.train`, bfloat16 autocast, the
stream's DataLoader workers reading over HTTP S3) for each objective. The first
``--warmup`` steps (CUDA/cuDNN autotuning, worker start) are left out; the
figures are the median and the 10th/90th percentiles of the steps after them.
Writes ``benchmarks/results/train_gpu.json``.

    python benchmarks/bench_train_gpu.py [--patches 192] [--steps 80] [--workers 8]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _require_gpu() -> None:
    if not torch.cuda.is_available():
        print("bench_train_gpu: no CUDA GPU visible to torch "
              f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); "
              "this benchmark measures GPU training and does not report CPU figures", file=sys.stderr)
        raise SystemExit(2)


def _summary(metrics: list[dict], warmup: int) -> dict:
    rows = [m for m in metrics if m["step"] > warmup]
    if not rows:
        raise SystemExit(f"bench_train_gpu: no steps after the {warmup} warm-up steps; raise --steps")
    rate = np.array([m["samples_per_s"] for m in rows])
    wait = np.array([m["data_wait_fraction"] for m in rows])
    return {
        "steps_measured": len(rows),
        "samples_per_s_median": float(np.median(rate)),
        "samples_per_s_p10_p90": [float(np.percentile(rate, 10)), float(np.percentile(rate, 90))],
        "data_wait_pct_median": float(100 * np.median(wait)),
        "data_wait_pct_p10_p90": [float(100 * np.percentile(wait, 10)), float(100 * np.percentile(wait, 90))],
        "loss_first_last": [metrics[0]["loss"], metrics[-1]["loss"]],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patches", type=int, default=192, help="places in the synthetic cube (128 px, 202 bands)")
    parser.add_argument("--steps", type=int, default=80, help="training steps per objective")
    parser.add_argument("--warmup", type=int, default=10, help="first steps left out of the figures")
    parser.add_argument("--batch-size", type=int, default=64, help="samples per step")
    parser.add_argument("--workers", type=int, default=min(8, max(1, (os.cpu_count() or 2) - 2)),
                        help="DataLoader worker processes")
    parser.add_argument("--objectives", default="moco,mae", help="comma-separated objectives (ViT-S each)")
    args = parser.parse_args(argv)
    _require_gpu()

    from _util import write_result

    from spectralearth.platform.samplecube import SampleCube, write_sample_cube
    from spectralearth.platform.seaweed import SeaweedServer
    from spectralearth.training.loop import TrainConfig, train

    secret = secrets.token_hex(16)
    results: dict = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "batch_size": args.batch_size,
                     "workers": args.workers, "patches": args.patches, "steps": args.steps, "warmup": args.warmup,
                     "runs": {}}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp, \
            SeaweedServer(Path(tmp) / "s3", access_key="bench", secret_key=secret, volume_size_limit_mb=1024,
                          die_with_parent=True) as s3:
        os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": secret,
                           "AWS_DEFAULT_REGION": "us-east-1", "SPECTRALEARTH_S3_ENDPOINT": s3.endpoint_url})
        s3.create_bucket("bench")
        cube = "s3://bench/cube"
        t0 = time.perf_counter()
        write_sample_cube(cube, SampleCube(n_patches=args.patches, patch_px=128, multi_date_fraction=0.5, seed=1))
        results["cube_write_s"] = time.perf_counter() - t0
        for ssl in args.objectives.split(","):
            out = Path(tmp) / f"run-{ssl}"
            summary = train(TrainConfig(cube=cube, ssl=ssl, backbone="vit_s", out=str(out), steps=args.steps,
                                        batch_size=args.batch_size, workers=args.workers, device="cuda",
                                        checkpoint_every=10**9, progress=False))
            metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
            results["runs"][f"vit_s/{ssl}"] = {**_summary(metrics, args.warmup), "wall_s": summary["wall_s"],
                                               "max_memory_gb": torch.cuda.max_memory_allocated() / 2**30}
            torch.cuda.reset_peak_memory_stats()
            print(f"vit_s/{ssl}: {json.dumps(results['runs'][f'vit_s/{ssl}'])}")
    path = write_result("train_gpu", results)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
