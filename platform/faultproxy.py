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
``"403"``, ``"404"``, ``"400"``
    ``AccessDenied``, ``NoSuchKey``, ``InvalidRequest``: permanent errors a
    client must not retry.
``"301"``
    ``PermanentRedirect`` with ``x-amz-bucket-region: eu-west-1``: the answer
    of AWS S3 to a request signed for the wrong region.

HTTPS: give ``server_ssl`` (an ``ssl.SSLContext`` with a certificate loaded)
and the proxy serves TLS; an ``https://`` upstream is verified against
``upstream_cafile`` (default: ``AWS_CA_BUNDLE``). With ``segment_bytes`` the
proxy's clients talk to a :class:`SegmentRelay` in front of it, which delivers
every response in TCP segments of that size (on loopback TLS data otherwise
arrives in blocks of tens of kilobytes, which hides receive paths that only
work when whole TLS records come at once).

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
import os
import random
import socket
import ssl
import threading
import uuid
from collections import Counter
from urllib.parse import urlsplit

__all__ = ["FaultProxy", "FAULT_KINDS", "SegmentRelay"]

FAULT_KINDS = ("503", "slowdown", "500", "drop", "truncate", "latency", "403", "404", "400", "301")
_ERRORS = {
    "503": (503, "Service Unavailable", "ServiceUnavailable", "Service is unable to handle request."),
    "slowdown": (503, "Slow Down", "SlowDown", "Please reduce your request rate."),
    "500": (500, "Internal Server Error", "InternalError", "We encountered an internal error. Please try again."),
    "403": (403, "Forbidden", "AccessDenied", "Access Denied"),
    "404": (404, "Not Found", "NoSuchKey", "The specified key does not exist."),
    "400": (400, "Bad Request", "InvalidRequest", "The request is not valid."),
    "301": (301, "Moved Permanently", "PermanentRedirect",
            "The bucket you are attempting to access must be addressed using the specified endpoint."),
}
_ERROR_HEADERS = {"301": [("x-amz-bucket-region", "eu-west-1")]}
SEGMENT = 1400
"""Payload bytes of one TCP segment on a typical network path (1500-byte MTU less headers and options)."""
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


def _serve_in_thread(name: str, listen) -> tuple[asyncio.AbstractEventLoop, threading.Thread, asyncio.AbstractServer]:
    """Run ``await listen()`` (an ``asyncio.start_server``) on a new event loop in a daemon thread."""
    ready = threading.Event()
    box: dict = {}

    def run() -> None:
        loop = box["loop"] = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            box["server"] = loop.run_until_complete(listen())
        except BaseException as exc:  # reported to the starting thread
            box["failure"] = exc
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=run, name=f"{name}-{uuid.uuid4().hex[:6]}", daemon=True)
    thread.start()
    ready.wait(10)
    if "failure" in box or "server" not in box:
        thread.join(10)
        failure = box.get("failure")
        raise RuntimeError(f"{name} could not listen: {failure}") from failure
    return box["loop"], thread, box["server"]


def _stop_in_thread(loop, thread: threading.Thread, server, tasks: set) -> None:
    """Close ``server`` and cancel its connection ``tasks`` on ``loop``, then end ``thread``."""

    async def shutdown() -> None:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    with contextlib.suppress(Exception):
        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


