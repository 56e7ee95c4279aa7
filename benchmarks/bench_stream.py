"""Streaming benchmark: PatchStream vs the decode floor and vs one-GeoTIFF-per-view reading.

One run, one cube, one machine. Writes ``benchmarks/results/stream.json``:

* ``floor``: the same chunk objects, already in memory, decoded by the same codec
  (blosc zstd) in a tight single-threaded loop: samples per CPU-second;
* ``stream_local`` / ``stream_s3``: PatchStream over every view, from local disk
  and from a SeaweedFS S3 server started here (read in this process, I/O threads);
* ``reference_s3``: the SpectralEarth loading pattern: one 202-band GeoTIFF per view
  in ``<location>/<tile>.tif`` folders on the same S3, one ``rasterio`` read per sample;
* ``workers``: RSS per DataLoader worker and time to the first batch (2 workers).

Per-core figures are samples per CPU-second of the reading process(es): the S3
server's own CPU is left out (in production it is a remote service).

    python benchmarks/bench_stream.py [--patches 90]
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import write_result  # noqa: E402

from spectralearth.platform.cube import open_cube, view_chunk_key  # noqa: E402
from spectralearth.platform.order import shuffle_quality  # noqa: E402
from spectralearth.platform.samplecube import SampleCube, write_sample_cube  # noqa: E402
from spectralearth.platform.seaweed import SeaweedServer  # noqa: E402
from spectralearth.platform.stream import PatchStream  # noqa: E402
from spectralearth.platform.throughput import _cpu, measure_throughput  # noqa: E402


class WorkerRSS:
    """Peak RSS of any single child process (the DataLoader workers), sampled in a thread."""

    def __init__(self) -> None:
        import threading

        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            for p in me.children(recursive=False):
                try:
                    if p.name().startswith("weed"):
                        continue
                    self.peak = max(self.peak, p.memory_info().rss)
                except psutil.Error:
                    continue
            self._stop.wait(0.05)

    def __enter__(self) -> "WorkerRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def decode_floor(cube: str, n_views: int, shape) -> dict:
    from numcodecs import blosc

    raws = [Path(cube, view_chunk_key(v)).read_bytes() for v in range(n_views)]
    out = np.empty(shape, "<i2")
    for raw in raws[:3]:
        blosc.decompress(raw, out)
    c0, t0 = _cpu(), time.perf_counter()
    for raw in raws:
        blosc.decompress(raw, out)
    cpu, wall = _cpu() - c0, time.perf_counter() - t0
    return {"samples": n_views, "cpu_seconds": cpu, "seconds": wall, "samples_per_cpu_s": n_views / cpu,
            "compressed_mb_per_view": float(np.mean([len(r) for r in raws]) / 1e6),
            "compression_ratio": float(out.nbytes / np.mean([len(r) for r in raws]))}


def write_reference(cube: str, root: Path) -> list[Path]:
    """One 202-band GeoTIFF per view in ``<location>/<tile>.tif`` (SpectralEarth's layout)."""
    import rasterio
    from rasterio.transform import from_origin

    group = open_cube(cube)
    refl = group["reflectance"]
    view_patch, view_tile = group["view_patch"][:], group["view_tile"][:]
    x0, y0 = group["patch_x0"][:], group["patch_y0"][:]
    paths = []
    for v in range(refl.shape[0]):
        p = int(view_patch[v])
        path = root / f"{p:06d}" / f"tile{int(view_tile[v]):05d}_{v:06d}.tif"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = refl[v]
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
    ap.add_argument("--io-threads", type=int, default=4)
    args = ap.parse_args()
    cfg = SampleCube(n_patches=args.patches, multi_date_fraction=0.3, seed=0)
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
        tmp = Path(tmp)
        cube = str(tmp / "cube")
        t0 = time.perf_counter()
        spec = write_sample_cube(cube, cfg)
        print(f"cube: {spec.n_views} views, {spec.n_patches} patches, written in {time.perf_counter() - t0:.0f} s")
        shape = (spec.n_bands, spec.patch_px, spec.patch_px)
        result: dict = {"cube": {"views": spec.n_views, "patches": spec.n_patches, "bands": spec.n_bands,
                                 "patch_px": spec.patch_px}, "io_threads": args.io_threads}
        result["floor"] = decode_floor(cube, spec.n_views, shape)
        print("floor", result["floor"])

        def stream(url, **kw):
            return PatchStream(url, every_view=True, batch_size=8, io_threads=args.io_threads, seed=0, **kw)

        warm = stream(cube)
        warm.index  # the index is read once per process; the figures are for steady streaming
        measure_throughput(warm, max_batches=2)  # warm the page cache: local = disk cache, as S3's server has
        result["stream_local"] = measure_throughput(warm).as_dict()
        print("local", result["stream_local"])

        secret = secrets.token_hex(16)
        with SeaweedServer(tmp / "s3", access_key="bench", secret_key=secret, volume_size_limit_mb=1024) as s3:
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
            # worker RSS and time to first batch first: this process has not started obstore yet (fork-safe)
            with WorkerRSS() as rss:
                workers = measure_throughput(stream(s3_cube), num_workers=2)
            result["workers"] = {**workers.as_dict(), "num_workers": 2, "peak_rss_single_mb": rss.peak / 2**20,
                                 "prefetch_mb": stream(s3_cube).prefetch_bytes / 2**20}
            print("workers", result["workers"])
            warm = stream(s3_cube)
            warm.index
            measure_throughput(warm, max_batches=2)
            result["stream_s3"] = measure_throughput(warm).as_dict()
            print("s3", result["stream_s3"])
            reference_read(urls[:3])
            result["reference_s3"] = reference_read(urls)
            print("reference", result["reference_s3"])

        pos = [int(s["view"]) for s in PatchStream(cube, every_view=True, seed=0, io_threads=1)]
        blocky = [int(s["view"]) for s in PatchStream(cube, every_view=True, seed=0, shuffle_block=8,
                                                       shuffle_window=32, io_threads=1)]
        result["shuffle_quality"] = {"spearman_default": shuffle_quality(np.array(pos)),
                                     "spearman_block8_window32": shuffle_quality(np.array(blocky)),
                                     "spearman_no_shuffle": 1.0}
    floor = result["floor"]["samples_per_cpu_s"]
    result["ratios"] = {
        "local_vs_floor": result["stream_local"]["samples_per_cpu_s"] / floor,
        "s3_vs_floor": result["stream_s3"]["samples_per_cpu_s"] / floor,
        "s3_vs_reference": result["stream_s3"]["samples_per_cpu_s"] / result["reference_s3"]["samples_per_cpu_s"],
    }
    print("ratios", result["ratios"])
    print("wrote", write_result("stream", result))


if __name__ == "__main__":
    main()
