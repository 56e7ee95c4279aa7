"""Write synthetic L2A products (folders or ZIPs) to any fsspec location."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from spectralearth.platform.storage import atomic_write_bytes, filesystem, join, protocol_of

from .config import SynthConfig
from .faults import apply_file_faults, assign_faults, bumped_version
from .plan import TileSpec, _from_utm, plan_archive, product_stem
from .render import MASKS, NODATA, Scene, scene_layers, spectral_rows
from .spectra import product_bands
from .xmlwriter import QL_SWIR_NM, QL_VNIR_NM, metadata_xml

__all__ = ["SynthReport", "synthesize_archive", "write_product", "MANIFEST_NAME"]

MANIFEST_NAME = "_synth_manifest.json"
_ROWS = 128
_MISMATCH_BANDS = 218


@dataclass(frozen=True)
class SynthReport:
    """What an archive run wrote."""

    products: tuple[str, ...]
    """Stems of every product written (including re-deliveries)."""
    faults: Mapping[str, str] = field(default_factory=dict)
    """Stem -> fault kind, for each injected fault."""
    superseded: tuple[str, ...] = ()
    """Stems that a newer delivery of the same (datatake, tile) supersedes."""
    zipped: tuple[str, ...] = ()
    """Stems delivered as ZIP."""
    bytes_written: int = 0
    """Total bytes of the products."""
    seconds: float = 0.0
    """Wall time of the run."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "products": list(self.products),
            "faults": dict(self.faults),
            "superseded": list(self.superseded),
            "zipped": list(self.zipped),
            "bytes_written": self.bytes_written,
            "seconds": round(self.seconds, 3),
        }


def _grid_corners(spec: TileSpec) -> tuple[tuple[float, float], ...]:
    a, _, c, _, e, f = spec.transform
    xs = [c, c + a * spec.width, c + a * spec.width, c]
    ys = [f, f, f + e * spec.height, f + e * spec.height]
    lon, lat = _from_utm(spec.epsg).transform(xs, ys)
    return tuple((float(x), float(y)) for x, y in zip(lon, lat, strict=True))


def _profile(spec: TileSpec, config: SynthConfig, *, count: int, dtype: str, nodata=None) -> dict:
    prof = {
        "driver": "GTiff", "width": spec.width, "height": spec.height, "count": count, "dtype": dtype,
        "crs": f"EPSG:{spec.epsg}", "transform": rasterio.Affine(*spec.transform),
        "tiled": True, "blockxsize": 128, "blockysize": 128,
    }
    if nodata is not None:
        prof["nodata"] = nodata
    if config.compress:
        prof["compress"] = config.compress
    return prof


def _image_profile(spec: TileSpec, config: SynthConfig, *, count: int) -> dict:
    """Creation profile of SPECTRAL_IMAGE.TIF for the configured layout (a COG is written tiled, then copied)."""
    prof = _profile(spec, config, count=count, dtype="int16", nodata=NODATA)
    prof["interleave"] = config.interleave
    if config.layout == "stripped":
        # GDAL's default strips (~8 KB each): one row per strip when pixel-interleaved, a few when band-interleaved
        for k in ("tiled", "blockxsize", "blockysize"):
            prof.pop(k, None)
    elif config.layout == "cog":
        prof.update(blockxsize=256, blockysize=256)
    return prof


def _to_cog(src: str, dst: str, config: SynthConfig) -> None:
    """Copy a tiled GeoTIFF to a Cloud-Optimized GeoTIFF (256 px tiles, overviews, IFDs first)."""
    from rasterio.shutil import copy as rio_copy

    opts = {"BLOCKSIZE": 256, "OVERVIEWS": "AUTO", "OVERVIEW_RESAMPLING": "NEAREST", "NUM_THREADS": 1,
            "COMPRESS": (config.compress or "NONE").upper()}
    rio_copy(src, dst, driver="COG", **opts)
    os.remove(src)


def _empty_scene(spec: TileSpec) -> Scene:
    shape = (spec.height, spec.width)
    z = np.zeros(shape, dtype=np.uint8)
    return Scene(
        inside=np.zeros(shape, dtype=bool), abundance=np.zeros((7, *shape), dtype=np.float32),
        brightness=np.ones(shape, dtype=np.float32), cloud_alpha=np.zeros(shape, dtype=np.float32),
        masks={k: z for k in MASKS}, classes=np.full(shape, 3, dtype=np.uint8),
    )


