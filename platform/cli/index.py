"""``spectralearth index``: build or update the STAC tile catalog of an archive."""

from __future__ import annotations

import json
import sys

from spectralearth.platform.cli._common import (
    HelpFormatter,
    add_cluster_args,
    add_storage_args,
    cluster_spec_from_args,
    print_summary,
    storage_options_from_args,
)

DESCRIPTION = """\
Index an archive of EnMAP L2A products into a STAC 1.1 tile catalog.

Reads every product under ARCHIVE_URL, at any depth: files loose in any folder,
product folders, DLR order folders (<order>/ENMAP.HSI.L2A/<product>/), and .ZIP,
.tar.gz, .tgz or .tar order downloads (suffixes in any case); a product delivered
twice (a folder and its ZIP) is indexed once. It parses METADATA.XML, checks SPECTRAL_IMAGE.TIF (readable, complete, band
count as declared), derives the valid-data footprint from QL_QUALITY_CLASSES (or
the image nodata; the XML polygon for metadata-only products), writes kerchunk
references so xarray can open each tile lazily, and commits:

  CATALOG_URL/tiles.parquet       one STAC item per tile (stac-geoparquet)
  CATALOG_URL/collection.json     the STAC Collection (written last)
  CATALOG_URL/quarantine.parquet  products left out: product, stage, error, message
  CATALOG_URL/superseded.parquet  older deliveries of the same datatake/tile
  CATALOG_URL/refs/<id>.json      kerchunk references per tile

ARCHIVE_URL may also be a STAC API, written stac:https://host/path, searched for
--collection (default ENMAP_HSI_L2A) within --bbox and --datetime. Each item's
metadata asset (METADATA.XML) and the header of its image asset (the COG) are read
over HTTPS; the catalog keeps the upstream item id and the asset hrefs, and
`extract` later reads the windows from the remote COG by range requests. Nothing
is downloaded in bulk. Credentials for the download host come from the netrc file
(~/.netrc, or the file named by $NETRC), e.g.
  machine HOST login USER password PASSWORD   (HOST: the host of the asset hrefs)
and are never written anywhere. Refused credentials, missing assets (404) and
failing servers (5xx, retried first) quarantine the product with a named error;
server failures are tried again by the next run.

Re-running on a grown archive indexes only the new products. Bad products never
stop the run; they are quarantined and listed in the summary.

Products whose storage keeps failing (5xx, throttling, dropped connections) are
quarantined as retryable, and the next run tries them again without a flag.

Exit status: 0 on success (also with quarantined products), 1 if --strict and
the catalog has quarantined products, or if the job itself failed, 2 if no
product was found (the message says what was searched and what was skipped).

Examples:
  spectralearth index ./archive --catalog ./catalog
  spectralearth index s3://bucket/enmap --catalog s3://bucket/catalog --cluster sync
  spectralearth index stac:https://geoservice.dlr.de/eoc/ogc/stac/v1 --catalog ./catalog \
      --collection ENMAP_HSI_L2A --bbox 11.0 47.5 12.5 48.5 --datetime 2023-05-01/2023-09-30
"""


def _bbox(values: list[str]) -> tuple[float, float, float, float]:
    import argparse

    try:
        w, s, e, n = (float(v) for v in values)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--bbox needs 4 numbers WEST SOUTH EAST NORTH, got {' '.join(values)}") from None
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= n <= 90):
        raise argparse.ArgumentTypeError(f"--bbox {w} {s} {e} {n}: degrees WEST SOUTH EAST NORTH, south <= north")
    return w, s, e, n


def register(sub) -> None:
    p = sub.add_parser("index", help="STAC tile catalog of an archive (incremental)", description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("archive_url", metavar="ARCHIVE_URL",
                   help="folder or s3:// prefix with EnMAP L2A products, or stac:https://… (a STAC API)")
    p.add_argument("--catalog", required=True, metavar="CATALOG_URL", help="where the catalog is written")
    p.add_argument("--strict", action="store_true", help="exit 1 if any product was quarantined")
    p.add_argument("--retry-quarantined", action="store_true", help="index products again that an earlier run quarantined")
    p.add_argument("--no-references", action="store_true", help="do not write kerchunk references")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    stac = p.add_argument_group("STAC API (ARCHIVE_URL = stac:https://…)")
    stac.add_argument("--collection", default="ENMAP_HSI_L2A", help="collection to search")
    stac.add_argument("--bbox", nargs=4, metavar=("WEST", "SOUTH", "EAST", "NORTH"), help="search area in degrees")
    stac.add_argument("--datetime", metavar="INTERVAL", help="RFC 3339 instant or interval, e.g. 2023-05-01/2023-09-30")
    stac.add_argument("--max-items", type=int, metavar="N", help="index at most N items of the search")
    add_storage_args(p)
    add_cluster_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from spectralearth.catalog import IndexConfig, index_archive
    from spectralearth.catalog.stacapi import StacSearch, is_stac_url

    cluster = cluster_spec_from_args(args)
    from spectralearth.catalog.errors import NothingFoundError

    config = IndexConfig(references=not args.no_references, retry_quarantined=args.retry_quarantined)
    search = None
    if is_stac_url(args.archive_url):
        try:
            bbox = _bbox(args.bbox) if args.bbox else None
        except Exception as exc:
            print(f"spectralearth index: error: {exc}", file=sys.stderr)
            return 2
        search = StacSearch(collection=args.collection, bbox=bbox, datetime=args.datetime, max_items=args.max_items)
    elif args.bbox or args.datetime or args.max_items:
        print("spectralearth index: error: --bbox, --datetime and --max-items apply to stac: archives only", file=sys.stderr)
        return 2
    try:
        report = index_archive(
            args.archive_url,
            search=search,
            catalog_url=args.catalog,
            storage_options=storage_options_from_args(args),
            config=config,
            cluster=cluster,
            progress=not args.quiet,
        )
    except NothingFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print_summary(
            f"indexed {args.archive_url} -> {args.catalog}",
            {
                "products found": report.discovered,
                "already indexed": report.already_indexed,
                "retried (storage errors before)": report.retried,
                "newly indexed": report.indexed,
                "quarantined (this run)": report.quarantined,
                "quarantined (in total)": report.quarantined_total,
                "superseded deliveries": report.superseded,
                "tiles in catalog": report.tiles_total,
                "wall time": f"{report.seconds:.1f} s ({report.products_per_s:.1f} products/s)",
            },
        )
        for why, n in report.skipped.items():
            print(f"  skipped {n}: {why}", file=sys.stderr)
        for q in report.quarantine:
            print(f"  QUARANTINED {q['product']} [{q['stage']}/{q['error_class']}]: {q['message']}", file=sys.stderr)
    if args.strict and report.quarantined_total:
        return 1
    return 0
