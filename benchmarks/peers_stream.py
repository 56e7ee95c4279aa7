"""The peers of the stream benchmark: MosaicML Streaming (MDS shards) and LitData, over the same S3.

Runs in its own virtual environment (``benchmarks/peers-requirements.txt``): both
libraries pull in boto3, and a boto3 newer than aiobotocore's pinned botocore breaks
s3fs in the project's environment. ``bench_stream_https.py`` starts it with the
views as one ``.npy`` file and the S3 settings in the environment
(``AWS_*``, ``AWS_CA_BUNDLE``, ``S3_ENDPOINT_URL``/``AWS_ENDPOINT_URL``). Prints one
JSON object: per library, the write time and the read passes (cold local cache
each pass: each library caches shards on local disk).

    python benchmarks/peers_stream.py VIEWS.npy s3://bench --workers 2 --repeats 3 --batch-size 8
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np


def _cpu_children_and_self() -> float:
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def _pass(make_loader) -> dict:
    """One pass: wall time, CPU of this process and its workers (sampled while they live)."""
    import psutil

    c0 = _cpu_children_and_self()
    t0 = time.perf_counter()
    loader = make_loader()
    samples, first, workers_cpu = 0, None, {}
    for batch in loader:
        if first is None:
            first = time.perf_counter() - t0
        image = batch["image"] if isinstance(batch, dict) else batch
        samples += int(image.shape[0])
        for p in psutil.Process().children(recursive=True):
            try:
                t = p.cpu_times()
                workers_cpu[p.pid] = max(workers_cpu.get(p.pid, 0.0), t.user + t.system)
            except psutil.Error:
                pass
    own0 = resource.getrusage(resource.RUSAGE_SELF)
    del loader  # joins the workers (their CPU is then in RUSAGE_CHILDREN)
    wall = time.perf_counter() - t0
    own = resource.getrusage(resource.RUSAGE_SELF)
    return {"samples": samples, "seconds": wall, "first_batch_s": first or 0.0,
            "consumer_cpu": own0.ru_utime + own0.ru_stime, "workers_cpu": sum(workers_cpu.values()),
            "cpu_total_delta": _cpu_children_and_self() - c0, "own_cpu_end": own.ru_utime + own.ru_stime}


def _summary(passes: list[dict]) -> dict:
    for p in passes:
        # CPU of the pass: this process and its workers; reaped workers are in the rusage
        # delta, workers that outlive the pass (forkserver) only in the sampled figure
        p["cpu_seconds"] = max(p["cpu_total_delta"], p["workers_cpu"])
        p["samples_per_s"] = p["samples"] / p["seconds"]
        p["samples_per_cpu_s"] = p["samples"] / p["cpu_seconds"] if p["cpu_seconds"] else 0.0
    return {"samples_per_s": statistics.median(p["samples_per_s"] for p in passes),
            "samples_per_cpu_s": statistics.median(p["samples_per_cpu_s"] for p in passes),
            "passes": passes}


def run_mds(views, remote: str, args) -> dict:
    import numpy as np
    import torch
    from streaming import MDSWriter, StreamingDataset

    n, *shape = views.shape
    t0 = time.perf_counter()
    with MDSWriter(out=f"{remote}/mds", columns={"image": f"ndarray:int16:{','.join(map(str, shape))}"},
                   compression="zstd", size_limit=1 << 26) as out:
        for i in range(n):
            out.write({"image": np.ascontiguousarray(views[i])})
    write_s = time.perf_counter() - t0
    passes = []
    for r in range(args.repeats + 1):
        cache = tempfile.mkdtemp(prefix="mds-cache-")

        def make():
            from streaming.base.util import clean_stale_shared_memory

            clean_stale_shared_memory()
            ds = StreamingDataset(remote=f"{remote}/mds", local=cache, shuffle=False, batch_size=args.batch_size)
            return torch.utils.data.DataLoader(ds, batch_size=args.batch_size, num_workers=args.workers,
                                               pin_memory=True)

        p = _pass(make)
        shutil.rmtree(cache, ignore_errors=True)
        if r:  # the first pass warms the server's page cache and is left out
            passes.append(p)
    return {"write_s": write_s, **_summary(passes)}


def run_litdata(views, remote: str, args) -> dict:
    import litdata

    if os.environ["AWS_ENDPOINT_URL"].startswith("http://"):
        # LitData builds its obstore S3Store with fixed client options (no environment), and object_store
        # refuses plain http:// unless the client allows it: the one setting a user of such an endpoint adds
        import litdata.streaming.downloader as lit_dl

        lit_dl._OBSTORE_CLIENT_OPTIONS = {**lit_dl._OBSTORE_CLIENT_OPTIONS, "allow_http": "true"}
    n = views.shape[0]
    t0 = time.perf_counter()
    out_dir = f"{remote}/litdata"
    litdata.optimize(fn=_lit_item, inputs=list(range(n)), output_dir=out_dir, chunk_bytes="64MB",
                     compression="zstd", num_workers=1, mode="overwrite")
    write_s = time.perf_counter() - t0
    options = {"endpoint_url": os.environ["AWS_ENDPOINT_URL"]}
    passes = []
    for r in range(args.repeats + 1):
        cache = tempfile.mkdtemp(prefix="lit-cache-")

        def make():
            ds = litdata.StreamingDataset(litdata.streaming.resolver.Dir(path=cache, url=out_dir), shuffle=False,
                                          storage_options=options)
            return litdata.StreamingDataLoader(ds, batch_size=args.batch_size, num_workers=args.workers,
                                               pin_memory=True)

        p = _pass(make)
        shutil.rmtree(cache, ignore_errors=True)
        if r:
            passes.append(p)
    return {"write_s": write_s, **_summary(passes)}


_VIEWS = None


def _lit_item(i: int) -> dict:  # noqa: D103
    global _VIEWS
    if _VIEWS is None:  # in litdata's (spawned) optimize worker
        _VIEWS = np.load(os.environ["PEERS_VIEWS"], mmap_mode="r")
    return {"image": np.asarray(_VIEWS[i])}


def main() -> None:
    global _VIEWS
    import numpy as np

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("views", help=".npy file of int16 views (n, bands, y, x)")
    ap.add_argument("remote", help="S3 prefix, e.g. s3://bench")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--only", choices=["mds", "litdata"], default=None)
    args = ap.parse_args()
    os.environ["PEERS_VIEWS"] = os.path.abspath(args.views)
    _VIEWS = views = np.load(args.views, mmap_mode="r")
    out: dict = {"views": int(views.shape[0]), "workers": args.workers, "batch_size": args.batch_size}
    import importlib.metadata as md

    for name, fn, dist in (("mosaicml_streaming", run_mds, "mosaicml-streaming"), ("litdata", run_litdata, "litdata")):
        if args.only and not name.startswith(args.only[:3]):
            continue
        try:
            out[name] = {"version": md.version(dist), **fn(views, args.remote.rstrip("/"), args)}
        except Exception as exc:  # noqa: BLE001 - reported, the other peer still runs
            out[name] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
        print(name, json.dumps({k: v for k, v in out[name].items() if k != "passes"}), file=sys.stderr, flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
