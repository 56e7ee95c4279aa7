"""The training loop: stream -> normalise -> objective, with checkpoints that resume the exact sample sequence.

    from spectralearth.training.loop import TrainConfig, train
    train(TrainConfig(cube="s3://bucket/cube", ssl="moco", backbone="vit_s", out="runs/moco", steps=10_000))

Run under ``torchrun --nproc-per-node N`` for DDP (NCCL on GPUs, gloo on CPU);
each rank streams its own disjoint share of every epoch (the stream's own
sharding). ``OUT`` receives:

* ``checkpoint.pt``: model, objective state (queue, centre, teacher), optimiser,
  step, augmentation generators and the stream's position, written atomically
  every ``checkpoint_every`` steps and at the end. A run started on an ``OUT``
  that holds one resumes from it and continues the exact sample sequence.
* ``metrics.jsonl``: one object per logged step: ``step``, ``epoch``, ``loss``
  (mean over ranks), ``lr``, ``samples_per_s`` (all ranks), ``data_wait_fraction``
  (share of the step's wall time spent waiting for the next batch, rank 0).
* ``samples.rank{R}.jsonl`` (``trace_samples``): per step the global order
  positions and views each rank trained on.
* ``encoder/``: the exported encoder (:func:`~spectralearth.training.export.load_encoder`).

Incomplete batches (the end of an epoch) are skipped on every rank alike, so
batch-norm never sees a batch of one and DDP ranks stay in step; they still
count as consumed, so the resumed order is unaffected.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from spectralearth.platform.storage import redact
from spectralearth.platform.stream import PatchStream
from spectralearth.training.backbones import build_backbone
from spectralearth.training.export import export_encoder
from spectralearth.training.ssl import build_objective

__all__ = ["CHECKPOINT_NAME", "METRICS_NAME", "TrainConfig", "train"]

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"
BASE_LR = {"moco": 1.5e-4, "dino": 5e-4, "mae": 1.5e-4}
"""Base learning rates (AdamW) at a global batch of 256; scaled linearly with the batch."""
RESUME_KEYS = ("cube", "ssl", "backbone", "backbone_args", "ssl_args", "batch_size", "seed", "bands", "crop")


@dataclass
class TrainConfig:
    """Everything a run needs; stored in the checkpoint (a resume must match it)."""

    cube: str
    ssl: str
    backbone: str
    out: str
    steps: int = 1000
    batch_size: int = 64
    """Samples per rank and step."""
    lr: float | None = None
    """Peak learning rate (default: ``BASE_LR[ssl] * global_batch / 256``)."""
    weight_decay: float = 0.05
    warmup_steps: int | None = None
    """Linear warm-up (default: 5 % of the steps), then a cosine to 0."""
    crop: int | None = None
    """Side of the augmented views (default: the patch side)."""
    bands: list[int] | None = None
    """Stored-band indices to train on (default: all)."""
    backbone_args: dict[str, Any] = field(default_factory=dict)
    ssl_args: dict[str, Any] = field(default_factory=dict)
    workers: int = 4
    io_threads: int = 8
    seed: int = 0
    log_every: int = 1
    checkpoint_every: int = 100
    trace_samples: bool = False
    device: str = "auto"
    """``auto`` (the rank's GPU if there is one), ``cpu`` or ``cuda``."""
    progress: bool = True
    storage_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owner: bool = False
    """Whether this call initialised the process group (and so tears it down)."""

    @property
    def on(self) -> bool:
        return self.world > 1


def _init_distributed(device: str) -> tuple[_Dist, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch sees no GPU")
    dev = torch.device("cuda", local % torch.cuda.device_count()) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(dev)
    d = _Dist(world=world, local_rank=local)
    if world > 1:
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if cuda else "gloo")
            d.owner = True
        d.rank, d.world = dist.get_rank(), dist.get_world_size()
    return d, dev


def _lr_at(step: int, cfg: TrainConfig, peak: float) -> float:
    warm = cfg.warmup_steps if cfg.warmup_steps is not None else max(1, cfg.steps // 20)
    if step < warm:
        return peak * (step + 1) / warm
    frac = (step - warm) / max(1, cfg.steps - warm)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(frac, 1.0)))


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(("pos_embed", "cls_token", "mask_token", "decoder_pos"))
         else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _truncate_jsonl(path: Path, last_step: int) -> None:
    """Keep the lines of ``path`` up to ``last_step`` (what a resumed run will write again goes)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line torn by a kill mid-write
            continue
        if row["step"] <= last_step:
            keep.append(line)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in keep))
    os.replace(tmp, path)


def _check_resume(saved: dict, cfg: TrainConfig) -> None:
    now = asdict(cfg)
    for key in RESUME_KEYS:
        if saved.get(key) != now[key]:
            raise ValueError(f"{cfg.out}/{CHECKPOINT_NAME} was written by a run with {key}={saved.get(key)!r}, "
                             f"this run has {key}={now[key]!r}; use another --out or the same settings")


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) self-supervised pretraining; returns a summary of the run.

    Raises:
        ValueError: bad settings (named), a checkpoint of a different run in ``cfg.out``,
            or a cube too small for one batch per rank.
    """
    if cfg.steps < 1 or cfg.batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got steps={cfg.steps}, batch_size={cfg.batch_size}")
    d, device = _init_distributed(cfg.device)
    try:
        return _train(cfg, d, device)
    finally:
        if d.owner:
            dist.destroy_process_group()