def _nearest(wl: np.ndarray, targets) -> list[int]:
    return [int(np.argmin(np.abs(wl - t))) for t in targets]


def _quicklook(rows: np.ndarray, idx: list[int]) -> np.ndarray:
    """16-bit quicklook of three bands, as DLR writes them (0 outside the swath)."""
    ql = rows[idx]
    out = np.clip(ql, 1, 65535).astype(np.uint16)
    out[ql == NODATA] = 0
    return out


def write_product(spec: TileSpec, folder: str, config: SynthConfig, *, fault: str | None = None,
                  stem: str | None = None) -> dict[str, int]:
    """Write one product's files into a local ``folder``; returns bytes per suffix.

    Args:
        spec: the planned tile.
        folder: local directory (created) that receives `<stem>-<SUFFIX>` files.
        config: archive parameters (footprints_only, interleave, compress).
        fault: a file-level fault kind to inject into this product, if any.
        stem: product stem, if it differs from ``spec.stem`` (a re-delivery).
    """
    stem = stem or spec.stem
    os.makedirs(folder, exist_ok=True)
    path = lambda suffix: os.path.join(folder, f"{stem}-{suffix}")  # noqa: E731
    wl, fwhm = product_bands(spec.pixel_seed)
    sizes: dict[str, int] = {}
    if config.footprints_only:
        scene = _empty_scene(spec) if fault == "all-nodata" else scene_layers(spec, stride=16)
    else:
        scene = _empty_scene(spec) if fault == "all-nodata" else scene_layers(spec)
        n_tif = _MISMATCH_BANDS if fault == "band-mismatch" else len(wl)
        prof = _image_profile(spec, config, count=n_tif)
        vidx, sidx = _nearest(wl, QL_VNIR_NM), _nearest(wl, QL_SWIR_NM)
        ql_v = np.zeros((3, spec.height, spec.width), dtype=np.uint16)
        ql_s = np.zeros_like(ql_v)
        image_path = path("SPECTRAL_IMAGE.TIF") + (".tmp.tif" if config.layout == "cog" else "")
        with rasterio.open(image_path, "w", **prof) as dst:
            for r0 in range(0, spec.height, _ROWS):
                r1 = min(spec.height, r0 + _ROWS)
                if fault == "all-nodata":
                    rows = np.full((len(wl), r1 - r0, spec.width), NODATA, dtype=np.int16)
                else:
                    rows = spectral_rows(spec, scene, wl, fwhm, r0, r1)
                dst.write(rows[:n_tif], window=Window(0, r0, spec.width, r1 - r0))
                ql_v[:, r0:r1] = _quicklook(rows, vidx)
                ql_s[:, r0:r1] = _quicklook(rows, sidx)
                del rows
        if config.layout == "cog":
            _to_cog(image_path, path("SPECTRAL_IMAGE.TIF"), config)
        layers = {f"QL_QUALITY_{k}.TIF": v for k, v in scene.masks.items()}
        layers["QL_QUALITY_CLASSES.TIF"] = scene.classes
        layers["QL_PIXELMASK.TIF"] = np.zeros((spec.height, spec.width), dtype=np.uint8)
        layers["QL_QUALITY_TESTFLAGS.TIF"] = np.zeros((spec.height, spec.width), dtype=np.uint8)
        for suffix, arr in layers.items():
            with rasterio.open(path(suffix), "w", **_profile(spec, config, count=1, dtype="uint8")) as dst:
                dst.write(arr, 1)
        for suffix, arr in (("QL_VNIR.TIF", ql_v), ("QL_SWIR.TIF", ql_s)):
            with rasterio.open(path(suffix), "w", **_profile(spec, config, count=3, dtype="uint16")) as dst:
                dst.write(arr)
        for name in os.listdir(folder):
            sizes[name[len(stem) + 1:]] = os.path.getsize(os.path.join(folder, name))
    cover = {k: 0.0 for k in (*MASKS, "WATER")} if fault == "all-nodata" else scene.cover()
    xml = metadata_xml(spec, wavelengths=wl, fwhm=fwhm, cover=cover, grid_corners_lonlat=_grid_corners(spec),
                       file_sizes=sizes, stem=stem, compact=config.compact_xml)
    with open(path("METADATA.XML"), "wb") as f:
        f.write(xml)
    sizes["METADATA.XML"] = len(xml)
    if fault:
        apply_file_faults(folder, stem, fault)
    return sizes


