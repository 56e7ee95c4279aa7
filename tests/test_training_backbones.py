"""Backbones: the adapter's layout and size, output shapes of every body, any band count, export round trip."""

from __future__ import annotations

import json

import pytest
import torch

from spectralearth.training import SpectralAdapter, build_backbone, export_encoder, load_encoder


def test_spectral_adapter_layout_and_size():
    adapter = SpectralAdapter()
    convs = [m for m in adapter.modules() if isinstance(m, torch.nn.Conv3d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (1, 32, (7, 1, 1), (5, 1, 1)), (32, 64, (7, 1, 1), (5, 1, 1)), (64, 128, (5, 1, 1), (3, 1, 1))]
    assert sum(isinstance(m, torch.nn.BatchNorm3d) for m in adapter.modules()) == 3
    assert sum(p.numel() for p in adapter.parameters()) == 56_192
    y = adapter(torch.randn(2, 202, 16, 16))
    assert y.shape == (2, 128, 16, 16)


def test_adapter_mixes_only_along_the_band_axis():
    """A change at one pixel changes that pixel's features and no other (no spatial kernel)."""
    adapter = SpectralAdapter().eval()
    x = torch.randn(1, 202, 8, 8)
    x2 = x.clone()
    x2[0, :, 3, 5] += 1.0
    with torch.no_grad():
        d = (adapter(x2) - adapter(x)).abs().sum(dim=1)[0]
    assert d[3, 5] > 0
    d[3, 5] = 0
    assert torch.count_nonzero(d) == 0


@pytest.mark.parametrize("name, params", [("resnet50", 23_575_168), ("vit_s", 22_531_328), ("vit_b", 87_473_792),
                                          ("vit_l", 305_516_416)])
def test_full_size_parameter_counts(name, params):
    with torch.device("meta"):  # full size without allocating or initialising the weights
        model = build_backbone(name, 202)
    assert sum(p.numel() for p in model.parameters()) == params
    if name.startswith("vit"):
        assert model.pos_embed.shape[1] == 1 + 32 * 32


@pytest.mark.parametrize("name, kw, channels, grid", [
    ("adapter", {}, 128, 32),
    ("resnet50", {"depths": (1, 1, 1, 1)}, 2048, 2),
    ("vit_s", {"depth": 1}, 384, 8),
    ("vit_b", {"depth": 1}, 768, 8),
    ("vit_l", {"depth": 1}, 1024, 8),
])
def test_backbone_shapes(name, kw, channels, grid):
    model = build_backbone(name, 202, **kw).eval()
    assert isinstance(model.adapter, SpectralAdapter) and model.out_channels == channels
    with torch.no_grad():
        y = model(torch.randn(2, 202, 32, 32))
        assert y.shape == (2, channels, grid, grid) and torch.isfinite(y).all()
        assert model.embed(torch.randn(1, 202, 32, 32)).shape == (1, channels)


def test_vit_full_patch_is_1024_tokens():
    model = build_backbone("vit_s", 202, depth=1)
    tokens, grid = model.patch_tokens(torch.randn(1, 202, 128, 128))
    assert tokens.shape == (1, 1024, 384) and grid == (32, 32)


@pytest.mark.parametrize("bands", [1, 12, 74, 75, 218, 224])
def test_any_band_count(bands):
    model = build_backbone("resnet50", bands, depths=(1, 1), widths=(8, 16)).eval()
    with torch.no_grad():
        assert model(torch.randn(1, bands, 16, 16)).shape == (1, 64, 4, 4)


def test_bad_input_names_the_problem():
    model = build_backbone("vit_s", 202, depth=1)
    with pytest.raises(ValueError, match=r"built for \(batch, 202"):
        model(torch.randn(1, 100, 32, 32))
    with pytest.raises(ValueError, match="multiple of the 4 px"):
        model(torch.randn(1, 202, 30, 30))
    with pytest.raises(ValueError, match="unknown backbone 'vit_h'"):
        build_backbone("vit_h", 202)
    with pytest.raises(ValueError, match="backbone 'adapter'"):
        build_backbone("adapter", 202, depth=3)


@pytest.mark.parametrize("name, kw", [("vit_s", {"depth": 2, "embed_dim": 48, "num_heads": 3}),
                                      ("resnet50", {"depths": (1, 2), "widths": (8, 16)})])
def test_export_reloads_to_identical_outputs(tmp_path, name, kw):
    model = build_backbone(name, 202, **kw)
    model.train()
    model(torch.randn(4, 202, 16, 16))  # move the batch-norm running statistics off their initial values
    model.eval()
    out = export_encoder(model, tmp_path / "enc", extra={"bands": list(range(202))})
    assert json.loads((out / "encoder.json").read_text())["bands"] == list(range(202))
    loaded = load_encoder(out)
    assert type(loaded) is type(model) and not loaded.training
    x = torch.randn(2, 202, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    (out / "encoder.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="encoder.safetensors is missing"):
        load_encoder(out)
