"""Small synthetic patch cubes with realistic spectra, for tests, benchmarks and examples.

Pixels come from the synthetic archive's generator (:mod:`spectralearth.catalog.synth`):
land-cover abundances from smooth fractal fields (the same field for every view
of a patch: land cover belongs to the place), endmember spectra convolved with
each acquisition's band responses, per-date water vapour and greenness, and
band-dependent sensor noise. Compression ratio and decode speed therefore
resemble real EnMAP patches, unlike random or constant test data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from spectralearth.catalog.synth.fields import fractal_noise
from spectralearth.catalog.synth.spectra import MATERIALS, band_matrix, noise_sigma, product_bands
from spectralearth.platform.cube import CubeSpec, write_cube

__all__ = ["SPECTRALEARTH_BANDS", "SampleCube", "quick_view", "sample_layout", "sample_view", "write_sample_cube"]

SPECTRALEARTH_BANDS = tuple([*range(1, 127), *range(142, 161), *range(168, 225)])
"""The 202 L2A band numbers (1-based) that SpectralEarth keeps."""

_BIAS = np.array([1.0, 0.2, 0.2, -0.3, -0.9, -1.6, -4.0], dtype=np.float32)
_PIXEL_M = 30.0


@dataclass(frozen=True)
class SampleCube:
    """Shape and randomness of a synthetic cube."""

    n_patches: int = 16
    """Number of patches (locations)."""
    multi_date_fraction: float = 0.4
    """Share of patches with more than one view."""
    max_views: int = 4
    """Most views of one patch."""
    bands: tuple[int, ...] = SPECTRALEARTH_BANDS
    """1-based L2A band numbers stored."""
    patch_px: int = 128
    """Patch side in pixels."""
    seed: int = 0
    """Seed of everything."""
    quick: bool = False
    """Cheap pixels (:func:`quick_view`: three smooth spectra mixed by smooth fields) for tests needing many views fast."""


def sample_layout(cfg: SampleCube) -> tuple[np.ndarray, np.ndarray]:
    """``(view_patch, view_time)`` of the cube: views per patch and their acquisition times."""
    rng = np.random.default_rng([cfg.seed, 0x1A7])
    multi = rng.random(cfg.n_patches) < cfg.multi_date_fraction
    counts = np.where(multi, rng.integers(2, max(cfg.max_views, 2) + 1, cfg.n_patches), 1)
    view_patch = np.repeat(np.arange(cfg.n_patches, dtype=np.int64), counts)
    base = np.datetime64("2022-04-01T10:00:00", "us")
    days = rng.integers(0, 900, view_patch.size).astype("timedelta64[D]")
    secs = rng.integers(0, 1800, view_patch.size).astype("timedelta64[s]")
    view_time = base + days.astype("timedelta64[us]") + secs.astype("timedelta64[us]")
    return view_patch, view_time


def _patch_origin(patch: int) -> tuple[float, float]:
    return 300015.0 + (patch % 64) * 9000.0, 5400015.0 - (patch // 64) * 9000.0


@lru_cache(maxsize=64)
def _base_logits(seed: int, patch: int, px: int) -> np.ndarray:
    """Land-cover logits of a patch (shared by its views) and its brightness field."""
    x0, y0 = _patch_origin(patch)
    xs = x0 + (np.arange(px) + 0.5) * _PIXEL_M
    ys = y0 - (np.arange(px) + 0.5) * _PIXEL_M
    logits = np.stack([
        _BIAS[m] + 3.2 * fractal_noise(xs, ys, cells_m=(4800.0, 1200.0, 300.0, 90.0), seed=seed, salt=m)
        for m in range(len(MATERIALS))
    ] + [1.0 + 0.1 * fractal_noise(xs, ys, cells_m=(900.0, 240.0), seed=seed, salt=99)])
    return logits.astype(np.float32)


@lru_cache(maxsize=128)
def _endmembers(calibration: int, vapour_level: int, bands: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(band centres, endmember matrix) of one calibration state and water-vapour level."""
    wl_all, fwhm_all = product_bands(calibration)
    sel = np.asarray(bands) - 1
    wl = wl_all[sel]
    return wl, band_matrix(wl, fwhm_all[sel], water_vapour=0.6 + 0.2 * vapour_level)


