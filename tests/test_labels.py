"""The label pairing job end to end: a 168-patch cube in two UTM zones + a CORINE-like product -> label cube.

Run on the local filesystem and on S3, on a real dask cluster. The expected labels are
computed here independently (pyproj: the 100 m raster pixel under each patch-pixel
centre, through the nomenclature); kept / dropped counts, splits, the class-presence
vectors and the visibility of the result are checked.
"""

from __future__ import annotations

import json

import numpy as np
import pyproj
import pytest
import rasterio
from rasterio.io import MemoryFile
from rasterio.transform import from_origin

from spectralearth.pipelines.labels import (
    KEPT,
    LOW_LABELLED,
    OUTSIDE,
    LabelCubeExistsError,
    LabelParams,
    label_cube,
    open_label_cube,
)
from spectralearth.pipelines.nomenclatures import IGNORE, load_nomenclature
from spectralearth.platform import storage
from spectralearth.platform.cluster import ClusterSpec
from spectralearth.platform.cube import CubeSpec, write_cube

PX, RES, SIDE = 128, 30.0, 3840.0
CLC_KEPT = [111, 112, 121, 211, 212, 213, 221, 222, 223, 231, 241, 242, 243, 244, 311, 312, 313, 321, 322, 323, 324,
            331, 333, 411, 412, 421, 422, 511, 512, 521, 522, 523]
CLC_IGNORED = [122, 123, 124, 131, 132, 133, 141, 142, 332, 334, 335, 423]


def _patches():
    """7 x 12 touching patches in each of two UTM zones either side of 12 E, plus one far outside."""
    rows = []
    for epsg, lon0 in ((32632, 11.45), (32633, 12.01)):
        x, y = pyproj.Transformer.from_crs(4326, epsg, always_xy=True).transform(lon0, 48.3)
        bx, by = np.floor(x / RES) * RES, np.ceil(y / RES) * RES
        rows += [(epsg, bx + j * SIDE, by - i * SIDE) for i in range(12) for j in range(7)]
    x, y = pyproj.Transformer.from_crs(4326, 32633, always_xy=True).transform(14.5, 46.0)
    rows[-1] = (32633, np.floor(x / RES) * RES, np.ceil(y / RES) * RES)  # far from the product: outside
    crs = np.array([r[0] for r in rows])
    x0, y0 = np.array([r[1] for r in rows]), np.array([r[2] for r in rows])
    lon, lat = np.zeros(len(rows)), np.zeros(len(rows))
    for e in np.unique(crs):
        s = crs == e
        lon[s], lat[s] = pyproj.Transformer.from_crs(int(e), 4326, always_xy=True).transform(x0[s] + SIDE / 2, y0[s] - SIDE / 2)
    return crs, x0, y0, lon, lat


