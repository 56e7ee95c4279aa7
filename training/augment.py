"""Batched augmentations that never touch a spectrum: random resized crops, flips, Gaussian blur.

Every operation is spatial and identical for all bands of a sample, so each pixel's
spectrum stays a (spatially averaged) real spectrum: no colour jitter, no band
dropping, no gain. They run on the training device, on normalised float batches,
and draw from an explicit :class:`torch.Generator` whose state the checkpoint keeps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["CropSpec", "augment"]


@dataclass(frozen=True)
class CropSpec:
    """One kind of view: output side and the range of the crop's area as a share of the patch."""

    size: int
    scale: tuple[float, float] = (0.4, 1.0)
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)


def _uniform(gen: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(C, H, W)``, the same kernel for every band, reflect padding."""
    radius = max(1, min(int(math.ceil(2.0 * sigma)), (min(img.shape[1:]) - 1) // 2 or 1))
    t = torch.arange(-radius, radius + 1, dtype=img.dtype, device=img.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = img.shape[0]
    x = F.pad(img[None], (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return x[0]


def augment(batch: torch.Tensor, spec: CropSpec, gen: torch.Generator) -> torch.Tensor:
    """A random view of every sample of ``batch`` ``(B, C, H, W)`` -> ``(B, C, size, size)``.

    Random resized crop (area share within ``spec.scale``, aspect 3/4..4/3, bilinear),
    horizontal and vertical flips with probability 1/2, Gaussian blur with
    probability ``spec.blur_p``. The random draws come from ``gen`` (a CPU generator)
    so that a resumed run draws the same views.
    """
    b, _, h, w = batch.shape
    area = _uniform(gen, b, *spec.scale) * h * w
    log_ratio = _uniform(gen, b, math.log(3 / 4), math.log(4 / 3))
    ratio = torch.exp(log_ratio)
    ch = torch.sqrt(area / ratio).round().clamp(1, h).long()
    cw = torch.sqrt(area * ratio).round().clamp(1, w).long()
    y0 = (torch.rand(b, generator=gen) * (h - ch + 1)).floor().long()
    x0 = (torch.rand(b, generator=gen) * (w - cw + 1)).floor().long()
    flip_h = torch.rand(b, generator=gen) < 0.5
    flip_v = torch.rand(b, generator=gen) < 0.5
    blur = torch.rand(b, generator=gen) < spec.blur_p
    sigma = _uniform(gen, b, *spec.blur_sigma)
    out = []
    for i in range(b):
        crop = batch[i:i + 1, :, y0[i]:y0[i] + ch[i], x0[i]:x0[i] + cw[i]]
        if crop.shape[-2:] != (spec.size, spec.size):
            crop = F.interpolate(crop, size=(spec.size, spec.size), mode="bilinear", align_corners=False,
                                 antialias=bool(crop.shape[-1] > spec.size))
        view = crop[0]
        if flip_h[i]:
            view = view.flip(-1)
        if flip_v[i]:
            view = view.flip(-2)
        if blur[i]:
            view = _blur(view, float(sigma[i]))
        out.append(view)
    return torch.stack(out)
