"""The valid-data footprint of an EnMAP tile: where the rotated swath actually has pixels.

Sources, best first: the QL_QUALITY_CLASSES mask (class 3 = background), the nodata of one
band of SPECTRAL_IMAGE.TIF, and, for footprint-only products, the corner points of
METADATA.XML. The mask is polygonized at full resolution (~20 ms for 1128x1212), small
specks and holes are dropped, and the outline is simplified by at most ``simplify_px``
pixels, so the footprint never reaches more than that beyond valid data.

A tile that crosses the antimeridian has a continuous footprint in its UTM zone; in WGS84
it is split at ±180° (the ``antimeridian`` package) into a MultiPolygon, so that it never
spans the globe.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon

from spectralearth.catalog.enmap.metadata import EnmapMetadata
from spectralearth.catalog.enmap.product import ProductSource, open_raster
from spectralearth.catalog.errors import ImageError

__all__ = [
    "CLASSES",
    "BACKGROUND_CLASS",
    "MAX_MASK_PIXELS",
    "Footprint",
    "mask_footprint",
    "split_antimeridian",
    "utm_epsg_for",
    "valid_footprint",
]

CLASSES = "QL_QUALITY_CLASSES.TIF"
"""Suffix of the land/water/background mask."""
BACKGROUND_CLASS = 3
"""Class of pixels outside the swath in QL_QUALITY_CLASSES."""
MAX_MASK_PIXELS = 36_000_000
"""Largest mask read whole (a real tile is ~1.5 M pixels; 6000x6000 would be a 180 km tile)."""
_PREFERRED_BANDS = (50, 30, 80, 20, 100, 10)
"""1-based bands tried for image nodata, away from the water-vapour absorption bands."""


@dataclass(frozen=True)
class Footprint:
    """Where a tile has valid pixels."""

    epsg: int
    """EPSG code of the tile's UTM grid."""
    utm: Polygon | MultiPolygon
    """Footprint in the tile's UTM CRS (metres)."""
    wgs84: Polygon | MultiPolygon
    """Footprint in lon/lat (EPSG:4326), edges densified before reprojection."""
    source: str
    """``"classes-mask"``, ``"image-nodata"`` or ``"xml"``."""
    valid_fraction: float | None
    """Valid pixels / grid pixels; None when taken from the XML."""
    repaired: bool = False
    """True if an invalid geometry had to be repaired with ``make_valid``."""


