"""dask-gateway clusters: connect, pick options, start, scale, shut down.

The gateway's address, proxy address and authentication come from standard dask
configuration (``~/.config/dask/gateway.yaml`` or environment variables), never
from job parameters, so that no secret ends up in a pipeline config or a log::

    DASK_GATEWAY__ADDRESS=http://gateway.example.org
    DASK_GATEWAY__PROXY_ADDRESS=gateway://gateway.example.org:8786
    DASK_GATEWAY__AUTH__TYPE=basic            # or jupyterhub, kerberos, a class path
    DASK_GATEWAY__AUTH__KWARGS__USERNAME=alice
    DASK_GATEWAY__AUTH__KWARGS__PASSWORD=...  # basic auth only

Cluster options (worker cores, memory, image) are set only where the server
exposes them (its ``cluster_options``); an option the server does not offer is
reported in a warning and left out.
"""

from __future__ import annotations

import logging
import time
from typing import Any

__all__ = [
    "GatewayAuthError",
    "GatewayError",
    "connect_gateway",
    "gateway_cluster_options",
    "start_gateway_cluster",
]

log = logging.getLogger(__name__)

# The option names the platform knows, and the names servers commonly use for them.
_OPTION_NAMES = {
    "worker_cores": ("worker_cores",),
    "worker_memory": ("worker_memory",),
    "image": ("image", "worker_image"),
}


class GatewayError(RuntimeError):
    """The dask-gateway could not be reached or refused a request."""


class GatewayAuthError(GatewayError):
    """The dask-gateway refused the client's credentials (HTTP 401/403)."""


def _config_address(name: str) -> str | None:
    import dask.config
    from dask_gateway.utils import format_template

    value = dask.config.get(f"gateway.{name}", None)
    return format_template(value) if value else None


def _auth_hint() -> str:
    import dask.config

    kind = dask.config.get("gateway.auth.type", None) or "basic"
    return (
        f"authentication type {kind!r} (from dask config 'gateway.auth.type'); for basic auth set "
        "DASK_GATEWAY__AUTH__TYPE=basic, DASK_GATEWAY__AUTH__KWARGS__USERNAME and "
        "DASK_GATEWAY__AUTH__KWARGS__PASSWORD (with the local stack: eval \"$(spectralearth stack env)\")"
    )


def translate_error(exc: BaseException, address: str) -> BaseException:
    """Map a client-library exception to a :class:`GatewayError` with a message that says what to do."""
    import aiohttp

    if isinstance(exc, aiohttp.ClientResponseError) and exc.status in (401, 403):
        return GatewayAuthError(
            f"the dask-gateway at {address} refused the credentials (HTTP {exc.status}: authentication "
            f"failed); check the {_auth_hint()}"
        )
    if isinstance(exc, aiohttp.ClientConnectionError | ConnectionError | OSError):
        return GatewayError(f"cannot reach the dask-gateway at {address}: {exc}")
    if isinstance(exc, aiohttp.ClientResponseError):
        return GatewayError(f"the dask-gateway at {address} answered HTTP {exc.status}: {exc.message}")
    return exc


def connect_gateway(*, address: str | None = None, proxy_address: str | None = None):
    """Return a ``dask_gateway.Gateway`` for ``address`` (default: dask config ``gateway.address``).

    Authentication comes from dask config (``gateway.auth``). The connection is
    checked with one authenticated request, so a wrong password fails here.

    Raises:
        GatewayError: no address configured, or the server cannot be reached.
        GatewayAuthError: the server refused the credentials.
    """
    from dask_gateway import Gateway

    address = address or _config_address("address")
    if not address:
        raise GatewayError(
            "no dask-gateway address: set DASK_GATEWAY__ADDRESS (or 'gateway.address' in dask config), "
            "or pass --scheduler/--cluster local"
        )
    proxy_address = proxy_address or _config_address("proxy-address")
    gateway = Gateway(address=address, proxy_address=proxy_address)
    try:
        gateway.list_clusters()  # one authenticated round trip
    except Exception as exc:
        close_gateway(gateway)
        raise translate_error(exc, address) from exc
    return gateway


def close_gateway(gateway) -> None:
    """Close a ``Gateway`` once (its ``__del__`` would close it a second time and fail)."""
    try:
        gateway.close()
    finally:
        # dask_gateway.Gateway.__del__ calls close() again, which raises once the loop is stopped.
        gateway.__dict__.pop("_loop_runner", None)


