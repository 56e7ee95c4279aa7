"""Spectral-adapter backbones: :func:`build_backbone`.

Every backbone takes float32 ``(B, bands, H, W)`` (normalised reflectance) and
returns a feature map ``(B, out_channels, h, w)``; ``.adapter`` is its
:class:`SpectralAdapter`, ``.embed(x)`` a ``(B, out_channels)`` global vector
(average pooling for convolutional bodies, the class token for ViTs).

==========  ===============================================  ==============  =============
name        body after the adapter                           out_channels    grid (128 px)
==========  ===============================================  ==============  =============
adapter     none                                             128             128 x 128
resnet50    ResNet-50 stages 1-4, no stem, stage 1 stride 2  2048            8 x 8
vit_s       ViT-S/4: 384 wide, 12 blocks, 6 heads            384             32 x 32
vit_b       ViT-B/4: 768 wide, 12 blocks, 12 heads           768             32 x 32
vit_l       ViT-L/4: 1024 wide, 24 blocks, 16 heads          1024            32 x 32
==========  ===============================================  ==============  =============

The layer layout follows SpectralEarth's published backbones. The bodies are
written here in plain torch rather than taken from timm: timm imports
torchvision, which does not load beside the CPU torch build the project
installs (measured; see docs/training.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BACKBONES", "Backbone", "SpectralAdapter", "SpectralResNet50", "SpectralViT", "build_backbone"]


class SpectralAdapter(nn.Module):
    """Three Conv3d blocks along the band axis only, then the mean over what is left of it.

    ``(B, bands, H, W) -> (B, 128, H, W)``: 1->32 (kernel 7, stride 5), 32->64
    (kernel 7, stride 5), 64->128 (kernel 5, stride 3), each with padding 1 on the
    band axis, batch norm and ReLU; 56,192 parameters whatever the band count.

    The three strided convolutions need at least :attr:`MIN_BANDS` bands; fewer
    bands are first resampled along the band axis (linear interpolation) to that
    count, so any band count goes in.
    """

    MIN_BANDS = 75
    """Fewest bands that leave at least one position after the three convolutions."""

    out_channels = 128

    def __init__(self) -> None:
        super().__init__()
        spec = ((1, 32, 7, 5), (32, 64, 7, 5), (64, 128, 5, 3))
        layers: list[nn.Module] = []
        for cin, cout, k, s in spec:
            layers += [nn.Conv3d(cin, cout, kernel_size=(k, 1, 1), stride=(s, 1, 1), padding=(1, 0, 0)),
                       nn.BatchNorm3d(cout), nn.ReLU(inplace=True)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"spectral adapter expects (batch, bands, height, width), got shape {tuple(x.shape)}")
        b, c, h, w = x.shape
        if c < self.MIN_BANDS:
            # (B, C, H, W) -> (B*H*W, 1, C): resample each pixel's spectrum
            spectra = x.permute(0, 2, 3, 1).reshape(-1, 1, c)
            spectra = F.interpolate(spectra, size=self.MIN_BANDS, mode="linear", align_corners=True)
            x = spectra.reshape(b, h, w, self.MIN_BANDS).permute(0, 3, 1, 2)
        y = self.layers(x.unsqueeze(1))  # (B, 128, bands', H, W)
        return y.mean(dim=2)


class Backbone(nn.Module):
    """Common frame: ``.adapter``, ``.out_channels``, ``.name``, ``.in_bands``, ``.config``."""

    name: str = ""
    out_channels: int = 0

    def __init__(self, in_bands: int, config: dict[str, Any]) -> None:
        super().__init__()
        if int(in_bands) < 1:
            raise ValueError(f"in_bands must be >= 1, got {in_bands}")
        self.in_bands = int(in_bands)
        self.config = {"name": self.name, "in_bands": self.in_bands, **config}
        self.adapter = SpectralAdapter()

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_bands:
            raise ValueError(f"backbone {self.name!r} was built for (batch, {self.in_bands}, height, width) input, "
                             f"got shape {tuple(x.shape)}")

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """A ``(B, out_channels)`` global representation (mean of the feature map)."""
        return self(x).mean(dim=(2, 3))


class AdapterOnly(Backbone):
    """The spectral adapter alone: a 128-channel feature map at full resolution."""

    name = "adapter"
    out_channels = SpectralAdapter.out_channels

    def __init__(self, in_bands: int) -> None:
        super().__init__(in_bands, {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return self.adapter(x)


class Bottleneck(nn.Module):
    """ResNet bottleneck (1x1, 3x3 with the stride, 1x1 x4), batch norm, identity or 1x1 shortcut."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        nn.init.zeros_(self.bn3.weight)  # each residual block starts as the identity
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = F.relu(self.bn2(self.conv2(out)), inplace=True)
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)), inplace=True)


