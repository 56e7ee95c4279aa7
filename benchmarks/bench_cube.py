"""Cube engine benchmark: reading through each engine vs the decode floor; a grown archive's build cost.

Writes ``benchmarks/results/cube.json``:

* ``read``: one synthetic cube (``--views`` views of 202 bands x 128 px, realistic
  spectra) stored by each engine, on local disk and on a SeaweedFS S3 server started
  here (HTTPS with a throw-away CA unless ``--no-tls``); for each, every view read once with ``--threads`` threads (samples/s and
  samples per CPU-second of this process, the S3 server's CPU left out), as a ratio
  to the decode floor (the same chunk bytes, in memory, decoded in one thread):

  - ``stream``: :class:`PatchStream` over the chosen engine (plain Zarr v3 +
    create-only version commits), raw chunk GETs, CRC-32C check, blosc decode;
  - ``zarr``: the same cube through ``zarr`` (what ``xarray``/``open_cube`` users get);
  - ``icechunk``: the same arrays and codecs in an Icechunk repository, read through
    its zarr store (when the ``icechunk`` package is installed; Python 3.11 gets 1.x).

* ``write``: seconds and CPU-seconds to write and commit the views per engine.
* ``grow``: a synthetic archive (``--grow-tiles`` x ``--grow-size`` px) built from its
  oldest 75 % of products, then rebuilt after the newest 25 % arrive, against a full
  build of the grown archive: bytes written, views read, wall and CPU time.

    python benchmarks/bench_cube.py [--views 48] [--repeats 3] [--no-tls] [--grow-tiles 16 --grow-size 384]
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import write_result  # noqa: E402

from spectralearth.platform.cube import locate_version, open_store  # noqa: E402
from spectralearth.platform.cube.format import split_checksum  # noqa: E402
from spectralearth.platform.samplecube import SampleCube, sample_layout, sample_view  # noqa: E402
from spectralearth.platform.seaweed import SeaweedServer  # noqa: E402
from spectralearth.platform.throughput import _cpu  # noqa: E402


def _timed(fn) -> dict:
    c0, t0 = _cpu(), time.perf_counter()
    n = fn()
    cpu, wall = _cpu() - c0, time.perf_counter() - t0
    return {"samples": n, "seconds": wall, "cpu_seconds": cpu, "samples_per_s": n / wall, "samples_per_cpu_s": n / cpu}


def decode_floor(raws: list[bytes], shape) -> dict:
    from numcodecs import blosc

    out = np.empty(shape, "<i2")
    blosc.use_threads = False
    try:
        bodies = [bytes(split_checksum(r)) for r in raws]
        floor = _timed(lambda: [blosc.decompress(b, out) for b in bodies] and len(bodies))
        with_crc = _timed(lambda: [blosc.decompress(split_checksum(r), out) for r in raws] and len(raws))
    finally:
        blosc.use_threads = None
    return {"decode": floor, "decode_and_crc32c": with_crc,
            "compressed_mb_per_view": float(np.mean([len(r) for r in raws]) / 1e6)}


def read_stream(url: str, threads: int) -> dict:
    from spectralearth.platform.stream import PatchStream

    stream = PatchStream(url, every_view=True, shuffle=False, io_threads=threads, batch_size=8)
    stream.index  # the index is read once per stream, like the array opened once for the others

    def run():
        n = 0
        for s in stream:
            n += int(s["patch"].numel())
        return n

    return _timed(run)


def read_zarr_array(arr, n: int, threads: int) -> dict:
    def one(v):
        return arr[v].shape

    def run():
        with ThreadPoolExecutor(threads) as pool:
            return sum(1 for _ in pool.map(one, range(n)))

    return _timed(run)


def write_icechunk(storage, views: list[np.ndarray], shape) -> tuple[dict, object]:
    import icechunk
    import zarr

    def run():
        repo = icechunk.Repository.create(storage)
        session = repo.writable_session("main")
        group = zarr.group(store=session.store)
        arr = group.create_array("reflectance", shape=(len(views), *shape), dtype="int16", chunks=(1, *shape),
                                 fill_value=-32768,
                                 compressors=[zarr.codecs.BloscCodec(cname="zstd", clevel=5, shuffle="shuffle", typesize=2),
                                              zarr.codecs.Crc32cCodec()])
        for v, data in enumerate(views):
            arr[v] = data
        session.commit("views")
        run.repo = repo
        return len(views)

    res = _timed(run)
    return res, run.repo


def icechunk_array(repo):
    import zarr

    session = repo.readonly_session(branch="main")
    return zarr.open_array(session.store, path="reflectance", mode="r")


def median_of(fn, repeats: int) -> dict:
    runs = [fn() for _ in range(repeats)]
    out = {k: statistics.median(r[k] for r in runs) for k in ("samples_per_s", "samples_per_cpu_s", "seconds", "cpu_seconds")}
    out["samples"] = runs[0]["samples"]
    out["samples_per_cpu_s_runs"] = [round(r["samples_per_cpu_s"], 2) for r in runs]
    return out


def bench_read(args, work: Path, server: SeaweedServer) -> dict:
    cfg = SampleCube(n_patches=args.views, multi_date_fraction=0.0, seed=3)
    view_patch, _ = sample_layout(cfg)
    views = [sample_view(cfg, view=v, patch=int(view_patch[v])) for v in range(view_patch.size)]
    shape = views[0].shape
    n = len(views)
    bucket = server.create_bucket("bench-cube")
    local, s3 = str(work / "cube"), f"s3://{bucket}/cube"
    out: dict = {"views": n, "shape": list(shape), "threads": args.threads, "repeats": args.repeats, "write": {}}
    from spectralearth.catalog.synth.spectra import product_bands
    from spectralearth.platform.cube import CubeSpec, write_cube

    wl, fwhm = product_bands(cfg.seed)
    sel = np.asarray(cfg.bands) - 1
    spec = CubeSpec(n_views=n, n_patches=cfg.n_patches, wavelength_nm=tuple(float(w) for w in wl[sel]),
                    fwhm_nm=tuple(float(f) for f in fwhm[sel]), band_numbers=tuple(cfg.bands), patch_px=cfg.patch_px)
    stack = np.stack(views)
    times = np.datetime64("2023-01-01T10:00:00", "us") + np.arange(n).astype("timedelta64[D]")
    for name, url in (("local", local), ("s3", s3)):  # the same pixels as the icechunk writes below
        res = _timed(lambda url=url: write_cube(url, stack, spec=spec, view_patch=view_patch, view_time=times) and n)
        out["write"][f"zarr_versions_{name}"] = res
    loc = locate_version(local)
    raws = [Path(local, loc.chunk_key(v)).read_bytes() for v in range(n)]
    out["floor"] = decode_floor(raws, shape)
    floor = out["floor"]["decode"]["samples_per_cpu_s"]
    import zarr

    engines: dict = {}
    for name, url in (("local", local), ("s3", s3)):
        engines[f"stream_{name}"] = median_of(lambda url=url: read_stream(url, args.threads), args.repeats)
        loc = locate_version(url)
        arr = zarr.open_array(open_store(f"{url}/builds/{loc.version.build}", read_only=True), path="reflectance", mode="r")
        engines[f"zarr_{name}"] = median_of(lambda arr=arr: read_zarr_array(arr, n, args.threads), args.repeats)
    try:
        import icechunk
    except ImportError:
        out["icechunk"] = "not installed (pip install icechunk; Python >= 3.12 gets 2.x)"
    else:
        out["icechunk"] = icechunk.__version__
        endpoint = os.environ["SPECTRALEARTH_S3_ENDPOINT"]
        stores = {
            "local": icechunk.local_filesystem_storage(str(work / "icechunk")),
            "s3": icechunk.s3_storage(bucket=bucket, prefix="icechunk", endpoint_url=endpoint, allow_http=endpoint.startswith("http:"),
                                      region="us-east-1", from_env=True, force_path_style=True),
        }
        for name, st in stores.items():
            try:
                res, repo = write_icechunk(st, views, shape)
            except Exception as exc:  # noqa: BLE001 - record why, measure the rest
                out["write"][f"icechunk_{name}"] = {"error": repr(exc)[:300]}
                continue
            out["write"][f"icechunk_{name}"] = res
            arr = icechunk_array(repo)
            np.testing.assert_array_equal(arr[1], views[1])
            engines[f"icechunk_{name}"] = median_of(lambda arr=arr: read_zarr_array(arr, n, args.threads), args.repeats)
    for e in engines.values():
        e["vs_floor_per_cpu_s"] = round(e["samples_per_cpu_s"] / floor, 3)
    out["engines"] = engines
    return out


def _products_by_time(archive: str) -> list[str]:
    found = [os.path.relpath(p, archive) for p in glob.glob(os.path.join(archive, "*", "*", "ENMAP01-*"))]
    return sorted(found, key=lambda n: re.search(r"_(\d{8}T\d{6}Z)_", n).group(1))


def _copy(src: str, products: list[str], dest: str) -> None:
    for rel in products:
        os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
        (shutil.copytree if os.path.isdir(os.path.join(src, rel)) else shutil.copy)(os.path.join(src, rel), os.path.join(dest, rel))


def bench_grow(args, work: Path) -> dict:
    from spectralearth.catalog.synth import SynthConfig, synthesize_archive
    from spectralearth.pipelines.build import BuildConfig, build
    from spectralearth.pipelines.plan import PlanParams
    from spectralearth.platform.cluster import ClusterSpec

    source = args.grow_archive or str(work / "source")
    if not args.grow_archive:
        synthesize_archive(source, SynthConfig(tiles=args.grow_tiles, tile_size=args.grow_size, seed=4))
    products = _products_by_time(source)
    n_new = max(1, round(len(products) * 0.25))
    config = BuildConfig(plan=PlanParams(max_cloud=0.6, max_cloud_shadow=0.6, max_snow=1.0))
    sync = ClusterSpec(kind="sync")
    archive = str(work / "archive")
    _copy(source, products[:-n_new], archive)

    def run(out: str) -> dict:
        c0, t0 = _cpu(), time.perf_counter()
        ex = build(archive, out, config=config, cluster=sync).stages["extract"]
        return {"seconds": time.perf_counter() - t0, "cpu_seconds": _cpu() - c0,
                **{k: ex[k] for k in ("version", "views", "new_views", "reused_views", "build_bytes", "raw_bytes_this_run",
                                       "stages")}}

    first = run(str(work / "out"))
    _copy(source, products[-n_new:], archive)
    grown = run(str(work / "out"))
    full = run(str(work / "full"))
    return {"products": len(products), "new_products": n_new, "first": first, "grown": grown, "full": full,
            "bytes_vs_full": round(grown["build_bytes"] / full["build_bytes"], 3),
            "views_read_vs_full": round(grown["new_views"] / full["views"], 3),
            "extract_seconds_vs_full": round(grown["stages"]["tasks"] / full["stages"]["tasks"], 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--views", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--grow-tiles", type=int, default=16)
    ap.add_argument("--grow-size", type=int, default=384)
    ap.add_argument("--grow-archive", default=None, help="an existing synthetic archive to grow (default: synthesize one)")
    ap.add_argument("--skip", choices=("read", "grow"), default=None)
    ap.add_argument("--tls", action=argparse.BooleanOptionalAction, default=True, help="S3 over HTTPS (default) or HTTP")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-cube-"))
    result: dict = {"load_start": os.getloadavg()[0]}
    try:
        if args.skip != "read":
            with SeaweedServer(work / "seaweed", access_key="bench", secret_key="bench-secret", tls=args.tls,
                               die_with_parent=True) as server:
                os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret",
                                   "AWS_DEFAULT_REGION": "us-east-1", "SPECTRALEARTH_S3_ENDPOINT": server.endpoint_url})
                if args.tls:  # botocore, s3fs and obstore trust the throw-away CA through the environment
                    os.environ["AWS_CA_BUNDLE"] = str(server.ca_file)
                    os.environ["SSL_CERT_FILE"] = str(server.ca_file)
                result["transport"] = server.endpoint_url.split(":", 1)[0]
                result["read"] = bench_read(args, work, server)
        if args.skip != "grow":
            result["grow"] = bench_grow(args, work)
    finally:
        result["load_end"] = os.getloadavg()[0]
        shutil.rmtree(work, ignore_errors=True)
    previous = Path(__file__).resolve().parent / "results" / "cube.json"
    if args.skip and previous.exists():  # keep the other part of an earlier run
        import json

        kept = json.loads(previous.read_text())
        for part in ("read", "transport") if args.skip == "read" else ("grow",):
            if part in kept:
                result.setdefault(part, kept[part])
    print(write_result("cube", result))


if __name__ == "__main__":
    main()
