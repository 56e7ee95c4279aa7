"""Benchmark: extraction throughput per core against this machine's floor, memory per worker, compression.

A few full-size synthetic tiles (224 bands, ~1150-1250 px square) are indexed and
planned (single tiles, geometry only, so every window is extracted). Then, on the
same windows, in interleaved rounds (so a busy spell of the shared machine hits both
alike):

* **floor(N)** - N processes, each pinned to its own core, each running a tight loop
  over its share of the windows (contiguous in tile/row/column order): open each tile
  once, read the window's selected bands with rasterio, encode the chunk with the
  cube's codec chain (read from a cube's ``reflectance`` metadata) and store it at its
  chunk key with :func:`~spectralearth.platform.cube.write_view_bytes`. Nothing else:
  no checksums, statistics, markers or scheduling. Raw patch MB/s per core.
* **pipeline(N)** - ``extract_cube`` on an already started LocalCluster of N
  single-threaded workers, each pinned to its own core (everything the job does:
  direct chunk writes, checksums, statistics, done-markers, lease heartbeat, commit).
  MB/s per core = raw MB / the job's task stage / N (cluster start-up is not counted;
  it is reported separately). Target: >= 0.75 x floor(N) per core.

Each figure is the median of ``--repeats`` rounds. Also reported: CPU seconds per raw
GB of floor and workers (insensitive to other users of the machine), peak RSS of each
worker (target <= 2 GB), the compression ratio, the load average at start, per round
and at the end, and a check that the floor and the cube hold the same chunk bytes.

Writes ``benchmarks/results/extract.json``. Run:
``python benchmarks/bench_extract.py [--tiles 3] [--workers 1 2] [--repeats 3] [--workdir DIR]``.

Per image layout (``--layouts tiled-pixel,tiled-band,cog-pixel,stripped-pixel,stripped-band``):
for each layout an archive of ``--tiles`` tiles (``--tile-size`` px) is written, indexed and
planned, then in interleaved rounds, all in this one process on one core:

* **floor**: read the rows the tile's windows cover in one ``read`` of the selected bands,
  cut the windows out, encode and store each (read + encode, nothing else);
* **pipeline**: ``extract_cube`` (cluster ``sync``), windows read by ``read_windows``;
* **per-window**: one ``read`` per window (the way extraction read before), encode, store.

MB/s of raw patch bytes, medians of the rounds, and the ratios pipeline/floor and
per-window/floor per layout. Writes ``benchmarks/results/extract_layouts.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import write_result  # noqa: E402

TARGET = 0.75


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _pin_all_threads(cpu: int) -> int:
    """Pin every thread of this process (and so the threads it starts later) to one CPU."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), {cpu})
        except (ProcessLookupError, OSError):
            pass
    return os.getpid()


def _floor_proc(cpu, work, out_root, fmt, bands, px, barrier, results) -> None:
    """One floor process: read, encode, store each window of ``work`` = [(item, windows), ...]."""
    import numcodecs
    import rasterio
    from rasterio.windows import Window

    from spectralearth.catalog.enmap import open_raster
    from spectralearth.pipelines.plan import tile_source
    from spectralearth.platform import storage
    from spectralearth.platform.cube import write_view_bytes

    _pin_all_threads(cpu)
    numcodecs.blosc.set_nthreads(1)
    fs, root = storage.filesystem(out_root)
    barrier.wait()
    t0, c0 = time.monotonic(), time.process_time()
    raw = 0
    for item, windows in work:
        with rasterio.Env(GDAL_CACHEMAX=256), open_raster(tile_source(item), "SPECTRAL_IMAGE.TIF") as ds:
            for view, row0, col0 in windows:
                data = ds.read(indexes=list(bands), window=Window(int(col0), int(row0), px, px))
                write_view_bytes(fs, f"{root}/{fmt.key(int(view))}", fmt.encode(data))
                raw += data.nbytes
    results.put((raw, t0, time.monotonic(), time.process_time() - c0))


