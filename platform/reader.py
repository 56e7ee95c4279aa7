"""Chunk I/O for the stream: raw chunk objects by key, retries, decode, bounded prefetch.

Views are read as raw chunk objects (``reflectance/c/<view>/0/0/0``) and decoded
with the cube's codec (blosc, which releases the GIL) here, rather than through
zarr: zarr fills a missing chunk with the fill value, and a training set with
silent ``-32768`` patches is worse than a crash. A missing object raises
:class:`ChunkMissingError`, an object that does not decode (after re-reading it,
to rule out a damaged transfer) :class:`ChunkCorruptError`; both name the patch,
the view and the object key.

Backends (a plain dict registry, :data:`BACKENDS`): ``local`` (plain file
reads), ``obstore`` (S3: obstore presigns each GET and ``http.client`` receives
the body straight into a buffer the reading thread reuses, which saves obstore's
copy of every object into a fresh allocation; stores that cannot presign use
obstore's own GET) and ``fsspec`` (any other fsspec URL). Every source is created
lazily in the process that reads, so nothing created before DataLoader workers
start is shared with them.
"""

from __future__ import annotations

import http.client
import logging
import os
import random
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

import numpy as np

from spectralearth.platform.cube import ChunkChecksumError, view_chunk_key
from spectralearth.platform.cube.format import split_checksum
from spectralearth.platform.storage import filesystem, join, protocol_of, redact, resolve_storage_options

__all__ = [
    "BACKENDS",
    "ChunkCorruptError",
    "ChunkMissingError",
    "ChunkSource",
    "RetryPolicy",
    "StreamReadError",
    "open_source",
    "prefetch_map",
    "read_view",
]


log = logging.getLogger(__name__)


