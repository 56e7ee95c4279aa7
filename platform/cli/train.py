"""``spectralearth train``: self-supervised pretraining streamed from a cube."""

from __future__ import annotations

import argparse
import json

from . import _common

DESCRIPTION = """\
Pretrain a spectral-adapter backbone with MoCo-v2 (temporal positives from the
cube's multi-date patches), DINO or MAE (ViTs), streaming the cube from where it
is stored. Mixed precision (bfloat16) on a GPU; DDP under torchrun (NCCL on GPUs,
gloo on CPU), each rank streaming a disjoint share of every epoch.

OUT receives checkpoint.pt (every --checkpoint-every steps; rerunning the same
command on the same OUT resumes it and continues the exact sample sequence),
metrics.jsonl (step, loss, lr, samples_per_s, data_wait_fraction) and encoder/
(safetensors + encoder.json: spectralearth.training.load_encoder(OUT/encoder)).

Examples:
  spectralearth train s3://bucket/cube --ssl moco --backbone vit_s --steps 20000 --out runs/moco
  torchrun --nproc-per-node 8 $(command -v spectralearth) train s3://bucket/cube \\
      --ssl mae --backbone vit_b --batch-size 64 --out runs/mae
  spectralearth train cube --ssl dino --backbone resnet50 --steps 50 --batch-size 8 \\
      --backbone-args '{"depths": [1, 1, 1, 1]}' --ssl-args '{"out_dim": 1024}' --out runs/tiny

S3 credentials come from the AWS environment; the endpoint from
SPECTRALEARTH_S3_ENDPOINT. Exit code 0 on success, 1 when training failed.
"""


def _json_object(flag: str):
    def parse(raw: str) -> dict:
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(f"{flag}: not valid JSON ({exc})") from None
        if not isinstance(value, dict):
            raise argparse.ArgumentTypeError(f"{flag}: expected a JSON object")
        return value

    return parse


# kept here (a test checks them against the registries) so that `--help` needs no torch import
OBJECTIVE_NAMES = ("moco", "dino", "mae")
BACKBONE_NAMES = ("adapter", "resnet50", "vit_s", "vit_b", "vit_l")


def register(sub) -> None:
    p = sub.add_parser("train", help="self-supervised pretraining streamed from a cube",
                       description=DESCRIPTION, formatter_class=_common.HelpFormatter)
    p.add_argument("cube", metavar="CUBE_URL", help="cube URL (local path or s3://bucket/prefix)")
    p.add_argument("--ssl", choices=OBJECTIVE_NAMES, required=True, help="objective")
    p.add_argument("--backbone", choices=BACKBONE_NAMES, required=True, help="backbone (mae: a ViT)")
    p.add_argument("--out", required=True, metavar="DIR", help="run folder (checkpoint, metrics, encoder)")
    p.add_argument("--steps", type=_common._positive_int, default=1000, help="optimiser steps in total")
    p.add_argument("--batch-size", type=_common._positive_int, default=64, help="samples per rank and step")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: per objective, x batch/256)")
    p.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay")
    p.add_argument("--warmup-steps", type=int, default=None, help="linear warm-up steps (default: 5%% of --steps)")
    p.add_argument("--crop", type=_common._positive_int, default=None, help="side of the augmented views (default: patch side)")
    p.add_argument("--bands", metavar="JSON", type=json.loads, default=None, help="stored-band indices, e.g. [0, 5, 9]")
    p.add_argument("--backbone-args", metavar="JSON", type=_json_object("--backbone-args"), default={},
                   help="backbone size overrides, e.g. '{\"depth\": 6}'")
    p.add_argument("--ssl-args", metavar="JSON", type=_json_object("--ssl-args"), default={},
                   help="objective overrides, e.g. '{\"queue\": 65536}' or '{\"local_crops\": 6}'")
    p.add_argument("--workers", type=int, default=4, help="DataLoader worker processes per rank (0: main process)")
    p.add_argument("--io-threads", type=int, default=8, help="concurrent chunk requests per iterating process")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample order, augmentations and initial weights")
    p.add_argument("--log-every", type=_common._positive_int, default=1, help="write metrics every N steps")
    p.add_argument("--checkpoint-every", type=_common._positive_int, default=100, help="checkpoint every N steps")
    p.add_argument("--trace-samples", action="store_true",
                   help="write OUT/samples.rankR.jsonl: the order positions and views of every step")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to train")
    _common.add_storage_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spectralearth.platform.reader import StreamReadError
    from spectralearth.training.loop import TrainConfig, train

    cfg = TrainConfig(
        cube=args.cube, ssl=args.ssl, backbone=args.backbone, out=args.out, steps=args.steps,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, warmup_steps=args.warmup_steps,
        crop=args.crop, bands=args.bands, backbone_args=args.backbone_args, ssl_args=args.ssl_args,
        workers=args.workers, io_threads=args.io_threads, seed=args.seed, log_every=args.log_every,
        checkpoint_every=args.checkpoint_every, trace_samples=args.trace_samples, device=args.device,
        progress=not args.quiet, storage_options=_common.storage_options_from_args(args) or {},
    )
    try:
        summary = train(cfg)
    except (StreamReadError, ValueError, FloatingPointError) as exc:
        print(f"error: {exc}")
        return 1
    if summary["encoder"] is not None:
        _common.print_summary(f"train {cfg.ssl}/{cfg.backbone}", {
            "steps": summary["steps"], "ranks": summary["ranks"], "device": summary["device"],
            "loss first -> last": f"{summary['loss_first']:.4f} -> {summary['loss_last']:.4f}"
            if summary["loss_first"] is not None else "(resumed at the end)",
            "samples/s (median)": summary["samples_per_s_median"],
            "data wait (median)": summary["data_wait_fraction_median"],
            "encoder": summary["encoder"],
        })
    return 0
