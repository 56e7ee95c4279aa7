"""The STAC API over the tile and patch catalogs: one app, two backends.

* ``geoparquet`` (embedded default, no database): stac-fastapi-geoparquet, which
  queries the stac-geoparquet files in place with DuckDB (through rustac). DuckDB's
  extensions come from PyPI packages (``duckdb-extension-*``), never downloaded at
  run time. The patch files are Hilbert-sorted in small part files
  (:mod:`spectralearth.catalog.patches`), and a search reads only the files that can
  hold a match (:mod:`spectralearth.catalog.api.pruning`).
* ``pgstac`` (production): stac-fastapi-pgstac over PostgreSQL + PostGIS with the
  pgstac schema; :func:`load_pgstac` copies the catalogs in with pypgstac's loader.

Both are read-only (no transaction extension; only GET/HEAD, and POST to
``/search``), bound ``limit`` to :attr:`ServeConfig.max_limit`, and serve the
browsing page and its JSON endpoints (:mod:`spectralearth.catalog.api.browse`).
"""

from __future__ import annotations

import atexit
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spectralearth.platform import storage

__all__ = ["BACKENDS", "ServeConfig", "create_app", "load_pgstac", "served_collections"]

BACKENDS = ("geoparquet", "pgstac")
GEOPARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"
_DUCKDB_EXTENSIONS = ("spatial", "icu", "parquet", "json")
STAC_VERSION = "1.1.0"


@dataclass(frozen=True)
class ServeConfig:
    """What ``spectralearth serve`` serves and how."""

    catalog_url: str
    """The catalog folder: ``tiles.parquet`` + ``collection.json`` and/or ``patches/``."""
    backend: str = "geoparquet"
    """``geoparquet`` (embedded, no database) or ``pgstac``."""
    max_limit: int = 1000
    """Largest page size a request may ask for (larger: 400)."""
    title: str = "SpectralEarth STAC API"
    """Title of the landing page."""


def _local_path(url: str, what: str) -> str:
    if storage.protocol_of(url) not in ("file", "local"):
        raise ValueError(f"{what}: the embedded backend reads local catalogs ({storage.redact(url)} is not); "
                         "use --backend pgstac, or copy the catalog to a local folder")
    return os.path.abspath(storage.strip_protocol(url))


def served_collections(catalog_url: str, *, storage_options: Mapping[str, Any] | None = None) -> list[tuple[dict, list[str]]]:
    """The collections under a catalog, each with the stac-geoparquet files of its items.

    The tile collection (``collection.json`` + ``tiles.parquet``) and the patch
    collection (``patches/collection.json`` + the files of the latest published cube version).

    Raises:
        FileNotFoundError: the catalog has neither tiles nor published patches.
    """
    from spectralearth.catalog.patches import PATCHES_DIR, published_versions, version_files

    out = []
    tiles = storage.join(catalog_url, "tiles.parquet")
    coll = storage.join(catalog_url, "collection.json")
    if storage.exists(tiles, storage_options) and storage.exists(coll, storage_options):
        out.append((json.loads(storage.read_bytes(coll, storage_options)), [tiles]))
    versions = published_versions(catalog_url, storage_options=storage_options)
    if versions:
        pcoll = json.loads(storage.read_bytes(storage.join(catalog_url, PATCHES_DIR, "collection.json"), storage_options))
        out.append((pcoll, version_files(catalog_url, versions[-1], storage_options=storage_options)))
    if not out:
        raise FileNotFoundError(f"nothing to serve under {storage.redact(catalog_url)}: no tile catalog "
                                "(collection.json + tiles.parquet) and no published patches (run `spectralearth publish`)")
    return out


