"""The patch cube: a Zarr v3 group readable with plain ``zarr`` / ``xarray.open_zarr``.

Contract (format version :data:`FORMAT_VERSION`):

========================  ===================  =========  =============================================
array                     dims                 dtype      meaning
========================  ===================  =========  =============================================
``reflectance``           (view, band, y, x)   int16      reflectance x 1e4, nodata -32768; 1 chunk = 1 view
``view_patch``            (view)               int64      patch (location) of each view; contiguous per patch
``view_time``             (view)               datetime64 acquisition start of the source tile
``view_tile``             (view)               int32      row of the source tile in the tile catalog
``patch_view_start``      (patch)              int64      CSR index: first view of the patch
``patch_view_count``      (patch)              int16      CSR index: number of views of the patch
``patch_crs``             (patch)              int32      EPSG code of the patch grid
``patch_x0``/``patch_y0`` (patch)              float64    upper-left corner in ``patch_crs``
``patch_lon``/``patch_lat`` (patch)            float64    centre in WGS84
``wavelength``/``fwhm``   (band)               float32    nm
``band_mean``/``band_std`` (band)              float32    statistics over valid pixels
========================  ===================  =========  =============================================

Commit protocol: arrays are created under the cube URL *without* the root group
``zarr.json``; chunks and index arrays are written; the root group metadata (with
the attributes and consolidated metadata) is written last. Until then
``zarr.open_group`` / ``xarray.open_zarr`` find no cube: readers never see a
half-written one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from spectralearth.platform.storage import filesystem, join, resolve_storage_options

__all__ = [
    "FORMAT_VERSION",
    "NODATA",
    "CubeSpec",
    "CubeNotCommittedError",
    "UnsupportedChunkFormatError",
    "ViewChunkFormat",
    "commit_cube",
    "create_cube_arrays",
    "cube_checksums",
    "open_cube",
    "open_store",
    "view_chunk_format",
    "view_chunk_key",
    "write_cube",
    "write_index_array",
    "write_view_bytes",
]

FORMAT_VERSION = "1.0"
NODATA = -32768
VIEW_INDEX_CHUNK = 65536


class CubeNotCommittedError(FileNotFoundError):
    """No committed cube at the URL (absent, or still being written)."""


@dataclass(frozen=True)
class CubeSpec:
    """Shape and encoding of a cube."""

    n_views: int
    """Number of views (acquisitions of patches)."""
    n_patches: int
    """Number of patches (locations)."""
    wavelength_nm: tuple[float, ...]
    """Centre wavelength of each stored band."""
    fwhm_nm: tuple[float, ...]
    """FWHM of each stored band."""
    band_numbers: tuple[int, ...]
    """1-based L2A band number of each stored band."""
    patch_px: int = 128
    """Patch side in pixels."""
    clevel: int = 5
    """blosc zstd compression level."""
    shard_views: int | None = None
    """Views per shard (None: unsharded, one object per view)."""

    @property
    def n_bands(self) -> int:
        return len(self.band_numbers)


def open_store(url: str, *, storage_options: Mapping[str, Any] | None = None, read_only: bool = False):
    """A zarr store for a cube URL (local path or any fsspec URL)."""
    from zarr.storage import FsspecStore, LocalStore

    fs, path = filesystem(url, storage_options)
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    if "file" in protocols or "local" in protocols:
        return LocalStore(path, read_only=read_only)
    opts = resolve_storage_options(url, storage_options)
    return FsspecStore.from_url(url, storage_options=opts, read_only=read_only)


def _codecs(spec: CubeSpec):
    import zarr

    return zarr.codecs.BloscCodec(cname="zstd", clevel=spec.clevel, shuffle="shuffle", typesize=2)


def create_cube_arrays(url: str, spec: CubeSpec, *, storage_options: Mapping[str, Any] | None = None) -> None:
    """Create every array of the cube (metadata only, no root group: not yet visible to readers)."""
    import zarr

    def arr(name: str, shape, dtype, chunks, dims, fill, compressors="auto", attrs=None, shards=None):
        zarr.create_array(
            store=open_store(join(url, name), storage_options=storage_options),
            shape=shape,
            dtype=dtype,
            chunks=chunks,
            shards=shards,
            fill_value=fill,
            compressors=compressors,
            dimension_names=dims,
            attributes=attrs or {},
            overwrite=True,
        )

    nv, npch, nb, px = spec.n_views, spec.n_patches, spec.n_bands, spec.patch_px
    shards = (spec.shard_views, nb, px, px) if spec.shard_views else None
    arr(
        "reflectance",
        (nv, nb, px, px),
        "int16",
        (1, nb, px, px),
        ["view", "band", "y", "x"],
        NODATA,
        compressors=_codecs(spec),
        attrs={"scale_factor": 1e-4, "add_offset": 0.0, "_FillValue": NODATA, "units": "1", "long_name": "surface reflectance"},
        shards=shards,
    )
    vc = max(1, min(VIEW_INDEX_CHUNK, nv))
    pc = max(1, min(VIEW_INDEX_CHUNK, npch))
    arr("view_patch", (nv,), "int64", (vc,), ["view"], -1)
    arr("view_time", (nv,), "int64", (vc,), ["view"], 0, attrs={"units": "microseconds since 1970-01-01", "calendar": "proleptic_gregorian"})
    arr("view_tile", (nv,), "int32", (vc,), ["view"], -1)
    arr("patch_view_start", (npch,), "int64", (pc,), ["patch"], -1)
    arr("patch_view_count", (npch,), "int16", (pc,), ["patch"], 0)
    arr("patch_crs", (npch,), "int32", (pc,), ["patch"], 0)
    arr("patch_x0", (npch,), "float64", (pc,), ["patch"], np.nan, attrs={"units": "m"})
    arr("patch_y0", (npch,), "float64", (pc,), ["patch"], np.nan, attrs={"units": "m"})
    arr("patch_lon", (npch,), "float64", (pc,), ["patch"], np.nan, attrs={"units": "degrees_east"})
    arr("patch_lat", (npch,), "float64", (pc,), ["patch"], np.nan, attrs={"units": "degrees_north"})
    arr("band", (nb,), "int16", (nb,), ["band"], 0, attrs={"long_name": "L2A band number (1-based)"})
    arr("wavelength", (nb,), "float32", (nb,), ["band"], np.nan, attrs={"units": "nm"})
    arr("fwhm", (nb,), "float32", (nb,), ["band"], np.nan, attrs={"units": "nm"})
    arr("band_mean", (nb,), "float32", (nb,), ["band"], np.nan, attrs={"units": "reflectance x 1e4"})
    arr("band_std", (nb,), "float32", (nb,), ["band"], np.nan, attrs={"units": "reflectance x 1e4"})
    _write_small(url, "band", np.asarray(spec.band_numbers, "int16"), storage_options)
    _write_small(url, "wavelength", np.asarray(spec.wavelength_nm, "float32"), storage_options)
    _write_small(url, "fwhm", np.asarray(spec.fwhm_nm, "float32"), storage_options)


def _write_small(url: str, name: str, values: np.ndarray, storage_options) -> None:
    import zarr

    a = zarr.open_array(open_store(join(url, name), storage_options=storage_options), mode="r+")
    a[...] = values


def write_index_array(url: str, name: str, values: np.ndarray, *, storage_options: Mapping[str, Any] | None = None) -> None:
    """Write a whole 1-D index array (view_* / patch_* / band_*) of an uncommitted cube."""
    if name == "view_time" and np.issubdtype(np.asarray(values).dtype, np.datetime64):
        values = np.asarray(values, "datetime64[us]").astype("int64")
    _write_small(url, name, np.asarray(values), storage_options)


def commit_cube(url: str, attrs: Mapping[str, Any], *, storage_options: Mapping[str, Any] | None = None) -> None:
    """Make the cube visible: write the root group metadata (with consolidated metadata) last."""
    import zarr

    from spectralearth.platform.storage import redact

    attributes = {"spectralearth:format_version": FORMAT_VERSION, **redact(dict(attrs))}
    json.dumps(attributes)  # must be plain JSON
    import warnings

    store = open_store(url, storage_options=storage_options)
    zarr.create_group(store=store, attributes=attributes, overwrite=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        zarr.consolidate_metadata(store)


def open_cube(url: str, *, storage_options: Mapping[str, Any] | None = None):
    """Open a committed cube read-only as a ``zarr.Group``.

    Raises:
        CubeNotCommittedError: nothing committed at ``url`` (absent or still being written).
    """
    import zarr
    from zarr.errors import GroupNotFoundError

    try:
        return zarr.open_group(open_store(url, storage_options=storage_options, read_only=True), mode="r")
    except (GroupNotFoundError, FileNotFoundError) as exc:
        raise CubeNotCommittedError(f"no committed cube at {url} (absent, or a build has not finished)") from exc


def view_chunk_key(view: int) -> str:
    """Object key (relative to the cube) of one view's chunk (unsharded cubes)."""
    return f"reflectance/c/{int(view)}/0/0/0"


