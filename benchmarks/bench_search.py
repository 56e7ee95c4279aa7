"""Benchmark: search latency of the STAC API on both backends over the full-scale patch items.

Uses the catalog ``bench_publish.py`` left in ``--workdir`` (~430k patch items of the
full-archive simulation). Each backend is served on loopback (embedded geoparquet, and
pgstac on a throw-away PostgreSQL loaded with pypgstac) and driven by a bounded load:
``--requests`` requests per query kind from ``--clients`` client threads, nothing else.

Query kinds: ``bbox+datetime`` (limit 100; half the boxes around patches, half in places
with no patch, e.g. oceans), ``bbox+datetime full page`` (limit 100, boxes grown around
a patch until they hold at least 200 patches, datetime over the whole archive: a page of
100 items each), and ``item by id`` (``/collections/{id}/items/{item}``).
Reports p50/p95/p99 (ms) per kind and backend, hits per query, the machine's 1-minute load
average before and after, and the target (p95 <= 150 ms).

Writes ``benchmarks/results/search.json``.
Run: ``python benchmarks/bench_search.py --workdir DIR [--requests 200] [--clients 1]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import write_result  # noqa: E402

COLLECTION = "spectralearth-patches"


def _queries(catalog: str, n: int, seed: int) -> dict[str, list[str]]:
    from spectralearth.catalog.api.browse import PatchLookup

    look = PatchLookup(catalog, None)
    rng = np.random.default_rng(seed)
    lon, lat = look.lon, look.lat
    bbox_q = []
    for k in range(n):
        if k % 2 == 0:  # around a patch: 0.2-1 degree boxes
            i = rng.integers(len(lon))
            h = rng.uniform(0.1, 0.5)
            b = [lon[i] - h, lat[i] - h, lon[i] + h, lat[i] + h]
        else:  # where no patch is: a box far from every patch centre
            while True:
                x, y = rng.uniform(-175, 175), rng.uniform(-60, 75)
                h = rng.uniform(0.1, 0.5)
                if not np.any((np.abs(lon - x) < h + 0.2) & (np.abs(lat - y) < h + 0.2)):
                    b = [x - h, y - h, x + h, y + h]
                    break
        year = int(rng.integers(2022, 2025))
        dt = f"{year}-01-01T00:00:00Z/{year}-12-31T23:59:59Z"
        bbox_q.append(f"/search?collections={COLLECTION}&bbox={','.join(f'{v:.4f}' for v in b)}&datetime={dt}&limit=100")
    full_q = []
    for _ in range(n):  # a box around a patch grown until it holds >= 200 patch centres: full pages
        i, h = rng.integers(len(lon)), 0.25
        while np.count_nonzero((np.abs(lon - lon[i]) <= h) & (np.abs(lat - lat[i]) <= h)) < 200 and h < 20:
            h *= 1.5
        b = [lon[i] - h, lat[i] - h, lon[i] + h, lat[i] + h]
        dt = "2022-01-01T00:00:00Z/2025-12-31T23:59:59Z"
        full_q.append(f"/search?collections={COLLECTION}&bbox={','.join(f'{v:.4f}' for v in b)}&datetime={dt}&limit=100")
    ids = [f"patch-{int(p):07d}-{look.version}" for p in rng.integers(len(lon), size=n)]
    id_q = [f"/collections/{COLLECTION}/items/{i}" for i in ids]
    return {"bbox+datetime": bbox_q, "bbox+datetime full page": full_q, "item by id": id_q}


def _drive(url: str, paths: list[str], clients: int) -> tuple[list[float], list[int]]:
    lat, hits, lock = [], [], threading.Lock()
    todo = list(paths)

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                p = todo.pop()
            t = time.perf_counter()
            with urllib.request.urlopen(url + p, timeout=60) as r:
                body = json.loads(r.read())
            dt = (time.perf_counter() - t) * 1000
            with lock:
                lat.append(dt)
                hits.append(len(body.get("features", [])) if body.get("type") == "FeatureCollection" else 1)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return lat, hits


def _stats(lat: list[float]) -> dict:
    a = np.asarray(lat)
    return {"n": len(a), "p50_ms": round(float(np.percentile(a, 50)), 1), "p95_ms": round(float(np.percentile(a, 95)), 1),
            "p99_ms": round(float(np.percentile(a, 99)), 1), "mean_ms": round(float(a.mean()), 1)}


def measure(url: str, queries: dict[str, list[str]], clients: int) -> dict:
    out = {}
    for kind, paths in queries.items():
        _drive(url, paths[:10], 1)  # warm-up (caches, connections)
        lat, hits = _drive(url, paths, clients)
        out[kind] = {**_stats(lat), "hits_median": statistics.median(hits), "queries_without_hits": int(sum(h == 0 for h in hits))}
        if kind == "bbox+datetime":
            empty = [t for t, h in zip(lat, hits, strict=True) if h == 0]
            if empty:
                out[kind]["no_hit_only"] = _stats(empty)
        print(f"  {kind}: {out[kind]}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", required=True, help="the workdir of bench_publish.py")
    ap.add_argument("--requests", type=int, default=200, help="requests per query kind and backend")
    ap.add_argument("--clients", type=int, default=1, help="concurrent client threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backends", default="geoparquet,pgstac")
    ap.add_argument("--layout", choices=("plan", "scattered"), default="plan", help="which catalog of bench_publish.py")
    args = ap.parse_args()

    from spectralearth.catalog.api import PgstacServer, ServeConfig, create_app, load_pgstac
    from spectralearth.catalog.api.thread import ServerThread

    catalog = str(Path(args.workdir) / ("catalog" if args.layout == "plan" else "catalog-scattered"))
    queries = _queries(catalog, args.requests, args.seed)
    result = {"layout": args.layout, "requests_per_kind": args.requests, "clients": args.clients, "target_p95_ms": 150, "backends": {}}
    for backend in args.backends.split(","):
        print(backend, flush=True)
        pg = None
        saved = dict(os.environ)
        try:
            if backend == "pgstac":
                pg = PgstacServer().start()
                t = time.perf_counter()
                counts = load_pgstac(catalog, pg.dsn)
                load_s = time.perf_counter() - t
                os.environ.update(pg.env)
            t = time.perf_counter()
            app = create_app(ServeConfig(catalog_url=catalog, backend=backend))
            with ServerThread(app) as srv:
                start_s = time.perf_counter() - t
                load_before = os.getloadavg()[0]
                res = measure(srv.url, queries, args.clients)
            res["startup_s"] = round(start_s, 2)
            res["load_avg_1min"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]  # before, after
            if pg:
                res["load_s"], res["loaded_items"] = round(load_s, 1), counts
            result["backends"][backend] = res
        finally:
            os.environ.clear()
            os.environ.update(saved)
            if pg:
                pg.stop()
    path = write_result("search" if args.layout == "plan" else "search_scattered", result)
    print(path)


if __name__ == "__main__":
    main()
