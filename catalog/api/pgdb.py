"""A throw-away PostgreSQL + PostGIS server with pgstac, for tests, benchmarks and trying things out.

Uses the Debian ``postgresql-15`` / ``postgresql-15-postgis-3`` binaries (installed by
``infra/pgstac/install-system-deps.sh``): ``initdb`` into a fresh folder, ``postgres``
on a free loopback port (trust authentication, reachable from this machine only),
``pypgstac migrate`` to install pgstac, ``pypgstac load`` for items. PostgreSQL refuses
to run as root, so as root the server runs as the ``postgres`` system user. The server
dies with the process that started it (``PR_SET_PDEATHSIG``), and :meth:`stop` removes
its folder.

A production pgstac database is not started here: ``spectralearth serve --backend pgstac``
takes its connection from the standard ``PG*`` environment variables.
"""

from __future__ import annotations

import ctypes
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

__all__ = ["PgstacServer", "find_pg_bin"]

_PG_BINS = ("/usr/lib/postgresql/*/bin",)


def find_pg_bin() -> str:
    """Folder of the PostgreSQL server binaries (``initdb``, ``postgres``).

    Raises:
        FileNotFoundError: PostgreSQL is not installed (run ``infra/pgstac/install-system-deps.sh``).
    """
    for pattern in _PG_BINS:
        for path in sorted(glob.glob(pattern), reverse=True):
            if os.path.exists(os.path.join(path, "initdb")):
                return path
    raise FileNotFoundError("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin); "
                            "install them with infra/pgstac/install-system-deps.sh")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _preexec(uid: int | None, gid: int | None):
    def run() -> None:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: die with the parent
        if gid is not None:
            os.setgid(gid)
        if uid is not None:
            os.setuid(uid)

    return run


@dataclass
class PgstacServer:
    """A temporary PostgreSQL server with the pgstac schema, on 127.0.0.1."""

    port: int = 0
    """TCP port (0: a free one)."""
    dbname: str = "pgstac"
    """Database holding pgstac."""
    datadir: str = ""
    """The cluster folder (set by :meth:`start`)."""
    _proc: subprocess.Popen | None = field(default=None, repr=False)
    _ids: tuple[int | None, int | None] = (None, None)

    @property
    def dsn(self) -> str:
        """libpq connection string (no password: trust on loopback)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.dbname}"

    @property
    def env(self) -> dict[str, str]:
        """``PG*`` environment variables that point libpq / pypgstac / stac-fastapi-pgstac here."""
        return {"PGHOST": "127.0.0.1", "PGPORT": str(self.port), "PGUSER": "postgres", "PGDATABASE": self.dbname, "PGPASSWORD": ""}

    def _run(self, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess:
        uid, gid = self._ids
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, preexec_fn=_preexec(uid, gid), cwd="/")
        if res.returncode:
            raise RuntimeError(f"{os.path.basename(cmd[0])} failed ({res.returncode}): {res.stderr.strip() or res.stdout.strip()}")
        return res

    def start(self, *, timeout: float = 30) -> PgstacServer:
        """initdb, start the server, create the database and install pgstac (``pypgstac migrate``)."""
        bindir = find_pg_bin()
        self.port = self.port or _free_port()
        self.datadir = tempfile.mkdtemp(prefix="spectralearth-pgstac-")
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            self._ids = (pw.pw_uid, pw.pw_gid)
            os.chown(self.datadir, pw.pw_uid, pw.pw_gid)
        data = os.path.join(self.datadir, "data")
        self._run(f"{bindir}/initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        uid, gid = self._ids
        self._proc = subprocess.Popen(
            [f"{bindir}/postgres", "-D", data, "-p", str(self.port), "-h", "127.0.0.1", "-k", self.datadir,
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "shared_buffers=256MB", "-c", "work_mem=32MB", "-c", "max_connections=50"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.datadir, "postgres.log"), "wb"),
            preexec_fn=_preexec(uid, gid), cwd="/",
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"postgres exited ({self._proc.returncode}): {self.log()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
                res = subprocess.run([f"{bindir}/pg_isready", "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True)
                if res.returncode == 0:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"postgres did not accept connections on 127.0.0.1:{self.port} within {timeout} s")
            time.sleep(0.1)
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.dbname}"')
        self.migrate()
        return self

    def migrate(self) -> str:
        """Install (or upgrade) the pgstac schema with ``pypgstac migrate``; returns the version."""
        from pypgstac.db import PgstacDB
        from pypgstac.migrate import Migrate

        with PgstacDB(dsn=self.dsn) as db:
            return Migrate(db).run_migration()

    def load_collection(self, collection: dict) -> None:
        """Insert or replace one collection."""
        from pypgstac.db import PgstacDB
        from pypgstac.load import Loader, Methods

        with PgstacDB(dsn=self.dsn) as db:
            Loader(db).load_collections(iter([collection]), insert_mode=Methods.upsert)

    def load_items(self, items) -> None:
        """Insert or replace items (an iterable of STAC dicts) with pypgstac's loader."""
        from pypgstac.db import PgstacDB
        from pypgstac.load import Loader, Methods

        with PgstacDB(dsn=self.dsn) as db:
            Loader(db).load_items(iter(items), insert_mode=Methods.upsert)

    def log(self) -> str:
        try:
            with open(os.path.join(self.datadir, "postgres.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its folder."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self.datadir:
            shutil.rmtree(self.datadir, ignore_errors=True)
            self.datadir = ""

    def __enter__(self) -> PgstacServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