class StreamReadError(RuntimeError):
    """A view could not be read; names the patch, the view and the object key."""

    def __init__(self, message: str, *, key: str = "", view: int | None = None, patch: int | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.view = view
        self.patch = patch


class ChunkMissingError(StreamReadError):
    """The chunk object of a view does not exist (never zero- or fill-value-filled)."""


class ChunkCorruptError(StreamReadError):
    """The chunk object of a view exists but does not decode to one view."""


class _NotFound(Exception):
    """Raised by sources for an absent object (not retried)."""


class ChunkSource(Protocol):
    """Reads whole objects by key relative to the cube root."""

    url: str

    def get(self, key: str) -> bytes | memoryview:
        """The object's bytes; raises ``_NotFound`` when it does not exist.

        The result may be a view of a buffer that the next ``get`` on the same
        thread overwrites: decode it before reading the next object.
        """
        ...


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of transient storage errors (jittered exponential backoff)."""

    attempts: int = 8
    """Tries per request, the first included."""
    base_s: float = 0.05
    """Backoff ceiling of the first retry; doubles each retry."""
    max_s: float = 4.0
    """Largest backoff ceiling."""
    reread_on_decode_error: int = 2
    """Extra reads of an object that did not decode, before calling it corrupt."""


class _ThreadBuffer:
    """A read buffer held by one thread; handed to the next thread when this one ends.

    The stream's I/O threads live for one pass: without the hand-over each pass
    would allocate (page-fault and zero) a fresh buffer per thread.
    """

    def __init__(self, size: int) -> None:
        try:
            self.buf = _spare_buffers.pop()
        except IndexError:
            self.buf = bytearray(0)
        if len(self.buf) < size:
            self.buf = bytearray(size)

    def __del__(self) -> None:  # the thread ended (its thread-local data was dropped)
        spare = _spare_buffers
        if spare is not None and len(spare) < 64:
            spare.append(self.buf)


_spare_buffers: deque[bytearray] = deque()
_read_buffers = threading.local()


def _thread_buffer(size: int) -> memoryview:
    """A writable buffer of at least ``size`` bytes that this thread reuses."""
    held = getattr(_read_buffers, "held", None)
    if held is None or len(held.buf) < size:
        grow = max(size, 2 * len(held.buf)) if held is not None else size
        held = _read_buffers.held = _ThreadBuffer(grow)
    return memoryview(held.buf)


class _LocalSource:
    def __init__(self, url: str, storage_options: Mapping[str, Any] | None) -> None:
        _, self.root = filesystem(url, storage_options)
        self.url = url

    def get(self, key: str) -> memoryview:
        # read into a buffer reused by this thread: no allocation (and its page
        # faults, and malloc-arena growth) per object
        try:
            f = open(os.path.join(self.root, key), "rb", buffering=0)
        except FileNotFoundError:
            raise _NotFound(key) from None
        with f:
            size = os.fstat(f.fileno()).st_size
            view = _thread_buffer(size + 1)
            got = 0
            while got <= size:  # one byte more than the size: a file that grew is read whole or caught
                n = f.readinto(view[got:])
                if not n:
                    break
                got += n
            return view[:got]


class _FsspecSource:
    def __init__(self, url: str, storage_options: Mapping[str, Any] | None) -> None:
        self.fs, self.root = filesystem(url, storage_options)
        self.url = url

    def get(self, key: str) -> bytes:
        try:
            return self.fs.cat_file(join(self.root, key))
        except FileNotFoundError:
            raise _NotFound(key) from None


_LOW_WATER = 1 << 20
"""Bytes a reading thread waits for before it wakes (receives in large steps, not per packet)."""
_SIGN_FOR = timedelta(minutes=15)
"""Lifetime of a presigned GET (used at once; only clock skew needs the margin)."""


class _ObstoreSource:
    def __init__(self, url: str, storage_options: Mapping[str, Any] | None) -> None:
        import obstore  # noqa: F401 - fails early when absent
        from obstore.store import S3Store

        if protocol_of(url) not in ("s3", "s3a"):
            raise ValueError(f"the obstore backend reads s3:// URLs, got {redact(url)}")
        opts = resolve_storage_options(url, storage_options)
        client_kwargs = dict(opts.get("client_kwargs") or {})
        bucket, _, prefix = url.split("://", 1)[1].partition("/")
        config: dict[str, Any] = {}
        endpoint = client_kwargs.get("endpoint_url") or opts.get("endpoint_url")
        if endpoint:
            config["endpoint"] = endpoint
        region = client_kwargs.get("region_name") or os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
        config["region"] = region or "us-east-1"
        if opts.get("key") and opts.get("secret"):
            config["access_key_id"] = opts["key"]
            config["secret_access_key"] = opts["secret"]
            if opts.get("token"):
                config["token"] = opts["token"]
        if opts.get("anon"):
            config["skip_signature"] = True
        client = {"timeout": "60s", "connect_timeout": "5s", "allow_http": bool(endpoint and endpoint.startswith("http://"))}
        global _OBSTORE_PID
        _OBSTORE_PID = os.getpid()
        self.store = S3Store(
            bucket,
            prefix=prefix.strip("/") or None,
            config=config,
            client_options=client,
            retry_config={"max_retries": 2, "retry_timeout": timedelta(seconds=30)},
        )
        self.url = url
        # requests signed by obstore, sent by http.client: the body is received
        # straight into a buffer this thread reuses (obstore's own GET collects the
        # body into a fresh buffer: one more copy of every object, and fresh pages)
        self._direct = not opts.get("anon")
        self._connections: deque[tuple[tuple[str, str, int | None], http.client.HTTPConnection]] = deque()

    def get(self, key: str) -> memoryview:
        import obstore

        if self._direct:
            try:
                url = obstore.sign(self.store, "GET", key, _SIGN_FOR)
            except Exception:  # noqa: BLE001 - a store that cannot presign: obstore's own GET
                self._direct = False
            else:
                view = self._get_signed(key, url)
                if view is not None:
                    return view
                self._direct = False  # presigned requests refused: obstore's own GET from now on
        from obstore.exceptions import NotFoundError

        try:
            return memoryview(obstore.get(self.store, key).bytes())
        except (NotFoundError, FileNotFoundError):
            raise _NotFound(key) from None

    def _get_signed(self, key: str, url: str) -> memoryview | None:
        """GET a presigned URL on a pooled connection; None if the server refuses presigned requests."""
        parts = urlsplit(url)
        where = (parts.scheme, parts.hostname or "", parts.port)
        conn = None
        while conn is None:  # a free connection to the same host, else a new one
            try:
                held, c = self._connections.pop()
            except IndexError:
                break
            if held == where:
                conn = c
            else:
                c.close()
        kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        if conn is not None:
            try:
                conn.request("GET", f"{parts.path}?{parts.query}")
                response = conn.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()  # the server closed this idle connection: once more on a new one
                conn = None
            except BaseException:
                conn.close()
                raise
        if conn is None:
            conn = kind(where[1], where[2], timeout=60)
            try:
                conn.request("GET", f"{parts.path}?{parts.query}")
                response = conn.getresponse()
            except BaseException:
                conn.close()
                raise
        try:
            if response.status == 404:
                response.read()
                self._connections.append((where, conn))
                raise _NotFound(key)
            if response.status in (401, 403):
                response.read()
                self._connections.append((where, conn))
                return None
            if response.status != 200:
                raise OSError(f"GET {key}: HTTP {response.status} {response.reason}")
            size = response.length
            if size is None:  # no Content-Length: read it whole
                data = response.read()
                self._connections.append((where, conn))
                return memoryview(data)
            view = _thread_buffer(size)[:size]
            if conn.sock is None:  # the server closes the connection after this response
                _read_body(response, view)
            else:
                _receive_body(response, conn.sock, view)
        except _NotFound:
            raise
        except BaseException:
            conn.close()
            raise
        self._connections.append((where, conn))
        return view


def _read_body(response: http.client.HTTPResponse, view: memoryview) -> None:
    got = 0
    while got < len(view):
        n = response.readinto(view[got:])
        if not n:
            raise http.client.IncompleteRead(b"", len(view) - got)
        got += n


def _receive_body(response: http.client.HTTPResponse, sock: socket.socket, view: memoryview) -> None:
    """Receive a response body of ``len(view)`` bytes straight from a kept-alive connection's socket."""
    size = len(view)
    got = response.fp.readinto1(view) if size else 0  # what came with the headers (one read at most)
    try:
        while got < size:
            # wake once per _LOW_WATER bytes received rather than once per packet; never
            # more than what is left, or the last part would not wake this thread at all
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, min(size - got, _LOW_WATER))
            n = sock.recv_into(view[got:])
            if not n:
                raise http.client.IncompleteRead(b"", size - got)
            got += n
    finally:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
        except OSError:
            pass
    response.close()  # the body was read whole: the connection stays open for the next request


