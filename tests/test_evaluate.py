"""Evaluation protocols: metrics against hand-worked cases; what each protocol trains; learning on a real label cube.

The label cube comes from the real pairing job over a small cube whose spectra follow its
labels (corn and soybeans have different spectra). The protocol tests use a small encoder
that keeps the backbone contract (``.adapter``, ``.out_channels``, feature maps); the
project's spectral adapter runs every protocol in tests/test_labels_e2e.py.
"""

from __future__ import annotations

import shutil

import json

import numpy as np
import pyproj
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from spectralearth.pipelines.labels import LabelParams, label_cube
from spectralearth.pipelines.nomenclatures import IGNORE, load_nomenclature
from spectralearth.platform.cluster import ClusterSpec
from spectralearth.platform.cube import CubeSpec, write_cube
from spectralearth.training import build_backbone
from spectralearth.training.evaluate import (
    EvalParams,
    LabelledPatches,
    confusion_matrix,
    evaluate_encoder,
    multilabel_f1,
    segmentation_scores,
)

PX, RES, BANDS = 128, 30.0, 8


def test_multilabel_f1_by_hand():
    t = np.array([[1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 1, 0]], bool)
    p = np.array([[1, 0, 0, 0], [1, 1, 1, 0], [0, 1, 1, 0]], bool)
    # per class tp/fp/fn: c0 2/0/0, c1 1/1/0, c2 1/1/1, c3 absent
    f = multilabel_f1(t, p)
    assert f["f1_micro"] == pytest.approx(2 * 4 / (2 * 4 + 2 + 1))
    assert f["f1_macro"] == pytest.approx(np.mean([1.0, 2 / 3, 2 / 4]))
    assert multilabel_f1(t, t) == {"f1_micro": 1.0, "f1_macro": 1.0}


