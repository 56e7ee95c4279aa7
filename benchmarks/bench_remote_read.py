"""Benchmark: reading a tile's windows from a remote COG, GDAL ``/vsicurl/`` against fsspec HTTP.

A full-size synthetic COG (224 bands, pixel-interleaved) is served by the loopback HTTPS
server with basic auth (:class:`~spectralearth.platform.fileserver.AuthFileServer`,
throw-away CA, credentials in a netrc file). The same windows (every 128 px window of the
first ``--rows`` rows, SpectralEarth's 202 bands) are read with
:func:`~spectralearth.catalog.enmap.image.read_windows` through:

* ``gdal``: ``/vsicurl/`` with the project's settings (:func:`gdal_http_options`);
* ``gdal-default-cache``: the same with GDAL's default 16 MB download cache;
* ``fsspec``: rasterio on an fsspec HTTP file object (aiohttp, netrc via ``trust_env``).

Per reader, medians over ``--repeats`` interleaved rounds: wall seconds, client CPU
seconds, requests and bytes the server sent (from its own counters), bytes per byte of
the tiles needed. Writes ``benchmarks/results/remote_read.json``. Run:
``python benchmarks/bench_remote_read.py [--archive DIR] [--rows 512] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import write_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archive", default=None, help="an archive with a COG layout (default: synthesize one full-size tile)")
    ap.add_argument("--rows", type=int, default=512, help="read the windows of the first ROWS rows")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import rasterio
    import trustme

    from spectralearth.catalog.enmap import ProductName, ProductSource
    from spectralearth.catalog.enmap import image as im
    from spectralearth.catalog.synth import SynthConfig, synthesize_archive
    from spectralearth.pipelines.extract import SPECTRALEARTH_BANDS
    from spectralearth.platform.fileserver import AuthFileServer

    work = Path(tempfile.mkdtemp(prefix="bench-remote-"))
    archive = args.archive
    if archive is None:
        archive = str(work / "archive")
        synthesize_archive(archive, SynthConfig(tiles=1, seed=1, zip_fraction=0.0, layout="cog"))
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(str(work / "ca.pem"))
    cert.private_key_and_cert_chain_pem.write_to_path(str(work / "server.pem"))
    (work / "netrc").write_text("machine 127.0.0.1 login bench password bench-pw\n")
    (work / "netrc").chmod(0o600)
    os.environ.update(NETRC=str(work / "netrc"), SSL_CERT_FILE=str(work / "ca.pem"), CURL_CA_BUNDLE=str(work / "ca.pem"))

    path = sorted(glob.glob(f"{archive}/**/*-SPECTRAL_IMAGE.TIF", recursive=True))[0]
    with rasterio.open(path) as ds:
        height, width, block, layout = ds.height, ds.width, ds.block_shapes[0], ds.tags(ns="IMAGE_STRUCTURE")
    rows = min(args.rows, height - 128)
    windows = np.array([[i, r, c] for i, (r, c) in enumerate((r, c) for r in range(0, rows, 128) for c in range(0, width - 127, 128))])
    # the tiles those windows touch, all bands: what any reader has to fetch at least
    tile_rows = -(-(int(windows[:, 1].max()) + 128) // block[0])
    tiles_needed = tile_rows * -(-width // block[1]) * block[0] * block[1] * 224 * 2
    stem = os.path.basename(path)[: -len("-SPECTRAL_IMAGE.TIF")]

    variants = {
        "gdal": ("gdal", {}),
        "gdal-default-cache": ("gdal", {"CPL_VSIL_CURL_CACHE_SIZE": 16 << 20}),
        "fsspec": ("fsspec", {}),
    }
    base = im.gdal_http_options
    runs: dict[str, list[dict]] = {k: [] for k in variants}
    with AuthFileServer(archive, username="bench", password="bench-pw", certfile=str(work / "server.pem"),
                        keyfile=str(work / "server.pem")) as srv:
        url = srv.url_of(os.path.relpath(path, archive))
        src = ProductSource(stem, ProductName.parse(stem), "", "stac", (("SPECTRAL_IMAGE.TIF", url),))
        for _ in range(args.repeats):
            for name, (how, extra) in variants.items():
                im.gdal_http_options = lambda u, extra=extra: {**base(u), **extra}
                srv.reset_stats()
                t0, c0 = time.perf_counter(), time.process_time()
                with rasterio.Env(GDAL_CACHEMAX=256), im.open_image(src, http_reader=how) as ds:
                    n = sum(1 for _ in im.read_windows(ds, windows, indexes=SPECTRALEARTH_BANDS, patch_px=128))
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                st = srv.stats()
                assert n == len(windows)
                runs[name].append({"wall_s": wall, "cpu_s": cpu, "requests": st.get("requests", 0),
                                   "bytes_sent": st.get("bytes_sent", 0)})
                print(name, runs[name][-1], flush=True)
        im.gdal_http_options = base
    med = statistics.median
    result = {
        "image": {"height": height, "width": width, "block": list(block), "structure": layout,
                  "bytes": os.path.getsize(path)},
        "windows": len(windows),
        "raw_mb": round(len(windows) * len(SPECTRALEARTH_BANDS) * 128 * 128 * 2 / 1e6, 1),
        "tiles_needed_mb": round(tiles_needed / 1e6, 1),
        "repeats": args.repeats,
        "readers": {
            name: {
                "wall_s": round(med(r["wall_s"] for r in rs), 2),
                "wall_s_runs": [round(r["wall_s"], 2) for r in rs],
                "client_cpu_s": round(med(r["cpu_s"] for r in rs), 2),
                "requests": int(med(r["requests"] for r in rs)),
                "mb_sent": round(med(r["bytes_sent"] for r in rs) / 1e6, 1),
                "bytes_per_tile_byte": round(med(r["bytes_sent"] for r in rs) / tiles_needed, 2),
            }
            for name, rs in runs.items()
        },
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "method": "loopback HTTPS + basic auth; interleaved rounds, medians; bytes from the server's counters",
    }
    result["wall_ratio_gdal_to_fsspec"] = round(result["readers"]["gdal"]["wall_s"] / result["readers"]["fsspec"]["wall_s"], 3)
    print(write_result("remote_read", result))
    for k, v in result.items():
        print(f"{k:>28}: {v}")


if __name__ == "__main__":
    main()