BACKENDS: dict[str, Callable[[str, Mapping[str, Any] | None], ChunkSource]] = {
    "local": _LocalSource,
    "obstore": _ObstoreSource,
    "fsspec": _FsspecSource,
}
"""Chunk source constructors by name: ``(url, storage_options) -> ChunkSource``."""


_OBSTORE_PID: int | None = None
"""Process that started obstore's runtime; a forked child of it must not use obstore (it hangs)."""


def _obstore_forked() -> bool:
    return _OBSTORE_PID is not None and _OBSTORE_PID != os.getpid()


def _obstore_usable(storage_options: Mapping[str, Any] | None) -> bool:
    try:
        import obstore  # noqa: F401
    except ImportError:
        return False
    if _obstore_forked():
        log.warning("obstore was used before this process was forked; reading with fsspec instead "
                    "(use the spawn or forkserver context, or do not iterate in the parent, to keep obstore)")
        return False
    # options that only s3fs understands (profiles, custom sessions) keep the fsspec path
    known = {"key", "secret", "token", "anon", "client_kwargs", "config_kwargs", "skip_instance_cache", "endpoint_url"}
    return set(storage_options or {}) <= known


def open_source(url: str, *, storage_options: Mapping[str, Any] | None = None, backend: str = "auto") -> ChunkSource:
    """A chunk source for a cube URL.

    Args:
        url: cube URL (local path, ``file://``, ``s3://bucket/prefix`` or any fsspec URL).
        storage_options: fsspec-style options (secrets only from the environment).
        backend: a key of :data:`BACKENDS`, or ``"auto"``: local files for local paths,
            obstore for S3, fsspec otherwise.
    """
    if backend == "auto":
        proto = protocol_of(url)
        if proto in ("file", "local"):
            backend = "local"
        elif proto in ("s3", "s3a") and _obstore_usable(storage_options):
            backend = "obstore"
        else:
            backend = "fsspec"
    if backend == "obstore" and _obstore_forked():
        raise RuntimeError("obstore was used in the parent before this process was forked and its runtime does "
                           "not survive a fork: use the spawn or forkserver context, or backend='fsspec'")
    try:
        make = BACKENDS[backend]
    except KeyError:
        raise ValueError(f"unknown backend {backend!r}; choose from {sorted(BACKENDS)} or 'auto'") from None
    return make(url, storage_options)


