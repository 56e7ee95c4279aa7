"""Benchmark: overlap graph + temporal combinations at SpectralEarth scale (11,636 tiles).

Tile tables come from the synthetic archive planner (``plan_archive``, footprints only,
revisit hotspots where tiles overlap more than 30 others). Measured on the default
local cluster (one worker process per core, at most 4):

* wall time of graph + combinations at 11,636 tiles (median of repeats), and the
  peak RSS of the whole process tree (this process + dask workers), sampled every 50 ms;
* growth at constant density (``growth_same_density``): components of the overlap graph
  are independent, so an archive 4x smaller with the same density is a 25 % sample of the
  full archive's connected components, stratified by component size (components sorted
  by size, one drawn at random from every consecutive group of four; fixed seed). Time at
  N/4 and N is measured alternately in the same run on the same cluster, next to the
  ratio of the work estimates (edges, sum over tiles of d*min(d, beam));
* growth of the planner's own archives (``growth_densifying``): a planned archive of
  N/4 tiles against one of N; the planner's archives get denser as they grow (more
  revisits per hotspot), so this ratio mixes density growth with algorithmic growth;
* next to every wall time, the CPU seconds of the whole process tree (``cpu_s``): the
  development machine is shared, so wall time carries other people's load and the
  CPU ratio is the steadier growth figure;
* the speed-up over the naive all-pairs versions on a 1,000-tile archive.

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
from datetime import datetime, timezone
from pathlib import Path

import geopandas as gpd
import numpy as np
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


def tree_cpu_s() -> float:
    """CPU seconds (user + system) used so far by this process and its live descendants."""
    total = 0.0
    me = psutil.Process()
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def run_pipeline(tiles, client, beam: int) -> dict:
    c0 = tree_cpu_s()
    t0 = time.perf_counter()
    edges = overlap_edges(tiles, client=client)
    t1 = time.perf_counter()
    combos = combinations(tiles, edges, beam=beam, client=client)
    t2 = time.perf_counter()
    cpu = tree_cpu_s() - c0
    return {"edges_s": t1 - t0, "combinations_s": t2 - t1, "total_s": t2 - t0, "cpu_s": cpu, "edges": edges, "combos": combos}


def summarize(runs: list[dict]) -> dict:
    """Medians of the step times over repeats, and every total."""
    out = {k: round(statistics.median(r[k] for r in runs), 3) for k in ("edges_s", "combinations_s", "total_s", "cpu_s")}
    out["all_total_s"] = [round(r["total_s"], 3) for r in runs]
    out["all_cpu_s"] = [round(r["cpu_s"], 3) for r in runs]
    return out


def median_runs(tiles, client, beam: int, repeats: int) -> tuple[dict, dict]:
    runs = [run_pipeline(tiles, client, beam) for _ in range(repeats)]
    return summarize(runs), runs[-1]


def component_sample(n_tiles: int, edges, *, fraction: float = 0.25, seed: int = 0) -> np.ndarray:
    """Tile rows of a size-stratified random sample of the overlap graph's components.

    Components are sorted by size (ties in random order); from every consecutive group
    of ``round(1 / fraction)`` of them one is drawn at random, so every size class,
    the giant components included, is represented in proportion.
    """
    comp = connected_components(n_tiles, edges)
    sizes = np.bincount(comp)
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(sizes)), -sizes))
    step = int(round(1 / fraction))
    picked = [grp[rng.integers(len(grp))] for grp in (order[i : i + step] for i in range(0, len(order), step))]
    return np.flatnonzero(np.isin(comp, picked))


def work_stats(n_tiles: int, edges, combos, beam: int) -> dict:
    """Degree statistics and work estimates of one archive's graph and combinations."""
    st = degree_stats(n_tiles, edges)
    distinct = edges[~edges["same_datatake"].to_numpy(dtype=bool)]
    d = degree_stats(n_tiles, distinct)["degree"].astype(float)
    comp = connected_components(n_tiles, edges)
    return {
        "tiles": n_tiles,
        "edges": len(edges),
        "distinct_datatake_edges": len(distinct),
        "degree_mean": round(st["degree_mean"], 3),
        "degree_p99": round(st["degree_p99"], 1),
        "degree_max": st["degree_max"],
        "degree_gt_30": st["degree_gt_30"],
        "components": int(comp.max() + 1),
        "largest_component": int(np.bincount(comp).max()),
        "work_d_min_d_beam": int((d * np.minimum(d, beam)).sum()),
        "combinations": len(combos),
        "combination_members": int(combos["n"].sum()),
        "combination_max_n": int(combos["n"].max()) if len(combos) else 0,
    }


