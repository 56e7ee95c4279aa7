"""Downstream evaluation of an encoder on a label cube: three protocols, F1 and mIoU.

Protocols (SpectralEarth's):

* ``linear`` - the encoder frozen (weights and batch-norm statistics), only a head trained:
  a linear layer on the average-pooled features (multi-label), or a 1x1 convolution (a linear
  classifier per feature pixel) whose logits are bilinearly upsampled to the patch (segmentation);
* ``finetune`` - encoder and head trained together;
* ``adapter`` - only the encoder's spectral adapter (``encoder.adapter``) and the head trained.

Every protocol starts from the same encoder weights. The encoder is any module with
``.adapter``, ``.out_channels`` and ``forward(x: (B, bands, H, W)) -> (B, out_channels, h, w)``
(see :func:`spectralearth.training.backbones.build_backbone`).

Data: for each kept patch of the chosen split (``split_random`` or ``split_blocked`` of the
label cube), its first view (or every view) from the patch cube, normalised with the cube's
``band_mean``/``band_std`` (no-data pixels -> 0). Metrics on the test split:
multi-label micro and macro F1 at ``threshold``; segmentation mIoU (over the classes that
occur in the reference or the prediction) and pixel accuracy, ignore pixels left out.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = [
    "PROTOCOLS",
    "EvalParams",
    "LabelledPatches",
    "confusion_matrix",
    "evaluate_encoder",
    "multilabel_f1",
    "segmentation_scores",
]

PROTOCOLS = ("linear", "finetune", "adapter")
NODATA = -32768
IGNORE = 255


@dataclass(frozen=True)
class EvalParams:
    """How each protocol trains and is scored."""

    epochs: int = 5
    """Passes over the training split."""
    batch_size: int = 8
    """Patches per step."""
    lr_head: float = 1e-3
    """AdamW learning rate of the head."""
    lr_encoder: float = 1e-4
    """AdamW learning rate of the trained encoder parameters (``finetune``, ``adapter``)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    split: str = "random"
    """Which split of the label cube: ``random`` or ``blocked``."""
    views: str = "first"
    """``first``: one view per patch; ``all``: every view of a patch is a sample."""
    crop_px: int | None = None
    """Segmentation: train on random crops of this size (None: whole patches); scoring uses whole patches."""
    threshold: float = 0.5
    """Multi-label decision threshold on the sigmoid."""
    seed: int = 0
    """Seed of head initialisation, batch order and crops."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:N``."""

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1")
        if self.split not in ("random", "blocked"):
            raise ValueError(f"split must be 'random' or 'blocked', not {self.split!r}")
        if self.views not in ("first", "all"):
            raise ValueError(f"views must be 'first' or 'all', not {self.views!r}")
        if self.crop_px is not None and self.crop_px < 4:
            raise ValueError(f"crop_px must be at least 4, got {self.crop_px}")


