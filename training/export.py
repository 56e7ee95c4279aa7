"""An encoder on disk: ``encoder.safetensors`` (weights and buffers) + ``encoder.json`` (how to build it).

    from spectralearth.training import load_encoder
    encoder = load_encoder("run/encoder")          # a plain torch nn.Module, in eval mode
    features = encoder(x)                          # (B, out_channels, h, w)

The JSON holds the :func:`~spectralearth.training.backbones.build_backbone`
arguments, the band subset and wavelengths the encoder was trained on, and the
normalisation (per-band mean/std) its inputs expect.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from spectralearth.training.backbones import Backbone, build_backbone

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "export_encoder", "load_encoder"]

WEIGHTS_NAME = "encoder.safetensors"
CONFIG_NAME = "encoder.json"
FORMAT = "spectralearth-encoder/1"


def export_encoder(backbone: Backbone, out_dir: str | os.PathLike, *, extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``backbone`` to ``out_dir`` (created); both files appear only once complete.

    Args:
        backbone: a module from :func:`build_backbone` (unwrap DDP first).
        out_dir: local folder.
        extra: JSON-able facts stored beside the build arguments (bands, normalisation, run).

    Returns:
        The folder.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}
    config = {"format": FORMAT, "backbone": dict(backbone.config), **dict(extra or {})}
    tmp_w, tmp_c = out / (WEIGHTS_NAME + ".tmp"), out / (CONFIG_NAME + ".tmp")
    save_file(tensors, str(tmp_w), metadata={"format": FORMAT, "backbone": backbone.config["name"]})
    tmp_c.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    os.replace(tmp_w, out / WEIGHTS_NAME)
    os.replace(tmp_c, out / CONFIG_NAME)
    return out


def load_encoder(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> Backbone:
    """The encoder exported to ``path`` (its folder or its ``encoder.json``), in eval mode.

    Raises:
        FileNotFoundError: either file is missing.
        ValueError: the config is not an encoder config, or the weights do not fit it.
    """
    folder = Path(path)
    if folder.name == CONFIG_NAME:
        folder = folder.parent
    config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    for p in (config_path, weights_path):
        if not p.is_file():
            raise FileNotFoundError(f"encoder export {folder}: {p.name} is missing")
    config = json.loads(config_path.read_text())
    if config.get("format") != FORMAT:
        raise ValueError(f"{config_path}: format {config.get('format')!r} is not {FORMAT!r}")
    build = dict(config["backbone"])
    name, in_bands = build.pop("name"), build.pop("in_bands")
    for key in ("depths", "widths"):
        if key in build:
            build[key] = tuple(build[key])
    model = build_backbone(name, in_bands, **build)
    state = load_file(str(weights_path), device=str(map_location))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{weights_path}: weights do not fit backbone {name!r} "
                         f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
    model.export_config = config
    return model.to(map_location).eval()
