"""Benchmark: overlap graph + temporal combinations at SpectralEarth scale (11,636 tiles).

Tile tables come from the synthetic archive planner (``plan_archive``, footprints only,
revisit hotspots where tiles overlap more than 30 others). Measured on the default
local cluster (one worker process per core, at most 4):

* wall time of graph + combinations at 11,636 tiles (median of repeats), and the
  peak RSS of the whole process tree (this process + dask workers), sampled every 50 ms;
* the speed-up over the naive all-pairs versions on a 1,000-tile archive;
* growth: time at N and at 4N tiles, and their ratio.

Writes ``benchmarks/results/overlaps.json``. Run: ``python benchmarks/bench_overlaps.py [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
from pathlib import Path

import geopandas as gpd
import psutil
import shapely

from spectralearth.catalog.synth.config import SynthConfig
from spectralearth.catalog.synth.plan import plan_archive
from spectralearth.pipelines.combinations import combinations
from spectralearth.pipelines.overlaps import connected_components, degree_stats, overlap_edges
from spectralearth.pipelines.reference import naive_combinations, naive_edges
from spectralearth.platform.cluster import ClusterSpec, cluster_client

RESULTS = Path(__file__).parent / "results" / "overlaps.json"


def tile_table(n: int, seed: int) -> gpd.GeoDataFrame:
    """The tile table of a planned synthetic archive of ``n`` tiles."""
    specs = plan_archive(SynthConfig(tiles=n, seed=seed, footprints_only=True))
    return gpd.GeoDataFrame(
        {
            "id": [s.stem for s in specs],
            "datetime": [s.start for s in specs],
            "proj:code": [f"EPSG:{s.epsg}" for s in specs],
            "enmap:datatake_id": [s.datatake for s in specs],
            "enmap:tile_id": [s.tile for s in specs],
        },
        geometry=[shapely.Polygon(s.footprint_lonlat) for s in specs],
        crs=4326,
    )


class PeakRSS:
    """Peak resident memory of this process and all its descendants, sampled in a thread."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        me = psutil.Process()
        total = 0
        for p in [me, *me.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())


def run_pipeline(tiles, client, beam: int) -> dict:
    t0 = time.perf_counter()
    edges = overlap_edges(tiles, client=client)
    t1 = time.perf_counter()
    combos = combinations(tiles, edges, beam=beam, client=client)
    t2 = time.perf_counter()
    return {"edges_s": t1 - t0, "combinations_s": t2 - t1, "total_s": t2 - t0, "edges": edges, "combos": combos}


def median_runs(tiles, client, beam: int, repeats: int) -> tuple[dict, dict]:
    runs = [run_pipeline(tiles, client, beam) for _ in range(repeats)]
    last = runs[-1]
    summary = {k: round(statistics.median(r[k] for r in runs), 3) for k in ("edges_s", "combinations_s", "total_s")}
    summary["all_total_s"] = [round(r["total_s"], 3) for r in runs]
    return summary, last


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiles", type=int, default=11_636)
    ap.add_argument("--small", type=int, default=1_000, help="tiles of the naive comparison")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--beam", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    full = tile_table(args.tiles, args.seed)
    # N vs 4N at the same density: the western quarter of the full archive (by footprint
    # centroid longitude). A planner archive of N/4 tiles is sparser (fewer revisits per
    # hotspot), so its time is reported too but is not the growth figure.
    lon = shapely.get_x(shapely.centroid(full.geometry.values))
    quarter = full.iloc[sorted(lon.argsort()[: args.tiles // 4])].reset_index(drop=True)
    planner_quarter = tile_table(args.tiles // 4, args.seed)
    small = tile_table(args.small, args.seed)
    out: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "memory_gb": round(psutil.virtual_memory().total / 2**30, 1)},
        "params": {"beam": args.beam, "patch_px": 128, "pixel_m": 30, "seed": args.seed, "repeats": args.repeats},
    }
    spec = ClusterSpec()
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        with cluster_client(spec) as client:
            startup = time.perf_counter() - t0
            workers = len(client.nthreads())
            full_t, full_run = median_runs(full, client, args.beam, args.repeats)
            quarter_t, _ = median_runs(quarter, client, args.beam, args.repeats)
            planner_t, _ = median_runs(planner_quarter, client, args.beam, args.repeats)
            small_t, small_run = median_runs(small, client, args.beam, args.repeats)
    edges = full_run["edges"]
    combos = full_run["combos"]
    stats = degree_stats(len(full), edges)
    comp = connected_components(len(full), edges)
    out["cluster"] = {"kind": spec.kind, "workers": workers, "startup_s": round(startup, 3)}
    out["full"] = {
        "tiles": len(full),
        **full_t,
        "peak_rss_gb_process_tree": round(mem.peak / 2**30, 3),
        "edges": len(edges),
        "same_datatake_edges": int(edges["same_datatake"].sum()),
        "components": int(comp.max() + 1),
        "largest_component": int(max(comp.tolist().count(c) for c in set(comp.tolist()))),
        "degree_max": stats["degree_max"],
        "degree_mean": round(stats["degree_mean"], 3),
        "degree_gt_30": stats["degree_gt_30"],
        "combinations": len(combos),
        "combinations_by_n": {int(k): int(v) for k, v in combos["n"].value_counts().sort_index().items()},
        "targets": {"total_s_max": 60, "peak_rss_gb_max": 4},
    }
    out["growth"] = {
        "n_small": len(quarter),
        "n_large": len(full),
        "total_s_small": quarter_t["total_s"],
        "total_s_large": full_t["total_s"],
        "ratio": round(full_t["total_s"] / quarter_t["total_s"], 3),
        "target_ratio_max": 4.5,
        "n_small_is": "western quarter of the full archive (same density)",
        "planner_archive_of_n_small_total_s": planner_t["total_s"],
        "planner_archive_of_n_small_ratio": round(full_t["total_s"] / planner_t["total_s"], 3),
    }

    t0 = time.perf_counter()
    ref_edges = naive_edges(small)
    t1 = time.perf_counter()
    ref_combos = naive_combinations(small, ref_edges)
    t2 = time.perf_counter()
    same_edges = list(zip(ref_edges["a"], ref_edges["b"])) == list(zip(small_run["edges"]["a"], small_run["edges"]["b"]))
    same_combos = list(ref_combos["members"]) == [tuple(m) for m in small_run["combos"]["members"]]
    out["vs_naive"] = {
        "tiles": len(small),
        "edges": len(ref_edges),
        "combinations": len(ref_combos),
        "naive_edges_s": round(t1 - t0, 3),
        "naive_combinations_s": round(t2 - t1, 3),
        "naive_total_s": round(t2 - t0, 3),
        **{f"pipeline_{k}": v for k, v in small_t.items()},
        "speedup_edges": round((t1 - t0) / small_t["edges_s"], 2),
        "speedup_combinations": round((t2 - t1) / small_t["combinations_s"], 2),
        "speedup_total": round((t2 - t0) / small_t["total_s"], 2),
        "same_edges": same_edges,
        "same_combinations": same_combos,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
