"""Faulty deliveries: which product gets which fault, and the file-level damage."""

from __future__ import annotations

import os

import numpy as np

from .config import SynthConfig
from .plan import TileSpec

__all__ = ["assign_faults", "apply_file_faults", "bumped_version"]


def assign_faults(specs: list[TileSpec], config: SynthConfig) -> tuple[dict[int, str], int | None]:
    """Pick one product per requested fault kind, deterministically by seed.

    Returns:
        (plan index -> file-level fault kind, plan index that gets a duplicate delivery or None).
    """
    kinds = list(dict.fromkeys(config.faults))
    if not kinds:
        return {}, None
    rng = np.random.default_rng([config.seed, 0xFA17])
    order = rng.permutation(len(specs))
    picks = [int(order[i % len(order)]) for i in range(len(kinds))]
    file_faults: dict[int, str] = {}
    dup = None
    for kind, idx in zip(kinds, picks, strict=True):
        if kind == "duplicate":
            dup = idx
        elif idx not in file_faults:
            file_faults[idx] = kind
    return file_faults, dup


def bumped_version(version: str) -> str:
    """A newer processor version: '010402' -> '010502'."""
    major, minor, patch = int(version[0:2]), int(version[2:4]), int(version[4:6])
    return f"{major:02d}{minor + 1:02d}{patch:02d}"


def apply_file_faults(folder: str, stem: str, kind: str) -> None:
    """Damage a written product folder in place.

    truncated-tiff: SPECTRAL_IMAGE.TIF cut to a third (header kept, tile data missing);
    malformed-xml: METADATA.XML cut mid-element (not well-formed); missing-xml: no
    METADATA.XML. all-nodata and band-mismatch are made while writing.
    """
    xml = os.path.join(folder, f"{stem}-METADATA.XML")
    tif = os.path.join(folder, f"{stem}-SPECTRAL_IMAGE.TIF")
    if kind == "truncated-tiff" and os.path.exists(tif):
        size = os.path.getsize(tif)
        with open(tif, "r+b") as f:
            f.truncate(max(4096, size // 3))
    elif kind == "malformed-xml":
        with open(xml, "rb") as f:
            data = f.read()
        cut = data.find(b"<bandCharacterisation>")
        cut = cut + 40 if cut > 0 else len(data) // 2
        with open(xml, "wb") as f:
            f.write(data[:cut] + b"\n<unclosed attr=\"x\">\n")
    elif kind == "missing-xml" and os.path.exists(xml):
        os.remove(xml)
