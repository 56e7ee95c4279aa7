"""``spectralearth versions``: list a cube's committed versions (and check one)."""

from __future__ import annotations

import argparse
import json
import sys

from spectralearth.platform.cli import _common

_DESCRIPTION = """\
List the committed versions of the cube at CUBE_URL, oldest first: id, commit
time, parent, counts of views and patches (new and reused views), the source
catalog and its snapshot. Every build commits one immutable version; readers
pin one with open_cube(CUBE_URL, version="v2") or PatchStream(CUBE_URL,
version="v2"), and get the latest without one.

--verify VERSION reads every chunk of that version ("latest" for the newest)
and checks its CRC-32C; a damaged chunk is named by patch, view and key.

Examples:
  spectralearth versions demo-out/cube.zarr
  spectralearth versions s3://bucket/cube.zarr --json
  spectralearth versions demo-out/cube.zarr --verify latest

Exit codes: 0 listed (and verified), 1 no cube, no such version, or damaged
chunks found, 2 bad usage.
"""


def register(sub) -> None:
    p = sub.add_parser("versions", help="list a cube's committed versions", description=_DESCRIPTION,
                       formatter_class=_common.HelpFormatter)
    p.add_argument("cube", metavar="CUBE_URL", help="the cube")
    p.add_argument("--json", action="store_true", help="print the versions as JSON")
    p.add_argument("--verify", metavar="VERSION", default=None, help="check every chunk of VERSION ('latest': the newest)")
    _common.add_storage_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spectralearth.platform.cube import CubeNotCommittedError, VersionNotFoundError, list_versions, verify_version

    opts = _common.storage_options_from_args(args)
    try:
        versions = list_versions(args.cube, storage_options=opts)
        if not versions:
            raise CubeNotCommittedError(f"no committed cube at {args.cube}")
        checked = None
        if args.verify:
            checked = verify_version(args.cube, None if args.verify == "latest" else args.verify,
                                     storage_options=opts, progress=not args.quiet)
    except (CubeNotCommittedError, VersionNotFoundError, ValueError) as exc:
        print(f"versions: {exc}", file=sys.stderr)
        return 1
    if args.json:
        out: dict = {"cube": args.cube, "versions": [v.to_dict() for v in versions]}
        if checked is not None:
            out["verify"] = checked
        print(json.dumps(out, indent=2, default=str))
    else:
        for v in versions:
            c = v.counts
            _common.print_summary(f"{v.id}  {v.created}", {
                "parent": v.parent or "-",
                "views / patches": f"{c.get('views')} / {c.get('patches')} ({c.get('new_views')} new, {c.get('reused_views')} reused)",
                "source catalog": f"{v.attrs.get('spectralearth:source_catalog')} "
                                  f"(snapshot {v.attrs.get('spectralearth:catalog_snapshot')})",
                "build": v.build,
            })
        if checked is not None:
            print(f"verified {checked['version']}: {checked['views']} views, {len(checked['bad'])} damaged")
            for b in checked["bad"]:
                print(f"  DAMAGED {b['error']}", file=sys.stderr)
    return 1 if checked is not None and checked["bad"] else 0
