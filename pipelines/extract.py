"""Extraction: the planned windows of every tile -> the Zarr patch cube, with resume and a lease.

Work is one dask task per source tile: the task opens the tile's SPECTRAL_IMAGE once,
reads its planned 128×128 windows with :func:`~spectralearth.catalog.enmap.image.read_windows`
(only the selected bands, in row bands of whole source tiles or strips, each source
block read once for all the windows on it; remote COGs by range requests), encodes
each view with the ``reflectance`` array's own codec chain (read from its metadata)
and stores it as one object at its chunk key, byte for byte what zarr would write
(one chunk = one object per view; views belong to exactly one tile, so no two tasks
ever write the same object; sharded cubes go through zarr), accumulates the band
moments of its pixels and finally writes a done-marker
``CUBE/_progress/tile-<row>.json`` (plan fingerprint, SHA-256 of each view's raw
pixels, moments, nodata counts).

Commit protocol (see :mod:`spectralearth.platform.cube`): arrays and the index arrays
are created first (no root group: invisible to readers) together with
``_progress/run.json`` (plan fingerprint); tasks run; the client merges the markers'
moments into ``band_mean``/``band_std``; the root group is written last; then
``_progress/`` is removed.

Resume: a rerun with the same plan and settings finds ``run.json``, skips tiles with
a marker and redoes the rest. A chunk written by a killed task is simply written
again (same bytes), so the result is identical to an uninterrupted run.

Lease: ``_progress/lease.json`` holds the run id, host, pid and a heartbeat time the
client refreshes every ``heartbeat_s``. A second run finding a live lease stops with
:class:`LeaseHeldError`. A lease is dead when its heartbeat is older than
``lease_timeout_s``, or when it names a process on this host that no longer exists;
a dead lease is taken over. Limits: object stores have no compare-and-swap in
s3fs, so the lease is taken by write-then-read-back; two runs starting within the
same instant could both believe they hold it (the loser notices at its next
heartbeat, before it commits, and stops). Both would write identical bytes, so the
cube stays correct; the lease prevents wasted work and confusing reports, not
corruption.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
import time
import uuid
import warnings
from collections import deque
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from spectralearth.pipelines.stats import BandMoments, merge_moments
from spectralearth.platform import storage
from spectralearth.platform.cube import (
    NODATA,
    UnsupportedChunkFormatError,
    ViewChunkFormat,
    view_chunk_format,
    write_view_bytes,
)

__all__ = [
    "SPECTRALEARTH_BANDS",
    "CubeExistsError",
    "ExtractParams",
    "ExtractReport",
    "LeaseHeldError",
    "PlanMismatchError",
    "extract_cube",
]

SPECTRALEARTH_BANDS: tuple[int, ...] = (*range(1, 127), *range(142, 161), *range(168, 225))
"""SpectralEarth's 202 bands (1-based L2A band numbers): 1-126, 142-160, 168-224."""
IMAGE = "SPECTRAL_IMAGE.TIF"
PROGRESS = "_progress"


class CubeExistsError(FileExistsError):
    """A committed cube is already at the URL (pass overwrite=True to replace it)."""


class LeaseHeldError(RuntimeError):
    """Another run is writing this cube."""


class PlanMismatchError(RuntimeError):
    """The unfinished cube at the URL was started from another plan or other settings."""


@dataclass(frozen=True)
class ExtractParams:
    """How views are written into the cube."""

    bands: tuple[int, ...] = SPECTRALEARTH_BANDS
    """1-based L2A band numbers to store, in stored order."""
    clevel: int = 5
    """blosc zstd compression level (byte shuffle)."""
    shard_views: int | None = None
    """Views per shard (None: one object per view)."""
    wavelength_tolerance_nm: float = 2.0
    """Largest accepted difference of a tile's band centre from the mean over tiles."""
    lease_timeout_s: float = 120.0
    """A lease whose heartbeat is older than this is dead and may be taken over."""
    heartbeat_s: float = 10.0
    """How often the running client refreshes its lease."""
    gdal_cache_mb: int = 256
    """GDAL block cache per worker (blocks shared by neighbouring windows are read once)."""
    views_per_task: int = 16
    """Largest number of views per task (a tile's windows, in row order, are split into tasks of this size)."""
    task_threads: int = 1
    """Threads per task that encode, hash and write views while the next window is read (0: none)."""

    def __post_init__(self) -> None:
        if not self.bands or min(self.bands) < 1 or len(set(self.bands)) != len(self.bands):
            raise ValueError("bands must be distinct 1-based band numbers")
        if self.heartbeat_s <= 0 or self.lease_timeout_s <= self.heartbeat_s:
            raise ValueError("lease_timeout_s must exceed heartbeat_s > 0")
        if self.task_threads < 0:
            raise ValueError("task_threads must be 0 or more")


