"""Self-supervised objectives over a backbone: MoCo-v2 (temporal positives), DINO, MAE.

Each objective is an ``nn.Module`` whose ``forward(images)`` returns the loss of
one batch of normalised float images, and whose ``after_step(step, total)`` does
the momentum update of its momentum encoder or teacher. ``encoder`` is the
backbone to export. Under ``torch.distributed`` the MoCo queue and the DINO
centre are updated from all ranks (all-gather / all-reduce), so they stay
identical on every rank.

* MoCo-v2: ``images`` are ``(B, 2, C, H, W)`` pairs from the stream's ``pair``
  mode: two acquisitions of the same place are the positive pair (each also
  cropped, flipped, blurred). Queue 32,768, temperature 0.1, key-encoder momentum
  0.999, 2-layer MLP head to 128.
* DINO: ``(B, C, H, W)``: two global crops and ``local_crops`` smaller ones;
  teacher momentum 0.996 -> 1 on a cosine, teacher temperature 0.04, student 0.1,
  centre momentum 0.9 (starting from the first batch's mean), weight-normalised
  last layer.
* MAE (ViTs only): ``(B, C, H, W)``: 90 % of the tokens masked, a decoder 512 wide
  and 1 block deep, mean squared error on the masked tokens' per-token normalised
  pixels (all bands of the 4x4 patch).

The losses, heads, momentum updates and masking are written here in plain torch
(a few lines each) rather than taken from lightly, which imports torchvision (see
docs/training.md for the measurement behind that).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from spectralearth.training.augment import CropSpec, augment
from spectralearth.training.backbones import Backbone, Block, SpectralViT

__all__ = ["DINO", "MAE", "MoCo", "OBJECTIVES", "build_objective", "cosine_momentum"]


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` over all ranks along dim 0 (no gradient); ``x`` itself in one process."""
    if not _distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def cosine_momentum(step: int, total: int, base: float) -> float:
    """``base`` at step 0 rising to 1 at ``total`` on a half cosine (DINO's teacher schedule)."""
    frac = min(max(step / max(total, 1), 0.0), 1.0)
    return 1.0 - (1.0 - base) * (math.cos(math.pi * frac) + 1.0) / 2.0


@torch.no_grad()
def momentum_update(target: nn.Module, source: nn.Module, m: float) -> None:
    """``target = m * target + (1 - m) * source`` for the parameters.

    Buffers (batch-norm statistics) are not copied: the momentum encoder keeps the
    statistics of what it sees itself, which is what an exported teacher needs.
    """
    for t, s in zip(target.parameters(), source.parameters()):
        t.mul_(m).add_(s.detach(), alpha=1.0 - m)


def _frozen_copy(module: nn.Module) -> nn.Module:
    twin = copy.deepcopy(module)
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


