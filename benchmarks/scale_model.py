"""Generate ``docs/scale.md``: the cost model of the full archive and of SpectralEarth-MM.

Every rate comes from ``benchmarks/results/*.json`` (measured on the 2-core development
machine) and every count from the published sizes below; this script only multiplies.
Run: ``python benchmarks/scale_model.py`` (rewrites docs/scale.md).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "scale.md"

GET_PER_PREFIX = 5_500
PUT_PER_PREFIX = 3_500
DAY_S = 86_400
BANDS, PX = 202, 128
TILE_GRID_PX, TILE_BANDS = 1_200, 224  # full-size L2A ortho grid ~1150-1250 px, 224 bands
OBJECTS_PER_TILE = 11  # SPECTRAL_IMAGE, METADATA.XML, 7 QL_* masks, QL_VNIR, QL_SWIR


def load(name: str) -> dict:
    p = RESULTS / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else {}


def fmt(x: float, digits: int = 3) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def _client_kb_per_tile(a: dict, b: dict) -> float:
    """Growth of the planning client's peak from case ``a`` to case ``b``, in KB per added tile."""
    return ((b["planning"]["peak_rss_client_gb"] - a["planning"]["peak_rss_client_gb"]) * 1e6
            / max(1, b["work"]["tiles"] - a["work"]["tiles"]))


def _client_memory_sentence(sc: dict, peers: dict) -> str:
    before = peers.get("before_lean_read", {}).get("cases", {})
    parts = []
    for case in ("base", "area4", "area20"):
        p = sc.get(case, {}).get("planning", {})
        if p.get("peak_rss_client_gb") is not None:
            old = before.get(case, {}).get("peak_rss_client_gb")
            parts.append(f"{case} ({sc[case].get('work', {}).get('tiles', 0):,} tiles) {p['peak_rss_client_gb']} GB "
                         f"client{f' ({old} GB with a full read of the tile table)' if old else ''}, "
                         f"{p['peak_rss_gb']} GB process tree")
    if not parts:
        return "(Client memory not measured yet.)"
    slope = ""
    a, b = sc.get("area4", {}), sc.get("area20", {})
    if a.get("planning") and b.get("planning"):
        slope = f" (~{_client_kb_per_tile(a, b):.0f} KB a tile between area4 and area20)"
    return ("Footprints are simplified while they are decoded (a batch of rows at a time, "
            "`read_tiles(simplify_deg=...)`), so the ~130-vertex outlines are never in memory together. "
            "Measured peaks with the code of `scale.json` (before the planning copy, when all "
            "three jobs read the catalog; the three stages in one process, so a stage's peak includes what the one "
            "before left allocated): " + "; ".join(parts) + f". That client grew with the tile count{slope}: the "
            "simplified tile table, the candidate pairs and the task payloads.")


def _revisit_sentence(sc: dict, fit: dict | None) -> str:
    all_rows = sc.get("revisit_curve", {}).get("rows") or []
    rows = [r for r in all_rows if not r.get("max_n_param")]
    capped = [r for r in all_rows if r.get("max_n_param")]
    if len(rows) < 2:
        return ("the combination work grows faster than linearly when the same area is revisited more often "
                "(not measured yet).")
    first, last = rows[0], rows[-1]
    k = [r["factor"] for r in rows]
    ints = [r["intersections"] for r in rows]
    slope = (math.log(ints[-1]) - math.log(ints[0])) / (math.log(k[-1]) - math.log(k[0]))
    cpu_slope = (math.log(max(1e-9, last["cpu_s"])) - math.log(max(1e-9, first["cpu_s"]))) / (math.log(k[-1]) - math.log(k[0]))
    table = " ".join(f"×{r['factor']}: {r['tiles']:,} tiles, {r['intersections']:,} intersections, {r['combinations']:,} "
                     f"combinations up to n = {r['max_n']}, {r['cpu_s']} CPU-s;" for r in rows)
    est20 = 20 ** cpu_slope
    cap = ""
    if capped:
        c = capped[0]
        same = next((r for r in rows if r["factor"] == c["factor"]), None)
        if same:
            cap = (f" Capping the depth does not remove it: at ×{c['factor']}, `--max-n {c['max_n_param']}` still computed "
                   f"{c['intersections']:,} intersections ({c['intersections'] / same['intersections']:.0%} of the uncapped "
                   f"search) in {c['cpu_s']} CPU-s ({c['cpu_s'] / max(1e-9, same['cpu_s']):.0%}), because most of the work is "
                   "at n = 3–6, where every kept tuple meets every tile that overlaps all its members.")
    full = _full_archive_revisits(sc, fit)
    return (f"Algorithm 1 grows every tuple by every tile that overlaps all its members and keeps the `beam` largest "
            f"per size, until no tuple holds a patch. Revisiting a place k times gives each tuple ~k times the "
            f"candidates, makes tuples deeper (the largest n grows with k) and gives k times the seeds. Measured on one "
            f"{sc['revisit_curve'].get('archive_tiles', '?')}-tile archive revisited k times (`revisit_curve`, one "
            f"process): {table} the intersections grow as k^{slope:.2f} and the CPU time as k^{cpu_slope:.2f}. "
            f"Extrapolated (not measured), k = 20 would cost ~{est20:,.0f}× the k = 1 time, for 20× the tiles." + cap + full +
            " So it is growth by revisits, not by area, that breaks planning first. What the design does: the "
            "search is split by component onto the cluster (more workers give the same answer), and a densely "
            "revisited archive is searched with a bound on the candidates per tuple (`--max-candidates`, next "
            "item), which changes Algorithm 1's output by what is measured there.")