def ratios(large: dict, small: dict, keys) -> dict:
    return {k: round(large[k] / small[k], 3) if small[k] else None for k in keys}


WORK_KEYS = ("tiles", "edges", "distinct_datatake_edges", "work_d_min_d_beam", "combinations", "combination_members")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiles", type=int, default=11_636)
    ap.add_argument("--small", type=int, default=1_000, help="tiles of the naive comparison")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--beam", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    full = tile_table(args.tiles, args.seed)
    # The constant-density N/4 archive: a stratified 25 % sample of the full archive's
    # components (the graph is computed once here only to find the components).
    sample_rows = component_sample(len(full), overlap_edges(full), fraction=0.25, seed=args.seed)
    quarter = full.iloc[sample_rows].reset_index(drop=True)
    planner_quarter = tile_table(args.tiles // 4, args.seed)
    small = tile_table(args.small, args.seed)
    out: dict = {
        "benchmark": "overlaps",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
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
            run_pipeline(quarter, client, args.beam)  # warm-up: imports and worker caches
            full_runs, quarter_runs = [], []
            for _ in range(args.repeats):  # alternate, so drift on a shared machine hits both
                full_runs.append(run_pipeline(full, client, args.beam))
                quarter_runs.append(run_pipeline(quarter, client, args.beam))
            full_t, full_run = summarize(full_runs), full_runs[-1]
            quarter_t, quarter_run = summarize(quarter_runs), quarter_runs[-1]
            planner_t, planner_run = median_runs(planner_quarter, client, args.beam, args.repeats)
            small_t, small_run = median_runs(small, client, args.beam, args.repeats)
    edges = full_run["edges"]
    combos = full_run["combos"]
    full_w = work_stats(len(full), edges, combos, args.beam)
    quarter_w = work_stats(len(quarter), quarter_run["edges"], quarter_run["combos"], args.beam)
    planner_w = work_stats(len(planner_quarter), planner_run["edges"], planner_run["combos"], args.beam)
    out["cluster"] = {"kind": spec.kind, "workers": workers, "startup_s": round(startup, 3)}
    out["full"] = {
        **full_t,
        "peak_rss_gb_process_tree": round(mem.peak / 2**30, 3),
        **full_w,
        "same_datatake_edges": int(edges["same_datatake"].sum()),
        "combinations_by_n": {int(k): int(v) for k, v in combos["n"].value_counts().sort_index().items()},
        "targets": {"total_s_max": 60, "peak_rss_gb_max": 4},
    }
    out["growth_same_density"] = {
        "small_is": "stratified 25 % sample of the full archive's connected components (same density)",
        "growth_ratio_same_density": round(full_t["total_s"] / quarter_t["total_s"], 3),
        "cpu_ratio_same_density": round(full_t["cpu_s"] / quarter_t["cpu_s"], 3),
        "growth_ratio_same_density_min_of_repeats": round(min(full_t["all_total_s"]) / min(quarter_t["all_total_s"]), 3),
        "cpu_ratio_same_density_min_of_repeats": round(min(full_t["all_cpu_s"]) / min(quarter_t["all_cpu_s"]), 3),
        "edges_s_ratio": round(full_t["edges_s"] / quarter_t["edges_s"], 3),
        "combinations_s_ratio": round(full_t["combinations_s"] / quarter_t["combinations_s"], 3),
        "target_ratio_max": 4.5,
        "work_ratio": ratios(full_w, quarter_w, WORK_KEYS),
        "small": {**quarter_t, **quarter_w},
        "large_total_s": full_t["total_s"],
    }
    out["growth_densifying"] = {
        "small_is": f"planner archive of {len(planner_quarter)} tiles (same seed): sparser than the full archive",
        "growth_ratio_densifying": round(full_t["total_s"] / planner_t["total_s"], 3),
        "cpu_ratio_densifying": round(full_t["cpu_s"] / planner_t["cpu_s"], 3),
        "work_ratio": ratios(full_w, planner_w, WORK_KEYS),
        "small": {**planner_t, **planner_w},
        "large_total_s": full_t["total_s"],
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