def run_floor(n: int, cpus: list[int], items, views, bands, fmt, out_root: Path, px: int = 128) -> dict:
    """Floor with ``n`` pinned processes over contiguous shares of the windows."""
    shutil.rmtree(out_root, ignore_errors=True)
    rows = views.sort_values(["tile", "row0", "col0"])[["tile", "view", "row0", "col0"]].to_numpy(np.int64)
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(n + 1), ctx.Queue()
    procs = []
    for i, share in enumerate(np.array_split(rows, n)):
        work = [(items[int(t)], share[share[:, 0] == t][:, 1:]) for t in sorted(set(share[:, 0].tolist()))]
        p = ctx.Process(target=_floor_proc, args=(cpus[i], work, str(out_root), fmt, tuple(bands), px, barrier, results))
        p.start()
        procs.append(p)
    barrier.wait()
    got = [results.get(timeout=1800) for _ in procs]
    for p in procs:
        p.join()
    raw = sum(g[0] for g in got)
    wall = max(g[2] for g in got) - min(g[1] for g in got)
    cpu = sum(g[3] for g in got)
    return {"raw": raw, "wall_s": wall, "cpu_s": cpu, "mb_s_per_core": raw / 1e6 / wall / n}


def _worker_cpu_s() -> float:
    return time.process_time()


def _worker_peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _warm_worker() -> bool:
    import numcodecs  # noqa: F401
    import rasterio  # noqa: F401
    import zarr  # noqa: F401

    import spectralearth.pipelines.extract  # noqa: F401
    import spectralearth.pipelines.stats  # noqa: F401

    return True


def start_cluster(n: int, cpus: list[int]):
    """A LocalCluster of ``n`` single-threaded workers, each pinned to one CPU, modules imported."""
    import logging
    import warnings

    from distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Port .* is already in use")
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, memory_limit="2GB", processes=True,
                               dashboard_address=None, silence_logs=logging.WARNING)
    client = Client(cluster)
    client.wait_for_workers(n)
    for cpu, addr in zip(cpus, sorted(client.scheduler_info()["workers"])):
        client.run(_pin_all_threads, cpu, workers=[addr])
    client.run(_warm_worker)
    return cluster, client


def run_pipeline(n: int, cluster, client, catalog: str, cube: Path) -> dict:
    from spectralearth.pipelines.extract import extract_cube
    from spectralearth.platform.cluster import ClusterSpec

    shutil.rmtree(cube, ignore_errors=True)
    before = client.run(_worker_cpu_s)
    t0 = time.perf_counter()
    rep = extract_cube(catalog, str(cube), cluster=ClusterSpec(kind="scheduler", address=cluster.scheduler_address))
    wall = time.perf_counter() - t0
    after = client.run(_worker_cpu_s)
    cpu = sum(after[a] - before[a] for a in after)
    tasks_s = rep.stages["tasks"]
    return {"raw": rep.raw_bytes, "tasks_s": tasks_s, "wall_s": wall, "cpu_s": cpu,
            "mb_s_per_core": rep.raw_bytes / 1e6 / tasks_s / n,
            "mb_s_per_core_whole_job": rep.raw_bytes / 1e6 / wall / n,
            "stored": rep.stored_bytes, "ratio": rep.compression_ratio, "stages": rep.stages, "views": rep.views,
            "bands": rep.bands}


def same_chunks(floor_root: Path, cube: Path) -> bool:
    """True if the floor's chunk objects equal the cube's, byte for byte."""
    def digests(base: Path) -> dict[str, str]:
        ref = base / "reflectance"
        return {str(p.relative_to(ref)): hashlib.sha256(p.read_bytes()).hexdigest() for p in ref.rglob("*") if p.is_file() and p.name != "zarr.json"}

    a, b = digests(floor_root), digests(cube)
    return bool(a) and a == b


