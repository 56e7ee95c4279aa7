"""Writing a version: a build's index, its statistics, and the commit.

A build writes its new views into ``CUBE/builds/<build-id>/`` (see
:mod:`~spectralearth.platform.cube.format`), then its index group, then commits the
version with :func:`~spectralearth.platform.cube.versions.commit_version`. The build
id is a pure function of the parent version and the plan fingerprint, so a rerun
after a crash writes into the same build (and skips what is already there), and two
runs of the same plan write identical bytes.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

import numpy as np

from spectralearth.platform import storage
from spectralearth.platform.cube.format import (
    FORMAT_VERSION,
    NODATA,
    VIEW_INDEX_CHUNK,
    CubeSpec,
    create_build_arrays,
    open_store,
    view_chunk_format,
    write_view_bytes,
)
from spectralearth.platform.cube.open import build_url
from spectralearth.platform.cube.versions import CubeNotCommittedError, Version, commit_version, resolve_version

__all__ = [
    "build_id",
    "latest_or_none",
    "version_moments",
    "view_key",
    "view_moments",
    "write_cube",
    "write_index",
]

_INDEX_ATTRS: dict[str, dict[str, Any]] = {
    "view_patch": {"long_name": "patch (location) of the view"},
    "view_time": {"long_name": "acquisition start of the source tile", "units": "microseconds since 1970-01-01",
                  "calendar": "proleptic_gregorian", "standard_name": "time"},
    "view_tile": {"long_name": "row of the source tile in the tile catalog"},
    "view_key": {"long_name": "identity of the view (source product and window)"},
    "view_build": {"long_name": "build holding the view's chunk (index into the version's builds)"},
    "view_slot": {"long_name": "slot of the view's chunk in its build"},
    "patch_view_start": {"long_name": "first view of the patch"},
    "patch_view_count": {"long_name": "number of views of the patch"},
    "patch_crs": {"long_name": "EPSG code of the patch grid"},
    "patch_x0": {"long_name": "upper-left corner x in patch_crs", "units": "m"},
    "patch_y0": {"long_name": "upper-left corner y in patch_crs", "units": "m"},
    "patch_lon": {"long_name": "patch centre longitude", "units": "degrees_east", "standard_name": "longitude"},
    "patch_lat": {"long_name": "patch centre latitude", "units": "degrees_north", "standard_name": "latitude"},
    "band": {"long_name": "L2A band number (1-based)"},
    "wavelength": {"long_name": "band centre wavelength", "units": "nm", "standard_name": "radiation_wavelength"},
    "fwhm": {"long_name": "band full width at half maximum", "units": "nm"},
    "band_mean": {"long_name": "mean over valid pixels", "units": "1e-4"},
    "band_std": {"long_name": "standard deviation over valid pixels", "units": "1e-4"},
}
_DIMS = {"view": "view", "patch": "patch", "band": "band"}


def build_id(parent: str | None, fingerprint: str) -> str:
    """The build id of a plan built on ``parent``: the same inputs always give the same id."""
    return hashlib.sha256(f"{FORMAT_VERSION}|{parent or ''}|{fingerprint}".encode()).hexdigest()[:16]


def view_key(product_id: str, row0: int, col0: int) -> int:
    """Identity of a view as an int64: its source product and window (what a later build reuses by)."""
    h = hashlib.sha256(f"{product_id}|{int(row0)}|{int(col0)}".encode()).digest()
    return int(np.frombuffer(h[:8], "<i8")[0])


def view_moments(data: np.ndarray) -> np.ndarray:
    """``(3, band)`` int64: valid-pixel count, sum and sum of squares of one view (exact)."""
    flat = np.asarray(data).reshape(data.shape[0], -1)
    ok = flat != NODATA
    vals = np.where(ok, flat, 0).astype(np.int64)
    return np.stack([ok.sum(axis=1, dtype=np.int64), vals.sum(axis=1), (vals * vals).sum(axis=1)])


def latest_or_none(cube_url: str, storage_options=None) -> Version | None:
    """The latest committed version, or None for a cube that has none yet."""
    try:
        return resolve_version(cube_url, None, storage_options=storage_options)
    except CubeNotCommittedError:
        return None


def write_index(url: str, arrays: Mapping[str, np.ndarray], *, attrs: Mapping[str, Any],
                storage_options: Mapping[str, Any] | None = None) -> None:
    """Write a version's index group (``view_*``, ``patch_*``, band arrays) at ``url``.

    Never deletes: an index already there (a rerun of the same build, or a concurrent run
    of the same plan, whose version may already be committed and read) is overwritten in
    place, object by object, with the same bytes.
    """
    import zarr

    store = open_store(url, storage_options=storage_options)
    group_attrs = {"spectralearth:format_version": FORMAT_VERSION, **storage.redact(dict(attrs))}
    try:
        group = zarr.open_group(store, mode="r+")
        group.attrs.update(group_attrs)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        group = zarr.create_group(store, attributes=group_attrs)
    for name, values in arrays.items():
        values = np.asarray(values)
        if name == "view_time" and np.issubdtype(values.dtype, np.datetime64):
            values = values.astype("datetime64[us]").astype(np.int64)
        arr = None
        if name in group:
            arr = group[name]
            if tuple(arr.shape) != values.shape or arr.dtype != values.dtype:
                raise ValueError(f"{storage.redact(url)}: index array {name} exists as {arr.dtype}{tuple(arr.shape)}, "
                                 f"this build has {values.dtype}{values.shape}")
        else:
            dim = "band" if name in ("band", "wavelength", "fwhm", "band_mean", "band_std") else name.split("_", 1)[0]
            chunk = max(1, min(VIEW_INDEX_CHUNK, values.shape[0]))
            arr = group.create_array(name, shape=values.shape, dtype=values.dtype, chunks=(chunk,),
                                     dimension_names=[_DIMS[dim]], attributes=_INDEX_ATTRS.get(name, {}),
                                     compressors=[zarr.codecs.ZstdCodec(level=3), zarr.codecs.Crc32cCodec()],
                                     fill_value=0)
        if values.size:
            arr[...] = values


def version_moments(cube_url: str, builds: tuple[str, ...], view_build: np.ndarray, view_slot: np.ndarray, *,
                    storage_options: Mapping[str, Any] | None = None):
    """Exact band moments of the views ``(view_build, view_slot)``, from the builds' ``view_moments``."""
    import zarr

    from spectralearth.pipelines.stats import BandMoments

    total = None
    for b, name in enumerate(builds):
        slots = np.sort(np.asarray(view_slot)[np.asarray(view_build) == b])
        if not slots.size:
            continue
        arr = zarr.open_array(open_store(storage.join(build_url(cube_url, name), "view_moments"),
                                         storage_options=storage_options, read_only=True), mode="r")
        step = int(arr.chunks[0]) * 64
        for lo in range(0, int(slots[-1]) + 1, step):
            sel = slots[(slots >= lo) & (slots < lo + step)]
            if not sel.size:
                continue
            block = np.asarray(arr[lo : int(sel[-1]) + 1])[sel - lo]
            part = BandMoments(*(tuple(int(x) for x in block[:, m].astype(object).sum(axis=0)) for m in range(3)))
            total = part if total is None else total + part
    return total


