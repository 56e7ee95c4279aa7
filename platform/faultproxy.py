"""A fault-injecting HTTP reverse proxy for S3 endpoints.

:class:`FaultProxy` listens on loopback, forwards every request (method, path,
query, headers, streamed body) to an upstream S3 endpoint and streams the
response back. With probability ``fail_rate`` per request it injects one fault
instead, drawn from ``kinds``:

``"503"``
    HTTP 503 with an S3 ``ServiceUnavailable`` XML error body.
``"slowdown"``
    HTTP 503 with an S3 ``SlowDown`` XML error body (throttling).
``"500"``
    HTTP 500 with an S3 ``InternalError`` XML error body.
``"drop"``
    the connection is closed without any response.
``"truncate"``
    the request is forwarded, then the connection is closed half-way through
    the response body (or right after the status line when there is none).
``"latency"``
    the request is forwarded after an extra ``latency_s`` seconds.

The ``Host`` header and every other signed header pass through unchanged, so
AWS SigV4 signatures made for the proxy's address still verify upstream (the
server checks the signature against the ``Host`` it receives). ``Expect:
100-continue`` is answered by the proxy itself (``expect`` is never signed).

Faults are drawn from a seeded generator, so a run is reproducible for a given
order of requests. Use it as a context manager::

    with FaultProxy(server.endpoint_url, fail_rate=0.2, kinds=("slowdown",)) as proxy:
        fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": proxy.endpoint_url}, ...)
        ...
        print(proxy.stats())
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import threading
import uuid
from collections import Counter
from urllib.parse import urlsplit

__all__ = ["FaultProxy", "FAULT_KINDS"]

FAULT_KINDS = ("503", "slowdown", "500", "drop", "truncate", "latency")
_ERRORS = {
    "503": (503, "Service Unavailable", "ServiceUnavailable", "Service is unable to handle request."),
    "slowdown": (503, "Slow Down", "SlowDown", "Please reduce your request rate."),
    "500": (500, "Internal Server Error", "InternalError", "We encountered an internal error. Please try again."),
}
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "expect"}
_CHUNK = 64 * 1024
_HEAD_LIMIT = 1 << 20


class _Message:
    """A parsed HTTP start line and header block."""

    def __init__(self, start_line: str, headers: list[tuple[str, str]]) -> None:
        self.start_line = start_line
        self.headers = headers

    def get(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def is_chunked(self) -> bool:
        return "chunked" in (self.get("transfer-encoding") or "").lower()

    def content_length(self) -> int | None:
        value = self.get("content-length")
        return int(value) if value is not None and value.strip().isdigit() else None

    def encode(self, *, drop: set[str] = frozenset(), extra: list[tuple[str, str]] = ()) -> bytes:
        lines = [self.start_line]
        lines += [f"{k}: {v}" for k, v in self.headers if k.lower() not in drop]
        lines += [f"{k}: {v}" for k, v in extra]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_head(reader: asyncio.StreamReader) -> _Message | None:
    """Read one header block; None on a clean EOF before any byte."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise
    lines = raw.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers.append((k.strip(), v.strip()))
    return _Message(lines[0], headers)


async def _copy_exact(reader, writer, n: int, *, limit: int | None = None) -> None:
    """Copy ``n`` bytes (stop early after ``limit`` bytes if given)."""
    left = n if limit is None else min(n, limit)
    while left > 0:
        data = await reader.read(min(_CHUNK, left))
        if not data:
            raise ConnectionError("peer closed before the end of the body")
        if writer is not None:
            writer.write(data)
            await writer.drain()
        left -= len(data)


async def _copy_chunked(reader, writer) -> None:
    """Copy a chunked body verbatim, up to and including its trailer."""
    while True:
        size_line = await reader.readuntil(b"\r\n")
        if writer is not None:
            writer.write(size_line)
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while True:  # trailer lines, then an empty line
                line = await reader.readuntil(b"\r\n")
                if writer is not None:
                    writer.write(line)
                if line == b"\r\n":
                    break
            if writer is not None:
                await writer.drain()
            return
        await _copy_exact(reader, writer, size + 2)


async def _copy_until_eof(reader, writer, *, limit: int | None = None) -> None:
    copied = 0
    while limit is None or copied < limit:
        data = await reader.read(_CHUNK if limit is None else min(_CHUNK, limit - copied))
        if not data:
            return
        writer.write(data)
        await writer.drain()
        copied += len(data)


