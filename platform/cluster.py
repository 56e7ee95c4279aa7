"""Where dask jobs run: a local cluster, an existing scheduler, or a dask-gateway cluster.

Every job takes a :class:`ClusterSpec` and runs inside :func:`cluster_client`, which
yields a ``distributed.Client`` and shuts down whatever it started on success,
failure and Ctrl-C alike. Before the job starts, the client, the scheduler and the
workers are checked for compatible versions of Python, dask, distributed, the
serialization libraries and this package (:func:`check_versions`).

A spec holds no secrets: the gateway's address and credentials come from dask
config / the environment (see :mod:`spectralearth.platform.gateway`).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ClusterSpec", "VersionMismatchError", "check_versions", "cluster_client", "verify_cluster_versions"]

log = logging.getLogger(__name__)

KINDS = ("local", "scheduler", "gateway", "sync")
PACKAGE = "spectralearth"
#: Packages whose versions must agree between client, scheduler and workers.
COMPATIBLE_PACKAGES = ("python", "dask", "distributed", "cloudpickle", "msgpack", PACKAGE)
# Only the scheduler-relevant ones are compared with the scheduler; the scheduler
# never unpickles task functions, so it need not run this package.
_SCHEDULER_PACKAGES = ("python", "dask", "distributed", "cloudpickle", "msgpack")


@dataclass(frozen=True)
class ClusterSpec:
    """How to get a dask cluster for a job (no secrets; safe to log and hash)."""

    kind: str = "local"
    """'local' (a LocalCluster started here), 'scheduler' (connect to ``address``), 'gateway' (a new dask-gateway cluster), or 'sync' (no cluster, this process)."""
    address: str | None = None
    """Scheduler address for kind='scheduler'; gateway address for kind='gateway' (default: dask config ``gateway.address``)."""
    n_workers: int | None = None
    """Workers: local default one per core (at most 4); gateway default 1 (fixed size unless adaptive)."""
    threads_per_worker: int = 1
    """Threads per local worker (``worker_cores`` wins when set)."""
    memory_limit: str | None = "auto"
    """Memory limit per local worker (dask syntax, e.g. '2GB'; ``worker_memory`` wins when set)."""
    processes: bool = True
    """Local workers as processes (True) or threads in this process (False)."""
    proxy_address: str | None = None
    """Gateway scheduler proxy, e.g. 'gateway://host:8786' (default: dask config ``gateway.proxy-address``)."""
    worker_cores: int | None = None
    """Cores (threads) per worker; gateway option ``worker_cores``."""
    worker_memory: str | None = None
    """Memory per worker, e.g. '4GiB'; gateway option ``worker_memory``."""
    image: str | None = None
    """Worker container image; gateway option ``image`` (where the server exposes it)."""
    adapt_min: int | None = None
    """Adaptive scaling: minimum workers (adaptive when this or ``adapt_max`` is set)."""
    adapt_max: int | None = None
    """Adaptive scaling: maximum workers."""
    start_timeout_s: float = 300.0
    """How long to wait for workers to join."""
    check_versions: bool = True
    """Refuse to run when client, scheduler and workers disagree on versions."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"cluster kind must be one of {', '.join(map(repr, KINDS))}, not {self.kind!r}")
        if self.kind == "scheduler" and not self.address:
            raise ValueError("cluster kind 'scheduler' needs an address (e.g. tcp://127.0.0.1:8786)")
        for name in ("n_workers", "worker_cores", "adapt_max"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        if self.adapt_min is not None and self.adapt_min < 0:
            raise ValueError(f"adapt_min must be at least 0, not {self.adapt_min}")
        if self.adapt_min is not None and self.adapt_max is not None and self.adapt_max < self.adapt_min:
            raise ValueError(f"adapt_max ({self.adapt_max}) is smaller than adapt_min ({self.adapt_min})")
        if self.worker_memory is not None:
            from dask.utils import parse_bytes

            parse_bytes(self.worker_memory)  # raises ValueError on nonsense

    @property
    def adaptive(self) -> bool:
        """True when adaptive scaling was asked for."""
        return self.adapt_min is not None or self.adapt_max is not None


class VersionMismatchError(RuntimeError):
    """Client, scheduler and workers run incompatible software versions."""

    def __init__(self, package: str, client_version: Any, other: str, other_version: Any) -> None:
        self.package = package
        self.client_version = client_version
        self.other = other
        self.other_version = other_version
        super().__init__(
            f"version mismatch for {package}: client has {client_version}, {other} has {other_version}; "
            f"install the same {package} version on the client and in the worker image"
        )


def _comparable(package: str, version: Any) -> Any:
    if package == "python" and isinstance(version, str):
        return ".".join(version.split(".")[:2])  # 3.11.7.final.0 -> 3.11
    return version


def check_versions(versions: Mapping[str, Any], *, packages: tuple[str, ...] = COMPATIBLE_PACKAGES) -> None:
    """Raise :class:`VersionMismatchError` if the versions in ``versions`` disagree.

    Args:
        versions: the output of ``Client.get_versions(packages=[...])``: a mapping with
            ``client``, ``scheduler`` and ``workers`` (address -> info), each info having
            a ``packages`` mapping.
        packages: the packages that must agree (Python is compared by major.minor).
            The scheduler is compared on the dask/serialization stack only.

    Raises:
        VersionMismatchError: naming the package, the client's version and the
            first other party's differing version.
    """
    client = (versions.get("client") or {}).get("packages", {})
    parties: list[tuple[str, Mapping[str, Any], tuple[str, ...]]] = []
    scheduler = versions.get("scheduler")
    if scheduler:
        parties.append(("the scheduler", scheduler.get("packages", {}), _SCHEDULER_PACKAGES))
    for address, info in sorted((versions.get("workers") or {}).items()):
        parties.append((f"worker {address}", (info or {}).get("packages", {}), packages))
    for package in packages:
        mine = _comparable(package, client.get(package, "MISSING"))
        for name, theirs_all, relevant in parties:
            if package not in relevant:
                continue
            theirs = _comparable(package, theirs_all.get(package, "MISSING"))
            if theirs != mine:
                raise VersionMismatchError(package, client.get(package, "MISSING"), name, theirs_all.get(package, "MISSING"))


def verify_cluster_versions(client) -> dict:
    """Fetch versions from ``client``'s cluster and :func:`check_versions` them; return them."""
    extra = [p for p in COMPATIBLE_PACKAGES if p != "python"]
    versions = client.get_versions(packages=extra)
    check_versions(versions)
    return versions


def package_version() -> str:
    """The installed version of this package."""
    return importlib.metadata.version(PACKAGE)


@contextlib.contextmanager
def cluster_client(spec: ClusterSpec | None = None) -> Iterator[object | None]:
    """Yield a ``distributed.Client`` for ``spec`` (None for kind='sync').

    The cluster (if started here) is closed when the block exits, however it exits
    (including Ctrl-C). A gateway cluster is shut down on the server, so no workers
    keep running after the job.

    Raises:
        VersionMismatchError: the cluster runs other versions than this client.
        spectralearth.platform.gateway.GatewayError: the gateway cannot be used
            (``GatewayAuthError`` when it refuses the credentials).
    """
    spec = spec or ClusterSpec()
    if spec.kind == "sync":
        yield None
        return
    if spec.kind == "gateway":
        with _gateway_client(spec) as client:
            yield client
        return
    from distributed import Client, LocalCluster

    if spec.kind == "scheduler":
        existing = _default_client_for(spec.address)
        if existing is not None:
            # A job nested in another job's cluster (e.g. the stages of `build`) shares
            # its client; this also carries a gateway cluster's TLS credentials along.
            yield existing
            return
        client = Client(spec.address)
        try:
            if spec.check_versions:
                verify_cluster_versions(client)
            yield client
        finally:
            client.close()
        return
    from dask.utils import parse_bytes

    n = spec.n_workers or max(1, min(4, os.cpu_count() or 1))
    cluster = LocalCluster(
        n_workers=0 if spec.adaptive else n,
        threads_per_worker=spec.worker_cores or spec.threads_per_worker,
        processes=spec.processes,
        memory_limit=parse_bytes(spec.worker_memory) if spec.worker_memory else spec.memory_limit,
        host="127.0.0.1",
        dashboard_address=None,
    )
    client = None
    try:
        if spec.adaptive:
            cluster.adapt(minimum=spec.adapt_min or 0, maximum=spec.adapt_max or n)
        client = Client(cluster)
        log.info("local dask cluster: %s workers", f"adaptive {spec.adapt_min or 0}..{spec.adapt_max or n}" if spec.adaptive else n)
        yield client
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        with contextlib.suppress(Exception):
            cluster.close()


def _default_client_for(address: str | None):
    """The running default client of this process if it is connected to ``address``."""
    from distributed import default_client

    try:
        client = default_client()
    except ValueError:
        return None
    try:
        if client.status == "running" and client.scheduler.address == address:
            return client
    except Exception:
        return None
    return None


@contextlib.contextmanager
def _gateway_client(spec: ClusterSpec) -> Iterator[object]:
    from dask.utils import parse_bytes

    from spectralearth.platform.gateway import shutdown_gateway_cluster, start_gateway_cluster

    gateway, cluster, client = start_gateway_cluster(
        address=spec.address,
        proxy_address=spec.proxy_address,
        worker_cores=spec.worker_cores,
        worker_memory_bytes=parse_bytes(spec.worker_memory) if spec.worker_memory else None,
        image=spec.image,
        n_workers=spec.n_workers,
        adapt_min=spec.adapt_min,
        adapt_max=spec.adapt_max,
        timeout_s=spec.start_timeout_s,
    )
    try:
        if spec.check_versions:
            verify_cluster_versions(client)
        yield client
    finally:
        shutdown_gateway_cluster(gateway, cluster, client)
