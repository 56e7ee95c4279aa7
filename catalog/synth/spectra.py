"""Material spectra, band response, residual atmosphere and sensor noise.

Spectra are smooth analytic curves on a 1 nm grid (reflectance 0..1), convolved
with each band's Gaussian spectral response, so a product's wavelength jitter
really changes its values.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from importlib import resources

import numpy as np

__all__ = [
    "MATERIALS",
    "NODATA_BANDS",
    "band_table",
    "product_bands",
    "band_matrix",
    "noise_sigma",
    "cloud_spectrum",
]

MATERIALS = ("vegetation", "dry_vegetation", "soil", "dark_soil", "water", "impervious", "snow")
"""Endmembers, in the order of the abundance axis."""
NODATA_BANDS = tuple(range(129, 135))
"""0-based indices of L2A bands 130-135 (~1330-1390 nm), empty in delivered products."""

_FINE = np.arange(350.0, 2551.0, 1.0)


@lru_cache(maxsize=1)
def band_table() -> tuple[np.ndarray, np.ndarray]:
    """Centre wavelength and FWHM (nm) of the 224 L2A bands (package table)."""
    ref = resources.files("spectralearth.catalog.enmap").joinpath("data/enmap_l2a_bands.csv")
    with ref.open("r") as f:
        rows = list(csv.DictReader(f))
    wl = np.array([float(r["wavelength_nm"]) for r in rows])
    fwhm = np.array([float(r["fwhm_nm"]) for r in rows])
    return wl, fwhm


def product_bands(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Wavelengths/FWHM of one product: the table plus a calibration jitter within +-0.45 nm."""
    wl, fwhm = band_table()
    rng = np.random.default_rng([seed, 0xBA4D])
    vnir = wl < 1000.0
    shift = np.where(vnir, rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3))
    jit = np.clip(shift + rng.normal(0.0, 0.04, wl.size), -0.45, 0.45)
    fw = fwhm * (1.0 + rng.uniform(-0.01, 0.01))
    return np.round(wl + jit, 3), np.round(fw, 4)


def _g(x: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((x - mu) / sigma) ** 2)


def _sig(x: np.ndarray, mu: float, width: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(x - mu) / width))


def _leaf_water(x: np.ndarray) -> np.ndarray:
    """Optical depth of leaf/soil liquid water (relative)."""
    return (
        0.05 * _g(x, 975, 35) + 0.12 * _g(x, 1200, 50) + 2.0 * _g(x, 1450, 70)
        + 0.45 * _sig(x, 1500, 60) + 2.6 * _g(x, 1940, 80) + 0.9 * _sig(x, 1900, 80)
        + 0.9 * _sig(x, 2350, 60)
    )


@lru_cache(maxsize=1)
def _fine_spectra() -> np.ndarray:
    """(materials, 2201) reflectance on the 1 nm grid."""
    x = _FINE
    w = _leaf_water(x)
    veg_vis = 0.03 + 0.055 * _g(x, 552, 35) - 0.015 * _g(x, 675, 20)
    veg = veg_vis + (0.47 - veg_vis) * _sig(x, 718, 13)
    veg = veg * np.exp(-0.9 * w) + 0.002
    dry = (0.06 + 0.30 * _sig(x, 700, 180)) * np.exp(-0.35 * w) - 0.05 * _g(x, 2100, 40) - 0.02 * _g(x, 1730, 25)
    soil = 0.07 + 0.33 * (1 - np.exp(-(x - 350) / 420.0)) + 0.06 * _sig(x, 1300, 300)
    soil = soil * np.exp(-0.15 * w) - 0.03 * _g(x, 900, 60) - 0.06 * _g(x, 2205, 25)
    dark = 0.55 * soil * (0.8 + 0.2 * _sig(x, 1000, 300))
    water = 0.012 + 0.045 * _g(x, 560, 60) + 0.02 * _g(x, 450, 50) + 0.008 * _g(x, 700, 25)
    water = water * (1 - 0.85 * _sig(x, 760, 30)) + 0.003
    urban = 0.12 + 0.08 * _sig(x, 600, 150) + 0.03 * _sig(x, 1500, 200) - 0.03 * _g(x, 1940, 60) - 0.02 * _g(x, 2300, 40)
    ice = 0.6 * _g(x, 1030, 30) + 1.1 * _g(x, 1250, 45) + 4.0 * _g(x, 1500, 60) + 2.0 * _sig(x, 1450, 30) + 3.0 * _g(x, 2000, 80)
    snow = 0.96 * np.exp(-0.22 * ice) * (1 - 0.15 * _sig(x, 900, 100))
    out = np.stack([veg, dry, soil, dark, water, urban, snow])
    return np.clip(out, 0.001, 1.0)


def _atmosphere(x: np.ndarray, wv: float) -> np.ndarray:
    """Multiplicative residual of imperfect water-vapour/O2 correction."""
    return 1.0 - (
        0.025 * _g(x, 762, 3)
        + wv * (0.05 * _g(x, 940, 22) + 0.04 * _g(x, 1135, 25) + 0.55 * _g(x, 1390, 45) + 0.6 * _g(x, 1880, 55))
    )


def _srf(wl: np.ndarray, fwhm: np.ndarray) -> np.ndarray:
    sigma = fwhm / 2.3548
    m = np.exp(-0.5 * ((_FINE[None, :] - wl[:, None]) / sigma[:, None]) ** 2)
    return m / m.sum(axis=1, keepdims=True)


def band_matrix(wl: np.ndarray, fwhm: np.ndarray, *, water_vapour: float) -> np.ndarray:
    """Endmember reflectance x 10^4 per band: (materials, bands) float32."""
    fine = _fine_spectra() * _atmosphere(_FINE, water_vapour)[None, :]
    return (fine @ _srf(wl, fwhm).T * 1e4).astype(np.float32)


def cloud_spectrum(wl: np.ndarray, fwhm: np.ndarray, *, water_vapour: float) -> np.ndarray:
    """A bright, nearly flat cloud-top spectrum (x 10^4), slightly blue, with ice/water dips."""
    x = _FINE
    c = 0.78 + 0.05 * np.exp(-(x - 350) / 300.0) - 0.25 * _sig(x, 1400, 150) - 0.2 * _g(x, 2000, 100)
    c = c * _atmosphere(x, water_vapour)
    return (_srf(wl, fwhm) @ c * 1e4).astype(np.float32)


def noise_sigma(wl: np.ndarray, signal: np.ndarray) -> np.ndarray:
    """Noise standard deviation (x 10^4) for a signal: band-dependent SNR, SWIR noisier.

    Args:
        wl: band centres (nm), shape (bands,).
        signal: reflectance x 10^4, shape (..., bands).
    """
    snr = np.where(wl < 1000.0, 420.0 * _g(wl, 600, 260) + 80.0, 190.0 * _g(wl, 1650, 450) + 60.0)
    absorb = 1.0 + 3.0 * (_g(wl, 1400, 50) + _g(wl, 1900, 60))
    floor = np.where(wl < 1000.0, 6.0, 11.0) * absorb
    s = signal / snr
    return np.sqrt(s * s + (floor * floor)).astype(np.float32)