def cube_checksums(url: str, *, storage_options: Mapping[str, Any] | None = None, prefix: str = "") -> dict[str, str]:
    """SHA-256 of every object of the cube (keys relative to the cube URL), for identity checks."""
    fs, root = filesystem(url, storage_options)
    out = {}
    for path in sorted(fs.find(root)):
        rel = path[len(root.rstrip("/")) + 1 :]
        if prefix and not rel.startswith(prefix):
            continue
        out[rel] = hashlib.sha256(fs.cat_file(path)).hexdigest()
    return out


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
    band_mean: np.ndarray | None = None,
    band_std: np.ndarray | None = None,
    attrs: Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> None:
    """Write and commit a whole cube in one call (small cubes: tests, benchmarks, examples).

    Args:
        url: where the cube goes (nothing committed there yet).
        views: ``(n_views, bands, px, px)`` int16 array, or a callable ``view -> (bands, px, px)``.
        spec: shape and encoding.
        view_patch: patch of each view (non-decreasing: a patch's views are contiguous).
        view_time: acquisition time of each view (datetime64).
        view_tile, patch_crs, patch_x0, patch_y0, patch_lon, patch_lat: index arrays
            (placeholders when None: tile -1, EPSG 0, NaN coordinates).
        band_mean, band_std: per-band statistics; computed from the valid pixels when None.
        attrs: extra group attributes.
        storage_options: fsspec options (no secrets).
    """
    import zarr

    view_patch = np.asarray(view_patch, np.int64)
    if view_patch.shape != (spec.n_views,) or np.any(np.diff(view_patch) < 0):
        raise ValueError("view_patch must have one non-decreasing entry per view")
    if view_patch.size and (view_patch[0] < 0 or view_patch[-1] >= spec.n_patches):
        raise ValueError(f"view_patch must lie within [0, {spec.n_patches})")
    counts = np.bincount(view_patch, minlength=spec.n_patches)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    create_cube_arrays(url, spec, storage_options=storage_options)
    refl = zarr.open_array(open_store(join(url, "reflectance"), storage_options=storage_options), mode="r+")
    shape = (spec.n_bands, spec.patch_px, spec.patch_px)
    total = np.zeros(spec.n_bands)
    total2 = np.zeros(spec.n_bands)
    n_valid = np.zeros(spec.n_bands)
    for v in range(spec.n_views):
        view = np.asarray(views[v] if isinstance(views, np.ndarray) else views(v), dtype=np.int16)
        if view.shape != shape:
            raise ValueError(f"view {v} has shape {view.shape}, expected {shape}")
        refl[v] = view
        if band_mean is None or band_std is None:
            flat = view.reshape(spec.n_bands, -1).astype(np.float64)
            ok = flat != NODATA
            total += np.where(ok, flat, 0.0).sum(axis=1)
            total2 += np.where(ok, flat * flat, 0.0).sum(axis=1)
            n_valid += ok.sum(axis=1)
    if band_mean is None or band_std is None:
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / n_valid
            std = np.sqrt(np.maximum(total2 / n_valid - mean * mean, 0.0))
        band_mean = mean if band_mean is None else band_mean
        band_std = std if band_std is None else band_std
    npch = spec.n_patches
    index = {
        "view_patch": view_patch,
        "view_time": np.asarray(view_time, "datetime64[us]"),
        "view_tile": np.full(spec.n_views, -1, np.int32) if view_tile is None else np.asarray(view_tile, np.int32),
        "patch_view_start": starts,
        "patch_view_count": counts.astype(np.int16),
        "patch_crs": np.zeros(npch, np.int32) if patch_crs is None else np.asarray(patch_crs, np.int32),
        "band_mean": np.asarray(band_mean, np.float32),
        "band_std": np.asarray(band_std, np.float32),
    }
    for name, values in (("patch_x0", patch_x0), ("patch_y0", patch_y0), ("patch_lon", patch_lon), ("patch_lat", patch_lat)):
        index[name] = np.full(npch, np.nan) if values is None else np.asarray(values, np.float64)
    for name, values in index.items():
        write_index_array(url, name, values, storage_options=storage_options)
    commit_cube(url, {"patch_size": spec.patch_px, "band_numbers": list(spec.band_numbers), **dict(attrs or {})},
                storage_options=storage_options)


