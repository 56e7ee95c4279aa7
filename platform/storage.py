"""Object storage: every byte the platform reads or writes goes through here.

URLs are fsspec URLs (``/local/path``, ``file://...``, ``s3://bucket/key``).
Credentials never travel in URLs or in ``storage_options`` that get persisted:
they come from the standard AWS chain, resolved by botocore: environment
variables, the shared ``config``/``credentials`` files with profiles
(``AWS_PROFILE`` or a ``profile`` storage option), SSO, ``credential_process``,
web identity, container and instance roles. :func:`aws_settings` resolves that
chain once per process and profile; s3fs (through aiobotocore, which runs the
same botocore resolver) and the stream's obstore reader (through a credential
provider over botocore's refreshing credentials) use the same result. The
region comes from configuration too (``AWS_REGION``, ``AWS_DEFAULT_REGION``, the
profile's ``region``), the CA bundle from ``AWS_CA_BUNDLE`` or the profile's
``ca_bundle``, proxies from ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``.
The only non-secret S3 setting the platform adds itself is the endpoint, read
from ``SPECTRALEARTH_S3_ENDPOINT`` (or ``AWS_ENDPOINT_URL_S3`` /
``AWS_ENDPOINT_URL``) so that S3-compatible stores (MinIO, Ceph, SeaweedFS) work.
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import fsspec

__all__ = [
    "ENDPOINT_ENV",
    "AwsSettings",
    "aws_settings",
    "scrub",
    "atomic_write_bytes",
    "chained_options",
    "exists",
    "filesystem",
    "http_client",
    "join",
    "protocol_of",
    "read_bytes",
    "redact",
    "resolve_storage_options",
    "strip_protocol",
]

ENDPOINT_ENV = ("SPECTRALEARTH_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
_SECRET_KEYS = re.compile(r"(secret|password|token|key|credential|session)", re.IGNORECASE)
_NOT_SECRET = {"endpoint_url", "key_prefix", "region_name", "anon"}


def protocol_of(url: str) -> str:
    """Return the fsspec protocol of ``url`` ('file' for plain paths)."""
    if "://" not in url:
        return "file"
    return url.split("://", 1)[0].split("::")[-1] or "file"


def strip_protocol(url: str) -> str:
    """Return the path part of ``url`` as its filesystem sees it."""
    fs = fsspec.get_filesystem_class(protocol_of(url))
    return fs._strip_protocol(url)


def join(url: str, *parts: str) -> str:
    """Join path components onto a URL with '/' (also for local paths)."""
    out = url.rstrip("/")
    for p in parts:
        p = str(p).strip("/")
        if p:
            out = f"{out}/{p}"
    return out


def resolve_storage_options(url: str, storage_options: Mapping[str, Any] | None = None) -> dict:
    """Storage options for ``url``: the caller's, plus the S3 endpoint from the environment.

    Secrets are never added here; s3fs/botocore find them through the standard chain.
    """
    opts = dict(storage_options or {})
    if protocol_of(url) in ("s3", "s3a"):
        endpoint = next((os.environ[k] for k in ENDPOINT_ENV if os.environ.get(k)), None)
        client_kwargs = dict(opts.get("client_kwargs") or {})
        if endpoint and "endpoint_url" not in client_kwargs and "endpoint_url" not in opts:
            client_kwargs["endpoint_url"] = endpoint
        if client_kwargs:
            opts["client_kwargs"] = client_kwargs
    elif protocol_of(url) in ("http", "https"):
        # aiohttp then takes basic-auth credentials from the netrc file (~/.netrc or $NETRC);
        # the credentials never enter the options. TLS trust: see http_client.
        opts["client_kwargs"] = {"trust_env": True, **dict(opts.get("client_kwargs") or {})}
        if "get_client" not in opts:
            opts["get_client"] = http_client
            # in the options (not looked up later) so that a changed CA makes another filesystem instance
            opts["client_kwargs"].setdefault("cafile", _env_cafile())
        # headers and XML are read here (rasters go through GDAL): 256 kB read-ahead, not 5 MB per open
        opts.setdefault("block_size", 1 << 18)
    return opts


CA_ENV = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
"""Environment variables naming a CA bundle for HTTPS reads, in the order they are looked at."""


@functools.lru_cache(maxsize=8)
def _ssl_context(cafile: str, mtime_ns: int):
    import ssl

    return ssl.create_default_context(cafile=cafile)


def _env_cafile() -> str | None:
    return next((os.environ[k] for k in CA_ENV if os.environ.get(k) and os.path.isfile(os.environ[k])), None)


async def http_client(cafile: str | None = None, **client_kwargs):
    """The aiohttp session of fsspec's HTTP filesystem, trusting the CA bundle the environment names now.

    aiohttp builds its default TLS context once, when it is first imported, from
    ``SSL_CERT_FILE`` as it was then; a CA bundle named later (a notebook that sets it, a
    test fixture, a worker started before the variable) would be ignored and every HTTPS
    read would fail certificate verification. :func:`resolve_storage_options` puts the first
    of :data:`CA_ENV` that names a file into the options as ``cafile``; this session trusts
    it (without one, aiohttp's defaults). A module-level function, so the options stay
    picklable for dask workers.
    """
    import aiohttp

    if cafile and "connector" not in client_kwargs:
        client_kwargs = {**client_kwargs, "connector": aiohttp.TCPConnector(ssl=_ssl_context(cafile, os.stat(cafile).st_mtime_ns))}
    return aiohttp.ClientSession(**client_kwargs)


def chained_options(url: str, storage_options: Mapping[str, Any] | None = None) -> dict:
    """fsspec options for ``url``; for chained URLs (``zip://member::s3://...``) keyed by the inner protocol."""
    if "::" not in url:
        return resolve_storage_options(url, storage_options)
    inner = url.split("::", 1)[1]
    opts = chained_options(inner, storage_options)
    if not opts:
        return {}
    return opts if "::" in inner else {protocol_of(inner): opts}


def filesystem(url: str, storage_options: Mapping[str, Any] | None = None):
    """Return ``(fs, path)`` for a URL (also chained, e.g. ZIP members) with resolved storage options."""
    fs, path = fsspec.core.url_to_fs(url, **chained_options(url, storage_options))
    return fs, path


def exists(url: str, storage_options: Mapping[str, Any] | None = None) -> bool:
    """True if an object (or folder) exists at ``url``."""
    fs, path = filesystem(url, storage_options)
    return fs.exists(path)


def read_bytes(url: str, storage_options: Mapping[str, Any] | None = None) -> bytes:
    """Read a whole object."""
    fs, path = filesystem(url, storage_options)
    return fs.cat_file(path)


def atomic_write_bytes(url: str, data: bytes, storage_options: Mapping[str, Any] | None = None) -> None:
    """Write ``data`` so that readers see either the old object or the new one, never a part.

    On object stores a single PUT is atomic. On local filesystems the bytes go to a
    temporary sibling first and are renamed into place.
    """
    fs, path = filesystem(url, storage_options)
    if protocol_of(url) == "file":
        parent = posixpath.dirname(path)
        if parent:
            fs.makedirs(parent, exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:12]}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    else:
        fs.pipe_file(path, data)


def redact(obj: Any) -> Any:
    """Return a copy of ``obj`` with anything that looks like a credential masked.

    Use it on every mapping that may end up in logs, reports, STAC or Zarr attributes.
    """
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if isinstance(k, str) and k not in _NOT_SECRET and _SECRET_KEYS.search(k) and not isinstance(v, Mapping):
                out[k] = "***"
            else:
                out[k] = redact(v)
        return out
    if isinstance(obj, list | tuple):
        return type(obj)(redact(v) for v in obj)
    return obj


_SIGNED_QUERY = re.compile(r"(X-Amz-(?:Signature|Credential|Security-Token)=)[^&\s'\"]+", re.IGNORECASE)


def scrub(text: str) -> str:
    """``text`` with presigned-URL signatures, credentials and session tokens masked."""
    return _SIGNED_QUERY.sub(r"\1***", str(text))


@dataclass(frozen=True)
class AwsSettings:
    """The AWS settings of one process and profile, resolved once through botocore.

    ``credentials`` is botocore's credentials object (refreshing where the source
    expires: SSO, ``credential_process``, web identity, roles); never log it.
    """

    profile: str | None
    region: str | None
    """Configured region, or None when nothing sets one."""
    ca_bundle: str | None
    """CA bundle configured by ``AWS_CA_BUNDLE`` or the profile (None: the system's)."""
    credentials: Any = field(repr=False, default=None)
    proxy_url: str | None = None
    no_proxy: str | None = None

    def credential_provider(self, ttl: timedelta = timedelta(minutes=5)):
        """A callable for obstore's ``credential_provider``: botocore's current credentials.

        Each call reads ``get_frozen_credentials()``, which refreshes expiring
        credentials itself; obstore calls again after ``ttl`` (or the credential's expiry).
        """
        creds = self.credentials
        if creds is None:
            raise PermissionError("no AWS credentials found in the standard chain (environment, shared config "
                                  f"and credentials files{f' profile {self.profile!r}' if self.profile else ''}, "
                                  "SSO, credential_process, web identity, container or instance role)")

        def provide() -> dict:
            frozen = creds.get_frozen_credentials()
            expiry = getattr(creds, "_expiry_time", None)
            until = datetime.now(UTC) + ttl
            if expiry is not None and expiry.tzinfo is not None:
                until = min(until, expiry)
            return {"access_key_id": frozen.access_key, "secret_access_key": frozen.secret_key,
                    "token": frozen.token, "expires_at": until}

        return provide


_AWS_ENV = ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ACCESS_KEY_ID", "AWS_REGION",
            "AWS_DEFAULT_REGION", "AWS_CA_BUNDLE", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY")
_aws_cache: dict[tuple, AwsSettings] = {}
_aws_lock = threading.Lock()


def aws_settings(storage_options: Mapping[str, Any] | None = None) -> AwsSettings:
    """Resolve the AWS chain once per process and profile (``storage_options['profile']`` or ``AWS_PROFILE``)."""
    opts = storage_options or {}
    profile = opts.get("profile") or os.environ.get("AWS_PROFILE") or None
    key = (os.getpid(), profile, *(os.environ.get(k) for k in _AWS_ENV))
    with _aws_lock:
        found = _aws_cache.get(key)
        if found is not None:
            return found
        import botocore.session

        session = botocore.session.Session(profile=profile)
        region = os.environ.get("AWS_REGION") or session.get_config_variable("region") or None
        ca_bundle = session.get_config_variable("ca_bundle", methods=("env", "config"))
        proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy") or \
            os.environ.get("HTTP_PROXY") or os.environ.get("http_proxy") or None
        no_proxy = os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or None
        found = AwsSettings(profile=profile, region=region, ca_bundle=ca_bundle, credentials=session.get_credentials(),
                            proxy_url=proxy, no_proxy=no_proxy)
        _aws_cache[key] = found
        return found
