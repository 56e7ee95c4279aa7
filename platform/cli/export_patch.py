"""``spectralearth export-patch``: a patch item's views as one GeoTIFF."""

from __future__ import annotations

import sys

from spectralearth.platform.cli._common import HelpFormatter, add_storage_args, storage_options_from_args

DESCRIPTION = """\
Write the views of one patch item as a GeoTIFF: float32 reflectance, one band per
(view, wavelength) in turn, described as "<view datetime> <wavelength> nm", with the
patch grid's CRS and transform; nodata is NaN.

The item is looked up among the published patch items of the catalog (latest cube
version unless --version names one).

Examples:
  spectralearth export-patch patch-0000042-20260101T000000-ab12cd34 --catalog out/catalog --to patch.tif
"""


def register(sub) -> None:
    p = sub.add_parser("export-patch", help="a patch item's pixels as a GeoTIFF", description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("item_id", metavar="ITEM_ID", help="id of the patch item")
    p.add_argument("--catalog", required=True, metavar="CATALOG_URL", help="catalog with published patches")
    p.add_argument("--version", default=None, help="cube version (default: the latest published)")
    p.add_argument("--to", required=True, metavar="OUT_TIF", help="GeoTIFF to write (local path)")
    add_storage_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from spectralearth.catalog.patches import find_patch_item
    from spectralearth.catalog.pixels import export_patch

    opts = storage_options_from_args(args)
    try:
        item = find_patch_item(args.catalog, args.item_id, version=args.version, storage_options=opts)
    except (KeyError, FileNotFoundError) as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 1
    n = export_patch(item, args.to, storage_options=opts)
    print(f"wrote {args.to}: {n} bands ({item['properties']['spectralearth:view_count']} views)")
    return 0
