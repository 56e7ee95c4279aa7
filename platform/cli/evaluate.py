"""``spectralearth evaluate``: score an encoder on a label cube with the downstream protocols."""

from __future__ import annotations

import argparse
import json
import sys

from spectralearth.platform.cli import _common

_DESCRIPTION = """\
Train and score an encoder on the label cube at --labels (from
`spectralearth labels`) over the patch cube CUBE_URL, with each protocol:

  linear    encoder frozen, only a head trained (a linear layer on pooled
            features for multilabel, a small segmentation head for seg)
  finetune  encoder and head trained
  adapter   only the encoder's spectral adapter and the head trained

Each protocol starts from the same encoder: an exported encoder (--encoder
DIR, as written by `spectralearth train`: encoder.safetensors + encoder.json),
or a backbone built by name with random weights (--backbone
adapter|resnet50|vit_s|vit_b|vit_l), the baseline a pretrained encoder must beat. Scores on the test split: multilabel micro/macro F1, segmentation mIoU
and pixel accuracy. Results go to --out as JSON; `python
benchmarks/report_eval.py` turns result files into the table in
docs/evaluation.md.

Example:
  spectralearth evaluate demo-out/cube.zarr --labels demo-out/labels-corine.zarr \\
      --backbone adapter --epochs 3 --out demo-out/eval-corine.json
"""


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="score an encoder on a label cube (linear / finetune / adapter protocols)",
                       description=_DESCRIPTION, formatter_class=_common.HelpFormatter)
    p.add_argument("cube", metavar="CUBE_URL", help="the patch cube")
    p.add_argument("--labels", required=True, metavar="URL", help="the label cube")
    p.add_argument("--encoder", default=None, metavar="DIR", help="an exported encoder (its folder)")
    p.add_argument("--backbone", default="adapter", help="without --encoder: backbone built by name with random weights")
    p.add_argument("--protocols", default="linear,finetune,adapter", metavar="LIST", help="comma-separated protocols")
    p.add_argument("--epochs", type=int, default=5, help="passes over the training split")
    p.add_argument("--batch-size", type=int, default=8, help="patches per step")
    p.add_argument("--lr-head", type=float, default=1e-3, help="learning rate of the head")
    p.add_argument("--lr-encoder", type=float, default=1e-4, help="learning rate of trained encoder parameters")
    p.add_argument("--split", choices=("random", "blocked"), default="random", help="which split of the label cube")
    p.add_argument("--views", choices=("first", "all"), default="first", help="one view per patch, or every view")
    p.add_argument("--crop", type=int, default=None, metavar="PX", help="seg: train on random crops of PX pixels")
    p.add_argument("--seed", type=int, default=0, help="seed of heads, batch order and crops")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--out", required=True, metavar="JSON", help="where the results are written")
    _common.add_storage_args(p)
    p.set_defaults(func=run)


def make_encoder(args: argparse.Namespace, in_bands: int):
    """The exported encoder of ``--encoder``, or backbone ``--backbone`` with random weights; and its name."""
    from spectralearth.training import build_backbone, load_encoder

    if args.encoder:
        enc = load_encoder(args.encoder)
        return enc, f"{enc.export_config['backbone']['name']} ({args.encoder})"
    return build_backbone(args.backbone, in_bands), f"{args.backbone} (random init)"


def run(args: argparse.Namespace) -> int:
    from spectralearth.platform.cube import CubeNotCommittedError, open_cube
    from spectralearth.training.evaluate import EvalParams, evaluate_encoder

    opts = _common.storage_options_from_args(args)
    try:
        params = EvalParams(epochs=args.epochs, batch_size=args.batch_size, lr_head=args.lr_head, lr_encoder=args.lr_encoder,
                            split=args.split, views=args.views, crop_px=args.crop, seed=args.seed, device=args.device)
        bands = int(open_cube(args.cube, storage_options=opts)["reflectance"].shape[1])
        encoder, name = make_encoder(args, bands)
        res = evaluate_encoder(args.cube, args.labels, encoder=encoder, protocols=[p.strip() for p in args.protocols.split(",") if p.strip()],
                               params=params, encoder_name=name, storage_options=opts, out_json=args.out,
                               progress=not args.quiet)
    except (CubeNotCommittedError, FileNotFoundError, ValueError, KeyError) as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 1
    rows = {}
    for name, r in res["protocols"].items():
        t = r["test"]
        score = f"mIoU {t['miou']:.3f}, acc {t['accuracy']:.3f}" if res["task"] == "seg" else \
            f"F1 micro {t['f1_micro']:.3f}, macro {t['f1_macro']:.3f}"
        rows[name] = f"{score}  ({r['trainable_params']} trainable, {r['train_seconds']:.0f} s)"
    _common.print_summary(f"{res['encoder']} on {res['labels']} ({res['task']}, {res['samples']})", rows)
    if not args.quiet:
        print(json.dumps({"out": args.out}))
    return 0