def _revisits_fit(sc: dict, peers: dict | None = None) -> dict | None:
    """The full archive revisited 4 times against the base: work, time and the k = 20 extrapolation.

    If ``revisits4`` was run by earlier code (its ``code``), it is compared with the base run by that code.
    """
    b, r = sc.get("base", {}), sc.get("revisits4", {})
    same = (peers or {}).get("before_lean_read", {})
    if r.get("code") and same.get("code") == r["code"] and same.get("cases", {}).get("base", {}).get("combinations"):
        b = {**same["cases"]["base"], "code": r["code"]}
    if not (b.get("counts", {}).get("intersections_evaluated") and r.get("counts", {}).get("intersections_evaluated")):
        return None
    bi, ri = b["counts"]["intersections_evaluated"], r["counts"]["intersections_evaluated"]
    bc, rc = b["combinations"]["cpu_s"], r["combinations"]["cpu_s"]
    slope = math.log(ri / bi) / math.log(4)
    us = rc / ri * 1e6
    deep = {row["factor"]: row for row in sc.get("revisit_curve_deep", {}).get("rows") or [] if not row.get("max_n_param")}
    if 4 in deep and 20 in deep:  # the small archive's growth from k = 4 to 20, applied to the full archive's k = 4
        growth, how = deep[20]["intersections"] / deep[4]["intersections"], "deep"
    else:
        growth, how = 5**slope, "slope"
    est_int = ri * growth
    return {"bi": bi, "ri": ri, "bc": bc, "rc": rc, "slope": slope, "us_base": bc / bi * 1e6, "us": us,
            "growth_4_20": growth, "how": how, "deep": deep,
            "est_intersections": est_int, "est_cpu_h": est_int * us / 1e6 / 3600,
            "max_n": max(int(k) for k in r["counts"]["combinations_by_size"]), "code": b.get("code"),
            "combinations": r["counts"]["combinations"], "base_combinations": b["counts"]["combinations"]}


def _full_archive_revisits(sc: dict, f: dict | None) -> str:
    if not f:
        return ""
    r = sc["revisits4"]
    code = f", both run by the code of {f['code']}" if f.get("code") else ""
    return (f" On the full archive (`revisits4`, measured: {r['work']['tiles']:,} tiles, every place revisited 4 times; "
            f"against the base{code}) the search found "
            f"{f['combinations']:,} combinations (base {f['base_combinations']:,}) up to n = {f['max_n']}, computing "
            f"{f['ri']:,} intersections, {f['ri'] / f['bi']:.1f}× the base's {f['bi']:,}, in {f['rc']:,} CPU-s, "
            f"{f['rc'] / f['bc']:.1f}× the base's {f['bc']} CPU-s: {f['us_base']:.1f} µs per intersection in the base, "
            f"{f['us']:.1f} µs here, so the time is the intersections. Its densest group of components needed "
            f"{r['combinations']['peak_rss_single_gb']} GB in one worker ({r['combinations']['peak_rss_gb']} GB for the "
            f"process tree). The plan after it placed {r['counts']['patches']:,} patches (base "
            f"{sc['base']['counts']['patches']:,}: the same area) with {r['counts']['views']:,} views. Intersections grew "
            f"as k^{f['slope']:.2f} from k = 1 to 4 on this archive. " + _deep_sentence(f) +
            f" Applied to the full archive's k = 4, k = 20 (`revisits20`, not run) would compute "
            f"~{f['est_intersections']:.2g} intersections, ~{f['est_cpu_h']:,.0f} CPU-hours at {f['us']:.0f} µs each "
            "(an extrapolation).")


