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
the body into a buffer the reading thread reuses; measured reason beside
:class:`_ObstoreSource`) and ``fsspec`` (any other fsspec URL). Every source is
created lazily in the process that reads, so nothing created before DataLoader
workers start is shared with them.

Errors: a 404 raises :class:`ChunkMissingError`, a 403 the same, reported as
"missing or forbidden" (S3 answers 403 for a missing key when the caller may
not list the bucket); other permanent answers (400, 401, 301 wrong region, ...)
raise :class:`StoragePermanentError` at once; transient ones (5xx, 429,
resets, timeouts, truncated bodies) are retried with jittered exponential
backoff (:class:`RetryPolicy`), and when the retries run out
:class:`RetriesExhaustedError` names the patch, the view, the key and the last
status. Messages never carry signatures or credentials.
"""

from __future__ import annotations

import http.client
import logging
import os
import random
import re
import ssl
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
from spectralearth.platform.storage import aws_settings, filesystem, join, protocol_of, redact, resolve_storage_options
from spectralearth.platform.storage import scrub

__all__ = [
    "BACKENDS",
    "ChunkCorruptError",
    "ChunkMissingError",
    "ChunkSource",
    "RetriesExhaustedError",
    "RetryPolicy",
    "StoragePermanentError",
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


class StoragePermanentError(StreamReadError):
    """The store refused a view's request for good (HTTP 400, 401, 301, ...): not retried."""

    def __init__(self, message: str, *, status: int | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.status = status


class RetriesExhaustedError(StreamReadError):
    """Transient errors (5xx, throttling, resets, timeouts, truncated bodies) outlasted the retries."""

    def __init__(self, message: str, *, status: int | None = None, attempts: int = 0, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.status = status
        self.attempts = attempts


class _NotFound(Exception):
    """Raised by sources for an absent object (not retried); ``status`` 403 when the store only forbids it."""

    def __init__(self, key: str, *, status: int = 404) -> None:
        super().__init__(key)
        self.status = status


class _Permanent(Exception):
    """Raised by sources for a request that will not succeed when repeated."""

    def __init__(self, status: int | None, detail: str) -> None:
        super().__init__(detail)
        self.status = status


class _Transient(Exception):
    """Raised by sources for a request that may succeed when repeated."""

    def __init__(self, status: int | None, detail: str) -> None:
        super().__init__(detail)
        self.status = status


_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


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
        except Exception as exc:  # noqa: BLE001 - classified for read_view's retry loop
            err = _classify(key, exc)
            if err is exc:
                raise
            raise err from None


_SIGN_FOR = timedelta(minutes=15)
"""Lifetime of a presigned GET (used at once; only clock skew needs the margin)."""
_STATUS = re.compile(r"\b(?:status(?: code)?:?|HTTP)\s*(\d{3})\b", re.IGNORECASE)


def _status_of(exc: BaseException) -> int | None:
    """The HTTP status an exception (or what it was raised from) carries, if any."""
    seen = 0
    while exc is not None and seen < 5:
        status = getattr(exc, "status", None)
        if isinstance(status, int):
            return status
        response = getattr(exc, "response", None)  # botocore ClientError
        if isinstance(response, Mapping):
            code = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
            if isinstance(code, int):
                return code
        m = _STATUS.search(str(exc))
        if m:
            return int(m.group(1))
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def _classify(key: str, exc: BaseException) -> BaseException:
    """The library error ``exc`` of a GET as ``_NotFound``, ``_Permanent`` or ``_Transient``."""
    if isinstance(exc, _NotFound | _Permanent | _Transient):
        return exc
    status = _status_of(exc)
    name = type(exc).__name__
    if isinstance(exc, FileNotFoundError) or name == "NotFoundError" or status == 404:
        return _NotFound(key, status=404)
    if status == 403 or name == "PermissionDeniedError" or (isinstance(exc, PermissionError) and status is None):
        return _NotFound(key, status=403)
    if status is not None and (status in _TRANSIENT_STATUS or status >= 500):
        return _Transient(status, scrub(f"{name}: {exc}"))
    if status is not None and 300 <= status < 500 or name == "UnauthenticatedError":
        return _Permanent(status, scrub(f"{name}: {exc}"))
    return _Transient(status, scrub(f"{name}: {exc}"))  # resets, timeouts, truncated bodies, DNS hiccups


class _ObstoreSource:
    """S3 through obstore, credentials and region from :func:`~spectralearth.platform.storage.aws_settings`.

    obstore presigns each GET and ``http.client`` receives the body into a buffer
    the reading thread reuses. Measured (``benchmarks/bench_tls_get.py``, HTTPS,
    results in ``benchmarks/results/tls_get.json``): that costs about a quarter
    less CPU per gigabyte than obstore's own GET, which collects each body into a
    fresh allocation, at the same wall-clock throughput; hence this one
    hand-written piece. Anonymous stores and stores behind an HTTP(S) proxy use
    obstore's own GET.
    """

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None) -> None:
        import obstore  # noqa: F401 - fails early when absent
        from obstore.store import S3Store

        if protocol_of(url) not in ("s3", "s3a"):
            raise ValueError(f"the obstore backend reads s3:// URLs, got {redact(url)}")
        opts = resolve_storage_options(url, storage_options)
        client_kwargs = dict(opts.get("client_kwargs") or {})
        bucket, _, prefix = url.split("://", 1)[1].partition("/")
        aws = aws_settings(opts)
        config: dict[str, Any] = {}
        endpoint = client_kwargs.get("endpoint_url") or opts.get("endpoint_url")
        if endpoint:
            config["endpoint"] = endpoint
        self.region = client_kwargs.get("region_name") or aws.region or "us-east-1"
        config["region"] = self.region
        provider = None
        if opts.get("anon"):
            config["skip_signature"] = True
        elif opts.get("key") and opts.get("secret"):
            config["access_key_id"] = opts["key"]
            config["secret_access_key"] = opts["secret"]
            if opts.get("token"):
                config["token"] = opts["token"]
        else:
            provider = aws.credential_provider()
        client: dict[str, Any] = {"timeout": "60s", "connect_timeout": "5s",
                                  "allow_http": bool(endpoint and endpoint.startswith("http://"))}
        verify = client_kwargs.get("verify", aws.ca_bundle)
        cafile = verify if isinstance(verify, str) and verify else None
        if cafile:
            with open(cafile, "rb") as f:
                client["root_certificate"] = f.read()
        if verify is False:
            client["allow_invalid_certificates"] = True
        host = urlsplit(endpoint).hostname if endpoint else f"{bucket}.s3.{self.region}.amazonaws.com"
        proxied = bool(aws.proxy_url) and not _bypasses_proxy(host or "", aws.no_proxy)
        if proxied:
            client["proxy_url"] = aws.proxy_url
            if aws.no_proxy:
                client["proxy_excludes"] = aws.no_proxy
        global _OBSTORE_PID
        _OBSTORE_PID = os.getpid()
        self.store = S3Store(
            bucket,
            prefix=prefix.strip("/") or None,
            config=config,
            client_options=client,
            credential_provider=provider,
            retry_config={"max_retries": 0, "retry_timeout": timedelta(seconds=30)},  # retries: read_view's
        )
        self.url = url
        self._direct = not opts.get("anon") and not proxied
        self._ssl = ssl.create_default_context(cafile=cafile) if verify is not False else ssl._create_unverified_context()
        self._connections: deque[tuple[tuple[str, str, int | None], http.client.HTTPConnection]] = deque()

    def get(self, key: str) -> memoryview:
        import obstore

        try:
            if self._direct:
                return self._get_signed(key, obstore.sign(self.store, "GET", key, _SIGN_FOR))
            return memoryview(obstore.get(self.store, key).bytes())
        except Exception as exc:  # noqa: BLE001 - classified for read_view's retry loop
            err = _classify(key, exc)
            if isinstance(err, _Permanent) and err.status == 301:
                err = _Permanent(301, f"the bucket is not in region {self.region!r} (HTTP 301 PermanentRedirect): "
                                      "set the bucket's region (AWS_REGION, the profile's region, or "
                                      "client_kwargs.region_name)")
            if err is exc:
                raise
            raise err from None

    def _get_signed(self, key: str, url: str) -> memoryview:
        """GET a presigned URL on a pooled connection, the body read into this thread's buffer."""
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
        target = f"{parts.path}?{parts.query}"
        if conn is not None:
            try:
                conn.request("GET", target)
                response = conn.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ssl.SSLEOFError):
                conn.close()  # the server closed this idle connection: once more on a new one
                conn = None
            except BaseException:
                conn.close()
                raise
        if conn is None:
            if parts.scheme == "https":
                conn = http.client.HTTPSConnection(where[1], where[2], timeout=60, context=self._ssl)
            else:
                conn = http.client.HTTPConnection(where[1], where[2], timeout=60)
            try:
                conn.request("GET", target)
                response = conn.getresponse()
            except BaseException:
                conn.close()
                raise
        try:
            if response.status != 200:
                response.read()
                status = response.status
                if status in (404, 403):
                    raise _NotFound(key, status=status)
                if status in _TRANSIENT_STATUS or status >= 500:
                    raise _Transient(status, f"HTTP {status} {response.reason}")
                raise _Permanent(status, f"HTTP {status} {response.reason}")
            size = response.length
            if size is None:  # no Content-Length: read it whole
                return memoryview(response.read())
            view = _thread_buffer(size)[:size]
            got = 0
            while got < size:
                n = response.readinto(view[got:])
                if not n:
                    raise _Transient(None, f"body truncated after {got} of {size} bytes")
                got += n
            response.close()  # read whole: the connection stays open for the next request
        except (_NotFound, _Permanent, _Transient) as exc:
            if response.isclosed() and not response.will_close and not isinstance(exc, _Transient):
                self._connections.append((where, conn))
            else:
                conn.close()
            raise
        except BaseException:
            conn.close()
            raise
        if response.will_close:
            conn.close()
        else:
            self._connections.append((where, conn))
        return view


