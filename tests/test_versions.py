"""Versions: create-only commits, pinned reads, old versions unchanged, xarray decoding, checksums."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from spectralearth.platform import storage
from spectralearth.platform.cube import (
    CubeNotCommittedError,
    VersionNotFoundError,
    cube_checksums,
    list_versions,
    locate_version,
    put_if_absent,
    resolve_version,
    verify_version,
)
from spectralearth.platform.reader import ChunkCorruptError
from spectralearth.platform.samplecube import SampleCube, write_sample_cube

CLI = os.path.join(os.path.dirname(sys.executable), "spectralearth")
SMALL = SampleCube(n_patches=5, patch_px=32, bands=tuple(range(1, 21)), seed=2)


def test_create_only_write_has_exactly_one_winner(storage_root):
    url = storage.join(storage_root.url, "race", "00000001.json")
    opts = storage_root.storage_options
    with ThreadPoolExecutor(12) as pool:
        won = list(pool.map(lambda i: put_if_absent(url, json.dumps({"writer": i}).encode(), opts), range(12)))
    assert won.count(True) == 1
    assert json.loads(storage.read_bytes(url, opts))["writer"] == won.index(True)
    assert put_if_absent(url, b"{}", opts) is False
    fs, path = storage.filesystem(storage.join(storage_root.url, "race"), opts)
    fs.invalidate_cache()
    assert [p.rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)] == ["00000001.json"]  # no temporary left


def test_versions_are_pinned_and_old_ones_stay_byte_for_byte(storage_root):
    from spectralearth.platform import open_cube  # exported at the top of the platform

    url = storage.join(storage_root.url, "cube")
    opts = storage_root.storage_options
    with pytest.raises(CubeNotCommittedError):
        open_cube(url, storage_options=opts)
    write_sample_cube(url, SMALL, storage_options=opts)
    before = cube_checksums(url, storage_options=opts)
    v1 = open_cube(url, storage_options=opts, decode=False)["reflectance"].values
    write_sample_cube(url, SampleCube(n_patches=3, patch_px=32, bands=tuple(range(1, 21)), seed=9), storage_options=opts)
    after = cube_checksums(url, storage_options=opts)
    assert {k: after[k] for k in before} == before  # nothing of v1 was rewritten or removed
    versions = list_versions(url, storage_options=opts)
    assert [(v.id, v.parent) for v in versions] == [("v1", None), ("v2", "v1")]
    assert resolve_version(url, storage_options=opts).id == "v2"
    latest = open_cube(url, storage_options=opts)
    assert latest.attrs["spectralearth:version"] == "v2" and latest.sizes["patch"] == 3
    pinned = open_cube(url, "v1", storage_options=opts, decode=False)
    np.testing.assert_array_equal(pinned["reflectance"].values, v1)
    with pytest.raises(VersionNotFoundError, match="no version v7"):
        open_cube(url, "v7", storage_options=opts)
    with pytest.raises(ValueError, match="not a version id"):
        open_cube(url, "latest-ish", storage_options=opts)

    res = subprocess.run([CLI, "versions", url, "--json"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert res.returncode == 0, res.stderr[-2000:]
    listed = json.loads(res.stdout)["versions"]
    assert [v["id"] for v in listed] == ["v1", "v2"] and listed[1]["counts"]["views"] == latest.sizes["view"]


def test_xarray_native_decoding(tmp_path):
    from spectralearth.platform.cube import open_cube

    url = str(tmp_path / "cube")
    write_sample_cube(url, SMALL)
    ds = open_cube(url)
    raw = open_cube(url, decode=False)["reflectance"].values
    refl = ds["reflectance"]
    assert refl.dtype == np.float32 and refl.dims == ("view", "band", "y", "x")
    assert refl.encoding["scale_factor"].dtype == np.float32 and refl.encoding["_FillValue"] == -32768
    assert refl.attrs["units"] == "1" and refl.attrs["long_name"] == "surface reflectance"
    np.testing.assert_allclose(refl.values, np.where(raw == -32768, np.nan, raw.astype(np.float32) * np.float32(1e-4)))
    assert set(ds["wavelength"].dims) == {"band"} and "wavelength" in ds.coords and "fwhm" in ds.coords
    assert ds["wavelength"].attrs["units"] == "nm"
    assert np.issubdtype(ds["view_time"].dtype, np.datetime64) and "view_time" in ds.coords
    assert ds["view_time"].dims == ("view",)
    assert ds["view_time"].values.min() >= np.datetime64("2022-04-01")
    # selections by coordinate work as with any xarray dataset
    vis = ds.reflectance.sel(band=ds.band[(ds.wavelength > 400) & (ds.wavelength < 700)])
    assert vis.sizes["band"] > 0


def test_flipped_byte_is_named_by_patch_view_and_key(storage_root):
    from spectralearth.platform.cube import open_cube
    from spectralearth.platform.stream import PatchStream

    url = storage.join(storage_root.url, "cube")
    opts = storage_root.storage_options
    write_sample_cube(url, SMALL, storage_options=opts)
    loc = locate_version(url, storage_options=opts)
    view = 3
    patch = int(loc.view_patch[view])
    key = loc.chunk_key(view)
    fs, root = storage.filesystem(url, opts)
    blob = bytearray(fs.cat_file(f"{root}/{key}"))
    blob[len(blob) // 3] ^= 0x04  # still a valid blosc frame of the right size
    fs.pipe_file(f"{root}/{key}", bytes(blob))

    with pytest.raises(ChunkCorruptError, match=rf"patch {patch}, view {view}: .*{key}.*CRC-32C") as err:
        open_cube(url, storage_options=opts)["reflectance"][view].values
    assert (err.value.patch, err.value.view, err.value.key) == (patch, view, key)
    open_cube(url, storage_options=opts)["reflectance"][view + 1].values  # the others read
    with pytest.raises(ChunkCorruptError, match=rf"patch {patch}, view {view}: .*{key}.*CRC-32C"):
        list(PatchStream(url, storage_options=opts, every_view=True, shuffle=False))
    report = verify_version(url, storage_options=opts)
    assert [(b["patch"], b["view"], b["key"]) for b in report["bad"]] == [(patch, view, key)]
    res = subprocess.run([CLI, "-q", "versions", url, "--verify", "v1"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert res.returncode == 1 and key in res.stderr and f"view {view}" in res.stderr
