"""Kerchunk references for a tile's SPECTRAL_IMAGE.TIF.

A reference set lets anyone open a tile lazily with plain xarray, without this
project and without copying the GeoTIFF::

    import xarray as xr
    ds = xr.open_dataset(
        "s3://bucket/catalog/refs/<product>.json", engine="kerchunk",
        storage_options={"remote_protocol": "s3", "remote_options": {...}},
    )

The references describe a zarr v2 *group* (not kerchunk's bare array) with
``reflectance`` (y, x, band) or (band, y, x) as stored in the file, coordinate
arrays ``x``, ``y`` (UTM pixel centres), ``band`` (1-based band numbers),
``wavelength`` and ``fwhm`` (nm), and a CF ``spatial_ref`` variable so that
rioxarray finds the CRS. ``reflectance`` carries ``scale_factor`` 1e-4 and
``_FillValue`` -32768, so xarray decodes it to reflectance with NaN for nodata
(``mask_and_scale=False`` keeps the raw int16).

ZIP deliveries are referenced in place when the member is *stored*
(uncompressed): chunk offsets are shifted to the member's data offset inside the
ZIP. A deflated member cannot be referenced; :func:`tiff_references` then raises.

Every image layout is referenced: tiled TIFFs and COGs (one chunk per tile, full
resolution), stripped TIFFs pixel- or band-interleaved (one chunk per strip). A
stripped TIFF whose last strip is short, which kerchunk refuses, gets its short strips
inlined, padded with nodata (see ``_strip_refs``).
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["tiff_references", "zip_member_data_offset", "ReferenceError_"]


class ReferenceError_(Exception):
    """References cannot be built for this file (e.g. a compressed ZIP member)."""


def _inline(arr: np.ndarray) -> str:
    return "base64:" + base64.b64encode(np.ascontiguousarray(arr).tobytes()).decode("ascii")


def _zarray(shape: Sequence[int], chunks: Sequence[int], dtype: str, fill_value: Any = None) -> str:
    return json.dumps(
        {
            "zarr_format": 2,
            "shape": list(shape),
            "chunks": list(chunks),
            "dtype": dtype,
            "compressor": None,
            "filters": None,
            "fill_value": fill_value,
            "order": "C",
        }
    )


def _coord(refs: dict, name: str, values: np.ndarray, dims: list[str], attrs: Mapping[str, Any]) -> None:
    values = np.asarray(values)
    refs[f"{name}/.zarray"] = _zarray(values.shape, values.shape or [1], values.dtype.str)
    refs[f"{name}/.zattrs"] = json.dumps({"_ARRAY_DIMENSIONS": dims, **attrs})
    key = ".".join("0" for _ in range(max(values.ndim, 1))) if values.ndim else "0"
    refs[f"{name}/{key}"] = _inline(values)


def zip_member_data_offset(fs, zip_path: str, member: str) -> tuple[int, int]:
    """Return (offset, size) of a *stored* ZIP member's bytes inside the ZIP object."""
    import zipfile

    with fs.open(zip_path, "rb") as f:
        with zipfile.ZipFile(f) as zf:
            info = zf.getinfo(member)
        if info.compress_type != zipfile.ZIP_STORED:
            raise ReferenceError_(f"{member}: ZIP member is compressed; references need a stored member")
        f.seek(info.header_offset)
        header = f.read(30)
    if header[:4] != b"PK\x03\x04":
        raise ReferenceError_(f"{member}: bad local ZIP header")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len, info.file_size


def _zip_member_refs(url: str, storage_options: Mapping[str, Any] | None) -> tuple[dict, str, int]:
    """References for a stored TIFF member of a ZIP, pointing into the ZIP object itself."""
    import io

    import tifffile

    from spectralearth.platform.storage import filesystem

    member, zip_url = url[len("zip://") :].split("::", 1)
    fs, zpath = filesystem(zip_url, storage_options)
    offset, size = zip_member_data_offset(fs, zpath, member)
    with fs.open(zpath, "rb") as f, tifffile.TiffFile(f, offset=offset, size=size) as tif:
        try:
            store = tif.series[0].aszarr()
            buf = io.StringIO()
            store.write_fsspec(buf, url="x")
        except ValueError as exc:
            if "incomplete chunks" not in str(exc):
                raise
            return _strip_refs(tif, f, base=offset), zip_url, offset
    raw = json.loads(buf.getvalue())
    return raw, zip_url, offset


