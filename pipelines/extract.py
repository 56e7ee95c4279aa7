"""Extraction: the planned windows of every tile -> a new version of the Zarr patch cube.

Work is one dask task per run of up to ``views_per_task`` windows of one source tile:
the task opens the tile's SPECTRAL_IMAGE once and reads its planned 128×128 windows
with :func:`~spectralearth.catalog.enmap.image.read_windows` (only the selected bands,
in row bands of whole source tiles or strips, each source block read once for all the
windows on it; remote COGs by range requests), encodes each view with the
``reflectance`` array's own codec chain (blosc zstd + CRC-32C, read from its metadata)
and stores it as one object at its chunk key in the build, byte for byte what zarr
would write. Task *k* owns the slots ``[k·V, k·V + V)`` of the build (V =
``views_per_task``) and, last, writes chunk *k* of ``view_moments`` (the exact band
moments of its views): no two tasks ever write the same object.

Versions (see :mod:`spectralearth.platform.cube`): a run builds on the cube's latest
version (its *parent*). Views whose source product and window the parent already
holds are reused, not read again: only new views are extracted, into
``CUBE/builds/<build-id>/``. The client then writes the version's index and commits
it with one create-only write of ``CUBE/versions/<n>.json``. Readers see the new
version whole or not at all, and the parent stays as it was.

Crashes and concurrency: the build id is a pure function of the parent and the
plan, so a rerun after a crash (killed client or worker, storage outage) writes
into the same build, skips the tasks whose ``view_moments`` chunk exists and ends
with the same bytes as an uninterrupted run. Of two runs building on the same
parent, the first to commit wins; the other raises
:class:`~spectralearth.platform.cube.VersionConflictError` naming the winner.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from spectralearth.platform import storage
from spectralearth.platform.cube import (
    FORMAT_VERSION,
    NODATA,
    Version,
    VersionConflictError,
    ViewChunkFormat,
    view_chunk_format,
    view_moments,
    write_view_bytes,
)

__all__ = [
    "SPECTRALEARTH_BANDS",
    "EmptyPlanError",
    "ExtractParams",
    "ExtractReport",
    "VersionConflictError",
    "extract_cube",
]

SPECTRALEARTH_BANDS: tuple[int, ...] = (*range(1, 127), *range(142, 161), *range(168, 225))
"""SpectralEarth's 202 bands (1-based L2A band numbers): 1-126, 142-160, 168-224."""
IMAGE = "SPECTRAL_IMAGE.TIF"


class EmptyPlanError(ValueError):
    """The plan has no views: nothing to commit."""


@dataclass(frozen=True)
class ExtractParams:
    """How views are written into the cube."""

    bands: tuple[int, ...] = SPECTRALEARTH_BANDS
    """1-based L2A band numbers to store, in stored order."""
    clevel: int = 5
    """blosc zstd compression level (byte shuffle)."""
    wavelength_tolerance_nm: float = 2.0
    """Largest accepted difference of a tile's band centre from the mean over tiles."""
    gdal_cache_mb: int = 256
    """GDAL block cache per worker (blocks shared by neighbouring windows are read once)."""
    views_per_task: int = 16
    """Largest number of views per task (a tile's windows, in row order, are split into tasks of this size)."""
    task_threads: int = 1
    """Threads per task that encode and write views while the next window is read (0: none)."""

    def __post_init__(self) -> None:
        if not self.bands or min(self.bands) < 1 or len(set(self.bands)) != len(self.bands):
            raise ValueError("bands must be distinct 1-based band numbers")
        if self.task_threads < 0:
            raise ValueError("task_threads must be 0 or more")
        if self.views_per_task < 1:
            raise ValueError("views_per_task must be 1 or more")

    def storage_format(self) -> dict[str, Any]:
        """What a view's stored bytes depend on (a parent's views are reused only if this matches)."""
        return {"bands": list(self.bands), "clevel": self.clevel, "views_per_task": self.views_per_task}


