"""Pixel-exact alignment of label rasters with patch grids, within and across CRSs.

* A raster in the patch's own UTM grid holding known windows gives those windows back.
* A finer raster in another CRS (EPSG:3035 / EPSG:5070), built by sampling known patch
  windows at its pixel centres, maps back onto the patch grids exactly: its pixels
  (<= 20 m) are small enough that the nearest one to each 30 m patch-pixel centre lies
  inside that patch pixel.
* For the real grids (CORINE 100 m in EPSG:3035, CDL/NLCD 30 m in EPSG:5070) each patch
  pixel takes the raster pixel that contains its centre, computed here independently
  with pyproj (the two transforms agree to ~1e-3 source pixels; only centres that close
  to a pixel edge may differ).
"""

from __future__ import annotations

import numpy as np
import pyproj
import pytest
import rasterio
from rasterio.transform import from_origin

from spectralearth.pipelines.labels import label_patch

PX, RES = 128, 30.0
SIDE = PX * RES


def _write(path, data, *, epsg, x0, y0, res, nodata=0):
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1, dtype=data.dtype,
                       crs=f"EPSG:{epsg}", transform=from_origin(x0, y0, res, res), nodata=nodata, tiled=True,
                       blockxsize=256, blockysize=256, compress="deflate") as ds:
        ds.write(data, 1)
    return str(path)


