"""Checks of a product's SPECTRAL_IMAGE.TIF against its metadata, without reading the pixels."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spectralearth.catalog.enmap.metadata import EnmapMetadata
from spectralearth.catalog.enmap.product import ProductSource, object_size, open_file, open_raster
from spectralearth.catalog.errors import ImageError

__all__ = ["CUBE_NODATA", "CUBE_SCALE", "HTTP_READER", "IMAGE", "ImageInfo", "check_contract", "check_image",
           "gdal_http_options", "open_image", "read_windows", "sample_pixels", "tiff_data_end"]

IMAGE = "SPECTRAL_IMAGE.TIF"
"""Suffix of the reflectance image."""
CUBE_NODATA = -32768
"""Nodata of the cube's int16 reflectance (the cube contract)."""
CUBE_SCALE = 1e-4
"""Reflectance = DN x CUBE_SCALE in the cube (the cube contract); offset 0."""


@dataclass(frozen=True)
class ImageInfo:
    """The grid and layout of a SPECTRAL_IMAGE.TIF."""

    epsg: int
    """EPSG code of the raster's CRS."""
    transform: tuple[float, float, float, float, float, float]
    """Affine ``(a, b, c, d, e, f)`` as rasterio gives it."""
    shape: tuple[int, int]
    """``(rows, cols)``."""
    count: int
    """Number of bands."""
    dtype: str
    """Pixel type (``int16``)."""
    nodata: float | None
    """GDAL nodata value."""
    interleave: str | None
    """``PIXEL`` or ``BAND``."""
    tiled: bool
    """True if the TIFF is tiled (else stripped)."""
    block_shape: tuple[int, int]
    """``(rows, cols)`` of one tile or strip."""
    size_bytes: int
    """Size of the file."""


def tiff_data_end(f) -> int:
    """Largest ``offset + bytecount`` of any tile or strip of any image in a TIFF.

    Reads only the header and the image directories from the file object.
    """
    import tifffile

    end = 0
    with tifffile.TiffFile(f) as tif:
        for page in tif.pages:
            offsets = np.asarray(page.dataoffsets, dtype=np.int64)
            counts = np.asarray(page.databytecounts, dtype=np.int64)
            if offsets.size:
                end = max(end, int((offsets + counts).max()))
    return end


