"""Finding EnMAP L2A products in an archive and opening their files.

An archive is any fsspec URL (local folder, ``s3://bucket/prefix``). Products are delivered
either as folders ``…/<stem>/<stem>-<SUFFIX>`` or as ``…/<stem>.ZIP`` whose members are
``<stem>/<stem>-<SUFFIX>`` (found by suffix at any depth). One recursive listing finds them
all; only ZIPs are opened, and then only their central directory.
"""

from __future__ import annotations

import contextlib
import posixpath
import zipfile
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import fsspec

from spectralearth.catalog.enmap.metadata import EnmapMetadata, parse_metadata
from spectralearth.catalog.enmap.naming import SUFFIXES, ProductName, looks_like_product, split_file_name
from spectralearth.catalog.errors import ImageError, MetadataError, NamingError, ProductError
from spectralearth.platform import storage

__all__ = [
    "Discovery",
    "ProductSource",
    "discover_products",
    "object_size",
    "open_file",
    "open_raster",
    "read_metadata",
]


@dataclass(frozen=True)
class ProductSource:
    """Where the files of one product are."""

    product_id: str
    """The product stem."""
    name: ProductName
    """The parsed stem."""
    url: str
    """URL of the product folder or of the ``.ZIP``."""
    delivery: str
    """``"folder"`` or ``"zip"``."""
    files: tuple[tuple[str, str], ...]
    """``(SUFFIX, URL)`` pairs; ZIP members as chained URLs ``zip://<member>::<zip url>``."""

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


@dataclass(frozen=True)
class Discovery:
    """The products found in an archive, and what could not be used."""

    sources: tuple[ProductSource, ...]
    """Usable products, sorted by product id."""
    problems: tuple[ProductError, ...]
    """Products (or would-be products) that cannot be used, each naming why."""


def _url(fs, path: str) -> str:
    """Turn a path listed by ``fs`` back into a URL that fsspec opens with the same filesystem."""
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
    if "file" in protocols or "local" in protocols:
        return path
    return fs.unstrip_protocol(path)


def _ignored(rel_parts: list[str]) -> bool:
    return any(p.startswith(("_", ".")) for p in rel_parts)


def _zip_members(zip_url: str, stem: str, storage_options: Mapping[str, Any] | None) -> tuple[tuple[str, str], ...]:
    """Read a ZIP's central directory and map suffixes to member URLs."""
    with open_file(zip_url, storage_options=storage_options) as f:
        try:
            names = zipfile.ZipFile(f).namelist()
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise NamingError(stem, f"not a readable ZIP archive ({exc})", key="zip") from None
    found: dict[str, str] = {}
    for member in names:
        base = posixpath.basename(member)
        for suffix in SUFFIXES:
            if base.endswith("-" + suffix):
                # Prefer the member whose stem is the ZIP's own.
                if suffix not in found or base == f"{stem}-{suffix}":
                    found[suffix] = member
    return tuple((s, f"zip://{m}::{zip_url}") for s, m in sorted(found.items(), key=lambda kv: SUFFIXES.index(kv[0])))


