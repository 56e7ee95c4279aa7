# dask-gateway-server configuration of the local SpectralEarth stack.
#
# A template: `spectralearth stack up` fills in the $${...} fields and writes the
# result to <stack dir>/gateway/dask_gateway_config.py, then starts
#   python -m dask_gateway_server -f <stack dir>/gateway/dask_gateway_config.py
# Everything binds to 127.0.0.1. Clusters run as local processes of the same user
# (UnsafeLocalBackend: no user separation, fine for one developer's machine; use
# the Kubernetes backend / Helm chart anywhere else).
#
# The password is read from a 0600 file at start; it never appears in this file.
import pathlib

from dask_gateway_server.options import Float, Integer, Options

c = get_config()  # noqa: F821  (provided by traitlets when the file is loaded)

# -- addresses: the private API, the public HTTP proxy, the scheduler TCP proxy --
c.DaskGateway.address = "127.0.0.1:${api_port}"
c.Proxy.address = "127.0.0.1:${http_port}"
c.Proxy.tcp_address = "127.0.0.1:${tcp_port}"
c.DaskGateway.log_level = "${log_level}"

# -- authentication: HTTP basic with one shared password --
c.DaskGateway.authenticator_class = "dask_gateway_server.auth.SimpleAuthenticator"
c.SimpleAuthenticator.password = pathlib.Path(r"${password_file}").read_text().strip()

# -- backend: local processes running this environment's dask --
c.DaskGateway.backend_class = "dask_gateway_server.backends.local.UnsafeLocalBackend"
c.LocalBackend.clusters_directory = r"${clusters_dir}"
c.LocalBackend.inherited_environment = ${inherited_environment}
# Stopping a cluster: SIGINT, then SIGTERM, then SIGKILL after these many seconds.
c.LocalBackend.sigint_timeout = 3
c.LocalBackend.sigterm_timeout = 2
c.ClusterConfig.scheduler_cmd = [r"${dask_cmd}", "scheduler"]
# the local backend already puts schedulers and dashboards on 127.0.0.1; a worker (and
# its nanny) would listen on every interface unless told otherwise
c.ClusterConfig.worker_cmd = [r"${dask_cmd}", "worker", "--host", "127.0.0.1"]
c.ClusterConfig.worker_cores = 1
c.ClusterConfig.worker_memory = "${default_worker_memory_gib} G"
c.ClusterConfig.scheduler_memory = "1 G"
# An abandoned cluster (client killed hard) goes away by itself after this long.
c.ClusterConfig.idle_timeout = ${idle_timeout_s}
c.ClusterConfig.cluster_max_workers = ${max_workers}

# -- what clients may choose (spectralearth --worker-cores / --worker-memory) --


def _options_handler(options):
    return {
        "worker_cores": options.worker_cores,
        "worker_memory": int(options.worker_memory * 2**30),
    }


c.Backend.cluster_options = Options(
    Integer("worker_cores", default=1, min=1, max=${max_worker_cores}, label="Worker cores"),
    Float("worker_memory", default=${default_worker_memory_gib}, min=0.25, max=${max_worker_memory_gib}, label="Worker memory (GiB)"),
    handler=_options_handler,
)
