"""Synthetic land-cover products in the grids of the real ones, following the synthetic surface.

==========  ==========  =====  ==============  =========================================
product     CRS         pixel  values          like
==========  ==========  =====  ==============  =========================================
``corine``  EPSG:3035   100 m  CLC level-3     CORINE Land Cover (Europe, LAEA)
``cdl``     EPSG:5070    30 m  CDL codes       USDA Cropland Data Layer (CONUS Albers)
``nlcd``    EPSG:5070    30 m  NLCD codes      USGS National Land Cover Database
==========  ==========  =====  ==============  =========================================

Each pixel's class comes from the dominant material of the synthetic archive's land cover
at the pixel centre (the same hashed noise fields, in the UTM grid of the centre's zone,
that make the archive's spectra), refined into several codes of the product by a second,
spectrally invisible field, as real classes are partly separable from spectra only. Some
codes are ones the benchmark nomenclatures ignore, and a third field punches no-data holes,
so label pairing has patches to drop.

The synthetic archive covers the whole globe sparsely, so a product is written as a
folder of GeoTIFFs, one per ``region_m`` square of the product grid holding patches,
each snapped to the product's grid (pixel corners on multiples of the pixel size).
Overlapping rasters agree: values are a function of the place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .fields import _lattice
from .plan import _utm_epsg

__all__ = ["LABEL_PRODUCTS", "LabelProduct", "material_map", "synthesize_label_product"]

_BIAS = np.array([1.0, 0.2, 0.2, -0.3, -0.9, -1.6, -4.0], dtype=np.float32)  # as catalog/synth/render.py
_CELLS = (24000.0, 4800.0, 1200.0, 300.0, 90.0)


@dataclass(frozen=True)
class LabelProduct:
    """The grid and code lists of one product kind."""

    epsg: int
    """CRS of the product grid."""
    pixel_m: float
    """Pixel size."""
    dtype: str
    """Raster data type."""
    nodata: int
    """No-data value."""
    nomenclature: str
    """Built-in nomenclature that reads it."""
    codes: tuple[tuple[int, ...], ...]
    """Codes drawn for each material (vegetation, dry vegetation, soil, dark soil, water, impervious, snow)."""


LABEL_PRODUCTS: dict[str, LabelProduct] = {
    "corine": LabelProduct(3035, 100.0, "uint16", 0, "corine19", (
        (311, 312, 313, 231, 211, 324), (321, 322, 323, 242, 243), (211, 212, 331, 333), (221, 222, 241, 244),
        (511, 512, 523, 411, 421), (111, 112, 121, 122, 124, 142), (335,))),
    "cdl": LabelProduct(5070, 30.0, "uint8", 0, "cdl", (
        (1, 5, 2, 3, 36), (4, 6, 24, 176), (54, 61, 45), (69, 75, 76, 204, 210, 72), (111,), (121, 122, 123, 124), (112,))),
    "nlcd": LabelProduct(5070, 30.0, "uint8", 250, "nlcd", (
        (41, 42, 43, 81, 82, 90), (52, 71, 95), (31, 21), (82, 22), (11,), (23, 24), (12,))),
}


def _noise_at(x: np.ndarray, y: np.ndarray, *, cell: float, seed: int, salt: int) -> np.ndarray:
    """Value noise (catalog/synth/fields.py) at scattered points: same lattice, same smoothstep."""
    gx, gy = x / cell, y / cell
    ix0, iy0 = np.floor(gx).astype(np.int64), np.floor(gy).astype(np.int64)
    lx, ly = int(ix0.min()), int(iy0.min())
    lat = _lattice(np.arange(lx, int(ix0.max()) + 2), np.arange(ly, int(iy0.max()) + 2), seed, salt)
    tx = (gx - ix0).astype(np.float32)
    ty = (gy - iy0).astype(np.float32)
    tx, ty = tx * tx * (3 - 2 * tx), ty * ty * (3 - 2 * ty)
    jx, jy = ix0 - lx, iy0 - ly
    a = lat[jy, jx] * (1 - tx) + lat[jy, jx + 1] * tx
    b = lat[jy + 1, jx] * (1 - tx) + lat[jy + 1, jx + 1] * tx
    return a * (1 - ty) + b * ty


def material_map(x: np.ndarray, y: np.ndarray, *, zone_epsg: int, seed: int) -> np.ndarray:
    """Dominant material (index into MATERIALS) at UTM points of one zone, without seasonal shifts."""
    total = sum(0.5 ** k for k in range(len(_CELLS)))
    logits = []
    for m in range(len(_BIAS)):
        salt = zone_epsg * 8 + m
        n = sum(_noise_at(x, y, cell=c, seed=seed, salt=salt * 16 + k) * 0.5 ** k for k, c in enumerate(_CELLS)) / total
        logits.append(_BIAS[m] + 3.2 * n)
    return np.argmax(np.stack(logits), axis=0).astype(np.int8)


def _codes_at(lon, lat, kind: LabelProduct, seed: int) -> np.ndarray:
    import pyproj

    out = np.full(lon.shape, kind.nodata, dtype=np.int64)
    zones = _utm_epsg(lon, lat)
    for zone in np.unique(zones):
        sel = zones == zone
        x, y = pyproj.Transformer.from_crs(4326, int(zone), always_xy=True).transform(lon[sel], lat[sel])
        mat = material_map(x, y, zone_epsg=int(zone), seed=seed)
        sub = _noise_at(x, y, cell=1500.0, seed=seed, salt=900_001)
        hole = _noise_at(x, y, cell=5000.0, seed=seed, salt=900_002) > 0.55
        codes = np.empty(len(x), np.int64)
        for m, options in enumerate(kind.codes):
            on = mat == m
            pick = np.clip(((sub[on] + 1.0) / 2.0 * len(options)).astype(int), 0, len(options) - 1)
            codes[on] = np.asarray(options)[pick]
        codes[hole] = kind.nodata
        out[sel] = codes
    return out


def synthesize_label_product(
    out_url: str,
    *,
    product: str,
    lon: np.ndarray,
    lat: np.ndarray,
    seed: int,
    margin_m: float = 3000.0,
    region_m: float = 60000.0,
    storage_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write a synthetic label product covering the given places (patch centres) as a folder of GeoTIFFs.

    Args:
        out_url: folder for the rasters (``<product>-<n>.tif``).
        product: ``corine``, ``cdl`` or ``nlcd``.
        lon, lat: places to cover (e.g. the cube's ``patch_lon``/``patch_lat``).
        seed: the synthetic archive's seed (its land cover follows from it).
        margin_m: extra border around the places.
        region_m: side of the product-grid squares written as one raster each.
        storage_options: fsspec options for ``out_url`` (no secrets).

    Returns:
        A summary: product, CRS, pixel size, rasters written with their shapes.

    Raises:
        ValueError: unknown product, or no places.
    """
    import pyproj
    from rasterio.io import MemoryFile
    from rasterio.transform import from_origin

    from spectralearth.platform.storage import atomic_write_bytes, join

    if product not in LABEL_PRODUCTS:
        raise ValueError(f"unknown label product {product!r}: use one of {', '.join(LABEL_PRODUCTS)}")
    lon, lat = np.asarray(lon, float), np.asarray(lat, float)
    if not len(lon):
        raise ValueError("no places to cover (the cube has no patches)")
    kind = LABEL_PRODUCTS[product]
    fwd = pyproj.Transformer.from_crs(4326, kind.epsg, always_xy=True)
    inv = pyproj.Transformer.from_crs(kind.epsg, 4326, always_xy=True)
    px, py = fwd.transform(lon, lat)
    cells = np.column_stack([np.floor(px / region_m), np.floor(py / region_m)]).astype(np.int64)
    rasters = []
    res = kind.pixel_m
    for n, cell in enumerate(np.unique(cells, axis=0)):
        sel = np.all(cells == cell, axis=1)
        x0 = np.floor((px[sel].min() - margin_m) / res) * res
        x1 = np.ceil((px[sel].max() + margin_m) / res) * res
        y0 = np.floor((py[sel].min() - margin_m) / res) * res
        y1 = np.ceil((py[sel].max() + margin_m) / res) * res
        w, h = int(round((x1 - x0) / res)), int(round((y1 - y0) / res))
        xs = x0 + (np.arange(w) + 0.5) * res
        ys = y1 - (np.arange(h) + 0.5) * res
        gx, gy = np.meshgrid(xs, ys)
        glon, glat = inv.transform(gx.ravel(), gy.ravel())
        data = _codes_at(np.asarray(glon), np.asarray(glat), kind, seed).reshape(h, w).astype(kind.dtype)
        profile = dict(driver="GTiff", width=w, height=h, count=1, dtype=kind.dtype, crs=f"EPSG:{kind.epsg}",
                       transform=from_origin(x0, y1, res, res), nodata=kind.nodata, tiled=True, blockxsize=256,
                       blockysize=256, compress="deflate")
        with MemoryFile() as mem:
            with mem.open(**profile) as ds:
                ds.write(data, 1)
                ds.update_tags(product=f"synthetic {product}", nomenclature=kind.nomenclature)
            name = f"{product}-{n:03d}.tif"
            atomic_write_bytes(join(out_url, name), mem.read(), storage_options)
        rasters.append({"name": name, "shape": [h, w], "bounds": [float(x0), float(y0), float(x1), float(y1)]})
    return {"product": product, "epsg": kind.epsg, "pixel_m": res, "nomenclature": kind.nomenclature, "rasters": rasters}