class FaultProxy:
    """HTTP reverse proxy in a background thread that injects S3-style faults.

    Args:
        upstream_url: the S3 endpoint to forward to (``http://host:port``).
        fail_rate: probability in [0, 1] that a request gets a fault.
        kinds: fault kinds to draw from (see the module docstring).
        latency_s: extra delay of a ``"latency"`` fault.
        seed: seed of the fault generator.
        port: loopback port to listen on (0: any free port).
        server_ssl: serve TLS with this context (None: plain HTTP).
        upstream_cafile: CA file that verifies an ``https://`` upstream (default ``AWS_CA_BUNDLE``).
        segment_bytes: put a :class:`SegmentRelay` with this segment size in front
            (:attr:`endpoint_url` is then the relay's).
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
        server_ssl: ssl.SSLContext | None = None,
        upstream_cafile: str | os.PathLike | None = None,
        segment_bytes: int | None = None,
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
        cafile = upstream_cafile or os.environ.get("AWS_CA_BUNDLE") or None
        self._up_ssl = ssl.create_default_context(cafile=cafile) if parts.scheme == "https" else None
        self._server_ssl = server_ssl
        self.segment_bytes = segment_bytes
        self._relay: SegmentRelay | None = None
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
        """``http(s)://127.0.0.1:<port>`` to point clients at (the relay's, with ``segment_bytes``)."""
        if self._server is None:
            raise RuntimeError("FaultProxy is not started")
        scheme = "https" if self._server_ssl is not None else "http"
        port = self._relay.port if self._relay is not None else self._port
        return f"{scheme}://127.0.0.1:{port}"

    @property
    def relay(self) -> SegmentRelay | None:
        """The segmenting relay in front of the proxy (``segment_bytes`` only)."""
        return self._relay

    def stats(self) -> dict:
        """Counters: ``requests``, ``forwarded``, ``faults`` (total) and ``by_kind``."""
        with self._lock:
            by_kind = {k: self._counts[f"fault:{k}"] for k in FAULT_KINDS if k in self.kinds or self._counts[f"fault:{k}"]}
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

    def set_kinds(self, kinds: tuple[str, ...]) -> None:
        """Change the fault kinds drawn for the following requests."""
        kinds = tuple(kinds)
        unknown = [k for k in kinds if k not in FAULT_KINDS]
        if unknown or not kinds:
            raise ValueError(f"unknown fault kinds {unknown}; choose from {FAULT_KINDS}")
        with self._lock:
            self.kinds = kinds

    def start(self) -> FaultProxy:
        """Start listening (returns once the socket is bound)."""
        if self._thread is not None:
            return self
        self._loop, self._thread, self._server = _serve_in_thread(
            "FaultProxy", lambda: asyncio.start_server(self._handle, "127.0.0.1", self._port, limit=_HEAD_LIMIT,
                                                       ssl=self._server_ssl))
        self._port = self._server.sockets[0].getsockname()[1]
        if self.segment_bytes:
            self._relay = SegmentRelay("127.0.0.1", self._port, segment_bytes=self.segment_bytes).start()
        return self

    def stop(self) -> None:
        """Close the listener and every open connection, then end the thread."""
        if self._thread is None:
            return
        if self._relay is not None:
            self._relay.stop()
            self._relay = None
        _stop_in_thread(self._loop, self._thread, self._server, self._tasks)
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
        extra = "".join(f"{k}: {v}\r\n" for k, v in _ERROR_HEADERS.get(kind, ()))
        head = (
            f"HTTP/1.1 {status} {reason}\r\n"
            "Content-Type: application/xml\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"x-amz-request-id: {request_id}\r\n"
            f"{extra}"
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


class SegmentRelay:
    """A TCP relay on loopback that delivers what the upstream sends in small segments.

    Bytes from the client pass to the upstream unchanged; bytes from the upstream
    reach the client in sends of at most ``segment_bytes`` with ``TCP_NODELAY``
    and a small send buffer, each sent only once the previous one left, so a
    reader that keeps up sees them arrive one segment at a time, as over a real
    network (on loopback a TLS server's data otherwise arrives in large blocks).
    It works below TLS: the records pass through untouched, split across segments.

    Args:
        host, port: the upstream to relay to.
        segment_bytes: largest payload per send.
        listen_port: loopback port to listen on (0: any free port).
    """

    def __init__(self, host: str, port: int, *, segment_bytes: int = SEGMENT, listen_port: int = 0) -> None:
        if segment_bytes < 1:
            raise ValueError(f"segment_bytes must be >= 1, got {segment_bytes}")
        self.host, self.upstream_port = host, int(port)
        self.segment_bytes = int(segment_bytes)
        self.port = listen_port
        self._lock = threading.Lock()
        self.segments = 0
        """Segments sent to clients so far."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()

    def __repr__(self) -> str:
        return f"SegmentRelay({self.host}:{self.upstream_port}, segment_bytes={self.segment_bytes}, port={self.port})"

    def start(self) -> SegmentRelay:
        """Start listening (returns once the socket is bound)."""
        if self._thread is not None:
            return self
        self._loop, self._thread, self._server = _serve_in_thread(
            "SegmentRelay", lambda: asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        """Close the listener and every connection, then end the thread."""
        if self._thread is None:
            return
        _stop_in_thread(self._loop, self._thread, self._server, self._tasks)
        self._thread = None

    def __enter__(self) -> SegmentRelay:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        up_writer = None
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.upstream_port)
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * self.segment_bytes)
            writer.transport.set_write_buffer_limits(high=self.segment_bytes, low=0)
            await asyncio.gather(self._pump(reader, up_writer, segment=None),
                                 self._pump(up_reader, writer, segment=self.segment_bytes))
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            for w in (writer, up_writer):
                if w is not None:
                    w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, segment: int | None) -> None:
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                if segment is None:
                    writer.write(data)
                    await writer.drain()
                    continue
                view = memoryview(data)
                for i in range(0, len(view), segment):
                    writer.write(view[i:i + segment])
                    await writer.drain()
                    await asyncio.sleep(0)  # one send per segment, as the pieces of a real transfer
                with self._lock:
                    self.segments += -(-len(view) // segment)
        finally:
            with contextlib.suppress(Exception):
                if writer.can_write_eof():
                    writer.write_eof()
