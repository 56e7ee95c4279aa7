"""Spatially smooth random fields on the map grid (value noise, hashed lattice).

Lattice values are a hash of (seed, salt, lattice cell) in the grid's own map
coordinates, so two tiles in the same UTM zone see the same field where they
overlap: the land cover is a property of the place, not of the acquisition.
"""

from __future__ import annotations

import numpy as np

__all__ = ["value_noise", "fractal_noise"]

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)


def _mix(h: np.ndarray) -> np.ndarray:
    h = (h ^ (h >> np.uint64(30))) * _M2
    h = (h ^ (h >> np.uint64(27))) * _M3
    return h ^ (h >> np.uint64(31))


def _lattice(ix: np.ndarray, iy: np.ndarray, seed: int, salt: int) -> np.ndarray:
    """Uniform [-1, 1) values at lattice points (iy rows x ix cols)."""
    with np.errstate(over="ignore"):
        s = _mix(np.uint64(seed & 0xFFFFFFFFFFFF) * _M1 + np.uint64(salt & 0xFFFFFFFF))
        hx = _mix(ix.astype(np.int64).view(np.uint64) * _M1 ^ s)
        h = _mix(iy.astype(np.int64).view(np.uint64)[:, None] * _M3 ^ hx[None, :])
    return ((h >> np.uint64(11)).astype(np.float64) / float(1 << 53) * 2.0 - 1.0).astype(np.float32)


def _interp(coord: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lattice node indices (absolute range), left-node positions and smoothstep weights."""
    g = coord / cell
    i0 = np.floor(g).astype(np.int64)
    lo = int(i0.min())
    t = (g - i0).astype(np.float32)
    t = t * t * (3.0 - 2.0 * t)
    return np.arange(lo, int(i0.max()) + 2), i0 - lo, t


def value_noise(xs: np.ndarray, ys: np.ndarray, *, cell_m: float, seed: int, salt: int) -> np.ndarray:
    """Value noise in [-1, 1] at grid points (ys rows x xs cols, map metres).

    Separable smoothstep interpolation by gathers (no BLAS: it stays cheap on busy machines).
    """
    ix, jx, tx = _interp(np.asarray(xs, dtype=np.float64), cell_m)
    iy, jy, ty = _interp(np.asarray(ys, dtype=np.float64), cell_m)
    lat = _lattice(ix, iy, seed, salt)
    along_x = lat[:, jx] * (1.0 - tx) + lat[:, jx + 1] * tx  # (lattice rows, cols)
    return along_x[jy] * (1.0 - ty)[:, None] + along_x[jy + 1] * ty[:, None]


def fractal_noise(xs, ys, *, cells_m: tuple[float, ...], seed: int, salt: int) -> np.ndarray:
    """Sum of octaves (amplitude halving), normalised to about [-1, 1].

    Octaves finer than twice the point spacing are skipped (a subsampled preview).
    """
    spacing = abs(float(xs[1] - xs[0])) if len(xs) > 1 else 0.0
    out = None
    total = 0.0
    amp = 1.0
    for k, cell in enumerate(cells_m):
        if cell < 2.0 * spacing and out is not None:
            total += amp
            amp *= 0.5
            continue
        v = value_noise(xs, ys, cell_m=cell, seed=seed, salt=salt * 16 + k) * amp
        out = v if out is None else out + v
        total += amp
        amp *= 0.5
    return out / total