# --------------------------------------------------------------------------- direct chunk writes

_BLOSC_SHUFFLE = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}


class UnsupportedChunkFormatError(ValueError):
    """The ``reflectance`` array stores its chunks in a way :class:`ViewChunkFormat` cannot write (e.g. sharded)."""


@dataclass(frozen=True)
class ViewChunkFormat:
    """How ``reflectance`` stores one view: the chunk's codec chain and object key, as its metadata says."""

    chunk_shape: tuple[int, ...]
    """Shape of one chunk: ``(1, band, y, x)``."""
    data_type: str
    """Zarr data type name, e.g. ``int16``."""
    fill_value: int
    """Fill value: a chunk holding only this value is not stored (zarr's default)."""
    endian: str
    """Byte order of the ``bytes`` codec: ``little`` or ``big``."""
    cname: str
    """blosc compressor name."""
    clevel: int
    """blosc compression level."""
    shuffle: str
    """blosc shuffle: ``noshuffle``, ``shuffle`` or ``bitshuffle``."""
    typesize: int
    """blosc type size in bytes."""
    blocksize: int
    """blosc block size (0: automatic)."""
    key_encoding: str
    """Chunk key encoding name: ``default`` or ``v2``."""
    separator: str
    """Chunk key separator."""
    array: str = "reflectance"
    """Name of the array (first part of the key)."""

    def key(self, view: int) -> str:
        """Object key, relative to the cube, of the chunk holding ``view``."""
        coords = [str(int(view))] + ["0"] * (len(self.chunk_shape) - 1)
        if self.key_encoding == "default":
            return f"{self.array}/" + self.separator.join(["c", *coords])
        return f"{self.array}/" + self.separator.join(coords)

    def is_fill(self, view: np.ndarray) -> bool:
        """True if every value of ``view`` is the fill value (zarr stores no object for such a chunk)."""
        return bool(np.all(np.asarray(view) == self.fill_value))

    def encode(self, view: np.ndarray) -> bytes:
        """The stored bytes of one view's chunk: exactly what zarr writes for ``reflectance[v] = view``.

        Args:
            view: ``(band, y, x)`` (or ``(1, band, y, x)``) array of the chunk's values.

        Raises:
            ValueError: the array's shape is not the chunk's.
        """
        import numcodecs

        arr = np.asarray(view)
        if arr.shape != self.chunk_shape and arr.shape != self.chunk_shape[1:]:
            raise ValueError(f"a view chunk has shape {self.chunk_shape[1:]}, got {arr.shape}")
        dtype = np.dtype(self.data_type).newbyteorder("<" if self.endian == "little" else ">")
        raw = np.ascontiguousarray(arr, dtype=dtype).reshape(-1).view(np.uint8)
        codec = numcodecs.Blosc(cname=self.cname, clevel=self.clevel, shuffle=_BLOSC_SHUFFLE[self.shuffle],
                                blocksize=self.blocksize, typesize=self.typesize)
        return bytes(codec.encode(raw))