def _fetch(source: ChunkSource, key: str, retry: RetryPolicy, rng: random.Random) -> bytes | memoryview:
    for attempt in range(retry.attempts):
        try:
            return source.get(key)
        except _NotFound:
            raise
        except Exception:
            if attempt + 1 >= retry.attempts:
                raise
            time.sleep(rng.uniform(0.0, min(retry.max_s, retry.base_s * 2**attempt)))
    raise AssertionError("unreachable")


_BLOSC_HEADER = struct.Struct("<BBBBIII")  # version, versionlz, flags, typesize, nbytes, blocksize, cbytes


def _decode(raw: bytes | memoryview, out: np.ndarray, *, checksum: bool = True) -> str | None:
    """Check the CRC-32C trailer and decode a blosc frame into ``out``; return why it failed, or None."""
    from numcodecs import blosc

    if checksum:
        try:
            raw = split_checksum(raw)
        except ChunkChecksumError as exc:
            return str(exc)
    if len(raw) < _BLOSC_HEADER.size:
        return f"object is {len(raw)} bytes, shorter than a blosc header"
    version, _, _, typesize, nbytes, _, cbytes = _BLOSC_HEADER.unpack_from(raw)
    if version not in (1, 2) or typesize != 2:
        return f"not a blosc frame of int16 (header version {version}, typesize {typesize})"
    if cbytes != len(raw):
        return f"object is {len(raw)} bytes, its blosc header says {cbytes}"
    if nbytes != out.nbytes:
        return f"decodes to {nbytes} bytes, one view is {out.nbytes} ({out.shape} int16)"
    try:
        blosc.decompress(raw, out)
    except Exception as exc:  # noqa: BLE001
        return f"blosc could not decompress it ({exc})"
    return None


_thread_rng = threading.local()


def read_view(
    source: ChunkSource,
    view: int,
    *,
    patch: int,
    shape: tuple[int, int, int],
    retry: RetryPolicy = RetryPolicy(),
    out: np.ndarray | None = None,
    key: str | None = None,
    checksum: bool = True,
) -> np.ndarray:
    """Read, check and decode one view's chunk into ``out`` (or a new ``(bands, y, x)`` int16 array).

    ``key``: the chunk's object key relative to the source (the version's key of the view,
    :meth:`~spectralearth.platform.cube.VersionIndex.chunk_key`); ``checksum``: the chunk ends
    with a CRC-32C (every cube of format 2).

    Raises:
        ChunkMissingError: the chunk object does not exist.
        ChunkCorruptError: it does not decode to one view, also after re-reading.
    """
    rng = getattr(_thread_rng, "rng", None)
    if rng is None:
        rng = _thread_rng.rng = random.Random()
    key = view_chunk_key(view) if key is None else key
    where = f"{redact(source.url)}/{key}"
    if out is None:
        out = np.empty(shape, dtype="<i2")
    elif out.shape != tuple(shape) or out.dtype != np.dtype("<i2") or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous int16 array of shape {tuple(shape)}")
    problem = None
    for _ in range(1 + retry.reread_on_decode_error):
        try:
            raw = _fetch(source, key, retry, rng)
        except _NotFound:
            raise ChunkMissingError(
                f"patch {patch}, view {view}: chunk object {where} is missing", key=key, view=view, patch=patch
            ) from None
        problem = _decode(raw, out, checksum=checksum)
        if problem is None:
            return out
    raise ChunkCorruptError(f"patch {patch}, view {view}: chunk object {where} is corrupt: {problem}",
                            key=key, view=view, patch=patch)


def prefetch_map(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    *,
    threads: int,
    depth: int,
) -> Iterator[Any]:
    """``map(fn, items)`` on a thread pool, in order, with at most ``depth`` results pending.

    ``threads`` bounds the requests in flight; ``depth`` (>= threads) bounds the
    memory held by finished-but-not-yet-consumed results. Exceptions surface at
    the item that raised them. Closing the iterator cancels what is queued.
    """
    depth = max(depth, threads, 1)
    it = iter(items)
    pending: deque[Future] = deque()
    pool = ThreadPoolExecutor(max_workers=max(threads, 1), thread_name_prefix="patchstream-io")
    try:
        for item in it:
            pending.append(pool.submit(fn, item))
            if len(pending) >= depth:
                break
        while pending:
            result = pending.popleft().result()
            for item in it:
                pending.append(pool.submit(fn, item))
                break
            yield result
    finally:
        for f in pending:
            f.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
