"""Benchmark: publishing the patch items of the full-archive simulation, against pystac's static save.

The footprint-only simulation of SpectralEarth's archive (11,636 tiles, as in
``bench_plan.py``) is planned; its plan becomes a *footprint-only cube*: every index
array of the cube contract (patch grid, views, times, tiles, bands) and no pixel chunk.
``publish_patches`` then writes one item per patch without thumbnails (Hilbert-sorted
stac-geoparquet). The peer, measured in the same run: pystac's own static catalog of
10,000 of those items (``Catalog.add_items`` + ``normalize_hrefs`` + ``save``
SELF_CONTAINED), reported as items per second and as a ratio.

Writes ``benchmarks/results/publish.json``; keeps the published catalog in the workdir
for ``bench_search.py``.
Run: ``python benchmarks/bench_publish.py --workdir DIR [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import PeakRSS, write_result  # noqa: E402

def ensure_plan(work: Path, tiles: int, seed: int) -> Path:
    """The footprint-only archive, its catalog and plan (made once, kept in ``work``)."""
    from spectralearth.catalog import index_archive
    from spectralearth.catalog.synth import SynthConfig, synthesize_archive
    from spectralearth.pipelines.combinations import combinations_job
    from spectralearth.pipelines.overlaps import overlaps_job
    from spectralearth.pipelines.plan import PlanParams, plan_job
    from spectralearth.platform.cluster import ClusterSpec

    catalog = work / "catalog"
    if (catalog / "patches.parquet").exists() or (work / "done").exists():
        return catalog
    if not (work / "archive.done").exists():
        synthesize_archive(str(work / "archive"), SynthConfig(tiles=tiles, footprints_only=True, seed=seed, compact_xml=True))
        (work / "archive.done").write_text("ok")
    sync = ClusterSpec(kind="sync")
    index_archive(str(work / "archive"), catalog_url=str(catalog), cluster=sync)
    overlaps_job(str(catalog), cluster=sync)
    combinations_job(str(catalog), cluster=sync)
    plan_job(str(catalog), params=PlanParams(), cluster=sync)
    return catalog


def commit_index_only(url: str, arrays: dict, *, n_bands_from: tuple, attrs: dict) -> str:
    """Commit a cube version whose build holds only the index arrays (no view chunk); returns its id.

    ``n_bands_from``: (wavelength, fwhm, band numbers) of the stored bands.
    """
    import hashlib
    from datetime import datetime, timezone

    import numpy as np

    from spectralearth.platform.cube import Version, build_url, commit_version, write_index

    wl, fwhm, bands = n_bands_from
    n_views, n_patches = len(arrays["view_patch"]), len(arrays["patch_view_start"])
    build = hashlib.sha256(f"footprints|{n_patches}|{n_views}|{sorted(attrs.items())}".encode()).hexdigest()[:16]
    index = {**arrays, "view_key": np.arange(n_views, dtype=np.int64), "view_build": np.zeros(n_views, np.int32),
             "view_slot": np.arange(n_views, dtype=np.int64), "band": np.asarray(bands, np.int16),
             "wavelength": np.asarray(wl, np.float32), "fwhm": np.asarray(fwhm, np.float32)}
    group_attrs = {"spectralearth:patch_px": 128, "spectralearth:bands": [int(b) for b in bands],
                   "spectralearth:n_views": n_views, "spectralearth:n_patches": n_patches, **attrs}
    write_index(f"{build_url(url, build)}/index", index, attrs=group_attrs)
    v = commit_version(url, Version(sequence=1, build=build, builds=(build,), run_id=build,
                                    created=datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
                                    counts={"views": n_views, "patches": n_patches, "bands": len(bands), "new_views": n_views,
                                            "reused_views": 0}, attrs=group_attrs))
    return v.id


def _stored_bands():
    import numpy as np

    from spectralearth.catalog.synth.spectra import band_table
    from spectralearth.pipelines.extract import SPECTRALEARTH_BANDS

    wl, fwhm = band_table()
    sel = np.asarray(SPECTRALEARTH_BANDS) - 1
    return wl[sel], fwhm[sel], tuple(SPECTRALEARTH_BANDS)


def footprint_cube(catalog: Path, url: str) -> tuple[int, int]:
    """Commit a cube with the plan's index arrays and no pixels; returns (patches, views)."""
    import numpy as np

    from spectralearth.pipelines.plan import read_plan

    patches, views = read_plan(str(catalog))
    vt = views["datetime"]
    arrays = {
        "view_patch": views["patch"].to_numpy(np.int64),
        "view_time": (vt.dt.tz_localize(None) if vt.dt.tz is not None else vt).to_numpy("datetime64[us]"),
        "view_tile": views["tile"].to_numpy(np.int32),
        "patch_view_start": patches["view_start"].to_numpy(np.int64),
        "patch_view_count": patches["n_views"].to_numpy(np.int16),
        "patch_crs": patches["crs"].to_numpy(np.int32),
        "patch_x0": patches["x0"].to_numpy(np.float64),
        "patch_y0": patches["y0"].to_numpy(np.float64),
        "patch_lon": patches["lon"].to_numpy(np.float64),
        "patch_lat": patches["lat"].to_numpy(np.float64),
    }
    commit_index_only(url, arrays, n_bands_from=_stored_bands(),
                      attrs={"spectralearth:source_catalog": str(catalog), "spectralearth:footprints_only": True})
    return len(patches), len(views)


