"""Streaming benchmark: PatchStream vs the decode floor and vs one-GeoTIFF-per-view reading.

One run, one cube, one machine. Writes ``benchmarks/results/stream.json``:

* ``floor``: the same chunk objects, already in memory, decoded by the same codec
  (blosc zstd) in a tight single-threaded loop: samples per CPU-second;
* ``stream_local`` / ``stream_s3``: PatchStream over every view, from local disk
  and from a SeaweedFS S3 server started here (read in this process, I/O threads);
* ``reference_s3``: the SpectralEarth loading pattern: one 202-band GeoTIFF per view
  in ``<location>/<tile>.tif`` folders on the same S3, one ``rasterio`` read per sample;
* ``workers``: time to the first batch and memory of 2 forked DataLoader workers over S3;
* ``worker_memory``: memory per DataLoader worker (forkserver) on two cube sizes.

Per-core figures are samples per CPU-second of the reading process (all its
threads): the S3 server's own CPU is left out (in production it is a remote
service). Throughput figures are the median of ``--repeats`` runs; the 1-minute
load average at the start and end is recorded (the run waits up to 10 minutes
for it to fall to 2.5 first).

    python benchmarks/bench_stream.py [--patches 90]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import write_result  # noqa: E402

from spectralearth.platform.cube import locate_version, open_cube  # noqa: E402
from spectralearth.platform.cube.format import split_checksum  # noqa: E402
from spectralearth.platform.order import shuffle_quality  # noqa: E402
from spectralearth.platform.samplecube import SampleCube, write_sample_cube  # noqa: E402
from spectralearth.platform.seaweed import SeaweedServer  # noqa: E402
from spectralearth.platform.stream import PatchStream  # noqa: E402
from spectralearth.platform.throughput import _cpu, measure_throughput  # noqa: E402


class WorkerMemory:
    """Memory of each child process (the DataLoader workers), sampled in a thread.

    RSS counts pages shared with the parent (a forked worker starts with the
    parent's whole resident set); USS (pages only this worker maps) is its own
    cost, PSS splits the shared pages among the processes that map them.
    """

    def __init__(self) -> None:
        import threading

        self.first: dict[int, dict] = {}
        self.peak: dict[int, dict] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            for p in me.children(recursive=True):
                try:
                    if p.name().startswith("weed"):
                        continue
                    m = p.memory_full_info()
                except psutil.Error:
                    continue
                now = {"rss": m.rss / 2**20, "uss": m.uss / 2**20, "pss": m.pss / 2**20}
                self.first.setdefault(p.pid, now)
                peak = self.peak.setdefault(p.pid, dict(now))
                for k, v in now.items():
                    peak[k] = max(peak[k], v)
            self._stop.wait(0.1)

    def summary(self) -> dict:
        """Largest peak over the workers, and their first sample (right after start)."""
        workers = [pid for pid, m in self.peak.items() if m["uss"] > 0]
        out = {f"peak_{k}_mb": max((self.peak[p][k] for p in workers), default=0.0) for k in ("rss", "uss", "pss")}
        out.update({f"start_{k}_mb": max((self.first[p][k] for p in workers), default=0.0) for k in ("rss", "uss")})
        out["processes"] = len(workers)
        return out

    def __enter__(self) -> "WorkerMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def median_run(fn, repeats: int) -> dict:
    """Run ``fn`` (returning a dict with ``samples_per_cpu_s``) and keep the median run, and all figures."""
    runs = [fn() for _ in range(repeats)]
    runs.sort(key=lambda r: r["samples_per_cpu_s"])
    return {**runs[len(runs) // 2], "repeats": [r["samples_per_cpu_s"] for r in runs]}


def paired_runs(fn, floor, repeats: int) -> dict:
    """``repeats`` pairs (decode floor, then ``fn``) back to back: each ratio sees the same machine load.

    Returns the median run of ``fn``, all its figures, the floor of each pair, and
    ``vs_floor``, the median of the per-pair ratios.
    """
    pairs = []
    for _ in range(repeats):
        f = floor()["samples_per_cpu_s"]
        r = fn()
        pairs.append((r["samples_per_cpu_s"] / f, f, r))
    pairs.sort(key=lambda p: p[0])
    ratio, _, mid = pairs[len(pairs) // 2]
    return {**mid, "repeats": [p[2]["samples_per_cpu_s"] for p in pairs], "floors": [p[1] for p in pairs],
            "vs_floor_repeats": [p[0] for p in pairs], "vs_floor": ratio}


def wait_for_quiet(limit: float = 2.5, max_wait_s: float = 600.0) -> float:
    """Wait (up to ``max_wait_s``) for the 1-minute load average to drop to ``limit``; return it."""
    t0 = time.monotonic()
    while os.getloadavg()[0] > limit and time.monotonic() - t0 < max_wait_s:
        print(f"load {os.getloadavg()[0]:.1f} > {limit}: waiting", flush=True)
        time.sleep(60)
    return os.getloadavg()[0]


def decode_floor(cube: str, n_views: int, shape) -> dict:
    from numcodecs import blosc

    loc = locate_version(cube)
    raws = [bytes(split_checksum(Path(cube, loc.chunk_key(v)).read_bytes())) for v in range(n_views)]
    out = np.empty(shape, "<i2")
    blosc.use_threads = False  # one thread, like each of the stream's decoding threads
    try:
        for raw in raws[:3]:
            blosc.decompress(raw, out)
        c0, t0 = _cpu(), time.perf_counter()
        for raw in raws:
            blosc.decompress(raw, out)
        cpu, wall = _cpu() - c0, time.perf_counter() - t0
    finally:
        blosc.use_threads = None
    return {"samples": n_views, "cpu_seconds": cpu, "seconds": wall, "samples_per_cpu_s": n_views / cpu,
            "compressed_mb_per_view": float(np.mean([len(r) for r in raws]) / 1e6),
            "compression_ratio": float(out.nbytes / np.mean([len(r) for r in raws]))}


def worker_memory(url: str, stream, *, num_workers: int = 2, context: str = "forkserver") -> dict:
    """One pass with DataLoader workers; their memory and the time to the first batch."""
    with WorkerMemory() as mem:
        t = measure_throughput(stream(url), num_workers=num_workers, multiprocessing_context=context)
    return {**t.as_dict(), "num_workers": num_workers, "context": context, **mem.summary()}


def write_reference(cube: str, root: Path) -> list[Path]:
    """One 202-band GeoTIFF per view in ``<location>/<tile>.tif`` (SpectralEarth's layout)."""
    import rasterio
    from rasterio.transform import from_origin

    group = open_cube(cube, decode=False)
    refl = group["reflectance"]
    view_patch, view_tile = group["view_patch"].values, group["view_tile"].values
    x0, y0 = group["patch_x0"].values, group["patch_y0"].values
    paths = []
    for v in range(refl.shape[0]):
        p = int(view_patch[v])
        path = root / f"{p:06d}" / f"tile{int(view_tile[v]):05d}_{v:06d}.tif"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = refl[v].values
        with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                           dtype="int16", crs="EPSG:32632", transform=from_origin(x0[p], y0[p], 30, 30),
                           nodata=-32768, compress="deflate", interleave="pixel") as dst:
            dst.write(data)
        paths.append(path)
    return paths


def reference_read(urls: list[str]) -> dict:
    import rasterio

    order = np.random.default_rng(0).permutation(len(urls))
    with rasterio.Env(AWS_HTTPS="NO", AWS_VIRTUAL_HOSTING="FALSE", GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR",
                      AWS_S3_ENDPOINT=os.environ["SPECTRALEARTH_S3_ENDPOINT"].split("://", 1)[1]):
        c0, t0 = _cpu(), time.perf_counter()
        for i in order:
            with rasterio.open(urls[i]) as src:
                src.read()
        cpu, wall = _cpu() - c0, time.perf_counter() - t0
    return {"samples": len(urls), "cpu_seconds": cpu, "seconds": wall, "samples_per_cpu_s": len(urls) / cpu,
            "samples_per_s": len(urls) / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patches", type=int, default=90)
    ap.add_argument("--big-patches", type=int, default=300, help="the larger cube of the worker-memory check")
    ap.add_argument("--io-threads", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    result: dict = {"load_wait_start": os.getloadavg()[0]}
    result["load_start"] = wait_for_quiet()
    cfg = SampleCube(n_patches=args.patches, multi_date_fraction=0.3, seed=0)
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
        tmp = Path(tmp)
        cube = str(tmp / "cube")
        t0 = time.perf_counter()
        spec = write_sample_cube(cube, cfg)
        print(f"cube: {spec.n_views} views, {spec.n_patches} patches, written in {time.perf_counter() - t0:.0f} s")
        shape = (spec.n_bands, spec.patch_px, spec.patch_px)
        result.update({"cube": {"views": spec.n_views, "patches": spec.n_patches, "bands": spec.n_bands,
                                "patch_px": spec.patch_px}, "io_threads": args.io_threads,
                       "repeats": args.repeats})
        result["floor"] = median_run(lambda: decode_floor(cube, spec.n_views, shape), args.repeats)
        print("floor", result["floor"])

        def stream(url, **kw):
            return PatchStream(url, every_view=True, batch_size=8, io_threads=args.io_threads, seed=0, **kw)

        # worker memory on two cube sizes (forkserver: workers do not inherit this process's heap)
        big = str(tmp / "cube-big")
        big_spec = write_sample_cube(big, SampleCube(n_patches=args.big_patches, multi_date_fraction=0.3, seed=1))
        memory = {}
        for name, url, views in (("small", cube, spec.n_views), ("large", big, big_spec.n_views)):
            memory[name] = {"views": views, **worker_memory(url, stream)}
            print("worker memory", name, memory[name])
        shutil.rmtree(big)
        result["worker_memory"] = {**memory, "prefetch_mb": stream(cube).prefetch_bytes / 2**20,
                                   "batch_mb": 8 * int(np.prod(shape)) * 2 / 2**20}

        warm = stream(cube)
        warm.index  # the index is read once per process; the figures are for steady streaming
        measure_throughput(warm, max_batches=2)  # warm the page cache: local = disk cache, as S3's server has
        floor = lambda: decode_floor(cube, spec.n_views, shape)  # noqa: E731
        result["stream_local"] = paired_runs(lambda: measure_throughput(warm).as_dict(), floor, args.repeats)
        print("local", result["stream_local"])

        secret = secrets.token_hex(16)
        with SeaweedServer(tmp / "s3", access_key="bench", secret_key=secret, volume_size_limit_mb=1024, die_with_parent=True) as s3:
            os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": secret,
                               "AWS_DEFAULT_REGION": "us-east-1", "SPECTRALEARTH_S3_ENDPOINT": s3.endpoint_url})
            import s3fs

            fs = s3fs.S3FileSystem(skip_instance_cache=True, client_kwargs={"endpoint_url": s3.endpoint_url})
            s3.create_bucket("bench")
            fs.put(cube, "bench/cube", recursive=True)
            ref_root = tmp / "reference"
            paths = write_reference(cube, ref_root)
            fs.put(str(ref_root), "bench/reference", recursive=True)
            urls = [f"s3://bench/reference/{p.relative_to(ref_root)}" for p in paths]
            result["reference_mb_per_view"] = float(np.mean([p.stat().st_size for p in paths]) / 1e6)

            s3_cube = "s3://bench/cube"
            # time to first batch with forked workers: this process has not started obstore yet (fork-safe)
            result["workers"] = {**worker_memory(s3_cube, stream, context="fork"),
                                 "prefetch_mb": stream(s3_cube).prefetch_bytes / 2**20}
            print("workers", result["workers"])
            warm = stream(s3_cube)
            warm.index
            measure_throughput(warm, max_batches=2)
            result["stream_s3"] = paired_runs(lambda: measure_throughput(warm).as_dict(), floor, args.repeats)
            print("s3", result["stream_s3"])
            reference_read(urls[:3])
            result["reference_s3"] = median_run(lambda: reference_read(urls), args.repeats)
            print("reference", result["reference_s3"])

        pos = [int(s["view"]) for s in PatchStream(cube, every_view=True, seed=0, io_threads=1)]
        blocky = [int(s["view"]) for s in PatchStream(cube, every_view=True, seed=0, shuffle_block=8,
                                                       shuffle_window=32, io_threads=1)]
        result["shuffle_quality"] = {"spearman_default": shuffle_quality(np.array(pos)),
                                     "spearman_block8_window32": shuffle_quality(np.array(blocky)),
                                     "spearman_no_shuffle": 1.0}
    result["load_end"] = os.getloadavg()[0]
    result["ratios"] = {
        "local_vs_floor": result["stream_local"]["vs_floor"],
        "s3_vs_floor": result["stream_s3"]["vs_floor"],
        "s3_vs_reference": result["stream_s3"]["samples_per_cpu_s"] / result["reference_s3"]["samples_per_cpu_s"],
    }
    print("ratios", result["ratios"])
    print("wrote", write_result("stream", result))


if __name__ == "__main__":
    main()
