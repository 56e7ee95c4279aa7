"""Checks of a product's SPECTRAL_IMAGE.TIF against its metadata, without reading the pixels."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from spectralearth.catalog.enmap.metadata import EnmapMetadata
from spectralearth.catalog.enmap.product import ProductSource, object_size, open_file, open_raster
from spectralearth.catalog.errors import ImageError

__all__ = ["CUBE_NODATA", "CUBE_SCALE", "IMAGE", "ImageInfo", "check_contract", "check_image", "sample_pixels",
           "tiff_data_end"]

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
    with open_raster(source, IMAGE, storage_options=storage_options) as ds:
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
) -> float:
    """Fraction of valid pixels in a few small windows of one band, inside the valid footprint.

    A cheap check that the image has data where the masks say it has: ``windows`` windows of
    ``size`` x ``size`` pixels at points spread over the footprint (each read touches one
    block of a tiled image, or a few strips of a stripped one).

    Returns:
        The valid fraction of the sampled pixels (0 for an image of nodata).
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
    with open_raster(source, IMAGE, storage_options=storage_options) as ds:
        for p in picks:
            col = int(np.clip((p.x - c) / a - size / 2, 0, max(0, cols - size)))
            row = int(np.clip((p.y - f) / e - size / 2, 0, max(0, rows - size)))
            block = ds.read(band, window=Window(col, row, min(size, cols), min(size, rows)))
            valid += int((block != info.nodata).sum())
            total += block.size
    return valid / total if total else 0.0
