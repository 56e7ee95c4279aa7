"""From a patch item to its pixels: an xarray DataArray with CRS and transform, or a GeoTIFF."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from spectralearth.platform import storage

__all__ = ["PatchRef", "export_patch", "open_patch", "patch_ref", "pixel_spectra"]


class PatchRef:
    """Where one patch item's views are in the cube (parsed and checked from the item)."""

    __slots__ = ("cube_href", "count", "crs", "item_id", "patch", "start", "transform", "version")

    def __init__(self, item: Mapping[str, Any]):
        from spectralearth.catalog.patches import CUBE_MEDIA_TYPE

        iid = item.get("id", "?")
        assets = item.get("assets") or {}
        asset = assets.get("cube")
        if not asset or asset.get("type") != CUBE_MEDIA_TYPE:
            raise ValueError(f"item {iid}: no 'cube' asset of type {CUBE_MEDIA_TYPE!r}")
        props = item.get("properties") or {}
        try:
            self.cube_href = str(asset["href"])
            self.version = str(asset["cube:version"])
            self.patch = int(asset["spectralearth:patch"])
            self.start = int(asset["spectralearth:view_start"])
            self.count = int(asset["spectralearth:view_count"])
            self.crs = str(props["proj:code"])
            self.transform = [float(v) for v in props["proj:transform"]]
        except KeyError as exc:
            raise ValueError(f"item {iid}: missing {exc.args[0]!r} (not a SpectralEarth patch item?)") from None
        self.item_id = iid


def patch_ref(item: Mapping[str, Any]) -> PatchRef:
    """Parse where a patch item's views are (raises ``ValueError`` naming the missing field)."""
    return PatchRef(item)


def _check_version(ref: PatchRef, storage_options) -> str:
    """The committed version the item names (raises ``ValueError`` if the cube does not hold it)."""
    from spectralearth.platform.cube import list_versions, resolve_version

    resolve_version(ref.cube_href, None, storage_options=storage_options)  # CubeNotCommittedError if nothing committed
    held = [v.id for v in list_versions(ref.cube_href, storage_options=storage_options)]
    if ref.version not in held:
        raise ValueError(f"item {ref.item_id} describes cube version {ref.version}, but {storage.redact(ref.cube_href)} "
                         f"holds versions {', '.join(held)}")
    return ref.version


def _open_reflectance(ref: PatchRef, storage_options, *, decode: bool = True):
    """The committed cube version the item names, as an ``xarray.Dataset`` (see ``open_cube``)."""
    from spectralearth.platform.cube import open_cube

    version = _check_version(ref, storage_options)
    return open_cube(ref.cube_href, version, storage_options=storage_options, decode=decode)


def open_patch(item: Mapping[str, Any], *, storage_options: Mapping[str, Any] | None = None):
    """The views of a patch item as a DataArray ``(time, wavelength, y, x)`` of float32 reflectance.

    Values are the cube's (decoded: ``int16 x 1e-4``, nodata NaN); ``y``/``x`` are the
    pixel-centre coordinates in the patch grid, with the CRS and transform set through
    rioxarray; ``tile`` (the source tile's catalog row) is a coordinate of ``time``.

    Raises:
        ValueError: the item is not a patch item, or its cube holds another version.
        CubeNotCommittedError: no committed cube at the asset's href.
    """
    import rioxarray  # noqa: F401  (registers .rio)
    from affine import Affine

    ref = patch_ref(item)
    ds = _open_reflectance(ref, storage_options)
    sel = slice(ref.start, ref.start + ref.count)
    patches = ds["view_patch"].isel(view=sel).values
    if not np.all(patches == ref.patch):
        raise ValueError(f"item {ref.item_id}: views {ref.start}..{ref.start + ref.count - 1} of the cube are not all of patch {ref.patch}")
    da = ds["reflectance"].isel(view=sel).load()
    a, b, c, d, e, f = ref.transform
    transform = Affine(a, b, c, d, e, f)
    ny, nx = da.sizes["y"], da.sizes["x"]
    xs = c + a * (np.arange(nx) + 0.5)
    ys = f + e * (np.arange(ny) + 0.5)
    times = np.asarray(ds["view_time"].isel(view=sel).values)
    if not np.issubdtype(times.dtype, np.datetime64):
        times = np.asarray(times, "datetime64[us]")
    wl = ds["wavelength"].values.astype(np.float64)
    out = da.drop_vars([v for v in da.coords if v not in ("view", "band")])
    out = out.rename({"view": "time", "band": "wavelength"}).assign_coords(
        time=times, wavelength=wl, y=ys, x=xs, tile=("time", ds["view_tile"].isel(view=sel).values)
    )
    out.attrs = {"item_id": ref.item_id, "cube:version": ref.version, "patch": ref.patch, "units": "1",
                 "long_name": "surface reflectance"}
    out = out.rio.write_crs(ref.crs).rio.write_transform(transform)
    return out


