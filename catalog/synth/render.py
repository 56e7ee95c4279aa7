"""Pixels of one tile: land-cover abundances, masks, spectra in row blocks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .fields import fractal_noise
from .plan import PIXEL_M, TileSpec
from .spectra import MATERIALS, NODATA_BANDS, band_matrix, cloud_spectrum, noise_sigma

__all__ = ["Scene", "scene_layers", "spectral_rows", "NODATA", "MASKS"]

NODATA = -32768
MASKS = ("CLOUD", "CLOUDSHADOW", "HAZE", "CIRRUS", "SNOW")
_BIAS = np.array([1.0, 0.2, 0.2, -0.3, -0.9, -1.6, -4.0], dtype=np.float32)


@dataclass(frozen=True)
class Scene:
    """The 2D layers of a tile (on the grid, or every ``stride``-th pixel of it)."""

    inside: np.ndarray
    """True inside the swath."""
    abundance: np.ndarray
    """(materials, rows, cols) float32 fractions summing to 1."""
    brightness: np.ndarray
    """Illumination factor (terrain), float32."""
    cloud_alpha: np.ndarray
    """Cloud opacity 0..1 (0 = clear)."""
    masks: dict
    """CLOUD, CLOUDSHADOW, HAZE, CIRRUS, SNOW as uint8 0/1."""
    classes: np.ndarray
    """1 land, 2 water, 3 outside the swath."""

    def cover(self) -> dict[str, float]:
        """Percent of the swath flagged by each mask, plus water."""
        n = max(1, int(self.inside.sum()))
        out = {k: 100.0 * float(v.sum()) / n for k, v in self.masks.items()}
        out["WATER"] = 100.0 * float((self.classes == 2).sum()) / n
        return out


def _season(spec: TileSpec) -> tuple[float, float]:
    """(greenness -1..1, winter 0..1) from latitude and day of year."""
    doy = spec.start.timetuple().tm_yday
    phase = math.cos(2 * math.pi * (doy - 196) / 365.0)  # +1 mid-July
    if spec.center_lat < 0:
        phase = -phase
    lat = abs(spec.center_lat)
    strength = min(1.0, max(0.0, (lat - 15.0) / 30.0))
    winter = max(0.0, -phase) * min(1.0, max(0.0, (lat - 38.0) / 22.0))
    return phase * strength, winter


def _quantile_mask(field: np.ndarray, inside: np.ndarray, percent: float) -> tuple[np.ndarray, float]:
    if percent <= 0.0 or not inside.any():
        return np.zeros(field.shape, dtype=bool), math.inf
    t = float(np.quantile(field[inside], 1.0 - percent / 100.0))
    return (field > t) & inside, t


def scene_layers(spec: TileSpec, *, stride: int = 1) -> Scene:
    """Compute the 2D layers of ``spec`` (``stride`` > 1: a cheap subsampled preview)."""
    a, _, c, _, e, f = spec.transform
    xs = c + a * (np.arange(0, spec.width, stride) + 0.5)
    ys = f + e * (np.arange(0, spec.height, stride) + 0.5)
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = spec.swath_xy
    cx, cy = (x0 + x2) / 2, (y0 + y2) / 2
    wm, lm = math.hypot(x1 - x0, y1 - y0), math.hypot(x3 - x0, y3 - y0)
    fx, fy = (x3 - x0) / lm, (y3 - y0) / lm
    px, py = (x1 - x0) / wm, (y1 - y0) / wm
    dx = xs[None, :] - cx
    dy = ys[:, None] - cy
    u = dx * fx + dy * fy
    v = dx * px + dy * py
    inside = (np.abs(u) <= lm / 2) & (np.abs(v) <= wm / 2)

    seed = spec.world_seed
    zone = spec.epsg
    green, winter = _season(spec)
    logits = []
    for m, _name in enumerate(MATERIALS):
        n = fractal_noise(xs, ys, cells_m=(24000.0, 4800.0, 1200.0, 300.0, 90.0), seed=seed, salt=zone * 8 + m)
        logits.append(_BIAS[m] + 3.2 * n)
    logits = np.stack(logits)
    logits[0] += 1.2 * green
    logits[1] -= 1.2 * green
    logits[6] += 7.0 * winter
    logits *= 2.2
    logits -= logits.max(axis=0, keepdims=True)
    ab = np.exp(logits)
    ab /= ab.sum(axis=0, keepdims=True)
    ab = ab.astype(np.float32)
    bright = (1.0 + 0.10 * fractal_noise(xs, ys, cells_m=(900.0, 240.0), seed=seed, salt=zone * 8 + 7)).astype(np.float32)

    ps = spec.pixel_seed
    cloud_f = fractal_noise(xs, ys, cells_m=(6000.0, 2000.0, 600.0, 180.0), seed=ps, salt=1)
    cloud, t = _quantile_mask(cloud_f, inside, spec.cloud_cover)
    alpha = np.where(cloud, np.clip(0.35 + (cloud_f - t) / 0.12, 0.0, 1.0), 0.0).astype(np.float32)
    shift = int(round(min(60.0, 1800.0 / max(math.tan(math.radians(max(spec.sun_elevation_deg, 15.0))), 0.3)) / PIXEL_M / stride))
    ang = math.radians(spec.sun_azimuth_deg + 180.0)
    sx, sy = int(round(shift * math.sin(ang))), int(round(-shift * math.cos(ang)))
    shadow = np.zeros_like(cloud)
    h, w = cloud.shape
    src = cloud[max(0, -sy): h - max(0, sy), max(0, -sx): w - max(0, sx)]
    shadow[max(0, sy): max(0, sy) + src.shape[0], max(0, sx): max(0, sx) + src.shape[1]] = src
    shadow &= inside & ~cloud
    haze, _ = _quantile_mask(fractal_noise(xs, ys, cells_m=(9000.0, 3000.0), seed=ps, salt=2), inside, spec.haze_cover)
    haze &= ~cloud
    cirrus, _ = _quantile_mask(fractal_noise(xs, ys, cells_m=(12000.0, 3000.0), seed=ps, salt=3), inside, spec.cirrus_cover)
    snow = (ab[6] > 0.5) & inside & ~cloud
    # 1 land, 2 water, 3 background; 0 where clouds hide which it is (as in real products)
    classes = np.where(inside, np.where(cloud, 0, np.where(ab[4] > 0.5, 2, 1)), 3).astype(np.uint8)
    masks = {
        "CLOUD": cloud, "CLOUDSHADOW": shadow, "HAZE": haze, "CIRRUS": cirrus, "SNOW": snow,
    }
    masks = {k: v.astype(np.uint8) for k, v in masks.items()}
    return Scene(inside=inside, abundance=ab, brightness=bright, cloud_alpha=alpha, masks=masks, classes=classes)


def spectral_rows(
    spec: TileSpec, scene: Scene, wl: np.ndarray, fwhm: np.ndarray, r0: int, r1: int
) -> np.ndarray:
    """Reflectance x 10^4 as int16 (bands, r1 - r0, cols) for grid rows r0..r1."""
    rng = np.random.default_rng([spec.pixel_seed, r0])
    em = band_matrix(wl, fwhm, water_vapour=spec.water_vapour)  # (M, B)
    ab = scene.abundance[:, r0:r1]  # (M, h, w)
    m, h, w = ab.shape
    refl = ab.reshape(m, -1).T @ em  # (h*w, B)
    refl *= scene.brightness[r0:r1].reshape(-1, 1)
    haze = scene.masks["HAZE"][r0:r1].reshape(-1).astype(bool)
    if haze.any():
        refl[haze] += (900.0 * (wl / 450.0) ** -2.5).astype(np.float32)
    cirrus = scene.masks["CIRRUS"][r0:r1].reshape(-1).astype(bool)
    if cirrus.any():
        refl[cirrus] += 250.0
    shadow = scene.masks["CLOUDSHADOW"][r0:r1].reshape(-1).astype(bool)
    if shadow.any():
        refl[shadow] *= 0.35
    alpha = scene.cloud_alpha[r0:r1].reshape(-1)
    cl = alpha > 0
    if cl.any():
        cs = cloud_spectrum(wl, fwhm, water_vapour=spec.water_vapour)
        a = alpha[cl][:, None]
        refl[cl] = (1.0 - a) * refl[cl] + a * cs[None, :]
    sigma = noise_sigma(wl, refl)
    refl += sigma * rng.standard_normal(refl.shape, dtype=np.float32)
    np.clip(refl, -150.0, 16000.0, out=refl)
    out = np.rint(refl).astype(np.int16)
    out[~scene.inside[r0:r1].reshape(-1)] = NODATA
    out[:, list(NODATA_BANDS)] = NODATA
    return out.T.reshape(-1, h, w)
