"""Benchmark: the extraction stage on dask-gateway clusters vs a LocalCluster.

A synthetic archive is indexed and planned once (every window of every tile, no
pixel filters). The local stack (SeaweedFS S3 + dask-gateway, on loopback) is
started, and the same extraction (archive on local disk -> cube on the stack's S3)
runs on:

* a gateway cluster of 1 worker and of 2 workers (1 core each): the speed-up;
* a LocalCluster of 1 and of 2 single-threaded worker processes: the gateway's
  overhead (cluster start through the gateway API, TLS through the proxy).

Each configuration runs ``--repeats`` times into a fresh cube; the best wall time
counts (it includes starting and stopping the cluster, as a user sees it). The
cluster start alone (to all workers joined) is timed separately.

Writes ``benchmarks/results/gateway.json``. Run:
``python benchmarks/bench_gateway.py [--tiles 6] [--tile-size 512] [--repeats 2]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import write_result  # noqa: E402


def _time_cluster_start(spec, repeats: int) -> float:
    from spectralearth.platform.cluster import cluster_client

    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        with cluster_client(spec) as client:
            client.wait_for_workers(spec.n_workers or 1)
            best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiles", type=int, default=6)
    ap.add_argument("--tile-size", type=int, default=512)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--cube-on", choices=("s3", "local"), default="s3",
                    help="where the cubes go: the stack's S3 (its server shares the cores) or local disk (isolates the workers' scaling)")
    ap.add_argument("--workdir", default=None, help="keep the archive here between runs (default: a temp folder)")
    args = ap.parse_args()

    from spectralearth.catalog import index_archive
    from spectralearth.catalog.index import IndexConfig
    from spectralearth.catalog.synth import SynthConfig, synthesize_archive
    from spectralearth.pipelines.extract import extract_cube
    from spectralearth.pipelines.plan import PlanParams, plan_job
    from spectralearth.platform.cluster import ClusterSpec
    from spectralearth.platform.stack import LocalStack

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-gateway-"))
    archive, catalog = work / "archive", work / "catalog"
    marker = work / f"archive-{args.tiles}-{args.tile_size}-{args.seed}.done"
    if not marker.exists():
        synthesize_archive(str(archive), SynthConfig(tiles=args.tiles, tile_size=args.tile_size, seed=args.seed, zip_fraction=0.0))
        marker.write_text("ok")
    sync = ClusterSpec(kind="sync")
    index_archive(str(archive), catalog_url=str(catalog), cluster=sync, config=IndexConfig(references=False))
    plan = plan_job(str(catalog), params=PlanParams(pixel_filters=False), cluster=sync)

    stack = LocalStack(work / "stack")
    stack.up()
    saved = dict(os.environ)
    try:
        os.environ.update(stack.environment())
        import dask.config

        dask.config.refresh()  # pick up DASK_GATEWAY__* from the environment just set
        bucket = os.environ["SPECTRALEARTH_STACK_BUCKET"]
        configs = {
            "gateway-1": ClusterSpec(kind="gateway", n_workers=1, worker_cores=1, worker_memory="2GiB"),
            "gateway-2": ClusterSpec(kind="gateway", n_workers=2, worker_cores=1, worker_memory="2GiB"),
            "local-1": ClusterSpec(kind="local", n_workers=1, worker_cores=1, worker_memory="2GiB"),
            "local-2": ClusterSpec(kind="local", n_workers=2, worker_cores=1, worker_memory="2GiB"),
        }
        runs: dict[str, dict] = {}
        busy: dict[str, list[float]] = {}  # whole-machine CPU use during each run (other work included)
        for name, spec in configs.items():
            walls, reports = [], []
            for _ in range(args.repeats):
                root = bucket if args.cube_on == "s3" else str(work / "cubes")
                cube = f"{root}/bench/{name}-{uuid.uuid4().hex[:8]}.zarr"
                psutil.cpu_percent(interval=None)
                t0 = time.perf_counter()
                report = extract_cube(str(catalog), cube, cluster=spec)
                walls.append(time.perf_counter() - t0)
                busy.setdefault(name, []).append(psutil.cpu_percent(interval=None))
                reports.append(report.to_dict())
            best = min(range(len(walls)), key=walls.__getitem__)
            r = reports[best]
            runs[name] = {
                "wall_s": round(walls[best], 2),
                "wall_s_all": [round(w, 2) for w in walls],
                "stage_s": round(float(r["seconds"]), 2),
                "mb_per_s": round(float(r["mb_per_s"]), 2),
                "raw_bytes": int(r["raw_bytes"]),
                "views": r["views"],
                "tasks": r["tasks"],
                "machine_cpu_percent": busy[name],
            }
            print(name, runs[name], flush=True)
        start = {name: round(_time_cluster_start(spec, args.repeats), 2) for name, spec in configs.items() if name.endswith("-2")}
    finally:
        os.environ.clear()
        os.environ.update(saved)
        stack.down()

    result = {
        "note": ("2-core machine shared with other work (see load_average and machine_cpu_percent); "
                 "wall times include cluster start/stop; one extraction task per tile"),
        "cube_on": args.cube_on,
        "tiles": args.tiles,
        "tile_size": args.tile_size,
        "plan_views": getattr(plan, "views", None),
        "raw_mb": round(runs["gateway-2"]["raw_bytes"] / 1e6, 1),
        "runs": runs,
        "cluster_start_s": start,
        "gateway_speedup_2_vs_1": round(runs["gateway-1"]["wall_s"] / runs["gateway-2"]["wall_s"], 2),
        "local_speedup_2_vs_1": round(runs["local-1"]["wall_s"] / runs["local-2"]["wall_s"], 2),
        "gateway_overhead_s_2_workers": round(runs["gateway-2"]["wall_s"] - runs["local-2"]["wall_s"], 2),
        "gateway_vs_local_ratio_2_workers": round(runs["gateway-2"]["wall_s"] / runs["local-2"]["wall_s"], 2),
        "load_average": os.getloadavg(),
    }
    path = write_result("gateway" if args.cube_on == "s3" else "gateway_local_cube", result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
