"""The cube's storage format: arrays, codecs, chunk keys and direct chunk encoding.

A cube (format :data:`FORMAT_VERSION`) is a prefix on a store holding immutable
*versions* (see :mod:`spectralearth.platform.cube.versions`) over *builds*. A build
is one Zarr v3 group ``CUBE/builds/<build-id>/`` with the views that build added:

========================  =====================  =========  =============================================
array (in a build)        dims                   dtype      meaning
========================  =====================  =========  =============================================
``reflectance``           (slot, band, y, x)     int16      reflectance x 1e4, nodata -32768; 1 chunk = 1 view
``view_moments``          (slot, moment, band)   int64      valid-pixel count, sum, sum of squares per view
========================  =====================  =========  =============================================

and, under ``index/``, the version's own view/patch/band tables (a Zarr v3 group
readable with ``xarray.open_zarr``):

========================  ===================  =========  =============================================
``view_patch``            (view)               int64      patch (location) of each view; contiguous per patch
``view_time``             (view)               int64      acquisition start, CF-encoded (xarray: datetime64)
``view_tile``             (view)               int32      row of the source tile in the tile catalog
``view_key``              (view)               int64      identity of the view (source product and window)
``view_build``            (view)               int32      build holding the view's chunk (index into the manifest's builds)
``view_slot``             (view)               int64      slot of the view's chunk in that build
``patch_view_start``      (patch)              int64      CSR index: first view of the patch
``patch_view_count``      (patch)              int16      CSR index: number of views of the patch
``patch_crs``             (patch)              int32      EPSG code of the patch grid
``patch_x0``/``patch_y0`` (patch)              float64    upper-left corner in ``patch_crs``
``patch_lon``/``patch_lat`` (patch)            float64    centre in WGS84
``band``                  (band)               int16      1-based L2A band number
``wavelength``/``fwhm``   (band)               float32    nm
``band_mean``/``band_std`` (band)              float32    statistics over valid pixels
========================  ===================  =========  =============================================

Every chunk ends with a CRC-32C of its compressed bytes (Zarr v3's ``crc32c``
codec): a flipped bit that still decompresses is caught at read.
"""

from __future__ import annotations

import json
import os
import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from spectralearth.platform.storage import filesystem, join, resolve_storage_options

__all__ = [
    "FORMAT_VERSION",
    "NODATA",
    "SCALE_FACTOR",
    "ChunkChecksumError",
    "CubeSpec",
    "UnsupportedChunkFormatError",
    "ViewChunkFormat",
    "create_build_arrays",
    "open_store",
    "view_chunk_format",
    "view_chunk_key",
    "write_view_bytes",
]

FORMAT_VERSION = "2.0"
NODATA = -32768
SCALE_FACTOR = np.float32(1e-4)
VIEW_INDEX_CHUNK = 65536
MOMENTS = ("count", "sum", "sum_sq")


class UnsupportedChunkFormatError(ValueError):
    """The ``reflectance`` array stores its chunks in a way :class:`ViewChunkFormat` cannot write (e.g. sharded)."""


class ChunkChecksumError(ValueError):
    """A chunk's stored CRC-32C does not match its bytes."""


@dataclass(frozen=True)
class CubeSpec:
    """Shape and encoding of a cube's views."""

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

    @property
    def n_bands(self) -> int:
        return len(self.band_numbers)


def open_store(url: str, *, storage_options: Mapping[str, Any] | None = None, read_only: bool = False):
    """A zarr store for a URL (local path or any fsspec URL)."""
    from zarr.storage import FsspecStore, LocalStore

    fs, path = filesystem(url, storage_options)
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    if "file" in protocols or "local" in protocols:
        return LocalStore(path, read_only=read_only)
    opts = resolve_storage_options(url, storage_options)
    return FsspecStore.from_url(url, storage_options=opts, read_only=read_only)


def _is_local(fs) -> bool:
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    return "file" in protocols or "local" in protocols


def create_build_arrays(build_url: str, *, n_slots: int, n_bands: int, patch_px: int, clevel: int,
                        slots_per_task: int, storage_options: Mapping[str, Any] | None = None) -> None:
    """Create (or open unchanged) a build's ``reflectance`` and ``view_moments`` arrays."""
    import zarr

    store = open_store(build_url, storage_options=storage_options)
    try:
        group = zarr.open_group(store, mode="r")
        if "reflectance" in group and tuple(group["reflectance"].shape) == (n_slots, n_bands, patch_px, patch_px):
            return  # a rerun of the same build: keep what is there
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        pass
    group = zarr.create_group(store, attributes={"spectralearth:format_version": FORMAT_VERSION}, overwrite=True)
    n = max(n_slots, 0)
    group.create_array(
        "reflectance", shape=(n, n_bands, patch_px, patch_px), dtype="int16", chunks=(1, n_bands, patch_px, patch_px),
        fill_value=NODATA, dimension_names=["slot", "band", "y", "x"],
        compressors=[zarr.codecs.BloscCodec(cname="zstd", clevel=clevel, shuffle="shuffle", typesize=2),
                     zarr.codecs.Crc32cCodec()],
        attributes={"long_name": "surface reflectance x 10000", "_FillValue": NODATA, "units": "1"},
    )
    group.create_array(
        "view_moments", shape=(n, len(MOMENTS), n_bands), dtype="int64", chunks=(max(1, slots_per_task), len(MOMENTS), n_bands),
        fill_value=0, dimension_names=["slot", "moment", "band"],
        compressors=[zarr.codecs.BloscCodec(cname="zstd", clevel=3, shuffle="shuffle", typesize=8),
                     zarr.codecs.Crc32cCodec()],
        attributes={"moments": list(MOMENTS), "long_name": "valid-pixel count, sum and sum of squares per band"},
    )


