"""A small area revisited many times: many views per patch from few synthesised pixels.

Each base tile of a :class:`SynthConfig` archive is acquired again ``revisits - 1`` times,
every ``interval_days`` days, by other datatakes on the same grid. The revisits deliver
the base tile's rasters (hard links where the file system allows, copies otherwise) under
their own product name, datatake and date, with their own METADATA.XML, so an archive of
``tiles * revisits`` products costs the pixels of ``tiles``. Used where counts must be
large (cubes of more than 150 views) and synthesis time small.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from datetime import timedelta

from .config import SynthConfig
from .plan import TileSpec, plan_archive, product_stem
from .render import scene_layers
from .spectra import product_bands
from .writer import _grid_corners, write_product
from .xmlwriter import metadata_xml


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def write_revisit_archive(root: str, config: SynthConfig, revisits: int, *, interval_days: int = 27) -> list[TileSpec]:
    """Write ``config.tiles`` base products, each acquired ``revisits`` times in all, as folders under ``root``.

    Returns the specs of every product written (bases and revisits). ZIP deliveries and
    faults of ``config`` are not applied: every product is a folder.

    Raises:
        ValueError: ``revisits`` < 1 or ``interval_days`` < 1.
    """
    if revisits < 1:
        raise ValueError(f"revisits must be >= 1, got {revisits}")
    if interval_days < 1:
        raise ValueError(f"interval_days must be >= 1, got {interval_days}")
    specs = []
    for spec in plan_archive(config):
        spec = dataclasses.replace(spec, zipped=False)
        base_dir = os.path.join(root, spec.subdir, spec.stem)
        sizes = write_product(spec, base_dir, config)
        specs.append(spec)
        wl, fwhm = product_bands(spec.pixel_seed)
        for r in range(1, revisits):
            shift = timedelta(days=interval_days * r)
            start, processed = spec.start + shift, spec.processed + shift
            datatake = spec.datatake + 100_000 * r
            stem = product_stem(datatake, start, spec.tile, spec.version, processed)
            rv = dataclasses.replace(
                spec, stem=stem, datatake=datatake, start=start, stop=spec.stop + shift,
                datatake_start=spec.datatake_start + shift, datatake_stop=spec.datatake_stop + shift,
                processed=processed, subdir=f"{start:%Y}/{start:%m}",
            )
            folder = os.path.join(root, rv.subdir, stem)
            os.makedirs(folder)
            for name in os.listdir(base_dir):  # the same rasters, delivered under the revisit's name
                suffix = name[len(spec.stem) + 1 :]
                if suffix != "METADATA.XML":
                    _link_or_copy(os.path.join(base_dir, name), os.path.join(folder, f"{stem}-{suffix}"))
            cover = scene_layers(rv, stride=16).cover()
            xml = metadata_xml(rv, wavelengths=wl, fwhm=fwhm, cover=cover, grid_corners_lonlat=_grid_corners(rv),
                               file_sizes={k: v for k, v in sizes.items() if k != "METADATA.XML"}, stem=stem,
                               compact=config.compact_xml)
            with open(os.path.join(folder, f"{stem}-METADATA.XML"), "wb") as f:
                f.write(xml)
            specs.append(rv)
    return specs
