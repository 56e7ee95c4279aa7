"""Synthetic label products: the real products' grids, their codes, and land cover that follows the archive's surface."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import numpy as np
import pyproj
import pytest
import rasterio

from spectralearth.catalog.synth import SynthConfig, plan_archive
from spectralearth.catalog.synth.labels import LABEL_PRODUCTS, material_map, synthesize_label_product
from spectralearth.catalog.synth.render import scene_layers
from spectralearth.pipelines.nomenclatures import IGNORE, load_nomenclature


@pytest.mark.parametrize("product,epsg,res", [("corine", 3035, 100.0), ("cdl", 5070, 30.0), ("nlcd", 5070, 30.0)])
def test_products_in_the_real_grids(tmp_path, product, epsg, res):
    lon = np.array([10.0, 10.05, -93.0])
    lat = np.array([50.0, 50.02, 41.0])
    out = synthesize_label_product(str(tmp_path / product), product=product, lon=lon, lat=lat, seed=4, margin_m=2500.0)
    assert out["epsg"] == epsg and len(out["rasters"]) == 2  # two places far apart: two rasters
    kind = LABEL_PRODUCTS[product]
    allowed = {c for codes in kind.codes for c in codes} | {kind.nodata}
    nom = load_nomenclature(kind.nomenclature)
    to_product = pyproj.Transformer.from_crs(4326, epsg, always_xy=True)
    mapped = 0.0
    for r in out["rasters"]:
        with rasterio.open(tmp_path / product / r["name"]) as ds:
            assert ds.crs.to_epsg() == epsg and ds.res == (res, res)
            t = ds.transform
            assert t.c % res == 0 and t.f % res == 0, "pixel corners on multiples of the pixel size"
            data = ds.read(1)
            assert set(np.unique(data).tolist()) <= allowed
            assert ds.nodata == kind.nodata and (data == kind.nodata).mean() < 0.6
            mapped += float((nom.apply(data) != IGNORE).mean())
            x, y = to_product.transform(lon, lat)
            inside = [(ds.bounds.left + 2000 < a < ds.bounds.right - 2000) and (ds.bounds.bottom + 2000 < b < ds.bounds.top - 2000)
                      for a, b in zip(x, y, strict=True)]
            assert any(inside)
    assert mapped / len(out["rasters"]) > 0.2, "most of the product should map to classes"
    again = synthesize_label_product(str(tmp_path / "again"), product=product, lon=lon, lat=lat, seed=4, margin_m=2500.0)
    for a, b in zip(out["rasters"], again["rasters"], strict=True):
        with rasterio.open(tmp_path / product / a["name"]) as da, rasterio.open(tmp_path / "again" / b["name"]) as db:
            assert np.array_equal(da.read(1), db.read(1)), "same seed, same product"


def test_land_cover_follows_the_synthetic_archive():
    """The product's dominant material is the one of the archive's own scene (on a date without seasonal shift)."""
    spec = plan_archive(SynthConfig(tiles=2, tile_size=96, seed=4))[0]
    doy105 = datetime(spec.start.year, 1, 1, 10, tzinfo=timezone.utc) + timedelta(days=104)  # cos(2 pi (105 - 196) / 365) ~ 0
    spec = dataclasses.replace(spec, start=doy105)
    scene = scene_layers(spec)
    a, _, c, _, e, f = spec.transform
    xs = c + a * (np.arange(spec.width) + 0.5)
    ys = f + e * (np.arange(spec.height) + 0.5)
    gx, gy = np.meshgrid(xs, ys)
    mat = material_map(gx.ravel(), gy.ravel(), zone_epsg=spec.epsg, seed=spec.world_seed).reshape(gx.shape)
    ref = scene.abundance.argmax(axis=0)
    inside = scene.inside
    agree = float((mat[inside] == ref[inside]).mean())
    other_seed = material_map(gx.ravel(), gy.ravel(), zone_epsg=spec.epsg, seed=spec.world_seed + 1).reshape(gx.shape)
    chance = float((other_seed[inside] == ref[inside]).mean())
    assert len(np.unique(ref[inside])) >= 2
    assert agree > 0.99 and chance < 0.9, (agree, chance)