def _pct(a: float, b: float) -> str:
    return f"{(a / b - 1) * 100:+.2f} %" if b else "–"


def _bound_figures(bd: dict, sc: dict) -> dict | None:
    """What the candidate bound measured (``scale_bound.json``), and revisits20 projected with it."""
    cases = bd.get("cases", {})
    curve, r4, b = cases.get("revisit_bound", {}), cases.get("revisits4_bounded", {}), cases.get("base", {})
    if not (curve.get("rows") and r4.get("planning") and b.get("planning")):
        return None
    rows = {(r["factor"], r["bounded"]): r for r in curve["rows"]}
    k20 = rows.get((20, True))
    us = r4["combinations"]["cpu_s"] / max(1, r4["counts"]["intersections_evaluated"]) * 1e6
    plan_ms = r4["plan"]["cpu_s"] / max(1, r4["counts"]["combinations"]) * 1e3
    out = {"rows": rows, "params": curve.get("bounded_params", {}), "archive_tiles": curve.get("archive_tiles"), "r4": r4, "base": b, "us": us, "plan_ms": plan_ms,
           "slower": b["planning"]["cpu_s"] / max(1e-9, sc.get("base", {}).get("planning", {}).get("cpu_s", 1e9))}
    tiles20 = sc.get("area20", {}).get("work", {}).get("tiles") or 20 * sc.get("base", {}).get("work", {}).get("tiles", 11_636)
    if k20:
        per_tile = tiles20 / k20["tiles"]
        out.update(tiles20=tiles20, ints20=k20["intersections"] * per_tile, combos20=k20["combinations"] * per_tile)
        out["search20_h"] = out["ints20"] * us / 1e6 / 3600
        out["plan20_h"] = out["combos20"] * plan_ms / 1e3 / 3600
    return out


