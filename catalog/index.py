"""The index job: an archive of EnMAP L2A products -> a STAC tile catalog.

``index_archive`` discovers products (loose files, product and order folders, ZIP and
tar deliveries), indexes the new ones in parallel on a dask cluster (metadata, image
checks, a sampled read of the pixels, valid-data footprint, kerchunk references, STAC
item), quarantines bad products with a record of what failed, resolves duplicate
deliveries (newest processing version wins), and commits the catalog:

    CATALOG/tiles.parquet        stac-geoparquet, one row per tile (the contract)
    CATALOG/collection.json      STAC Collection (written last: the commit point)
    CATALOG/quarantine.parquet   product, stage, error_class, message, url, snapshot
    CATALOG/superseded.parquet   product, superseded_by, datatake, tile, snapshot
    CATALOG/refs/<id>.json       kerchunk references per tile (when it has pixels)
    CATALOG/index-report.json    the last run's report

Row order is stable across runs: existing rows keep their order, new tiles are
appended sorted by id; a tile superseded by a newer delivery is removed.

Transient storage errors (5xx, throttling, dropped connections) are retried; a product
whose storage keeps failing is quarantined as ``retryable`` and tried again by the next
run without any flag. A product that kills its worker (a crash, exhausted memory) is
tried alone and then quarantined; the run goes on. An archive in which nothing is found
is an error that says what was searched and what was skipped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from spectralearth.catalog.catalogio import (
    QUARANTINE_COLUMNS,
    SUPERSEDED_COLUMNS,
    read_ids,
    read_item_dicts,
    read_table,
    write_items,
    write_table,
)
from spectralearth.catalog.errors import ImageError, NothingFoundError, ProductError, is_transient
from spectralearth.catalog.items import create_collection, create_item_dict
from spectralearth.platform.cluster import ClusterSpec, cluster_client
from spectralearth.platform.storage import atomic_write_bytes, join

__all__ = ["IndexConfig", "IndexReport", "QuarantineRecord", "index_archive", "index_product"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexConfig:
    """Options of the index job."""

    simplify_px: float = 1.0
    """Footprint simplification tolerance in pixels."""
    references: bool = True
    """Write kerchunk references for tiles with pixels."""
    retry_quarantined: bool = False
    """Index products again that an earlier run quarantined."""
    batch_size: int | None = None
    """Products per dask task (default: chosen from the archive size)."""
    attempts: int = 4
    """Tries per product when the storage fails transiently (then quarantined as retryable)."""
    retry_wait_s: float = 0.5
    """First wait between tries (doubles each time, at most 8 s)."""
    max_xml_bytes: int = 64 * 1024 * 1024
    """Largest METADATA.XML read."""
    xml_ranges: bool = True
    """Read remote METADATA.XML by two range requests around its large unused sections."""
    max_mask_pixels: int = 36_000_000
    """Largest mask (or image band) read whole for the footprint."""
    worker_wait_s: float = 300.0
    """How long to wait for a worker to come back after one died (then the product is retryable)."""
    sample_windows: int = 5
    """Windows of SPECTRAL_IMAGE read to check that it has data where the masks say."""
    sample_max_remote_bytes: int = 4 * 1024 * 1024
    """Most bytes the sampled windows may fetch from an image on an HTTP(S) server (the blocks
    they touch, whole); beyond it the check is skipped there (a pixel-interleaved tile holds
    every band, so one 16 x 16 window may cost a whole tile)."""


@dataclass(frozen=True)
class QuarantineRecord:
    """Why a product was left out of the catalog."""

    product: str
    """Product id (stem) or the path that could not be read as a product."""
    stage: str
    """Where it failed: discover, metadata, image, footprint, references, item."""
    error_class: str
    """Exception class name."""
    message: str
    """Human-readable reason naming the product and the key at fault."""
    url: str
    """Where the product lives."""
    retryable: bool = False
    """The failure may pass (storage errors): the next run tries the product again."""


@dataclass(frozen=True)
class _Outcome:
    product: str
    item: dict | None = None
    quarantine: QuarantineRecord | None = None


@dataclass
class IndexReport:
    """What an index run did."""

    archive_url: str
    catalog_url: str
    snapshot: str
    discovered: int = 0
    searched: str = ""
    skipped: dict[str, int] = field(default_factory=dict)
    retried: int = 0
    already_indexed: int = 0
    indexed: int = 0
    quarantined: int = 0
    quarantined_total: int = 0
    superseded: int = 0
    tiles_total: int = 0
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)
    quarantine: list[dict[str, str]] = field(default_factory=list)

    @property
    def products_per_s(self) -> float:
        return self.indexed / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["products_per_s"] = round(self.products_per_s, 2)
        return d


def _derived_grid(metadata, footprint) -> dict[str, Any] | None:
    """Grid of a footprint-only product: METADATA.XML's width x height of 30 m pixels.

    Placed at the XML's ortho-scene corners when they describe a grid of that size (within
    two pixels); otherwise centred on the footprint. Pixel corners lie on odd multiples of
    half a pixel (centres on multiples of the pixel size), as in the products.
    """
    epsg = footprint.epsg or metadata.epsg
    if not epsg or footprint.utm is None:
        return None
    px = float(metadata.pixel_size or 30.0)
    half = px / 2
    width, height = int(metadata.width), int(metadata.height)
    ul = None
    if metadata.ortho_corners_lonlat:
        from pyproj import Transformer

        t = Transformer.from_crs(4326, int(epsg), always_xy=True)
        xs, ys = t.transform(*zip(*metadata.ortho_corners_lonlat, strict=True))
        w_m, h_m = (max(xs) - min(xs)), (max(ys) - min(ys))
        if abs(w_m - width * px) <= 2 * px and abs(h_m - height * px) <= 2 * px:
            ul = (min(xs), max(ys))
    if ul is None:
        minx, miny, maxx, maxy = footprint.utm.bounds
        ul = ((minx + maxx) / 2 - width * px / 2, (miny + maxy) / 2 + height * px / 2)
    x0 = round((ul[0] - half) / px) * px + half
    y1 = round((ul[1] - half) / px) * px + half
    return {"epsg": int(epsg), "transform": [px, 0.0, x0, 0.0, -px, y1], "shape": [height, width]}


def _expects_image(metadata) -> bool:
    """True unless METADATA.XML lists the product's files and SPECTRAL_IMAGE.TIF is not among them."""
    return not metadata.files or any(f.upper().endswith("-SPECTRAL_IMAGE.TIF") for f in metadata.files)