def _train(cfg: TrainConfig, d: _Dist, device: torch.device) -> dict[str, Any]:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
    stream = PatchStream(cfg.cube, mode="pair" if cfg.ssl == "moco" else "single", batch_size=cfg.batch_size,
                         seed=cfg.seed, bands=cfg.bands, storage_options=cfg.storage_options, policy="drop",
                         io_threads=cfg.io_threads)
    band_index = stream.band_index
    in_bands = stream.index.n_bands if band_index is None else int(band_index.size)
    patch = int(stream.index.shape[1])
    crop = cfg.crop or patch
    if crop > patch:
        raise ValueError(f"crop {crop} is larger than the cube's {patch} px patches")
    if stream.n_units // d.world < cfg.batch_size:
        raise ValueError(f"cube {redact(cfg.cube)} has {stream.n_units} samples per epoch: fewer than one batch of "
                         f"{cfg.batch_size} for each of {d.world} ranks")

    torch.manual_seed(cfg.seed)
    backbone = build_backbone(cfg.backbone, in_bands, **cfg.backbone_args)
    objective = build_objective(cfg.ssl, backbone, crop=crop, **cfg.ssl_args).to(device)
    objective.seed(cfg.seed * 7919 + d.rank)
    global_batch = cfg.batch_size * d.world
    peak_lr = cfg.lr if cfg.lr is not None else BASE_LR[cfg.ssl] * global_batch / 256
    opt = torch.optim.AdamW(_param_groups(objective, cfg.weight_decay), lr=peak_lr, betas=(0.9, 0.95))

    step, epoch = 0, 0
    ckpt_path = out / CHECKPOINT_NAME
    metrics_path = out / METRICS_NAME
    trace_path = out / f"samples.rank{d.rank}.jsonl"
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        _check_resume(ckpt["config"], cfg)
        objective.load_state_dict(ckpt["objective"])
        opt.load_state_dict(ckpt["optimizer"])
        objective.load_extra_state(ckpt["extra"][d.rank] if d.rank < len(ckpt["extra"]) else ckpt["extra"][0])
        stream.load_state_dict(ckpt["stream"])
        step, epoch = int(ckpt["step"]), int(ckpt["stream"]["epoch"])
        log.info("resuming %s at step %d (epoch %d, %d samples consumed)", out, step, epoch, ckpt["stream"]["consumed"])
    if d.rank == 0:
        _truncate_jsonl(metrics_path, step)
    if cfg.trace_samples:
        _truncate_jsonl(trace_path, step)

    model = objective
    if d.on:
        model = DistributedDataParallel(objective, device_ids=[device.index] if cuda else None,
                                        broadcast_buffers=False)
    norm = stream.normalizer().to(device)
    loader = stream.loader(num_workers=cfg.workers, pin_memory=cuda)
    metrics = open(metrics_path, "a") if d.rank == 0 else None
    trace = open(trace_path, "a") if cfg.trace_samples else None
    bar = None
    if cfg.progress and d.rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=step, desc=f"{cfg.ssl}/{cfg.backbone}", unit="step")
    losses: list[float] = []
    rates: list[float] = []
    waits: list[float] = []
    started = time.perf_counter()

    def save() -> None:
        extra = [objective.extra_state()]
        if d.on:
            gathered: list[Any] = [None] * d.world
            dist.all_gather_object(gathered, extra[0])
            extra = gathered
        if d.rank == 0:
            _atomic_save({"config": asdict(cfg), "objective": objective.state_dict(), "optimizer": opt.state_dict(),
                          "extra": extra, "step": step, "stream": loader.state_dict()}, ckpt_path)

    try:
        while step < cfg.steps:
            stream.set_epoch(epoch)
            fresh_epoch = stream.state_dict(samples_seen=0)["consumed"] == 0
            trained_this_epoch = False
            tick = time.perf_counter()
            for batch in loader:
                got = time.perf_counter()
                if batch["patch"].shape[0] < cfg.batch_size:
                    tick = time.perf_counter()
                    continue
                x = norm(batch["image"].to(device, non_blocking=True))
                for group in opt.param_groups:
                    group["lr"] = _lr_at(step, cfg, peak_lr)
                with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=cuda):
                    loss = model(x)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                objective.after_step(step, cfg.steps)
                value = loss.detach().float()
                if d.on:
                    dist.all_reduce(value)
                    value /= d.world
                loss_value = float(value)  # waits for the step to finish on the device
                if not math.isfinite(loss_value):
                    raise FloatingPointError(f"loss became {loss_value} at step {step}")
                step += 1
                trained_this_epoch = True
                done = time.perf_counter()
                wall = done - tick
                rate, wait = global_batch / wall, (got - tick) / wall
                losses.append(loss_value)
                rates.append(rate)
                waits.append(wait)
                if metrics is not None and (step % cfg.log_every == 0 or step == cfg.steps):
                    metrics.write(json.dumps({"step": step, "epoch": epoch, "loss": round(loss_value, 6),
                                              "lr": opt.param_groups[0]["lr"], "samples_per_s": round(rate, 3),
                                              "data_wait_fraction": round(wait, 4)}) + "\n")
                    metrics.flush()
                if trace is not None:
                    trace.write(json.dumps({"step": step, "epoch": epoch, "position": batch["position"].tolist(),
                                            "view": batch["view"].tolist()}) + "\n")
                    trace.flush()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss_value:.4f}", wait=f"{wait:.0%}")
                if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                    save()
                if step >= cfg.steps:
                    break
                tick = time.perf_counter()
            else:
                if fresh_epoch and not trained_this_epoch:
                    raise ValueError(f"epoch {epoch} of {redact(cfg.cube)} gave no full batch of {cfg.batch_size}")
                epoch += 1
    finally:
        for f in (metrics, trace):
            if f is not None:
                f.close()
        if bar is not None:
            bar.close()

    encoder_dir = None
    if d.rank == 0:
        idx = stream.index
        sel = np.arange(idx.n_bands) if band_index is None else band_index
        encoder_dir = export_encoder(objective.encoder, out / "encoder", extra={
            "ssl": cfg.ssl, "steps": step, "cube": redact(cfg.cube), "bands": [int(b) for b in sel],
            "wavelength_nm": [float(w) for w in idx.wavelength[sel]],
            "band_mean": [float(v) for v in idx.band_mean[sel]], "band_std": [float(v) for v in idx.band_std[sel]],
            "crop": crop,
        })
    if d.on:
        dist.barrier()
    return {
        "steps": step, "epochs_started": epoch + 1, "ranks": d.world, "device": str(device),
        "samples_per_s_median": float(np.median(rates)) if rates else None,
        "data_wait_fraction_median": float(np.median(waits)) if waits else None,
        "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
        "wall_s": time.perf_counter() - started, "out": str(out),
        "encoder": str(encoder_dir) if encoder_dir else None,
    }
