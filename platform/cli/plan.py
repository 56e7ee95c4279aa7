"""``spectralearth plan``: place the 128×128 windows and choose and filter their views."""

from __future__ import annotations

import argparse
import json
import sys

from spectralearth.platform.cli import _common

_DESCRIPTION = """\
Lay 128x128-pixel windows on the tiles' own 30 m UTM grid inside each temporal
combination's intersection (highest n first, then by area), then inside single
tiles for the rest of the archive. A window is kept only if it lies inside the
valid footprint of every member and overlaps no accepted window by more than
--max-overlap of its area.

Every acquisition of the same UTM zone whose valid footprint contains a window
becomes a view of it (--members-only: the combination's members only), one per
datatake. Views are filtered with the QL masks (background = nodata, cloud,
cloud shadow, snow; read once per tile on the cluster); a patch keeps its passing
views and is dropped without any. Footprint-only catalogs are planned from
geometry alone.

The work runs as dask tasks, one per bundle of whole components of the
footprints; each task writes its own part of the two tables (this process never
holds the plan). Tables are folders of parquet parts committed by one
_manifest.json write: readers see the previous plan or the new one.

Reads tiles.parquet and the combinations.parquet table (optional) of the
catalog; writes beside it:
  patches.parquet    table: patch, crs, x0, y0 (upper-left, m), lon, lat, n_views,
                     view_start, priority (combination n), combination, geometry
  views.parquet      table: view, patch, tile (catalog row), id, datatake, datetime,
                     row0, col0 (window in the tile), member, *_frac filter stats
  plan-report.json   counts per step, what each filter removed, timings

Examples:
  spectralearth plan --catalog demo-out/catalog
  spectralearth plan --catalog s3://bucket/catalog --max-cloud 0.05 --cluster sync

Exit codes: 0 done, 1 the job failed (e.g. no catalog), 2 bad usage.
"""


def add_plan_args(p: argparse.ArgumentParser) -> None:
    """Options of the patch plan (shared with ``build``)."""
    g = p.add_argument_group("patch plan")
    g.add_argument("--max-overlap", type=float, default=0.0, metavar="F", help="largest overlap of two windows (fraction)")
    g.add_argument("--members-only", action="store_true", help="views only from the combination's members")
    g.add_argument("--no-singles", action="store_true", help="plan only combinations, not single tiles")
    g.add_argument("--max-nodata", type=float, default=0.0, metavar="F", help="largest background fraction of a view")
    g.add_argument("--max-cloud", type=float, default=0.01, metavar="F", help="largest cloud fraction of a view")
    g.add_argument("--max-cloud-shadow", type=float, default=0.01, metavar="F", help="largest cloud-shadow fraction")
    g.add_argument("--max-snow", type=float, default=0.05, metavar="F", help="largest snow fraction of a view")
    g.add_argument("--no-pixel-filters", action="store_true", help="plan from geometry only")


def plan_params_from_args(args: argparse.Namespace):
    from spectralearth.pipelines.plan import PlanParams

    try:
        return PlanParams(
            max_overlap=args.max_overlap,
            wide_views=not args.members_only,
            singles=not args.no_singles,
            max_nodata=args.max_nodata,
            max_cloud=args.max_cloud,
            max_cloud_shadow=args.max_cloud_shadow,
            max_snow=args.max_snow,
            pixel_filters=not args.no_pixel_filters,
        )
    except ValueError as exc:
        raise SystemExit(f"plan options: {exc}") from None


def register(sub) -> None:
    p = sub.add_parser("plan", help="patch plan: windows, views and quality filters", description=_DESCRIPTION,
                       formatter_class=_common.HelpFormatter)
    p.add_argument("--catalog", required=True, metavar="CATALOG_URL", help="tile catalog folder (local path or fsspec URL)")
    add_plan_args(p)
    _common.add_cluster_args(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _common.add_storage_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spectralearth.pipelines.plan import plan_job

    try:
        report = plan_job(
            args.catalog,
            storage_options=_common.storage_options_from_args(args),
            params=plan_params_from_args(args),
            cluster=_common.cluster_spec_from_args(args),
            progress=not args.quiet,
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"plan: {exc}", file=sys.stderr)
        return 1
    d = report.to_dict()
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    _common.print_summary(
        f"patch plan of {args.catalog}",
        {
            "tiles": d["tiles"],
            "windows placed": d["placement"].get("placed"),
            "candidate views": f"{d['candidate_views']} ({d['candidate_views_members_only']} from combination members)",
            "removed by filter": ", ".join(f"{k}: {v}" for k, v in d["removed_by_filter"].items()),
            "patches without views": d["patches_without_views"],
            "patches / views": f"{d['patches']} / {d['views']} ({d['multi_date_patches']} multi-date)",
            "wall time": f"{d['seconds']:.1f} s",
        },
    )
    return 0
