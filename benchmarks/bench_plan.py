"""Benchmark: the patch plan at SpectralEarth scale (11,636 tiles, footprints only).

A footprint-only synthetic archive of 11,636 tiles (METADATA.XML only) is indexed,
its overlap graph and combinations computed, and the patch plan laid (geometry
only: footprint-only catalogs skip the pixel filters). Reported next to
SpectralEarth's published figures (538,974 patches of 128x128 from 415,153
locations, ~73k locations with more than one date): the numbers of patches
(locations), views, multi-date patches, what the wider view policy adds over the
combination members alone, and the planning time per stage.

Writes ``benchmarks/results/plan.json``. Run: ``python benchmarks/bench_plan.py [--tiles 11636] [--workdir DIR]``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import PeakRSS, write_result  # noqa: E402

SPECTRALEARTH = {"patches_views": 538_974, "locations": 415_153, "multi_date_locations": 73_000, "tiles": 11_636}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiles", type=int, default=11_636)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None, help="keep the archive and catalog here (default: a temp folder)")
    args = ap.parse_args()

    from spectralearth.catalog import index_archive
    from spectralearth.catalog.synth import SynthConfig, synthesize_archive
    from spectralearth.pipelines.combinations import combinations_job
    from spectralearth.pipelines.overlaps import overlaps_job
    from spectralearth.pipelines.plan import PlanParams, plan_job
    from spectralearth.platform.cluster import ClusterSpec

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-plan-"))
    archive, catalog = work / "archive", work / "catalog"
    times = {}
    with PeakRSS() as rss:
        if not (work / "archive.done").exists():
            t = time.perf_counter()
            synthesize_archive(str(archive), SynthConfig(tiles=args.tiles, footprints_only=True, seed=args.seed))
            (work / "archive.done").write_text("ok")
            times["synth"] = time.perf_counter() - t
        cluster = ClusterSpec()
        t = time.perf_counter()
        index_archive(str(archive), catalog_url=str(catalog), cluster=cluster)
        times["index"] = time.perf_counter() - t
        t = time.perf_counter()
        ov = overlaps_job(str(catalog), cluster=cluster)
        times["overlaps"] = time.perf_counter() - t
        t = time.perf_counter()
        co = combinations_job(str(catalog), cluster=cluster)
        times["combinations"] = time.perf_counter() - t
        t = time.perf_counter()
        wide = plan_job(str(catalog), params=PlanParams(), cluster=ClusterSpec(kind="sync"))
        times["plan"] = time.perf_counter() - t
        narrow = plan_job(str(catalog), params=PlanParams(wide_views=False), cluster=ClusterSpec(kind="sync"))
    result = {
        "tiles": wide.tiles,
        "overlap_edges": ov.n_edges,
        "degree_max": ov.degree_max,
        "combinations": co.n_combinations,
        "combinations_by_size": co.by_size,
        "patches": wide.patches,
        "views": wide.views,
        "multi_date_patches": wide.multi_date_patches,
        "patches_by_views": wide.patches_by_views,
        "views_members_only_policy": narrow.views,
        "multi_date_patches_members_only_policy": narrow.multi_date_patches,
        "placement": wide.placement,
        "plan_stages_s": wide.stages,
        "seconds": {k: round(v, 2) for k, v in times.items()},
        "peak_rss_gb": round(rss.peak_total / 2**30, 2),
        "spectralearth": SPECTRALEARTH,
        "ratio_to_spectralearth": {
            "locations": round(wide.patches / SPECTRALEARTH["locations"], 3),
            "views": round(wide.views / SPECTRALEARTH["patches_views"], 3),
            "multi_date": round(wide.multi_date_patches / SPECTRALEARTH["multi_date_locations"], 3),
        },
    }
    path = write_result("plan", result)
    print(path)
    for k in ("tiles", "combinations", "patches", "views", "multi_date_patches", "views_members_only_policy", "seconds"):
        print(f"{k:>28}: {result[k]}")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