@dataclass
class ExtractReport:
    """What an extraction run did."""

    cube_url: str
    run_id: str
    version: str | None = None
    parent: str | None = None
    build: str = ""
    committed: bool = False
    up_to_date: bool = False
    views: int = 0
    patches: int = 0
    bands: int = 0
    new_views: int = 0
    reused_views: int = 0
    tasks: int = 0
    tasks_done_before: int = 0
    tasks_run: int = 0
    resumed: bool = False
    raw_bytes: int = 0
    raw_bytes_this_run: int = 0
    stored_bytes: int | None = None
    build_bytes: int | None = None
    compression_ratio: float | None = None
    views_with_nodata: int = 0
    wavelength_max_dev_nm: float = 0.0
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)

    @property
    def mb_per_s(self) -> float:
        t = self.stages.get("tasks", 0.0)
        return self.raw_bytes_this_run / 1e6 / t if t else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mb_per_s"] = round(self.mb_per_s, 2)
        return d


# --------------------------------------------------------------------------- the per-tile task


def extract_tile(
    build_url: str,
    item: Mapping[str, Any],
    windows: np.ndarray,
    *,
    task: int,
    band_index: tuple[int, ...],
    patch_px: int,
    slots_per_task: int,
    storage_options: Mapping[str, Any] | None = None,
    gdal_cache_mb: int = 256,
    threads: int = 1,
    chunk_format: ViewChunkFormat | None = None,
) -> dict[str, Any]:
    """Read one task's windows of a tile, write them as views of the build, then the task's moments chunk.

    Each view's chunk is encoded here with the array's own codec chain (as read from
    its metadata) and stored as one object at its chunk key, byte for byte what zarr
    would write. Reading (GDAL) and encoding/writing (blosc, numpy) release the GIL,
    so with ``threads`` > 0 the next window is read while the previous ones are
    encoded and written; at most ``threads + 1`` views are held at once.

    Args:
        build_url: the (uncommitted) build.
        item: the tile's STAC item (asset hrefs).
        windows: ``(k, 3)`` rows of ``(slot, row0, col0)``; slots within the task's ``[task·V, task·V + V)``.
        task: the task number (its slots and its ``view_moments`` chunk).
        band_index: 1-based band numbers to read, in stored order.
        patch_px: window side.
        slots_per_task: V.
        storage_options: fsspec options.
        gdal_cache_mb: GDAL block cache size.
        threads: threads that encode and write views while windows are read (0: one thread does all).
        chunk_format: the ``reflectance`` chunk format (read from the build when None).

    Returns:
        ``{"task", "views", "raw_bytes", "nodata_views", "seconds"}``.
    """
    import rasterio
    import zarr

    from spectralearth.catalog.enmap.image import open_image, read_windows
    from spectralearth.pipelines.plan import tile_source
    from spectralearth.platform.cube import open_store

    import numcodecs

    numcodecs.blosc.set_nthreads(1)  # one core per worker: parallelism comes from the workers
    t0 = time.perf_counter()
    src = tile_source(item)
    if chunk_format is None:
        chunk_format = view_chunk_format(build_url, storage_options=storage_options)
    fs, root = storage.filesystem(build_url, storage_options)
    root = root.rstrip("/")
    windows = np.asarray(windows, dtype=np.int64).reshape(-1, 3)
    windows = windows[np.lexsort((windows[:, 2], windows[:, 1]))]
    lo = int(task) * int(slots_per_task)
    if windows.size and (windows[:, 0].min() < lo or windows[:, 0].max() >= lo + slots_per_task):
        raise ValueError(f"task {task}: slots {windows[:, 0].tolist()} outside [{lo}, {lo + slots_per_task})")
    moments = np.zeros((int(slots_per_task), 3, len(band_index)), np.int64)
    nodata_views = 0
    indexes = [int(b) for b in band_index]

    def finish(slot: int, data: np.ndarray) -> tuple[int, np.ndarray, bool]:
        write_view_bytes(fs, f"{root}/{chunk_format.key(slot)}", chunk_format.encode(data))
        return slot, view_moments(data), bool(np.any(data == NODATA))

    def collect(res: tuple[int, np.ndarray, bool]) -> None:
        nonlocal nodata_views
        slot, mom, has_nodata = res
        moments[slot - lo] = mom
        nodata_views += has_nodata

    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="extract-view") if threads > 0 else None
    pending: deque = deque()
    try:
        with rasterio.Env(GDAL_CACHEMAX=int(gdal_cache_mb)), open_image(src, storage_options=storage_options) as ds:
            for view, _row0, _col0, data in read_windows(ds, windows, indexes=indexes, patch_px=patch_px, product=str(item["id"])):
                if pool is None:
                    collect(finish(int(view), data))
                    continue
                pending.append(pool.submit(finish, int(view), data))
                while len(pending) > threads:
                    collect(pending.popleft().result())
            while pending:
                collect(pending.popleft().result())
    finally:
        if pool is not None:
            for fut in pending:
                fut.cancel()
            pool.shutdown(wait=True)
    # last: the task's moments chunk (its presence marks the task done for a rerun)
    with zarr.config.set({"array.write_empty_chunks": True}):  # also a chunk of zeros (a task of nodata views)
        arr = zarr.open_array(open_store(storage.join(build_url, "view_moments"), storage_options=storage_options), mode="r+")
        arr[lo : lo + slots_per_task] = moments
    return {
        "task": int(task),
        "views": int(len(windows)),
        "raw_bytes": int(len(windows) * len(indexes) * patch_px * patch_px * 2),
        "nodata_views": int(nodata_views),
        "seconds": round(time.perf_counter() - t0, 3),
    }


