"""``spectralearth extract``: write the planned views into the Zarr patch cube."""

from __future__ import annotations

import argparse
import json
import sys

from spectralearth.platform.cli import _common

_DESCRIPTION = """\
Read every planned 128x128 window of every tile once (only the selected bands),
and write it as one view (one chunk, blosc zstd + CRC-32C) of a new version of
the Zarr v3 cube at CUBE_URL; per-band mean/std over valid pixels are merged
exactly from the views' moments. No two tasks write the same object.

Each run commits one immutable version on top of the cube's latest (list them
with `spectralearth versions CUBE_URL`). Views the latest version already holds
(same product, window, bands and encoding) are reused, not read again: a grown
archive costs only its new views. A rerun after a crash (killed client or
worker, storage outage) finishes the same build where it stopped; readers never
see a partial version. Of two concurrent runs, the first to commit wins and the
other stops with an error naming the version that won.

Needs the plan: run `spectralearth plan --catalog CATALOG_URL` first.

Examples:
  spectralearth extract --catalog demo-out/catalog --cube demo-out/cube.zarr
  spectralearth extract --catalog s3://b/catalog --cube s3://b/cube.zarr --bands 1-224

Exit codes: 0 committed (or up to date), 1 failed (or another run committed
first, or the plan is empty), 2 bad usage, 130 interrupted.
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


def extract_params_from_args(args: argparse.Namespace):
    from spectralearth.pipelines.extract import SPECTRALEARTH_BANDS, ExtractParams

    try:
        return ExtractParams(bands=parse_bands(args.bands) or SPECTRALEARTH_BANDS, clevel=args.clevel)
    except ValueError as exc:
        raise SystemExit(f"extract options: {exc}") from None


def register(sub) -> None:
    p = sub.add_parser("extract", help="write the planned views as a new version of the Zarr cube",
                       description=_DESCRIPTION, formatter_class=_common.HelpFormatter)
    p.add_argument("--catalog", required=True, metavar="CATALOG_URL", help="tile catalog with the plan beside it")
    p.add_argument("--cube", required=True, metavar="CUBE_URL", help="where the cube is written")
    add_extract_args(p)
    _common.add_cluster_args(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _common.add_storage_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spectralearth.pipelines.extract import VersionConflictError, extract_cube

    try:
        report = extract_cube(
            args.catalog,
            args.cube,
            storage_options=_common.storage_options_from_args(args),
            params=extract_params_from_args(args),
            cluster=_common.cluster_spec_from_args(args),
            progress=not args.quiet,
        )
    except (FileNotFoundError, ValueError, VersionConflictError) as exc:
        print(f"extract: {exc}", file=sys.stderr)
        return 1
    d = report.to_dict()
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    _common.print_summary(
        f"cube {report.cube_url}",
        {
            "version": f"{d['version']} (parent {d['parent']})" + (" up to date, nothing committed" if d["up_to_date"] else ""),
            "patches / views": f"{d['patches']} / {d['views']} x {d['bands']} bands ({d['new_views']} new, {d['reused_views']} reused)",
            "tasks": f"{d['tasks']} ({d['tasks_done_before']} done before, {d['tasks_run']} run now)",
            "raw bytes": f"{d['raw_bytes'] / 1e6:.1f} MB (this run {d['raw_bytes_this_run'] / 1e6:.1f} MB, compression {d['compression_ratio']}x)",
            "views with nodata pixels": d["views_with_nodata"],
            "throughput": f"{d['mb_per_s']:.1f} MB/s raw",
            "wall time": f"{d['seconds']:.1f} s",
        },
    )
    return 0