def _duckdb_client():
    """A rustac DuckDB client whose extensions come from the installed ``duckdb-extension-*`` packages."""
    import importlib

    import rustac

    found = {}
    for name in _DUCKDB_EXTENSIONS:
        try:
            mod = importlib.import_module(f"duckdb_extension_{name}")
        except ImportError as exc:
            raise RuntimeError(f"DuckDB extension package duckdb-extension-{name} is not installed (pip install -e '.[stac]')") from exc
        files = glob.glob(os.path.join(os.path.dirname(mod.__file__), "extensions", "*", f"{name}.duckdb_extension"))
        if not files:
            raise RuntimeError(f"duckdb-extension-{name} holds no {name}.duckdb_extension")
        found[name] = files[0]
    versions = {os.path.basename(os.path.dirname(p)) for p in found.values()}
    if len(versions) != 1:
        raise RuntimeError(f"the duckdb-extension-* packages are for different DuckDB versions: {sorted(versions)}")
    # DuckDB looks extensions up as <dir>/<duckdb version>/<platform>/<name>.duckdb_extension
    version = versions.pop()
    root = tempfile.mkdtemp(prefix="spectralearth-duckdb-ext-")
    atexit.register(shutil.rmtree, root, True)  # links to the packaged extensions, for this process only
    for plat in ("linux_amd64", "linux_arm64", "osx_arm64", "osx_amd64"):
        os.makedirs(os.path.join(root, version, plat))
        for name, path in found.items():
            os.symlink(path, os.path.join(root, version, plat, f"{name}.duckdb_extension"))
    try:
        return rustac.DuckdbClient(extension_directory=root, install_extensions=False)
    except Exception as exc:
        raise RuntimeError(f"DuckDB could not load its extensions from the duckdb-extension-* packages ({exc}); "
                           "their version must match the DuckDB inside rustac") from exc


def _geoparquet_api(config: ServeConfig, settings_kw: dict, storage_options):
    from stac_fastapi.geoparquet.api import GEOPARQUET_MEDIA_TYPE as MT
    from stac_fastapi.geoparquet.api import create
    from stac_fastapi.geoparquet.settings import Settings

    collections = []
    for coll, files in served_collections(config.catalog_url, storage_options=storage_options):
        paths = [_local_path(f, coll["id"]) for f in files]
        # one href per collection: a glob over the version's part files (all listed by its manifest)
        href = paths[0] if len(paths) == 1 else os.path.join(os.path.dirname(paths[0]), "part-*.parquet")
        coll = dict(coll)
        assets = {k: v for k, v in (coll.get("assets") or {}).items() if v.get("type") != MT}  # one items href per collection
        coll["assets"] = {**assets, "data": {"href": href, "type": MT, "roles": ["data"], "title": "stac-geoparquet items"}}
        collections.append(coll)
    tmp = tempfile.mkdtemp(prefix="spectralearth-serve-")
    atexit.register(shutil.rmtree, tmp, True)
    path = os.path.join(tmp, "collections.json")
    with open(path, "w") as f:
        json.dump(collections, f)
    settings = Settings(stac_fastapi_collections_href=path, stac_fastapi_collections_reload_seconds=10**9, **settings_kw)
    from spectralearth.catalog.api.pruning import PrunedSearchClient
    from spectralearth.catalog.api.temporal import SpanSearchClient

    # datetime by intersection with each item's span, as STAC API item-search defines it;
    # each search reads only the files that can hold a match
    client = PrunedSearchClient(SpanSearchClient(_duckdb_client()))
    for coll in collections:
        client.index(coll["assets"]["data"]["href"])  # read at start-up, not by the first search
    api = create(settings=settings, duckdb_client=client)
    api.client.stac_version = STAC_VERSION
    return api


