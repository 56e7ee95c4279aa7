"""Label pairing: a land-cover raster -> a label cube aligned with the patch cube.

For every patch of the cube (or a seeded sample of them) the label product is
reprojected onto the patch's own grid (its UTM zone, 30 m, ``patch_px`` square, upper-left
corner ``patch_x0``/``patch_y0``) with nearest-neighbour resampling and GDAL's exact
transformer (``tolerance=0``: every destination pixel centre is transformed, none
approximated), and its codes are mapped through a :class:`~.nomenclatures.Nomenclature`.

The label cube is a Zarr v3 group indexed by the cube's own ``patch`` dimension (label
``i`` belongs to patch ``i``):

==================  ==================  =======  ===============================================
array               dims                dtype    meaning
==================  ==================  =======  ===============================================
``mask``            (patch, y, x)       uint8    class per pixel, 255 = ignore (``--task seg``)
``labels``          (patch, class)      uint8    1 where the class covers >= ``min_area`` of the labelled pixels
``class_fraction``  (patch, class)      float32  share of the labelled pixels in each class
``labelled``        (patch)             float32  share of the patch's pixels with a class
``status``          (patch)             int8     0 kept, 1 too little labelled, 2 outside the product, 3 not sampled
``split_random``    (patch)             int8     0 train, 1 val, 2 test, -1 none (75/10/15, seeded)
``split_blocked``   (patch)             int8     the same, spatially blocked (see :mod:`.splits`)
==================  ==================  =======  ===============================================

The label product may be one raster or a folder of rasters in the same nomenclature (as
CDL and NLCD are delivered per state); pixels take the first raster that covers them.

Work is one dask task per range of patches aligned with the ``mask`` chunks, so no two
tasks write the same object. The group's root ``zarr.json`` is written last: a crash never
leaves a label cube that readers can open.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from spectralearth.pipelines.nomenclatures import IGNORE, Nomenclature
from spectralearth.pipelines.splits import DEFAULT_FRACTIONS, SPLIT_NAMES, blocked_split, random_split
from spectralearth.platform import storage

__all__ = [
    "LABEL_FORMAT_VERSION",
    "LabelCubeExistsError",
    "LabelParams",
    "LabelReport",
    "PatchGrid",
    "label_cube",
    "label_patch",
    "list_label_sources",
    "open_label_cube",
    "read_patch_grid",
]

LABEL_FORMAT_VERSION = "1.0"
KEPT, LOW_LABELLED, OUTSIDE, NOT_SAMPLED = 0, 1, 2, 3
STATUS_NAMES = ("kept", "too little labelled area", "outside the label product", "not sampled")
_NOCODE = np.iinfo(np.int32).min
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2")


class LabelCubeExistsError(FileExistsError):
    """A committed label cube is already at the URL (pass overwrite=True to replace it)."""


@dataclass(frozen=True)
class LabelParams:
    """How patches are labelled, kept and split."""

    task: str = "seg"
    """``seg`` (a mask per patch) or ``multilabel`` (a class-presence vector per patch)."""
    min_labelled: float = 0.25
    """Patches with a smaller share of labelled pixels are dropped (and counted)."""
    min_area: float = 0.01
    """A class is present (``labels``) when it covers at least this share of the labelled pixels."""
    sample: int | None = None
    """Label only this many patches (a seeded sample); None: all."""
    seed: int = 0
    """Seed of the sample and of both splits."""
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
    """Train, validation, test shares of both splits."""
    block_m: float = 15360.0
    """Side of the blocks of the blocked split (metres of the patch grids)."""
    gap_m: float = 0.0
    """Blocked split: patches closer than this count as neighbours too."""
    pixel_m: float = 30.0
    """Pixel size of the patch grids."""
    tolerance: float = 0.0
    """GDAL warp approximation error in source pixels (0: the exact transform for every pixel)."""
    chunk_patches: int = 32
    """Patches per ``mask`` chunk."""
    patches_per_task: int = 256
    """Patches per dask task (rounded up to whole chunks)."""

    def __post_init__(self) -> None:
        if self.task not in ("seg", "multilabel"):
            raise ValueError(f"task must be 'seg' or 'multilabel', not {self.task!r}")
        for name in ("min_labelled", "min_area"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be within 0..1, got {v}")
        if self.sample is not None and self.sample < 1:
            raise ValueError(f"sample must be at least 1, got {self.sample}")
        if self.chunk_patches < 1 or self.patches_per_task < 1:
            raise ValueError("chunk_patches and patches_per_task must be at least 1")
        if self.block_m <= 0 or self.pixel_m <= 0 or self.gap_m < 0 or self.tolerance < 0:
            raise ValueError("block_m and pixel_m must be positive, gap_m and tolerance non-negative")


@dataclass(frozen=True)
class PatchGrid:
    """Where each patch of a cube lies: its grid (EPSG, upper-left corner) and centre."""

    crs: np.ndarray
    """EPSG code of each patch's grid."""
    x0: np.ndarray
    """Upper-left corner x (metres of ``crs``)."""
    y0: np.ndarray
    """Upper-left corner y."""
    lon: np.ndarray
    """Centre longitude (WGS84)."""
    lat: np.ndarray
    """Centre latitude (WGS84)."""
    patch_px: int
    """Patch side in pixels."""

    @property
    def n(self) -> int:
        return len(self.crs)


