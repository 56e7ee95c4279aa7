"""A product's files and how to open them: plain, remote, ZIP or tar members.

:func:`spectralearth.catalog.enmap.discover_products` finds the products; this module
opens their files (read-size limits and transient storage errors included).
"""

from __future__ import annotations

import contextlib
import tarfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import fsspec

from spectralearth.catalog.enmap.metadata import EnmapMetadata, parse_metadata
from spectralearth.catalog.enmap.naming import ProductName
from spectralearth.catalog.errors import ImageError, MetadataError, TransientError, is_transient
from spectralearth.platform import storage

__all__ = [
    "MAX_XML_BYTES",
    "ProductSource",
    "object_size",
    "open_file",
    "open_raster",
    "read_metadata",
]

MAX_XML_BYTES = 64 * 1024 * 1024
"""Largest METADATA.XML read (a real one is ~4.2 MB); larger files are rejected unread."""
_HEAD_BYTES = 256 * 1024
_TAIL_BYTES = 256 * 1024
_CUT_FROM, _CUT_TO = b"<calibration>", b"</time>"


def _xml_ranges(fs, path: str, size: int) -> bytes | None:
    """METADATA.XML without the product's calibration..time sections, read by two range requests.

    ~95 % of a real file (4.2 MB) is ``product/calibration``, ``matching``, ``navigation`` and
    ``time``, which the platform never reads and which lie, in this order, between
    ``quicklook`` and ``ortho``. The head up to ``<calibration>`` and the tail from ``</time>``
    make a well-formed document with everything else. None when the markers are not where
    expected (then the whole file is read).
    """
    if size <= _HEAD_BYTES + _TAIL_BYTES:
        return None
    head = fs.cat_file(path, start=0, end=_HEAD_BYTES)
    tail = fs.cat_file(path, start=size - _TAIL_BYTES, end=size)
    i, j = head.find(_CUT_FROM), tail.find(_CUT_TO)
    if i < 0 or j < 0 or head.find(_CUT_FROM, i + 1) >= 0 or tail.find(_CUT_TO, j + 1) >= 0 or _CUT_TO in head:
        return None
    return head[:i] + tail[j + len(_CUT_TO):]


@dataclass(frozen=True)
class ProductSource:
    """Where the files of one product are."""

    product_id: str
    """The product stem."""
    name: ProductName
    """The parsed stem."""
    url: str
    """URL of the folder holding the product's files, or of the archive holding them."""
    delivery: str
    """``"folder"``, ``"zip"`` or ``"tar"``."""
    files: tuple[tuple[str, str], ...]
    """``(SUFFIX, URL)`` pairs; archive members as chained URLs ``zip://<member>::<archive url>``
    (``tar://`` for tar archives)."""

    def file(self, suffix: str) -> str | None:
        """URL of the file with this suffix, or None if the product lacks it."""
        for s, url in self.files:
            if s == suffix:
                return url
        return None

    @property
    def suffixes(self) -> tuple[str, ...]:
        """Suffixes of the files present."""
        return tuple(s for s, _ in self.files)


def _options(url: str, storage_options: Mapping[str, Any] | None) -> dict:
    """fsspec options of a (chained) URL; a ``.tgz`` member needs its compression named."""
    opts = storage.chained_options(url, storage_options)
    if url.startswith("tar://") and url.split("::", 1)[1].lower().endswith(".tgz"):
        opts = {**opts, "tar": {**opts.get("tar", {}), "compression": "gzip"}}
    return opts


def _filesystem(url: str, storage_options: Mapping[str, Any] | None):
    return fsspec.core.url_to_fs(url, **_options(url, storage_options))


@contextlib.contextmanager
def open_file(url: str, *, storage_options: Mapping[str, Any] | None = None) -> Iterator[Any]:
    """Open a product file (plain, remote, ZIP or tar member) as a seekable binary file object."""
    with fsspec.open(url, "rb", **_options(url, storage_options)) as f:
        yield f