def _pgstac_api(config: ServeConfig, settings_kw: dict):
    from contextlib import asynccontextmanager

    from fastapi import APIRouter, FastAPI
    from stac_fastapi.api.app import StacApi
    from stac_fastapi.api.models import ItemCollectionUri, JSONResponse, create_get_request_model, create_post_request_model, create_request_model
    from stac_fastapi.extensions.core import (
        FieldsExtension,
        ItemCollectionFilterExtension,
        SearchFilterExtension,
        SortExtension,
        TokenPaginationExtension,
    )
    from stac_fastapi.extensions.core.fields import FieldsConformanceClasses
    from stac_fastapi.extensions.core.sort import SortConformanceClasses
    from stac_fastapi.pgstac.config import PostgresSettings, Settings
    from stac_fastapi.pgstac.core import CoreCrudClient, health_check
    from stac_fastapi.pgstac.db import close_db_connection, connect_to_db
    from stac_fastapi.pgstac.extensions.filter import FiltersClient
    from stac_fastapi.pgstac.types.search import PgstacSearch

    settings = Settings(**settings_kw)
    search_ext = [SortExtension(), FieldsExtension(), SearchFilterExtension(client=FiltersClient()), TokenPaginationExtension()]
    items_ext = [
        SortExtension(conformance_classes=[SortConformanceClasses.ITEMS]),
        FieldsExtension(conformance_classes=[FieldsConformanceClasses.ITEMS]),
        ItemCollectionFilterExtension(client=FiltersClient()),
        TokenPaginationExtension(),
    ]
    post_model = create_post_request_model(search_ext, base_model=PgstacSearch)
    items_model = create_request_model(model_name="ItemCollectionUri", base_model=ItemCollectionUri, extensions=items_ext, request_type="GET")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await connect_to_db(app, postgres_settings=PostgresSettings())  # the standard PG* environment
        yield
        await close_db_connection(app)

    return StacApi(
        app=FastAPI(openapi_url=settings.openapi_url, docs_url=settings.docs_url, redoc_url=None,
                    title=settings.stac_fastapi_title, description=settings.stac_fastapi_description, lifespan=lifespan),
        router=APIRouter(),
        settings=settings,
        extensions=[*search_ext, *items_ext],
        client=CoreCrudClient(pgstac_search_model=post_model),
        response_class=JSONResponse,
        items_get_request_model=items_model,
        search_get_request_model=create_get_request_model(search_ext),
        search_post_request_model=post_model,
        health_check=health_check,
        stac_version=STAC_VERSION,
    )


def create_app(config: ServeConfig, *, storage_options: Mapping[str, Any] | None = None):
    """The ASGI app: the STAC API of ``config.backend`` plus the browsing page, read-only.

    Raises:
        ValueError: unknown backend, or a non-local catalog for the embedded backend.
        FileNotFoundError: nothing to serve under the catalog.
    """
    from spectralearth.catalog.api.browse import add_browse_routes
    from spectralearth.catalog.api.guard import add_guards

    if config.backend not in BACKENDS:
        raise ValueError(f"unknown backend {config.backend!r} (choose from {', '.join(BACKENDS)})")
    settings_kw = {
        "stac_fastapi_title": config.title,
        "stac_fastapi_description": "STAC items of EnMAP L2A tiles and SpectralEarth patches; the patch browser is at /browse/",
        "stac_fastapi_landing_id": "spectralearth",
    }
    if config.backend == "geoparquet":
        api = _geoparquet_api(config, settings_kw, storage_options)
    else:
        api = _pgstac_api(config, settings_kw)
    app = api.app
    add_browse_routes(app, config, storage_options=storage_options)
    add_guards(app, max_limit=config.max_limit)
    return app


def load_pgstac(catalog_url: str, dsn: str, *, storage_options: Mapping[str, Any] | None = None, batch: int = 20000) -> dict[str, int]:
    """Copy the served collections and their items into a pgstac database (upsert); returns item counts."""
    import pyarrow.parquet as pq
    from pypgstac.db import PgstacDB
    from pypgstac.load import Loader, Methods
    from stac_geoparquet.arrow import stac_table_to_items

    counts = {}
    with PgstacDB(dsn=dsn) as db:
        loader = Loader(db)
        for coll, files in served_collections(catalog_url, storage_options=storage_options):
            coll = {k: v for k, v in coll.items() if k != "assets"}
            loader.load_collections(iter([coll]), insert_mode=Methods.upsert)
            n = 0
            for url in files:
                fs, path = storage.filesystem(url, storage_options)
                with fs.open(path, "rb") as f:
                    pf = pq.ParquetFile(f)
                    for rb in pf.iter_batches(batch_size=batch):
                        items = [dict(it) for it in stac_table_to_items(rb)]
                        for it in items:
                            it["collection"] = coll["id"]
                        loader.load_items(iter(items), insert_mode=Methods.upsert)
                        n += len(items)
            counts[coll["id"]] = n
        # planner statistics now, not whenever autovacuum gets round to it: until then PostgreSQL
        # guesses how selective a bbox or datetime is when it picks the geometry or datetime index
        db.connect().execute("ANALYZE pgstac.items")  # autocommit connection
    return counts
