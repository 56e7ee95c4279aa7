"""Which storage failures count as transient: real exceptions from fsspec's HTTP filesystem and botocore."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import fsspec
import pytest

from spectralearth.catalog.errors import MetadataError, TransientError, is_transient


class _Handler(BaseHTTPRequestHandler):
    """``/busy`` answers 503, ``/throttled`` 429, everything else 404."""

    def _answer(self, body: bool) -> None:
        status = {"/busy": 503, "/throttled": 429}.get(self.path, 404)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self):  # noqa: N802
        self._answer(False)

    def do_GET(self):  # noqa: N802
        self._answer(True)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def http_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _error_of(fn) -> BaseException:
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - the exception is what the test looks at
        return exc
    raise AssertionError("no error raised")


@pytest.mark.parametrize("path, transient", [("/busy", True), ("/throttled", True), ("/gone", False)])
def test_http_size_lookup_status_decides(http_url, path, transient):
    fs = fsspec.filesystem("http", skip_instance_cache=True)
    exc = _error_of(lambda: fs.size(http_url + path))
    # fsspec reports every failed size lookup as FileNotFoundError; the status underneath decides
    assert isinstance(exc, FileNotFoundError)
    assert is_transient(exc) is transient


def test_http_range_read_status_decides(http_url):
    fs = fsspec.filesystem("http", skip_instance_cache=True)
    assert is_transient(_error_of(lambda: fs.cat_file(http_url + "/busy", start=0, end=10)))
    assert not is_transient(_error_of(lambda: fs.cat_file(http_url + "/gone", start=0, end=10)))


def test_botocore_codes_and_plain_errors():
    from botocore.exceptions import ClientError, EndpointConnectionError

    def client_error(status: int, code: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")

    assert is_transient(client_error(503, "SlowDown"))
    assert is_transient(client_error(500, "InternalError"))
    assert not is_transient(client_error(403, "AccessDenied"))
    assert not is_transient(client_error(404, "NoSuchKey"))
    assert is_transient(EndpointConnectionError(endpoint_url="https://127.0.0.1:1"))
    assert is_transient(TransientError("ENMAP01-X", "storage failed", key="METADATA.XML"))
    assert not is_transient(MetadataError("ENMAP01-X", "bad XML", key="METADATA.XML"))
    try:
        raise OSError("wrapped") from ConnectionResetError("reset")
    except OSError as exc:
        assert is_transient(exc)


def test_https_trusts_a_ca_bundle_named_after_aiohttp_was_imported(tmp_path, monkeypatch):
    """aiohttp fixes its TLS trust at import; the platform's HTTP reads follow SSL_CERT_FILE as it is now."""
    import ssl

    import aiohttp  # noqa: F401 - imported before the CA exists, as in a long-running process
    import trustme

    from spectralearth.platform import storage

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{server.server_address[1]}/busy"
    try:
        for k in storage.CA_ENV:
            monkeypatch.delenv(k, raising=False)
        fs, path = storage.filesystem(url)
        untrusted = _error_of(lambda: fs.size(path))
        assert "CERTIFICATE_VERIFY_FAILED" in repr(untrusted.__cause__) and not is_transient(untrusted)
        ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
        fs, path = storage.filesystem(url)
        trusted = _error_of(lambda: fs.size(path))  # the handshake now succeeds: the server's 503 comes back
        assert is_transient(trusted), repr(trusted.__cause__)
    finally:
        server.shutdown()
        server.server_close()
