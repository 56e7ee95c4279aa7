"""``spectralearth build``: the whole pipeline, archive to cube, as one job."""

from __future__ import annotations

import argparse
import json
import sys

from spectralearth.platform.cli import _common
from spectralearth.platform.cli.extract import add_extract_args, extract_params_from_args
from spectralearth.platform.cli.plan import add_plan_args, plan_params_from_args

_DESCRIPTION = """\
Turn an archive of EnMAP L2A products into a SpectralEarth-style patch cube in
one job: index -> overlap graph -> temporal combinations -> patch plan ->
extraction (+ per-band statistics), all on one dask cluster.

Writes under OUT_URL:
  catalog/             STAC tile catalog, overlap graph, combinations, plan
  cube.zarr            the versioned Zarr v3 patch cube (a build commits one version)
  build-report.json    counts per stage, quarantined products, timings, throughput

Re-running builds on the cube's latest version: new products are indexed, an
interrupted build is finished where it stopped, views the latest version already
holds are reused (only new views are read and written), and an unchanged plan
commits nothing. Older versions stay readable (`spectralearth versions CUBE`).

Examples:
  spectralearth build demo-out/archive --out demo-out
  spectralearth build s3://bucket/enmap --out s3://bucket/spectralearth-v1 --workers 8

Exit codes: 0 version committed (or up to date), 1 a stage failed (or another
build committed first: the error names it), 2 bad usage, 130 interrupted.
"""


def register(sub) -> None:
    p = sub.add_parser("build", help="the whole pipeline: archive -> catalog -> plan -> cube",
                       description=_DESCRIPTION, formatter_class=_common.HelpFormatter)
    p.add_argument("archive_url", metavar="ARCHIVE_URL", help="folder or s3:// prefix with EnMAP L2A products")
    p.add_argument("--out", required=True, metavar="OUT_URL", help="output root")
    add_plan_args(p)
    add_extract_args(p)
    _common.add_cluster_args(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _common.add_storage_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spectralearth.pipelines.build import BuildConfig, build
    from spectralearth.pipelines.extract import VersionConflictError

    config = BuildConfig(plan=plan_params_from_args(args), extract=extract_params_from_args(args))
    try:
        report = build(
            args.archive_url,
            args.out,
            storage_options=_common.storage_options_from_args(args),
            config=config,
            cluster=_common.cluster_spec_from_args(args),
            progress=not args.quiet,
        )
    except (FileNotFoundError, ValueError, VersionConflictError) as exc:
        print(f"build: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
        return 0
    _common.print_summary(f"built {report.archive_url} -> {report.out_url}", report.summary())
    for q in report.quarantined:
        print(f"  QUARANTINED {q.get('product')} [{q.get('stage')}/{q.get('error_class')}]: {q.get('message')}", file=sys.stderr)
    print(f"report: {report.out_url}/build-report.json")
    return 0