class FaultProxy:
    """HTTP reverse proxy in a background thread that injects S3-style faults.

    Args:
        upstream_url: the S3 endpoint to forward to (``http://host:port``).
        fail_rate: probability in [0, 1] that a request gets a fault.
        kinds: fault kinds to draw from (see the module docstring).
        latency_s: extra delay of a ``"latency"`` fault.
        seed: seed of the fault generator.
        port: loopback port to listen on (0: any free port).
    """

    def __init__(
        self,
        upstream_url: str,
        *,
        fail_rate: float = 0.0,
        kinds: tuple[str, ...] = ("503", "slowdown", "drop", "latency"),
        latency_s: float = 0.05,
        seed: int = 0,
        port: int = 0,
    ) -> None:
        if not 0.0 <= fail_rate <= 1.0:
            raise ValueError(f"fail_rate must be within [0, 1], got {fail_rate}")
        kinds = tuple(kinds)
        unknown = [k for k in kinds if k not in FAULT_KINDS]
        if unknown or not kinds:
            raise ValueError(f"unknown fault kinds {unknown}; choose from {FAULT_KINDS}")
        parts = urlsplit(upstream_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream_url must be http(s)://host[:port], got {upstream_url!r}")
        self.upstream_url = upstream_url
        self.fail_rate = fail_rate
        self.kinds = kinds
        self.latency_s = latency_s
        self._up_host = parts.hostname
        self._up_port = parts.port or (443 if parts.scheme == "https" else 80)
        self._up_ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._counts: Counter = Counter()
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()

    def __repr__(self) -> str:
        return f"FaultProxy({self.upstream_url!r}, fail_rate={self.fail_rate}, kinds={self.kinds}, port={self._port})"

    # -- public -----------------------------------------------------------
    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>`` to point clients at."""
        if self._server is None:
            raise RuntimeError("FaultProxy is not started")
        return f"http://127.0.0.1:{self._port}"

    def stats(self) -> dict:
        """Counters: ``requests``, ``forwarded``, ``faults`` (total) and ``by_kind``."""
        with self._lock:
            by_kind = {k: self._counts[f"fault:{k}"] for k in self.kinds}
            return {
                "requests": self._counts["requests"],
                "forwarded": self._counts["forwarded"],
                "faults": sum(by_kind.values()),
                "by_kind": by_kind,
            }

    def set_fail_rate(self, fail_rate: float) -> None:
        """Change the fault probability of the following requests."""
        if not 0.0 <= fail_rate <= 1.0:
            raise ValueError(f"fail_rate must be within [0, 1], got {fail_rate}")
        with self._lock:
            self.fail_rate = fail_rate

    def start(self) -> FaultProxy:
        """Start listening (returns once the socket is bound)."""
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._handle, "127.0.0.1", self._port, limit=_HEAD_LIMIT)
                )
                self._port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name=f"FaultProxy-{uuid.uuid4().hex[:6]}", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            self._thread.join()
            self._thread = None
            raise RuntimeError(f"FaultProxy could not listen: {failure[0]}") from failure[0]
        return self

    def stop(self) -> None:
        """Close the listener and every open connection, then end the thread."""
        if self._thread is None:
            return
        loop = self._loop

        async def shutdown() -> None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(10)
        self._thread = None
        self._server = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- the proxy --------------------------------------------------------
    def _draw(self) -> str | None:
        with self._lock:
            self._counts["requests"] += 1
            if self.fail_rate > 0 and self._rng.random() < self.fail_rate:
                kind = self._rng.choice(self.kinds)
                self._counts[f"fault:{kind}"] += 1
                return kind
            return None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            while True:
                request = await _read_head(reader)
                if request is None:
                    break
                keep_alive = await self._serve_one(request, reader, writer)
                if not keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, OSError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve_one(self, request: _Message, reader, writer) -> bool:
        """Answer one request; return whether the client connection stays open."""
        kind = self._draw()
        if (request.get("expect") or "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
        if kind == "drop":
            return False
        if kind in _ERRORS:
            await self._read_body(request, reader, None)
            await self._send_error(request, writer, kind)
            return (request.get("connection") or "").lower() != "close"
        if kind == "latency":
            await asyncio.sleep(self.latency_s)
        return await self._forward(request, reader, writer, truncate=kind == "truncate")

    async def _read_body(self, message: _Message, reader, writer) -> None:
        if message.is_chunked():
            await _copy_chunked(reader, writer)
        else:
            await _copy_exact(reader, writer, message.content_length() or 0)

    async def _send_error(self, request: _Message, writer, kind: str) -> None:
        status, reason, code, text = _ERRORS[kind]
        path = request.start_line.split(" ")[1] if " " in request.start_line else "/"
        request_id = uuid.uuid4().hex[:16].upper()
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{text}</Message>"
            f"<Resource>{path.split('?', 1)[0]}</Resource><RequestId>{request_id}</RequestId></Error>"
        ).encode()
        head = (
            f"HTTP/1.1 {status} {reason}\r\n"
            "Content-Type: application/xml\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"x-amz-request-id: {request_id}\r\n"
            "\r\n"
        ).encode("latin-1")
        writer.write(head + (b"" if request.start_line.startswith("HEAD ") else body))
        await writer.drain()

    async def _forward(self, request: _Message, reader, writer, *, truncate: bool) -> bool:
        up_reader, up_writer = await asyncio.open_connection(
            self._up_host, self._up_port, ssl=self._up_ssl, limit=_HEAD_LIMIT
        )
        try:
            up_writer.write(request.encode(drop=_HOP_BY_HOP, extra=[("Connection", "close")]))
            await self._read_body(request, reader, up_writer)
            await up_writer.drain()
            response = await _read_head(up_reader)
            while response is not None and response.start_line.split(" ")[1:2] == ["100"]:
                response = await _read_head(up_reader)  # interim responses are not passed on
            if response is None:
                raise ConnectionError("upstream closed without a response")
            with self._lock:
                self._counts["forwarded"] += 1
            status = int(response.start_line.split(" ")[1])
            no_body = request.start_line.startswith("HEAD ") or status in (204, 304) or 100 <= status < 200
            length = response.content_length()
            client_close = (request.get("connection") or "").lower() == "close"
            delimited = no_body or response.is_chunked() or length is not None
            keep_alive = delimited and not client_close and not truncate
            extra = [("Connection", "keep-alive" if keep_alive else "close")]
            writer.write(response.encode(drop={"connection", "keep-alive"}, extra=extra))
            await writer.drain()
            if no_body:
                return keep_alive
            if truncate:
                half = (length or 0) // 2
                if half:
                    await _copy_exact(up_reader, writer, length, limit=half)
                return False
            if response.is_chunked():
                await _copy_chunked(up_reader, writer)
            elif length is not None:
                await _copy_exact(up_reader, writer, length)
            else:
                await _copy_until_eof(up_reader, writer)
            return keep_alive
        finally:
            up_writer.close()
            with contextlib.suppress(Exception):
                await up_writer.wait_closed()
