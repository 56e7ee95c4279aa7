"""Indexing from a STAC API: products found by search, read over HTTPS by range requests.

Most users find EnMAP L2A products through a STAC API (DLR's EOC Geoservice,
collection ``ENMAP_HSI_L2A``) rather than on their own bucket. There each item
carries an ``image`` asset (the SPECTRAL_IMAGE as a Cloud-Optimized GeoTIFF) and a
``metadata`` asset (the METADATA.XML); downloads need an account, with HTTP basic
auth. ``spectralearth index stac:URL --collection ENMAP_HSI_L2A`` searches the API
with ``pystac-client`` and turns each item into a :class:`ProductSource` whose files
are the asset hrefs, so the ordinary index job reads METADATA.XML and the image's
header over HTTPS, and ``extract`` later reads its windows from the remote COG by
range requests (see :func:`spectralearth.catalog.enmap.image.open_image`). Nothing is
downloaded in bulk.

Credentials come from the netrc file (``~/.netrc``, or the file named by ``NETRC``)
and are never copied anywhere: not into the catalog, references, logs or reports.
``requests`` (pystac-client, the checks here), aiohttp (fsspec's HTTP filesystem, with
``trust_env``) and GDAL's ``/vsicurl/`` (``GDAL_HTTP_NETRC``) all read that file
themselves. The STAC search itself is public.

Errors are named: :class:`RemoteAuthError` (401/403: wrong or missing credentials),
:class:`RemoteNotFoundError` (404), :class:`RemoteUnavailableError` (5xx or no
connection after the retries; ``retryable``, so a later run tries the product again).
Each is a :class:`~spectralearth.catalog.errors.ProductError` naming the product and
the asset, and quarantines that product only.

Each item keeps its upstream identity in the catalog: ``enmap:upstream_id`` (the STAC
item id), ``enmap:upstream_item`` (its ``self`` link) and the asset hrefs themselves.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from spectralearth.catalog.enmap.naming import SUFFIXES, ProductName
from spectralearth.catalog.enmap.discovery import Discovery
from spectralearth.catalog.enmap.product import ProductSource
from spectralearth.catalog.errors import NamingError, ProductError

__all__ = [
    "ASSET_SUFFIXES",
    "RETRYABLE_ERRORS",
    "STAC_PREFIX",
    "RemoteAccessError",
    "RemoteAuthError",
    "RemoteNotFoundError",
    "RemoteUnavailableError",
    "StacDiscovery",
    "StacSearch",
    "api_url",
    "check_remote_files",
    "discover_stac",
    "http_session",
    "is_stac_url",
    "remote_error",
    "source_of_item",
]

STAC_PREFIX = "stac:"
"""Archive URLs starting with this are STAC APIs (``stac:https://host/stac``)."""

ASSET_SUFFIXES: dict[str, str] = {
    "metadata": "METADATA.XML",
    "image": "SPECTRAL_IMAGE.TIF",
    "spectral_image": "SPECTRAL_IMAGE.TIF",
    "quality_classes": "QL_QUALITY_CLASSES.TIF",
    "quality_cloud": "QL_QUALITY_CLOUD.TIF",
    "quality_cloudshadow": "QL_QUALITY_CLOUDSHADOW.TIF",
    "quality_haze": "QL_QUALITY_HAZE.TIF",
    "quality_snow": "QL_QUALITY_SNOW.TIF",
    "quality_cirrus": "QL_QUALITY_CIRRUS.TIF",
    "quicklook_vnir": "QL_VNIR.TIF",
    "quicklook_swir": "QL_SWIR.TIF",
}
"""STAC asset keys -> product file suffixes (hrefs named ``…-<SUFFIX>`` are recognised by name too)."""

_RETRY_STATUS = (429, 500, 502, 503, 504)

RETRYABLE_ERRORS = ("RemoteUnavailableError",)
"""Quarantine error classes that the next index run tries again without being asked."""


class RemoteAccessError(ProductError):
    """A product file on an HTTP(S) server could not be read."""

    stage = "metadata"
    retryable = False


class RemoteAuthError(RemoteAccessError):
    """The server refused the credentials (401/403): check the netrc entry for its host."""


class RemoteNotFoundError(RemoteAccessError):
    """The asset href answers 404."""


class RemoteUnavailableError(RemoteAccessError):
    """5xx or no connection, still after the retries; a later run tries again."""

    retryable = True


def is_stac_url(url: str) -> bool:
    """True for ``stac:https://…`` archive URLs."""
    return url.startswith(STAC_PREFIX)


def api_url(url: str) -> str:
    """The API's own URL from a ``stac:`` archive URL."""
    return url[len(STAC_PREFIX) :] if is_stac_url(url) else url


def http_session(*, retries: int = 4, backoff_s: float = 0.25):
    """A ``requests`` session that retries 429/5xx and dropped connections (urllib3's ``Retry``).

    Credentials: requests reads the netrc file for each request's host (``trust_env``).
    """
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    retry = Retry(total=retries, connect=retries, read=retries, status=retries, backoff_factor=backoff_s,
                  status_forcelist=_RETRY_STATUS, allowed_methods=("GET", "HEAD"), respect_retry_after_header=True,
                  raise_on_status=False)
    s = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    s.mount("https://", adapter)
    s.mount("http://", adapter)
    return s


def remote_error(product: str, asset: str, url: str, *, status: int | None = None, exc: BaseException | None = None) -> RemoteAccessError:
    """The named error for an HTTP status (or a connection error) of one product file."""
    where = _redact_url(url)
    if status in (401, 403):
        return RemoteAuthError(product, f"{where}: HTTP {status}: the server refused the credentials "
                                        f"(put them in the netrc entry for {urlsplit(url).hostname})", key=asset)
    if status == 404:
        return RemoteNotFoundError(product, f"{where}: HTTP 404 not found", key=asset)
    if status is not None and (status >= 500 or status == 429):
        return RemoteUnavailableError(product, f"{where}: HTTP {status} after retries", key=asset)
    if status is not None:
        return RemoteAccessError(product, f"{where}: HTTP {status}", key=asset)
    return RemoteUnavailableError(product, f"{where}: {type(exc).__name__ if exc else 'error'}: {exc}", key=asset)


def _redact_url(url: str) -> str:
    """The URL without any user:password part."""
    p = urlsplit(url)
    if p.username or p.password:
        netloc = p.hostname + (f":{p.port}" if p.port else "")
        return p._replace(netloc=netloc).geturl()
    return url


def check_remote_files(source: ProductSource, *, suffixes: Sequence[str] = ("METADATA.XML", "SPECTRAL_IMAGE.TIF"),
                       session=None, timeout_s: float = 30.0) -> None:
    """HEAD each remote file of a product (with retries); raise the named error of the first failure.

    Runs before the product is read, so that a wrong password, a missing asset or a
    failing server is reported as such and not as a malformed file.
    """
    own = session is None
    session = session or http_session()
    try:
        for suffix in suffixes:
            url = source.file(suffix)
            if url is None or not url.startswith(("http://", "https://")):
                continue
            try:
                r = session.head(url, timeout=timeout_s, allow_redirects=True)
            except Exception as exc:  # connection refused/reset, TLS, timeouts: after urllib3's retries
                raise remote_error(source.product_id, suffix, url, exc=exc) from None
            if r.status_code >= 400:
                raise remote_error(source.product_id, suffix, url, status=r.status_code)
    finally:
        if own:
            session.close()


@dataclass(frozen=True)
class StacSearch:
    """What to ask the STAC API for."""

    collection: str = "ENMAP_HSI_L2A"
    """Collection id."""
    bbox: tuple[float, float, float, float] | None = None
    """``(west, south, east, north)`` in degrees."""
    datetime: str | None = None
    """RFC 3339 instant or interval (``2023-01-01/2023-06-30``)."""
    max_items: int | None = None
    """Stop after this many items."""
    limit: int = 100
    """Page size asked of the API."""


@dataclass(frozen=True)
class StacDiscovery(Discovery):
    """Products found by a STAC search, with the upstream properties to keep on each item."""

    item_properties: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Product id -> properties recording where it came from."""
    matched: int = 0
    """Items the search returned."""


def _suffix_of(key: str, href: str) -> str | None:
    if key in ASSET_SUFFIXES:
        return ASSET_SUFFIXES[key]
    base = posixpath.basename(urlsplit(href).path).upper()
    for suffix in SUFFIXES:
        if base.endswith("-" + suffix):
            return suffix
    return None


def _product_name(item: Mapping[str, Any], files: Mapping[str, str]) -> ProductName:
    """The product name: the item id if it is one (DLR's are), else from the METADATA.XML href."""
    try:
        return ProductName.parse(str(item.get("id", "")))
    except NamingError:
        href = files.get("METADATA.XML", "")
        base = posixpath.basename(urlsplit(href).path)
        stem = base[: -len("-METADATA.XML")] if base.upper().endswith("-METADATA.XML") else base
        return ProductName.parse(stem)


def source_of_item(item: Mapping[str, Any], *, api: str) -> tuple[ProductSource, dict[str, Any]]:
    """A product source (files = asset hrefs) and the upstream properties for one STAC item dict.

    Raises:
        NamingError: no product name in the item id or the metadata href.
        ProductError: the item has no ``metadata`` asset.
    """
    files: dict[str, str] = {}
    for key, asset in sorted((item.get("assets") or {}).items()):
        href = (asset or {}).get("href")
        suffix = _suffix_of(key, href or "") if href else None
        if suffix and suffix not in files:
            files[suffix] = href
    item_id = str(item.get("id", "?"))
    try:
        name = _product_name(item, files)
    except NamingError as exc:
        raise NamingError(item_id, f"STAC item is not an EnMAP L2A product: {exc.message}", key="id") from None
    if "METADATA.XML" not in files:
        raise ProductError(name.stem, f"STAC item {item_id} has no metadata asset", key="metadata")
    self_href = next((ln.get("href") for ln in item.get("links") or [] if ln.get("rel") == "self"), None)
    ordered = tuple((s, files[s]) for s in SUFFIXES if s in files)
    src = ProductSource(name.stem, name, self_href or f"{api.rstrip('/')}/collections/{item.get('collection')}/items/{item_id}",
                        "stac", ordered)
    props = {"enmap:upstream_id": item_id, "enmap:upstream_item": _redact_url(src.url)}
    return src, props


def discover_stac(url: str, search: StacSearch = StacSearch(), *, retries: int = 4) -> StacDiscovery:
    """Search a STAC API and return its EnMAP products as sources (no product file is read here).

    Args:
        url: ``stac:https://…`` or the API URL itself.
        search: collection, bbox, datetime, limits.
        retries: retries of each API request (429/5xx).

    Returns:
        The products (sorted by id, one per product id: the first item wins) and the items
        that are not usable products, each naming why.
    """
    from pystac_client import Client
    from pystac_client.stac_api_io import StacApiIO

    api = api_url(url)
    io = StacApiIO(max_retries=http_session(retries=retries).adapters["https://"].max_retries)
    client = Client.open(api, stac_io=io)
    kw: dict[str, Any] = {"collections": [search.collection], "limit": search.limit}
    if search.bbox is not None:
        kw["bbox"] = list(search.bbox)
    if search.datetime:
        kw["datetime"] = search.datetime
    if search.max_items is not None:
        kw["max_items"] = search.max_items
    sources: dict[str, ProductSource] = {}
    props: dict[str, dict[str, Any]] = {}
    problems: list[ProductError] = []
    matched = 0
    for item in client.search(**kw).items_as_dicts():
        matched += 1
        try:
            src, p = source_of_item(item, api=api)
        except ProductError as exc:
            problems.append(exc)
            continue
        if src.product_id in sources:
            problems.append(NamingError(src.product_id, f"returned twice by the search: item {p['enmap:upstream_id']} ignored",
                                        key="duplicate"))
            continue
        sources[src.product_id] = src
        props[src.product_id] = p
    ordered = tuple(sources[k] for k in sorted(sources))
    problems.sort(key=lambda e: (e.product, e.key or ""))
    return StacDiscovery(ordered, tuple(problems), searched=url, files_listed=matched, item_properties=props,
                         matched=matched)