def _bound_sentence(f: dict | None, sc: dict, fit: dict | None = None) -> str:
    if not f:
        return "The candidate bound (`max_candidates`) is not measured yet (`bench_scale.py --results scale_bound`)."
    p, rows, r4, b = f["params"], f["rows"], f["r4"], f["base"]
    parts = []
    for k in sorted({k for k, _ in rows}):
        e, x = rows.get((k, False)), rows.get((k, True))
        if x and e:
            parts.append(f"×{k}: {x['intersections']:,} intersections against {e['intersections']:,} "
                         f"({e['intersections'] / max(1, x['intersections']):.0f}× fewer), {x['combinations_cpu_s']} CPU-s "
                         f"against {e['combinations_cpu_s']}, {x['combinations']:,} combinations against {e['combinations']:,}; "
                         f"the plan: {x['patches']:,} patches ({_pct(x['patches'], e['patches'])}), {x['views']:,} views "
                         f"({_pct(x['views'], e['views'])}), {x['multi_date_patches']:,} multi-date patches "
                         f"({_pct(x['multi_date_patches'], e['multi_date_patches'])})")
        elif x:
            exact = (fit or {}).get("deep", {}).get(k, {}).get("intersections")
            parts.append(f"×{k} (bounded only): {x['intersections']:,} intersections"
                         + (f" (the exact search computed {exact:,} in `revisit_curve_deep`)" if exact else "")
                         + f", {x['combinations_cpu_s']} CPU-s, {x['combinations']:,} combinations up to "
                         f"n = {x['max_n']}, {x['patches']:,} patches, {x['views']:,} views; the plan took {x['plan_cpu_s']} CPU-s")
    ex = sc.get("revisits4", {})
    full = ""
    if ex.get("counts"):
        ec, xc = ex["counts"], r4["counts"]
        exact_vs = f", {fit['rc'] / fit['bc']:.1f}× the base search run beside it" if fit else ""
        full = (f" On the full archive revisited 4 times (`revisits4_bounded`, {r4['work']['tiles']:,} tiles) the bounded "
                f"search computed {xc['intersections_evaluated']:,} intersections (exact: {ec['intersections_evaluated']:,}) in "
                f"{r4['combinations']['cpu_s']} CPU-s, {r4['combinations']['cpu_s'] / max(1e-9, b['combinations']['cpu_s']):.1f}× "
                f"that run's base search ({b['combinations']['cpu_s']} CPU-s; the exact revisits4 search was "
                f"{ex['combinations']['cpu_s']:,} CPU-s on the faster machine{exact_vs}), peak {r4['combinations']['peak_rss_single_gb']} GB in one worker "
                f"(exact: {ex['combinations']['peak_rss_single_gb']} GB). It found {xc['combinations']:,} combinations "
                f"(exact {ec['combinations']:,}), of which {xc['combinations_by_size'].get('2', 0):,} pairs. The plan placed "
                f"{xc['patches']:,} patches ({_pct(xc['patches'], ec['patches'])} against the exact search's {ec['patches']:,}) "
                f"with {xc['views']:,} views ({_pct(xc['views'], ec['views'])} against {ec['views']:,}); "
                f"{xc['multi_date_patches']:,} multi-date patches ({_pct(xc['multi_date_patches'], ec['multi_date_patches'])}). "
                f"Planning in all: {r4['planning']['wall_s']} s wall, {r4['planning']['cpu_s']} CPU-s, "
                f"{r4['planning']['peak_rss_gb']} GB for the process tree.")
    proj = ""
    if f.get("ints20"):
        proj = (f" Applied to `revisits20` ({f['tiles20']:,} tiles; the ×20 row per tile, scaled): the bounded search would "
                f"compute ~{f['ints20']:.2g} intersections, ~{f['search20_h']:.1f} CPU-hours at the {f['us']:.0f} µs each "
                f"measured in `revisits4_bounded`, and write ~{f['combos20']:.2g} combinations. The plan, at the "
                f"{f['plan_ms']:.2f} CPU-ms per combination measured there, would need ~{f['plan20_h']:.1f} CPU-hours: with "
                "the bound the plan, not the search, is what breaks next on a densely revisited archive, because "
                "Algorithm 1 keeps every pair that holds a patch (the pairs grow as k² per place) and the plan tries "
                "each combination's intersection. This run was on a machine "
                f"~{f['slower']:.1f}× slower than the one of the table below (the same base planning took "
                f"{b['planning']['cpu_s']} CPU-s there).")
    return (f"**The candidate bound** (`max_candidates`, `beam` {p.get('beam')} and K = {p.get('max_candidates')}: a kept tuple "
            "grows only by the K tiles with the largest smallest pair overlap with its members) against the exact search "
            f"(beam 16), both followed by the patch plan (`bench_scale.py --results scale_bound`). On the "
            f"{f['archive_tiles']}-tile archive revisited k times (`revisit_bound`, one "
            "process): " + "; ".join(parts) + "." + full + proj)


def _deep_sentence(f: dict) -> str:
    d = f["deep"]
    if f["how"] != "deep":
        return f"At that rate (k^{f['slope']:.2f}) k = 20 computes {f['growth_4_20']:,.0f}× the intersections of k = 4."
    rows = "; ".join(f"×{k}: {d[k]['intersections']:,} intersections, n ≤ {d[k]['max_n']}, {d[k]['cpu_s']} CPU-s"
                     for k in sorted(d))
    ks = sorted(k for k in d if k >= 4)
    loc = ", ".join(f"k^{math.log(d[b]['intersections'] / d[a]['intersections']) / math.log(b / a):.2f} ({a}→{b})"
                    for a, b in zip(ks, ks[1:]))
    return (f"A {d[min(d)]['tiles']}-tile archive revisited up to 20 times (`revisit_curve_deep`, one process) measures "
            f"the growth beyond 4: {rows}; local slopes {loc}; k = 20 computes {f['growth_4_20']:,.0f}× the "
            "intersections of k = 4.")


