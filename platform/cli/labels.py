"""``spectralearth labels`` and ``spectralearth synth-labels``: label cubes from land-cover products."""

from __future__ import annotations

import argparse
import json
import sys

from spectralearth.platform.cli import _common

_DESCRIPTION = """\
Pair every patch of the cube at --cube with a classified land-cover raster:
the raster is reprojected onto each patch's own UTM grid (nearest neighbour,
exact transform), its codes mapped through the nomenclature, and a label cube
aligned with the patch cube (label i = patch i) is written to --out as Zarr v3:

  --task seg         mask (patch, y, x) uint8, 255 = ignore
  --task multilabel  labels (patch, class) uint8: classes covering at least
                     --min-area of the labelled pixels

Both also hold class_fraction, labelled, status (0 kept, 1 too little labelled
area, 2 outside the product, 3 not sampled) and two splits, split_random
(75/10/15, seeded) and split_blocked (whole blocks per split; touching patches
never in different splits). Patches with less than --min-labelled labelled
pixels are dropped and counted.

--labels is one raster (GeoTIFF, VRT, anything GDAL reads) or a folder of
rasters of one product (e.g. CDL per state). --nomenclature is corine19 (CLC
level-3 codes -> 19 BigEarthNet classes), corine19-grid (the CLC raster's
GRID_CODE 1-44), cdl (14 crops), nlcd (15 classes) or a JSON file
({"classes": [{"name": ..., "codes": [...]}, ...]}). Codes not listed are ignored.

The label cube becomes visible (its root zarr.json) only when complete.

Examples:
  spectralearth synth-labels --cube demo-out/cube.zarr --product corine --seed 7 --out demo-out/corine
  spectralearth labels --cube demo-out/cube.zarr --labels demo-out/corine \\
      --task multilabel --nomenclature corine19 --out demo-out/labels-corine.zarr

Exit codes: 0 committed, 1 failed (bad input, or a committed label cube
exists without --overwrite), 2 bad usage, 130 interrupted.
"""

_SYNTH_DESCRIPTION = """\
Write a synthetic land-cover product that covers the patches of --cube, in the
grid of the real product (corine: EPSG:3035 at 100 m with CLC level-3 codes;
cdl, nlcd: EPSG:5070 at 30 m with their codes), as a folder of GeoTIFFs (one
per 60 km square holding patches). Classes follow the synthetic archive's land
cover, so pass the archive's --seed (the one given to `spectralearth synth`).

Example:
  spectralearth synth-labels --cube demo-out/cube.zarr --product cdl --seed 7 --out demo-out/cdl
"""


def _fraction(text: str) -> float:
    v = float(text)
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number within 0..1, got {text}")
    return v


def _fractions(text: str) -> tuple[float, float, float]:
    parts = [float(p) for p in text.split("/")]
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected TRAIN/VAL/TEST, e.g. 0.75/0.10/0.15, got {text}")
    return (parts[0], parts[1], parts[2])


def register(sub) -> None:
    p = sub.add_parser("labels", help="pair patches with a land-cover raster into a label cube (with splits)",
                       description=_DESCRIPTION, formatter_class=_common.HelpFormatter)
    p.add_argument("--cube", required=True, metavar="URL", help="the committed patch cube")
    p.add_argument("--labels", required=True, metavar="RASTER_URL", help="land-cover raster, or a folder of rasters")
    p.add_argument("--task", required=True, choices=("seg", "multilabel"), help="segmentation masks or class-presence vectors")
    p.add_argument("--nomenclature", required=True, metavar="NAME|FILE", help="corine19, corine19-grid, cdl, nlcd or a JSON file")
    p.add_argument("--out", required=True, metavar="URL", help="where the label cube is written")
    p.add_argument("--min-labelled", type=_fraction, default=0.25, metavar="F", help="drop patches with a smaller labelled share")
    p.add_argument("--min-area", type=_fraction, default=0.01, metavar="F", help="multilabel: smallest share of a present class")
    p.add_argument("--sample", type=int, default=None, metavar="N", help="label a seeded sample of N patches only")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample and the splits")
    p.add_argument("--fractions", type=_fractions, default=(0.75, 0.10, 0.15), metavar="T/V/S", help="split shares")
    p.add_argument("--block-m", type=float, default=15360.0, metavar="M", help="blocked split: block side in metres")
    p.add_argument("--gap-m", type=float, default=0.0, metavar="M", help="blocked split: patches closer than this are neighbours too")
    p.add_argument("--overwrite", action="store_true", help="replace a committed label cube")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _common.add_cluster_args(p)
    _common.add_storage_args(p)
    p.set_defaults(func=run)

    s = sub.add_parser("synth-labels", help="a synthetic CORINE/CDL/NLCD-like product covering a cube's patches",
                       description=_SYNTH_DESCRIPTION, formatter_class=_common.HelpFormatter)
    s.add_argument("--cube", required=True, metavar="URL", help="the patch cube whose patches the product covers")
    s.add_argument("--product", required=True, choices=("corine", "cdl", "nlcd"), help="which product to imitate")
    s.add_argument("--seed", type=int, default=0, help="seed of the synthetic archive the cube was built from")
    s.add_argument("--out", required=True, metavar="URL", help="folder for the GeoTIFFs")
    _common.add_storage_args(s)
    s.set_defaults(func=run_synth)