def _zip_folder(folder: str, stem: str, zip_path: str, *, deflate: bool, when) -> None:
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(zip_path, "w", compression=method, compresslevel=1 if deflate else None) as zf:
        for name in sorted(os.listdir(folder)):
            info = zipfile.ZipInfo(f"{stem}/{name}", date_time=when.timetuple()[:6])
            info.compress_type = method
            info.external_attr = 0o644 << 16
            with open(os.path.join(folder, name), "rb") as src, zf.open(info, "w", force_zip64=True) as dst:
                shutil.copyfileobj(src, dst, 1 << 22)


def synthesize_archive(out_url: str, config: SynthConfig, *, storage_options: Mapping[str, Any] | None = None,
                       progress: bool = False) -> SynthReport:
    """Write a synthetic EnMAP L2A archive.

    Layout: `<out>/<YYYY>/<MM>/<stem>/<stem>-<SUFFIX>` (folder delivery) or
    `<out>/<YYYY>/<MM>/<stem>.ZIP` with members `<stem>/<stem>-<SUFFIX>`, plus
    `<out>/_synth_manifest.json` (config, faults, superseded stems).

    Args:
        out_url: local path or fsspec URL (e.g. s3://bucket/archive).
        config: archive parameters.
        storage_options: fsspec options for ``out_url`` (no secrets; those come from the environment).
        progress: show a progress bar over products.

    Returns:
        A SynthReport of what was written.
    """
    t0 = time.perf_counter()
    specs = plan_archive(config)
    faults_by_index, dup_index = assign_faults(specs, config)
    jobs: list[tuple[TileSpec, str, str | None]] = [(s, s.stem, faults_by_index.get(s.index)) for s in specs]
    superseded: list[str] = []
    if dup_index is not None:
        old = specs[dup_index]
        newer = dataclasses.replace(old, version=bumped_version(old.version),
                                    processed=old.processed + timedelta(days=173, hours=5, minutes=17))
        new_stem = product_stem(newer.datatake, newer.start, newer.tile, newer.version, newer.processed)
        newer = dataclasses.replace(newer, stem=new_stem, zipped=False)
        jobs.insert(dup_index + 1, (newer, new_stem, None))
        superseded.append(old.stem)
    fault_map = {stem: kind for s, stem, kind in jobs if kind for kind in [kind]}
    if dup_index is not None:
        fault_map[jobs[dup_index + 1][1]] = "duplicate"

    fs, root = filesystem(out_url, storage_options)
    local = protocol_of(out_url) == "file"
    if local:
        os.makedirs(root, exist_ok=True)
    work = tempfile.mkdtemp(prefix="_synth-tmp-", dir=root if local else None)
    total = 0
    written: list[str] = []
    zipped: list[str] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), unit="product", desc="synth")
    try:
        for spec, stem, kind in jobs:
            folder = os.path.join(work, stem)
            sizes = write_product(spec, folder, config, fault=kind, stem=stem)
            if spec.zipped and not config.footprints_only:
                zip_path = os.path.join(work, f"{stem}.ZIP")
                _zip_folder(folder, stem, zip_path, deflate=config.zip_deflate, when=spec.processed)
                shutil.rmtree(folder)
                total += os.path.getsize(zip_path)
                target = join(root, spec.subdir, f"{stem}.ZIP")
                _deliver(fs, zip_path, target, local=local)
                zipped.append(stem)
            else:
                total += sum(os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder))
                _deliver(fs, folder, join(root, spec.subdir, stem), local=local)
            written.append(stem)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        shutil.rmtree(work, ignore_errors=True)
    report = SynthReport(products=tuple(written), faults=fault_map, superseded=tuple(superseded),
                         zipped=tuple(zipped), bytes_written=total, seconds=time.perf_counter() - t0)
    manifest = {
        "generator": "spectralearth.catalog.synth",
        "config": config.to_dict(),
        "products": len(written),
        "faults": dict(fault_map),
        "superseded": list(superseded),
        "zipped": len(zipped),
    }
    atomic_write_bytes(join(out_url, MANIFEST_NAME), json.dumps(manifest, indent=2, sort_keys=True).encode(),
                       storage_options)
    return report


def _deliver(fs, src: str, target: str, *, local: bool) -> None:
    """Move a finished local file/folder to its place (rename locally, upload otherwise)."""
    if local:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.isdir(target):
            shutil.rmtree(target)
        os.replace(src, target)
    elif os.path.isdir(src):
        fs.put(src.rstrip("/") + "/", target.rstrip("/") + "/", recursive=True)
        shutil.rmtree(src)
    else:
        fs.put_file(src, target)
        os.remove(src)