def write_cube(
    url: str,
    views,
    *,
    spec: CubeSpec,
    view_patch: np.ndarray,
    view_time: np.ndarray,
    view_tile: np.ndarray | None = None,
    patch_crs: np.ndarray | None = None,
    patch_x0: np.ndarray | None = None,
    patch_y0: np.ndarray | None = None,
    patch_lon: np.ndarray | None = None,
    patch_lat: np.ndarray | None = None,
    attrs: Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Version:
    """Write a whole cube's views as one new version in one call (small cubes: tests, benchmarks, examples).

    Args:
        url: the cube (a new version is committed on top of its latest, if any).
        views: ``(n_views, bands, px, px)`` int16 array, or a callable ``view -> (bands, px, px)``.
        spec: shape and encoding.
        view_patch: patch of each view (non-decreasing: a patch's views are contiguous).
        view_time: acquisition time of each view (datetime64).
        view_tile, patch_crs, patch_x0, patch_y0, patch_lon, patch_lat: index arrays
            (placeholders when None: tile -1, EPSG 0, NaN coordinates).
        attrs: extra index group attributes.
        storage_options: fsspec options (no secrets).

    Returns:
        The committed :class:`Version`.
    """
    from spectralearth.pipelines.stats import BandMoments

    if spec.n_views < 1:
        raise ValueError("a cube needs at least one view")
    view_patch = np.asarray(view_patch, np.int64)
    if view_patch.shape != (spec.n_views,) or np.any(np.diff(view_patch) < 0):
        raise ValueError("view_patch must have one non-decreasing entry per view")
    if view_patch[0] < 0 or view_patch[-1] >= spec.n_patches:
        raise ValueError(f"view_patch must lie within [0, {spec.n_patches})")
    parent = latest_or_none(url, storage_options)
    digest = hashlib.sha256(repr((spec, dict(attrs or {}))).encode())
    digest.update(view_patch.tobytes())
    build = build_id(parent.id if parent else None, f"{digest.hexdigest()}-{time.time_ns()}")
    burl = build_url(url, build)
    create_build_arrays(burl, n_slots=spec.n_views, n_bands=spec.n_bands, patch_px=spec.patch_px, clevel=spec.clevel,
                        slots_per_task=16, storage_options=storage_options)
    fmt = view_chunk_format(burl, storage_options=storage_options)
    fs, root = storage.filesystem(burl, storage_options)
    shape = (spec.n_bands, spec.patch_px, spec.patch_px)
    moments = np.zeros((spec.n_views, 3, spec.n_bands), np.int64)
    for v in range(spec.n_views):
        view = np.asarray(views[v] if isinstance(views, np.ndarray) else views(v), dtype=np.int16)
        if view.shape != shape:
            raise ValueError(f"view {v} has shape {view.shape}, expected {shape}")
        write_view_bytes(fs, f"{root.rstrip('/')}/{fmt.key(v)}", fmt.encode(view))
        moments[v] = view_moments(view)
    import zarr

    zarr.open_array(open_store(storage.join(burl, "view_moments"), storage_options=storage_options), mode="r+")[...] = moments
    total = BandMoments(*(tuple(int(x) for x in moments[:, m].astype(object).sum(axis=0)) for m in range(3)))
    mean, std = total.mean_std()
    counts = np.bincount(view_patch, minlength=spec.n_patches)
    npch = spec.n_patches
    index = {
        "view_patch": view_patch,
        "view_time": np.asarray(view_time, "datetime64[us]"),
        "view_tile": np.full(spec.n_views, -1, np.int32) if view_tile is None else np.asarray(view_tile, np.int32),
        "view_key": np.arange(spec.n_views, dtype=np.int64),
        "view_build": np.zeros(spec.n_views, np.int32),
        "view_slot": np.arange(spec.n_views, dtype=np.int64),
        "patch_view_start": np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64),
        "patch_view_count": counts.astype(np.int16),
        "patch_crs": np.zeros(npch, np.int32) if patch_crs is None else np.asarray(patch_crs, np.int32),
    }
    for name, values in (("patch_x0", patch_x0), ("patch_y0", patch_y0), ("patch_lon", patch_lon), ("patch_lat", patch_lat)):
        index[name] = np.full(npch, np.nan) if values is None else np.asarray(values, np.float64)
    index.update({"band": np.asarray(spec.band_numbers, np.int16), "wavelength": np.asarray(spec.wavelength_nm, np.float32),
                  "fwhm": np.asarray(spec.fwhm_nm, np.float32), "band_mean": mean.astype(np.float32),
                  "band_std": std.astype(np.float32)})
    group_attrs = {"spectralearth:patch_px": spec.patch_px, "spectralearth:bands": list(spec.band_numbers),
                   "spectralearth:n_views": spec.n_views, "spectralearth:n_patches": npch, **dict(attrs or {})}
    write_index(storage.join(burl, "index"), index, attrs=group_attrs, storage_options=storage_options)
    return commit_version(url, Version(
        sequence=(parent.sequence if parent else 0) + 1, build=build, builds=(build,), parent=parent.id if parent else None,
        created=datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"), run_id=build,
        counts={"views": spec.n_views, "patches": npch, "bands": spec.n_bands, "new_views": spec.n_views, "reused_views": 0},
        attrs=group_attrs,
    ), storage_options=storage_options)
