"""A STAC API server over a stac-geoparquet file, for loopback replicas of a provider's catalog.

:class:`StacApiServer` runs ``stac-fastapi-geoparquet`` (a stac-fastapi application with a
stac-geoparquet backend, queried with DuckDB through ``rustac``, its DuckDB extensions
from the ``rustac-duckdb-extensions`` wheel) under ``uvicorn`` in a
child process on loopback. It serves ``/``, ``/collections``, ``/collections/{id}/items``
and ``/search`` (GET and POST, with ``bbox``, ``datetime``, ``collections`` and paging),
the collection being generated from the items. :func:`write_items_parquet` writes the
items file it serves.

The child gets ``PR_SET_PDEATHSIG``, so it never outlives the process that started it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from spectralearth.platform.seaweed import _parent_death_signal

__all__ = ["StacApiServer", "create_app", "write_items_parquet"]


def create_app():
    """The ASGI app (``uvicorn --factory``): stac-fastapi-geoparquet with DuckDB's extensions from the
    ``rustac-duckdb-extensions`` wheel, so the server never downloads anything.

    The items file comes from ``STAC_FASTAPI_GEOPARQUET_HREF``.
    """
    import rustac_duckdb_extensions
    from rustac import DuckdbClient
    from stac_fastapi.geoparquet.api import create

    client = DuckdbClient(extension_directory=rustac_duckdb_extensions.extension_directory())
    return create(duckdb_client=client).app


def write_items_parquet(items: Iterable[Mapping[str, Any]], path: str | os.PathLike) -> str:
    """Write STAC item dicts as a stac-geoparquet file (what :class:`StacApiServer` serves)."""
    import stac_geoparquet.arrow as sga

    items = [dict(it) for it in items]
    if not items:
        raise ValueError("no items to serve")
    table = sga.parse_stac_items_to_arrow(items)
    sga.to_parquet(table, str(path))
    return str(path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StacApiServer:
    """``stac-fastapi-geoparquet`` serving one stac-geoparquet file on loopback.

    Args:
        items_parquet: the stac-geoparquet file.
        log_dir: where the server's log goes (default: beside the file).
        host: address to bind.
        port: port (0: a free one).
        start_timeout_s: how long to wait for the API to answer.
    """

    def __init__(self, items_parquet: str | os.PathLike, *, log_dir: str | os.PathLike | None = None,
                 host: str = "127.0.0.1", port: int = 0, start_timeout_s: float = 60.0) -> None:
        self.items_parquet = str(items_parquet)
        self.log_path = Path(log_dir or Path(self.items_parquet).parent) / "stac-api.log"
        self.host, self.port = host, port or _free_port()
        self.start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The API's landing page URL."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> StacApiServer:
        env = {**os.environ, "STAC_FASTAPI_GEOPARQUET_HREF": self.items_parquet}
        cmd = [sys.executable, "-m", "uvicorn", "--factory", "spectralearth.platform.stacserver:create_app", "--host", self.host,
               "--port", str(self.port), "--log-level", "warning", "--no-access-log"]
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log = log
        self._proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      preexec_fn=_parent_death_signal)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        import urllib.request

        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the STAC API server exited with {self._proc.returncode}: {self._log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/collections", timeout=2) as r:  # noqa: S310 - loopback
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"the STAC API server did not answer within {self.start_timeout_s:.0f} s: {self._log_tail()}")

    def _log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def __enter__(self) -> StacApiServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