def sample_view(cfg: SampleCube, *, view: int, patch: int) -> np.ndarray:
    """Reflectance x 10^4 of one view, ``(bands, px, px)`` int16."""
    rng = np.random.default_rng([cfg.seed, 0x51E, view])
    green = rng.uniform(-1.0, 1.0)
    base = _base_logits(cfg.seed, patch, cfg.patch_px)
    logits = base[: len(MATERIALS)].copy()
    logits[0] += 1.2 * green
    logits[1] -= 1.2 * green
    logits *= 2.2
    logits -= logits.max(axis=0, keepdims=True)
    ab = np.exp(logits)
    ab /= ab.sum(axis=0, keepdims=True)
    wl, em = _endmembers(int(rng.integers(4)), int(rng.integers(5)), tuple(cfg.bands))
    refl = ab.reshape(len(MATERIALS), -1).T @ em
    refl *= base[-1].reshape(-1, 1)
    refl += noise_sigma(wl, refl) * rng.standard_normal(refl.shape, dtype=np.float32)
    np.clip(refl, -150.0, 16000.0, out=refl)
    return np.rint(refl).astype(np.int16).T.reshape(len(wl), cfg.patch_px, cfg.patch_px)


def quick_view(cfg: SampleCube, *, view: int, patch: int, wavelength_nm: np.ndarray) -> np.ndarray:
    """Cheap reflectance x 10^4 of one view, ``(bands, px, px)`` int16: vegetation, soil and water
    spectra mixed by smooth per-patch fields, a per-view brightness, and (every third view) a
    nodata triangle in the upper-left corner, like a swath edge."""
    wl = np.asarray(wavelength_nm, np.float64)
    rng = np.random.default_rng([cfg.seed, 0x0C1, view])
    veg = 400 + 3600 / (1 + np.exp(-(wl - 720) / 12)) - 2500 * np.exp(-((wl - 1450) / 60) ** 2) - 3000 * np.exp(-((wl - 1940) / 80) ** 2)
    veg = np.maximum(veg, 200) * (wl < 1300) + np.maximum(veg * 0.7, 200) * (wl >= 1300)
    soil = 800 + 2.2 * (wl - 400)
    soil = np.minimum(soil, 4200)
    water = 600 * np.exp(-(wl - 450) / 180)
    em = np.stack([veg, soil, water])
    px = cfg.patch_px
    yy, xx = np.mgrid[0:px, 0:px] / px
    prng = np.random.default_rng([cfg.seed, 0x9A7, patch])
    f = [np.sin(2 * np.pi * (prng.uniform(0.5, 2.5) * xx + prng.uniform(0.5, 2.5) * yy) + prng.uniform(0, 6.3)) for _ in range(3)]
    ab = np.exp(2.0 * np.stack(f))
    ab /= ab.sum(axis=0, keepdims=True)
    refl = (em.T.astype(np.float32) @ ab.reshape(3, -1).astype(np.float32)).reshape(len(wl), px, px)
    refl *= rng.uniform(0.8, 1.2)
    refl += 30 * rng.standard_normal(refl.shape, dtype=np.float32)
    out = np.clip(np.rint(refl), -150, 16000).astype(np.int16)
    if view % 3 == 0:
        out[:, (yy + xx) < 0.35] = -32768
    return out


def write_sample_cube(
    url: str,
    cfg: SampleCube = SampleCube(),
    *,
    storage_options: Mapping[str, Any] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> CubeSpec:
    """Write and commit a synthetic cube at ``url`` (``attrs``: more group attributes); returns its :class:`CubeSpec`."""
    view_patch, view_time = sample_layout(cfg)
    wl, fwhm = product_bands(cfg.seed)
    sel = np.asarray(cfg.bands) - 1
    spec = CubeSpec(
        n_views=int(view_patch.size),
        n_patches=cfg.n_patches,
        wavelength_nm=tuple(float(w) for w in wl[sel]),
        fwhm_nm=tuple(float(f) for f in fwhm[sel]),
        band_numbers=tuple(int(b) for b in cfg.bands),
        patch_px=cfg.patch_px,
    )
    origins = np.array([_patch_origin(p) for p in range(cfg.n_patches)]).reshape(-1, 2)
    write_cube(
        url,
        (lambda v: quick_view(cfg, view=v, patch=int(view_patch[v]), wavelength_nm=wl[sel])) if cfg.quick
        else (lambda v: sample_view(cfg, view=v, patch=int(view_patch[v]))),
        spec=spec,
        view_patch=view_patch,
        view_time=view_time,
        view_tile=np.arange(view_patch.size, dtype=np.int32) % 97,
        patch_crs=np.full(cfg.n_patches, 32632, np.int32),
        patch_x0=origins[:, 0] - 15.0,
        patch_y0=origins[:, 1] + 15.0,
        attrs={"source": "spectralearth.platform.samplecube", "seed": cfg.seed, **dict(attrs or {})},
        storage_options=storage_options,
    )
    return spec
