"""GPU-side normalization: int16 travels host -> device, float32 is made on the device.

    norm = BandNormalize.from_cube("s3://bucket/cube").to("cuda")
    x = norm(batch["image"].to("cuda", non_blocking=True))   # float32, same shape

Reflectance x 10^4 is clipped to ``[0, 10000]`` first (nodata -32768 becomes 0),
then standardised per band with the cube's ``band_mean`` / ``band_std``. Band is
the third axis from the end, so ``(bands, y, x)``, ``(batch, bands, y, x)`` and
pair batches ``(batch, 2, bands, y, x)`` all work.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["BandNormalize"]


class BandNormalize(nn.Module):
    """Clip to ``[low, high]``, then ``(x - mean) / std`` per band, in float32.

    Args:
        mean: per-band mean (reflectance x 10^4).
        std: per-band standard deviation (must be > 0).
        low, high: clip range applied before standardising.
    """

    def __init__(self, mean: Sequence[float] | np.ndarray, std: Sequence[float] | np.ndarray, *,
                 low: float = 0.0, high: float = 10000.0) -> None:
        super().__init__()
        mean_t = torch.as_tensor(np.asarray(mean, np.float32))
        std_t = torch.as_tensor(np.asarray(std, np.float32))
        if mean_t.ndim != 1 or mean_t.shape != std_t.shape:
            raise ValueError(f"mean and std must be 1-D of equal length, got {tuple(mean_t.shape)} and {tuple(std_t.shape)}")
        if not torch.all(torch.isfinite(mean_t)) or not torch.all(std_t > 0):
            raise ValueError("band statistics must be finite with std > 0")
        self.low = float(low)
        self.high = float(high)
        self.register_buffer("mean", mean_t.view(-1, 1, 1))
        self.register_buffer("inv_std", (1.0 / std_t).view(-1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim < 3 or x.shape[-3] != self.mean.shape[0]:
            raise ValueError(f"expected (..., {self.mean.shape[0]}, y, x), got {tuple(x.shape)}")
        out = x.to(torch.float32).clamp_(self.low, self.high)
        return out.sub_(self.mean).mul_(self.inv_std)

    @classmethod
    def from_cube(cls, cube_url: str, *, bands: Sequence[int] | None = None,
                  storage_options: Mapping[str, Any] | None = None) -> BandNormalize:
        """Build from a cube's ``band_mean`` / ``band_std`` (``bands``: indices to keep)."""
        from spectralearth.platform.cube import open_cube

        group = open_cube(cube_url, storage_options=storage_options)
        mean = np.asarray(group["band_mean"][:], np.float32)
        std = np.asarray(group["band_std"][:], np.float32)
        if bands is not None:
            sel = np.asarray(bands, np.int64)
            mean, std = mean[sel], std[sel]
        return cls(mean, std)