def run(args: argparse.Namespace) -> int:
    from spectralearth.pipelines.labels import LabelCubeExistsError, LabelParams, label_cube
    from spectralearth.pipelines.nomenclatures import load_nomenclature
    from spectralearth.platform.cube import CubeNotCommittedError

    try:
        params = LabelParams(task=args.task, min_labelled=args.min_labelled, min_area=args.min_area, sample=args.sample,
                             seed=args.seed, fractions=args.fractions, block_m=args.block_m, gap_m=args.gap_m)
        nom = load_nomenclature(args.nomenclature)
        report = label_cube(args.cube, args.labels, args.out, nomenclature=nom, params=params,
                            cluster=_common.cluster_spec_from_args(args), storage_options=_common.storage_options_from_args(args),
                            overwrite=args.overwrite, progress=not args.quiet)
    except (CubeNotCommittedError, FileNotFoundError, ValueError, LabelCubeExistsError) as exc:
        print(f"labels: {exc}", file=sys.stderr)
        return 1
    d = report.to_dict()
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    present = ", ".join(f"{k} {v}" for k, v in d["class_patches"].items() if v)
    _common.print_summary(f"label cube {report.out_url}", {
        "task / nomenclature": f"{d['task']} / {d['nomenclature']} ({len(d['class_patches'])} classes)",
        "patches": f"{d['patches']} in cube, {d['sampled']} labelled, {d['kept']} kept",
        "dropped": f"{d['dropped_low_labelled']} too little labelled area, {d['dropped_outside']} outside the product",
        "random split": " / ".join(f"{k} {v}" for k, v in d["splits"]["random"].items()),
        "blocked split": " / ".join(f"{k} {v}" for k, v in d["splits"]["blocked"].items()) + f" ({d['guards']} guard patches)",
        "patches per class": present or "none",
        "wall time": f"{d['seconds']:.1f} s",
    })
    return 0


def run_synth(args: argparse.Namespace) -> int:
    from spectralearth.catalog.synth.labels import synthesize_label_product
    from spectralearth.pipelines.labels import read_patch_grid
    from spectralearth.platform.cube import CubeNotCommittedError

    opts = _common.storage_options_from_args(args)
    try:
        grid = read_patch_grid(args.cube, storage_options=opts)
        out = synthesize_label_product(args.out, product=args.product, lon=grid.lon, lat=grid.lat, seed=args.seed,
                                       storage_options=opts)
    except (CubeNotCommittedError, ValueError) as exc:
        print(f"synth-labels: {exc}", file=sys.stderr)
        return 1
    _common.print_summary(f"label product {args.out}", {
        "product": f"synthetic {out['product']} (EPSG:{out['epsg']}, {out['pixel_m']:g} m, nomenclature {out['nomenclature']})",
        "rasters": f"{len(out['rasters'])} ({sum(r['shape'][0] * r['shape'][1] for r in out['rasters']) / 1e6:.2f} Mpx)",
    })
    return 0