def wait_for_quiet(max_load: float, wait_s: float) -> list[float]:
    deadline = time.monotonic() + wait_s
    while os.getloadavg()[0] > max_load and time.monotonic() < deadline:
        time.sleep(10)
    return _load()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiles", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-load", type=float, default=3.0, help="wait until the 1-min load average is at most this ...")
    ap.add_argument("--wait-s", type=float, default=300.0, help="... but no longer than this (then run anyway and say so)")
    ap.add_argument("--workdir", default=None, help="keep the archive here between runs (default: a temp folder)")
    args = ap.parse_args()

    from spectralearth.catalog import index_archive, read_item_dicts
    from spectralearth.catalog.index import IndexConfig
    from spectralearth.catalog.synth import SynthConfig, synthesize_archive
    from spectralearth.pipelines.extract import SPECTRALEARTH_BANDS
    from spectralearth.pipelines.plan import PlanParams, plan_job, read_plan
    from spectralearth.platform.cluster import ClusterSpec
    from spectralearth.platform.cube import create_build_arrays, view_chunk_format

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
    bands = SPECTRALEARTH_BANDS

    # the floor stores chunks exactly as the cube's metadata says
    floor_root = work / "floor.zarr"
    shutil.rmtree(floor_root, ignore_errors=True)
    create_build_arrays(str(floor_root), n_slots=len(views), n_bands=len(bands), patch_px=128, clevel=5, slots_per_task=16)
    fmt = view_chunk_format(str(floor_root))

    # warm the page cache for both alike
    for p in archive.rglob("*SPECTRAL_IMAGE.TIF"):
        with open(p, "rb") as f:
            while f.read(1 << 24):
                pass

    cpus = sorted(os.sched_getaffinity(0))
    if max(args.workers) > len(cpus):
        raise SystemExit(f"{max(args.workers)} workers asked for, {len(cpus)} CPUs available")
    load_start = wait_for_quiet(args.max_load, args.wait_s)
    clusters = {n: start_cluster(n, cpus[:n]) for n in args.workers}
    floors: dict[int, list[dict]] = {n: [] for n in args.workers}
    pipes: dict[int, list[dict]] = {n: [] for n in args.workers}
    rounds = []
    identical = None
    cube = work / "cube.zarr"
    try:
        for r in range(args.repeats):
            round_load = _load()
            for n in args.workers:
                floors[n].append(run_floor(n, cpus[:n], items, views, bands, fmt, floor_root))
                pipes[n].append(run_pipeline(n, *clusters[n], str(catalog), cube))
                if identical is None:
                    identical = same_chunks(floor_root, cube)
            rounds.append({"load_at_start": round_load,
                           **{f"ratio_{n}w": round(pipes[n][-1]["mb_s_per_core"] / floors[n][-1]["mb_s_per_core"], 3) for n in args.workers}})
            print(f"round {r}: {rounds[-1]}", flush=True)
        peak_rss = {n: sorted(clusters[n][1].run(_worker_peak_rss).values()) for n in args.workers}
    finally:
        for cluster, client in clusters.values():
            client.close()
            cluster.close()
    load_end = _load()

    med = statistics.median
    last = pipes[args.workers[-1]][-1]
    per_workers = {}
    for n in args.workers:
        f_mb = med(f["mb_s_per_core"] for f in floors[n])
        p_mb = med(p["mb_s_per_core"] for p in pipes[n])
        ratios = [p["mb_s_per_core"] / f["mb_s_per_core"] for f, p in zip(floors[n], pipes[n])]
        gb = last["raw"] / 1e9
        per_workers[f"{n}_workers"] = {
            "floor_mb_s_per_core": round(f_mb, 1),
            "pipeline_mb_s_per_core": round(p_mb, 1),
            "ratio_per_core": round(med(ratios), 3),
            "ratio_per_core_runs": [round(x, 3) for x in ratios],
            "pipeline_mb_s_per_core_whole_job": round(med(p["mb_s_per_core_whole_job"] for p in pipes[n]), 1),
            "floor_cpu_s_per_gb": round(med(f["cpu_s"] for f in floors[n]) / gb, 1),
            "pipeline_worker_cpu_s_per_gb": round(med(p["cpu_s"] for p in pipes[n]) / gb, 1),
            "cpu_ratio": round(med(f["cpu_s"] / p["cpu_s"] for f, p in zip(floors[n], pipes[n])), 3),
            "pipeline_tasks_s": round(med(p["tasks_s"] for p in pipes[n]), 2),
            "pipeline_wall_s": round(med(p["wall_s"] for p in pipes[n]), 2),
            "peak_rss_per_worker_gb": [round(x / 2**30, 3) for x in peak_rss[n]],
        }
    worst = min(v["ratio_per_core"] for v in per_workers.values())
    result = {
        "tiles": args.tiles,
        "views": last["views"],
        "bands": last["bands"],
        "raw_mb": round(last["raw"] / 1e6, 1),
        "repeats": args.repeats,
        "floor_mb_s_single_core": per_workers[f"{min(args.workers)}_workers"]["floor_mb_s_per_core"],
        **per_workers,
        "ratio_to_floor": worst,
        "target_ratio": TARGET,
        "meets_target": worst >= TARGET,
        "peak_rss_per_worker_gb": max(x for v in per_workers.values() for x in v["peak_rss_per_worker_gb"]),
        "compression_ratio": last["ratio"],
        "stored_mb": round((last["stored"] or 0) / 1e6, 1),
        "floor_and_cube_chunks_identical": identical,
        "stages_s": last["stages"],
        "load_average": {"start": load_start, "end": load_end, "rounds": rounds, "max_load_wanted": args.max_load,
                         "quiet": max(load_start[0], load_end[0]) <= args.max_load,
                         "note": "1-min load averages of the whole machine; they include this benchmark's own "
                                 "busy processes (up to one per worker) and other users' jobs"},
        "plan_patches": plan.patches,
        "cpus": len(cpus),
        "method": ("medians of interleaved rounds; floor and workers pinned one per core; per core = raw MB / seconds / N; "
                   "pipeline seconds = the job's task stage (cluster start-up excluded, whole-job figure given too); "
                   "cpu_ratio = floor CPU s / worker CPU s for the same bytes"),
    }
    path = write_result("extract", result)
    print(path)
    for k, v in result.items():
        print(f"{k:>36}: {v}")
    shutil.rmtree(floor_root, ignore_errors=True)
    shutil.rmtree(cube, ignore_errors=True)
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