def index_product(
    source,
    *,
    catalog_url: str,
    storage_options: Mapping[str, Any] | None = None,
    config: IndexConfig = IndexConfig(),
) -> _Outcome:
    """Index one product; never raises for a bad product (returns a quarantine record).

    Transient storage errors are retried ``config.attempts`` times with exponential waits;
    if they persist, the record is marked ``retryable``.
    """
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

    stage = ["metadata"]
    retrying = Retrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_attempt(max(1, config.attempts)),
        wait=wait_exponential(multiplier=config.retry_wait_s, max=8.0),
        reraise=True,
    )
    try:
        item = retrying(_index_once, source, stage, catalog_url=catalog_url, storage_options=storage_options,
                        config=config)
        return _Outcome(source.product_id, item=item)
    except ProductError as exc:
        # the stage the job was in is more precise than the error class's default stage
        rec = QuarantineRecord(source.product_id, stage[0], type(exc).__name__, str(exc), source.url,
                               retryable=is_transient(exc))
    except Exception as exc:  # one bad tile never takes the good ones down
        log.debug("unexpected error indexing %s:\n%s", source.product_id, traceback.format_exc())
        rec = QuarantineRecord(source.product_id, stage[0], type(exc).__name__, f"{source.product_id}: {exc}",
                               source.url, retryable=is_transient(exc))
    return _Outcome(source.product_id, quarantine=rec)


