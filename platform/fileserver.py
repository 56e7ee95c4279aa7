"""A read-only HTTPS file server with HTTP basic auth and byte ranges, for loopback replicas.

:class:`AuthFileServer` serves the files under a folder the way a product download
service does: ``GET`` and ``HEAD`` only, every request must carry the right basic-auth
credentials (else ``401`` with ``WWW-Authenticate``), single byte ranges
(``Range: bytes=a-b``, ``a-``, ``-n``) answered with ``206`` and ``Content-Range``,
unsatisfiable ranges with ``416``, anything outside the folder or missing with ``404``.
TLS comes from a certificate and key the caller provides (tests make a throw-away CA
with ``trustme``); it binds loopback unless told otherwise.

Faults for tests: :meth:`AuthFileServer.fail` makes the next ``count`` requests whose
path ends with a suffix answer with a given status (e.g. ``503``), so retries and
quarantine can be exercised against a real server. :meth:`AuthFileServer.stats`
counts requests, successful HEADs, ranged requests, bytes sent and statuses (``status_200``:
whole-file GETs).

The standard library's threading HTTP server is enough here: one process, a few
concurrent range readers, keep-alive (HTTP/1.1) so clients reuse connections.
"""

from __future__ import annotations

import base64
import hmac
import os
import re
import ssl
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote, urlsplit

__all__ = ["AuthFileServer"]

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_CHUNK = 1 << 20


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format, *args):  # noqa: A002 - quiet by default
        pass

    def _plain(self, status: int, body: bytes = b"", extra: dict[str, str] | None = None) -> None:
        self.server.owner._count(status=status)
        self.send_response(status)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _authorised(self) -> bool:
        got = self.headers.get("Authorization", "")
        want = "Basic " + base64.b64encode(f"{self.server.owner.username}:{self.server.owner.password}".encode()).decode()
        return hmac.compare_digest(got.encode(), want.encode())

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        owner = self.server.owner
        if not self._authorised():
            self._plain(401, b"authentication required\n", {"WWW-Authenticate": 'Basic realm="products"'})
            return
        path = unquote(urlsplit(self.path).path)
        status = owner._take_fault(path)
        if status:
            self._plain(status, f"injected {status}\n".encode(), {"Retry-After": "0"} if status == 503 else None)
            return
        full = os.path.realpath(os.path.join(owner.root, path.lstrip("/")))
        if not (full == owner.root or full.startswith(owner.root + os.sep)) or not os.path.isfile(full):
            self._plain(404, b"not found\n")
            return
        size = os.path.getsize(full)
        start, end = 0, size - 1
        rng = self.headers.get("Range")
        partial = False
        if rng:
            m = _RANGE.match(rng.strip())
            if not m or (not m.group(1) and not m.group(2)):
                self._plain(416, b"bad range\n", {"Content-Range": f"bytes */{size}"})
                return
            a, b = m.group(1), m.group(2)
            if a:
                start, end = int(a), min(int(b), size - 1) if b else size - 1
            else:
                start, end = max(0, size - int(b)), size - 1
            if start >= size or start > end:
                self._plain(416, b"range not satisfiable\n", {"Content-Range": f"bytes */{size}"})
                return
            partial = True
        length = end - start + 1
        owner._count(status=206 if partial else 200, ranged=partial, sent=0 if self.command == "HEAD" else length,
                     head=self.command == "HEAD")
        self.send_response(206 if partial else 200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        if partial:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if self.command == "HEAD":
            return
        with open(full, "rb") as f:
            f.seek(start)
            left = length
            while left > 0:
                buf = f.read(min(_CHUNK, left))
                if not buf:
                    break
                self.wfile.write(buf)
                left -= len(buf)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: AuthFileServer


class AuthFileServer:
    """Serve ``root`` read-only over HTTPS with basic auth and byte ranges (see the module docstring).

    Args:
        root: folder to serve.
        username: the one accepted user name.
        password: its password.
        certfile: PEM server certificate chain (None: plain HTTP).
        keyfile: PEM private key of ``certfile``.
        host: address to bind (loopback by default).
        port: port (0: a free one).
    """

    def __init__(self, root: str, *, username: str, password: str, certfile: str | None = None,
                 keyfile: str | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.root = os.path.realpath(root)
        self.username, self.password = username, password
        self._certfile, self._keyfile = certfile, keyfile
        self._host, self._port = host, port
        self._lock = threading.Lock()
        self._faults: list[list] = []
        self._stats: Counter = Counter()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``https://127.0.0.1:PORT``."""
        if self._httpd is None:
            raise RuntimeError("server not started")
        scheme = "https" if self._certfile else "http"
        return f"{scheme}://{self._host}:{self._httpd.server_address[1]}"

    def url_of(self, relpath: str) -> str:
        """URL of a file under ``root``."""
        return f"{self.url}/{quote(relpath.lstrip('/'))}"

    def start(self) -> AuthFileServer:
        httpd = _Server((self._host, self._port), _Handler)
        httpd.owner = self
        if self._certfile:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self._certfile, self._keyfile)
            httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name="auth-file-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> AuthFileServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def fail(self, suffix: str, status: int, count: int = 1) -> None:
        """Answer the next ``count`` requests for paths ending with ``suffix`` with ``status``."""
        with self._lock:
            self._faults.append([suffix, int(status), int(count)])

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, path: str) -> int | None:
        with self._lock:
            for f in self._faults:
                if f[2] > 0 and path.endswith(f[0]):
                    f[2] -= 1
                    return f[1]
        return None

    def _count(self, *, status: int, ranged: bool = False, sent: int = 0, head: bool = False) -> None:
        with self._lock:
            self._stats["requests"] += 1
            # a successful HEAD is counted as "head", so status_200 counts whole-file GETs only
            self._stats["head" if head and status < 300 else f"status_{status}"] += 1
            self._stats["ranged"] += int(ranged)
            self._stats["bytes_sent"] += sent

    def stats(self) -> dict[str, int]:
        """Requests, ranged requests, bytes sent and counts per status since the start (or the last reset)."""
        with self._lock:
            return dict(self._stats)

    def reset_stats(self) -> None:
        with self._lock:
            self._stats.clear()
