"""Benchmark: the real planning path at archive scale, and a pixel build of a medium archive.

Real path = what a user runs: ``synth --footprints-only`` → ``index`` (the catalog's
~130-vertex footprints) → ``overlaps`` → ``combinations`` → ``plan``, each stage as
its job function on a local dask cluster (2 workers). For each stage: wall time, CPU
seconds of the whole process tree (client + workers; the machine is shared, so CPU is
the steadier figure) and the peak RSS of the tree and of the client. The three planning
jobs run in a fresh process (the client), so its peak is theirs alone, not what
synthesising, indexing or growing the catalog left allocated in this one.

Sizes:

* ``base``: the SpectralEarth input, 11,636 tiles, synthesised and indexed (compact
  METADATA.XML by default, ``--real-xml`` for real-size files: planning starts from the
  catalog, which is the same either way; the index figure is for compact files).
* growth ×4 and ×20, two ways, made from the indexed base catalog (synthesising and
  indexing 233k products takes hours here; the footprints stay the ones ``index``
  wrote):
  - ``area``: copies of the archive moved by whole UTM zones (k·6° in longitude, the
    grid coordinates unchanged), i.e. more area at about the same density (copies that
    land on other land do add some overlap; the work figures beside the times say how much);
  - ``revisits``: copies of every tile on later dates (new datatakes), moved by a few
    whole pixels, i.e. the same area revisited 4× / 20× as often.
* ``revisits4_bounded``: ``revisits4`` with the candidate bound, to set the bound's plan against
  the exact search's on the full archive.
* ``pixels``: a pixel archive of ``--pixel-tiles`` tiles of ``--pixel-size`` px built end
  to end (``build``), which must reach ``--min-views`` views.

The base case runs its planning ``--base-rounds`` times (3), each in a fresh process; its
row is the median round by wall time, with every round and the spread beside it.

Any stage error fails the run (exit 1) after the JSON with what was measured is
written. Writes ``benchmarks/results/scale.json``.

* ``revisit_curve``: the combination search alone on a small archive (``--curve-tiles``)
  revisited 1, 2, 3, 4 times (``--curve-factors``): intersections computed, combinations
  found and CPU time against the revisit factor, which is what the revisit rows pay for.
* ``revisit_curve_deep``: the same on a 60-tile archive revisited 1–20 times, the slope up to
  the 20× that the exact search cannot be run at on the full archive here.
* ``revisit_bound``: the candidate bound (``--bound-beam``, ``--bound-candidates``) against the
  exact search on that 60-tile archive revisited 4, 8 and 12 times (20 times bounded only),
  each followed by the patch plan: intersections, combinations, CPU, patches and views, so
  what the bound costs in the plan is measured, not assumed.

The cases in ``--bounded`` (default ``revisits20``) run the combination search with that
bound: the exact search there is an extrapolated ~200 CPU-hours (see ``docs/scale.md``).
Each case records the combination parameters it ran with.

Run: ``python benchmarks/bench_scale.py [--workdir DIR] [--only base,area4,revisits4,area20,revisits20,pixels,revisit_curve,revisit_curve_deep,revisit_bound]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import PeakRSS, write_result  # noqa: E402

GROW_DROPPED: dict[str, int] = {}
"""Copies left out by ``grown_catalog`` per grown catalog (they would cross the antimeridian)."""

CASES = ("base", "area4", "revisits4", "area20", "revisits20", "revisits4_bounded", "pixels", "revisit_curve",
         "revisit_curve_deep", "revisit_bound")
SMALL_CASES = ("pixels", "revisit_curve", "revisit_curve_deep", "revisit_bound")
"""Cases that do not start from the base archive."""
BOUND_FACTORS = {"exact_and_bounded": [4, 8, 12], "bounded_only": [20]}
"""``revisit_bound``: revisit factors of the 60-tile archive run both ways, and bounded only."""
DEEP_CURVE = {"tiles": 60, "factors": [1, 2, 4, 8, 12, 16, 20]}
"""``revisit_curve_deep``: a small archive revisited up to 20 times, for the slope where the full archive
cannot be run (its 600-tile sibling ``revisit_curve`` stops at 4)."""


def tree_cpu_s() -> float:
    """CPU seconds (user + system) of this process and its live descendants, plus reaped children."""
    me = psutil.Process()
    total = 0.0
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system + (t.children_user + t.children_system if p is me else 0.0)
        except psutil.Error:
            pass
    return total


def measure(name: str, fn, out: dict) -> object:
    """Run one stage; record wall, CPU (process tree) and peak RSS; re-raise after recording an error."""
    c0, t0 = tree_cpu_s(), time.perf_counter()
    rec = out.setdefault(name, {})
    rec["client_rss_at_start_gb"] = round(psutil.Process().memory_info().rss / 1e9, 3)  # what earlier stages left
    try:
        with PeakRSS() as rss:
            res = fn()
    except Exception as exc:
        rec.update(error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc()[-4000:])
        raise
    finally:
        rec.update(wall_s=round(time.perf_counter() - t0, 2), cpu_s=round(tree_cpu_s() - c0, 2))
    rec.update(peak_rss_gb=round(rss.peak_total / 1e9, 3), peak_rss_single_gb=round(rss.peak_single / 1e9, 3),
               peak_rss_client_gb=round(rss.peak_self / 1e9, 3))
    print(f"  {name}: {rec['wall_s']} s wall, {rec['cpu_s']} s CPU, {rec['peak_rss_gb']} GB", flush=True)
    return res


# --------------------------------------------------------------------------- growing a catalog


def grown_catalog(base_catalog: str, out_catalog: str, factor: int, how: str, seed: int = 0) -> int:
    """Write a catalog of ``factor`` × the base tiles (``how``: "area" or "revisits"); returns its size."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import shapely

    from spectralearth.pipelines.overlaps import crosses_antimeridian, project

    table = pq.read_table(f"{base_catalog}/tiles.parquet")
    dropped = [0]
    geoms = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    epsg = np.array([int(str(c).split(":")[-1]) for c in table.column("proj:code").to_pylist()], dtype=np.int64)
    utm = project(geoms, epsg)
    rng = np.random.default_rng(seed)
    parts = [table]
    dt_col = table.column("enmap:datatake_id").to_numpy()
    for c in range(1, factor):
        if how == "area":  # move by whole zones: same grid coordinates in zone z + shift
            shift = (c * 60) // factor or c
            zone = (epsg % 100 - 1 + shift) % 60 + 1
            new_epsg = epsg - epsg % 100 + zone
            xy_utm = utm
            days = 0
        else:  # revisits: same place, later date, moved by a few whole pixels per datatake
            new_epsg = epsg
            uniq, inv = np.unique(dt_col, return_inverse=True)
            d = rng.integers(-40, 41, size=(len(uniq), 2)) * 30.0
            dxy = d[inv]
            xy_utm = np.array([shapely.transform(g, lambda xy, o=o: xy + o) for g, o in zip(utm, dxy)], dtype=object)
            days = 17 * c
        back = np.empty(len(geoms), dtype=object)
        for code in np.unique(new_epsg):
            sel = new_epsg == code
            import pyproj

            tr = pyproj.Transformer.from_crs(int(code), 4326, always_xy=True)
            back[sel] = shapely.transform(xy_utm[sel], lambda xy, tr=tr: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
        t = table
        cols = {name: i for i, name in enumerate(t.column_names)}
        t = t.set_column(cols["geometry"], "geometry", pa.array(shapely.to_wkb(back), type=t.schema.field("geometry").type))
        t = t.set_column(cols["id"], "id", pa.array([f"{i}-G{how[0]}{c:02d}" for i in table.column("id").to_pylist()]))
        t = t.set_column(cols["enmap:datatake_id"], "enmap:datatake_id",
                         pa.array(dt_col + 10_000_000 * c, type=t.schema.field("enmap:datatake_id").type))
        t = t.set_column(cols["proj:code"], "proj:code", pa.array([f"EPSG:{e}" for e in new_epsg]))
        if how != "area":
            tf = np.array(table.column("proj:transform").to_pylist(), dtype=float)
            tf[:, 2] += dxy[:, 0]
            tf[:, 5] += dxy[:, 1]
            t = t.set_column(cols["proj:transform"], "proj:transform", pa.array(tf.tolist(), type=t.schema.field("proj:transform").type))
            dtm = t.column("datetime").to_numpy() + np.timedelta64(days, "D")
            t = t.set_column(cols["datetime"], "datetime", pa.array(dtm, type=t.schema.field("datetime").type))
        if "bbox" in cols:
            b = shapely.bounds(back)
            t = t.set_column(cols["bbox"], "bbox", pa.StructArray.from_arrays(
                [pa.array(b[:, k]) for k in range(4)], names=[f.name for f in t.schema.field("bbox").type]))
        # a copy moved across the antimeridian comes back from pyproj wrapped the wrong way round
        # the globe (it is not cut at ±180° as an indexed footprint is): such copies are left out
        bad = crosses_antimeridian(back) & ~crosses_antimeridian(geoms)
        dropped[0] += int(bad.sum())
        parts.append(t.cast(table.schema).filter(pa.array(~bad)))
    Path(out_catalog).mkdir(parents=True, exist_ok=True)
    grown = pa.concat_tables(parts)
    meta = table.schema.metadata
    from spectralearth.catalog.catalogio import CATALOG_ROW_GROUP

    # row groups as ``index`` writes them (the overlaps job's tasks read a few groups each)
    pq.write_table(grown.replace_schema_metadata(meta), f"{out_catalog}/tiles.parquet", row_group_size=CATALOG_ROW_GROUP)
    for f in Path(base_catalog).iterdir():
        if f.is_file() and f.name not in ("tiles.parquet",) and f.suffix == ".json":
            (Path(out_catalog) / f.name).write_bytes(f.read_bytes())
    if dropped[0]:
        print(f"  grow: left out {dropped[0]} copies that would cross the antimeridian", flush=True)
    GROW_DROPPED[out_catalog] = dropped[0]
    return grown.num_rows


# --------------------------------------------------------------------------- the runs


def work_figures(catalog: str) -> dict:
    """What the graph and the search had to do (to explain time growth)."""
    import pandas as pd

    from spectralearth.pipelines.overlaps import COMPONENTS_NAME, EDGES_NAME
    from spectralearth.platform import tables

    e = tables.read_table(f"{catalog}/{EDGES_NAME}", columns=["a", "b", "same_datatake"], geo=False)
    comp = pd.read_parquet(f"{catalog}/{COMPONENTS_NAME}", columns=["component", "degree"])
    e = e[~e["same_datatake"]]
    n = len(comp)
    d = (np.bincount(e["a"], minlength=n) + np.bincount(e["b"], minlength=n)).astype(float)
    return {"tiles": n, "edges": int(len(e)), "edges_per_tile": round(len(e) / max(1, n), 3),
            "sum_d_min_d_16": float((d * np.minimum(d, 16)).sum()), "largest_component": int(comp["component"].value_counts().max())}


def plan_real_path(catalog: str, out: dict, workers: int, params=None) -> None:
    from spectralearth.pipelines.combinations import CombinationParams, combinations_job
    from spectralearth.pipelines.overlaps import overlaps_job
    from spectralearth.pipelines.plan import PlanParams, plan_job
    from spectralearth.platform.cluster import ClusterSpec

    cluster = ClusterSpec(kind="local", n_workers=workers)
    params = params or CombinationParams()
    out["combination_params"] = asdict(params)
    c0, t0 = tree_cpu_s(), time.perf_counter()
    with PeakRSS() as rss:
        ov = measure("overlaps", lambda: overlaps_job(catalog, cluster=cluster), out)
        co = measure("combinations", lambda: combinations_job(catalog, cluster=cluster, params=params), out)
        pl = measure("plan", lambda: plan_job(catalog, params=PlanParams(), cluster=cluster), out)
    out["planning"] = {"wall_s": round(time.perf_counter() - t0, 2), "cpu_s": round(tree_cpu_s() - c0, 2),
                       "peak_rss_gb": round(rss.peak_total / 1e9, 3), "peak_rss_client_gb": round(rss.peak_self / 1e9, 3),
                       "peak_rss_worker_gb": round(rss.peak_single_child / 1e9, 3)}
    out["counts"] = {"edges": ov.n_edges, "components": ov.n_components, "combinations": co.n_combinations,
                     "patches": pl.patches, "views": pl.views, "multi_date_patches": pl.multi_date_patches,
                     "combinations_by_size": {str(k): v for k, v in co.by_size.items()},
                     "intersections_evaluated_by_size": {str(k): v for k, v in co.evaluated.items()},
                     "intersections_evaluated": int(sum(co.evaluated.values())), "plan_tasks": pl.tasks,
                     "plan_tiles_from": pl.tiles_from}
    out["work"] = work_figures(catalog)
    print(f"  planning: {out['planning']}", flush=True)


def _planning_child(catalog: str, workers: int, params, queue) -> None:
    """``plan_real_path`` in a process of its own; sends back what it recorded (and an error, if any)."""
    out: dict = {}
    try:
        plan_real_path(catalog, out, workers, params)
        queue.put((out, None))
    except Exception as exc:
        queue.put((out, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-4000:]}"))


def planning_in_fresh_process(catalog: str, out: dict, workers: int, params=None) -> None:
    """``plan_real_path`` in a new interpreter, so the client's peak RSS is the planning jobs' alone.

    The benchmark process has grown catalogs (2.6 GB at 232k tiles) before it plans them; an RSS
    sampled in that process keeps what the allocator did not hand back, and would count it as the
    client's.
    """
    import multiprocessing as mp
    import queue as queues

    ctx = mp.get_context("spawn")
    answer = ctx.Queue()
    proc = ctx.Process(target=_planning_child, args=(catalog, workers, params, answer))
    proc.start()
    rec, err = {}, None
    try:
        while True:
            try:
                rec, err = answer.get(timeout=5)
                break
            except queues.Empty:
                if not proc.is_alive():  # killed (e.g. out of memory) before it could answer
                    err = f"the planning process ended with exit code {proc.exitcode} and no result"
                    break
    finally:
        proc.join()
    out.update(rec)
    out["client_process"] = "fresh (planning jobs only)"
    if err:
        raise RuntimeError(f"planning failed in its process: {err}")


def small_catalog(home: Path, tiles: int, seed: int) -> Path:
    """The indexed catalog of a footprint-only archive of ``tiles`` tiles under ``home`` (made once)."""
    from spectralearth.catalog import index_archive
    from spectralearth.catalog.synth import SynthConfig, synthesize_archive
    from spectralearth.platform.cluster import ClusterSpec

    arch, cat = home / "archive", home / "catalog"
    if not (home / "index.done").exists():
        synthesize_archive(str(arch), SynthConfig(tiles=tiles, footprints_only=True, seed=seed, compact_xml=True))
        index_archive(str(arch), catalog_url=str(cat), cluster=ClusterSpec(kind="sync"))
        (home / "index.done").write_text("ok")
    return cat


def revisit_curve(work: Path, tiles: int, factors: list[int], seed: int, out: dict, max_n: int | None = None,
                  name: str = "revisit_curve") -> None:
    """The combination search on one small archive revisited k times (k in ``factors``), in one process.

    Explains the revisit rows: how the intersections the search computes, the combinations
    it finds and its time grow with the number of acquisitions of the same place.
    """
    from spectralearth.catalog import read_tiles
    from spectralearth.pipelines.combinations import CombinationParams, read_edges, write_combinations
    from spectralearth.pipelines.overlaps import overlaps_job
    from spectralearth.platform.cluster import ClusterSpec

    sync = ClusterSpec(kind="sync")
    home = work / ("curve" if name == "revisit_curve" else name)
    cat = small_catalog(home, tiles, seed)
    rows = out.setdefault("rows", [])
    rows.clear()
    runs = [(k, None) for k in factors] + ([(factors[-1], max_n)] if max_n else [])
    for k, cap in runs:
        grown = home / f"revisits{k}"
        n = grown_catalog(str(cat), str(grown), k, "revisits")
        overlaps_job(str(grown), cluster=sync)
        t_tiles, edges = read_tiles(str(grown)), read_edges(str(grown / "overlap_edges.parquet"))
        c0, t0 = tree_cpu_s(), time.perf_counter()
        rep = write_combinations(t_tiles, edges, str(grown), n_tasks=1, params=CombinationParams(max_n=cap))
        row = {"factor": k, "max_n_param": cap, "tiles": n, "wall_s": round(time.perf_counter() - t0, 2), "cpu_s": round(tree_cpu_s() - c0, 2),
               "edges_distinct_datatakes": int((~edges["same_datatake"]).sum()), "combinations": rep.n_combinations,
               "max_n": rep.max_n, "intersections": int(sum(rep.evaluated.values())),
               "intersections_by_size": {str(a): b for a, b in rep.evaluated.items()}}
        rows.append(row)
        print(f"  revisits x{k}: {row}", flush=True)
    base = rows[0] if rows and rows[0]["factor"] == 1 else None
    if base:
        for r in rows:
            r["ratio_to_x1"] = {key: round(r[key] / max(1e-9, base[key]), 2)
                                for key in ("tiles", "edges_distinct_datatakes", "combinations", "intersections", "cpu_s")}


def revisit_bound(work: Path, seed: int, beam: int, candidates: int, out: dict) -> None:
    """The candidate bound against the exact search on the 60-tile archive revisited k times, plan included.

    Re-uses the archive (and grown catalogs) of ``revisit_curve_deep`` in ``work``.
    """
    import shutil

    from spectralearth.catalog import read_tiles
    from spectralearth.pipelines.combinations import CombinationParams, read_edges, write_combinations
    from spectralearth.pipelines.overlaps import PLANNING_SIMPLIFY_DEG, overlaps_job
    from spectralearth.pipelines.plan import PlanParams, plan_job
    from spectralearth.platform.cluster import ClusterSpec

    sync = ClusterSpec(kind="sync")
    cat = small_catalog(work / "revisit_curve_deep", DEEP_CURVE["tiles"], seed)
    bounded = CombinationParams(beam=beam, max_candidates=candidates)
    out["bounded_params"] = asdict(bounded)
    rows = out.setdefault("rows", [])
    rows.clear()
    runs = [(k, p) for k in BOUND_FACTORS["exact_and_bounded"] for p in (CombinationParams(), bounded)]
    runs += [(k, bounded) for k in BOUND_FACTORS["bounded_only"]]
    sizes = {}
    for k in sorted({k for k, _ in runs}):  # each grown catalog and its graph once, then a copy per search
        graph = work / "revisit_bound" / f"revisits{k}"
        shutil.rmtree(graph, ignore_errors=True)
        sizes[k] = grown_catalog(str(cat), str(graph), k, "revisits")
        overlaps_job(str(graph), cluster=sync)
    for k, params in runs:
        graph = work / "revisit_bound" / f"revisits{k}"
        grown = graph.with_name(f"{graph.name}-{'exact' if params.max_candidates is None else 'bounded'}")
        shutil.rmtree(grown, ignore_errors=True)
        shutil.copytree(graph, grown)
        t_tiles = read_tiles(str(grown), simplify_deg=PLANNING_SIMPLIFY_DEG)
        edges = read_edges(str(grown / "overlap_edges.parquet"))
        c0 = tree_cpu_s()
        rep = write_combinations(t_tiles, edges, str(grown), n_tasks=1, params=params)
        c1 = tree_cpu_s()
        pl = plan_job(str(grown), params=PlanParams(), cluster=sync)
        row = {"factor": k, "tiles": sizes[k], "bounded": params.max_candidates is not None,
               "intersections": int(sum(rep.evaluated.values())), "combinations": rep.n_combinations,
               "pairs": int(rep.by_size.get(2, 0)), "max_n": rep.max_n, "combinations_cpu_s": round(c1 - c0, 2), "plan_cpu_s": round(tree_cpu_s() - c1, 2),
               "patches": pl.patches, "views": pl.views, "multi_date_patches": pl.multi_date_patches}
        rows.append(row)
        print(f"  revisits x{k}: {row}", flush=True)
    exact = {r["factor"]: r for r in rows if not r["bounded"]}
    for r in rows:
        e = exact.get(r["factor"])
        if r["bounded"] and e:
            r["ratio_to_exact"] = {key: round(r[key] / max(1e-9, e[key]), 4) for key in
                                   ("intersections", "combinations", "combinations_cpu_s", "plan_cpu_s", "patches", "views",
                                    "multi_date_patches")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiles", type=int, default=11_636)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--workdir", default=None, help="keep archives and catalogs here (re-used when present)")
    ap.add_argument("--only", default=",".join(CASES), help=f"comma-separated cases of {CASES}")
    ap.add_argument("--pixel-tiles", type=int, default=24)
    ap.add_argument("--pixel-size", type=int, default=768)
    ap.add_argument("--pixel-seed", type=int, default=8)
    ap.add_argument("--min-views", type=int, default=300)
    ap.add_argument("--curve-tiles", type=int, default=600, help="tiles of the archive the revisit curve revisits")
    ap.add_argument("--curve-factors", default="1,2,3,4", help="revisit factors of the curve")
    ap.add_argument("--curve-max-n", type=int, default=6, help="also run the largest factor with this --max-n (0: not)")
    ap.add_argument("--base-rounds", type=int, default=3,
                    help="fresh-process planning runs of the base case; the median (by wall time) is its row")
    ap.add_argument("--results", default="scale",
                    help="results/<NAME>.json to write (and merge into): a run on another machine keeps its own base")
    ap.add_argument("--bounded", default="revisits20",
                    help="comma-separated archive cases whose combination search runs with the candidate bound")
    ap.add_argument("--bound-beam", type=int, default=4, help="beam of the bounded search")
    ap.add_argument("--bound-candidates", type=int, default=2, help="max_candidates of the bounded search")
    ap.add_argument("--real-xml", action="store_true",
                    help="real-size METADATA.XML in the base archive (48 GB for 11,636 tiles); default compact "
                         "(calibration/navigation bodies left out: the catalog and the plan are the same)")
    args = ap.parse_args()
    cases = [c for c in args.only.split(",") if c]
    bad = set(cases) - set(CASES)
    if bad:
        ap.error(f"unknown cases {sorted(bad)}; choose from {CASES}")

    from spectralearth.catalog import index_archive
    from spectralearth.catalog.synth import SynthConfig, synthesize_archive
    from spectralearth.platform.cluster import ClusterSpec

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    results_path = Path(__file__).resolve().parent / "results" / f"{args.results}.json"
    on_file = json.loads(results_path.read_text()) if results_path.exists() else {}
    result = on_file.get("cases", {})
    peers = on_file.get("peers", {})  # same-machine runs of other code, kept as they were
    failed = []
    base_archive, base_catalog = work / "base" / "archive", work / "base" / "catalog"
    for case in cases:
        print(f"[{case}]", flush=True)
        out = result[case] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "load_average_1min": round(os.getloadavg()[0], 2)}
        if case not in SMALL_CASES:
            out["base_xml"] = "real-size" if args.real_xml else "compact (calibration/navigation bodies left out)"
        try:
            if case == "revisit_curve":
                out["archive_tiles"] = args.curve_tiles
                revisit_curve(work, args.curve_tiles, [int(k) for k in args.curve_factors.split(",")], args.seed, out,
                              max_n=args.curve_max_n)
                continue
            if case == "revisit_curve_deep":
                out["archive_tiles"] = DEEP_CURVE["tiles"]
                revisit_curve(work, DEEP_CURVE["tiles"], DEEP_CURVE["factors"], args.seed, out, name=case)
                continue
            if case == "revisit_bound":
                out["archive_tiles"] = DEEP_CURVE["tiles"]
                revisit_bound(work, args.seed, args.bound_beam, args.bound_candidates, out)
                continue
            if case == "pixels":
                from spectralearth.pipelines.build import build

                arch = work / "pixels" / "archive"
                out["archive"] = {"tiles": args.pixel_tiles, "tile_size": args.pixel_size, "seed": args.pixel_seed}
                if not (work / "pixels" / "archive.done").exists():
                    measure("synth", lambda: synthesize_archive(str(arch), SynthConfig(tiles=args.pixel_tiles, tile_size=args.pixel_size, seed=args.pixel_seed)), out)
                    (work / "pixels" / "archive.done").write_text("ok")
                import shutil

                shutil.rmtree(work / "pixels" / "out", ignore_errors=True)  # a fresh build each run
                rep = measure("build", lambda: build(str(arch), str(work / "pixels" / "out"), cluster=ClusterSpec(kind="local", n_workers=args.workers)), out)
                ex = rep.stages["extract"]
                out["views"] = int(ex.get("views") or (ex.get("new_views", 0) + ex.get("reused_views", 0)))
                out["stages"] = json.loads(json.dumps(rep.stages, default=lambda o: getattr(o, "__dict__", str(o))))
                if out["views"] < args.min_views:
                    raise RuntimeError(f"the pixel build made {out['views']} views, fewer than --min-views {args.min_views}")
                continue
            if not (work / "base" / "index.done").exists():
                if not (work / "base" / "archive.done").exists():
                    measure("synth", lambda: synthesize_archive(str(base_archive), SynthConfig(
                        tiles=args.tiles, footprints_only=True, seed=args.seed, compact_xml=not args.real_xml)), out)
                    (work / "base" / "archive.done").write_text("ok")
                measure("index", lambda: index_archive(str(base_archive), catalog_url=str(base_catalog), cluster=ClusterSpec(kind="local", n_workers=args.workers)), out)
                (work / "base" / "index.done").write_text("ok")
            if case == "base":
                catalog = base_catalog
            else:
                how, factor = re.fullmatch(r"(area|revisits)(\d+)(?:_bounded)?", case).group(1, 2)
                factor = int(factor)
                catalog = work / case / "catalog"
                out["tiles"] = measure("grow_catalog", lambda: grown_catalog(str(base_catalog), str(catalog), factor, how), out)
                out["copies_left_out_at_antimeridian"] = GROW_DROPPED.get(str(catalog), 0)
            params = None
            if case in args.bounded.split(",") or case.endswith("_bounded"):
                from spectralearth.pipelines.combinations import CombinationParams

                params = CombinationParams(beam=args.bound_beam, max_candidates=args.bound_candidates)
            rounds = args.base_rounds if case == "base" else 1
            runs = []
            for r in range(rounds):
                rec: dict = {}
                planning_in_fresh_process(str(catalog), rec, args.workers, params)
                runs.append(rec)
                if rounds > 1:
                    print(f"  round {r + 1}/{rounds}: {rec['planning']['wall_s']} s", flush=True)
            walls = [rec["planning"]["wall_s"] for rec in runs]
            out.update(runs[int(np.argsort(walls)[len(walls) // 2])])  # the median round (by wall time)
            if rounds > 1:
                out["rounds"] = [{k: rec["planning"][k] for k in ("wall_s", "cpu_s", "peak_rss_gb", "peak_rss_client_gb")}
                                 for rec in runs]
                out["planning_spread"] = {k: [min(rec["planning"][k] for rec in runs), max(rec["planning"][k] for rec in runs)]
                                          for k in ("wall_s", "cpu_s")}
        except Exception as exc:  # recorded, then the run fails loudly at the end
            failed.append(case)
            out.setdefault("error", f"{type(exc).__name__}: {exc}")
            traceback.print_exc()
        finally:
            write_result(args.results, {"workdir": str(work), "cases": result, **({"peers": peers} if peers else {})})
    base = result.get("base", {}).get("planning")
    for case in ("area4", "revisits4", "area20", "revisits20", "revisits4_bounded"):
        p = result.get(case, {}).get("planning")
        if base and p and not result[case].get("code"):  # a row run by earlier code keeps its ratios to that code's base
            result[case]["ratio_to_base"] = {k: round(p[k] / base[k], 3) for k in ("wall_s", "cpu_s")}
            bw, cw = result["base"].get("work"), result[case].get("work")
            if bw and cw:
                result[case]["work_ratio_to_base"] = {k: round(cw[k] / max(1e-9, bw[k]), 3) for k in ("tiles", "edges", "sum_d_min_d_16")}
    path = write_result(args.results, {"workdir": str(work), "cases": result, **({"peers": peers} if peers else {})})
    print(f"wrote {path}")
    if failed:
        print(f"FAILED: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