def scattered_cube(url: str, n_patches: int, n_views: int, seed: int) -> tuple[int, int]:
    """A footprint-only cube of ``n_patches`` patches scattered over land (the synthetic archive's land
    mask) with ``n_views`` views in all, on UTM grids; the stand-in for the plan when it is not at hand."""
    import numpy as np
    from pyproj import Transformer

    from spectralearth.catalog.synth.land import sample_land

    rng = np.random.default_rng([seed, 0x9B])
    lon, lat = sample_land(rng, n_patches)
    zone = np.floor((lon + 180) / 6).astype(int) % 60 + 1
    crs = np.where(lat >= 0, 32600, 32700) + zone
    x0, y0 = np.zeros(n_patches), np.zeros(n_patches)
    for c in np.unique(crs):
        sel = crs == c
        x, y = Transformer.from_crs(4326, int(c), always_xy=True).transform(lon[sel], lat[sel])
        x0[sel], y0[sel] = np.round(x / 30) * 30 - 1920, np.round(y / 30) * 30 + 1920
    extra = n_views - n_patches  # spread over ~16 % of the patches, 2-4 views each (the plan's shape)
    counts = np.ones(n_patches, np.int64)
    multi = rng.choice(n_patches, size=min(n_patches, max(1, extra // 2)), replace=False)
    np.add.at(counts, multi, 1)
    rest = n_views - counts.sum()
    if rest > 0:
        np.add.at(counts, rng.choice(multi, size=rest), 1)
    vp = np.repeat(np.arange(n_patches), counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    vt = np.datetime64("2022-04-01T10:00:00", "us") + rng.integers(0, 1000 * 86400, vp.size).astype("timedelta64[s]").astype("timedelta64[us]")
    arrays = {"view_patch": vp, "view_time": vt, "view_tile": rng.integers(0, 11636, vp.size).astype(np.int32),
              "patch_view_start": starts, "patch_view_count": counts.astype(np.int16), "patch_crs": crs.astype(np.int32),
              "patch_x0": x0, "patch_y0": y0, "patch_lon": lon, "patch_lat": lat}
    commit_index_only(url, arrays, n_bands_from=_stored_bands(),
                      attrs={"spectralearth:footprints_only": True, "spectralearth:layout": "scattered"})
    return n_patches, int(vp.size)


def _committed(cube: str) -> bool:
    from spectralearth.platform.cube import list_versions

    return bool(list_versions(cube))


def first_items(catalog: str, n: int) -> list[dict]:
    """The first ``n`` published items (from the first part files, in order)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from stac_geoparquet.arrow import stac_table_to_items

    from spectralearth.catalog.patches import published_versions, version_files

    tables, rows = [], 0
    for path in version_files(catalog, published_versions(catalog)[-1]):
        if rows >= n:
            break
        tables.append(pq.read_table(path))
        rows += tables[-1].num_rows
    table = pa.concat_tables(tables).slice(0, n)
    return [dict(it) for it in stac_table_to_items(table)]


def pystac_static_save(items: list[dict], out: str) -> tuple[float, float]:
    """(wall, CPU) seconds for pystac to save ``items`` as a self-contained static catalog."""
    import pystac

    t, cpu = time.perf_counter(), time.process_time()
    cat = pystac.Catalog(id="peer", description="pystac static catalog peer")
    cat.add_items([pystac.Item.from_dict(it) for it in items])
    cat.normalize_hrefs(out)
    cat.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return time.perf_counter() - t, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", required=True, help="keeps the archive, plan, cube and published catalog (reused by bench_search.py)")
    ap.add_argument("--tiles", type=int, default=11_636)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=3, help="publish rounds (median reported)")
    ap.add_argument("--peer-items", type=int, default=10_000)
    ap.add_argument("--layout", choices=("plan", "scattered"), default="plan",
                    help="plan: the full-archive simulation's plan; scattered: as many patches and views "
                         "(431,101 / 519,193, from results/plan.json) scattered over land, when the plan is not at hand")
    args = ap.parse_args()

    from spectralearth.catalog.patches import publish_patches

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    cube = str(work / f"cube-footprints-{args.layout}.zarr")
    if args.layout == "plan":
        catalog = ensure_plan(work, args.tiles, args.seed)
        if not _committed(cube):
            shutil.rmtree(cube, ignore_errors=True)
            footprint_cube(catalog, cube)
    else:
        import json

        plan = json.loads((Path(__file__).resolve().parent / "results" / "plan.json").read_text())
        catalog = work / "catalog-scattered"
        catalog.mkdir(exist_ok=True)
        if not _committed(cube):
            shutil.rmtree(cube, ignore_errors=True)
            scattered_cube(cube, int(plan["patches"]), int(plan["views"]), args.seed)
    prep_s = time.perf_counter() - t
    rounds = []
    with PeakRSS() as rss:
        for r in range(args.rounds):
            shutil.rmtree(catalog / "patches", ignore_errors=True)
            cpu = time.process_time()
            rep = publish_patches(cube, str(catalog), thumbnails=False)
            rounds.append({**rep.to_dict(), "cpu_s": round(time.process_time() - cpu, 2), "load_avg_1min": round(os.getloadavg()[0], 1)})
            print(f"round {r}: {rep.items} items in {rep.seconds:.1f} s {rep.stages}", flush=True)
    items = first_items(str(catalog), args.peer_items)
    peer = []
    for _ in range(max(1, args.rounds)):
        with tempfile.TemporaryDirectory(prefix="bench-pystac-") as tmp:
            peer.append(pystac_static_save(items, tmp))
    secs = [r["seconds"] for r in rounds]
    cpus = [r["cpu_s"] for r in rounds]
    n = rounds[-1]["items"]
    ours = n / statistics.median(secs)
    theirs = len(items) / statistics.median([p[0] for p in peer])
    ours_cpu = n / statistics.median(cpus)
    theirs_cpu = len(items) / statistics.median([p[1] for p in peer])
    result = {
        "layout": args.layout,
        "items": n,
        "views": rounds[-1]["views"],
        "files": rounds[-1]["files"],
        "publish_s": {"median": round(statistics.median(secs), 2), "min": round(min(secs), 2), "max": round(max(secs), 2), "rounds": secs},
        "publish_stages_s": rounds[-1]["stages"],
        "publish_cpu_s": {"median": round(statistics.median(cpus), 2), "rounds": cpus},
        "load_avg_1min": [r["load_avg_1min"] for r in rounds],
        "publish_items_per_s": round(ours, 1),
        "target_s": 120,
        "peer": {"what": "pystac Catalog.add_items + normalize_hrefs + save(SELF_CONTAINED)", "items": len(items),
                 "seconds": [round(p[0], 2) for p in peer], "cpu_s": [round(p[1], 2) for p in peer],
                 "items_per_s": round(theirs, 1), "items_per_cpu_s": round(theirs_cpu, 1)},
        "ratio_items_per_s_vs_pystac": round(ours / theirs, 1),
        "ratio_items_per_cpu_s_vs_pystac": round(ours_cpu / theirs_cpu, 1),
        "peak_rss_gb": round(rss.peak_total / 2**30, 2),
        "prep_s": round(prep_s, 1),
    }
    path = write_result("publish" if args.layout == "plan" else "publish_scattered", result)
    print(path)
    for k in ("items", "publish_s", "publish_items_per_s", "peer", "ratio_items_per_s_vs_pystac", "peak_rss_gb"):
        print(f"{k:>30}: {result[k]}")


if __name__ == "__main__":
    main()
