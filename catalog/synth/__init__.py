"""Synthetic EnMAP L2A archives: realistic names, folders/ZIPs, METADATA.XML, rotated swaths, spectra.

    >>> from spectralearth.catalog.synth import SynthConfig, plan_archive, synthesize_archive
    >>> specs = plan_archive(SynthConfig(tiles=11636))            # the plan only, in seconds
    >>> report = synthesize_archive("/tmp/archive", SynthConfig(tiles=12, tile_size=256))
"""

from __future__ import annotations

from .config import FAULT_KINDS, SynthConfig
from .plan import TileSpec, plan_archive
from .revisits import write_revisit_archive
from .writer import MANIFEST_NAME, SynthReport, synthesize_archive

__all__ = [
    "FAULT_KINDS",
    "MANIFEST_NAME",
    "SynthConfig",
    "SynthReport",
    "TileSpec",
    "plan_archive",
    "synthesize_archive",
    "write_revisit_archive",
]
