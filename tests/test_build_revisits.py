"""End-to-end at a size where sums mean something: a cube of more than 150 views.

A small area revisited many times (each tile acquired again on later dates by other
datatakes, on the same grid) makes many views per patch from few pixels: the base
tiles are synthesised once and every revisit delivers the same rasters under its
own product name, datatake and date, with its own METADATA.XML. More than 150 views
put more than 2.4 M valid pixels into every band, past the point where the squared
sums of the band statistics leave int64 and float64 stops being exact.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from spectralearth.catalog.synth import SynthConfig, write_revisit_archive
from spectralearth.pipelines.build import BuildConfig, build
from spectralearth.pipelines.combinations import CombinationParams
from spectralearth.pipelines.extract import SPECTRALEARTH_BANDS, ExtractParams
from spectralearth.pipelines.plan import PlanParams, read_plan
from spectralearth.platform.cluster import ClusterSpec

BASES = 8  # distinct tiles (several datatakes)
REVISITS = 24  # acquisitions of each tile (the first one included): 7 patches x 24 views
TILE_PX = 256
MIN_VIEWS = 150


def revisit_archive(root: str, *, footprints_only: bool = False) -> list:
    """``BASES`` tiles of ``TILE_PX`` px, each acquired ``REVISITS`` times; returns the specs written."""
    config = SynthConfig(tiles=BASES, tile_size=TILE_PX, seed=11, hotspots=1, footprints_only=footprints_only)
    return write_revisit_archive(root, config, REVISITS)


CONFIG = BuildConfig(
    combinations=CombinationParams(max_n=2, beam=4),
    plan=PlanParams(max_cloud=1.0, max_cloud_shadow=1.0, max_snow=1.0, max_nodata=0.0),
    extract=ExtractParams(),
)


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_build_with_more_than_150_views(tmp_path):
    from spectralearth.catalog import read_tiles
    from spectralearth.platform.cube import open_cube

    archive = str(tmp_path / "archive")
    specs = revisit_archive(archive)
    out = str(tmp_path / "out")
    report = build(archive, out, config=CONFIG, cluster=ClusterSpec(kind="local", n_workers=2))

    catalog = os.path.join(out, "catalog")
    tiles = read_tiles(catalog)
    patches, views = read_plan(catalog)
    assert len(tiles) == len(specs) == BASES * REVISITS
    assert len(views) >= MIN_VIEWS, report.stages["plan"]
    assert views["tile"].nunique() >= 2 * REVISITS  # from several tiles, each seen on many dates
    assert (patches["n_views"] > 1).sum() >= 2
    assert not views.duplicated(["patch", "datatake"]).any()

    ds = open_cube(os.path.join(out, "cube.zarr"), decode=False)
    nb = len(SPECTRALEARTH_BANDS)
    assert dict(ds.sizes)["view"] == len(views)
    refl = ds["reflectance"].values
    # statistics against a direct computation (in float64 on centred values, a different route)
    flat = refl.transpose(1, 0, 2, 3).reshape(nb, -1)
    valid = flat != -32768
    n = valid.sum(axis=1)
    assert n.min() > 2**21  # more than 2 M valid pixels in every band
    vals = np.where(valid, flat, 0).astype(np.float64)
    mean = vals.sum(axis=1) / n
    std = np.sqrt((np.where(valid, flat - mean[:, None], 0.0) ** 2).sum(axis=1) / n)
    np.testing.assert_allclose(ds["band_mean"].values, mean, rtol=1e-6)
    np.testing.assert_allclose(ds["band_std"].values, std, rtol=1e-5)
    assert np.isfinite(ds["band_std"].values).all()
    # every view is its tile's window (revisits share rasters, so equal views share bytes)
    import rasterio
    from rasterio.windows import Window

    from spectralearth.catalog import read_item_dicts

    items = read_item_dicts(catalog)
    for v in views.iloc[:: max(1, len(views) // 12)].itertuples():
        with rasterio.open(items[v.tile]["assets"]["spectral_image"]["href"]) as src:
            expected = src.read(indexes=list(SPECTRALEARTH_BANDS), window=Window(v.col0, v.row0, 128, 128))
        np.testing.assert_array_equal(refl[v.view], expected, err_msg=f"view {v.view} ({v.id})")
