"""Whole-object GETs over HTTPS: obstore's own GET against a hand-written receive path.

The stream once received S3 bodies itself (obstore presigned the GET, ``http.client``
read the body into a reused buffer). This measures whether that still pays over TLS:
the same objects from the same HTTPS SeaweedFS server, the same threads, CPU time of
this process (all threads) per gigabyte and wall-clock throughput. Median of
``--repeats`` rounds; both paths alternate within a round. Writes
``benchmarks/results/tls_get.json``.

    python benchmarks/bench_tls_get.py [--objects 120 --size-mb 3.3 --threads 4]
"""

from __future__ import annotations

import argparse
import http.client
import os
import resource
import secrets
import ssl
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import write_result  # noqa: E402

from spectralearth.platform.seaweed import SeaweedServer  # noqa: E402


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--objects", type=int, default=120)
    ap.add_argument("--size-mb", type=float, default=3.3, help="object size (a 202-band 128 px view, compressed)")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)

    import obstore
    from obstore.store import S3Store

    size = int(args.size_mb * 1e6)
    with tempfile.TemporaryDirectory(prefix="bench-tls-") as tmp:
        secret = secrets.token_hex(16)
        with SeaweedServer(Path(tmp) / "s3", access_key="bench", secret_key=secret, tls=True,
                           die_with_parent=True) as s3:
            s3.create_bucket("bench")
            ca = s3.ca_file.read_text()
            store = S3Store("bench", config={"endpoint": s3.endpoint_url, "region": "us-east-1",
                                             "access_key_id": "bench", "secret_access_key": secret},
                            client_options={"root_certificate": ca, "timeout": "60s"})
            payload = os.urandom(size)
            keys = [f"obj/{i:04d}" for i in range(args.objects)]
            for k in keys:
                obstore.put(store, k, payload)
            context = ssl.create_default_context(cafile=str(s3.ca_file))
            local = __import__("threading").local()

            def via_obstore(key: str) -> int:
                return len(memoryview(obstore.get(store, key).bytes()))

            def via_http_client(key: str) -> int:
                url = obstore.sign(store, "GET", key, timedelta(minutes=5))
                parts = urlsplit(url)
                conn = getattr(local, "conn", None)
                if conn is None:
                    conn = local.conn = http.client.HTTPSConnection(parts.hostname, parts.port, context=context)
                buf = getattr(local, "buf", None)
                if buf is None:
                    buf = local.buf = bytearray(size)
                conn.request("GET", f"{parts.path}?{parts.query}")
                resp = conn.getresponse()
                view, got = memoryview(buf), 0
                while got < resp.length:
                    n = resp.readinto(view[got:resp.length])
                    if not n:
                        raise http.client.IncompleteRead(b"")
                    got += n
                resp.close()
                return got

            paths = {"obstore_get": via_obstore, "http_client_readinto": via_http_client}
            rounds: dict[str, list[dict]] = {k: [] for k in paths}
            for _ in range(args.repeats + 1):  # the first round warms connections and is left out
                for name, fn in paths.items():
                    with ThreadPoolExecutor(args.threads) as pool:
                        c0, t0 = _cpu(), time.perf_counter()
                        total = sum(pool.map(fn, keys))
                        wall, cpu = time.perf_counter() - t0, _cpu() - c0
                    assert total == size * len(keys)
                    rounds[name].append({"gb": total / 1e9, "wall_s": wall, "cpu_s": cpu})
            summary = {}
            for name, rs in rounds.items():
                rs = rs[1:]
                summary[name] = {
                    "cpu_s_per_gb": statistics.median(r["cpu_s"] / r["gb"] for r in rs),
                    "cpu_s_per_gb_range": [min(r["cpu_s"] / r["gb"] for r in rs), max(r["cpu_s"] / r["gb"] for r in rs)],
                    "gb_per_s": statistics.median(r["gb"] / r["wall_s"] for r in rs),
                    "rounds": rs,
                }
            ratio = summary["http_client_readinto"]["cpu_s_per_gb"] / summary["obstore_get"]["cpu_s_per_gb"]
            result = {
                "objects": args.objects, "object_bytes": size, "threads": args.threads, "repeats": args.repeats,
                "load_avg": os.getloadavg()[0], "paths": summary,
                "hand_written_cpu_ratio": ratio,
                "note": "CPU of this process only (the server's is left out); the hand-written path is kept "
                        "only if its CPU per GB is clearly below obstore's",
            }
            path = write_result("tls_get", result)
            for name, s in summary.items():
                print(f"{name:24s} {s['cpu_s_per_gb']:.3f} CPU-s/GB  {s['gb_per_s']:.3f} GB/s")
            print(f"hand-written / obstore CPU per GB: {ratio:.2f}  -> {path}")


if __name__ == "__main__":
    main()
