"""The STAC API and patch browser: ``spectralearth serve``.

* :func:`create_app` - the ASGI app (``geoparquet`` embedded backend or ``pgstac``), read-only.
* :func:`serve` - run it with uvicorn (binds 127.0.0.1 unless told otherwise).
* :func:`load_pgstac` - copy the catalogs into a pgstac database.
* :class:`PgstacServer` - a throw-away PostgreSQL + PostGIS + pgstac on loopback (tests, trying out).
"""

from spectralearth.catalog.api.app import BACKENDS, ServeConfig, create_app, load_pgstac, served_collections
from spectralearth.catalog.api.pgdb import PgstacServer

__all__ = ["BACKENDS", "PgstacServer", "ServeConfig", "create_app", "load_pgstac", "serve", "served_collections"]


def serve(config: ServeConfig, *, host: str = "127.0.0.1", port: int = 8080, storage_options=None, log_level: str = "warning") -> None:
    """Serve the API and the page with uvicorn until interrupted."""
    import uvicorn

    app = create_app(config, storage_options=storage_options)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
