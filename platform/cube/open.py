"""Reading a version: ``open_cube`` (xarray), the index group, chunk keys for the stream, verification."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from spectralearth.platform import storage
from spectralearth.platform.cube.format import NODATA, SCALE_FACTOR, ChunkChecksumError, open_store, view_chunk_format, view_chunk_key
from spectralearth.platform.cube.versions import Version, resolve_version

__all__ = ["VersionIndex", "cube_checksums", "locate_version", "open_cube", "open_index", "verify_version"]


def build_url(cube_url: str, build: str) -> str:
    """Where a build's group lies."""
    return storage.join(cube_url, "builds", build)


@dataclass(frozen=True)
class VersionIndex:
    """Where each view of one version is stored: what the stream and ``open_cube`` read (picklable)."""

    url: str
    """Cube URL."""
    version: Version
    """The version."""
    view_build: np.ndarray
    """Per view: index into ``version.builds``."""
    view_slot: np.ndarray
    """Per view: slot of its chunk in that build."""
    view_patch: np.ndarray
    """Per view: its patch."""

    @property
    def index_url(self) -> str:
        """URL of the version's index group."""
        return storage.join(build_url(self.url, self.version.build), "index")

    @property
    def n_views(self) -> int:
        return int(self.view_slot.size)

    def chunk_key(self, view: int) -> str:
        """Object key (relative to the cube) of view ``view``'s chunk."""
        return view_chunk_key(int(self.view_slot[view]), build=self.version.builds[int(self.view_build[view])])

    def open_group(self, *, storage_options: Mapping[str, Any] | None = None):
        """The version's index as a read-only ``zarr.Group``."""
        import zarr

        return zarr.open_group(open_store(self.index_url, storage_options=storage_options, read_only=True), mode="r")


def locate_version(cube_url: str, version: str | int | None = None, *,
                   storage_options: Mapping[str, Any] | None = None) -> VersionIndex:
    """Resolve ``cube_url`` + ``version`` (None: latest committed) to the keys of its view chunks.

    Raises:
        CubeNotCommittedError: nothing committed at ``cube_url``.
        VersionNotFoundError: no such version.
    """
    import zarr

    v = resolve_version(cube_url, version, storage_options=storage_options)
    index_url = storage.join(build_url(cube_url, v.build), "index")
    group = zarr.open_group(open_store(index_url, storage_options=storage_options, read_only=True), mode="r")
    return VersionIndex(
        url=cube_url, version=v,
        view_build=np.asarray(group["view_build"][:], np.int32),
        view_slot=np.asarray(group["view_slot"][:], np.int64),
        view_patch=np.asarray(group["view_patch"][:], np.int64),
    )


def open_index(cube_url: str, version: str | int | None = None, *, storage_options: Mapping[str, Any] | None = None):
    """The index group (view/patch/band arrays) of a version, as a read-only ``zarr.Group``."""
    v = resolve_version(cube_url, version, storage_options=storage_options)
    import zarr

    url = storage.join(build_url(cube_url, v.build), "index")
    return zarr.open_group(open_store(url, storage_options=storage_options, read_only=True), mode="r")


def _reader(loc: VersionIndex, storage_options, *, decode: bool, shape: tuple[int, int, int]):
    """A function ``block_id -> one view`` for ``dask.array.map_blocks``: reads, checks and decodes its chunk."""
    fmt = view_chunk_format(build_url(loc.url, loc.version.builds[0]), storage_options=storage_options)
    opts = dict(storage_options or {})
    url = loc.url

    def read(block_id=None) -> np.ndarray:
        from spectralearth.platform.reader import ChunkCorruptError, ChunkMissingError

        view = int(block_id[0])
        key = loc.chunk_key(view)
        patch = int(loc.view_patch[view])
        fs, root = storage.filesystem(url, opts)
        where = f"{storage.redact(url)}/{key}"
        try:
            raw = fs.cat_file(f"{root.rstrip('/')}/{key}")
        except FileNotFoundError:
            raise ChunkMissingError(f"patch {patch}, view {view}: chunk object {where} is missing",
                                    key=key, view=view, patch=patch) from None
        out = np.empty(shape, np.int16)
        try:
            fmt.decode(raw, out)
        except (ChunkChecksumError, ValueError, RuntimeError) as exc:
            raise ChunkCorruptError(f"patch {patch}, view {view}: chunk object {where} is corrupt: {exc}",
                                    key=key, view=view, patch=patch) from None
        if not decode:
            return out[None]
        res = out.astype(np.float32)
        res *= SCALE_FACTOR
        res[out == NODATA] = np.nan
        return res[None]

    return read