def _bypasses_proxy(host: str, no_proxy: str | None) -> bool:
    """True if ``host`` is excluded from the proxy by ``NO_PROXY`` (names, suffixes, ``*``)."""
    for entry in (no_proxy or "").split(","):
        entry = entry.strip().lower()
        if entry == "*" or (entry and (host == entry.lstrip(".") or host.endswith("." + entry.lstrip(".")))):
            return True
    return False


BACKENDS: dict[str, Callable[[str, Mapping[str, Any] | None], ChunkSource]] = {
    "local": _LocalSource,
    "obstore": _ObstoreSource,
    "fsspec": _FsspecSource,
}
"""Chunk source constructors by name: ``(url, storage_options) -> ChunkSource``."""


_OBSTORE_PID: int | None = None
"""Process that started obstore's runtime; a forked child of it must not use obstore (it hangs)."""


def obstore_started_here() -> bool:
    """True if this process started obstore's runtime (a child forked from it cannot use obstore)."""
    return _OBSTORE_PID == os.getpid()


def _obstore_forked() -> bool:
    return _OBSTORE_PID is not None and _OBSTORE_PID != os.getpid()


def _obstore_usable(storage_options: Mapping[str, Any] | None) -> bool:
    try:
        import obstore  # noqa: F401
    except ImportError:
        return False
    if _obstore_forked():
        log.warning("obstore was used before this process was forked; reading with fsspec (s3fs) instead, which "
                    "costs more CPU per sample (benchmarks/results/stream.json, fork_fallback): use the forkserver "
                    "or spawn context (stream.loader() does so itself) to keep obstore")
        return False
    # options that only s3fs understands (profiles, custom sessions) keep the fsspec path
    known = {"key", "secret", "token", "anon", "client_kwargs", "config_kwargs", "skip_instance_cache", "endpoint_url",
             "profile"}
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