def view_chunk_key(slot: int, *, build: str | None = None) -> str:
    """Object key of one view's chunk: relative to the build (or to the cube when ``build`` is given)."""
    key = f"reflectance/c/{int(slot)}/0/0/0"
    return f"builds/{build}/{key}" if build else key


# --------------------------------------------------------------------------- direct chunk writes

_BLOSC_SHUFFLE = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}
_CRC = struct.Struct("<I")


def crc32c(data) -> int:
    """CRC-32C (Castagnoli) of ``data``, as Zarr v3's ``crc32c`` codec computes it."""
    import google_crc32c

    return int(google_crc32c.value(np.frombuffer(data, np.uint8)))


def split_checksum(raw: bytes | memoryview) -> memoryview:
    """The payload of a chunk ending in a CRC-32C trailer, after checking the trailer.

    Raises:
        ChunkChecksumError: the trailer does not match the payload (or the chunk is too short).
    """
    view = memoryview(raw).cast("B")
    if len(view) < _CRC.size:
        raise ChunkChecksumError(f"object is {len(view)} bytes, too short for its CRC-32C")
    body = view[: len(view) - _CRC.size]
    (stored,) = _CRC.unpack_from(view, len(view) - _CRC.size)
    computed = crc32c(body)
    if stored != computed:
        raise ChunkChecksumError(f"CRC-32C mismatch (stored {stored:08x}, computed {computed:08x})")
    return body


@dataclass(frozen=True)
class ViewChunkFormat:
    """How ``reflectance`` stores one view: the chunk's codec chain and object key, as its metadata says."""

    chunk_shape: tuple[int, ...]
    """Shape of one chunk: ``(1, band, y, x)``."""
    data_type: str
    """Zarr data type name, e.g. ``int16``."""
    fill_value: int
    """Fill value of the array."""
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
    checksum: bool = True
    """Chunks end with a CRC-32C of the compressed bytes (``crc32c`` codec)."""

    def key(self, view: int) -> str:
        """Object key, relative to the build, of the chunk holding slot ``view``."""
        coords = [str(int(view))] + ["0"] * (len(self.chunk_shape) - 1)
        if self.key_encoding == "default":
            return f"{self.array}/" + self.separator.join(["c", *coords])
        return f"{self.array}/" + self.separator.join(coords)

    def is_fill(self, view: np.ndarray) -> bool:
        """True if every value of ``view`` is the fill value."""
        return bool(np.all(np.asarray(view) == self.fill_value))

    def encode(self, view: np.ndarray) -> bytes:
        """The stored bytes of one view's chunk: exactly what zarr writes for ``reflectance[v] = view``.

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
        body = bytes(codec.encode(raw))
        return body + _CRC.pack(crc32c(body)) if self.checksum else body

    def decode(self, raw: bytes | memoryview, out: np.ndarray | None = None) -> np.ndarray:
        """Check and decode one stored chunk into ``out`` (or a new ``(band, y, x)`` array).

        Raises:
            ChunkChecksumError: the CRC-32C does not match.
            ValueError: the bytes do not decompress to one view.
        """
        from numcodecs import blosc

        body = split_checksum(raw) if self.checksum else memoryview(raw)
        if out is None:
            out = np.empty(self.chunk_shape[1:], dtype=np.dtype(self.data_type).newbyteorder("<" if self.endian == "little" else ">"))
        blosc.decompress(body, out)
        return out


def view_chunk_format(url: str, *, storage_options: Mapping[str, Any] | None = None, array: str = "reflectance") -> ViewChunkFormat:
    """Read how ``array`` of the build at ``url`` encodes and names its chunks (from its ``zarr.json``).

    Raises:
        UnsupportedChunkFormatError: the array is sharded, or its codecs are not
            ``bytes``, ``blosc`` (and ``crc32c``).
    """
    from spectralearth.platform.storage import read_bytes

    meta = json.loads(read_bytes(join(url, array, "zarr.json"), storage_options))
    codecs = meta.get("codecs") or []
    names = [c.get("name") for c in codecs]
    if names not in (["bytes", "blosc"], ["bytes", "blosc", "crc32c"]):
        raise UnsupportedChunkFormatError(f"{array}: codecs {names} (only bytes, blosc[, crc32c] can be written directly)")
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
        checksum=names[-1] == "crc32c",
    )


def write_view_bytes(fs, path: str, data: bytes) -> None:
    """Store one whole chunk object at ``path`` of the fsspec filesystem ``fs``.

    Local files are written to a temporary sibling and renamed into place (as zarr's
    ``LocalStore`` does); on object stores one PUT is a whole object.
    """
    if _is_local(fs):
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:12]}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    else:
        fs.pipe_file(path, data)
