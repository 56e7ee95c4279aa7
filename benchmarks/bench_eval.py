"""Downstream benchmarks end to end on CPU: synthetic archive -> cube -> label products -> label cubes -> protocols.

    python benchmarks/bench_eval.py                       # writes results/eval.json
    python benchmarks/bench_eval.py --work /tmp/bench-eval --epochs 4
    python benchmarks/report_eval.py                      # docs/evaluation.md from the JSON

Three benchmarks as in SpectralEarth, on synthetic products in the real grids:
EnMAP-CORINE (multi-label, 19 classes, EPSG:3035 100 m), EnMAP-CDL (crop segmentation,
14 classes, EPSG:5070 30 m) and EnMAP-NLCD (land-cover segmentation, 15 classes). Each
is scored with the three protocols (linear, finetune, adapter) of the spectral-adapter
backbone with random weights (the baseline a pretrained encoder must beat). Steps that
already have their output in --work are reused (delete the folder to redo them).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import machine, write_result  # noqa: E402

BENCHMARKS = (("corine", "corine19", "multilabel"), ("cdl", "cdl", "seg"), ("nlcd", "nlcd", "seg"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/spectralearth-bench-eval", help="working folder (archive, cube, labels)")
    ap.add_argument("--tiles", type=int, default=16)
    ap.add_argument("--tile-size", type=int, default=384)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--band-step", type=int, default=7, help="keep every N-th of SpectralEarth's bands (CPU budget)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--crop", type=int, default=64, help="segmentation training crops (scoring on whole patches)")
    ap.add_argument("--backbone", default="adapter")
    args = ap.parse_args(argv)

    import torch

    from spectralearth.catalog.synth import SynthConfig, synthesize_archive
    from spectralearth.catalog.synth.labels import synthesize_label_product
    from spectralearth.pipelines.build import BuildConfig, build
    from spectralearth.pipelines.extract import SPECTRALEARTH_BANDS, ExtractParams
    from spectralearth.pipelines.labels import LabelParams, label_cube, read_patch_grid
    from spectralearth.pipelines.nomenclatures import load_nomenclature
    from spectralearth.pipelines.plan import PlanParams
    from spectralearth.platform.cluster import ClusterSpec
    from spectralearth.training import build_backbone
    from spectralearth.training.evaluate import EvalParams, evaluate_encoder

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    archive, cube = work / "archive", work / "out" / "cube.zarr"
    t = time.perf_counter()
    if not (archive / "_synth_manifest.json").exists():
        synthesize_archive(str(archive), SynthConfig(tiles=args.tiles, tile_size=args.tile_size, seed=args.seed))
    timings["synth"] = time.perf_counter() - t
    t = time.perf_counter()
    bands = SPECTRALEARTH_BANDS[:: args.band_step]
    if not (cube / "zarr.json").exists():
        cfg = BuildConfig(plan=PlanParams(max_cloud=0.6, max_cloud_shadow=0.6, max_snow=1.0), extract=ExtractParams(bands=bands))
        build(str(archive), str(work / "out"), config=cfg, cluster=ClusterSpec(kind="local", n_workers=2))
    timings["build"] = time.perf_counter() - t
    grid = read_patch_grid(str(cube))
    results = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(),
               "archive": {"tiles": args.tiles, "tile_size": args.tile_size, "seed": args.seed},
               "cube": {"patches": grid.n, "bands": len(bands)}, "benchmarks": {}, "timings": timings}
    for product, nom_name, task in BENCHMARKS:
        prod, lab = work / product, work / f"labels-{product}.zarr"
        t = time.perf_counter()
        if not prod.exists():
            synthesize_label_product(str(prod), product=product, lon=grid.lon, lat=grid.lat, seed=args.seed)
        report = label_cube(str(cube), str(prod), str(lab), nomenclature=load_nomenclature(nom_name),
                            params=LabelParams(task=task, seed=args.seed), cluster=ClusterSpec(kind="local", n_workers=2),
                            overwrite=True)
        timings[f"labels_{product}"] = time.perf_counter() - t
        params = EvalParams(epochs=args.epochs, batch_size=args.batch_size, crop_px=args.crop if task == "seg" else None,
                            device="cpu", seed=args.seed)
        torch.manual_seed(args.seed)
        res = evaluate_encoder(str(cube), str(lab), encoder=build_backbone(args.backbone, len(bands)), params=params,
                               encoder_name=f"{args.backbone} (random init)", progress=True)
        res["label_report"] = report.to_dict()
        res["product"] = product
        res["nomenclature"] = nom_name
        results["benchmarks"][f"EnMAP-{product.upper()}"] = res
        print(json.dumps({product: {k: v["test"] for k, v in res["protocols"].items()}}, default=str)[:400], flush=True)
    path = write_result("eval", results)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
