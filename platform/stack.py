"""The local stack: SeaweedFS S3 and a dask-gateway server on loopback.

``spectralearth stack up`` starts both as background processes, from the templates
in ``infra/local/``, and keeps everything under one data folder (default
``.stack/`` in the working directory, or ``$SPECTRALEARTH_STACK_DIR``)::

    <stack dir>/state.json          pids, process start times, ports (no secrets)
    <stack dir>/credentials.json    S3 key pair and gateway password (mode 0600)
    <stack dir>/seaweed/            volumes, filer metadata, weed.log
    <stack dir>/gateway/            rendered server config, gateway.log, clusters/

Every server binds to 127.0.0.1. :meth:`LocalStack.down` stops only the processes
``up`` started (identified by pid *and* start time, so a recycled pid is never
signalled), including the schedulers and workers the gateway spawned.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import secrets
import shlex
import signal
import socket
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

__all__ = ["LocalStack", "StackError", "default_stack_dir", "stack_processes"]

log = logging.getLogger(__name__)

STACK_DIR_ENV = "SPECTRALEARTH_STACK_DIR"
INFRA_DIR_ENV = "SPECTRALEARTH_INFRA_DIR"
_REGION = "us-east-1"
# Variables that would point jobs at some other S3 or gateway; `stack env` unsets them.
_SHADOWING_ENV = ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


class StackError(RuntimeError):
    """The local stack could not be started, inspected or stopped."""


def default_stack_dir() -> Path:
    """``$SPECTRALEARTH_STACK_DIR``, else ``.stack`` in the working directory."""
    return Path(os.environ.get(STACK_DIR_ENV) or ".stack").absolute()


def infra_dir() -> Path:
    """The ``infra/local`` folder with the stack templates."""
    explicit = os.environ.get(INFRA_DIR_ENV)
    candidates = [Path(explicit)] if explicit else []
    candidates.append(Path(__file__).resolve().parent.parent / "infra" / "local")
    for c in candidates:
        if (c / "dask_gateway_config.py").is_file():
            return c
    raise StackError(
        f"the stack templates (infra/local/dask_gateway_config.py) were not found in "
        f"{', '.join(map(str, candidates))}; run from a source checkout or set {INFRA_DIR_ENV}"
    )


@dataclass(frozen=True)
class ProcessRecord:
    """One process the stack started."""

    name: str
    """Service name ('seaweed' or 'gateway')."""
    pid: int
    """Process id."""
    create_time: float
    """psutil start time of the process (tells a live process from a recycled pid)."""

    def process(self) -> psutil.Process | None:
        """The live process, or None if it is gone (or the pid now belongs to another process)."""
        try:
            p = psutil.Process(self.pid)
            if abs(p.create_time() - self.create_time) > 0.05 or p.status() == psutil.STATUS_ZOMBIE:
                return None
            return p
        except psutil.Error:
            return None


def _record(name: str, pid: int) -> ProcessRecord:
    return ProcessRecord(name, pid, psutil.Process(pid).create_time())


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


def _dask_command() -> str:
    beside = Path(sys.executable).parent / "dask"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    raise StackError(f"the 'dask' command of this environment was not found at {beside}")


class LocalStack:
    """SeaweedFS S3 + dask-gateway on loopback, managed through one data folder.

    Args:
        data_dir: the stack folder (default :func:`default_stack_dir`).
    """

    def __init__(self, data_dir: str | os.PathLike | None = None) -> None:
        self.data_dir = Path(data_dir).absolute() if data_dir else default_stack_dir()

    def __repr__(self) -> str:
        return f"LocalStack({str(self.data_dir)!r})"

    # -- files ------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.data_dir / "state.json"

    @property
    def credentials_path(self) -> Path:
        return self.data_dir / "credentials.json"

    @property
    def clusters_dir(self) -> Path:
        return self.data_dir / "gateway" / "clusters"

    def settings(self) -> dict[str, Any]:
        """The stack settings from ``infra/local/stack.json``."""
        return json.loads((infra_dir() / "stack.json").read_text())

    def read_state(self) -> dict[str, Any] | None:
        """The recorded state, or None if the stack was never started (or is down)."""
        try:
            return json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return None
        except json.JSONDecodeError as exc:
            raise StackError(f"the stack state file {self.state_path} is damaged: {exc}") from exc

    def _credentials(self, access_key: str) -> dict[str, str]:
        """Load the generated credentials, creating them (0600) on first use."""
        if self.credentials_path.is_file():
            creds = json.loads(self.credentials_path.read_text())
            os.chmod(self.credentials_path, 0o600)
            return creds
        creds = {
            "s3_access_key": access_key,
            "s3_secret_key": "s3-" + secrets.token_urlsafe(24),
            "gateway_username": getpass.getuser(),
            "gateway_password": "gw-" + secrets.token_urlsafe(24),
        }
        _write_private(self.credentials_path, json.dumps(creds, indent=2))
        return creds

    def _records(self, state: dict[str, Any] | None) -> list[ProcessRecord]:
        if not state:
            return []
        return [ProcessRecord(**r) for r in state.get("processes", [])]

    # -- lifecycle --------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self):
        """One `up`/`down` at a time per stack folder (an advisory lock on ``.lock``)."""
        import fcntl

        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / ".lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def up(self, *, progress=None) -> tuple[dict[str, Any], bool]:
        """Start the stack unless it is running.

        Returns:
            ``(state, started)``: ``started`` is False when it was already running.

        Raises:
            StackError: a service did not come up (its log tail is in the message);
                whatever had been started is stopped again.
        """
        with self._locked():
            return self._up(progress or (lambda msg: None))

    def _up(self, say) -> tuple[dict[str, Any], bool]:
        state = self.read_state()
        if state is not None:
            alive = [r.process() is not None for r in self._records(state)]
            if alive and all(alive) and all(self._healthy(state).values()):
                return state, False
            say("the recorded stack is only partly running: stopping what is left first")
            self._down(grace_s=10.0)
        settings = self.settings()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        creds = self._credentials(settings["seaweed"]["access_key"])
        from spectralearth.platform.seaweed import SeaweedServer

        sw = settings["seaweed"]
        say("starting SeaweedFS (S3) ...")
        weed = SeaweedServer(
            self.data_dir / "seaweed",
            access_key=creds["s3_access_key"],
            secret_key=creds["s3_secret_key"],
            volume_size_limit_mb=int(sw["volume_size_limit_mb"]),
            start_timeout_s=float(sw["start_timeout_s"]),
        )
        try:
            weed.start()
            records = [_record("seaweed", weed.pid)]
            weed.create_bucket(sw["bucket"])
            s3 = {"endpoint_url": weed.endpoint_url, "master_url": weed.master_url, "bucket": sw["bucket"]}
            say("starting dask-gateway ...")
            gw_pid, gateway = self._start_gateway(settings["gateway"], creds, s3["endpoint_url"])
            records.append(_record("gateway", gw_pid))
        except BaseException:
            weed.stop()
            raise
        finally:
            if weed._log_file is not None:  # the child keeps its own descriptor
                weed._log_file.close()
                weed._log_file = None
        state = {
            "version": 1,
            "data_dir": str(self.data_dir),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "s3": s3,
            "gateway": gateway,
            "processes": [r.__dict__ for r in records],
        }
        _write_private(self.state_path, json.dumps(state, indent=2))
        return state, True

    def _start_gateway(self, cfg: dict[str, Any], creds: dict[str, str], endpoint_url: str) -> tuple[int, dict]:
        gw_dir = self.data_dir / "gateway"
        gw_dir.mkdir(parents=True, exist_ok=True)
        self.clusters_dir.mkdir(parents=True, exist_ok=True)
        password_file = gw_dir / "password"
        _write_private(password_file, creds["gateway_password"] + "\n")
        template = string.Template((infra_dir() / "dask_gateway_config.py").read_text())
        env = {k: v for k, v in os.environ.items() if not (k.startswith(("DASK_GATEWAY", "AWS_")) or k in ("SPECTRALEARTH_S3_ENDPOINT",))}
        env.update(
            AWS_ACCESS_KEY_ID=creds["s3_access_key"],
            AWS_SECRET_ACCESS_KEY=creds["s3_secret_key"],
            AWS_DEFAULT_REGION=_REGION,
            SPECTRALEARTH_S3_ENDPOINT=endpoint_url,
        )
        last = ""
        for attempt in range(1, 4):
            api, http, tcp = _free_ports(3)
            config = template.substitute(
                api_port=api,
                http_port=http,
                tcp_port=tcp,
                log_level=cfg["log_level"],
                password_file=password_file,
                clusters_dir=self.clusters_dir,
                inherited_environment=repr(list(cfg["inherited_environment"])),
                dask_cmd=_dask_command(),
                default_worker_memory_gib=float(cfg["default_worker_memory_gib"]),
                max_worker_memory_gib=float(cfg["max_worker_memory_gib"]),
                max_worker_cores=int(cfg["max_worker_cores"]),
                max_workers=int(cfg["max_workers"]),
                idle_timeout_s=float(cfg["idle_timeout_s"]),
            )
            config_path = gw_dir / "dask_gateway_config.py"
            _write_private(config_path, config)
            log_path = gw_dir / "gateway.log"
            with open(log_path, "ab") as log_file:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "dask_gateway_server", "-f", str(config_path)],
                    cwd=gw_dir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                )
            info = {
                "address": f"http://127.0.0.1:{http}",
                "proxy_address": f"gateway://127.0.0.1:{tcp}",
                "api_address": f"http://127.0.0.1:{api}",
            }
            deadline = time.monotonic() + float(cfg["start_timeout_s"])
            try:
                while time.monotonic() < deadline:
                    if proc.poll() is not None:
                        break
                    if _http_status(info["address"] + "/api/health") == 200:
                        return proc.pid, info
                    time.sleep(0.2)
            except BaseException:  # Ctrl-C while waiting: leave nothing behind
                _stop_group(proc.pid, grace_s=3)
                raise
            _stop_group(proc.pid, grace_s=3)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            last = _tail(log_path)
            log.warning("dask-gateway start attempt %d failed", attempt)
        raise StackError(f"dask-gateway did not start (log {gw_dir / 'gateway.log'}):\n{last}")

    def _healthy(self, state: dict[str, Any]) -> dict[str, bool]:
        """Whether each service answers on its recorded endpoint."""
        return {
            "seaweed": _http_status(state["s3"]["endpoint_url"] + "/") is not None,
            "gateway": _http_status(state["gateway"]["address"] + "/api/health") == 200,
        }

    def status(self) -> dict[str, Any]:
        """Per service: pid, whether it runs, whether it answers, and its endpoint (no secrets)."""
        state = self.read_state()
        if state is None:
            return {"running": False, "data_dir": str(self.data_dir), "services": {}}
        healthy = self._healthy(state)
        services = {}
        for r in self._records(state):
            alive = r.process() is not None
            endpoint = state["s3"]["endpoint_url"] if r.name == "seaweed" else state["gateway"]["address"]
            services[r.name] = {"pid": r.pid, "alive": alive, "healthy": alive and healthy.get(r.name, False), "endpoint": endpoint}
        if "gateway" in services:
            services["gateway"]["proxy_address"] = state["gateway"]["proxy_address"]
            services["gateway"]["clusters"] = len(self._cluster_processes())
        if "seaweed" in services:
            services["seaweed"]["bucket"] = f"s3://{state['s3']['bucket']}"
        running = bool(services) and all(s["healthy"] for s in services.values())
        return {"running": running, "data_dir": str(self.data_dir), "services": services}

    def environment(self) -> dict[str, str]:
        """The variables that point S3 clients and dask-gateway clients at this stack (secrets included).

        Raises:
            StackError: the stack is not up.
        """
        state = self.read_state()
        if state is None:
            raise StackError(f"the stack in {self.data_dir} is not running: start it with `spectralearth stack up`")
        creds = json.loads(self.credentials_path.read_text())
        return {
            "AWS_ACCESS_KEY_ID": creds["s3_access_key"],
            "AWS_SECRET_ACCESS_KEY": creds["s3_secret_key"],
            "AWS_DEFAULT_REGION": _REGION,
            "SPECTRALEARTH_S3_ENDPOINT": state["s3"]["endpoint_url"],
            "SPECTRALEARTH_STACK_BUCKET": f"s3://{state['s3']['bucket']}",
            "DASK_GATEWAY__ADDRESS": state["gateway"]["address"],
            "DASK_GATEWAY__PROXY_ADDRESS": state["gateway"]["proxy_address"],
            "DASK_GATEWAY__AUTH__TYPE": "basic",
            "DASK_GATEWAY__AUTH__KWARGS__USERNAME": creds["gateway_username"],
            "DASK_GATEWAY__AUTH__KWARGS__PASSWORD": creds["gateway_password"],
        }

    def shell_exports(self) -> str:
        """``export NAME=VALUE`` lines (and ``unset`` of conflicting variables) for ``eval``."""
        lines = [f"unset {' '.join(_SHADOWING_ENV)}"]
        lines += [f"export {k}={shlex.quote(v)}" for k, v in self.environment().items()]
        return "\n".join(lines) + "\n"

    def _cluster_processes(self) -> list[psutil.Process]:
        """Schedulers and workers the gateway spawned (their working folder is under ``clusters/``)."""
        return stack_processes(self.data_dir, include_services=False)

    def down(self, *, grace_s: float = 10.0) -> list[str]:
        """Stop what ``up`` started, the gateway's clusters included; return what was stopped.

        Processes are matched by recorded pid and start time; the gateway's
        schedulers and workers by their working folder under the stack folder.
        """
        if not self.data_dir.is_dir():
            return []
        with self._locked():
            return self._down(grace_s=grace_s)

    def _down(self, *, grace_s: float) -> list[str]:
        state = self.read_state()
        stopped: list[str] = []
        records = {r.name: r for r in self._records(state)}
        gateway = records.get("gateway")
        gw_proc = gateway.process() if gateway else None
        spawned: list[psutil.Process] = []
        if gw_proc is not None:
            with contextlib.suppress(psutil.Error):
                spawned = gw_proc.children(recursive=True)
        spawned += [p for p in self._cluster_processes() if p.pid not in {s.pid for s in spawned}]
        if gw_proc is not None:
            # SIGTERM: the gateway stops its clusters (stop_clusters_on_shutdown) before exiting.
            _terminate([gw_proc], grace_s=grace_s)  # ~3 s with a running cluster
            stopped.append(f"gateway (pid {gateway.pid})")
        leftovers = [p for p in spawned if _alive(p)]
        if leftovers:
            _terminate(leftovers, grace_s=3.0)
            stopped.append(f"{len(leftovers)} gateway cluster process(es)")
        weed = records.get("seaweed")
        weed_proc = weed.process() if weed else None
        if weed_proc is not None:
            _stop_group(weed.pid, grace_s=3.0)  # weed ignores SIGTERM for long; its data is synced
            stopped.append(f"seaweed (pid {weed.pid})")
        with contextlib.suppress(FileNotFoundError):
            self.state_path.unlink()
        return stopped


def stack_processes(data_dir: str | os.PathLike, *, include_services: bool = True) -> list[psutil.Process]:
    """Live processes that belong to the stack in ``data_dir``.

    The gateway's schedulers and workers (working folder under ``gateway/clusters``);
    with ``include_services`` also any ``weed`` or ``dask_gateway_server`` process
    whose command line names a path in ``data_dir``.
    """
    root = str(Path(data_dir).absolute())
    clusters = os.path.join(root, "gateway", "clusters")
    found = []
    me = os.getpid()
    for p in psutil.process_iter(["pid", "cmdline", "cwd"]):
        if p.info["pid"] == me:
            continue
        try:
            cwd = p.info.get("cwd") or ""
            cmd = " ".join(p.info.get("cmdline") or [])
            if cwd.startswith(clusters + os.sep) or (
                include_services and root in cmd and ("weed" in cmd or "dask_gateway_server" in cmd)
            ):
                if p.status() != psutil.STATUS_ZOMBIE:
                    found.append(p)
        except psutil.Error:
            continue
    return found


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _terminate(procs: list[psutil.Process], *, grace_s: float) -> None:
    """SIGTERM ``procs``, SIGKILL those still alive after ``grace_s`` (zombies count as stopped)."""
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    if _wait_gone(procs, grace_s):
        return
    for p in procs:
        if _alive(p):
            with contextlib.suppress(psutil.Error):
                p.kill()
    _wait_gone(procs, 5.0)


def _wait_gone(procs: list[psutil.Process], timeout_s: float) -> bool:
    """Wait until no process of ``procs`` runs (reaping our own children); True if they all went."""
    deadline = time.monotonic() + timeout_s
    while True:
        for p in procs:
            with contextlib.suppress(psutil.Error):
                if p.ppid() == os.getpid():
                    p.wait(0)
        if not any(_alive(p) for p in procs):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _stop_group(pgid: int, *, grace_s: float) -> None:
    """SIGTERM a process group, SIGKILL it after ``grace_s`` (zombies count as stopped)."""
    try:
        members = [p for p in psutil.process_iter() if _pgid(p) == pgid]
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    if _wait_gone(members, grace_s):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    _wait_gone(members, 5.0)


def _pgid(p: psutil.Process) -> int | None:
    try:
        return os.getpgid(p.pid)
    except OSError:
        return None


def _tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"
