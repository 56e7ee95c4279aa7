"""`spectralearth combinations`: temporal combinations (Algorithm 1) of a tile catalog."""

from __future__ import annotations

import argparse
import json
import sys

from spectralearth.platform.cli import _common

_DESCRIPTION = """\
Find the sets of tiles (distinct acquisitions) whose footprints share at least
one patch, following SpectralEarth's Algorithm 1: for each tile, start from its
overlap-graph edges (pairs), grow n-tuples from the kept (n-1)-tuples by adding
a tile that overlaps every member, keep the --beam largest n-tuples by
intersection area, and stop at the first n where no intersection can hold one
--patch-px x --patch-px patch of 30 m pixels (an exact shape test: the
intersection, in its UTM zone, must contain an axis-aligned square of that
side). Two tiles of one datatake never form a tuple.

On densely revisited archives the exact search grows every kept tuple by every
tile that overlaps all its members (~k^3 work for k revisits of a place):
--max-candidates K grows it only by the K tiles with the largest smallest pair
overlap with its members. That changes the output; docs/scale.md measures what
it costs the patch plan.

Needs the overlap graph: run `spectralearth overlaps --catalog ...` first.

Writes the combinations.parquet table beside the catalog (GeoParquet parts, one
per group of components, written by the tasks and committed by one
_manifest.json write): members (sorted tile rows), member_ids, n, component,
area_m2, utm_epsg, geometry_utm (WKB in utm_epsg), geometry (WGS84
intersection); parts in component order, rows sorted by (n, members) within;
the same combinations whatever the cluster.

Examples:
  spectralearth combinations --catalog demo-out/catalog
  spectralearth combinations --catalog s3://bucket/catalog --beam 32 --scheduler tcp://10.0.0.5:8786
  spectralearth combinations --catalog dense/catalog --beam 4 --max-candidates 2

Exit codes: 0 done, 1 the job failed (e.g. no overlap graph), 2 bad usage.
"""


def register(sub) -> None:
    p = sub.add_parser(
        "combinations",
        help="temporal combinations of overlapping tiles (Algorithm 1)",
        description=_DESCRIPTION,
        formatter_class=_common.HelpFormatter,
    )
    p.add_argument("--catalog", required=True, metavar="CATALOG_URL", help="tile catalog folder (local path or fsspec URL)")
    p.add_argument("--beam", type=int, default=16, metavar="N", help="n-tuples (n >= 3) kept per seed tile and size")
    p.add_argument("--patch-px", type=int, default=128, metavar="PX", help="patch side in pixels")
    p.add_argument("--pixel-m", type=float, default=30.0, metavar="M", help="pixel size in metres")
    p.add_argument("--max-n", type=int, default=None, metavar="N", help="largest tuple size (None: no limit)")
    p.add_argument("--max-candidates", type=int, default=None, metavar="K",
                   help="tiles a kept tuple is grown by, the K with the largest pair overlaps (None: all, the exact search)")
    _common.add_cluster_args(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    _common.add_storage_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spectralearth.pipelines.combinations import CombinationParams, combinations_job

    try:
        params = CombinationParams(beam=args.beam, patch_px=args.patch_px, pixel_m=args.pixel_m, max_n=args.max_n,
                                   max_candidates=args.max_candidates)
        report = combinations_job(
            args.catalog,
            storage_options=_common.storage_options_from_args(args),
            cluster=_common.cluster_spec_from_args(args),
            params=params,
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"combinations: {exc}", file=sys.stderr)
        return 1
    rows = report.as_dict()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    _common.print_summary(
        "temporal combinations",
        {
            "tiles": rows["n_tiles"],
            "edges": rows["n_edges"],
            "combinations": rows["n_combinations"],
            "by size n": ", ".join(f"{k}: {v}" for k, v in rows["by_size"].items()) or "-",
            "largest n": rows["max_n"],
            "tiles in combinations": rows["tiles_in_combinations"],
            "file": rows["url"],
            "seconds": rows["seconds"],
        },
    )
    return 0