def _index_once(source, stage: list[str], *, catalog_url: str, storage_options, config: IndexConfig) -> dict:
    from spectralearth.catalog.enmap import check_image, read_metadata, valid_footprint
    from spectralearth.catalog.enmap.image import sample_pixels
    from spectralearth.catalog.refs import ReferenceError_, tiff_references

    pid = source.product_id
    stage[0] = "metadata"
    if source.delivery == "stac":
        from spectralearth.catalog.stacapi import check_remote_files

        check_remote_files(source)  # wrong credentials, 404 and 5xx get their own named errors
    metadata = read_metadata(source, storage_options=storage_options, max_bytes=config.max_xml_bytes,
                             ranges=config.xml_ranges)
    grid = None
    image_url = source.file("SPECTRAL_IMAGE.TIF")
    stage[0] = "image"
    info = None
    if image_url:
        info = check_image(source, metadata, storage_options=storage_options)
        grid = {"epsg": int(info.epsg), "transform": list(info.transform)[:6], "shape": list(info.shape)[-2:]}
    elif _expects_image(metadata):
        raise ImageError(pid, "SPECTRAL_IMAGE.TIF missing (METADATA.XML lists it)", key="SPECTRAL_IMAGE.TIF")
    stage[0] = "footprint"
    fp_source = source
    if source.delivery == "stac" and source.file("QL_QUALITY_CLASSES.TIF") is None:
        # a remote image's nodata footprint would read a whole band over HTTP: the XML polygon instead
        fp_source = dataclasses.replace(source, files=tuple(f for f in source.files if f[0] != "SPECTRAL_IMAGE.TIF"))
    footprint = valid_footprint(fp_source, metadata, storage_options=storage_options, simplify_px=config.simplify_px,
                                max_mask_pixels=config.max_mask_pixels)
    if info is not None and config.sample_windows > 0:
        stage[0] = "image"
        fraction = sample_pixels(source, info, footprint.utm, storage_options=storage_options,
                                 windows=config.sample_windows, max_remote_bytes=config.sample_max_remote_bytes)
        # None: skipped, the windows would fetch more than sample_max_remote_bytes over HTTP
        if fraction == 0.0:
            raise ImageError(pid, f"all nodata: every pixel of {config.sample_windows} sampled windows inside the "
                                  f"valid footprint ({footprint.source}) is nodata", key="pixels")
    if grid is None:
        grid = _derived_grid(metadata, footprint)
    refs_href = None
    extra: dict[str, Any] = {}
    if image_url and config.references:
        stage[0] = "references"
        try:
            refs = tiff_references(
                image_url,
                product=source.product_id,
                wavelengths_nm=[b.wavelength_nm for b in metadata.bands],
                fwhm_nm=[b.fwhm_nm for b in metadata.bands],
                epsg=grid["epsg"],
                transform=grid["transform"],
                storage_options=storage_options,
            )
        except ReferenceError_ as exc:
            # e.g. a deflated ZIP member: the tile is fine, it just cannot be referenced in place
            extra["enmap:references_unavailable"] = str(exc)
        else:
            refs_href = join(catalog_url, "refs", f"{source.product_id}.json")
            atomic_write_bytes(refs_href, json.dumps(refs).encode(), storage_options)
    stage[0] = "item"
    item = create_item_dict(
        metadata,
        footprint,
        files=dict(source.files),
        grid=grid,
        references_href=refs_href,
        delivery=source.delivery,
        extra_properties=extra,
    )
    return item


def _index_batch(sources, catalog_url, storage_options, config) -> list[_Outcome]:
    return [index_product(s, catalog_url=catalog_url, storage_options=storage_options, config=config) for s in sources]


def _run_batches(
    sources: Sequence,
    *,
    catalog_url: str,
    storage_options: Mapping[str, Any] | None,
    config: IndexConfig,
    cluster: ClusterSpec,
    progress: Callable[[int], None] | None,
) -> list[_Outcome]:
    if not sources:
        return []
    outcomes: list[_Outcome] = []
    if cluster.kind == "sync":
        for s in sources:
            outcomes.append(index_product(s, catalog_url=catalog_url, storage_options=storage_options, config=config))
            if progress:
                progress(1)
        return outcomes
    from distributed import as_completed

    with cluster_client(cluster) as client:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})) or 1)
        size = config.batch_size or max(1, min(200, math.ceil(len(sources) / (n_workers * 8))))
        batches = [list(sources[i : i + size]) for i in range(0, len(sources), size)]
        opts = dict(storage_options or {})

        def submit(batch_list):
            futs = client.map(
                _index_batch,
                batch_list,
                catalog_url=catalog_url,
                storage_options=opts,
                config=config,
                key=[f"index-batch-{uuid.uuid4().hex[:12]}" for _ in batch_list],
            )
            return futs

        pending = dict(zip(submit(batches), batches, strict=True))
        suspects = []
        for fut in as_completed(list(pending)):
            batch = pending.pop(fut)
            try:
                res = fut.result()
            except Exception:  # the worker died (crash, memory) or the task could not run
                suspects.extend(batch)
                fut.release()
                continue
            outcomes.extend(res)
            if progress:
                progress(len(res))
            fut.release()
        # each product of a failed batch alone, one at a time: a crash then names its product
        # and takes no other product with it
        for s in suspects:
            try:  # a killed worker is restarted by its nanny; never wait on a cluster without workers
                client.wait_for_workers(1, timeout=config.worker_wait_s)
            except (TimeoutError, OSError) as exc:
                why = f"{s.product_id}: no worker to index it alone after a worker died ({exc})"
                outcomes.append(_Outcome(s.product_id, quarantine=QuarantineRecord(
                    s.product_id, "worker", type(exc).__name__, why, s.url, retryable=True)))
                continue
            (fut,) = submit([[s]])
            try:
                res = fut.result()
            except Exception as exc:
                why = (f"{s.product_id}: the worker indexing it failed ({type(exc).__name__}: {exc}); "
                       "crash or memory exhausted")
                log.warning("%s", why)
                res = [_Outcome(s.product_id, quarantine=QuarantineRecord(s.product_id, "worker", type(exc).__name__,
                                                                          why, s.url))]
            outcomes.extend(res)
            if progress:
                progress(len(res))
            fut.release()
    return outcomes