def discover_products(
    archive_url: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    max_workers: int = 16,
) -> Discovery:
    """Find every EnMAP L2A product under an archive URL.

    One recursive listing finds folder deliveries and ZIPs; each ZIP's central directory is
    then read (in ``max_workers`` threads) to find its members. Names starting with ``_`` or
    ``.`` are ignored at any depth.

    Args:
        archive_url: local path or fsspec URL of the archive root.
        storage_options: fsspec options (the S3 endpoint is added from the environment).
        max_workers: threads reading ZIP directories.

    Returns:
        The usable products sorted by id, and the problems found (bad product names, ZIPs
        that are not ZIPs, product folders without METADATA.XML, duplicate deliveries).
    """
    fs, root = storage.filesystem(archive_url, storage_options)
    root = root.rstrip("/")
    listing = fs.find(root, withdirs=True, detail=True)
    problems: list[ProductError] = []
    folders: dict[str, dict[str, str]] = {}  # folder path -> {suffix: path}
    folder_names: dict[str, ProductName | None] = {}
    zips: list[tuple[str, ProductName]] = []

    def _folder_name(path: str, base: str) -> ProductName | None:
        try:
            return ProductName.parse(base)
        except NamingError as exc:
            problems.append(NamingError(_url(fs, path), exc.message, key=exc.key))
            return None

    for path, info in listing.items():
        path = path.rstrip("/")
        rel = path[len(root) :].strip("/").split("/") if path != root else []
        if not rel or _ignored(rel):
            continue
        base = rel[-1]
        is_dir = info.get("type") == "directory"
        if is_dir:
            if looks_like_product(base) and path not in folder_names:
                folder_names[path] = _folder_name(path, base)
                if folder_names[path] is not None:
                    folders.setdefault(path, {})
            continue
        if base.upper().endswith(".ZIP") and looks_like_product(base):
            try:
                zips.append((path, ProductName.parse(base)))
            except NamingError as exc:
                problems.append(NamingError(_url(fs, path), exc.message, key=exc.key))
            continue
        parent = posixpath.dirname(path)
        if parent not in folder_names and len(rel) >= 2 and looks_like_product(rel[-2]):
            # Object stores have no directory entries of their own.
            folder_names[parent] = _folder_name(parent, rel[-2])
        name = folder_names.get(parent)
        if name is None:
            continue
        try:
            file_name, suffix = split_file_name(base)
        except NamingError:
            continue
        if file_name == name and suffix in SUFFIXES:
            folders.setdefault(parent, {})[suffix] = path

    sources: list[ProductSource] = []
    for folder, files in folders.items():
        name = folder_names.get(folder)
        if name is None:
            continue
        url = _url(fs, folder)
        if "METADATA.XML" not in files:
            problems.append(MetadataError(name.stem, f"METADATA.XML missing in {url}", key="METADATA.XML"))
            continue
        ordered = tuple((s, _url(fs, files[s])) for s in SUFFIXES if s in files)
        sources.append(ProductSource(name.stem, name, url, "folder", ordered))

    def inspect(item: tuple[str, ProductName]) -> ProductSource | ProductError:
        path, name = item
        url = _url(fs, path)
        try:
            members = _zip_members(url, name.stem, storage_options)
        except ProductError as exc:
            return NamingError(url, exc.message, key="zip")
        except OSError as exc:
            return NamingError(url, f"cannot read ZIP ({exc})", key="zip")
        if not any(s == "METADATA.XML" for s, _ in members):
            return MetadataError(name.stem, f"METADATA.XML missing in {url}", key="METADATA.XML")
        return ProductSource(name.stem, name, url, "zip", members)

    if zips:
        with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(zips)))) as pool:
            for result in pool.map(inspect, sorted(zips)):
                (problems if isinstance(result, ProductError) else sources).append(result)

    # One source per product id: a folder wins over a ZIP, then the first URL.
    sources.sort(key=lambda s: (s.product_id, s.delivery != "folder", s.url))
    unique: list[ProductSource] = []
    for s in sources:
        if unique and unique[-1].product_id == s.product_id:
            problems.append(
                NamingError(s.product_id, f"delivered twice: {s.url} ignored, using {unique[-1].url}", key="duplicate")
            )
            continue
        unique.append(s)
    problems.sort(key=lambda e: (e.product, e.key or ""))
    return Discovery(tuple(unique), tuple(problems))


@contextlib.contextmanager
def open_file(url: str, *, storage_options: Mapping[str, Any] | None = None) -> Iterator[Any]:
    """Open a product file (plain, remote or ZIP member) as a seekable binary file object."""
    with fsspec.open(url, "rb", **storage.chained_options(url, storage_options)) as f:
        yield f


def read_metadata(source: ProductSource, *, storage_options: Mapping[str, Any] | None = None) -> EnmapMetadata:
    """Read and parse a product's METADATA.XML.

    Raises:
        MetadataError: the file is missing, unreadable or not valid L2A metadata.
    """
    url = source.file("METADATA.XML")
    if url is None:
        raise MetadataError(source.product_id, "METADATA.XML missing", key="METADATA.XML")
    try:
        with open_file(url, storage_options=storage_options) as f:
            data = f.read()
    except (OSError, zipfile.BadZipFile) as exc:
        raise MetadataError(source.product_id, f"cannot read METADATA.XML ({exc})", key="METADATA.XML") from None
    return parse_metadata(data, product=source.product_id)


@contextlib.contextmanager
def open_raster(source: ProductSource, suffix: str, *, storage_options: Mapping[str, Any] | None = None):
    """Open one of a product's GeoTIFFs with rasterio (windowed reads read only what they need).

    Local files are opened directly; remote files and ZIP members through rasterio's
    ``opener`` (an fsspec file object), so credentials never go through GDAL.

    Yields:
        An open ``rasterio`` dataset.

    Raises:
        ImageError: the product lacks the file or it cannot be opened as a raster.
    """
    import rasterio
    from rasterio.errors import RasterioError

    url = source.file(suffix)
    if url is None:
        raise ImageError(source.product_id, f"{suffix} missing", key=suffix)
    try:
        if "://" not in url or url.startswith("file://"):
            ds = rasterio.open(storage.strip_protocol(url))
        else:
            fs, path = storage.filesystem(url, storage_options)
            ds = rasterio.open(path, opener=fs)
    except (RasterioError, OSError, zipfile.BadZipFile, ValueError) as exc:
        raise ImageError(source.product_id, f"cannot open {suffix} as a raster ({exc})", key=suffix) from None
    try:
        yield ds
    finally:
        ds.close()


def object_size(url: str, *, storage_options: Mapping[str, Any] | None = None) -> int:
    """Size in bytes of a product file (uncompressed size for ZIP members)."""
    fs, path = storage.filesystem(url, storage_options)
    return int(fs.size(path))