def read_metadata(
    source: ProductSource,
    *,
    storage_options: Mapping[str, Any] | None = None,
    max_bytes: int = MAX_XML_BYTES,
    ranges: bool = True,
) -> EnmapMetadata:
    """Read and parse a product's METADATA.XML.

    Args:
        source: the product.
        storage_options: fsspec options.
        max_bytes: larger files are rejected without being read whole.
        ranges: for a remote, plain file, read only the head and the tail around the large
            calibration/navigation/time sections (two range requests, ~5 % of a real file);
            the whole file when they are not found, and always for archive members.

    Raises:
        MetadataError: the file is missing, too large, unreadable or not valid L2A metadata.
        TransientError: the storage failed in a way that may pass (5xx, throttling, dropped
            connections); the product should be tried again later.
    """
    url = source.file("METADATA.XML")
    if url is None:
        raise MetadataError(source.product_id, "METADATA.XML missing", key="METADATA.XML")
    try:
        data = None
        if ranges and "::" not in url and "://" in url and not url.startswith("file://"):
            fs, path = _filesystem(url, storage_options)
            size = int(fs.size(path))
            if size > max_bytes:
                raise MetadataError(source.product_id, f"METADATA.XML is larger than the limit of {max_bytes} bytes",
                                    key="METADATA.XML")
            data = _xml_ranges(fs, path, size)
        if data is None:
            with open_file(url, storage_options=storage_options) as f:
                data = f.read(max_bytes + 1)
    except (OSError, zipfile.BadZipFile, tarfile.TarError) as exc:
        if is_transient(exc):
            raise TransientError(source.product_id, f"storage error reading METADATA.XML ({exc})", key="METADATA.XML") from exc
        raise MetadataError(source.product_id, f"cannot read METADATA.XML ({exc})", key="METADATA.XML") from None
    if len(data) > max_bytes:
        raise MetadataError(
            source.product_id, f"METADATA.XML is larger than the limit of {max_bytes} bytes", key="METADATA.XML"
        )
    return parse_metadata(data, product=source.product_id)


@contextlib.contextmanager
def open_raster(
    source: ProductSource,
    suffix: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    whole_below: int = 0,
):
    """Open one of a product's GeoTIFFs with rasterio (windowed reads read only what they need).

    Local files are opened directly; remote files and archive members through rasterio's
    ``opener`` (an fsspec file object), so credentials never go through GDAL. A remote file
    smaller than ``whole_below`` bytes (a QL mask) is read in one request into memory
    instead: one GET rather than many range reads, and storage errors surface here, in
    Python, where they can be retried.

    Yields:
        An open ``rasterio`` dataset.

    Raises:
        ImageError: the product lacks the file or it cannot be opened as a raster.
        TransientError: the storage failed in a way that may pass.
    """
    import rasterio
    from rasterio.errors import RasterioError

    url = source.file(suffix)
    if url is None:
        raise ImageError(source.product_id, f"{suffix} missing", key=suffix)
    memfile = None
    try:
        if "://" not in url or url.startswith("file://"):
            ds = rasterio.open(storage.strip_protocol(url))
        else:
            fs, path = _filesystem(url, storage_options)
            if whole_below and fs.size(path) < whole_below:
                with fs.open(path, "rb") as f:
                    memfile = rasterio.MemoryFile(f.read())
                ds = memfile.open()
            else:
                ds = rasterio.open(path, opener=fs)
    except (RasterioError, OSError, zipfile.BadZipFile, tarfile.TarError, ValueError) as exc:
        if is_transient(exc):
            raise TransientError(source.product_id, f"storage error opening {suffix} ({exc})", key=suffix) from exc
        raise ImageError(source.product_id, f"cannot open {suffix} as a raster ({exc})", key=suffix) from None
    try:
        yield ds
    finally:
        ds.close()
        if memfile is not None:
            memfile.close()


def object_size(url: str, *, storage_options: Mapping[str, Any] | None = None) -> int:
    """Size in bytes of a product file (uncompressed size for archive members)."""
    fs, path = _filesystem(url, storage_options)
    return int(fs.size(path))