def utm_epsg_for(lon: float, lat: float) -> int:
    """EPSG code of the WGS84/UTM zone containing a point."""
    zone = min(60, max(1, int((lon + 180.0) // 6.0) + 1))
    return (32600 if lat >= 0 else 32700) + zone


@functools.lru_cache(maxsize=64)
def _transformer(src: int, dst: int, thread: int):
    from pyproj import Transformer

    return Transformer.from_crs(src, dst, always_xy=True)


def _reproject(geom, src: int, dst: int):
    t = _transformer(src, dst, threading.get_ident())
    return shapely.transform(geom, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))


def _polygonal(geom) -> Polygon | MultiPolygon:
    """Keep only the areal parts of a geometry (make_valid may add lines or points)."""
    if isinstance(geom, Polygon | MultiPolygon):
        return geom
    parts = [g for g in shapely.get_parts(geom) if isinstance(g, Polygon | MultiPolygon)]
    flat = [p for g in parts for p in (g.geoms if isinstance(g, MultiPolygon) else [g])]
    return flat[0] if len(flat) == 1 else MultiPolygon(flat)


def split_antimeridian(wgs84) -> Polygon | MultiPolygon:
    """Split a lon/lat footprint whose ring jumps across ±180° into parts on either side.

    A footprint that does not cross the antimeridian is returned unchanged. Edges are taken
    as straight in lon/lat (footprints are densified before reprojection).
    """
    import antimeridian
    from shapely.geometry.polygon import orient

    minx, _, maxx, _ = wgs84.bounds
    if maxx - minx <= 180.0:
        return wgs84
    parts = wgs84.geoms if isinstance(wgs84, MultiPolygon) else [wgs84]
    fixed = []
    for part in parts:
        out = antimeridian.fix_polygon(orient(part, 1.0), great_circle=False)
        fixed.extend(out.geoms if isinstance(out, MultiPolygon) else [out])
    return fixed[0] if len(fixed) == 1 else MultiPolygon(fixed)


def _finish(utm, epsg: int, *, densify_m: float, repaired: bool) -> tuple[Any, Any, bool]:
    if not utm.is_valid:
        utm, repaired = _polygonal(shapely.make_valid(utm)), True
    wgs84 = split_antimeridian(_reproject(shapely.segmentize(utm, densify_m), epsg, 4326))
    if not wgs84.is_valid:
        wgs84, repaired = _polygonal(shapely.make_valid(wgs84)), True
    return utm, wgs84, repaired


def mask_footprint(
    valid: np.ndarray,
    transform: Sequence[float],
    *,
    product: str,
    simplify_px: float = 1.0,
    min_area_px: float = 64.0,
) -> tuple[Polygon | MultiPolygon, bool]:
    """Polygonize a boolean valid-pixel mask into a simplified outline in map units.

    Args:
        valid: 2-D boolean mask, True where pixels are valid.
        transform: the mask's affine transform (rasterio order ``a, b, c, d, e, f``).
        product: product id for errors.
        simplify_px: simplification tolerance in pixels (the outline stays within this
            distance of the pixel edges).
        min_area_px: parts and holes smaller than this many pixels are dropped.

    Returns:
        The outline and whether it had to be repaired.

    Raises:
        ImageError: no valid pixels, or none in a part larger than ``min_area_px``.
    """
    from affine import Affine
    from rasterio import features

    if not valid.any():
        raise ImageError(product, "no valid pixels (all nodata)", key="footprint")
    aff = Affine(*tuple(transform)[:6])
    px_area = abs(aff.a * aff.e - aff.b * aff.d)
    min_area = min_area_px * px_area
    polygons = []
    for geom, _ in features.shapes(valid.astype(np.uint8), mask=valid, transform=aff, connectivity=4):
        rings = geom["coordinates"]
        shell = Polygon(rings[0])
        if shell.area < min_area:
            continue
        holes = [r for r in rings[1:] if Polygon(r).area >= min_area]
        polygons.append(Polygon(rings[0], holes))
    if not polygons:
        raise ImageError(product, f"no valid area larger than {min_area_px:g} pixels", key="footprint")
    outline = shapely.union_all(polygons)
    repaired = False
    if not outline.is_valid:
        outline, repaired = _polygonal(shapely.make_valid(outline)), True
    pixel = float(np.sqrt(px_area))
    simplified = outline.simplify(simplify_px * pixel, preserve_topology=True) if simplify_px > 0 else outline
    return _polygonal(simplified), repaired


def _image_mask(ds, product: str, background: float | None = None) -> np.ndarray:
    nodata = ds.nodata if ds.nodata is not None else background
    if nodata is None:
        raise ImageError(product, "SPECTRAL_IMAGE.TIF has no nodata value", key="nodata")
    tried = [b for b in _PREFERRED_BANDS if b <= ds.count] or [1]
    for band in tried:
        valid = ds.read(band) != nodata
        if valid.any():
            return valid
    raise ImageError(product, f"no valid pixels (all nodata) in bands {tried}", key="footprint")


def valid_footprint(
    source: ProductSource,
    metadata: EnmapMetadata,
    *,
    storage_options: Mapping[str, Any] | None = None,
    simplify_px: float = 1.0,
    min_area_px: float = 64.0,
    densify_px: float = 32.0,
    max_mask_pixels: int = MAX_MASK_PIXELS,
) -> Footprint:
    """The valid-data footprint of a product, in its UTM CRS and in WGS84.

    Args:
        source: the product.
        metadata: its parsed METADATA.XML (EPSG and corners for footprint-only products).
        storage_options: fsspec options.
        simplify_px: outline simplification tolerance in pixels.
        min_area_px: valid parts and nodata holes smaller than this are dropped.
        densify_px: edge length (pixels) at which edges are densified before reprojection.
        max_mask_pixels: masks larger than this are rejected without being read.

    Returns:
        The footprint and where it came from.

    Raises:
        ImageError: no valid pixels, a raster without CRS, an unreadable mask, a mask larger
            than ``max_mask_pixels`` or on another grid size than METADATA.XML's.
    """
    pid = source.product_id
    pixel = metadata.pixel_size or 30.0
    if source.file(CLASSES) is not None or source.file("SPECTRAL_IMAGE.TIF") is not None:
        kind = "classes-mask" if source.file(CLASSES) is not None else "image-nodata"
        suffix = CLASSES if kind == "classes-mask" else "SPECTRAL_IMAGE.TIF"
        whole = 64 * 2**20 if kind == "classes-mask" else 0  # masks are small: one GET
        with open_raster(source, suffix, storage_options=storage_options, whole_below=whole) as ds:
            if ds.crs is None or ds.crs.to_epsg() is None:
                raise ImageError(pid, f"{suffix} has no EPSG CRS", key="crs")
            epsg, transform = int(ds.crs.to_epsg()), ds.transform
            if ds.width * ds.height > max_mask_pixels:
                raise ImageError(pid, f"{suffix} is {ds.width}x{ds.height} pixels, above the read limit of "
                                      f"{max_mask_pixels} pixels", key=suffix)
            if (ds.height, ds.width) != (metadata.height, metadata.width):
                raise ImageError(pid, f"{suffix} is {ds.width}x{ds.height} (cols x rows) but METADATA.XML says "
                                      f"{metadata.width}x{metadata.height}", key="shape")
            valid = ds.read(1) != BACKGROUND_CLASS if kind == "classes-mask" else _image_mask(ds, pid, metadata.background_value)
        utm, repaired = mask_footprint(valid, transform, product=pid, simplify_px=simplify_px, min_area_px=min_area_px)
        pixel = float(np.sqrt(abs(transform.a * transform.e - transform.b * transform.d)))
        fraction = float(valid.mean())
    else:
        lon, lat = metadata.center_lonlat or metadata.corners_lonlat[0]
        epsg = metadata.epsg or utm_epsg_for(lon, lat)
        ring = Polygon(metadata.corners_lonlat)
        utm = _reproject(ring, 4326, epsg)
        kind, fraction, repaired = "xml", None, False
    utm, wgs84, repaired = _finish(utm, epsg, densify_m=densify_px * pixel, repaired=repaired)
    if utm.is_empty:
        raise ImageError(pid, "no valid pixels (all nodata)", key="footprint")
    return Footprint(epsg=epsg, utm=utm, wgs84=wgs84, source=kind, valid_fraction=fraction, repaired=repaired)
