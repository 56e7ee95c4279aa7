"""Per-band statistics over valid pixels, computed in pieces and merged exactly.

Each extraction task keeps, per band, the number of valid pixels (≠ nodata), their
sum and their sum of squares as exact integers; tasks are merged by adding them, so
the merge is exact and independent of the order and grouping of the tasks. The
mean and the (population, ddof=0) standard deviation are computed once at the end.

Why integers and not a Chan/Welford merge of floating-point means: reflectance is
int16, so the moments of any number of pixels are integers, and Python integers
cannot overflow. Sizes that matter: SpectralEarth-MM holds ~25 M views of
128 × 128 px, i.e. up to 4.1e11 valid pixels per band, whose sum of squares reaches
4.4e20 (> 2**63: int64 would overflow, float64 would round) and whose ``n·Σx² −
(Σx)²`` reaches 1.8e32. Within one block numpy sums in float64, exact as long as
every partial sum stays below 2**53, which :func:`moments_of` guarantees by
summing at most 2**22 pixels per band at a time.

The final division is done on the exact integers too (``Fraction``), so the mean
and standard deviation are correctly rounded whatever the count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

__all__ = ["BandMoments", "merge_moments", "moments_of"]

_BLOCK_PX = 2**22
"""Pixels per band summed at once in float64: 2**22 · (2**15)**2 = 2**52 < 2**53 (exact)."""


@dataclass(frozen=True)
class BandMoments:
    """Count, sum and sum of squares of the valid pixels of each band (exact integers)."""

    count: tuple[int, ...]
    """Valid pixels per band."""
    total: tuple[int, ...]
    """Sum of the valid values per band."""
    total_sq: tuple[int, ...]
    """Sum of the squared valid values per band."""

    def __post_init__(self) -> None:
        if not len(self.count) == len(self.total) == len(self.total_sq):
            raise ValueError(f"moments need as many counts, sums and sums of squares ({len(self.count)}, {len(self.total)}, {len(self.total_sq)})")
        for name in ("count", "total", "total_sq"):  # always plain Python integers (numpy ones would wrap)
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))

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
        """Mean and population standard deviation per band (NaN where a band has no valid pixel).

        Both come from the exact integers: the mean is ``Σx / n`` and the variance
        ``(n·Σx² − (Σx)²) / n²``, each rounded once to float64; the standard deviation
        is the square root of that (within one ulp of the exact value).
        """
        mean = np.full(self.n_bands, np.nan)
        std = np.full(self.n_bands, np.nan)
        for b, (n, s, q) in enumerate(zip(self.count, self.total, self.total_sq)):
            if n < 0:
                raise ValueError(f"band {b}: negative pixel count {n}")
            if n:
                num = n * q - s * s
                if num < 0:
                    raise ValueError(f"band {b}: inconsistent moments (n·Σx² < (Σx)²)")
                mean[b] = s / n  # int / int is correctly rounded
                std[b] = math.sqrt(Fraction(num, n * n))
        return mean, std

    def to_json(self) -> dict[str, Any]:
        """JSON form (integers as strings: they may exceed 2**53)."""
        return {k: [str(v) for v in getattr(self, k)] for k in ("count", "total", "total_sq")}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> BandMoments:
        """Inverse of :meth:`to_json`."""
        return cls(*(tuple(int(v) for v in d[k]) for k in ("count", "total", "total_sq")))


def moments_of(data: np.ndarray, *, nodata: int = -32768) -> BandMoments:
    """Moments of one block ``(band, ...)`` of integer pixels (int16 range), ignoring ``nodata``.

    Any block size: the pixels of each band are summed in float64 pieces of at most
    2**22, each exact, and the pieces are added as Python integers.
    """
    data = np.asarray(data)
    if data.ndim < 1:
        raise ValueError("moments_of needs an array of shape (band, ...)")
    if data.dtype.kind not in "iub":
        raise TypeError(f"moments_of needs integer pixels, got {data.dtype}")
    flat = data.reshape(data.shape[0], -1)
    if flat.size and (int(flat.min()) < -(2**15) or int(flat.max()) > 2**15):
        raise ValueError("moments_of supports values within the int16 range")
    n_bands = flat.shape[0]
    count, total, total_sq = [0] * n_bands, [0] * n_bands, [0] * n_bands
    for i in range(0, max(flat.shape[1], 1), _BLOCK_PX):
        part = flat[:, i : i + _BLOCK_PX]
        valid = part != nodata
        vals = np.where(valid, part, 0).astype(np.float64)
        c = valid.sum(axis=1)
        s = vals.sum(axis=1)
        q = np.einsum("ij,ij->i", vals, vals)
        for b in range(n_bands):
            count[b] += int(c[b])
            total[b] += int(s[b])
            total_sq[b] += int(q[b])
    return BandMoments(tuple(count), tuple(total), tuple(total_sq))


def merge_moments(parts: Iterable[BandMoments], n_bands: int) -> BandMoments:
    """Sum moments (exact; any order or grouping gives the same result).

    The parts are summed column-wise over numpy object arrays (Python integers, so
    nothing can overflow), a few thousand at a time to bound memory.
    """
    acc = np.zeros((3, n_bands), dtype=object)
    acc[:] = 0
    batch: list[tuple[tuple[int, ...], ...]] = []

    def flush() -> None:
        if batch:
            arr = np.array(batch, dtype=object).reshape(len(batch), 3, n_bands)
            acc[:] = acc + arr.sum(axis=0)
            batch.clear()

    for p in parts:
        if p.n_bands != n_bands:
            raise ValueError(f"cannot merge moments of {p.n_bands} bands into {n_bands}")
        batch.append((p.count, p.total, p.total_sq))
        if len(batch) >= 4096:
            flush()
    flush()
    return BandMoments(*(tuple(int(v) for v in acc[k]) for k in range(3)))