def test_confusion_and_miou_by_hand():
    ref = np.array([[0, 0, 1, IGNORE], [1, 1, 2, 2]])
    pred = np.array([[0, 1, 1, 2], [1, 0, 2, 0]])
    cm = confusion_matrix(ref, pred, 4)
    assert cm.sum() == 7 and cm[0, 0] == 1 and cm[0, 1] == 1 and cm[1, 1] == 2 and cm[1, 0] == 1 and cm[2, 2] == 1
    s = segmentation_scores(cm)
    # IoU = tp / (reference + predicted - tp): c0 1/(2+3-1), c1 2/(3+3-2), c2 1/(2+1-1); c3 never seen
    assert s["miou"] == pytest.approx(np.mean([1 / 4, 1 / 2, 1 / 2]))
    assert s["accuracy"] == pytest.approx(4 / 7) and s["iou"][3] is None


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """40 patches in UTM 33N whose spectra follow a CDL-like raster (corn / soybeans / no data); seg and multilabel cubes."""
    root = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(0)
    n = 40
    x, y = pyproj.Transformer.from_crs(4326, 32633, always_xy=True).transform(15.0, 48.0)
    bx, by = np.floor(x / RES) * RES, np.ceil(y / RES) * RES
    cols = [(k % 10) * 2 * PX for k in range(n)]
    rows = [(k // 10) * 2 * PX for k in range(n)]
    raster = np.zeros((8 * PX, 20 * PX), np.uint8)
    for k in range(n):
        share = rng.choice([0.0, 0.3, 0.7, 1.0])  # share of soybeans: patches of one crop, or both
        blocks = np.where(rng.random((8, 8)) < share, 5, 1).astype(np.uint8)
        blocks[rng.random((8, 8)) < 0.05] = 0
        raster[rows[k]: rows[k] + PX, cols[k]: cols[k] + PX] = np.kron(blocks, np.ones((16, 16), np.uint8))
    with rasterio.open(root / "cdl.tif", "w", driver="GTiff", width=raster.shape[1], height=raster.shape[0], count=1,
                       dtype="uint8", crs="EPSG:32633", transform=from_origin(bx, by, RES, RES), nodata=0) as ds:
        ds.write(raster, 1)
    spectra = {0: np.full(BANDS, 600.0), 1: np.linspace(400, 3000, BANDS), 5: np.linspace(2600, 900, BANDS)}
    views = np.empty((n, BANDS, PX, PX), np.int16)
    for k in range(n):
        win = raster[rows[k]: rows[k] + PX, cols[k]: cols[k] + PX]
        img = np.stack([spectra[int(c)] for c in (0, 1, 5)])[np.searchsorted([0, 1, 5], win)]  # (PX, PX, BANDS)
        views[k] = np.clip(img.transpose(2, 0, 1) + rng.normal(0, 150, img.transpose(2, 0, 1).shape), 0, 9000)
    x0 = bx + np.array(cols) * RES
    y0 = by - np.array(rows) * RES
    lon, lat = pyproj.Transformer.from_crs(32633, 4326, always_xy=True).transform(x0 + 1920, y0 - 1920)
    spec = CubeSpec(n_views=n, n_patches=n, wavelength_nm=tuple(np.linspace(450, 2400, BANDS)),
                    fwhm_nm=(10.0,) * BANDS, band_numbers=tuple(range(1, BANDS + 1)))
    cube = str(root / "cube.zarr")
    write_cube(cube, views, spec=spec, view_patch=np.arange(n), view_time=np.full(n, np.datetime64("2023-07-01")),
               patch_crs=np.full(n, 32633), patch_x0=x0, patch_y0=y0, patch_lon=lon, patch_lat=lat)
    nom = load_nomenclature("cdl")
    out = {"cube": cube}
    for task in ("seg", "multilabel"):
        out[task] = str(root / f"labels-{task}.zarr")
        label_cube(cube, str(root / "cdl.tif"), out[task], nomenclature=nom, cluster=ClusterSpec(kind="sync"),
                   params=LabelParams(task=task, min_labelled=0.5, min_area=0.05, seed=1))
    yield out
    shutil.rmtree(root, ignore_errors=True)  # module data goes once the module is done (CI disk)


def test_dataset_reads_views_and_labels(labelled):
    ds = LabelledPatches(labelled["cube"], labelled["seg"], "train")
    assert len(ds) == 30 and ds.task == "seg" and ds.classes[0] == "Corn"
    x, y = ds[0]
    assert x.shape == (BANDS, PX, PX) and x.dtype == torch.float32 and y.shape == (PX, PX) and y.dtype == torch.int64
    assert abs(float(x.mean())) < 1.5 and set(np.unique(y.numpy())) <= {0, 4, IGNORE}
    ml = LabelledPatches(labelled["cube"], labelled["multilabel"], "test")
    _, v = ml[0]
    assert v.shape == (14,) and set(np.unique(v.numpy())) <= {0.0, 1.0} and v[[0, 4]].sum() >= 1


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before, module, prefix=""):
    after = module.state_dict()
    return {k for k, v in before.items() if k.startswith(prefix) and not torch.equal(v, after[k])}


class TinyEncoder(torch.nn.Module):
    """A conforming encoder, small enough for CPU tests: a per-pixel spectral adapter, then a strided body."""

    out_channels = 16

    def __init__(self, bands: int = BANDS):
        super().__init__()
        nn = torch.nn
        self.adapter = nn.Sequential(nn.Conv2d(bands, 16, 1), nn.BatchNorm2d(16), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU())

    def forward(self, x):
        return self.body(self.adapter(x))


@pytest.mark.slow
def test_protocols_train_only_their_parts_and_learn(labelled):
    made = []

    def factory():
        made.append(TinyEncoder())
        return made[-1]

    torch.manual_seed(0)
    initial = _snapshot(TinyEncoder())
    params = EvalParams(epochs=3, batch_size=6, crop_px=64, lr_head=1e-2, lr_encoder=3e-3, device="cpu", seed=0)
    res = evaluate_encoder(labelled["cube"], labelled["seg"], encoder=factory, params=params, encoder_name="tiny")
    linear, finetune, adapter = made  # each built after the same seeding: all start from `initial`
    assert not _changed(initial, linear), "linear probing must leave the encoder (and its batch-norm statistics) alone"
    assert _changed(initial, finetune, "body.") and _changed(initial, finetune, "adapter.")
    assert _changed(initial, adapter, "adapter.") and not _changed(initial, adapter, "body.")
    p = res["protocols"]
    assert p["linear"]["trainable_params"] < p["adapter"]["trainable_params"] < p["finetune"]["trainable_params"]
    assert res["samples"] == {"train": 30, "val": 4, "test": 6}
    for name, r in p.items():
        assert 0.0 <= r["test"]["miou"] <= 1.0 and r["steps"] == 3 * 5, name
        assert np.mean(r["losses"][-5:]) < np.mean(r["losses"][:5]), name
    # two classes with different spectra, about half of the pixels each: predicting one class everywhere
    # scores a mIoU near 0.27; trained features do clearly better within 15 steps
    assert max(p["finetune"]["test"]["miou"], p["adapter"]["test"]["miou"]) > 0.5, {k: r["test"] for k, r in p.items()}


@pytest.mark.slow
def test_multilabel_protocols(labelled, tmp_path):
    params = EvalParams(epochs=3, batch_size=6, lr_head=1e-2, lr_encoder=3e-3, device="cpu", seed=0)
    out = tmp_path / "res.json"
    torch.manual_seed(0)
    res = evaluate_encoder(labelled["cube"], labelled["multilabel"], encoder=TinyEncoder(), params=params,
                           encoder_name="tiny", out_json=str(out))
    assert json.loads(out.read_text())["protocols"].keys() == {"linear", "finetune", "adapter"}
    for name, r in res["protocols"].items():
        assert 0.0 <= r["test"]["f1_macro"] <= 1.0 and 0.0 <= r["test"]["f1_micro"] <= 1.0, name
        assert np.mean(r["losses"][-5:]) < np.mean(r["losses"][:5]), name
    assert max(r["test"]["f1_micro"] for r in res["protocols"].values()) > 0.7
    assert res["protocols"]["adapter"]["trainable_params"] == sum(p.numel() for p in TinyEncoder().adapter.parameters()) + 16 * 14 + 14


def test_bad_arguments(labelled):
    with pytest.raises(ValueError, match="unknown protocol"):
        evaluate_encoder(labelled["cube"], labelled["seg"], encoder=build_backbone("adapter", BANDS), protocols=["probe"])
    with pytest.raises(ValueError, match="split must be"):
        EvalParams(split="spatial")
    with pytest.raises(ValueError, match="needs an encoder with an .adapter"):
        evaluate_encoder(labelled["cube"], labelled["seg"], encoder=_NoAdapter(), protocols=["adapter"],
                         params=EvalParams(epochs=1, device="cpu"))


class _NoAdapter(torch.nn.Module):
    """A conforming feature extractor without a spectral adapter."""

    out_channels = 4

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(BANDS, 4, 1)

    def forward(self, x):
        return self.conv(x)