def gateway_cluster_options(
    gateway,
    *,
    worker_cores: int | None = None,
    worker_memory_bytes: int | None = None,
    image: str | None = None,
) -> tuple[Any, list[str]]:
    """The server's cluster options with the requested values set.

    ``worker_memory_bytes`` is converted to the unit the server's field uses: GiB
    for a float field (the convention of the Helm chart's examples), bytes for an
    integer field, a string such as ``"4 G"`` for a string field.

    Returns:
        ``(options, ignored)`` where ``ignored`` names requested settings the server
        does not expose.
    """
    options = gateway.cluster_options()
    fields = set(options)
    wanted: dict[str, Any] = {"worker_cores": worker_cores, "worker_memory": worker_memory_bytes, "image": image}
    ignored: list[str] = []
    for key, value in wanted.items():
        if value is None:
            continue
        name = next((n for n in _OPTION_NAMES[key] if n in fields), None)
        if name is None:
            ignored.append(key)
            continue
        if key == "worker_memory":
            value = _memory_in_field_unit(options, name, value)
        try:
            options[name] = value
        except (TypeError, ValueError) as exc:
            raise GatewayError(f"the dask-gateway rejected cluster option {name}={value!r}: {exc}") from exc
    return options, ignored


def _memory_in_field_unit(options, name: str, nbytes: int):
    field = options._fields[name] if hasattr(options, "_fields") else None
    kind = type(field).__name__ if field is not None else "Float"
    if kind == "Integer":
        return int(nbytes)
    if kind == "String":
        return f"{nbytes / 2**30:g} G"
    return round(nbytes / 2**30, 3)


def start_gateway_cluster(
    *,
    address: str | None = None,
    proxy_address: str | None = None,
    worker_cores: int | None = None,
    worker_memory_bytes: int | None = None,
    image: str | None = None,
    n_workers: int | None = None,
    adapt_min: int | None = None,
    adapt_max: int | None = None,
    timeout_s: float = 300.0,
):
    """Start a gateway cluster, scale it, and return ``(gateway, cluster, client)``.

    Fixed size (``n_workers``) unless ``adapt_min``/``adapt_max`` ask for adaptive
    scaling. Waits until ``n_workers`` (or ``adapt_min``) workers have joined.
    Whatever was started is shut down again if anything here fails or is
    interrupted.

    Raises:
        GatewayError, GatewayAuthError: see :func:`connect_gateway`; workers did not
            join within ``timeout_s``.
    """
    gateway = connect_gateway(address=address, proxy_address=proxy_address)
    cluster = client = None
    try:
        options, ignored = gateway_cluster_options(
            gateway, worker_cores=worker_cores, worker_memory_bytes=worker_memory_bytes, image=image
        )
        if ignored:
            log.warning("the dask-gateway does not expose cluster option(s) %s: ignored", ", ".join(ignored))
        try:
            cluster = gateway.new_cluster(cluster_options=options, shutdown_on_close=True)
        except Exception as exc:
            raise translate_error(exc, gateway.address) from exc
        log.info("dask-gateway cluster %s started", cluster.name)
        adaptive = adapt_min is not None or adapt_max is not None
        if adaptive:
            lo = adapt_min or 0
            hi = adapt_max if adapt_max is not None else max(lo, n_workers or 1)
            if hi < lo:
                raise GatewayError(f"--adapt-max ({hi}) is smaller than --adapt-min ({lo})")
            cluster.adapt(minimum=lo, maximum=hi)
            wait_for = lo
        else:
            wait_for = n_workers or 1
            cluster.scale(wait_for)
        client = cluster.get_client(set_as_default=True)  # jobs use as_completed etc. on the default client
        if wait_for:
            t0 = time.monotonic()
            try:
                client.wait_for_workers(wait_for, timeout=timeout_s)
            except TimeoutError as exc:
                raise GatewayError(
                    f"dask-gateway cluster {cluster.name}: {wait_for} worker(s) did not join within "
                    f"{timeout_s:.0f} s (the server may be out of capacity or the worker image may not start)"
                ) from exc
            log.info("%d gateway worker(s) joined in %.1f s", wait_for, time.monotonic() - t0)
        return gateway, cluster, client
    except BaseException:
        shutdown_gateway_cluster(gateway, cluster, client)
        raise


def shutdown_gateway_cluster(gateway, cluster, client) -> None:
    """Close the client, shut the cluster down and close the gateway connection (errors are logged)."""
    for what, closer in (
        # bounded: an interrupted job must not wait on a scheduler that is going away
        ("client", (lambda: client.close(timeout=15)) if client is not None else None),
        ("cluster", (lambda: _shutdown_cluster(cluster)) if cluster is not None else None),
        ("gateway", (lambda: close_gateway(gateway)) if gateway is not None else None),
    ):
        if closer is None:
            continue
        try:
            closer()
        except Exception as exc:  # shutting down must not mask the job's own error
            log.warning("closing the dask-gateway %s failed: %s", what, exc)


def _shutdown_cluster(cluster) -> None:
    try:
        cluster.shutdown()
    finally:
        inner = getattr(cluster, "gateway", None)
        if inner is not None:  # already closed by shutdown(); keep its __del__ from closing again
            inner.__dict__.pop("_loop_runner", None)