def pixel_spectra(item: Mapping[str, Any], row: int, col: int, *, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Reflectance of one pixel of a patch for every view: ``{wavelength_nm, views: [{datetime, reflectance}]}``.

    Nodata values come back as None.

    Raises:
        ValueError: the item is not a patch item, or ``row``/``col`` lie outside the patch.
    """
    from spectralearth.platform.cube import NODATA

    ref = patch_ref(item)
    g = _open_reflectance(ref, storage_options, decode=False)
    refl = g["reflectance"]
    ny, nx = refl.shape[-2:]
    if not (0 <= row < ny and 0 <= col < nx):
        raise ValueError(f"pixel (row {row}, col {col}) is outside the {ny}x{nx} patch")
    values = np.asarray(refl.data[ref.start : ref.start + ref.count, :, row, col].compute())  # stored int16
    times = np.asarray(g["view_time"].values[ref.start : ref.start + ref.count])
    if not np.issubdtype(times.dtype, np.datetime64):
        times = np.asarray(times, np.int64).astype("datetime64[us]")
    stamps = np.datetime_as_string(times.astype("datetime64[s]"), unit="s")
    wl = np.asarray(g["wavelength"].values, np.float64)
    return {
        "item_id": ref.item_id,
        "row": row,
        "col": col,
        "wavelength_nm": [round(float(w), 3) for w in wl],
        "views": [
            {"datetime": f"{t}Z", "reflectance": [None if v == NODATA else round(float(v) * 1e-4, 5) for v in vals.tolist()]}
            for t, vals in zip(stamps, values, strict=True)
        ],
    }


def export_patch(item: Mapping[str, Any], out, *, storage_options: Mapping[str, Any] | None = None) -> int:
    """Write a patch item's views as one GeoTIFF (bands: every wavelength of each view in turn).

    ``out`` is a path or a binary file object. Band descriptions name the view's date and
    the wavelength; nodata is NaN (float32, deflate). Returns the number of bands written.
    """
    import rasterio

    da = open_patch(item, storage_options=storage_options)
    nt, nw, ny, nx = da.shape
    data = da.values.reshape(nt * nw, ny, nx).astype(np.float32)
    times = np.datetime_as_string(da["time"].values.astype("datetime64[s]"), unit="s")
    profile = {
        "driver": "GTiff", "width": nx, "height": ny, "count": nt * nw, "dtype": "float32",
        "crs": da.rio.crs, "transform": da.rio.transform(), "nodata": np.nan, "compress": "deflate",
        "tiled": True, "blockxsize": 128 if nx % 16 == 0 else 256, "blockysize": 128 if ny % 16 == 0 else 256,
        "interleave": "band",
    }
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data)
        for t in range(nt):
            for w in range(nw):
                dst.set_band_description(t * nw + w + 1, f"{times[t]}Z {float(da['wavelength'][w]):.2f} nm")
        dst.update_tags(item_id=da.attrs["item_id"], cube_version=da.attrs["cube:version"], units="reflectance")
    return nt * nw
