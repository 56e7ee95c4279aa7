"""The figures a training user plans with: the stream over HTTPS S3, and its peers on the same views.

One run, one cube, one machine. A SeaweedFS server serving TLS (throw-away CA,
``AWS_CA_BUNDLE``) holds the cube; the recommended setup reads it: DataLoader
workers (``--context``, default fork: this process has only read the index), ``pin_memory=True``, the stream batching itself. Writes
``benchmarks/results/stream_https.json``:

* ``floor``: the same chunk objects decoded in memory by one thread (samples per CPU-second);
* ``stream``: samples/s and samples per CPU-second (workers and the consuming process),
  each pass a fresh stream (index read, new connections); ``vs_floor``;
* ``fork_fallback``: workers forked after this process read S3 with obstore, which then
  read with s3fs (logged), against the main figure; ``after_parent_read_forkserver``: the
  same situation handled as ``stream.loader()`` does (forkserver preloading the stream);
* ``peers``: MosaicML Streaming (MDS shards, zstd) and LitData (zstd chunks) written from
  the same views to the same server and read with the same workers and batch size, each
  pass with an empty local cache (``benchmarks/peers_stream.py``, in the virtual
  environment ``--peers-python`` names; left out when it is not given);
  ``--peers-over http`` gives the peers the same server's plain-HTTP port (LitData reads and
  writes through obstore, which takes no private CA) and measures the stream there too
  (``stream_http``): the comparison is then made over HTTP, stream against peers;
* ``planning``: cores to feed 1,000 samples/s and the shared memory (``/dev/shm``) the
  DataLoader needs.

CPU of the S3 server is left out (in production it is a remote service).

    python benchmarks/bench_stream_https.py [--patches 150 --workers 2 --peers-python /path/to/venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import RESULTS, write_result  # noqa: E402
from bench_stream import decode_floor, median_run  # noqa: E402

from spectralearth.platform.cube import open_cube  # noqa: E402
from spectralearth.platform.samplecube import SampleCube, write_sample_cube  # noqa: E402
from spectralearth.platform.seaweed import SeaweedServer  # noqa: E402
from spectralearth.platform.stream import PatchStream  # noqa: E402
from spectralearth.platform.throughput import measure_throughput  # noqa: E402

BATCH = 8
PREFETCH_FACTOR = 2


def _stream(url: str, io_threads: int) -> PatchStream:
    return PatchStream(url, every_view=True, batch_size=BATCH, io_threads=io_threads, seed=0)


def _pass(url: str, *, workers: int, io_threads: int, context: str, warm_parent: bool = False) -> dict:
    stream = _stream(url, io_threads)
    if warm_parent:  # this process reads S3 with obstore first: forked workers cannot use it
        measure_throughput(stream, max_batches=1)
    t = measure_throughput(stream, num_workers=workers, multiprocessing_context=context, pin_memory=True,
                           prefetch_factor=PREFETCH_FACTOR)
    d = t.as_dict()
    total = t.cpu_seconds + t.consumer_cpu_seconds
    d.update(total_cpu_seconds=total, samples_per_total_cpu_s=t.samples / total if total else 0.0)
    # the figure compared across libraries: workers and consumer together
    d["samples_per_cpu_s_workers_only"] = d["samples_per_cpu_s"]
    d["samples_per_cpu_s"] = d["samples_per_total_cpu_s"]
    return d


def _median(runs: list[dict], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def _stream_figures(url: str, args, floor_samples_per_cpu_s: float) -> dict:
    """The recommended setup's medians over ``args.repeats`` passes, after one pass that warms the server."""
    kw = dict(workers=args.workers, io_threads=args.io_threads, context=args.context)
    _pass(url, **kw)
    runs = [_pass(url, **kw) for _ in range(args.repeats)]
    cpu = _median(runs, "samples_per_cpu_s")
    return {"samples_per_s": _median(runs, "samples_per_s"), "samples_per_cpu_s": cpu,
            "vs_floor": cpu / floor_samples_per_cpu_s, "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patches", type=int, default=150, help="patches of the cube (every view is read)")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers (the same for the peers)")
    ap.add_argument("--io-threads", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peers-python", default=None, help="python of the peers' virtual environment")
    ap.add_argument("--cube", default=None, help="an existing local sample cube to use (written when absent)")
    ap.add_argument("--context", default="fork", help="DataLoader context of the main figure")
    ap.add_argument("--peer", choices=["mds", "litdata"], default=None, help="run only this peer")
    ap.add_argument("--peers-over", choices=["https", "http"], default="https",
                    help="the server's port the peers read (http: LitData's obstore cannot be given the test CA); "
                         "with http the stream is measured over the same plain-HTTP port too and compared with them there")
    ap.add_argument("--peers-only", action="store_true",
                    help="run only the peers, against the stream figures of the existing results/stream_https.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    previous = json.loads((RESULTS / "stream_https.json").read_text()) if args.peers_only else None
    result: dict = {"context": args.context, "load_start": os.getloadavg()[0], "workers": args.workers, "io_threads": args.io_threads,
                    "batch_size": BATCH, "prefetch_factor": PREFETCH_FACTOR, "repeats": args.repeats,
                    "pin_memory": True, "accelerator": __import__("torch").cuda.is_available()}
    with tempfile.TemporaryDirectory(prefix="bench-https-") as tmp:
        tmp = Path(tmp)
        cube = args.cube or str(tmp / "cube")
        t0 = time.perf_counter()
        if not (args.cube and Path(cube, "versions").exists()):
            write_sample_cube(cube, SampleCube(n_patches=args.patches, multi_date_fraction=0.3, seed=0))
            print(f"cube written in {time.perf_counter() - t0:.0f} s", flush=True)
        refl = open_cube(cube, decode=False)["reflectance"]
        n_views, shape = refl.shape[0], tuple(refl.shape[1:])
        result["cube"] = {"views": n_views, "patches": int(open_cube(cube)["patch_view_start"].shape[0]),
                          "bands": shape[0], "patch_px": shape[1]}
        print("cube", result["cube"], flush=True)
        result["floor"] = median_run(lambda: decode_floor(cube, n_views, shape), args.repeats)
        print("floor", round(result["floor"]["samples_per_cpu_s"], 1), "samples/CPU-s", flush=True)

        secret = secrets.token_hex(16)
        with SeaweedServer(tmp / "s3", access_key="bench", secret_key=secret, tls=True, die_with_parent=True) as s3:
            os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": secret,
                               "AWS_DEFAULT_REGION": "us-east-1", "SPECTRALEARTH_S3_ENDPOINT": s3.endpoint_url,
                               "AWS_CA_BUNDLE": str(s3.ca_file)})
            import s3fs

            s3.create_bucket("bench")
            fs = s3fs.S3FileSystem(skip_instance_cache=True, client_kwargs={"endpoint_url": s3.endpoint_url})
            fs.put(cube, "bench/cube", recursive=True)
            url = "s3://bench/cube"
            if previous is not None:
                result.update({k: v for k, v in previous.items()
                               if k in ("stream", "fork_fallback", "after_parent_read_forkserver", "floor")})
                result["stream_measured"] = previous.get("stream_measured", previous["when"])
            else:
                kw = dict(workers=args.workers, io_threads=args.io_threads)
                result["stream"] = _stream_figures(url, args, result["floor"]["samples_per_cpu_s"])
                print("stream", {k: round(v, 2) for k, v in result["stream"].items() if k != "runs"}, flush=True)
                fallback = [_pass(url, context="fork", warm_parent=True, **kw) for _ in range(max(1, args.repeats - 1))]
                result["fork_fallback"] = {"samples_per_s": _median(fallback, "samples_per_s"),
                                           "samples_per_cpu_s": _median(fallback, "samples_per_cpu_s"), "runs": fallback,
                                           "vs_main_cpu": _median(fallback, "samples_per_cpu_s")
                                           / result["stream"]["samples_per_cpu_s"]}
                print("fork fallback", {k: round(v, 2) for k, v in result["fork_fallback"].items() if k != "runs"},
                      flush=True)
                # what stream.loader() does instead: a forkserver that preloaded the stream module
                from spectralearth.platform.stream.dataset import _forkserver

                served = [_pass(url, context=_forkserver(), warm_parent=True, **kw) for _ in range(max(1, args.repeats - 1))]
                result["after_parent_read_forkserver"] = {
                    "samples_per_s": _median(served, "samples_per_s"), "samples_per_cpu_s": _median(served, "samples_per_cpu_s"),
                    "runs": served, "vs_main_cpu": _median(served, "samples_per_cpu_s") / result["stream"]["samples_per_cpu_s"]}
                print("forkserver after parent read",
                      {k: round(v, 2) for k, v in result["after_parent_read_forkserver"].items() if k != "runs"}, flush=True)

            if args.peers_python:
                group = open_cube(cube, decode=False)
                views = np.lib.format.open_memmap(tmp / "views.npy", mode="w+", dtype="<i2",
                                                  shape=(n_views, *shape))
                for v in range(n_views):
                    views[v] = group["reflectance"][v].values
                views.flush()
                del views
                ours = result["stream"]
                endpoint = s3.endpoint_url
                if args.peers_over == "http":  # the same server and objects, its plain-HTTP port, for everyone compared
                    endpoint = s3.http_endpoint_url
                    saved = os.environ["SPECTRALEARTH_S3_ENDPOINT"]
                    os.environ["SPECTRALEARTH_S3_ENDPOINT"] = endpoint
                    try:
                        ours = result["stream_http"] = _stream_figures(url, args, result["floor"]["samples_per_cpu_s"])
                    finally:
                        os.environ["SPECTRALEARTH_S3_ENDPOINT"] = saved
                    print("stream over http", {k: round(v, 2) for k, v in ours.items() if k != "runs"}, flush=True)
                result["peers_over"] = args.peers_over
                env = {**os.environ, "S3_ENDPOINT_URL": endpoint, "AWS_ENDPOINT_URL": endpoint,
                       # MDS read back shards that failed zstd ("Data corruption detected"); boto3 >= 1.36
                       # uploads aws-chunked with trailing checksums by default, which S3-compatible servers
                       # may store with the framing (suspected, not confirmed): checksums only where required.
                       "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
                       "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required"}
                if args.peers_over == "http":
                    env["AWS_ALLOW_HTTP"] = "true"  # object_store (LitData's obstore) refuses http:// without it
                proc = subprocess.run(
                    [args.peers_python, str(Path(__file__).with_name("peers_stream.py")), str(tmp / "views.npy"),
                     "s3://bench", "--workers", str(args.workers), "--repeats", str(args.repeats),
                     "--batch-size", str(BATCH), *(["--only", args.peer] if args.peer else [])], env=env, capture_output=True, text=True, timeout=3600)
                sys.stderr.write(proc.stderr[-4000:])
                peers = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else \
                    {"error": proc.stderr[-2000:]}
                for p in peers.values():  # each peer keeps the stream figure it was compared with (same run)
                    if isinstance(p, dict) and "samples_per_cpu_s" in p:
                        p["stream_same_run"] = {k: ours[k] for k in ("samples_per_s", "samples_per_cpu_s")}
                        p["measured"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
                if args.peer and previous is not None:  # one peer rerun: keep the others' earlier measurements
                    peers = {**{k: v for k, v in (previous.get("peers") or {}).items()
                                if isinstance(v, dict) and "samples_per_cpu_s" in v and k not in peers}, **peers}
                result["peers"] = peers
                result["vs_peers"] = {
                    name: {"cpu_ratio": p.get("stream_same_run", ours)["samples_per_cpu_s"] / p["samples_per_cpu_s"],
                           "wall_ratio": p.get("stream_same_run", ours)["samples_per_s"] / p["samples_per_s"]}
                    for name, p in peers.items() if isinstance(p, dict) and "samples_per_cpu_s" in p
                }
                print("vs peers", result["vs_peers"], flush=True)

    s = result["stream"]
    batch_mb = BATCH * int(np.prod(shape)) * 2 / 2**20
    result["planning"] = {
        "cores_for_1000_samples_per_s": 1000.0 / s["samples_per_cpu_s"],
        "batch_mb": batch_mb,
        # batches in shared memory at once: prefetch_factor per worker waiting in the queue,
        # one being filled per worker, and the one the training step holds
        "shm_mb_per_rank": batch_mb * (args.workers * (PREFETCH_FACTOR + 1) + 1),
        "kubernetes_default_shm_mb": 64,
    }
    result["load_end"] = os.getloadavg()[0]
    print("planning", result["planning"])
    print("wrote", write_result("stream_https", result))


if __name__ == "__main__":
    main()