# --------------------------------------------------------------------------- the job


def _fingerprint(patches: pd.DataFrame, views: pd.DataFrame, params: ExtractParams, ids: list[str]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(params.storage_format()).encode())
    for col in ("crs", "x0", "y0"):
        h.update(np.ascontiguousarray(patches[col].to_numpy()).tobytes())
    for col in ("view", "patch", "tile", "row0", "col0"):
        h.update(np.ascontiguousarray(views[col].to_numpy(dtype=np.int64)).tobytes())
    h.update("\n".join(ids).encode())
    return h.hexdigest()


def _band_table(items: list[dict], tiles: list[int], bands: tuple[int, ...], tol: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Mean wavelength/FWHM (nm) of the selected bands over the tiles; checks they agree within ``tol``."""
    wl, fw = [], []
    for t in tiles:
        it = items[t]
        bl = ((it.get("assets") or {}).get("spectral_image") or {}).get("bands") or (it.get("properties") or {}).get("bands") or []
        if len(bl) < max(bands):
            raise ValueError(f"{it['id']}: the catalog describes {len(bl)} bands; band {max(bands)} was asked for")
        wl.append([float(bl[b - 1]["eo:center_wavelength"]) * 1000.0 for b in bands])
        fw.append([float(bl[b - 1]["eo:full_width_half_max"]) * 1000.0 for b in bands])
    if not wl:
        return np.full(len(bands), np.nan), np.full(len(bands), np.nan), 0.0
    wl_a, fw_a = np.asarray(wl), np.asarray(fw)
    mean = wl_a.mean(axis=0)
    dev = np.abs(wl_a - mean)
    worst = float(dev.max())
    if worst > tol:
        t, b = np.unravel_index(int(dev.argmax()), dev.shape)
        raise ValueError(
            f"{items[tiles[t]]['id']}: band {bands[b]} is centred at {wl_a[t, b]:.2f} nm, "
            f"{worst:.2f} nm from the mean over tiles (tolerance {tol} nm)"
        )
    return mean, fw_a.mean(axis=0), worst


def _config_hash(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def _parent_views(cube_url: str, parent: Version | None, params: ExtractParams, storage_options) -> dict[int, tuple[int, int]]:
    """``view_key -> (index into parent.builds, slot)`` of the parent's views (empty if it cannot be reused)."""
    if parent is None or parent.attrs.get("spectralearth:storage_format") != params.storage_format():
        return {}
    from spectralearth.platform.cube import open_index

    g = open_index(cube_url, parent.id, storage_options=storage_options)
    keys, builds, slots = (np.asarray(g[n][:]) for n in ("view_key", "view_build", "view_slot"))
    return {int(k): (int(b), int(s)) for k, b, s in zip(keys, builds, slots)}


def _done_tasks(build_url: str, storage_options) -> set[int]:
    """Tasks of a build whose ``view_moments`` chunk exists (written last by each task)."""
    fs, root = storage.filesystem(storage.join(build_url, "view_moments", "c"), storage_options)
    fs.invalidate_cache()
    try:
        names = fs.ls(root, detail=False)
    except FileNotFoundError:
        return set()
    return {int(n.rstrip("/").rsplit("/", 1)[-1]) for n in names if n.rstrip("/").rsplit("/", 1)[-1].isdigit()}


def extract_cube(
    catalog_url: str,
    cube_url: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    params: ExtractParams = ExtractParams(),
    cluster=None,
    progress: bool = False,
    extra_attrs: Mapping[str, Any] | None = None,
    max_tasks: int | None = None,
    before_commit: Callable[[], None] | None = None,
) -> ExtractReport:
    """Write the planned views of a catalog as a new version of the cube at ``cube_url``.

    Builds on the cube's latest version: views it already holds (same source product
    and window, same band selection and encoding) are reused; only new views are read
    and written. A plan identical to the latest version's commits nothing.

    Args:
        catalog_url: the tile catalog (with ``patches.parquet``/``views.parquet`` beside it).
        cube_url: the cube (local path or fsspec URL); created by the first build.
        storage_options: fsspec options (no secrets) for both URLs.
        params: band selection, encoding, task size.
        cluster: a ``ClusterSpec`` (default: a local cluster; kind 'sync' runs here).
        progress: show a progress bar.
        extra_attrs: more JSON attributes for the version (no secrets).
        max_tasks: stop (uncommitted) after this many tasks (for tests of resume).
        before_commit: called just before the commit (for tests of concurrent builders).

    Returns:
        An :class:`ExtractReport` (``version``: the committed or current version).

    Raises:
        EmptyPlanError: the plan has no views.
        VersionConflictError: another run committed on the same parent first.
    """
    from spectralearth.catalog import read_item_dicts
    from spectralearth.pipelines.plan import read_plan
    from spectralearth.platform.cluster import ClusterSpec, cluster_client
    from spectralearth.platform.cube import build_id, build_url, commit_version, create_build_arrays, version_moments
    from spectralearth.platform.cube import view_key as _view_key
    from spectralearth.platform.cube import write_index
    from spectralearth.platform.cube.write import latest_or_none

    t0 = time.perf_counter()
    run_id = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    report = ExtractReport(cube_url=storage.redact(cube_url), run_id=run_id)

    t = time.perf_counter()
    patches, views = read_plan(catalog_url, storage_options=storage_options)
    if len(views) == 0 or len(patches) == 0:
        raise EmptyPlanError(f"the plan of {storage.redact(catalog_url)} has no views: nothing to write into "
                             f"{storage.redact(cube_url)} (check the plan's filters and the catalog)")
    items = read_item_dicts(catalog_url, storage_options=storage_options)
    ids = [str(it["id"]) for it in items]
    fingerprint = _fingerprint(patches, views, params, ids)
    patch_px = int(patches["patch_px"].iat[0]) if "patch_px" in patches else 128
    tiles_used = sorted(set(int(t) for t in views["tile"]))
    wavelength, fwhm, worst = _band_table(items, tiles_used, params.bands, params.wavelength_tolerance_nm)
    report.wavelength_max_dev_nm = round(worst, 4)
    report.views, report.patches, report.bands = len(views), len(patches), len(params.bands)
    parent = latest_or_none(cube_url, storage_options)
    report.parent = parent.id if parent else None
    report.stages["load"] = round(time.perf_counter() - t, 3)
    if parent is not None and parent.attrs.get("spectralearth:plan_fingerprint") == fingerprint:
        report.version, report.up_to_date = parent.id, True
        report.seconds = round(time.perf_counter() - t0, 3)
        return report  # nothing new

    t = time.perf_counter()
    views = views.sort_values("view", kind="stable").reset_index(drop=True)
    if not np.array_equal(views["view"].to_numpy(), np.arange(len(views))):
        raise ValueError(f"{storage.redact(catalog_url)}: the plan's views are not numbered 0..{len(views) - 1}")
    keys = np.array([_view_key(ids[int(tl)], int(r), int(c)) for tl, r, c in
                     zip(views["tile"], views["row0"], views["col0"])], dtype=np.int64)
    known = _parent_views(cube_url, parent, params, storage_options)
    builds = list(parent.builds) if known else []
    build = build_id(parent.id if parent else None, fingerprint)
    me = len(builds)
    builds.append(build)
    view_build = np.full(len(views), me, np.int32)
    view_slot = np.full(len(views), -1, np.int64)
    for v, k in enumerate(keys):
        hit = known.get(int(k))
        if hit is not None:
            view_build[v], view_slot[v] = hit
    new = views[view_slot < 0]
    report.new_views, report.reused_views = len(new), len(views) - len(new)

    V = params.views_per_task
    groups: dict[int, tuple[int, np.ndarray]] = {}
    for tl, g in new.groupby("tile", sort=True):
        w = g.sort_values(["row0", "col0"], kind="stable")[["view", "row0", "col0"]].to_numpy(dtype=np.int64)
        for i in range(0, len(w), V):
            k = len(groups)
            part = w[i : i + V].copy()
            view_slot[part[:, 0]] = k * V + np.arange(len(part))
            part[:, 0] = view_slot[part[:, 0]]
            groups[k] = (int(tl), part)
    report.build, report.tasks = build, len(groups)
    burl = build_url(cube_url, build)
    create_build_arrays(burl, n_slots=len(groups) * V, n_bands=len(params.bands), patch_px=patch_px,
                        clevel=params.clevel, slots_per_task=V, storage_options=storage_options)
    done = _done_tasks(burl, storage_options) & set(groups)
    report.tasks_done_before = len(done)
    report.resumed = bool(done)
    todo = [k for k in groups if k not in done]
    if max_tasks is not None:
        todo = todo[:max_tasks]
    chunk_format = view_chunk_format(burl, storage_options=storage_options)
    kw = dict(band_index=tuple(params.bands), patch_px=patch_px, slots_per_task=V,
              storage_options=dict(storage_options or {}), gdal_cache_mb=params.gdal_cache_mb,
              threads=params.task_threads, chunk_format=chunk_format)
    report.stages["prepare"] = round(time.perf_counter() - t, 3)
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(sum(len(groups[k][1]) for k in todo)), desc="extract", unit="view", dynamic_ncols=True, leave=False)
    results: dict[int, dict] = {}
    t = time.perf_counter()
    try:
        if cluster is not None and getattr(cluster, "kind", "") == "sync":
            for k in todo:
                tl, w = groups[k]
                results[k] = extract_tile(burl, items[tl], w, task=k, **kw)
                report.raw_bytes_this_run += results[k]["raw_bytes"]
                if bar:
                    bar.update(len(w))
            report.stages["tasks"] = round(time.perf_counter() - t, 3)
        elif todo:
            from distributed import as_completed

            with cluster_client(cluster or ClusterSpec()) as client:
                report.stages["cluster_start"] = round(time.perf_counter() - t, 3)
                t = time.perf_counter()
                futs = {
                    client.submit(extract_tile, burl, items[groups[k][0]], groups[k][1], task=k,
                                  key=f"extract-{build}-{k}", pure=False, **kw): k
                    for k in todo
                }
                for fut in as_completed(list(futs)):
                    k = futs[fut]
                    results[k] = fut.result()
                    report.raw_bytes_this_run += results[k]["raw_bytes"]
                    fut.release()
                    if bar:
                        bar.update(len(groups[k][1]))
                report.stages["tasks"] = round(time.perf_counter() - t, 3)
                t = time.perf_counter()
            report.stages["cluster_stop"] = round(time.perf_counter() - t, 3)
    finally:
        if bar:
            bar.close()
    report.tasks_run = len(todo)
    report.stages.setdefault("tasks", 0.0)
    if len(done) + len(todo) < len(groups):
        report.seconds = round(time.perf_counter() - t0, 3)
        return report  # stopped early (max_tasks): nothing committed

    t = time.perf_counter()
    missing = sorted(set(groups) - _done_tasks(burl, storage_options))
    if missing:
        raise RuntimeError(f"{storage.redact(cube_url)}: build {build} lacks the results of tasks {missing[:10]}")
    moments = version_moments(cube_url, tuple(builds), view_build, view_slot, storage_options=storage_options)
    mean, std = moments.mean_std()
    report.raw_bytes = int(len(views) * len(params.bands) * patch_px * patch_px * 2)
    report.views_with_nodata = int(sum(r["nodata_views"] for r in results.values()))
    config = {"extract": {**asdict(params), "bands": list(params.bands)}, **dict((extra_attrs or {}).get("spectralearth:pipeline_config", {}))}
    attrs = {
        "spectralearth:bands": list(params.bands),
        "spectralearth:band_selection": "SpectralEarth 202 (L2A 1-126, 142-160, 168-224)" if tuple(params.bands) == SPECTRALEARTH_BANDS else "custom",
        "spectralearth:patch_px": patch_px,
        "spectralearth:n_views": len(views),
        "spectralearth:n_patches": len(patches),
        "spectralearth:source_catalog": storage.redact(catalog_url),
        "spectralearth:plan_fingerprint": fingerprint,
        "spectralearth:storage_format": params.storage_format(),
        "spectralearth:wavelength_max_dev_nm": report.wavelength_max_dev_nm,
        "spectralearth:parent_version": parent.id if parent else None,
        **{k: v for k, v in (extra_attrs or {}).items() if k != "spectralearth:pipeline_config"},
        "spectralearth:pipeline_config": config,
        "spectralearth:config_hash": _config_hash(config),
        "Conventions": "CF-1.10",
        "title": "SpectralEarth-style EnMAP L2A patch cube",
    }
    vt = pd.to_datetime(views["datetime"], utc=True).dt.tz_localize(None).to_numpy().astype("datetime64[us]")
    index = {
        "view_patch": views["patch"].to_numpy(dtype=np.int64),
        "view_time": vt,
        "view_tile": views["tile"].to_numpy(dtype=np.int32),
        "view_key": keys,
        "view_build": view_build,
        "view_slot": view_slot,
        "patch_view_start": patches["view_start"].to_numpy(dtype=np.int64),
        "patch_view_count": patches["n_views"].to_numpy(dtype=np.int16),
        "patch_crs": patches["crs"].to_numpy(dtype=np.int32),
        **{f"patch_{n}": patches[n].to_numpy(dtype=float) for n in ("x0", "y0", "lon", "lat")},
        "band": np.asarray(params.bands, np.int16),
        "wavelength": np.asarray(wavelength, np.float32),
        "fwhm": np.asarray(fwhm, np.float32),
        "band_mean": mean.astype(np.float32),
        "band_std": std.astype(np.float32),
    }
    write_index(storage.join(burl, "index"), index, attrs=attrs, storage_options=storage_options)
    with contextlib.suppress(Exception):
        fs, root = storage.filesystem(burl, storage_options)
        fs.invalidate_cache()
        report.build_bytes = int(fs.du(root))
        report.stored_bytes = int(fs.du(storage.join(root, "reflectance")))
    if before_commit is not None:
        before_commit()
    created = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    version = Version(
        sequence=(parent.sequence if parent else 0) + 1, build=build, builds=tuple(builds),
        parent=parent.id if parent else None, created=created, run_id=run_id,
        counts={"views": len(views), "patches": len(patches), "bands": len(params.bands),
                "new_views": report.new_views, "reused_views": report.reused_views},
        attrs={k: attrs[k] for k in ("spectralearth:source_catalog", "spectralearth:plan_fingerprint",
                                     "spectralearth:storage_format", "spectralearth:config_hash")}
        | {"spectralearth:catalog_snapshot": (extra_attrs or {}).get("spectralearth:catalog_snapshot"),
           "spectralearth:format_version": FORMAT_VERSION},
    )
    commit_version(cube_url, version, storage_options=storage_options)
    report.version, report.committed = version.id, True
    report.stages["commit"] = round(time.perf_counter() - t, 3)
    if report.stored_bytes and report.new_views:
        report.compression_ratio = round(report.new_views * len(params.bands) * patch_px * patch_px * 2 / report.stored_bytes, 3)
    report.seconds = round(time.perf_counter() - t0, 3)
    return report