def _fresh_client_sentence(cl: dict, table: dict) -> str:
    """Client peaks measured with the planning jobs in a process of their own (``scale_client.json``),
    beside the cases of ``table`` (``scale.json``) whose base it names the speed against."""
    sc = cl.get("cases", {})
    rows = [(c, sc[c]) for c in ("base", "area4", "area20") if sc.get(c, {}).get("planning", {}).get("peak_rss_client_gb")]
    if not rows:
        return ""
    def stages(r: dict) -> str:
        got = [f"{s} {r[s]['peak_rss_client_gb']}" for s in ("overlaps", "combinations", "plan")
               if r.get(s, {}).get("peak_rss_client_gb") is not None]
        return f" (peak during {', '.join(got)} GB)" if got else ""

    parts = [f"{c} ({r.get('work', {}).get('tiles', 0):,} tiles) {r['planning']['peak_rss_client_gb']} GB client"
             f"{stages(r)}, {r['planning']['peak_rss_gb']} GB process tree, {r['planning']['wall_s']:.0f} s wall"
             for c, r in rows]
    slope = ""
    if len(rows) >= 2:
        (c0, r0), (c1, r1) = rows[0], rows[-1]
        slope = f" The client still grows, by ~{_client_kb_per_tile(r0, r1):.1f} KB a tile between {c0} and {c1}."
        by_stage = [f"{st} {r1[st]['peak_rss_client_gb'] - r0[st]['peak_rss_client_gb']:+.2f} GB"
                    for st in ("overlaps", "combinations", "plan")
                    if r0.get(st, {}).get("peak_rss_client_gb") is not None and r1.get(st, {}).get("peak_rss_client_gb") is not None]
        if by_stage:
            slope += f" By stage ({c0} to {c1}): {', '.join(by_stage)}."
        slope += (" No job's process reads a footprint: the overlaps job's tasks read `tiles.parquet` a few row groups "
                  "each and write the planning copy (`planning_tiles.parquet`), whose parts the combinations and plan "
                  "tasks read. What the process still holds grows with the archive but is numbers: per tile its id and a "
                  "few integers (reason, envelope, part, component, degree), per candidate pair and edge a few integers "
                  "(the union-find of the components runs on them here), and dask's state of the tasks it schedules.")
    prev = cl.get("previous")
    if prev:
        old = "; ".join(f"{c} {v} GB" for c, v in prev.get("peak_rss_client_gb", {}).items())
        slope += f" Before the planning copy ({prev.get('what', '')}): {old} client."
    speed = ""
    mine, theirs = sc.get("base", {}).get("planning", {}), table.get("base", {}).get("planning", {})
    if mine.get("cpu_s") and theirs.get("cpu_s"):
        speed = (f"; its base planning took {mine['cpu_s'] / theirs['cpu_s']:.2f}× the CPU of the base in the table "
                 "below, so compare its rows with each other")
    return (f" Measured again with the three planning jobs in a fresh process of their own (`bench_scale.py --results "
            f"scale_client`, {cl.get('when', '?')}{speed}), so the client's peak is the jobs' alone and not what "
            f"growing the catalog left allocated: " + "; ".join(parts) + "." + slope)