LAYOUTS = ("tiled-pixel", "tiled-band", "cog-pixel", "stripped-pixel", "stripped-band")


def _layout_floor(items, views, bands, fmt, out_root: Path, *, per_window: bool, px: int = 128) -> dict:
    """Read + encode + store every view, reading each tile's rows at once (or one read per window)."""
    import rasterio
    from rasterio.windows import Window

    from spectralearth.catalog.enmap.image import open_image
    from spectralearth.pipelines.plan import tile_source
    from spectralearth.platform import storage
    from spectralearth.platform.cube import write_view_bytes

    shutil.rmtree(out_root / "reflectance" / "c", ignore_errors=True)
    fs, root = storage.filesystem(str(out_root))
    t0, raw = time.perf_counter(), 0
    for tile, g in views.groupby("tile"):
        w = g.sort_values(["row0", "col0"])[["view", "row0", "col0"]].to_numpy(np.int64)
        with rasterio.Env(GDAL_CACHEMAX=256), open_image(tile_source(items[int(tile)])) as ds:
            if per_window:
                chunks = ((int(v), ds.read(indexes=list(bands), window=Window(int(c), int(r), px, px))) for v, r, c in w)
            else:
                r0, r1 = int(w[:, 1].min()), int(w[:, 1].max()) + px
                c0, c1 = int(w[:, 2].min()), int(w[:, 2].max()) + px
                rows = ds.read(indexes=list(bands), window=Window(c0, r0, c1 - c0, r1 - r0))
                chunks = ((int(v), np.ascontiguousarray(rows[:, r - r0 : r - r0 + px, c - c0 : c - c0 + px])) for v, r, c in w)
            for view, data in chunks:
                write_view_bytes(fs, f"{root}/{fmt.key(view)}", fmt.encode(data))
                raw += data.nbytes
    wall = time.perf_counter() - t0
    return {"raw": raw, "wall_s": wall, "mb_s": raw / 1e6 / wall}