def check_image(
    source: ProductSource,
    metadata: EnmapMetadata,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> ImageInfo:
    """Check that a product's SPECTRAL_IMAGE.TIF is complete and agrees with its metadata.

    Args:
        source: the product.
        metadata: its parsed METADATA.XML.
        storage_options: fsspec options.

    Returns:
        The image's grid and layout.

    Raises:
        ImageError: the image is missing, cannot be opened, is truncated, has another band
            count or grid size than the metadata, is not int16, or has no CRS.
    """
    pid = source.product_id
    url = source.file(IMAGE)
    if url is None:
        raise ImageError(pid, f"{IMAGE} missing", key=IMAGE)
    with open_image(source, storage_options=storage_options) as ds:
        crs, transform = ds.crs, ds.transform
        shape, count, dtype = (ds.height, ds.width), ds.count, ds.dtypes[0]
        nodata = ds.nodata
        interleave = (ds.tags(ns="IMAGE_STRUCTURE").get("INTERLEAVE") or "").upper() or None
        profile = ds.profile
        block_shape = tuple(int(v) for v in ds.block_shapes[0])
    try:
        size = object_size(url, storage_options=storage_options)
        with open_file(url, storage_options=storage_options) as f:
            end = tiff_data_end(f)
    except Exception as exc:  # tifffile and the ZIP/object-store layers raise their own types
        raise ImageError(pid, f"cannot read the TIFF directory ({exc})", key=IMAGE) from None
    if end > size:
        raise ImageError(pid, f"truncated: image data runs to byte {end} but the file has {size} bytes", key=IMAGE)
    if count != metadata.band_count:
        raise ImageError(pid, f"image has {count} bands but METADATA.XML describes {metadata.band_count}", key="bands")
    if dtype != "int16":
        raise ImageError(pid, f"pixel type is {dtype}, expected int16", key="dtype")
    if crs is None:
        raise ImageError(pid, "image has no CRS", key="crs")
    epsg = crs.to_epsg()
    if epsg is None:
        raise ImageError(pid, f"image CRS has no EPSG code: {crs.to_string()[:80]}", key="crs")
    if metadata.epsg is not None and epsg != metadata.epsg:
        raise ImageError(pid, f"image CRS is EPSG:{epsg} but METADATA.XML says EPSG:{metadata.epsg}", key="crs")
    if shape != (metadata.height, metadata.width):
        raise ImageError(
            pid,
            f"image is {shape[1]}x{shape[0]} (cols x rows) but METADATA.XML says {metadata.width}x{metadata.height}",
            key="shape",
        )
    if transform.b != 0 or transform.d != 0 or transform.a <= 0 or transform.e >= 0:
        raise ImageError(pid, f"image grid is not north-up: {tuple(transform)[:6]}", key="transform")
    nodata = check_contract(pid, metadata, nodata)
    return ImageInfo(
        epsg=int(epsg),
        transform=tuple(float(v) for v in tuple(transform)[:6]),
        shape=shape,
        count=int(count),
        dtype=str(dtype),
        nodata=None if nodata is None else float(nodata),
        interleave=interleave,
        tiled=bool(profile.get("tiled", False)),
        block_shape=block_shape,
        size_bytes=size,
    )


def check_contract(product: str, metadata: EnmapMetadata, raster_nodata: float | None) -> float:
    """The image's nodata, checked with the XML's gains/offsets against the cube contract.

    The cube stores the source DNs unchanged as int16 with nodata -32768 and reflectance
    = DN x 1e-4, so a product whose raster nodata (or, without one, the XML's
    ``backgroundValue``) or band gains/offsets say otherwise cannot be copied into it.

    Returns:
        The nodata value to use (the raster's own, else the XML's background value).

    Raises:
        ImageError: naming the product, the band and the contradicting value.
    """
    nodata = raster_nodata if raster_nodata is not None else metadata.background_value
    if nodata is None:
        raise ImageError(product, "SPECTRAL_IMAGE.TIF has no nodata value and METADATA.XML no backgroundValue",
                         key="nodata")
    if float(nodata) != CUBE_NODATA:
        where = "SPECTRAL_IMAGE.TIF nodata" if raster_nodata is not None else "METADATA.XML backgroundValue"
        raise ImageError(product, f"{where} is {nodata:g}, but the cube stores int16 with nodata {CUBE_NODATA}",
                         key="nodata")
    for b in metadata.bands:
        if not np.isclose(b.gain, CUBE_SCALE, rtol=1e-6, atol=0) or b.offset != 0:
            raise ImageError(
                product,
                f"band {b.number}: gain {b.gain:g} / offset {b.offset:g} contradict the cube's reflectance = DN x "
                f"{CUBE_SCALE:g} + 0",
                key="gain",
            )
    return float(nodata)


def sample_pixels(
    source: ProductSource,
    info: ImageInfo,
    footprint_utm,
    *,
    storage_options: Mapping[str, Any] | None = None,
    windows: int = 5,
    size: int = 16,
    band: int | None = None,
    max_remote_bytes: int | None = None,
) -> float | None:
    """Fraction of valid pixels in a few small windows of one band, inside the valid footprint.

    A cheap check that the image has data where the masks say it has: ``windows`` windows of
    ``size`` x ``size`` pixels at points spread over the footprint (each read touches one
    block of a tiled image, or a few strips of a stripped one).

    Over HTTP(S) the image is read by range requests (:func:`open_image`), which fetch whole
    source blocks: a pixel-interleaved tile or strip holds every band. With
    ``max_remote_bytes``, the stored size of the blocks the windows touch is looked up in the
    TIFF directory first and the check is skipped (None) when they exceed it.

    Returns:
        The valid fraction of the sampled pixels (0 for an image of nodata); None when skipped.
    """
    import shapely
    from rasterio.windows import Window

    a, _, c, _, e, f = info.transform
    rows, cols = info.shape
    inner = footprint_utm.buffer(-size * abs(a))
    area = inner if not inner.is_empty else footprint_utm
    # points spread over the footprint: its representative point plus a grid clipped to it
    xs = np.linspace(*area.bounds[0::2], 7)[1:-1]
    ys = np.linspace(*area.bounds[1::2], 7)[1:-1]
    grid = shapely.points(np.array([(x, y) for x in xs for y in ys]))
    inside = [p for p in grid if area.contains(p)]
    picks = [area.representative_point()] + inside[:: max(1, len(inside) // max(1, windows - 1))][: windows - 1]
    band = band or min(info.count, 50)
    valid = total = 0
    # open_image: over HTTP(S) by GDAL range requests, so only the blocks of these windows are fetched
    url = source.file(IMAGE) or ""
    remote = url.startswith(("http://", "https://"))
    with open_image(source, storage_options=storage_options) as ds:
        wins = []
        for p in picks:
            col = int(np.clip((p.x - c) / a - size / 2, 0, max(0, cols - size)))
            row = int(np.clip((p.y - f) / e - size / 2, 0, max(0, rows - size)))
            wins.append(Window(col, row, min(size, cols), min(size, rows)))
        if remote and max_remote_bytes is not None:
            bh, bw = (int(v) for v in ds.block_shapes[band - 1])
            blocks = {(i, j) for w in wins
                      for i in range(int(w.row_off) // bh, (int(w.row_off + w.height) - 1) // bh + 1)
                      for j in range(int(w.col_off) // bw, (int(w.col_off + w.width) - 1) // bw + 1)}
            try:
                need = sum(int(ds.block_size(band, i, j)) for i, j in blocks)
            except Exception:  # not a TIFF, or no block sizes to look up: assume the worst
                need = None
            if need is None or need > max_remote_bytes:
                return None
        for w in wins:
            block = ds.read(band, window=w)
            valid += int((block != info.nodata).sum())
            total += block.size
    return valid / total if total else 0.0


# --------------------------------------------------------------------------- windowed reading


def _band_height(block_rows: int, patch_px: int) -> int:
    """Rows of one read band: a whole number of source blocks (tiles or strips), at least ``patch_px``."""
    block_rows = max(1, int(block_rows))
    return -(-int(patch_px) // block_rows) * block_rows


def _runs(intervals: list[tuple[int, int]], align: int, limit: int) -> list[tuple[int, int]]:
    """Merge ``[start, end)`` column intervals, widened to whole source blocks, into disjoint runs."""
    out: list[list[int]] = []
    for s, e in sorted(intervals):
        s, e = (s // align) * align, min(limit, -(-e // align) * align)
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def read_windows(
    ds,
    windows,
    *,
    indexes: Sequence[int],
    patch_px: int,
    product: str = "",
) -> Iterator[tuple[int, int, int, np.ndarray]]:
    """Read square windows of an open raster, reading each source block once for all of them.

    The image is read in row bands whose height is a whole number of the file's blocks
    (tiles of a tiled TIFF or COG, strips of a stripped one) and at least ``patch_px``;
    within a band only the runs of blocks that windows touch are read (a stripped file's
    strips span the full width anyway). A window takes its pixels from the band it starts
    in and, if it crosses the band's lower edge, the next one; a band is dropped once no
    later window needs it, so at most two bands are held. One ``read`` per run lets GDAL
    fetch neighbouring blocks together (one ranged request per run on a remote COG)
    instead of one read, and one decode of shared blocks, per window.

    Args:
        ds: an open rasterio dataset.
        windows: ``(k, 3)`` rows of ``(view, row0, col0)``, in any order.
        indexes: 1-based band numbers to read, in output order.
        patch_px: window side in pixels.
        product: named in errors.

    Yields:
        ``(view, row0, col0, data)`` in row-major order of the windows, ``data`` of shape
        ``(len(indexes), patch_px, patch_px)``.

    Raises:
        ImageError: a window lies (partly) outside the image, or a band does not exist.
    """
    w = np.asarray(windows, dtype=np.int64).reshape(-1, 3)
    if not len(w):
        return
    w = w[np.lexsort((w[:, 2], w[:, 1]))]
    px = int(patch_px)
    idx = [int(b) for b in indexes]
    if not idx or min(idx) < 1 or max(idx) > ds.count:
        raise ImageError(product, f"{IMAGE} has {ds.count} bands; bands {min(idx, default=0)}..{max(idx, default=0)} asked for", key="bands")
    bad = (w[:, 1] < 0) | (w[:, 2] < 0) | (w[:, 1] + px > ds.height) | (w[:, 2] + px > ds.width)
    if bad.any():
        _, r, c = (int(v) for v in w[int(np.argmax(bad))])
        raise ImageError(product, f"window at row {r}, col {c} ({px} px) is outside the {ds.width}x{ds.height} image", key="window")
    block_rows, block_cols = (int(v) for v in ds.block_shapes[0])
    band_h = _band_height(block_rows, px)
    first, last = w[:, 1] // band_h, (w[:, 1] + px - 1) // band_h
    runs_of: dict[int, list[tuple[int, int]]] = {}
    for b in range(int(first.min()), int(last.max()) + 1):
        touching = (first <= b) & (last >= b)
        if touching.any():
            cols = [(int(c), int(c) + px) for c in w[touching, 2]]
            runs_of[b] = _runs(cols, max(1, min(block_cols, ds.width)), ds.width)
    held: dict[int, list[tuple[int, int, np.ndarray]]] = {}
    step = block_cols if block_cols < ds.width else ds.width

    def read_run(r0: int, r1: int, s: int, e: int) -> np.ndarray:
        from rasterio.windows import Window

        # one read per block column: GDAL's block cache then needs one column of blocks at a
        # time (a 224-band pixel-interleaved tile is 29 MB at 256 px, 117 MB at 512 px), so
        # no block is evicted and fetched again before all its bands are copied out
        out = np.empty((len(idx), r1 - r0, e - s), dtype=ds.dtypes[0])
        for c in range(s, e, step):
            c1 = min(e, c + step)
            ds.read(indexes=idx, window=Window(c, r0, c1 - c, r1 - r0), out=out[:, :, c - s : c1 - s])
        return out

    def band(b: int) -> list[tuple[int, int, np.ndarray]]:
        if b not in held:
            r0, r1 = b * band_h, min(ds.height, (b + 1) * band_h)
            held[b] = [(s, e, read_run(r0, r1, s, e)) for s, e in runs_of[b]]
        return held[b]

    def piece(b: int, row0: int, row1: int, col0: int) -> np.ndarray:
        for s, e, arr in band(b):
            if s <= col0 and col0 + px <= e:
                return arr[:, row0 - b * band_h : row1 - b * band_h, col0 - s : col0 - s + px]
        raise AssertionError("window outside the runs read")  # the runs cover every window by construction

    for k, (view, row0, col0) in enumerate(w):
        view, row0, col0 = int(view), int(row0), int(col0)
        b0, b1 = int(first[k]), int(last[k])
        for old in [b for b in held if b < b0]:
            del held[old]
        if b0 == b1:
            data = np.ascontiguousarray(piece(b0, row0, row0 + px, col0))
        else:
            split = b1 * band_h
            data = np.concatenate([piece(b0, row0, split, col0), piece(b1, split, row0 + px, col0)], axis=1)
        yield view, row0, col0, data


# --------------------------------------------------------------------------- opening local and remote images

HTTP_READER = "gdal"
"""How rasters on HTTP(S) servers are read: ``"gdal"`` (GDAL's ``/vsicurl/``) or ``"fsspec"``
(rasterio on an fsspec HTTP file object, the ``opener`` path of ``open_raster``).

Chosen by measurement (``benchmarks/bench_remote_read.py``, ``benchmarks/results/remote_read.json``):
a full-size 224-band pixel-interleaved COG (512 px tiles) over the loopback HTTPS server
with basic auth, the 36 windows of its first 512 rows read by :func:`read_windows`. Both
fetched exactly the tiles needed (352 MB); ``/vsicurl/`` in 6 requests, fsspec in 24;
``/vsicurl/`` took 0.78x fsspec's wall time (medians 96 s against 124 s, on a machine at
load 40) and 0.87x its client CPU (5.4 s against 6.3 s), and GDAL retries 429/5xx by
itself, which fsspec's HTTP filesystem does not. So ``/vsicurl/``, with the settings of
:func:`gdal_http_options`. (A first probe that set 1 MB download chunks,
``CPL_VSIL_CURL_CHUNK_SIZE``, fetched 5.7x the bytes: GDAL's own chunking is kept.)
"""


def gdal_http_options(url: str) -> dict[str, Any]:
    """GDAL configuration for ``/vsicurl/`` reads: netrc credentials, retries, no directory listing.

    Credentials stay in the netrc file (``~/.netrc`` or ``$NETRC``): GDAL's libcurl reads it
    itself, nothing here holds them. TLS trust follows ``CURL_CA_BUNDLE``/``SSL_CERT_FILE``.
    """
    import os

    opts: dict[str, Any] = {
        "GDAL_HTTP_NETRC": "YES",
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "GDAL_HTTP_MAX_RETRY": 4,
        "GDAL_HTTP_RETRY_DELAY": 0.25,
        "GDAL_HTTP_RETRY_CODES": "429,500,502,503,504",
        "GDAL_HTTP_MULTIRANGE": "PARALLEL",
        "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
        # room for whole 224-band tiles (29 MB at 256 px); the default 16 MB measured the same
        # bytes and time on 512 px tiles (see HTTP_READER), this keeps a margin
        "CPL_VSIL_CURL_CACHE_SIZE": 256 << 20,
    }
    if os.environ.get("NETRC"):
        opts["GDAL_HTTP_NETRC_FILE"] = os.environ["NETRC"]
    for env in ("CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        if os.environ.get(env):
            opts["GDAL_CURL_CA_BUNDLE"] = os.environ[env]
            break
    return opts


def _http_status(message: str) -> int | None:
    import re

    m = re.search(r"HTTP (?:response )?code[: ]+(\d{3})", message) or re.search(r"\b(4\d\d|5\d\d)\b", message)
    return int(m.group(1)) if m else None


@contextlib.contextmanager
def open_image(source: ProductSource, *, suffix: str = IMAGE, storage_options: Mapping[str, Any] | None = None,
               http_reader: str | None = None):
    """Open a product's raster for windowed reads: local, object store, ZIP member or HTTP(S).

    HTTP(S) files (STAC assets) are read by range requests, with :data:`HTTP_READER`
    (``/vsicurl/`` unless ``http_reader`` says otherwise); everything else through
    :func:`~spectralearth.catalog.enmap.product.open_raster`.

    Raises:
        ImageError: the file is missing or cannot be opened; over HTTP(S) the named
            :mod:`~spectralearth.catalog.stacapi` errors (credentials refused, 404, 5xx).
    """
    url = source.file(suffix)
    how = http_reader or HTTP_READER
    if url is None or not url.startswith(("http://", "https://")) or how == "fsspec":
        with open_raster(source, suffix, storage_options=storage_options) as ds:
            yield ds
        return
    import rasterio
    from rasterio.errors import RasterioError

    from spectralearth.catalog.stacapi import remote_error

    with rasterio.Env(**gdal_http_options(url)):
        try:
            ds = rasterio.open("/vsicurl/" + url)
        except RasterioError as exc:
            status = _http_status(str(exc))
            if status is not None:
                err = remote_error(source.product_id, suffix, url, status=status)
                err.stage = "image"
                raise err from None
            raise ImageError(source.product_id, f"cannot open {suffix} over HTTP ({exc})", key=suffix) from None
        try:
            yield ds
        finally:
            ds.close()