@dataclass
class ExtractReport:
    """What an extraction run did."""

    cube_url: str
    run_id: str
    views: int = 0
    patches: int = 0
    bands: int = 0
    tasks: int = 0
    tasks_done_before: int = 0
    tasks_run: int = 0
    resumed: bool = False
    raw_bytes: int = 0
    raw_bytes_this_run: int = 0
    stored_bytes: int | None = None
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


# --------------------------------------------------------------------------- lease


def _now() -> float:
    return time.time()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Lease:
    """The single-writer lease of a cube (see the module docstring for its limits)."""

    def __init__(self, cube_url: str, storage_options, *, run_id: str, timeout_s: float, heartbeat_s: float) -> None:
        self.url = storage.join(cube_url, PROGRESS, "lease.json")
        self.opts = storage_options
        self.run_id = run_id
        self.timeout_s = timeout_s
        self.heartbeat_s = heartbeat_s
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self) -> dict | None:
        try:
            return json.loads(storage.read_bytes(self.url, self.opts))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def _write(self) -> None:
        body = {"run_id": self.run_id, "host": socket.gethostname(), "pid": os.getpid(), "heartbeat": _now()}
        storage.atomic_write_bytes(self.url, json.dumps(body).encode(), self.opts)

    def _dead(self, lease: Mapping[str, Any]) -> bool:
        age = _now() - float(lease.get("heartbeat", 0))
        if age > self.timeout_s:
            return True
        return lease.get("host") == socket.gethostname() and not _pid_alive(int(lease.get("pid", -1)))

    def acquire(self, *, force: bool = False) -> None:
        cur = self._read()
        if cur and cur.get("run_id") != self.run_id and not force and not self._dead(cur):
            age = _now() - float(cur.get("heartbeat", 0))
            raise LeaseHeldError(
                f"{storage.redact(self.url)}: the cube is being written by run {cur.get('run_id')} "
                f"(host {cur.get('host')}, pid {cur.get('pid')}, heartbeat {age:.0f} s ago). Wait for it to finish; "
                f"if it died, its lease expires {max(0.0, self.timeout_s - age):.0f} s from now (or pass --break-lease)."
            )
        self._write()
        time.sleep(0.05)
        back = self._read()
        if not back or back.get("run_id") != self.run_id:
            raise LeaseHeldError(f"{storage.redact(self.url)}: another run took the lease at the same time ({(back or {}).get('run_id')})")
        self._thread = threading.Thread(target=self._beat, name="cube-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                cur = self._read()
                if cur and cur.get("run_id") != self.run_id:
                    self.lost = f"run {cur.get('run_id')} took over the lease"
                    return
                self._write()
            except Exception as exc:  # storage hiccups: try again at the next beat
                if _now() - self._last_ok > self.timeout_s:
                    self.lost = f"could not refresh the lease for {self.timeout_s:.0f} s ({exc})"
                    return
            else:
                self._last_ok = _now()

    _last_ok: float = 0.0

    def check(self) -> None:
        if self.lost:
            raise LeaseHeldError(f"{storage.redact(self.url)}: lease lost: {self.lost}")

    def release(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        with contextlib.suppress(Exception):
            cur = self._read()
            if cur and cur.get("run_id") == self.run_id:
                fs, path = storage.filesystem(self.url, self.opts)
                fs.rm(path)


# --------------------------------------------------------------------------- the per-tile task


def _marker_url(cube_url: str, task: str) -> str:
    return storage.join(cube_url, PROGRESS, f"tile-{task}.json")


def _view_result(data: np.ndarray) -> tuple[str, int, BandMoments]:
    """Checksum, nodata pixel count and band moments of one view (what its done-marker records)."""
    from spectralearth.pipelines.stats import moments_of

    digest = hashlib.sha256(np.ascontiguousarray(data).data).hexdigest()
    nodata = int(np.count_nonzero((data == NODATA).any(axis=0)))
    return digest, nodata, moments_of(data, nodata=NODATA)


def extract_tile(
    cube_url: str,
    item: Mapping[str, Any],
    windows: np.ndarray,
    *,
    tile: int,
    task: str,
    band_index: tuple[int, ...],
    patch_px: int,
    fingerprint: str,
    storage_options: Mapping[str, Any] | None = None,
    gdal_cache_mb: int = 256,
    threads: int = 1,
    chunk_format: ViewChunkFormat | None = None,
) -> dict[str, Any]:
    """Read one tile's windows and write them as views; then write the tile's done-marker.

    Each view's chunk is encoded here with the array's own codec chain (as read from
    its metadata) and stored as one object at its chunk key, byte for byte what zarr
    would write. Reading (GDAL) and encoding/hashing/writing (blosc, hashlib, numpy)
    release the GIL, so with ``threads`` > 0 the next window is read while the previous
    ones are encoded and written; at most ``threads + 1`` views are held at once.
    Sharded cubes are written through zarr.

    Args:
        cube_url: the (uncommitted) cube.
        item: the tile's STAC item (asset hrefs).
        windows: ``(k, 3)`` rows of ``(view, row0, col0)``.
        tile: the tile's catalog row.
        task: the task id (names the marker).
        band_index: 1-based band numbers to read, in stored order.
        patch_px: window side.
        fingerprint: the plan fingerprint recorded in the marker.
        storage_options: fsspec options.
        gdal_cache_mb: GDAL block cache size.
        threads: threads that encode, hash and write views while windows are read (0: one thread does all).
        chunk_format: the ``reflectance`` chunk format (read from the cube when None).

    Returns:
        The marker written.
    """
    import rasterio

    from spectralearth.catalog.enmap.image import open_image, read_windows
    from spectralearth.pipelines.plan import tile_source

    import numcodecs

    numcodecs.blosc.set_nthreads(1)  # one core per worker: parallelism comes from the workers
    t0 = time.perf_counter()
    src = tile_source(item)
    if chunk_format is None:
        with contextlib.suppress(UnsupportedChunkFormatError):
            chunk_format = view_chunk_format(cube_url, storage_options=storage_options)
    store_view = _chunk_writer(cube_url, storage_options, chunk_format)
    windows = np.asarray(windows, dtype=np.int64).reshape(-1, 3)
    windows = windows[np.lexsort((windows[:, 2], windows[:, 1]))]
    moments = BandMoments.zeros(len(band_index))
    sums: dict[str, str] = {}
    nodata_px: dict[str, int] = {}
    indexes = [int(b) for b in band_index]

    def finish(view: int, data: np.ndarray) -> tuple[int, str, int, BandMoments]:
        digest, nodata, mom = _view_result(data)
        store_view(view, data, nodata == patch_px * patch_px)
        return view, digest, nodata, mom

    def collect(res: tuple[int, str, int, BandMoments]) -> None:
        nonlocal moments
        view, digest, nodata, mom = res
        moments = moments + mom
        sums[str(view)] = digest
        nodata_px[str(view)] = nodata

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
    marker = {
        "tile": int(tile),
        "task": task,
        "id": str(item["id"]),
        "fingerprint": fingerprint,
        "views": [int(v) for v in windows[:, 0]],
        "sha256": {k: sums[k] for k in (str(int(v)) for v in windows[:, 0])},
        "nodata_px": {k: nodata_px[k] for k in (str(int(v)) for v in windows[:, 0])},
        "moments": moments.to_json(),
        "raw_bytes": int(len(windows) * len(indexes) * patch_px * patch_px * 2),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    storage.atomic_write_bytes(_marker_url(cube_url, task), json.dumps(marker).encode(), storage_options)
    return marker


def _chunk_writer(cube_url: str, storage_options, chunk_format: ViewChunkFormat | None):
    """``store(view, data, maybe_empty)``: stores one view's chunk (directly, or through zarr for sharded cubes)."""
    if chunk_format is None:
        import zarr

        from spectralearth.platform.cube import open_store

        arr = zarr.open_array(open_store(storage.join(cube_url, "reflectance"), storage_options=storage_options), mode="r+")
        lock = threading.Lock()  # shards are read-modify-write

        def store_zarr(view: int, data: np.ndarray, maybe_empty: bool) -> None:
            with lock:
                arr[view] = data

        return store_zarr

    fs, root = storage.filesystem(cube_url, storage_options)
    root = root.rstrip("/")

    def store_direct(view: int, data: np.ndarray, maybe_empty: bool) -> None:
        path = f"{root}/{chunk_format.key(view)}"
        if maybe_empty and chunk_format.is_fill(data):  # like zarr: no object for an all-fill chunk
            with contextlib.suppress(FileNotFoundError):
                fs.rm_file(path)
            return
        write_view_bytes(fs, path, chunk_format.encode(data))

    return store_direct


# --------------------------------------------------------------------------- the job


def _fingerprint(patches: pd.DataFrame, views: pd.DataFrame, params: ExtractParams, ids: list[str]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"bands": list(params.bands), "clevel": params.clevel, "shard": params.shard_views,
                         "views_per_task": params.views_per_task}).encode())
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


def extract_cube(
    catalog_url: str,
    cube_url: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    params: ExtractParams = ExtractParams(),
    cluster=None,
    overwrite: bool = False,
    break_lease: bool = False,
    progress: bool = False,
    extra_attrs: Mapping[str, Any] | None = None,
    max_tasks: int | None = None,
) -> ExtractReport:
    """Write the planned views of a catalog into a Zarr cube, resuming unfinished work.

    Args:
        catalog_url: the tile catalog (with ``patches.parquet``/``views.parquet`` beside it).
        cube_url: where the cube goes (local path or fsspec URL).
        storage_options: fsspec options (no secrets) for both URLs.
        params: band selection, encoding, lease timing.
        cluster: a ``ClusterSpec`` (default: a local cluster; kind 'sync' runs here).
        overwrite: replace a committed cube (or an unfinished one of another plan).
        break_lease: take the lease even if another run seems alive.
        progress: show a progress bar.
        extra_attrs: more JSON attributes for the cube's root group (no secrets).
        max_tasks: stop (uncommitted) after this many tasks (for tests of resume).

    Returns:
        An :class:`ExtractReport`.

    Raises:
        CubeExistsError: a committed cube is at ``cube_url`` and not ``overwrite``.
        LeaseHeldError: another live run holds the cube's lease.
        PlanMismatchError: an unfinished cube of another plan is there and not ``overwrite``.
    """
    from spectralearth.catalog import read_item_dicts
    from spectralearth.pipelines.plan import read_plan
    from spectralearth.platform.cluster import ClusterSpec, cluster_client
    from spectralearth.platform.cube import CubeSpec, commit_cube, create_cube_arrays, write_index_array

    t0 = time.perf_counter()
    run_id = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    report = ExtractReport(cube_url=storage.redact(cube_url), run_id=run_id)
    fs, root = storage.filesystem(cube_url, storage_options)
    root_meta = storage.join(cube_url, "zarr.json")
    if storage.exists(root_meta, storage_options) and not overwrite:
        raise CubeExistsError(f"a committed cube is already at {storage.redact(cube_url)} (pass --overwrite to replace it)")

    t = time.perf_counter()
    patches, views = read_plan(catalog_url, storage_options=storage_options)
    items = read_item_dicts(catalog_url, storage_options=storage_options)
    ids = [str(it["id"]) for it in items]
    fingerprint = _fingerprint(patches, views, params, ids)
    patch_px = int(patches["patch_px"].iat[0]) if len(patches) and "patch_px" in patches else 128
    tiles_used = sorted(set(int(t) for t in views["tile"]))
    wavelength, fwhm, worst = _band_table(items, tiles_used, params.bands, params.wavelength_tolerance_nm)
    report.wavelength_max_dev_nm = round(worst, 4)
    report.views, report.patches, report.bands = len(views), len(patches), len(params.bands)
    report.stages["load"] = round(time.perf_counter() - t, 3)

    lease = _Lease(cube_url, storage_options, run_id=run_id, timeout_s=params.lease_timeout_s, heartbeat_s=params.heartbeat_s)
    lease.acquire(force=break_lease)
    try:
        t = time.perf_counter()
        run_url = storage.join(cube_url, PROGRESS, "run.json")
        prev = json.loads(storage.read_bytes(run_url, storage_options)) if storage.exists(run_url, storage_options) else None
        if overwrite and (prev is None or prev.get("fingerprint") != fingerprint or storage.exists(root_meta, storage_options)):
            for p in fs.ls(root, detail=False) if fs.exists(root) else []:
                if not p.rstrip("/").endswith("/" + PROGRESS):
                    fs.rm(p, recursive=True)
            for p in fs.ls(storage.join(root, PROGRESS), detail=False) if fs.exists(storage.join(root, PROGRESS)) else []:
                if not p.endswith("lease.json"):
                    fs.rm(p, recursive=True)
            prev = None
        if prev is not None and prev.get("fingerprint") != fingerprint:
            raise PlanMismatchError(
                f"{storage.redact(cube_url)} holds an unfinished cube of another plan or other settings "
                "(pass --overwrite to start it again)"
            )
        report.resumed = prev is not None
        if prev is None:
            spec = CubeSpec(
                n_views=len(views),
                n_patches=len(patches),
                wavelength_nm=tuple(float(v) for v in wavelength),
                fwhm_nm=tuple(float(v) for v in fwhm),
                band_numbers=tuple(params.bands),
                patch_px=patch_px,
                clevel=params.clevel,
                shard_views=params.shard_views,
            )
            create_cube_arrays(cube_url, spec, storage_options=storage_options)
            write_index_array(cube_url, "view_patch", views["patch"].to_numpy(dtype=np.int64), storage_options=storage_options)
            vt = pd.to_datetime(views["datetime"], utc=True).dt.tz_localize(None).to_numpy().astype("datetime64[us]")
            write_index_array(cube_url, "view_time", vt, storage_options=storage_options)
            write_index_array(cube_url, "view_tile", views["tile"].to_numpy(dtype=np.int32), storage_options=storage_options)
            write_index_array(cube_url, "patch_view_start", patches["view_start"].to_numpy(dtype=np.int64), storage_options=storage_options)
            write_index_array(cube_url, "patch_view_count", patches["n_views"].to_numpy(dtype=np.int16), storage_options=storage_options)
            write_index_array(cube_url, "patch_crs", patches["crs"].to_numpy(dtype=np.int32), storage_options=storage_options)
            for name in ("x0", "y0", "lon", "lat"):
                write_index_array(cube_url, f"patch_{name}", patches[name].to_numpy(dtype=float), storage_options=storage_options)
            storage.atomic_write_bytes(run_url, json.dumps({"fingerprint": fingerprint, "run_id": run_id}).encode(), storage_options)
        report.stages["create"] = round(time.perf_counter() - t, 3)

        t = time.perf_counter()
        fs.invalidate_cache()
        done = {}
        prog = storage.join(root, PROGRESS)
        for p in fs.ls(prog, detail=False) if fs.exists(prog) else []:
            name = p.rsplit("/", 1)[-1]
            if name.startswith("tile-") and name.endswith(".json"):
                m = json.loads(fs.cat_file(p))
                if m.get("fingerprint") == fingerprint:
                    done[str(m["task"])] = m
        groups: dict[str, tuple[int, np.ndarray]] = {}
        for tl, g in views.groupby("tile", sort=True):
            w = g.sort_values(["row0", "col0"], kind="stable")[["view", "row0", "col0"]].to_numpy(dtype=np.int64)
            for part, i in enumerate(range(0, len(w), params.views_per_task)):
                groups[f"{int(tl):07d}-{part:03d}"] = (int(tl), w[i : i + params.views_per_task])
        report.tasks = len(groups)
        report.tasks_done_before = sum(1 for tl in groups if tl in done)
        todo = [tl for tl in groups if tl not in done]
        if max_tasks is not None:
            todo = todo[:max_tasks]
        chunk_format = None
        with contextlib.suppress(UnsupportedChunkFormatError):  # sharded cubes are written through zarr
            chunk_format = view_chunk_format(cube_url, storage_options=storage_options)
        kw = dict(band_index=tuple(params.bands), patch_px=patch_px, fingerprint=fingerprint,
                  storage_options=dict(storage_options or {}), gdal_cache_mb=params.gdal_cache_mb,
                  threads=params.task_threads, chunk_format=chunk_format)
        payload = {tk: groups[tk][1] for tk in todo}
        report.stages["prepare"] = round(time.perf_counter() - t, 3)
        bar = None
        if progress and todo:
            from tqdm.auto import tqdm

            bar = tqdm(total=int(sum(len(w) for w in payload.values())), desc="extract", unit="view", dynamic_ncols=True, leave=False)
        t = time.perf_counter()
        try:
            if cluster is not None and getattr(cluster, "kind", "") == "sync":
                for tk in todo:
                    lease.check()
                    tl = groups[tk][0]
                    done[tk] = extract_tile(cube_url, items[tl], payload[tk], tile=tl, task=tk, **kw)
                    report.raw_bytes_this_run += done[tk]["raw_bytes"]
                    if bar:
                        bar.update(len(payload[tk]))
                report.stages["tasks"] = round(time.perf_counter() - t, 3)
            elif todo:
                from distributed import as_completed

                with cluster_client(cluster or ClusterSpec()) as client:
                    report.stages["cluster_start"] = round(time.perf_counter() - t, 3)
                    t = time.perf_counter()
                    futs = {
                        client.submit(extract_tile, cube_url, items[groups[tk][0]], payload[tk], tile=groups[tk][0], task=tk,
                                      key=f"extract-{fingerprint[:10]}-{tk}", pure=False, **kw): tk
                        for tk in todo
                    }
                    for fut in as_completed(list(futs)):
                        lease.check()
                        tk = futs[fut]
                        done[tk] = fut.result()
                        report.raw_bytes_this_run += done[tk]["raw_bytes"]
                        fut.release()
                        if bar:
                            bar.update(len(payload[tk]))
                    report.stages["tasks"] = round(time.perf_counter() - t, 3)
                    t = time.perf_counter()
                report.stages["cluster_stop"] = round(time.perf_counter() - t, 3)
        finally:
            if bar:
                bar.close()
        report.tasks_run = len(todo)
        report.stages.setdefault("tasks", 0.0)
        if any(tl not in done for tl in groups):
            report.seconds = round(time.perf_counter() - t0, 3)
            return report  # stopped early (max_tasks): not committed

        t = time.perf_counter()
        lease.check()
        covered = sorted(v for m in done.values() for v in m["views"])
        if covered != list(range(len(views))):
            raise RuntimeError(f"{storage.redact(cube_url)}: the done-markers do not cover every view exactly once")
        moments = merge_moments((BandMoments.from_json(done[tl]["moments"]) for tl in sorted(done)), len(params.bands))
        mean, std = moments.mean_std()
        write_index_array(cube_url, "band_mean", mean.astype(np.float32), storage_options=storage_options)
        write_index_array(cube_url, "band_std", std.astype(np.float32), storage_options=storage_options)
        report.raw_bytes = int(sum(m["raw_bytes"] for m in done.values()))
        report.views_with_nodata = int(sum(1 for m in done.values() for n in m["nodata_px"].values() if n))
        config = {"extract": {**asdict(params), "bands": list(params.bands)}, **dict((extra_attrs or {}).get("spectralearth:pipeline_config", {}))}
        attrs = {
            "spectralearth:bands": list(params.bands),
            "spectralearth:band_selection": "SpectralEarth 202 (L2A 1-126, 142-160, 168-224)" if tuple(params.bands) == SPECTRALEARTH_BANDS else "custom",
            "spectralearth:patch_px": patch_px,
            "spectralearth:n_views": len(views),
            "spectralearth:n_patches": len(patches),
            "spectralearth:source_catalog": storage.redact(catalog_url),
            "spectralearth:plan_fingerprint": fingerprint,
            "spectralearth:wavelength_max_dev_nm": report.wavelength_max_dev_nm,
            "spectralearth:created": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            "spectralearth:run_id": run_id,
            **{k: v for k, v in (extra_attrs or {}).items() if k != "spectralearth:pipeline_config"},
            "spectralearth:pipeline_config": config,
            "spectralearth:config_hash": _config_hash(config),
        }
        with warnings.catch_warnings():  # _progress/ is not part of the hierarchy (removed just after)
            warnings.filterwarnings("ignore", message=".*not recognized as a component", category=UserWarning)
            commit_cube(cube_url, attrs, storage_options=storage_options)
        report.stages["commit"] = round(time.perf_counter() - t, 3)
        with contextlib.suppress(Exception):
            fs.invalidate_cache()
            refl = storage.join(root, "reflectance")
            report.stored_bytes = int(fs.du(refl))
            if report.stored_bytes:
                report.compression_ratio = round(report.raw_bytes / report.stored_bytes, 3)
        for p in fs.ls(storage.join(root, PROGRESS), detail=False):
            if not p.endswith("lease.json"):
                fs.rm(p, recursive=True)
    finally:
        lease.release()
    report.seconds = round(time.perf_counter() - t0, 3)
    return report