def _product(crs, x0, y0, rng):
    """CLC codes at 100 m in EPSG:3035 over all but the last patch: blocks of kept and ignored codes, no-data holes."""
    cx, cy = [], []
    to_laea = {int(e): pyproj.Transformer.from_crs(int(e), 3035, always_xy=True) for e in np.unique(crs)}
    for e, x, y in zip(crs[:-1], x0[:-1], y0[:-1], strict=True):
        t = to_laea[int(e)]
        a, b = t.transform([x, x + SIDE, x, x + SIDE], [y, y, y - SIDE, y - SIDE])
        cx += list(a)
        cy += list(b)
    left, top = np.floor(min(cx) / 100) * 100 - 1000, np.ceil(max(cy) / 100) * 100 + 1000
    w, h = int((max(cx) - left) // 100) + 11, int((top - min(cy)) // 100) + 11
    blocks = rng.choice(np.array(CLC_KEPT + CLC_IGNORED), (h // 7 + 1, w // 7 + 1))
    data = np.kron(blocks, np.ones((7, 7), int))[:h, :w].astype(np.uint16)
    data = np.where(rng.random((h, w)) < 0.3, rng.choice(np.array(CLC_KEPT), (h, w)), data).astype(np.uint16)
    data[: h // 5, : w // 4] = 0  # no data: patches there have too little labelled area
    data[h // 2: h // 2 + 60, w // 2: w // 2 + 60] = 123  # ignored code (port areas)
    return data, left, top


def _write_product(url, data, left, top, split_col):
    """Two GeoTIFFs (left and right part, same grid) in the folder ``url``."""
    for name, part, x in (("clc-a.tif", data[:, :split_col], left), ("clc-b.tif", data[:, split_col:], left + split_col * 100)):
        with MemoryFile() as mem:
            with mem.open(driver="GTiff", width=part.shape[1], height=part.shape[0], count=1, dtype="uint16", crs="EPSG:3035",
                          transform=from_origin(x, top, 100, 100), nodata=0, tiled=True, blockxsize=256, blockysize=256,
                          compress="deflate") as ds:
                ds.write(part, 1)
            storage.atomic_write_bytes(storage.join(url, name), mem.read(), None)


def _expected(data, left, top, crs, x0, y0, nom):
    """Independently: the class of the 100 m pixel under each patch-pixel centre, and which pixels are ambiguous."""
    n = len(crs)
    out = np.full((n, PX, PX), IGNORE, np.uint8)
    near_edge = np.zeros((n, PX, PX), bool)
    off = np.arange(PX) + 0.5
    to_laea = {int(e): pyproj.Transformer.from_crs(int(e), 3035, always_xy=True) for e in np.unique(crs)}
    for k in range(n):
        t = to_laea[int(crs[k])]
        gx, gy = np.meshgrid(x0[k] + off * RES, y0[k] - off * RES)
        sx, sy = t.transform(gx, gy)
        fr, fc = (top - sy) / 100, (sx - left) / 100
        r, c = np.floor(fr).astype(int), np.floor(fc).astype(int)
        inside = (r >= 0) & (r < data.shape[0]) & (c >= 0) & (c < data.shape[1])
        codes = np.zeros((PX, PX), np.int64)
        codes[inside] = data[r[inside], c[inside]]
        out[k] = nom.apply(codes, inside & (codes != 0))
        near_edge[k] = np.minimum(np.abs(fr - np.round(fr)), np.abs(fc - np.round(fc))) < 2e-3
    return out, near_edge


@pytest.mark.slow
def test_label_job_matches_independent_labels(storage_root, test_secret):
    rng = np.random.default_rng(11)
    crs, x0, y0, lon, lat = _patches()
    n = len(crs)
    root = storage_root.url
    cube_url, prod_url = storage.join(root, "cube.zarr"), storage.join(root, "clc")
    spec = CubeSpec(n_views=n, n_patches=n, wavelength_nm=(500.0, 800.0), fwhm_nm=(8.0, 8.0), band_numbers=(40, 80))
    write_cube(cube_url, np.full((n, 2, PX, PX), 1000, np.int16), spec=spec, view_patch=np.arange(n),
               view_time=np.full(n, np.datetime64("2023-06-01T10:00:00")), patch_crs=crs, patch_x0=x0, patch_y0=y0,
               patch_lon=lon, patch_lat=lat)
    data, left, top = _product(crs, x0, y0, rng)
    _write_product(prod_url, data, left, top, split_col=data.shape[1] // 2 + 3)
    nom = load_nomenclature("corine19")
    expected, ambiguous = _expected(data, left, top, crs, x0, y0, nom)

    seg_url = storage.join(root, "labels-seg.zarr")
    cluster = ClusterSpec(kind="local", n_workers=2, memory_limit="2GB") if storage_root.kind == "local" else ClusterSpec(kind="sync")
    params = LabelParams(task="seg", min_labelled=0.5, patches_per_task=64, seed=3)
    report = label_cube(cube_url, prod_url, seg_url, nomenclature=nom, params=params, cluster=cluster)
    g = open_label_cube(seg_url)
    mask, status = np.asarray(g["mask"][:]), np.asarray(g["status"][:])
    labelled = (expected != IGNORE).mean(axis=(1, 2))
    exp_status = np.where(labelled >= 0.5, KEPT, LOW_LABELLED)
    exp_status[-1] = OUTSIDE
    decided = np.abs(labelled - 0.5) > 0.01  # patches not within 1 % of the threshold
    assert np.array_equal(status[decided], exp_status[decided])
    kept = status == KEPT
    assert report.kept == kept.sum() and report.dropped_outside == 1
    assert report.dropped_low_labelled == (status == LOW_LABELLED).sum() >= 5
    assert report.kept >= 120 and report.sources == 2 and report.patches == n
    # masks: identical wherever a centre is not within 1e-3 pixels of a raster pixel edge
    sure = ~ambiguous & kept[:, None, None]
    assert int((mask[sure] != expected[sure]).sum()) == 0
    assert ambiguous[kept].mean() < 0.01
    assert np.all(mask[~kept] == IGNORE)
    frac = np.asarray(g["class_fraction"][:])
    for k in np.flatnonzero(kept)[:20]:
        ok = expected[k] != IGNORE
        ref = np.bincount(expected[k][ok], minlength=19) / ok.sum()
        np.testing.assert_allclose(frac[k], ref, atol=2e-3)
    # splits: only kept patches, 75/10/15, the blocked one without touching pairs across splits
    sr, sb = np.asarray(g["split_random"][:]), np.asarray(g["split_blocked"][:])
    assert np.all(sr[~kept] == -1) and np.all(sr[kept] >= 0)
    assert abs((sr == 0).sum() - 0.75 * kept.sum()) <= 1 and abs((sr == 2).sum() - 0.15 * kept.sum()) <= 1
    assert np.all(sb[~kept] == -1) and np.bincount(sb[sb >= 0], minlength=3).min() > 0
    assert report.guards == int(((sb == -1) & kept).sum())
    assert g.attrs["classes"] == list(nom.classes) and g.attrs["task"] == "seg"

    # multilabel: presence = class fraction >= min_area, nothing else
    ml_url = storage.join(root, "labels-ml.zarr")
    ml = label_cube(cube_url, prod_url, ml_url, nomenclature=nom, cluster=ClusterSpec(kind="sync"),
                    params=LabelParams(task="multilabel", min_labelled=0.5, min_area=0.05, seed=3))
    h = open_label_cube(ml_url)
    assert "mask" not in h
    labels, mfrac = np.asarray(h["labels"][:]), np.asarray(h["class_fraction"][:])
    assert ml.kept == report.kept
    assert np.array_equal(labels.astype(bool), mfrac >= 0.05)
    assert labels[np.asarray(h["status"][:]) == KEPT].sum(axis=1).min() >= 1
    assert sum(ml.class_patches.values()) == labels.sum()
    np.testing.assert_array_equal(np.asarray(h["split_random"][:]), sr)  # same seed, same kept set: same split

    # a committed label cube is not replaced without overwrite; readers see plain xarray
    with pytest.raises(LabelCubeExistsError):
        label_cube(cube_url, prod_url, ml_url, nomenclature=nom, cluster=ClusterSpec(kind="sync"))
    import xarray as xr

    from spectralearth.platform.cube import open_store

    ds = xr.open_zarr(open_store(seg_url, read_only=True), consolidated=True)
    assert ds["mask"].dims == ("patch", "y", "x") and ds.sizes["patch"] == n
    fs, path = storage.filesystem(root)
    for p in fs.find(path):
        if p.endswith("zarr.json"):
            assert test_secret not in fs.cat_file(p).decode()


def test_bad_inputs_name_the_thing(tmp_path):
    n = 2
    spec = CubeSpec(n_views=n, n_patches=n, wavelength_nm=(500.0,), fwhm_nm=(8.0,), band_numbers=(40,))
    cube = str(tmp_path / "cube.zarr")
    write_cube(cube, np.zeros((n, 1, PX, PX), np.int16), spec=spec, view_patch=np.arange(n),
               view_time=np.full(n, np.datetime64("2023-06-01")), patch_crs=[32633] * n, patch_x0=[500010.0, 503850.0],
               patch_y0=[5300010.0] * n, patch_lon=[15.0, 15.05], patch_lat=[47.8] * n)
    nom = load_nomenclature("cdl")
    with pytest.raises(FileNotFoundError, match="nothing.tif: not found"):
        label_cube(cube, str(tmp_path / "nothing.tif"), str(tmp_path / "l.zarr"), nomenclature=nom)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="folder holds no raster"):
        label_cube(cube, str(tmp_path / "empty"), str(tmp_path / "l.zarr"), nomenclature=nom)
    (tmp_path / "broken.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(ValueError, match="broken.tif: not a readable raster"):
        label_cube(cube, str(tmp_path / "broken.tif"), str(tmp_path / "l.zarr"), nomenclature=nom)
    with rasterio.open(tmp_path / "nocrs.tif", "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8") as ds:
        ds.write(np.ones((1, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="nocrs.tif: raster has no CRS"):
        label_cube(cube, str(tmp_path / "nocrs.tif"), str(tmp_path / "l.zarr"), nomenclature=nom)
    with pytest.raises(ValueError, match="task must be 'seg' or 'multilabel'"):
        LabelParams(task="classify")
    with pytest.raises(FileNotFoundError, match="no committed label cube"):
        open_label_cube(str(tmp_path / "l.zarr"))
    assert not (tmp_path / "l.zarr").exists() or not (tmp_path / "l.zarr" / "zarr.json").exists()
    json.dumps(LabelParams().__dict__ | {"fractions": [0.75, 0.1, 0.15]})
