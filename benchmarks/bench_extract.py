"""Benchmark: extraction throughput against this machine's floor, memory per worker, compression.

A few full-size synthetic tiles (224 bands, ~1150-1250 px square) are indexed and
planned (single tiles, geometry only, so every window is extracted). Then, on the
same windows:

* **floor** - one process, a tight loop: open each tile once, read each window's
  selected bands with rasterio, encode the chunk with the cube's codec (blosc zstd 5,
  byte shuffle) and write it as a file. Raw patch MB/s on one core.
* **pipeline** - ``extract_cube`` on a LocalCluster of N single-threaded workers
  (zarr writes, checksums, statistics, done-markers, lease heartbeat, commit).
  Raw patch MB/s per core = MB/s / N; target >= 0.75 x floor.
* peak RSS of the largest single process (client or worker; target <= 2 GB) and the
  compression ratio (raw bytes / stored bytes).

Writes ``benchmarks/results/extract.json``. Run: ``python benchmarks/bench_extract.py [--tiles 3] [--workers 2]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import PeakRSS, write_result  # noqa: E402


def floor_loop(items, views, bands, out_dir: Path, px: int = 128) -> tuple[float, int]:
    """The tight single-process loop: seconds and raw bytes."""
    import numcodecs
    import rasterio
    from rasterio.windows import Window

    from spectralearth.catalog.enmap import open_raster
    from spectralearth.pipelines.plan import tile_source

    numcodecs.blosc.set_nthreads(1)  # one core, like each pipeline worker
    codec = numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = 0
    t0 = time.perf_counter()
    for tile, g in views.groupby("tile", sort=True):
        g = g.sort_values(["row0", "col0"])
        with rasterio.Env(GDAL_CACHEMAX=256), open_raster(tile_source(items[tile]), "SPECTRAL_IMAGE.TIF") as ds:
            for v in g.itertuples():
                data = ds.read(indexes=list(bands), window=Window(int(v.col0), int(v.row0), px, px))
                blob = codec.encode(np.ascontiguousarray(data))
                with open(out_dir / f"{v.view}", "wb") as f:
                    f.write(blob)
                raw += data.nbytes
    return time.perf_counter() - t0, raw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiles", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", default=None, help="keep the archive here between runs (default: a temp folder)")
    args = ap.parse_args()

    from spectralearth.catalog import index_archive, read_item_dicts
    from spectralearth.catalog.index import IndexConfig
    from spectralearth.catalog.synth import SynthConfig, synthesize_archive
    from spectralearth.pipelines.extract import SPECTRALEARTH_BANDS, extract_cube
    from spectralearth.pipelines.plan import PlanParams, plan_job, read_plan
    from spectralearth.platform.cluster import ClusterSpec

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-extract-"))
    archive, catalog = work / "archive", work / "catalog"
    if not (work / "archive.done").exists():
        synthesize_archive(str(archive), SynthConfig(tiles=args.tiles, seed=args.seed, zip_fraction=0.0))
        (work / "archive.done").write_text("ok")
    sync = ClusterSpec(kind="sync")
    index_archive(str(archive), catalog_url=str(catalog), cluster=sync, config=IndexConfig(references=False))
    plan = plan_job(str(catalog), params=PlanParams(pixel_filters=False), cluster=sync)
    items = read_item_dicts(str(catalog))
    _, views = read_plan(str(catalog))

    # warm the page cache for both runs alike
    for p in archive.rglob("*SPECTRAL_IMAGE.TIF"):
        with open(p, "rb") as f:
            while f.read(1 << 24):
                pass
    floor_s, raw = floor_loop(items, views, SPECTRALEARTH_BANDS, work / "floor")
    shutil.rmtree(work / "floor", ignore_errors=True)
    floor_mb_s = raw / 1e6 / floor_s

    cube = work / "cube.zarr"
    shutil.rmtree(cube, ignore_errors=True)
    with PeakRSS(interval=0.05) as rss:
        t0 = time.perf_counter()
        rep = extract_cube(str(catalog), str(cube), cluster=ClusterSpec(n_workers=args.workers, threads_per_worker=1, memory_limit="2GB"))
        wall = time.perf_counter() - t0
    per_core = rep.mb_per_s / args.workers
    result = {
        "tiles": args.tiles,
        "views": rep.views,
        "bands": rep.bands,
        "raw_mb": round(rep.raw_bytes / 1e6, 1),
        "floor_mb_s_single_core": round(floor_mb_s, 1),
        "pipeline_workers": args.workers,
        "pipeline_tasks_s": rep.stages.get("tasks"),
        "pipeline_wall_s": round(wall, 2),
        "pipeline_mb_s": round(rep.mb_per_s, 1),
        "pipeline_mb_s_per_core": round(per_core, 1),
        "pipeline_mb_s_per_core_incl_startup": round(rep.raw_bytes / 1e6 / wall / args.workers, 1),
        "ratio_to_floor": round(per_core / floor_mb_s, 3),
        "target_ratio": 0.75,
        "peak_rss_single_process_gb": round(rss.peak_single / 2**30, 3),
        "peak_rss_total_gb": round(rss.peak_total / 2**30, 3),
        "compression_ratio": rep.compression_ratio,
        "stored_mb": round((rep.stored_bytes or 0) / 1e6, 1),
        "stages_s": rep.stages,
        "plan_patches": plan.patches,
        "cpus": os.cpu_count(),
    }
    path = write_result("extract", result)
    print(path)
    for k, v in result.items():
        print(f"{k:>36}: {v}")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
