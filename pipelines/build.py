"""The one-shot build: archive -> catalog -> overlaps -> combinations -> plan -> cube (+ statistics).

A thin recipe: every step is a library job of its own (``index_archive``,
``overlaps_job``, ``combinations_job``, ``plan_job``, ``extract_cube``); this module
runs them in order on one dask cluster, shows one progress bar per stage, and
writes a final report:

    OUT_URL/catalog/            the STAC tile catalog, overlap graph, combinations, plan
    OUT_URL/cube.zarr           the patch cube: each build commits one new version
    OUT_URL/build-report.json   counts per stage, quarantined products, timings, throughput

Re-running resumes: the index is incremental, the graph, combinations and plan are
recomputed (cheap and deterministic), and the extraction builds on the cube's latest
version: an interrupted build is finished where it stopped, a grown archive adds a
version that writes only the new views, and an unchanged plan commits nothing.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from spectralearth.catalog.index import IndexConfig
from spectralearth.pipelines.combinations import CombinationParams
from spectralearth.pipelines.extract import ExtractParams
from spectralearth.pipelines.plan import PlanParams
from spectralearth.platform import storage
from spectralearth.platform.cluster import ClusterSpec

__all__ = ["BuildConfig", "BuildReport", "build"]

REPORT_NAME = "build-report.json"


@dataclass(frozen=True)
class BuildConfig:
    """Parameters of every stage of a build."""

    index: IndexConfig = IndexConfig()
    """Index job options."""
    combinations: CombinationParams = CombinationParams()
    """Combination search options."""
    plan: PlanParams = PlanParams()
    """Patch placement and quality filters."""
    extract: ExtractParams = ExtractParams()
    """Band selection, encoding and task size."""

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the pipeline config recorded in the cube)."""
        d = asdict(self)
        d["extract"]["bands"] = list(self.extract.bands)
        return d

    def hash(self) -> str:
        """SHA-256 of :meth:`to_dict`."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


@dataclass
class BuildReport:
    """What a build did, stage by stage."""

    archive_url: str
    out_url: str
    catalog_url: str
    cube_url: str
    config_hash: str = ""
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    quarantined: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> dict[str, Any]:
        """The headline numbers (for the console)."""
        s = self.stages
        ix, ov, co = s.get("index", {}), s.get("overlaps", {}), s.get("combinations", {})
        pl, ex = s.get("plan", {}), s.get("extract", {})
        return {
            "tiles in catalog": ix.get("tiles_total"),
            "quarantined products": ix.get("quarantined_total"),
            "overlap edges": ov.get("n_edges"),
            "combinations": f"{co.get('n_combinations')} (max n = {co.get('max_n')})",
            "patches / views": f"{pl.get('patches')} / {pl.get('views')} ({pl.get('multi_date_patches')} multi-date)",
            "views removed by filters": pl.get("removed_by_filter"),
            "cube": f"{self.cube_url} ({ex.get('bands')} bands, compression {ex.get('compression_ratio')}x)",
            "version": f"{ex.get('version')} (parent {ex.get('parent')}; {ex.get('new_views')} new views, {ex.get('reused_views')} reused)"
                       + (" up to date, nothing committed" if ex.get("up_to_date") else ""),
            "extraction": f"{ex.get('tasks_run')} tasks run, {ex.get('tasks_done_before')} resumed, {ex.get('mb_per_s')} MB/s raw",
            "wall time": " ".join(f"{k}={v.get('seconds', 0):.1f}s" for k, v in s.items()) + f" total={self.seconds:.1f}s",
        }


def _snapshot(catalog_url: str, storage_options) -> str | None:
    try:
        coll = json.loads(storage.read_bytes(storage.join(catalog_url, "collection.json"), storage_options))
        snap = (coll.get("summaries") or {}).get("spectralearth:snapshot") or [None]
        return snap[0]
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def build(
    archive_url: str,
    out_url: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    config: BuildConfig = BuildConfig(),
    cluster: ClusterSpec = ClusterSpec(),
    progress: bool = False,
) -> BuildReport:
    """Run index -> overlaps -> combinations -> plan -> extract (+ statistics) as one job.

    Args:
        archive_url: the EnMAP L2A archive.
        out_url: output root (``catalog/``, ``cube.zarr``, ``build-report.json`` under it).
        storage_options: fsspec options for every URL (no secrets).
        config: parameters of every stage.
        cluster: where the work runs; one cluster serves every stage.
        progress: progress bars per stage.

    Returns:
        The :class:`BuildReport` (also written to ``OUT_URL/build-report.json``).

    Raises:
        EmptyPlanError: the plan has no views.
        VersionConflictError: another build committed on the same cube version first.
    """
    from spectralearth.catalog import index_archive
    from spectralearth.pipelines.combinations import combinations_job
    from spectralearth.pipelines.extract import extract_cube
    from spectralearth.pipelines.overlaps import overlaps_job
    from spectralearth.pipelines.plan import plan_job
    from spectralearth.platform.cluster import cluster_client

    t0 = time.perf_counter()
    catalog_url = storage.join(out_url, "catalog")
    cube_url = storage.join(out_url, "cube.zarr")
    report = BuildReport(
        archive_url=storage.redact(archive_url),
        out_url=storage.redact(out_url),
        catalog_url=storage.redact(catalog_url),
        cube_url=storage.redact(cube_url),
        config_hash=config.hash(),
    )

    def stage(name: str, fn):
        if progress:
            print(f"[{name}]", flush=True)
        t = time.perf_counter()
        out = fn()
        d = out.to_dict() if hasattr(out, "to_dict") else out.as_dict()
        d["seconds"] = round(time.perf_counter() - t, 3)
        report.stages[name] = d
        return out

    with cluster_client(cluster) as client:
        inner = cluster if client is None else ClusterSpec(kind="scheduler", address=client.scheduler.address)
        ix = stage(
            "index",
            lambda: index_archive(archive_url, catalog_url=catalog_url, storage_options=storage_options,
                                  config=config.index, cluster=inner, progress=progress),
        )
        report.quarantined = [dict(q) for q in ix.quarantine]
        stage("overlaps", lambda: overlaps_job(catalog_url, storage_options=storage_options, cluster=inner))
        stage("combinations", lambda: combinations_job(catalog_url, storage_options=storage_options, cluster=inner,
                                                       params=config.combinations))
        stage("plan", lambda: plan_job(catalog_url, storage_options=storage_options, params=config.plan,
                                       cluster=inner, progress=progress))
        attrs = {
            "spectralearth:catalog_snapshot": _snapshot(catalog_url, storage_options),
            "spectralearth:archive": storage.redact(archive_url),
            "spectralearth:pipeline_config": config.to_dict(),
        }
        stage("extract", lambda: extract_cube(catalog_url, cube_url, storage_options=storage_options,
                                              params=config.extract, cluster=inner,
                                              progress=progress, extra_attrs=attrs))
    report.seconds = round(time.perf_counter() - t0, 3)
    storage.atomic_write_bytes(storage.join(out_url, REPORT_NAME), json.dumps(report.to_dict(), indent=2, default=str).encode(),
                               storage_options)
    return report