class SpectralResNet50(Backbone):
    """Adapter, then the ResNet-50 body without its stem; stage 1 takes 128 channels with stride 2.

    Args:
        in_bands: bands of the input.
        depths: blocks per stage (ResNet-50: 3, 4, 6, 3).
        widths: bottleneck widths per stage (64, 128, 256, 512; outputs are 4x).
    """

    name = "resnet50"

    def __init__(self, in_bands: int, *, depths: tuple[int, ...] = (3, 4, 6, 3),
                 widths: tuple[int, ...] = (64, 128, 256, 512)) -> None:
        if len(depths) != len(widths) or not depths:
            raise ValueError(f"depths {depths} and widths {widths} must be non-empty and of equal length")
        super().__init__(in_bands, {"depths": list(depths), "widths": list(widths)})
        stages = []
        cin = SpectralAdapter.out_channels
        for depth, width in zip(depths, widths):
            blocks = [Bottleneck(cin, width, stride=2)]
            cin = width * Bottleneck.expansion
            blocks += [Bottleneck(cin, width) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.out_channels = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return self.stages(self.adapter(x))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block: attention and a 4x GELU MLP, LayerNorm eps 1e-6."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SpectralViT(Backbone):
    """Adapter, then a ViT on 4x4 token patches of the 128-channel map (1,024 tokens at 128 px).

    Args:
        in_bands: bands of the input.
        embed_dim, depth, num_heads, mlp_ratio: transformer size.
        patch_size: token patch side in pixels.
        img_size: side the position embedding is laid out for; other sides (multiples
            of ``patch_size``) interpolate it.
    """

    def __init__(self, in_bands: int, *, embed_dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0,
                 patch_size: int = 4, img_size: int = 128, name: str = "vit") -> None:
        self.name = name
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        super().__init__(in_bands, {"embed_dim": embed_dim, "depth": depth, "num_heads": num_heads,
                                    "mlp_ratio": mlp_ratio, "patch_size": patch_size, "img_size": img_size})
        self.out_channels = self.embed_dim = embed_dim
        self.patch_size = patch_size
        self.grid = img_size // patch_size
        self.patch_embed = nn.Conv2d(SpectralAdapter.out_channels, embed_dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid ** 2, embed_dim))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def _grid_pos(self, h: int, w: int) -> torch.Tensor:
        pos = self.pos_embed[:, 1:]
        if (h, w) == (self.grid, self.grid):
            return pos
        grid = pos.reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
        return grid.permute(0, 2, 3, 1).reshape(1, h * w, -1)

    def patch_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Adapter and patch embedding with position: ``(B, h*w, D)`` and the grid ``(h, w)``."""
        self._check(x)
        if x.shape[2] % self.patch_size or x.shape[3] % self.patch_size:
            raise ValueError(f"input side {tuple(x.shape[2:])} is not a multiple of the {self.patch_size} px token patch")
        t = self.patch_embed(self.adapter(x))
        h, w = t.shape[2:]
        return t.flatten(2).transpose(1, 2) + self._grid_pos(h, w), (h, w)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Class token prepended, transformer, final norm: ``(B, 1 + n, D)`` for ``n`` given tokens."""
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
        x = torch.cat([cls, tokens], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens, (h, w) = self.patch_tokens(x)
        out = self.encode(tokens)[:, 1:]
        return out.transpose(1, 2).reshape(x.shape[0], self.embed_dim, h, w)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The class token after the final norm."""
        tokens, _ = self.patch_tokens(x)
        return self.encode(tokens)[:, 0]


def _vit(name: str, embed_dim: int, depth: int, num_heads: int) -> Callable[..., SpectralViT]:
    def make(in_bands: int, **kw: Any) -> SpectralViT:
        size = {"embed_dim": embed_dim, "depth": depth, "num_heads": num_heads}
        size.update(kw)
        return SpectralViT(in_bands, name=name, **size)

    return make


BACKBONES: dict[str, Callable[..., Backbone]] = {
    "adapter": AdapterOnly,
    "resnet50": SpectralResNet50,
    "vit_s": _vit("vit_s", 384, 12, 6),
    "vit_b": _vit("vit_b", 768, 12, 12),
    "vit_l": _vit("vit_l", 1024, 24, 16),
}
"""Backbone names and their constructors ``(in_bands, **kw)``."""


def build_backbone(name: str, in_bands: int, **kw: Any) -> Backbone:
    """A backbone by name (``adapter``, ``resnet50``, ``vit_s``, ``vit_b``, ``vit_l``).

    Args:
        name: backbone name.
        in_bands: bands of the input (any count).
        **kw: size overrides: ``depths``/``widths`` for ``resnet50``; ``embed_dim``,
            ``depth``, ``num_heads``, ``mlp_ratio``, ``patch_size``, ``img_size`` for ViTs.

    Returns:
        The module: ``forward(x (B, bands, H, W)) -> (B, out_channels, h, w)``.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    try:
        return BACKBONES[name](in_bands, **kw)
    except TypeError as exc:
        raise ValueError(f"backbone {name!r}: {exc}") from None