def _known_windows(n: int, seed: int) -> np.ndarray:
    """Windows of codes 1..250 in blocks of 1-16 px (edges everywhere), never 0 (no data)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, PX, PX), np.uint8)
    for k in range(n):
        b = int(rng.choice([1, 3, 16]))
        blocks = rng.integers(1, 251, (PX // b + 1, PX // b + 1), dtype=np.uint8)
        out[k] = np.kron(blocks, np.ones((b, b), np.uint8))[:PX, :PX]
    return out


def _grid(epsg: int, lon: float, lat: float) -> tuple[float, float]:
    x, y = pyproj.Transformer.from_crs(4326, epsg, always_xy=True).transform(lon, lat)
    return float(np.floor(x / RES) * RES), float(np.ceil(y / RES) * RES)


def test_same_crs_windows_map_back_exactly(tmp_path):
    epsg = 32633
    gx, gy = _grid(epsg, 15.0, 50.0)
    h, w = 700, 900
    raster = np.random.default_rng(0).integers(1, 251, (h, w), dtype=np.uint8)
    wins = _known_windows(3, seed=1)
    offsets = [(5, 7), (300, 511), (560, 250)]
    for (r, c), win in zip(offsets, wins, strict=True):
        raster[r: r + PX, c: c + PX] = win
    path = _write(tmp_path / "utm.tif", raster, epsg=epsg, x0=gx, y0=gy, res=RES)
    with rasterio.open(path) as ds:
        for (r, c), win in zip(offsets, wins, strict=True):
            codes, valid, touched = label_patch([ds], epsg=epsg, x0=gx + c * RES, y0=gy - r * RES, px=PX)
            assert touched and valid.all()
            np.testing.assert_array_equal(codes, win)
        # a patch hanging over the raster's right edge: valid exactly where the raster is
        codes, valid, touched = label_patch([ds], epsg=epsg, x0=gx + (w - 40) * RES, y0=gy - 100 * RES, px=PX)
        assert touched and valid[:, :40].all() and not valid[:, 40:].any()
        np.testing.assert_array_equal(codes[:, :40], raster[100: 100 + PX, w - 40:].astype(np.int32))
        # a patch far away: untouched
        _, valid, touched = label_patch([ds], epsg=epsg, x0=gx + 10 * w * RES, y0=gy, px=PX)
        assert not touched and not valid.any()


def _sampled_raster(patches, wins, *, epsg: int, res: float):
    """A raster in ``epsg`` whose pixels take the value of the patch pixel containing their centre."""
    corners = []
    for p_epsg, x0, y0 in patches:
        t = pyproj.Transformer.from_crs(p_epsg, epsg, always_xy=True)
        xs = np.array([x0, x0 + SIDE, x0, x0 + SIDE])
        ys = np.array([y0, y0, y0 - SIDE, y0 - SIDE])
        corners.append(np.column_stack(t.transform(xs, ys)))
    c = np.concatenate(corners)
    left, right = np.floor(c[:, 0].min() / res) * res - 10 * res, np.ceil(c[:, 0].max() / res) * res + 10 * res
    bottom, top = np.floor(c[:, 1].min() / res) * res - 10 * res, np.ceil(c[:, 1].max() / res) * res + 10 * res
    w, h = int(round((right - left) / res)), int(round((top - bottom) / res))
    out = np.zeros((h, w), np.uint8)
    for (p_epsg, x0, y0), win, cc in zip(patches, wins, corners, strict=True):
        c0, c1 = int((cc[:, 0].min() - left) // res) - 2, int((cc[:, 0].max() - left) // res) + 3
        r0, r1 = int((top - cc[:, 1].max()) // res) - 2, int((top - cc[:, 1].min()) // res) + 3
        gx, gy = np.meshgrid(left + (np.arange(c0, c1) + 0.5) * res, top - (np.arange(r0, r1) + 0.5) * res)
        px_, py_ = pyproj.Transformer.from_crs(epsg, p_epsg, always_xy=True).transform(gx, gy)
        col = np.floor((px_ - x0) / RES).astype(int)
        row = np.floor((y0 - py_) / RES).astype(int)
        inside = (col >= 0) & (col < PX) & (row >= 0) & (row < PX)
        sub = out[r0:r1, c0:c1]
        assert not sub[inside].any(), "test patches must not overlap"
        sub[inside] = win[row[inside], col[inside]]
    return out, left, top


@pytest.mark.parametrize("epsg,res,places", [
    # two UTM zones either side of 12 E (CORINE-like LAEA Europe)
    (3035, 10.0, [(32632, 11.93, 48.2), (32633, 12.02, 48.2), (32633, 12.03, 48.12)]),
    # two UTM zones either side of 96 W (CDL/NLCD-like CONUS Albers)
    (5070, 20.0, [(32614, -96.05, 38.0), (32615, -95.97, 38.03)]),
])
def test_windows_map_back_exactly_across_crs(tmp_path, epsg, res, places):
    patches = [(p, *_grid(p, lon, lat)) for p, lon, lat in places]
    wins = _known_windows(len(patches), seed=epsg)
    raster, left, top = _sampled_raster(patches, wins, epsg=epsg, res=res)
    path = _write(tmp_path / "fine.tif", raster, epsg=epsg, x0=left, y0=top, res=res)
    with rasterio.open(path) as ds:
        for (p, x0, y0), win in zip(patches, wins, strict=True):
            codes, valid, touched = label_patch([ds], epsg=p, x0=x0, y0=y0, px=PX)
            assert touched and valid.all()
            mismatch = int((codes != win).sum())
            assert mismatch == 0, f"EPSG:{p} patch: {mismatch} of {PX * PX} pixels differ"


@pytest.mark.parametrize("epsg,res,place", [
    (3035, 100.0, (32632, 9.5, 51.0)),   # CORINE grid
    (5070, 30.0, (32615, -93.2, 42.1)),  # CDL / NLCD grid
])
def test_real_grids_take_the_pixel_under_each_centre(tmp_path, epsg, res, place):
    p, lon, lat = place
    x0, y0 = _grid(p, lon, lat)
    t = pyproj.Transformer.from_crs(p, epsg, always_xy=True)
    cx, cy = t.transform(x0 + SIDE / 2, y0 - SIDE / 2)
    left, top = np.floor(cx / res) * res - SIDE - 3 * res, np.ceil(cy / res) * res + SIDE
    n = int(np.ceil(2 * SIDE / res)) + 10
    raster = np.random.default_rng(2).integers(1, 255, (n, n), dtype=np.uint8)
    path = _write(tmp_path / "grid.tif", raster, epsg=epsg, x0=left, y0=top, res=res)
    # expected: the raster pixel containing each patch-pixel centre
    gx, gy = np.meshgrid(x0 + (np.arange(PX) + 0.5) * RES, y0 - (np.arange(PX) + 0.5) * RES)
    sx, sy = t.transform(gx, gy)
    fr, fc = (top - sy) / res, (sx - left) / res
    expected = raster[np.floor(fr).astype(int), np.floor(fc).astype(int)]
    with rasterio.open(path) as ds:
        codes, valid, _ = label_patch([ds], epsg=p, x0=x0, y0=y0, px=PX)
    assert valid.all()
    # GDAL's and pyproj's transforms agree to ~1e-3 source pixels (a few cm): only a centre
    # that close to a raster pixel edge may land on the other side of it
    bad = codes != expected
    edge = np.minimum(np.abs(fr - np.round(fr)), np.abs(fc - np.round(fc)))
    assert bad.sum() <= 0.002 * PX * PX and np.all(edge[bad] < 2e-3), (int(bad.sum()), edge[bad])
    assert (edge < 2e-3).sum() < 0.01 * PX * PX


def test_several_rasters_fill_one_patch(tmp_path):
    epsg = 32633
    gx, gy = _grid(epsg, 15.0, 50.0)
    win = _known_windows(1, seed=4)[0]
    left = np.zeros((PX, PX), np.uint8)
    left[:, :70] = win[:, :70]
    right = win[:, 60:].copy()
    a = _write(tmp_path / "a.tif", left[:, :70], epsg=epsg, x0=gx, y0=gy, res=RES)
    b = _write(tmp_path / "b.tif", right, epsg=epsg, x0=gx + 60 * RES, y0=gy, res=RES)
    with rasterio.open(a) as da, rasterio.open(b) as db:
        codes, valid, _ = label_patch([da, db], epsg=epsg, x0=gx, y0=gy, px=PX)
    assert valid.all()
    np.testing.assert_array_equal(codes, win)