def view_chunk_format(url: str, *, storage_options: Mapping[str, Any] | None = None, array: str = "reflectance") -> ViewChunkFormat:
    """Read how ``array`` of the cube at ``url`` encodes and names its chunks (from its ``zarr.json``).

    Raises:
        UnsupportedChunkFormatError: the array is sharded, or its codecs are not
            ``bytes`` followed by ``blosc`` (write through zarr instead).
    """
    from spectralearth.platform.storage import read_bytes

    meta = json.loads(read_bytes(join(url, array, "zarr.json"), storage_options))
    codecs = meta.get("codecs") or []
    names = [c.get("name") for c in codecs]
    if names != ["bytes", "blosc"]:
        raise UnsupportedChunkFormatError(f"{array}: codecs {names} (only ['bytes', 'blosc'] can be written directly)")
    if (meta.get("chunk_grid") or {}).get("name") != "regular" or meta.get("storage_transformers"):
        raise UnsupportedChunkFormatError(f"{array}: only a regular chunk grid without storage transformers can be written directly")
    kenc = meta.get("chunk_key_encoding") or {"name": "default"}
    if kenc.get("name") not in ("default", "v2"):
        raise UnsupportedChunkFormatError(f"{array}: unknown chunk key encoding {kenc.get('name')!r}")
    sep = (kenc.get("configuration") or {}).get("separator", "/" if kenc["name"] == "default" else ".")
    blosc = codecs[1].get("configuration") or {}
    shape = tuple(int(n) for n in meta["chunk_grid"]["configuration"]["chunk_shape"])
    if shape[0] != 1:
        raise UnsupportedChunkFormatError(f"{array}: a chunk holds {shape[0]} views (one view per chunk can be written directly)")
    return ViewChunkFormat(
        chunk_shape=shape,
        data_type=str(meta["data_type"]),
        fill_value=int(meta["fill_value"]),
        endian=str((codecs[0].get("configuration") or {}).get("endian", "little")),
        cname=str(blosc["cname"]),
        clevel=int(blosc["clevel"]),
        shuffle=str(blosc.get("shuffle", "noshuffle")),
        typesize=int(blosc.get("typesize") or np.dtype(str(meta["data_type"])).itemsize),
        blocksize=int(blosc.get("blocksize", 0)),
        key_encoding=str(kenc["name"]),
        separator=str(sep),
        array=array,
    )


def write_view_bytes(fs, path: str, data: bytes) -> None:
    """Store one whole chunk object at ``path`` of the fsspec filesystem ``fs``.

    Local files are written to a temporary sibling and renamed into place (as zarr's
    ``LocalStore`` does); on object stores one PUT is a whole object.
    """
    import os
    import uuid

    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    if "file" in protocols or "local" in protocols:
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:12]}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    else:
        fs.pipe_file(path, data)