def _strip_refs(tif, f, *, base: int = 0) -> dict:
    """References for an uncompressed stripped TIFF whose last strip is short (kerchunk refuses those).

    One chunk per strip (``rowsperstrip`` rows; per band when band-interleaved). Every full
    strip is referenced in place; each short last strip is read, padded with nodata to a
    whole chunk and inlined (``rowsperstrip × width`` pixels per band: a few hundred kB
    for a GDAL-default 8 kB strip). Offsets are relative to the TIFF's start (``base`` is
    where that start is in ``f``).
    """
    page = tif.pages.first
    if page.is_tiled or int(page.compression) != 1:
        raise ReferenceError_("compressed TIFF with a short last strip: no in-place references possible")
    h, w, nb, rps = int(page.imagelength), int(page.imagewidth), int(page.samplesperpixel), int(page.rowsperstrip)
    dt = np.dtype(page.dtype).newbyteorder("<" if tif.byteorder == "<" else ">")
    planar = nb > 1 and int(page.planarconfig) == 2
    nstrips = -(-h // rps)
    if planar:
        shape, chunks, dims = [nb, h, w], [1, rps, w], ["S", "Y", "X"]
        full = rps * w * dt.itemsize
    else:
        shape, chunks, dims = [h, w, nb], [rps, w, nb], ["Y", "X", "S"]
        full = rps * w * nb * dt.itemsize
    raw: dict[str, Any] = {
        ".zarray": json.dumps({"zarr_format": 2, "shape": shape, "chunks": chunks, "dtype": dt.str, "compressor": None,
                               "filters": None, "fill_value": None, "order": "C"}),
        ".zattrs": json.dumps({"_ARRAY_DIMENSIONS": dims}),
    }
    offsets, counts = page.dataoffsets, page.databytecounts
    for i, (off, count) in enumerate(zip(offsets, counts, strict=True)):
        b, s = divmod(i, nstrips) if planar else (0, i)
        key = f"{b}.{s}.0" if planar else f"{s}.0.0"
        if int(count) == full:
            raw[key] = ["x", int(off), int(count)]
            continue
        f.seek(base + int(off))
        data = f.read(int(count))
        pad = np.full(full // dt.itemsize, -32768 if dt.kind == "i" else 0, dtype=dt)
        pad[: len(data) // dt.itemsize] = np.frombuffer(data, dtype=dt)
        raw[key] = _inline(pad)
    return raw


def tiff_references(
    tiff_url: str,
    *,
    product: str,
    wavelengths_nm: Sequence[float],
    fwhm_nm: Sequence[float],
    epsg: int,
    transform: Sequence[float],
    storage_options: Mapping[str, Any] | None = None,
    target_url: str | None = None,
    target_offset: int = 0,
) -> dict[str, Any]:
    """Build kerchunk references (version 1 JSON dict) for a GeoTIFF.

    Args:
        tiff_url: where kerchunk reads the TIFF structure (any fsspec URL, also ``zip://m::url``).
        product: product id, recorded in the group attributes.
        wavelengths_nm: band centre wavelengths from the metadata.
        fwhm_nm: band widths from the metadata.
        epsg: EPSG code of the grid.
        transform: affine transform (a, b, c, d, e, f) of the grid.
        storage_options: fsspec options for reading ``tiff_url``.
        target_url: URL the chunk references should point at (default ``tiff_url``).
        target_offset: byte offset added to every chunk offset (stored ZIP members).
    """
    from pyproj import CRS

    if tiff_url.startswith("tar://"):
        raise ReferenceError_(f"{product}: a member of a tar archive cannot be referenced in place")
    if tiff_url.startswith("zip://"):
        raw, target_url, target_offset = _zip_member_refs(tiff_url, storage_options)
    else:
        from kerchunk.tiff import tiff_to_zarr

        from spectralearth.platform.storage import resolve_storage_options

        opts = resolve_storage_options(tiff_url, storage_options)
        try:
            raw = tiff_to_zarr(tiff_url, remote_options=opts)
        except ValueError as exc:
            if "incomplete chunks" not in str(exc):
                raise
            import fsspec
            import tifffile

            with fsspec.open(tiff_url, "rb", **opts) as f, tifffile.TiffFile(f) as tif:
                raw = _strip_refs(tif, f)
    if ".zarray" not in raw and "0/.zarray" in raw:
        # a COG with overviews is a pyramid (levels 0, 1, ...): reference the full resolution
        raw = {k[2:]: v for k, v in raw.items() if k.startswith("0/")}
    zarray = json.loads(raw[".zarray"])
    tattrs = json.loads(raw.get(".zattrs", "{}"))
    dims_in = tattrs.get("_ARRAY_DIMENSIONS", [])
    dim_map = {"S": "band", "Y": "y", "X": "x"}
    dims = [dim_map.get(d, d.lower()) for d in dims_in]
    shape = dict(zip(dims, zarray["shape"]))
    nb = shape.get("band", 1)
    if len(wavelengths_nm) != nb:
        raise ReferenceError_(f"{product}: TIFF has {nb} bands, metadata lists {len(wavelengths_nm)} wavelengths")
    a, b, c, d, e, f = (float(v) for v in transform[:6])
    xs = c + a * (np.arange(shape["x"]) + 0.5)
    ys = f + e * (np.arange(shape["y"]) + 0.5)
    crs = CRS.from_epsg(int(epsg))
    target = target_url or tiff_url

    refs: dict[str, Any] = {
        ".zgroup": json.dumps({"zarr_format": 2}),
        ".zattrs": json.dumps({"product": product, "crs": f"EPSG:{int(epsg)}", "Conventions": "CF-1.8"}),
    }
    zarray["fill_value"] = -32768
    refs["reflectance/.zarray"] = json.dumps(zarray)
    refs["reflectance/.zattrs"] = json.dumps(
        {
            "_ARRAY_DIMENSIONS": dims,
            "_FillValue": -32768,
            "scale_factor": 0.0001,
            "add_offset": 0.0,
            "long_name": "surface reflectance",
            "units": "1",
            "grid_mapping": "spatial_ref",
        }
    )
    for key, value in raw.items():
        if key.startswith("."):
            continue
        if isinstance(value, list) and len(value) == 3:
            _, off, size = value
            value = [target, int(off) + int(target_offset), int(size)]
        refs[f"reflectance/{key}"] = value
    _coord(refs, "x", xs, ["x"], {"units": "m", "standard_name": "projection_x_coordinate", "axis": "X"})
    _coord(refs, "y", ys, ["y"], {"units": "m", "standard_name": "projection_y_coordinate", "axis": "Y"})
    _coord(refs, "band", np.arange(1, nb + 1, dtype="int32"), ["band"], {"long_name": "L2A band number"})
    _coord(refs, "wavelength", np.asarray(wavelengths_nm, "float32"), ["band"], {"units": "nm", "long_name": "band centre wavelength"})
    _coord(refs, "fwhm", np.asarray(fwhm_nm, "float32"), ["band"], {"units": "nm", "long_name": "full width at half maximum"})
    refs["spatial_ref/.zarray"] = _zarray([], [], "<i4", None)
    refs["spatial_ref/.zattrs"] = json.dumps(
        {
            "_ARRAY_DIMENSIONS": [],
            "crs_wkt": crs.to_wkt(),
            "spatial_ref": crs.to_wkt(),
            "GeoTransform": f"{c} {a} {b} {f} {d} {e}",
        }
    )
    refs["spatial_ref/0"] = _inline(np.zeros((), "int32"))
    # xarray needs the coordinates of "wavelength"/"fwhm" declared to attach them to reflectance
    attrs = json.loads(refs["reflectance/.zattrs"])
    attrs["coordinates"] = "wavelength fwhm"
    refs["reflectance/.zattrs"] = json.dumps(attrs)
    return {"version": 1, "refs": refs}