def _current_section(cl: dict) -> list[str]:
    """The planning path as the code runs it now (``scale_client.json``): the targets and a row per case."""
    sc = cl.get("cases", {})
    rows = [(c, sc[c]) for c in ("base", "area4", "area20") if sc.get(c, {}).get("planning")]
    if not rows:
        return []
    out = [f"## Measured: the planning path as it runs now (`bench_scale.py --only base,area4,area20 --results scale_client`, "
           f"{cl.get('when', '?')})", "",
           "Each case's three planning jobs (overlaps, combinations, plan) run on a local cluster of 2 workers in a fresh "
           "process, from the catalog `index` wrote.", ""]
    base = dict(rows).get("base")
    if base:
        p, rounds = base["planning"], base.get("rounds") or []
        walls = ", ".join(f"{r['wall_s']}" for r in rounds)
        med = (f"median of {len(rounds)} fresh-process rounds ({walls} s)" if len(rounds) > 1 else "one round")
        ok_t, ok_m = p["wall_s"] <= 60, p["peak_rss_gb"] <= 4
        verdict = "met" if ok_t and ok_m else "missed (" + ", ".join(
            x for x, bad in ((f"{p['wall_s']} s > 60 s", not ok_t), (f"{p['peak_rss_gb']} GB > 4 GB", not ok_m)) if bad) + ")"
        out += [f"Base, {base.get('work', {}).get('tiles', 0):,} tiles: **{p['wall_s']} s** wall, {med}; {p['cpu_s']} CPU-s; "
                f"{p['peak_rss_gb']} GB for the process tree, {p['peak_rss_client_gb']} GB in the client. Target ≤ 60 s and "
                f"≤ 4 GB on this 2-core machine: **{verdict}**.", ""]
        a4 = sc.get("area4", {}).get("planning")
        if a4:
            r = a4["wall_s"] / p["wall_s"]
            out += [f"Growth by area ×4: {r:.2f}× the base's wall time (target ≤ 4.5×: {'met' if r <= 4.5 else 'missed'}), "
                    f"{a4['cpu_s'] / p['cpu_s']:.2f}× its CPU.", ""]
    out += ["| case | tiles | wall s: overlaps / combinations / plan | planning wall s | planning CPU s | peak GB (tree) "
            "| client GB: overlaps / combinations / plan | combinations | patches | views | wall × base | CPU × base |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c, r in rows:
        p = r["planning"]
        st = " / ".join(f"{r.get(s, {}).get('wall_s', '–')}" for s in ("overlaps", "combinations", "plan"))
        cg = " / ".join(f"{r.get(s, {}).get('peak_rss_client_gb', '–')}" for s in ("overlaps", "combinations", "plan"))
        bp = base["planning"] if base else None
        rw = f"{p['wall_s'] / bp['wall_s']:.2f}" if bp else "–"
        rc = f"{p['cpu_s'] / bp['cpu_s']:.2f}" if bp else "–"
        n = r.get("counts", {})
        out.append(f"| {c} | {r.get('work', {}).get('tiles', 0):,} | {st} | {p['wall_s']} | {p['cpu_s']} | {p['peak_rss_gb']} | "
                   f"{cg} | {n.get('combinations', 0):,} | {n.get('patches', 0):,} | {n.get('views', 0):,} | {rw} | {rc} |")
    out += ["", "Each case's start and the load average (1 min) then: "
            + ", ".join(f"{c} {r.get('started', '?')} ({r['load_average_1min']})" for c, r in rows if "load_average_1min" in r)
            + ".", ""]
    return out


def main() -> None:
    ext, idx, plan, scale = load("extract"), load("index"), load("plan"), load("scale")
    bound = load("scale_bound")
    view_raw = BANDS * PX * PX * 2
    ratio = ext.get("compression_ratio", 1.876)
    cpu_per_gb = ext["2_workers"]["pipeline_worker_cpu_s_per_gb"]
    views_per_tile = plan["views"] / plan["tiles"]
    patches_per_tile = plan["patches"] / plan["tiles"]
    index_core_rate = idx["products_per_s"] / idx["workers"]
    sc = scale.get("cases", {})
    fit = _revisits_fit(sc, scale.get("peers", {}))
    bfig = _bound_figures(bound, sc)
    client_run = load("scale_client")
    now = client_run.get("cases", {}).get("base", {})
    base = now if now.get("planning") else sc.get("base", {})
    if base.get("planning"):
        plan_cpu_per_tile = base["planning"]["cpu_s"] / base.get("work", {}).get("tiles", 11_636)
        plan_src = "bench_scale.py --results scale_client (base)" if base is now else "bench_scale.py (base)"
    else:
        s = plan["seconds"]
        plan_cpu_per_tile = 2 * (s["overlaps"] + s["combinations"] + s["plan"]) / plan["tiles"]  # 2 busy cores, upper bound
        plan_src = "bench_plan.py wall × 2 cores (upper bound)"
    archives = {
        "SpectralEarth input": {"tiles": 11_636, "views": plan["views"], "patches": plan["patches"]},
        "EnMAP L2A today": {"tiles": 238_000, "views": 238_000 * views_per_tile, "patches": 238_000 * patches_per_tile},
        "SpectralEarth-MM scale (tiles implied)": {"tiles": None, "views": 25_000_000, "patches": 2_000_000},
    }
    rows, stage_rows = [], []
    for name, a in archives.items():
        tiles = a["tiles"] if a["tiles"] else a["views"] / views_per_tile
        raw_tb = a["views"] * view_raw / 1e12
        stored_tb = raw_tb / ratio
        src_tb = tiles * TILE_GRID_PX**2 * TILE_BANDS * 2 / 1e12
        rows.append(f"| {name} | {tiles:,.0f} | {tiles * OBJECTS_PER_TILE:,.0f} | {src_tb:,.1f} | {a['patches']:,.0f} | "
                    f"{a['views']:,.0f} | {raw_tb:,.1f} | {stored_tb:,.1f} |")
        core_h = {
            "index (footprint-only rate)": tiles / index_core_rate / 3600,
            "plan (overlaps + combinations + plan)": tiles * plan_cpu_per_tile / 3600,
            "extract": raw_tb * 1e3 * cpu_per_gb / 3600,
        }
        for stage, h in core_h.items():
            cores = h / 24
            puts = a["views"] / DAY_S if stage == "extract" else 0
            stage_rows.append(f"| {name} | {stage} | {fmt(h)} | {math.ceil(cores)} | {math.ceil(cores / 4)} × 4 cores | "
                              f"{fmt(puts) if puts else '–'} |")
    mm_views = 25_000_000
    lines = [
        "# Scale: the cost model",
        "",
        "Generated by `python benchmarks/scale_model.py` from `benchmarks/results/*.json`; do not edit by hand.",
        "Rates are per core, measured on the 2-core development machine (shared while measured, so",
        "they are conservative). Counts for the 238k-tile archive scale SpectralEarth's measured",
        f"plan ({views_per_tile:.1f} views and {patches_per_tile:.1f} patches per tile); SpectralEarth-MM's",
        "~2 M locations and 25 M patches are taken as 2 M patches of 12.5 views on average (its",
        "> 40 TB holds other modalities and band subsets; the bytes below are this cube's format).",
        "",
        "## Objects and bytes",
        "",
        f"One view = {BANDS} bands × {PX}² px × int16 = {view_raw / 1e6:.2f} MB raw, stored as one object",
        f"(compression {ratio:.3f}×, measured). Source tiles are ~{TILE_GRID_PX} px square with {TILE_BANDS} bands.",
        "",
        "| archive | tiles | source objects | source TB | patches | views (cube objects) | cube raw TB | cube stored TB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "## Core-hours per stage and cluster size for one day",
        "",
        f"Rates: index {index_core_rate:.0f} products/s per core (`index.json`, footprint-only: METADATA.XML; a",
        "pixel index also reads the CLASSES mask), planning "
        f"{plan_cpu_per_tile * 1e3:.1f} CPU-ms per tile ({plan_src}), extraction {cpu_per_gb} CPU-s per GB of views",
        "(`extract.json`, read + encode + write per worker). Workers of 4 cores; PUT/s is the extraction's",
        "average rate over the day.",
        "",
        "| archive | stage | core-hours | cores for 24 h | workers | PUT/s |",
        "|---|---|---:|---:|---:|---:|",
        *stage_rows,
        "",
        "## S3 request rates against per-prefix limits",
        "",
        f"S3 serves at least {GET_PER_PREFIX:,} GET/s and {PUT_PER_PREFIX:,} PUT/s per prefix, and partitions a",
        "bucket's keys into more prefixes as load grows.",
        "",
        f"* **Extraction** writes one object per view: {mm_views:,} PUTs at SpectralEarth-MM scale; at the",
        f"  one-prefix limit that is at least {mm_views / PUT_PER_PREFIX / 3600:.1f} h, below a day, so writes are not",
        "  the bottleneck for a one-day build. Reading the sources is one ranged GET per window row block;",
        "  tasks are per tile, so reads are spread over the tiles' own prefixes.",
        f"* **Training** reads one GET per sample: at 1,000 samples/s per GPU one prefix feeds",
        f"  {GET_PER_PREFIX // 1000} GPUs. This is what breaks first: a 64-GPU job needs ~64,000 GET/s, i.e. ≥ 12",
        "  prefixes. The view chunk keys (`reflectance/c/<view>/0/0/0`) share one prefix until S3 splits it,",
        "  which it does only after sustained throttling (503 SlowDown, which the stream retries). The",
        "  remedies, in order: shard the cube (one object per group of views, ranged GETs: fewer, larger",
        "  requests), or spread views over several cubes/prefixes, or a read cache in front of S3.",
        "",
        "## What else breaks, and what the design does",
        "",
        "* **Statistics**: per-band sums of squares reach 4.4e20 at 25 M views (> int64). The moments are",
        "  exact Python integers merged per task (`pipelines/stats.py`), so they cannot overflow.",
        "* **Planning memory**: edges, combinations and the plan are tables of parquet parts written by",
        "  the dask tasks that compute them (`platform/tables.py`), committed by one manifest write; the",
        "  combination search and the placement run per group of whole connected components. The",
        "  overlaps job's tasks read `tiles.parquet` a few row groups each and write a planning copy of the",
        "  tiles (`planning_tiles.parquet`, Hilbert-ordered parts) from which its exact test and the combinations",
        "  and plan jobs' tasks read their own tiles; the jobs' processes hold ids and integers per tile, integers",
        "  per candidate pair and edge, and the tasks' counts. "
        + _client_memory_sentence(sc, scale.get("peers", {})) + _fresh_client_sentence(client_run, sc),
        "* **Revisits**: " + _revisit_sentence(sc, fit),
        "* " + _bound_sentence(bfig, sc, fit),
        "",
    ]
    lines += _current_section(client_run)
    if sc:
        lines += [f"## Measured: every case, with earlier code (`bench_scale.py`, `scale.json`, {scale.get('when', '?')})", "",
                  "Before the planning copy and the vectorised placement; the machine was faster then (see the "
                  "planning-memory note above for the same base run since).", "",
                  "| case | tiles | planning wall s | planning CPU s | peak GB (tree) | peak GB (client) | edges | combinations | intersections | views | wall × base | CPU × base | work × base (Σd·min(d,16)) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        bcases = bound.get("cases", {})
        later = {f"{c} (later run)" if c == "base" else c: r for c, r in bcases.items() if r.get("planning")}
        for case, r in {**sc, "revisits20": sc.get("revisits20", {}), **later}.items():
            if case in ("pixels", "revisit_curve", "revisit_curve_deep"):
                continue
            p, w = r.get("planning"), r.get("work", {})
            if case == "revisits20" and not p:
                est = "not run"
                if fit:
                    basis = ("revisits4's intersections × their growth from k = 4 to 20 in `revisit_curve_deep`"
                             if fit["how"] == "deep" else f"intersections as k^{fit['slope']:.2f}")
                    est += f": extrapolated ~{fit['est_cpu_h']:,.0f} CPU-hours for the exact combination search alone ({basis}; see Revisits)"
                if bfig and bfig.get("ints20"):
                    est += (f"; with the candidate bound ~{bfig['search20_h']:.1f} CPU-hours of search and ~{bfig['plan20_h']:.1f} "
                            f"of plan for ~{bfig['combos20']:.2g} combinations (see the candidate bound)")
                lines.append(f"| {case} | – | {est} |||||||||||")
                continue
            if not p:
                lines.append(f"| {case} | – | {r.get('error', 'not run')} |||||||||||")
                continue
            rb, wr = r.get("ratio_to_base", {}), r.get("work_ratio_to_base", {})
            home = bcases if case in later else sc  # a later run's rows are set against its own base
            bp, bw = home.get("base", {}).get("planning"), home.get("base", {}).get("work", {})
            if case != "base" and bp and not rb:  # a run of this case alone: ratios to the base on file
                rb = {k: round(p[k] / bp[k], 2) for k in ("wall_s", "cpu_s")}
                wr = {k: round(w[k] / max(1e-9, bw[k]), 2) for k in ("tiles", "edges", "sum_d_min_d_16") if k in w and k in bw}
            ev = r["counts"].get("intersections_evaluated")
            lines.append(f"| {case} | {w.get('tiles', '–'):,} | {p['wall_s']} | {p['cpu_s']} | {p['peak_rss_gb']} | "
                         f"{p.get('peak_rss_client_gb', '–')} | "
                         f"{r['counts']['edges']:,} | {r['counts']['combinations']:,} | {f'{ev:,}' if ev else '–'} | {r['counts']['views']:,} | "
                         f"{rb.get('wall_s', '–')} | {rb.get('cpu_s', '–')} | {wr.get('sum_d_min_d_16', '–')} |")
        lines.append("")
        notes = [f"* {c}: {r['note']}" for c, r in sc.items() if r.get("note")]
        if later:
            notes.append("* " + ", ".join(later) + f": a later run (`benchmarks/results/scale_bound.json`, {bound.get('when', '?')}) "
                         "on a slower machine; their ratios are to the base of that run. "
                         + ", ".join(f"{c} ran with combination parameters {r.get('combination_params')}" for c, r in later.items()
                                     if (r.get("combination_params") or {}).get("max_candidates")))
        if notes:
            lines += [*notes, ""]
        lines += [f"Load average (1 min) when each case started: "
                  + ", ".join(f"{c} {r['load_average_1min']}" for c, r in sc.items() if "load_average_1min" in r) + ".", ""]
        px = sc.get("pixels")
        if px:
            lines += ["## Measured: a pixel build of a medium archive (`bench_scale.py`, case `pixels`)", ""]
            if px.get("error"):
                lines.append(f"Failed: {px['error']}")
            else:
                b = px.get("build", {})
                a = px.get("archive", {})
                lines.append(f"`build` of a synthetic archive ({a.get('tiles', '?')} tiles × {a.get('tile_size', '?')} px, 224 bands) "
                             "on a local cluster of 2 workers: "
                             f"**{px.get('views', 0):,} views** in {b.get('wall_s', '–')} s wall, {b.get('cpu_s', '–')} CPU-s, "
                             f"peak {b.get('peak_rss_gb', '–')} GB for the process tree.")
            lines.append("")
    DOC.write_text("\n".join(lines))
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