class LabelledPatches:
    """The samples of one split: patch cube views with their labels (a map-style torch dataset).

    Args:
        cube_url: the patch cube.
        labels_url: its label cube.
        split: ``train``, ``val`` or ``test``.
        which: ``random`` or ``blocked`` split.
        views: ``first`` or ``all``.
        storage_options: fsspec options (no secrets).
    """

    def __init__(self, cube_url: str, labels_url: str, split: str, *, which: str = "random", views: str = "first",
                 storage_options: Mapping[str, Any] | None = None) -> None:
        from spectralearth.pipelines.labels import open_label_cube
        from spectralearth.pipelines.splits import SPLIT_NAMES
        from spectralearth.platform.cube import open_cube

        if split not in SPLIT_NAMES:
            raise ValueError(f"split must be one of {SPLIT_NAMES}, not {split!r}")
        self.cube_url, self.labels_url, self.storage_options = cube_url, labels_url, dict(storage_options or {})
        lab = open_label_cube(labels_url, storage_options=storage_options)
        cube = open_cube(cube_url, storage_options=storage_options, decode=False)
        n_cube = int(cube["patch_view_start"].shape[0])
        if lab["status"].shape[0] != n_cube:
            raise ValueError(f"label cube {labels_url} has {lab['status'].shape[0]} patches, cube {cube_url} has {n_cube}")
        self.task = str(lab.attrs["task"])
        self.classes = list(lab.attrs["classes"])
        codes = np.asarray(lab[f"split_{which}"][:])
        patches = np.flatnonzero(codes == SPLIT_NAMES.index(split))
        start = np.asarray(cube["patch_view_start"][:])[patches]
        count = np.asarray(cube["patch_view_count"][:])[patches]
        if views == "first":
            self.items = [(int(p), int(s)) for p, s in zip(patches, start, strict=True)]
        else:
            self.items = [(int(p), int(s) + k) for p, s, c in zip(patches, start, count, strict=True) for k in range(int(c))]
        self.mean = np.asarray(cube["band_mean"][:], np.float32)[:, None, None]
        self.std = np.maximum(np.asarray(cube["band_std"][:], np.float32), 1e-6)[:, None, None]
        self.n_bands = int(cube["reflectance"].shape[1])
        self._labels = np.asarray(lab["labels"][:], np.float32) if self.task == "multilabel" else None
        self._refl = self._mask = None
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.items)

    def _open(self) -> None:
        from spectralearth.pipelines.labels import open_label_cube
        from spectralearth.platform.cube import open_cube

        self._refl = open_cube(self.cube_url, storage_options=self.storage_options, decode=False)["reflectance"]
        if self.task == "seg":
            self._mask = open_label_cube(self.labels_url, storage_options=self.storage_options)["mask"]

    def raw(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample ``i`` as stored: int16 reflectance ``(bands, y, x)`` and its label (cached)."""
        if i not in self._cache:
            if self._refl is None:
                self._open()
            patch, view = self.items[i]
            x = np.asarray(self._refl[view])
            y = np.asarray(self._mask[patch]) if self.task == "seg" else self._labels[patch]
            self._cache[i] = (x, y)
        return self._cache[i]

    def __getitem__(self, i: int):
        import torch

        x, y = self.raw(i)
        xf = (x.astype(np.float32) - self.mean) / self.std
        xf[x == NODATA] = 0.0
        return torch.from_numpy(xf), torch.from_numpy(np.asarray(y, np.int64 if self.task == "seg" else np.float32))


# --------------------------------------------------------------------------- heads


def _make_head(task: str, channels: int, n_classes: int):
    from torch import nn

    if task == "multilabel":
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, n_classes))
    return nn.Conv2d(channels, n_classes, 1)  # a linear classifier per feature pixel, upsampled to the patch


class _Model:
    """Encoder + head, with the protocol's trainable parts."""

    def __init__(self, encoder, head, task: str, protocol: str) -> None:
        import torch

        self.encoder, self.head, self.task, self.protocol = encoder, head, task, protocol
        for p in encoder.parameters():
            p.requires_grad_(protocol == "finetune")
        if protocol == "adapter":
            if not isinstance(getattr(encoder, "adapter", None), torch.nn.Module):
                raise ValueError("protocol 'adapter' needs an encoder with an .adapter submodule")
            for p in encoder.adapter.parameters():
                p.requires_grad_(True)

    def train(self) -> None:
        self.head.train()
        if self.protocol == "finetune":
            self.encoder.train()
        else:
            self.encoder.eval()  # frozen batch-norm statistics
            if self.protocol == "adapter":
                self.encoder.adapter.train()

    def eval(self) -> None:
        self.encoder.eval()
        self.head.eval()

    def __call__(self, x):
        import torch.nn.functional as F

        out = self.head(self.encoder(x))
        if self.task == "seg" and out.shape[-2:] != x.shape[-2:]:
            out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return out

    def groups(self, params: EvalParams) -> list[dict]:
        enc = [p for p in self.encoder.parameters() if p.requires_grad]
        out = [{"params": list(self.head.parameters()), "lr": params.lr_head}]
        if enc:
            out.append({"params": enc, "lr": params.lr_encoder})
        return out

    def trainable(self) -> int:
        return sum(p.numel() for g in (self.encoder, self.head) for p in g.parameters() if p.requires_grad)


# --------------------------------------------------------------------------- metrics


def multilabel_f1(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Micro and macro F1 of binary label matrices ``(samples, classes)``.

    Macro F1 averages the classes that occur in the reference or the prediction.
    """
    t, p = np.asarray(y_true, bool), np.asarray(y_pred, bool)
    tp = (t & p).sum(0).astype(float)
    fp = (~t & p).sum(0).astype(float)
    fn = (t & ~p).sum(0).astype(float)
    denom = 2 * tp + fp + fn
    micro = float(2 * tp.sum() / denom.sum()) if denom.sum() else 0.0
    seen = denom > 0
    macro = float(np.mean(2 * tp[seen] / denom[seen])) if seen.any() else 0.0
    return {"f1_micro": micro, "f1_macro": macro}


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, *, ignore: int = IGNORE) -> np.ndarray:
    """``(n_classes, n_classes)`` counts, rows the reference, columns the prediction; ``ignore`` pixels left out."""
    t, p = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    ok = t != ignore
    return np.bincount(t[ok].astype(np.int64) * n_classes + p[ok].astype(np.int64),
                       minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def segmentation_scores(cm: np.ndarray) -> dict[str, Any]:
    """mIoU (over classes in the reference or the prediction), per-class IoU and pixel accuracy."""
    cm = np.asarray(cm, float)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    seen = union > 0
    iou = np.where(seen, tp / np.where(seen, union, 1), np.nan)
    return {"miou": float(np.nanmean(iou)) if seen.any() else 0.0, "accuracy": float(tp.sum() / cm.sum()) if cm.sum() else 0.0,
            "iou": [None if math.isnan(v) else float(v) for v in iou]}


# --------------------------------------------------------------------------- protocols


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _batches(n: int, size: int, rng: np.random.Generator | None):
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for i in range(0, n, size):
        yield order[i: i + size]


def _stack(ds: LabelledPatches, idx, device):
    import torch

    xs, ys = zip(*(ds[int(i)] for i in idx), strict=True)
    return torch.stack(xs).to(device), torch.stack(ys).to(device)


def _augment(x, y, task: str, crop: int | None, rng: np.random.Generator):
    """Random crop (segmentation) and flips: nothing that changes spectra."""
    if crop and task == "seg" and crop < x.shape[-1]:
        r, c = (int(v) for v in rng.integers(0, x.shape[-1] - crop + 1, 2))
        x, y = x[..., r: r + crop, c: c + crop], y[..., r: r + crop, c: c + crop]
    if rng.random() < 0.5:
        x = x.flip(-1)
        y = y.flip(-1) if task == "seg" else y
    if rng.random() < 0.5:
        x = x.flip(-2)
        y = y.flip(-2) if task == "seg" else y
    return x, y


def _score(model: _Model, ds: LabelledPatches, params: EvalParams, device) -> dict[str, Any]:
    import torch

    k = len(ds.classes)
    model.eval()
    cm = np.zeros((k, k), np.int64)
    truth, pred = [], []
    with torch.no_grad():
        for idx in _batches(len(ds), params.batch_size, None):
            x, y = _stack(ds, idx, device)
            out = model(x)
            if ds.task == "seg":
                cm += confusion_matrix(y.cpu().numpy(), out.argmax(1).cpu().numpy(), k)
            else:
                truth.append(y.cpu().numpy() > 0.5)
                pred.append(torch.sigmoid(out).cpu().numpy() > params.threshold)
    if ds.task == "seg":
        return segmentation_scores(cm)
    if not truth:
        return {"f1_micro": 0.0, "f1_macro": 0.0}
    return multilabel_f1(np.concatenate(truth), np.concatenate(pred))


def _run_protocol(encoder, protocol: str, data: dict[str, LabelledPatches], params: EvalParams, device,
                  progress: bool) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    train = data["train"]
    torch.manual_seed(params.seed)
    rng = np.random.default_rng(params.seed)
    head = _make_head(train.task, int(encoder.out_channels), len(train.classes))
    model = _Model(encoder, head, train.task, protocol)
    encoder.to(device)
    head.to(device)
    opt = torch.optim.AdamW(model.groups(params), weight_decay=params.weight_decay)
    losses: list[float] = []
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=params.epochs * math.ceil(len(train) / params.batch_size), desc=protocol, unit="step", leave=False)
    for _ in range(params.epochs):
        model.train()
        for idx in _batches(len(train), params.batch_size, rng):
            x, y = _augment(*_stack(train, idx, device), train.task, params.crop_px, rng)
            out = model(x)
            if train.task == "seg":
                if not bool((y != IGNORE).any()):
                    continue
                loss = F.cross_entropy(out, y, ignore_index=IGNORE)
            else:
                loss = F.binary_cross_entropy_with_logits(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            if bar:
                bar.update(1)
    if bar:
        bar.close()
    train_s = time.perf_counter() - t0
    out: dict[str, Any] = {"protocol": protocol, "trainable_params": model.trainable(), "steps": len(losses),
                           "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
                           "losses": [round(v, 5) for v in losses], "train_seconds": round(train_s, 3)}
    for name in ("val", "test"):
        out[name] = _score(model, data[name], params, device)
    return out


def evaluate_encoder(
    cube_url: str,
    labels_url: str,
    *,
    encoder: Callable[[], Any] | Any,
    protocols: Sequence[str] = PROTOCOLS,
    params: EvalParams = EvalParams(),
    encoder_name: str = "encoder",
    storage_options: Mapping[str, Any] | None = None,
    out_json: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Train and score each protocol on a label cube; return (and optionally write) the results.

    Args:
        cube_url: the patch cube.
        labels_url: its label cube (``spectralearth labels``).
        encoder: the encoder module (copied for each protocol) or a zero-argument factory.
        protocols: any of :data:`PROTOCOLS`.
        params: training and scoring settings.
        encoder_name: how the encoder is named in the results (e.g. ``adapter``, ``resnet50``).
        storage_options: fsspec options (no secrets).
        out_json: write the results here too (local path or fsspec URL).
        progress: progress bars.

    Returns:
        ``{"task", "classes", "split", "samples": {...}, "protocols": {name: {...}}, ...}``; per protocol the
        test and validation scores (``f1_micro``/``f1_macro`` or ``miou``/``accuracy``/``iou``), losses,
        trainable parameter count and training time.

    Raises:
        ValueError: unknown protocol, an empty train or test split, or an encoder without ``.adapter`` for ``adapter``.
    """
    import torch

    bad = [p for p in protocols if p not in PROTOCOLS]
    if bad or not protocols:
        raise ValueError(f"unknown protocol(s) {bad}: use any of {', '.join(PROTOCOLS)}")
    data = {s: LabelledPatches(cube_url, labels_url, s, which=params.split, views=params.views,
                               storage_options=storage_options) for s in ("train", "val", "test")}
    for s in ("train", "test"):
        if not len(data[s]):
            raise ValueError(f"label cube {labels_url}: the {params.split} split has no {s} samples")
    device = _device(params.device)
    make = encoder if callable(encoder) and not isinstance(encoder, torch.nn.Module) else None
    base = None if make else encoder.state_dict()
    results: dict[str, Any] = {
        "cube": cube_url, "labels": labels_url, "task": data["train"].task, "classes": data["train"].classes,
        "encoder": encoder_name, "split": params.split, "params": asdict(params), "device": str(device),
        "samples": {s: len(d) for s, d in data.items()}, "bands": data["train"].n_bands, "protocols": {},
    }
    for protocol in protocols:
        if make:
            torch.manual_seed(params.seed)
            enc = make()
        else:
            enc = copy.deepcopy(encoder)
            enc.load_state_dict(base)
        results["protocols"][protocol] = _run_protocol(enc, protocol, data, params, device, progress)
    if out_json:
        from spectralearth.platform.storage import atomic_write_bytes, redact

        atomic_write_bytes(out_json, json.dumps(redact(results), indent=2).encode(), storage_options)
    return results