def _mlp(dims: list[int], *, bn: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            if bn:
                layers.append(nn.BatchNorm1d(dims[i + 1]))
            layers.append(nn.ReLU(inplace=True) if bn else nn.GELU())
    return nn.Sequential(*layers)


class _Objective(nn.Module):
    pair = False
    """Whether the objective wants the stream's pair mode."""

    def __init__(self, backbone: Backbone, crop: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.crop = int(crop)
        self.gen = torch.Generator().manual_seed(0)

    @property
    def encoder(self) -> Backbone:
        return self.backbone

    def seed(self, seed: int) -> None:
        self.gen.manual_seed(int(seed))

    def after_step(self, step: int, total: int) -> None:
        """Momentum updates after the optimiser step ``step`` (0-based) of ``total``."""

    def extra_state(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["gen"])


class MoCo(_Objective):
    """MoCo-v2 with temporal positives (see module doc)."""

    pair = True

    def __init__(self, backbone: Backbone, *, crop: int = 128, queue: int = 32768, temperature: float = 0.1,
                 momentum: float = 0.999, hidden: int = 2048, dim: int = 128) -> None:
        super().__init__(backbone, crop)
        self.temperature = float(temperature)
        self.momentum = float(momentum)
        self.head = _mlp([backbone.out_channels, hidden, dim], bn=False)
        self.key_backbone = _frozen_copy(backbone)
        self.key_head = _frozen_copy(self.head)
        self.register_buffer("queue", F.normalize(torch.randn(int(queue), dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def _views(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if images.ndim != 5 or images.shape[1] != 2:
            raise ValueError(f"MoCo needs pairs (batch, 2, bands, height, width), got shape {tuple(images.shape)}")
        spec = CropSpec(self.crop)
        return augment(images[:, 0], spec, self.gen), augment(images[:, 1], spec, self.gen)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        a, b = self._views(images)
        q = F.normalize(self.head(self.backbone.embed(a)), dim=1)
        with torch.no_grad():
            k = F.normalize(self.key_head(self.key_backbone.embed(b)), dim=1)
        pos = (q * k).sum(dim=1, keepdim=True)
        neg = q @ self.queue.clone().t().to(q.dtype)  # the queue changes in place below
        logits = torch.cat([pos, neg], dim=1) / self.temperature
        loss = F.cross_entropy(logits.float(), torch.zeros(q.shape[0], dtype=torch.long, device=q.device))
        self._enqueue(k.detach().float())
        return loss

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        keys = gather(keys)
        size = self.queue.shape[0]
        keys = keys[-size:]  # more keys than the queue holds: the newest fill it
        n = keys.shape[0]
        idx = (self.queue_ptr + torch.arange(n, device=keys.device)) % size
        self.queue[idx] = keys
        self.queue_ptr.copy_((self.queue_ptr + n) % size)

    def after_step(self, step: int, total: int) -> None:
        momentum_update(self.key_backbone, self.backbone, self.momentum)
        momentum_update(self.key_head, self.head, self.momentum)


class DINOHead(nn.Module):
    """3-layer MLP (GELU) to a bottleneck, L2 normalisation, weight-normalised last layer (norm fixed at 1)."""

    def __init__(self, cin: int, *, hidden: int = 2048, bottleneck: int = 256, out_dim: int = 65536) -> None:
        super().__init__()
        self.mlp = _mlp([cin, hidden, hidden, bottleneck], bn=False)
        self.last = weight_norm(nn.Linear(bottleneck, out_dim, bias=False))
        self.last.parametrizations.weight.original0.data.fill_(1.0)
        self.last.parametrizations.weight.original0.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(F.normalize(self.mlp(x), dim=-1))


class DINO(_Objective):
    """DINO self-distillation (see module doc)."""

    def __init__(self, backbone: Backbone, *, crop: int = 128, local_crops: int = 4, local_size: int | None = None,
                 out_dim: int = 65536, hidden: int = 2048, bottleneck: int = 256, teacher_momentum: float = 0.996,
                 teacher_temp: float = 0.04, student_temp: float = 0.1, center_momentum: float = 0.9) -> None:
        super().__init__(backbone, crop)
        self.local_crops = int(local_crops)
        size = local_size or max(4, (crop * 3 // 8) // 4 * 4)
        self.global_spec = CropSpec(crop, scale=(0.4, 1.0), blur_p=0.5)
        self.local_spec = CropSpec(int(size), scale=(0.05, 0.4), blur_p=0.5)
        self.head = DINOHead(backbone.out_channels, hidden=hidden, bottleneck=bottleneck, out_dim=out_dim)
        self.teacher_backbone = _frozen_copy(backbone)
        self.teacher_head = _frozen_copy(self.head)
        self.base_momentum = float(teacher_momentum)
        self.teacher_temp, self.student_temp = float(teacher_temp), float(student_temp)
        self.center_momentum = float(center_momentum)
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.register_buffer("center_ready", torch.zeros((), dtype=torch.bool))

    @property
    def encoder(self) -> Backbone:
        return self.teacher_backbone

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4:
            raise ValueError(f"DINO needs single views (batch, bands, height, width), got shape {tuple(images.shape)}")
        globals_ = [augment(images, self.global_spec, self.gen) for _ in range(2)]
        locals_ = [augment(images, self.local_spec, self.gen) for _ in range(self.local_crops)]
        with torch.no_grad():
            t_out = [self.teacher_head(self.teacher_backbone.embed(v)).float() for v in globals_]
        s_out = [self.head(self.backbone.embed(torch.cat(globals_))).float()]
        if locals_:
            s_out.append(self.head(self.backbone.embed(torch.cat(locals_))).float())
        s_out = torch.cat(s_out).chunk(2 + self.local_crops)
        if not bool(self.center_ready):
            self._update_center(torch.cat(t_out))
        t_prob = [F.softmax((t - self.center) / self.teacher_temp, dim=-1) for t in t_out]
        total, terms = 0.0, 0
        for ti, t in enumerate(t_prob):
            for si, s in enumerate(s_out):
                if si == ti:
                    continue
                total = total + torch.sum(-t * F.log_softmax(s / self.student_temp, dim=-1), dim=-1).mean()
                terms += 1
        self._update_center(torch.cat(t_out))
        return total / terms

    @torch.no_grad()
    def _update_center(self, teacher_out: torch.Tensor) -> None:
        mean = teacher_out.mean(dim=0, keepdim=True)
        if _distributed():
            dist.all_reduce(mean)
            mean /= dist.get_world_size()
        if not bool(self.center_ready):
            # start from the first batch's mean rather than zero: the early loss then
            # follows what the student learns, not the centre warming up
            self.center.copy_(mean)
            self.center_ready.fill_(True)
            return
        self.center.mul_(self.center_momentum).add_(mean, alpha=1.0 - self.center_momentum)

    def after_step(self, step: int, total: int) -> None:
        m = cosine_momentum(step + 1, total, self.base_momentum)
        momentum_update(self.teacher_backbone, self.backbone, m)
        momentum_update(self.teacher_head, self.head, m)


class MAE(_Objective):
    """Masked autoencoder over a spectral ViT (see module doc)."""

    def __init__(self, backbone: Backbone, *, crop: int = 128, mask_ratio: float = 0.9, decoder_dim: int = 512,
                 decoder_depth: int = 1, decoder_heads: int = 16) -> None:
        if not isinstance(backbone, SpectralViT):
            raise ValueError(f"MAE needs a ViT backbone (vit_s, vit_b, vit_l), got {backbone.config['name']!r}")
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must lie in (0, 1), got {mask_ratio}")
        super().__init__(backbone, crop)
        self.mask_ratio = float(mask_ratio)
        p = backbone.patch_size
        if crop % p:
            raise ValueError(f"MAE crop {crop} is not a multiple of the {p} px token patch")
        grid = crop // p
        self.decoder_embed = nn.Linear(backbone.embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos = nn.Parameter(torch.zeros(1, 1 + grid * grid, decoder_dim))
        self.decoder = nn.ModuleList(Block(decoder_dim, decoder_heads) for _ in range(decoder_depth))
        self.decoder_norm = nn.LayerNorm(decoder_dim, eps=1e-6)
        self.decoder_pred = nn.Linear(decoder_dim, p * p * backbone.in_bands)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.decoder_pos, std=0.02)

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, h*w, p*p*C)`` in the token order of the ViT."""
        b, c, h, w = images.shape
        p = self.backbone.patch_size
        x = images.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(b, (h // p) * (w // p), p * p * c)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4:
            raise ValueError(f"MAE needs single views (batch, bands, height, width), got shape {tuple(images.shape)}")
        x = augment(images, CropSpec(self.crop, scale=(0.4, 1.0), blur_p=0.0), self.gen)
        tokens, _ = self.backbone.patch_tokens(x)
        b, n, d = tokens.shape
        keep = max(1, int(round(n * (1.0 - self.mask_ratio))))
        noise = torch.rand(b, n, generator=self.gen).to(tokens.device)
        order = noise.argsort(dim=1)
        restore = order.argsort(dim=1)
        visible = torch.gather(tokens, 1, order[:, :keep, None].expand(-1, -1, d))
        latent = self.decoder_embed(self.backbone.encode(visible))
        masks = self.mask_token.expand(b, n - keep, -1).to(latent.dtype)
        y = torch.cat([latent[:, 1:], masks], dim=1)
        y = torch.gather(y, 1, restore[:, :, None].expand(-1, -1, y.shape[-1]))
        y = torch.cat([latent[:, :1], y], dim=1) + self.decoder_pos.to(latent.dtype)
        for block in self.decoder:
            y = block(y)
        pred = self.decoder_pred(self.decoder_norm(y))[:, 1:].float()
        target = self.patchify(x).float()
        mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6).sqrt()
        masked = torch.ones(b, n, device=tokens.device)
        masked[:, :keep] = 0
        masked = torch.gather(masked, 1, restore)
        per_token = ((pred - target) ** 2).mean(dim=-1)
        return (per_token * masked).sum() / masked.sum()


OBJECTIVES = {"moco": MoCo, "dino": DINO, "mae": MAE}
"""Objective names and classes."""


def build_objective(name: str, backbone: Backbone, **kw: Any) -> _Objective:
    """The objective ``name`` (``moco``, ``dino``, ``mae``) over ``backbone``, with keyword overrides."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose one of {sorted(OBJECTIVES)}")
    try:
        return OBJECTIVES[name](backbone, **kw)
    except TypeError as exc:
        raise ValueError(f"objective {name!r}: {exc}") from None
