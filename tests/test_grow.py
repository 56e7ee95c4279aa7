"""A grown archive: the rebuild writes only the new views; the old version stays byte for byte."""

from __future__ import annotations

import glob
import os
import re

import numpy as np
import pytest

from spectralearth.pipelines.build import BuildConfig, build
from spectralearth.pipelines.plan import PlanParams
from spectralearth.platform import storage
from spectralearth.platform.cluster import ClusterSpec
from spectralearth.platform.cube import cube_checksums, list_versions, open_cube

CONFIG = BuildConfig(plan=PlanParams(max_cloud=0.6, max_cloud_shadow=0.6, max_snow=1.0))
SYNC = ClusterSpec(kind="sync")


def _products_by_time(archive: str) -> list[str]:
    """Product folders/ZIPs of the archive (relative paths), oldest acquisition first."""
    found = [os.path.relpath(p, archive) for p in glob.glob(os.path.join(archive, "**", "ENMAP01-*"), recursive=True)
             if not os.path.dirname(os.path.relpath(p, archive)).count("ENMAP01-")]
    return sorted(found, key=lambda n: re.search(r"_(\d{8}T\d{6}Z)_", n).group(1))


def _copy(archive: str, products: list[str], dest: str, opts) -> None:
    fs, root = storage.filesystem(dest, opts)
    for rel in products:
        src = os.path.join(archive, rel)
        fs.makedirs(os.path.dirname(f"{root}/{rel}"), exist_ok=True)
        fs.put(src + ("/" if os.path.isdir(src) else ""), f"{root}/{rel}", recursive=os.path.isdir(src))


def _by_key(ds) -> dict[int, np.ndarray]:
    px = ds["reflectance"].values
    return {int(k): px[i] for i, k in enumerate(ds["view_key"].values)}


@pytest.mark.slow
def test_grown_archive_writes_only_new_views(storage_root, pixel_archive, tmp_path):
    opts = storage_root.storage_options
    products = _products_by_time(pixel_archive)
    n_new = max(1, round(len(products) * 0.25))
    old, new = products[:-n_new], products[-n_new:]
    archive = storage.join(storage_root.url, "archive")
    out = storage.join(storage_root.url, "out")
    cube = storage.join(out, "cube.zarr")
    _copy(pixel_archive, old, archive, opts)
    first = build(archive, out, storage_options=opts, config=CONFIG, cluster=SYNC).stages["extract"]
    assert first["version"] == "v1" and first["new_views"] == first["views"] > 0
    v1_objects = cube_checksums(cube, storage_options=opts)
    v1_pixels = open_cube(cube, storage_options=opts, decode=False)["reflectance"].values

    _copy(pixel_archive, new, archive, opts)  # the newest products arrive
    grown = build(archive, out, storage_options=opts, config=CONFIG, cluster=SYNC).stages["extract"]
    assert grown["version"] == "v2" and grown["parent"] == "v1" and grown["reused_views"] > 0
    assert grown["new_views"] + grown["reused_views"] == grown["views"]

    # the old version: every object as it was, pixels as they were
    after = cube_checksums(cube, storage_options=opts)
    assert {k: after[k] for k in v1_objects} == v1_objects
    np.testing.assert_array_equal(open_cube(cube, "v1", storage_options=opts, decode=False)["reflectance"].values, v1_pixels)
    # the new build holds exactly the new views' chunks
    b2 = grown["build"]
    chunks = [k for k in after if k.startswith(f"builds/{b2}/reflectance/c/")]
    assert len(chunks) == grown["new_views"]
    v2 = open_cube(cube, storage_options=opts, decode=False)
    old_keys = set(open_cube(cube, "v1", storage_options=opts)["view_key"].values.tolist())
    assert sum(int(k) not in old_keys for k in v2["view_key"].values) == grown["new_views"]

    # the same as a full build of the grown archive, at the cost of the new views only
    full_out = str(tmp_path / "full")
    full = build(archive, full_out, storage_options=opts, config=CONFIG, cluster=SYNC).stages["extract"]
    reference = open_cube(storage.join(full_out, "cube.zarr"), decode=False)
    got, want = _by_key(v2), _by_key(reference)
    assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)
    np.testing.assert_array_equal(v2["band_mean"].values, reference["band_mean"].values)
    np.testing.assert_array_equal(v2["band_std"].values, reference["band_std"].values)
    share = grown["new_views"] / full["views"]
    assert grown["build_bytes"] <= full["build_bytes"] * (share + 0.02), (grown["build_bytes"], full["build_bytes"], share)
    assert [v.counts["reused_views"] for v in list_versions(cube, storage_options=opts)] == [0, grown["reused_views"]]