def _fetch(source: ChunkSource, key: str, retry: RetryPolicy, rng: random.Random,
           where: str, view: int, patch: int) -> bytes | memoryview:
    """Get one object: transient errors retried with jittered backoff, permanent ones raised at once."""
    last: _Transient | None = None
    for attempt in range(retry.attempts):
        try:
            return source.get(key)
        except _NotFound:
            raise
        except _Permanent as exc:
            raise StoragePermanentError(
                f"patch {patch}, view {view}: chunk object {where}: {exc} (HTTP {exc.status}, not retried)",
                status=exc.status, key=key, view=view, patch=patch) from None
        except Exception as exc:  # noqa: BLE001 - _Transient, or an error no source classified
            last = exc if isinstance(exc, _Transient) else _Transient(_status_of(exc), scrub(f"{type(exc).__name__}: {exc}"))
            if attempt + 1 >= retry.attempts:
                break
            time.sleep(rng.uniform(0.0, min(retry.max_s, retry.base_s * 2**attempt)))
    status = f"HTTP {last.status}" if last.status is not None else "no HTTP status"
    raise RetriesExhaustedError(
        f"patch {patch}, view {view}: chunk object {where}: gave up after {retry.attempts} attempts; "
        f"last error: {last} ({status})", status=last.status, attempts=retry.attempts, key=key, view=view, patch=patch)


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
            raw = _fetch(source, key, retry, rng, where, view, patch)
        except _NotFound as exc:
            if exc.status == 403:
                raise ChunkMissingError(
                    f"patch {patch}, view {view}: chunk object {where} is missing or forbidden (HTTP 403: without "
                    "s3:ListBucket S3 answers 403 for a missing key; check the key and the credentials' permissions)",
                    key=key, view=view, patch=patch) from None
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