def _version_key(product_id: str):
    from spectralearth.catalog.enmap import ProductName

    return ProductName.parse(product_id).version_key


def _tile_key(item: Mapping[str, Any]) -> tuple[int, int]:
    p = item["properties"]
    return int(p["enmap:datatake_id"]), int(p["enmap:tile_id"])


def resolve_duplicates(items: Iterable[dict]) -> tuple[list[dict], list[dict[str, Any]]]:
    """Keep the newest delivery of each (datatake, tile); return (kept, superseded records)."""
    best: dict[tuple[int, int], dict] = {}
    for it in items:
        key = _tile_key(it)
        cur = best.get(key)
        if cur is None or _version_key(it["id"]) > _version_key(cur["id"]):
            best[key] = it
    kept_ids = {it["id"] for it in best.values()}
    kept, superseded = [], []
    for it in items:
        if it["id"] in kept_ids:
            kept.append(it)
        else:
            winner = best[_tile_key(it)]["id"]
            dt, tile = _tile_key(it)
            superseded.append({"product": it["id"], "superseded_by": winner, "datatake": dt, "tile": tile})
    return kept, superseded


def index_archive(
    archive_url: str,
    *,
    catalog_url: str,
    storage_options: Mapping[str, Any] | None = None,
    config: IndexConfig = IndexConfig(),
    cluster: ClusterSpec = ClusterSpec(),
    progress: bool = False,
    discovery=None,
    search=None,
) -> IndexReport:
    """Index an archive into the STAC tile catalog at ``catalog_url`` (incrementally).

    Args:
        archive_url: folder or bucket prefix holding EnMAP L2A products (folders or .ZIP), or
            ``stac:https://…``, a STAC API searched with ``search`` (see :mod:`spectralearth.catalog.stacapi`).
        catalog_url: where the catalog lives (created if missing).
        storage_options: fsspec options for both URLs (no secrets; see ``spectralearth.platform.storage``).
        config: job options.
        cluster: where the per-product work runs.
        progress: show a progress bar.
        discovery: what :func:`~spectralearth.catalog.enmap.discover_products` found, when the
            caller already listed the archive (default: list it now).
        search: a :class:`~spectralearth.catalog.stacapi.StacSearch` for ``stac:`` archives.

    Returns:
        An :class:`IndexReport`; bad products are in ``report.quarantine``, never raised.

    Raises:
        NothingFoundError: no product (good or bad) was found; the message says what was
            searched and what was skipped, by reason.
    """
    from spectralearth.catalog.enmap import discover_products
    from spectralearth.catalog.stacapi import RETRYABLE_ERRORS, StacSearch, discover_stac, is_stac_url

    t0 = time.perf_counter()
    snapshot = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    report = IndexReport(archive_url=archive_url, catalog_url=catalog_url, snapshot=snapshot)

    t = time.perf_counter()
    if discovery is None and is_stac_url(archive_url):
        discovery = discover_stac(archive_url, search or StacSearch())
    elif discovery is None:
        discovery = discover_products(archive_url, storage_options=storage_options)
    report.stages["discover"] = time.perf_counter() - t
    report.discovered = len(discovery.sources)
    report.searched = discovery.searched
    report.skipped = dict(discovery.skipped)
    if not discovery.sources and not discovery.problems:
        raise NothingFoundError(f"no EnMAP L2A products found: {discovery.describe()}")

    t = time.perf_counter()
    existing_ids = read_ids(catalog_url, storage_options=storage_options)
    old_quarantine = read_table(catalog_url, "quarantine", storage_options=storage_options)
    old_superseded = read_table(catalog_url, "superseded", storage_options=storage_options)
    known = set(existing_ids)
    known |= {r["product"] for r in old_superseded}
    if not config.retry_quarantined:
        # storage failures and unreachable servers may pass: those products are tried again without a flag
        found = {s.product_id for s in discovery.sources}
        retry = {r["product"] for r in old_quarantine
                 if (r.get("retryable") or r.get("error_class") in RETRYABLE_ERRORS) and r["product"] in found}
        known |= {r["product"] for r in old_quarantine if r["product"] not in retry}
        old_quarantine = [r for r in old_quarantine if r["product"] not in retry]
    else:
        old_quarantine = []
        retry = set()
    todo = [s for s in discovery.sources if s.product_id not in known]
    report.retried = sum(1 for s in todo if s.product_id in retry)
    report.already_indexed = len(discovery.sources) - len(todo)
    report.stages["load_catalog"] = time.perf_counter() - t

    t = time.perf_counter()
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), unit="product", desc="index", dynamic_ncols=True)
    try:
        outcomes = _run_batches(
            todo,
            catalog_url=catalog_url,
            storage_options=storage_options,
            config=config,
            cluster=cluster,
            progress=bar.update if bar else None,
        )
    finally:
        if bar:
            bar.close()
    report.stages["index"] = time.perf_counter() - t

    t = time.perf_counter()
    new_quarantine = [
        QuarantineRecord(p.product, p.stage, type(p).__name__, str(p), getattr(p, "key", None) or "")
        for p in discovery.problems
    ]
    new_items = []
    upstream = getattr(discovery, "item_properties", {})
    for o in sorted(outcomes, key=lambda o: o.product):
        if o.item is not None:
            o.item["properties"].update(upstream.get(o.product, {}))
            new_items.append(o.item)
        elif o.quarantine is not None:
            new_quarantine.append(o.quarantine)
    # discovery problems may repeat on every run: keep one record per product
    seen_q = {r["product"] for r in old_quarantine}
    seen_q_new = [q for q in new_quarantine if q.product not in seen_q]
    quarantine_rows = list(old_quarantine) + [{**asdict(q), "snapshot": snapshot} for q in seen_q_new]
    if not new_items and not seen_q_new and existing_ids:
        # nothing new: the committed catalog stays as it is
        report.stages["commit"] = time.perf_counter() - t
        report.tiles_total = len(existing_ids)
        report.quarantined_total = len(old_quarantine)
        report.seconds = time.perf_counter() - t0
        return report
    existing = read_item_dicts(catalog_url, storage_options=storage_options) if existing_ids else []
    kept, superseded = resolve_duplicates(existing + new_items)
    superseded_rows = list(old_superseded) + [{**s, "snapshot": snapshot} for s in superseded]

    write_items(kept, catalog_url, storage_options=storage_options)
    write_table(quarantine_rows, catalog_url, "quarantine", QUARANTINE_COLUMNS, storage_options=storage_options)
    write_table(superseded_rows, catalog_url, "superseded", SUPERSEDED_COLUMNS, storage_options=storage_options)
    collection = create_collection(
        kept,
        items_href="./tiles.parquet",
        extra_assets={
            "quarantine": {"href": "./quarantine.parquet", "type": "application/vnd.apache.parquet", "roles": ["metadata"], "title": "Quarantined products"},
            "superseded": {"href": "./superseded.parquet", "type": "application/vnd.apache.parquet", "roles": ["metadata"], "title": "Superseded deliveries"},
        },
        summaries={"spectralearth:snapshot": [snapshot], "spectralearth:tiles": [len(kept)]},
    )
    report.stages["commit"] = time.perf_counter() - t
    report.indexed = len(new_items)
    report.quarantined = len(seen_q_new)
    report.quarantined_total = len(quarantine_rows)
    report.superseded = len(superseded)
    report.tiles_total = len(kept)
    report.quarantine = [{**asdict(q)} for q in seen_q_new]
    report.seconds = time.perf_counter() - t0
    atomic_write_bytes(join(catalog_url, "index-report.json"), json.dumps(report.to_dict(), indent=2).encode(), storage_options)
    # the collection is the commit point: written last
    atomic_write_bytes(join(catalog_url, "collection.json"), json.dumps(collection, indent=2).encode(), storage_options)
    return report
