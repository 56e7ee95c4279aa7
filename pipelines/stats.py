"""Per-band statistics over valid pixels, computed in pieces and merged exactly.

Each extraction task keeps, per band, the number of valid pixels (≠ nodata), their
sum and their sum of squares as integers (int64 within a task; Python integers when
merged), so the merge is exact and independent of the order of the tasks; the mean
and the (population, ddof=0) standard deviation are computed once at the end.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["BandMoments", "merge_moments", "moments_of"]


@dataclass(frozen=True)
class BandMoments:
    """Count, sum and sum of squares of the valid pixels of each band (exact integers)."""

    count: tuple[int, ...]
    """Valid pixels per band."""
    total: tuple[int, ...]
    """Sum of the valid values per band."""
    total_sq: tuple[int, ...]
    """Sum of the squared valid values per band."""

    @classmethod
    def zeros(cls, n_bands: int) -> BandMoments:
        """Moments of nothing."""
        z = (0,) * n_bands
        return cls(z, z, z)

    @property
    def n_bands(self) -> int:
        return len(self.count)

    def __add__(self, other: BandMoments) -> BandMoments:
        if other.n_bands != self.n_bands:
            raise ValueError(f"cannot merge moments of {self.n_bands} and {other.n_bands} bands")
        return BandMoments(
            tuple(a + b for a, b in zip(self.count, other.count)),
            tuple(a + b for a, b in zip(self.total, other.total)),
            tuple(a + b for a, b in zip(self.total_sq, other.total_sq)),
        )

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and population standard deviation per band (NaN where a band has no valid pixel)."""
        mean = np.full(self.n_bands, np.nan)
        std = np.full(self.n_bands, np.nan)
        for b, (n, s, q) in enumerate(zip(self.count, self.total, self.total_sq)):
            if n:
                mean[b] = s / n
                std[b] = np.sqrt(max(0, n * q - s * s)) / n  # exact integer numerator
        return mean, std

    def to_json(self) -> dict[str, Any]:
        """JSON form (integers as strings: they may exceed 2**53)."""
        return {k: [str(v) for v in getattr(self, k)] for k in ("count", "total", "total_sq")}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> BandMoments:
        """Inverse of :meth:`to_json`."""
        return cls(*(tuple(int(v) for v in d[k]) for k in ("count", "total", "total_sq")))


def moments_of(data: np.ndarray, *, nodata: int = -32768) -> BandMoments:
    """Moments of one block ``(band, y, x)`` of integer pixels, ignoring ``nodata``."""
    data = np.asarray(data)
    flat = data.reshape(data.shape[0], -1)
    valid = flat != nodata
    # float64 is exact here: every partial sum of squares of int16 values over one block
    # (< 2**30 * 2**24 pixels) stays below 2**53
    if flat.shape[1] > 2**22:
        raise ValueError("a block for moments_of must hold at most 2**22 pixels per band")
    vals = np.where(valid, flat, 0).astype(np.float64)
    return BandMoments(
        tuple(int(v) for v in valid.sum(axis=1)),
        tuple(int(v) for v in vals.sum(axis=1)),
        tuple(int(v) for v in np.einsum("ij,ij->i", vals, vals)),
    )


def merge_moments(parts: Iterable[BandMoments], n_bands: int) -> BandMoments:
    """Sum moments (exact; any order gives the same result)."""
    out = BandMoments.zeros(n_bands)
    for p in parts:
        out = out + p
    return out