def open_cube(cube_url: str, version: str | int | None = None, *, storage_options: Mapping[str, Any] | None = None,
              decode: bool = True):
    """Open one committed version of a cube as an ``xarray.Dataset`` (lazy, dask-backed).

    ``reflectance`` (view, band, y, x) decodes to float32 reflectance (nodata as NaN;
    ``decode=False``: the stored int16, reflectance x 10^4, nodata -32768); ``wavelength``
    and ``fwhm`` are coordinates of ``band``, ``view_time`` (datetime64) of ``view``.
    Reading a chunk checks its CRC-32C: a damaged chunk raises
    :class:`~spectralearth.platform.reader.ChunkCorruptError` naming patch, view and key.

    Args:
        cube_url: the cube (local path or ``s3://bucket/prefix``).
        version: version id (``"v2"``, ``2``); None: the latest committed.
        storage_options: fsspec options (no secrets).
        decode: scale to float32 reflectance (default) or keep int16.

    Raises:
        CubeNotCommittedError: nothing committed at ``cube_url``.
        VersionNotFoundError: no such version.
    """
    import dask.array as da
    import xarray as xr
    from dask.base import tokenize

    loc = locate_version(cube_url, version, storage_options=storage_options)
    ds = xr.open_zarr(open_store(loc.index_url, storage_options=storage_options, read_only=True), consolidated=False,
                      chunks=None)
    n_bands = int(ds.sizes["band"])
    px = int(ds.attrs.get("spectralearth:patch_px", 128))
    shape = (n_bands, px, px)
    dtype = np.float32 if decode else np.int16
    data = da.map_blocks(_reader(loc, storage_options, decode=decode, shape=shape), dtype=dtype,
                         chunks=((1,) * loc.n_views, (n_bands,), (px,), (px,)),
                         meta=np.empty((0, 0, 0, 0), dtype),
                         name="reflectance-" + tokenize(storage.redact(cube_url), loc.version.id, loc.version.build, decode))
    attrs = {"long_name": "surface reflectance", "units": "1" if decode else "1e-4"}
    encoding = {"dtype": np.dtype("int16"), "scale_factor": SCALE_FACTOR, "_FillValue": np.int16(NODATA)}
    refl = xr.DataArray(data, dims=("view", "band", "y", "x"), attrs=attrs)
    if decode:
        refl.encoding = encoding
    else:
        refl.attrs.update({"scale_factor": SCALE_FACTOR, "_FillValue": np.int16(NODATA)})
    ds = ds.set_coords([c for c in ("wavelength", "fwhm", "view_time") if c in ds.variables])
    ds["reflectance"] = refl
    ds.attrs = {**ds.attrs, "spectralearth:version": loc.version.id}
    if loc.version.parent:
        ds.attrs["spectralearth:parent_version"] = loc.version.parent
    return ds


def verify_version(cube_url: str, version: str | int | None = None, *,
                   storage_options: Mapping[str, Any] | None = None, progress: bool = False) -> dict[str, Any]:
    """Read every chunk of a version and check its CRC-32C and decode.

    Returns:
        ``{"version", "views", "bad": [{"patch", "view", "key", "error"}, ...]}``.
    """
    from spectralearth.platform.reader import StreamReadError

    loc = locate_version(cube_url, version, storage_options=storage_options)
    group = loc.open_group(storage_options=storage_options)
    px = int(group.attrs.get("spectralearth:patch_px", 128))
    read = _reader(loc, storage_options, decode=False, shape=(int(group["band"].shape[0]), px, px))
    bad = []
    views = range(loc.n_views)
    if progress:
        from tqdm.auto import tqdm

        views = tqdm(views, desc="verify", unit="view", leave=False)
    for v in views:
        try:
            read(block_id=(v, 0, 0, 0))
        except StreamReadError as exc:
            bad.append({"patch": exc.patch, "view": exc.view, "key": exc.key, "error": str(exc)})
    return {"version": loc.version.id, "views": loc.n_views, "bad": bad}


def cube_checksums(url: str, *, storage_options: Mapping[str, Any] | None = None, prefix: str = "") -> dict[str, str]:
    """SHA-256 of every object under ``url`` (keys relative to it), for identity checks."""
    fs, root = storage.filesystem(url, storage_options)
    fs.invalidate_cache()
    out = {}
    for path in sorted(fs.find(root)):
        rel = path[len(root.rstrip("/")) + 1 :]
        if prefix and not rel.startswith(prefix):
            continue
        out[rel] = hashlib.sha256(fs.cat_file(path)).hexdigest()
    return out
