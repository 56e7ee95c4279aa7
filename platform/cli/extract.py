"""``spectralearth extract``: write the planned views into the Zarr patch cube."""

from __future__ import annotations

import argparse
import json
import sys

from spectralearth.platform.cli import _common

_DESCRIPTION = """\
Read every planned 128x128 window of every tile once (only the selected bands),
and write it as one view (one chunk, blosc zstd) of the Zarr v3 cube at
CUBE_URL; per-band mean/std over valid pixels are merged from the tasks. One dask
task per source tile; no two tasks write the same object.

The cube becomes visible (its root zarr.json) only when complete. Each finished
tile leaves CUBE_URL/_progress/tile-<row>.json; a rerun after a crash (killed
client or worker, storage outage) skips those tiles and ends with the same bytes
as an uninterrupted run. CUBE_URL/_progress/lease.json (run id + heartbeat)
keeps a second concurrent run out: it stops with an error naming the holder. A
lease without heartbeat for --lease-timeout seconds (or naming a dead process on
this host) is taken over.

Needs the plan: run `spectralearth plan --catalog CATALOG_URL` first.

Examples:
  spectralearth extract --catalog demo-out/catalog --cube demo-out/cube.zarr
  spectralearth extract --catalog s3://b/catalog --cube s3://b/cube.zarr --bands 1-224

Exit codes: 0 committed, 1 failed (or another run holds the lease, or a
committed cube exists without --overwrite), 2 bad usage, 130 interrupted.
"""


def parse_bands(text: str | None) -> tuple[int, ...] | None:
    """'1-126,142-160,168-224' -> band numbers (None: the default)."""
    if not text:
        return None
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-", 1)
            out.extend(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return tuple(out)


def add_extract_args(p: argparse.ArgumentParser) -> None:
    """Options of the extraction (shared with ``build``)."""
    g = p.add_argument_group("extraction")
    g.add_argument("--bands", default=None, metavar="LIST",
                   help="1-based L2A bands to store, e.g. 1-126,142-160,168-224 (default: SpectralEarth's 202)")
    g.add_argument("--clevel", type=int, default=5, help="blosc zstd compression level")
    g.add_argument("--overwrite", action="store_true", help="replace a committed cube (or an unfinished one of another plan)")
    g.add_argument("--break-lease", action="store_true", help="take the lease even if another run looks alive")
    g.add_argument("--lease-timeout", type=float, default=120.0, metavar="S", help="seconds without heartbeat after which a lease is dead")
    g.add_argument("--heartbeat", type=float, default=10.0, metavar="S", help="seconds between lease refreshes")


def extract_params_from_args(args: argparse.Namespace):
    from spectralearth.pipelines.extract import SPECTRALEARTH_BANDS, ExtractParams

    try:
        return ExtractParams(bands=parse_bands(args.bands) or SPECTRALEARTH_BANDS, clevel=args.clevel,
                             lease_timeout_s=args.lease_timeout, heartbeat_s=args.heartbeat)
    except ValueError as exc:
        raise SystemExit(f"extract options: {exc}") from None


def register(sub) -> None:
    p = sub.add_parser("extract", help="write the planned views into the Zarr cube (resumable)",
                       description=_DESCRIPTION, formatter_class=_common.HelpFormatter)
    p.add_argument("--catalog", required=True, metavar="CATALOG_URL", help="tile catalog with the plan beside it")
    p.add_argument("--cube", required=True, metavar="CUBE_URL", help="where the cube is written")
    add_extract_args(p)
    _common.add_cluster_args(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _common.add_storage_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spectralearth.pipelines.extract import CubeExistsError, LeaseHeldError, PlanMismatchError, extract_cube

    try:
        report = extract_cube(
            args.catalog,
            args.cube,
            storage_options=_common.storage_options_from_args(args),
            params=extract_params_from_args(args),
            cluster=_common.cluster_spec_from_args(args),
            overwrite=args.overwrite,
            break_lease=args.break_lease,
            progress=not args.quiet,
        )
    except (FileNotFoundError, ValueError, CubeExistsError, LeaseHeldError, PlanMismatchError) as exc:
        print(f"extract: {exc}", file=sys.stderr)
        return 1
    d = report.to_dict()
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    _common.print_summary(
        f"cube {report.cube_url}",
        {
            "patches / views": f"{d['patches']} / {d['views']} x {d['bands']} bands",
            "tasks": f"{d['tasks']} ({d['tasks_done_before']} done before, {d['tasks_run']} run now)",
            "raw bytes": f"{d['raw_bytes'] / 1e6:.1f} MB (compression {d['compression_ratio']}x)",
            "views with nodata pixels": d["views_with_nodata"],
            "throughput": f"{d['mb_per_s']:.1f} MB/s raw",
            "wall time": f"{d['seconds']:.1f} s",
        },
    )
    return 0