@dataclass
class LabelReport:
    """What a labelling run did."""

    out_url: str
    cube_url: str
    labels_url: str
    task: str
    nomenclature: str
    patches: int = 0
    sampled: int = 0
    kept: int = 0
    dropped_low_labelled: int = 0
    dropped_outside: int = 0
    sources: int = 0
    tasks: int = 0
    class_patches: dict[str, int] = field(default_factory=dict)
    splits: dict[str, dict[str, int]] = field(default_factory=dict)
    guards: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_patch_grid(cube_url: str, *, storage_options: Mapping[str, Any] | None = None) -> PatchGrid:
    """The patch table of a committed cube (the one place that reads the cube's patch arrays)."""
    from spectralearth.platform.cube import open_cube

    g = open_cube(cube_url, storage_options=storage_options, decode=False)
    px = int(g.attrs.get("spectralearth:patch_px") or g.attrs.get("patch_size") or g["reflectance"].shape[-1])
    return PatchGrid(
        crs=np.asarray(g["patch_crs"][:], np.int64), x0=np.asarray(g["patch_x0"][:], float),
        y0=np.asarray(g["patch_y0"][:], float), lon=np.asarray(g["patch_lon"][:], float),
        lat=np.asarray(g["patch_lat"][:], float), patch_px=px,
    )