def main_layouts(args) -> None:
    import numcodecs

    from spectralearth.catalog import index_archive, read_item_dicts
    from spectralearth.catalog.index import IndexConfig
    from spectralearth.catalog.synth import SynthConfig, synthesize_archive
    from spectralearth.pipelines.extract import SPECTRALEARTH_BANDS, extract_cube
    from spectralearth.pipelines.plan import PlanParams, plan_job, read_plan
    from spectralearth.platform.cluster import ClusterSpec
    from spectralearth.platform.cube import create_build_arrays, view_chunk_format

    numcodecs.blosc.set_nthreads(1)
    _pin_all_threads(sorted(os.sched_getaffinity(0))[0])
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-extract-layouts-"))
    bands = SPECTRALEARTH_BANDS
    sync = ClusterSpec(kind="sync")
    per_layout, load_start = {}, _load()
    for name in args.layouts.split(","):
        layout, interleave = name.split("-")
        archive, catalog = work / name / "archive", work / name / "catalog"
        if not (work / name / "archive.done").exists():
            synthesize_archive(str(archive), SynthConfig(tiles=args.tiles, tile_size=args.tile_size, seed=args.seed,
                                                         zip_fraction=0.0, layout=layout, interleave=interleave))
            (work / name / "archive.done").write_text("ok")
        index_archive(str(archive), catalog_url=str(catalog), cluster=sync, config=IndexConfig(references=False))
        plan_job(str(catalog), params=PlanParams(pixel_filters=False), cluster=sync)
        items = read_item_dicts(str(catalog))
        _, views = read_plan(str(catalog))
        floor_root = work / name / "floor.zarr"
        shutil.rmtree(floor_root, ignore_errors=True)
        create_build_arrays(str(floor_root), n_slots=len(views), n_bands=len(bands), patch_px=128, clevel=5, slots_per_task=16)
        fmt = view_chunk_format(str(floor_root))
        for p in archive.rglob("*SPECTRAL_IMAGE.TIF"):  # page cache warm for every reader alike
            with open(p, "rb") as f:
                while f.read(1 << 24):
                    pass
        rounds = []
        for _ in range(args.repeats):
            floor = _layout_floor(items, views, bands, fmt, floor_root, per_window=False)
            cube = work / name / "cube.zarr"
            shutil.rmtree(cube, ignore_errors=True)
            t0 = time.perf_counter()
            rep = extract_cube(str(catalog), str(cube), cluster=sync)
            pipe = {"raw": rep.raw_bytes, "wall_s": rep.stages["tasks"], "mb_s": rep.raw_bytes / 1e6 / rep.stages["tasks"],
                    "whole_job_s": time.perf_counter() - t0}
            window = _layout_floor(items, views, bands, fmt, floor_root, per_window=True)
            rounds.append({"floor": floor, "pipeline": pipe, "per_window": window})
            print(name, {k: round(v["mb_s"], 1) for k, v in rounds[-1].items()}, flush=True)
        med = statistics.median
        per_layout[name] = {
            "views": len(views),
            "raw_mb": round(rounds[0]["floor"]["raw"] / 1e6, 1),
            "image": {"block": list(_block_of(items[0])), "bytes": int(sum(p.stat().st_size for p in archive.rglob("*SPECTRAL_IMAGE.TIF")))},
            "floor_mb_s": round(med(r["floor"]["mb_s"] for r in rounds), 1),
            "pipeline_mb_s": round(med(r["pipeline"]["mb_s"] for r in rounds), 1),
            "per_window_mb_s": round(med(r["per_window"]["mb_s"] for r in rounds), 1),
            "pipeline_to_floor": round(med(r["pipeline"]["mb_s"] / r["floor"]["mb_s"] for r in rounds), 3),
            "pipeline_to_floor_runs": [round(r["pipeline"]["mb_s"] / r["floor"]["mb_s"], 3) for r in rounds],
            "per_window_to_floor": round(med(r["per_window"]["mb_s"] / r["floor"]["mb_s"] for r in rounds), 3),
            "per_window_to_floor_runs": [round(r["per_window"]["mb_s"] / r["floor"]["mb_s"], 3) for r in rounds],
        }
        shutil.rmtree(floor_root, ignore_errors=True)
        shutil.rmtree(work / name / "cube.zarr", ignore_errors=True)
        _write_layouts(args, per_layout, load_start)  # after each layout, so a stopped run keeps what it measured
    _write_layouts(args, per_layout, load_start)
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


def _write_layouts(args, per_layout: dict, load_start) -> None:
    bands = 202
    result = {
        "tiles": args.tiles, "tile_size": args.tile_size, "bands": bands, "repeats": args.repeats,
        "layouts": per_layout,
        "load_average": {"start": load_start, "end": _load()},
        "method": ("one process pinned to one core; per layout interleaved rounds of floor (covered rows read at once, "
                   "windows cut, encoded, stored), pipeline (extract_cube sync, task stage) and per-window reads; "
                   "medians; MB/s of raw patch bytes; page cache warm"),
    }
    print(write_result("extract_layouts", result))
    for k, v in per_layout.items():
        print(f"{k:>16}: {v}")


def _block_of(item) -> tuple[int, int]:
    from spectralearth.catalog.enmap.image import open_image
    from spectralearth.pipelines.plan import tile_source

    with open_image(tile_source(item)) as ds:
        return tuple(int(v) for v in ds.block_shapes[0])


if __name__ == "__main__":
    if "--layouts" in sys.argv:
        ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        ap.add_argument("--layouts", default=",".join(LAYOUTS), help="comma-separated LAYOUT-INTERLEAVE names")
        ap.add_argument("--tiles", type=int, default=2)
        ap.add_argument("--tile-size", type=int, default=None, help="px (default: the real tile size, ~1,000 x 1,200)")
        ap.add_argument("--repeats", type=int, default=3)
        ap.add_argument("--seed", type=int, default=1)
        ap.add_argument("--workdir", default=None)
        main_layouts(ap.parse_args())
    else:
        main()
