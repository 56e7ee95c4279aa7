"""Where dask jobs run: a local cluster by default, or any existing scheduler.

Every job takes a :class:`ClusterSpec` and runs inside :func:`cluster_client`, which
yields a ``distributed.Client`` and shuts down whatever it started on success,
failure and Ctrl-C alike.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["ClusterSpec", "cluster_client"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusterSpec:
    """How to get a dask cluster for a job."""

    kind: str = "local"
    """'local' (a LocalCluster started here), 'scheduler' (connect to ``address``), or 'sync' (no cluster, threads)."""
    address: str | None = None
    """Scheduler address for kind='scheduler'."""
    n_workers: int | None = None
    """Local workers (default: one per core, at most 4)."""
    threads_per_worker: int = 1
    """Threads per local worker."""
    memory_limit: str | None = "auto"
    """Memory limit per local worker (dask syntax, e.g. '2GB')."""
    processes: bool = True
    """Local workers as processes (True) or threads in this process (False)."""

    def __post_init__(self) -> None:
        if self.kind not in ("local", "scheduler", "sync"):
            raise ValueError(f"cluster kind must be 'local', 'scheduler' or 'sync', not {self.kind!r}")
        if self.kind == "scheduler" and not self.address:
            raise ValueError("cluster kind 'scheduler' needs an address (e.g. tcp://127.0.0.1:8786)")


@contextlib.contextmanager
def cluster_client(spec: ClusterSpec | None = None) -> Iterator[object | None]:
    """Yield a ``distributed.Client`` for ``spec`` (None for kind='sync').

    The cluster (if started here) is closed when the block exits, however it exits.
    """
    spec = spec or ClusterSpec()
    if spec.kind == "sync":
        yield None
        return
    from distributed import Client, LocalCluster

    if spec.kind == "scheduler":
        client = Client(spec.address)
        try:
            yield client
        finally:
            client.close()
        return
    n = spec.n_workers or max(1, min(4, os.cpu_count() or 1))
    cluster = LocalCluster(
        n_workers=n,
        threads_per_worker=spec.threads_per_worker,
        processes=spec.processes,
        memory_limit=spec.memory_limit,
        host="127.0.0.1",
        dashboard_address=None,
    )
    client = Client(cluster)
    log.info("local dask cluster: %d workers", n)
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.close()
        with contextlib.suppress(Exception):
            cluster.close()