def list_label_sources(url: str, *, storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """The rasters of a label product: ``url`` itself, or the rasters in the folder ``url``.

    Raises:
        FileNotFoundError: nothing at ``url``, or a folder without rasters.
    """
    fs, path = storage.filesystem(url, storage_options)
    if fs.isdir(path):
        proto = storage.protocol_of(url)
        found = sorted(p for p in fs.find(path) if p.lower().endswith(RASTER_SUFFIXES))
        if not found:
            raise FileNotFoundError(f"label product {url}: folder holds no raster ({', '.join(RASTER_SUFFIXES)})")
        return [p if proto in ("", "file", "local") else f"{proto}://{p}" for p in found]
    if not fs.exists(path):
        raise FileNotFoundError(f"label product {url}: not found")
    return [url]


@contextlib.contextmanager
def _open_raster(href: str, storage_options):
    import rasterio

    proto = storage.protocol_of(href)
    try:
        if proto in ("", "file", "local"):
            ds = rasterio.open(storage.strip_protocol(href))
        else:
            fs, path = storage.filesystem(href, storage_options)
            ds = rasterio.open(path, opener=fs)
    except rasterio.errors.RasterioIOError as exc:
        raise ValueError(f"label product {storage.redact(href)}: not a readable raster ({exc})") from None
    try:
        if ds.crs is None:
            raise ValueError(f"label product {storage.redact(href)}: raster has no CRS")
        yield ds
    finally:
        ds.close()


@functools.lru_cache(maxsize=64)
def _transformer(epsg: int, wkt: str):
    import pyproj

    return pyproj.Transformer.from_crs(pyproj.CRS.from_epsg(epsg), pyproj.CRS.from_wkt(wkt), always_xy=True)


def label_patch(datasets, *, epsg: int, x0: float, y0: float, px: int, pixel_m: float = 30.0,
                tolerance: float = 0.0) -> tuple[np.ndarray, np.ndarray, bool]:
    """The product's codes on one patch grid (nearest neighbour).

    Args:
        datasets: open rasterio datasets of the product (first one wins where they overlap).
        epsg, x0, y0: the patch grid (EPSG code, upper-left corner).
        px: patch side in pixels.
        pixel_m: pixel size of the patch grid.
        tolerance: GDAL warp approximation error in source pixels (0: exact).

    Returns:
        (int32 codes ``(px, px)``, bool valid ``(px, px)``, whether any raster overlaps the patch).
    """
    import rasterio
    from rasterio.crs import CRS
    from rasterio.transform import from_origin
    from rasterio.warp import Resampling, reproject

    dst_crs = CRS.from_epsg(int(epsg))
    side = px * pixel_m
    codes = np.full((px, px), _NOCODE, np.int32)
    touched = False
    t = np.linspace(0.0, side, 21)
    edge_x = np.concatenate([x0 + t, np.full(21, x0 + side), x0 + t[::-1], np.full(21, x0)])
    edge_y = np.concatenate([np.full(21, y0), y0 - t, np.full(21, y0 - side), y0 - t[::-1]])
    for ds in datasets:
        bx, by = _transformer(int(epsg), ds.crs.to_wkt()).transform(edge_x, edge_y)
        left, right, bottom, top = np.min(bx), np.max(bx), np.min(by), np.max(by)
        b = ds.bounds
        if not np.all(np.isfinite([left, right, bottom, top])):
            continue
        if left >= b.right or right <= b.left or bottom >= b.top or top <= b.bottom:
            continue
        touched = True
        reproject(
            source=rasterio.band(ds, 1), destination=codes, src_nodata=ds.nodata,
            dst_transform=from_origin(x0, y0, pixel_m, pixel_m), dst_crs=dst_crs, dst_nodata=_NOCODE,
            init_dest_nodata=False, resampling=Resampling.nearest, tolerance=tolerance,
        )
    return codes, codes != _NOCODE, touched


def label_task(out_url: str, sources: list[str], start: int, stop: int, patches: dict[str, list], *,
               params: dict, nomenclature: dict, storage_options: dict) -> dict:
    """Label the patches ``patches['index']`` (within ``[start, stop)``) and write their mask chunks.

    Returns per-patch status, labelled share and class fractions (client-side arrays).
    """
    p = LabelParams(**{**params, "fractions": tuple(params["fractions"])})
    nom = Nomenclature.from_dict(nomenclature)
    px = int(patches["px"])
    n = len(patches["index"])
    status = np.full(n, OUTSIDE, np.int8)
    labelled = np.zeros(n, np.float32)
    frac = np.zeros((n, nom.n_classes), np.float32)
    block = np.full((stop - start, px, px), IGNORE, np.uint8) if p.task == "seg" else None
    with contextlib.ExitStack() as stack:
        dss = [stack.enter_context(_open_raster(s, storage_options)) for s in sources]
        for k, (i, epsg, x0, y0) in enumerate(zip(patches["index"], patches["crs"], patches["x0"], patches["y0"], strict=True)):
            codes, valid, touched = label_patch(dss, epsg=epsg, x0=x0, y0=y0, px=px, pixel_m=p.pixel_m, tolerance=p.tolerance)
            mask = nom.apply(codes, valid)
            ok = mask != IGNORE
            labelled[k] = ok.mean()
            if ok.any():
                frac[k] = np.bincount(mask[ok], minlength=nom.n_classes)[: nom.n_classes] / ok.sum()
            if not touched or not ok.any():
                status[k] = OUTSIDE if not touched else LOW_LABELLED
            elif labelled[k] < p.min_labelled:
                status[k] = LOW_LABELLED
            else:
                status[k] = KEPT
                if block is not None:
                    block[i - start] = mask
    if block is not None:
        import zarr

        from spectralearth.platform.cube import open_store

        arr = zarr.open_array(open_store(storage.join(out_url, "mask"), storage_options=storage_options), mode="r+")
        arr[start:stop] = block
    return {"index": list(patches["index"]), "status": status, "labelled": labelled, "fraction": frac}


def _create(out_url: str, name: str, shape, dtype, chunks, dims, fill, storage_options, attrs=None, compress=False):
    import zarr

    from spectralearth.platform.cube import open_store

    comp = zarr.codecs.BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle") if compress else "auto"
    zarr.create_array(store=open_store(storage.join(out_url, name), storage_options=storage_options), shape=shape,
                      dtype=dtype, chunks=chunks, fill_value=fill, compressors=comp, dimension_names=dims,
                      attributes=attrs or {}, overwrite=True)


def _write(out_url: str, name: str, values: np.ndarray, storage_options) -> None:
    import zarr

    from spectralearth.platform.cube import open_store

    zarr.open_array(open_store(storage.join(out_url, name), storage_options=storage_options), mode="r+")[...] = values


def _prepare_out(out_url: str, storage_options, overwrite: bool) -> None:
    fs, path = storage.filesystem(out_url, storage_options)
    if fs.exists(path.rstrip("/") + "/zarr.json"):
        if not overwrite:
            raise LabelCubeExistsError(f"a label cube is already committed at {storage.redact(out_url)} (use overwrite)")
    if fs.exists(path):
        fs.rm(path, recursive=True)  # a committed cube being replaced, or the leftovers of a crashed run


def label_cube(
    cube_url: str,
    labels_url: str,
    out_url: str,
    *,
    nomenclature: Nomenclature,
    params: LabelParams = LabelParams(),
    cluster=None,
    storage_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> LabelReport:
    """Pair every patch of ``cube_url`` with the label product at ``labels_url``; write the label cube.

    Args:
        cube_url: the committed patch cube.
        labels_url: a land-cover raster (any GDAL format: GeoTIFF, VRT, ...) or a folder of rasters.
        out_url: where the label cube goes.
        nomenclature: product codes -> classes.
        params: task, thresholds, sample, splits.
        cluster: a :class:`~spectralearth.platform.cluster.ClusterSpec` (default: a local cluster).
        storage_options: fsspec options for every URL (no secrets).
        overwrite: replace a committed label cube.
        progress: show a progress bar.

    Returns:
        The :class:`LabelReport` (also stored in the label cube's attributes).

    Raises:
        CubeNotCommittedError: no cube at ``cube_url``.
        FileNotFoundError: no label product at ``labels_url``.
        ValueError: a raster that cannot be read or has no CRS (naming it).
        LabelCubeExistsError: a committed label cube at ``out_url`` and not ``overwrite``.
    """
    from spectralearth.platform.cluster import ClusterSpec, cluster_client

    t0 = time.perf_counter()
    opts = dict(storage_options or {})
    grid = read_patch_grid(cube_url, storage_options=opts)
    sources = list_label_sources(labels_url, storage_options=opts)
    for s in sources:  # fail early, naming the raster, before any work is spread out
        with _open_raster(s, opts):
            pass
    _prepare_out(out_url, opts, overwrite)
    report = LabelReport(out_url=storage.redact(out_url), cube_url=storage.redact(cube_url),
                         labels_url=storage.redact(labels_url), task=params.task, nomenclature=nomenclature.name,
                         patches=grid.n, sources=len(sources))
    n, k, px = grid.n, nomenclature.n_classes, grid.patch_px
    if params.sample is not None and params.sample < n:
        chosen = np.sort(np.random.default_rng(params.seed).choice(n, params.sample, replace=False))
    else:
        chosen = np.arange(n)
    report.sampled = len(chosen)
    cp = params.chunk_patches
    if params.task == "seg":
        _create(out_url, "mask", (n, px, px), "uint8", (min(cp, max(n, 1)), px, px), ["patch", "y", "x"], IGNORE, opts,
                attrs={"_FillValue": IGNORE, "long_name": "class index", "ignore_value": IGNORE}, compress=True)
    per_task = -(-params.patches_per_task // cp) * cp
    tasks = []
    for start in range(0, n, per_task):
        stop = min(n, start + per_task)
        sel = chosen[(chosen >= start) & (chosen < stop)]
        if len(sel):
            tasks.append((start, stop, {"index": sel.tolist(), "crs": grid.crs[sel].tolist(), "x0": grid.x0[sel].tolist(),
                                        "y0": grid.y0[sel].tolist(), "px": px}))
    report.tasks = len(tasks)
    pdict = {**asdict(params), "fractions": list(params.fractions)}
    kw = dict(params=pdict, nomenclature=nomenclature.to_dict(), storage_options=opts)
    status = np.full(n, NOT_SAMPLED, np.int8)
    labelled = np.zeros(n, np.float32)
    frac = np.zeros((n, k), np.float32)

    def take(res: dict) -> None:
        idx = np.asarray(res["index"], np.int64)
        status[idx], labelled[idx], frac[idx] = res["status"], res["labelled"], res["fraction"]

    bar = None
    if progress and tasks:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(chosen), desc="labels", unit="patch", dynamic_ncols=True, leave=False)
    try:
        spec = cluster or ClusterSpec()
        if spec.kind == "sync":
            for start, stop, pt in tasks:
                take(label_task(out_url, sources, start, stop, pt, **kw))
                if bar:
                    bar.update(len(pt["index"]))
        elif tasks:
            from distributed import as_completed

            with cluster_client(spec) as client:
                futs = {client.submit(label_task, out_url, sources, start, stop, pt, key=f"labels-{start}", pure=False, **kw): pt
                        for start, stop, pt in tasks}
                for fut in as_completed(list(futs)):
                    take(fut.result())
                    if bar:
                        bar.update(len(futs[fut]["index"]))
                    fut.release()
    finally:
        if bar:
            bar.close()

    keep = status == KEPT
    labels = (frac >= max(params.min_area, 1e-12)) & keep[:, None]
    s_random = random_split(keep, seed=params.seed, fractions=params.fractions)
    s_blocked, guards = blocked_split(keep, crs=grid.crs, x0=grid.x0, y0=grid.y0, lon=grid.lon, lat=grid.lat,
                                      side_m=px * params.pixel_m, block_m=params.block_m, gap_m=params.gap_m,
                                      seed=params.seed, fractions=params.fractions)
    pc = max(1, min(65536, n))
    arrays = {
        "labels": (labels.astype(np.uint8), "uint8", (pc, k), ["patch", "class"], 0),
        "class_fraction": (np.where(keep[:, None], frac, 0).astype(np.float32), "float32", (pc, k), ["patch", "class"], 0.0),
        "labelled": (labelled, "float32", (pc,), ["patch"], 0.0),
        "status": (status, "int8", (pc,), ["patch"], NOT_SAMPLED),
        "split_random": (s_random, "int8", (pc,), ["patch"], -1),
        "split_blocked": (s_blocked, "int8", (pc,), ["patch"], -1),
    }
    for name, (values, dtype, chunks, dims, fill) in arrays.items():
        _create(out_url, name, values.shape, dtype, chunks, dims, fill, opts)
        _write(out_url, name, values, opts)

    report.kept = int(keep.sum())
    report.dropped_low_labelled = int((status == LOW_LABELLED).sum())
    report.dropped_outside = int((status == OUTSIDE).sum())
    report.class_patches = {c: int(v) for c, v in zip(nomenclature.classes, labels.sum(axis=0), strict=True)}
    report.splits = {name: {SPLIT_NAMES[s]: int((arr == s).sum()) for s in range(3)}
                     for name, arr in (("random", s_random), ("blocked", s_blocked))}
    report.guards = guards
    report.seconds = round(time.perf_counter() - t0, 3)
    _commit(out_url, report, nomenclature, params, grid, opts)
    return report


def _commit(out_url: str, report: LabelReport, nom: Nomenclature, params: LabelParams, grid: PatchGrid, opts) -> None:
    import warnings

    import zarr

    from spectralearth.platform.cube import open_store

    attrs = storage.redact({
        "spectralearth:label_format_version": LABEL_FORMAT_VERSION,
        "task": params.task,
        "classes": list(nom.classes),
        "nomenclature": nom.to_dict(),
        "ignore_value": IGNORE,
        "patch_size": grid.patch_px,
        "status_names": list(STATUS_NAMES),
        "split_names": list(SPLIT_NAMES),
        "params": {**asdict(params), "fractions": list(params.fractions)},
        "report": report.to_dict(),
    })
    json.dumps(attrs)
    store = open_store(out_url, storage_options=opts)
    zarr.create_group(store=store, attributes=attrs, overwrite=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        zarr.consolidate_metadata(store)


def open_label_cube(url: str, *, storage_options: Mapping[str, Any] | None = None):
    """Open a committed label cube read-only as a ``zarr.Group``.

    Raises:
        FileNotFoundError: nothing committed at ``url``, or a group that is not a label cube.
    """
    import zarr
    from zarr.errors import GroupNotFoundError

    from spectralearth.platform.cube import open_store

    # A label cube is a plain Zarr v3 group (not a versioned patch cube): it is committed
    # when its root zarr.json exists (written last by _commit).
    try:
        g = zarr.open_group(open_store(url, storage_options=storage_options, read_only=True), mode="r")
    except (GroupNotFoundError, FileNotFoundError) as exc:
        raise FileNotFoundError(f"no committed label cube at {storage.redact(url)} (absent, or still being written)") from exc
    if "spectralearth:label_format_version" not in g.attrs:
        raise FileNotFoundError(f"{storage.redact(url)} is a Zarr group but not a label cube")
    return g
