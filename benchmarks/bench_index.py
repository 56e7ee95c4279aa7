"""Benchmark: index the footprint-only simulation of the full EnMAP archive (11,636 tiles).

Writes results/index.json: synth time, index wall time, products/s, peak memory of the
whole process tree (client + local dask workers). Run: ``python benchmarks/bench_index.py``
(``--tiles N`` for a smaller run, ``--keep DIR`` to reuse an archive).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import PeakRSS, Timer, write_result  # noqa: E402

from spectralearth.catalog import index_archive  # noqa: E402
from spectralearth.catalog.synth import SynthConfig, synthesize_archive  # noqa: E402
from spectralearth.platform.cluster import ClusterSpec  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tiles", type=int, default=11636)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", default=None, help="folder to keep (and reuse) the synthetic archive in")
    args = ap.parse_args()

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-index-"))
    archive, catalog = root / "archive", root / "catalog"
    try:
        synth_s = None
        if not (archive / "_synth_manifest.json").exists():
            with Timer() as t:
                synthesize_archive(str(archive), SynthConfig(tiles=args.tiles, seed=args.seed, footprints_only=True))
            synth_s = t.seconds
        shutil.rmtree(catalog, ignore_errors=True)
        with PeakRSS() as mem, Timer() as t:
            report = index_archive(str(archive), catalog_url=str(catalog), cluster=ClusterSpec(kind="local", n_workers=args.workers))
        # a second run on the unchanged archive: nothing new to index
        with Timer() as t2:
            rerun = index_archive(str(archive), catalog_url=str(catalog), cluster=ClusterSpec(kind="local", n_workers=args.workers))
        result = {
            "tiles": args.tiles,
            "workers": args.workers,
            "synth_seconds": None if synth_s is None else round(synth_s, 1),
            "index_seconds": round(t.seconds, 1),
            "products_per_s": round(report.indexed / t.seconds, 1),
            "indexed": report.indexed,
            "quarantined": report.quarantined,
            "tiles_in_catalog": report.tiles_total,
            "stages_seconds": {k: round(v, 2) for k, v in report.stages.items()},
            "peak_rss_total_mb": round(mem.peak_total / 2**20),
            "peak_rss_single_process_mb": round(mem.peak_single / 2**20),
            "rerun_seconds": round(t2.seconds, 1),
            "rerun_indexed": rerun.indexed,
            "catalog_parquet_mb": round((catalog / "tiles.parquet").stat().st_size / 2**20, 1),
        }
        path = write_result("index", result)
        print(path.read_text())
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
