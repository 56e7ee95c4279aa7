"""``spectralearth serve``: the STAC API and the patch browser."""

from __future__ import annotations

import sys

from spectralearth.platform.cli._common import HelpFormatter, add_storage_args, storage_options_from_args

DESCRIPTION = """\
Serve a read-only STAC API over the tile and patch catalogs, and the patch browser.

  /                 landing page (STAC API core, features, item-search, filter)
  /collections      the tile collection and the patch collection (latest published version)
  /search           bbox, datetime, ids, intersects, limit + paging, CQL2 filter
  /browse/          the web page: footprint map, search by box and dates, thumbnails,
                    item view with the spectrum of a clicked pixel, GeoTIFF download

Backends:
  geoparquet  (default) no database: DuckDB queries the stac-geoparquet files in place
              (local catalogs)
  pgstac      PostgreSQL + PostGIS with pgstac, connection from the standard PG*
              environment variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE);
              --load first copies the catalog's collections and items in

Binds 127.0.0.1 unless --host says otherwise. Page size is bounded by --max-limit.

Examples:
  spectralearth serve --catalog out/catalog
  PGHOST=db PGUSER=stac PGDATABASE=stac spectralearth serve --catalog out/catalog --backend pgstac --load
"""


def register(sub) -> None:
    p = sub.add_parser("serve", help="STAC API + patch browser (read-only)", description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("--catalog", required=True, metavar="CATALOG_URL", help="catalog folder (tiles.parquet and/or patches/)")
    p.add_argument("--backend", choices=("geoparquet", "pgstac"), default="geoparquet", help="search backend")
    p.add_argument("--load", action="store_true", help="pgstac: load the catalog into the database before serving")
    p.add_argument("--host", default="127.0.0.1", help="address to bind")
    p.add_argument("--port", type=int, default=8080, help="TCP port")
    p.add_argument("--max-limit", type=int, default=1000, help="largest page size a request may ask for")
    add_storage_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from spectralearth.catalog.api import ServeConfig, load_pgstac, serve

    opts = storage_options_from_args(args)
    if args.max_limit < 1:
        print("error: --max-limit must be at least 1", file=sys.stderr)
        return 2
    if args.load:
        if args.backend != "pgstac":
            print("error: --load is for --backend pgstac", file=sys.stderr)
            return 2
        import os

        dsn = "postgresql://" + (f"{os.environ.get('PGUSER', 'postgres')}@{os.environ.get('PGHOST', '127.0.0.1')}:"
                                 f"{os.environ.get('PGPORT', '5432')}/{os.environ.get('PGDATABASE', 'postgres')}")
        counts = load_pgstac(args.catalog, dsn, storage_options=opts)
        print("loaded " + ", ".join(f"{k}: {v} items" for k, v in counts.items()), file=sys.stderr)
    config = ServeConfig(catalog_url=args.catalog, backend=args.backend, max_limit=args.max_limit)
    print(f"serving {args.catalog} ({args.backend}) on http://{args.host}:{args.port}/  (browser: /browse/)", file=sys.stderr, flush=True)
    serve(config, host=args.host, port=args.port, storage_options=opts)
    return 0
