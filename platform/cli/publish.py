"""``spectralearth publish``: the patch STAC items (and thumbnails) of a committed cube."""

from __future__ import annotations

import json

from spectralearth.platform.cli._common import HelpFormatter, add_storage_args, print_summary, storage_options_from_args

DESCRIPTION = """\
Publish one STAC 1.1 item per patch (location) of a committed cube under the catalog:

  CATALOG_URL/patches/version=<V>/part-*.parquet   stac-geoparquet items of cube version V
  CATALOG_URL/patches/version=<V>/manifest.json    written after the files: V is now visible
  CATALOG_URL/patches/thumbnails/<V>/<id>.png      pseudo-RGB thumbnails (640/550/460 nm)
  CATALOG_URL/patches/collection.json              the Collection (datacube extension, bands)

Each item has the patch footprint (WGS84), start/end datetime, the datetimes and
source tiles of its views, proj:code/transform/shape of its grid, and a `cube` asset
(application/vnd.zarr; version=3) naming the cube version, patch and views. A new
cube version adds files; an already published version is left as it is.

Examples:
  spectralearth publish --cube out/cube.zarr --catalog out/catalog
  spectralearth publish --cube s3://bucket/cube.zarr --catalog s3://bucket/catalog --no-thumbnails
"""


def register(sub) -> None:
    p = sub.add_parser("publish", help="patch STAC items + thumbnails of a cube", description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("--cube", required=True, metavar="CUBE_URL", help="the committed cube")
    p.add_argument("--catalog", required=True, metavar="CATALOG_URL", help="the catalog folder (patches/ goes in it)")
    p.add_argument("--tiles", metavar="TILES_CATALOG_URL", default=None,
                   help="tile catalog naming the views' source tiles (default: the cube's source catalog)")
    p.add_argument("--no-thumbnails", action="store_true", help="items without thumbnails (no pixels read)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_storage_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from spectralearth.catalog.patches import publish_patches

    report = publish_patches(args.cube, args.catalog, tiles_catalog_url=args.tiles, thumbnails=not args.no_thumbnails,
                             storage_options=storage_options_from_args(args), progress=not args.quiet)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    print_summary(
        f"published {args.cube} -> {args.catalog}",
        {
            "cube version": report.version + (" (already published: nothing written)" if report.already_published else ""),
            "patch items": report.items,
            "views": report.views,
            "parquet files": report.files,
            "thumbnails": report.thumbnails,
            "wall time": f"{report.seconds:.1f} s",
        },
    )
    return 0
