"""Shared fixtures: a real S3 server (SeaweedFS) on loopback, buckets, storage roots, a fault proxy.

* ``s3_server`` (session): one ``weed server -s3`` for the whole run, serving HTTPS with a
  throw-away CA (and plain HTTP beside it). While it runs,
  ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_DEFAULT_REGION``,
  ``SPECTRALEARTH_S3_ENDPOINT`` (the HTTPS endpoint) and ``AWS_CA_BUNDLE``/``CURL_CA_BUNDLE``
  (the CA) point at it, ``AWS_CONFIG_FILE``/``AWS_SHARED_CREDENTIALS_FILE`` at empty files, so library code and spawned CLI processes find it through the environment, as
  in production.
* ``test_secret``: the server's secret, to assert that it never shows up in outputs.
* ``s3_bucket``: a fresh, validly named bucket per test.
* ``storage_root``: parametrized over ``local`` and ``s3`` (HTTPS); any test that takes it
  runs against both backends. Yields a :class:`StorageRoot`.
* ``s3_http_options``: storage options for the same server over plain HTTP.
* ``fault_proxy``: a factory starting a :class:`FaultProxy` in front of the server (HTTPS,
  behind a relay that delivers responses in 1,400-byte TCP segments).
"""

from __future__ import annotations

import os
import secrets
import shutil
import uuid
from dataclasses import dataclass, field

import pytest

from spectralearth.platform.faultproxy import FaultProxy
from spectralearth.platform.seaweed import SeaweedServer

TEST_ACCESS_KEY = "spectralearth-test"
_ENV_KEYS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "SPECTRALEARTH_S3_ENDPOINT",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)


def pytest_collection_modifyitems(config, items):
    """Every test that needs the S3 server carries the ``s3`` marker (``-m "not s3"`` skips them)."""
    needs = {"s3_server", "s3_bucket", "fault_proxy"}
    for item in items:
        if needs.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.s3)


@dataclass(frozen=True)
class StorageRoot:
    """A writable place for one test, on one backend."""

    url: str
    """Root URL: a local folder path, or ``s3://bucket/prefix``."""
    storage_options: dict = field(default_factory=dict)
    """fsspec storage options for ``url`` (no secrets: those come from the environment)."""
    kind: str = "local"
    """``"local"`` or ``"s3"``."""


@pytest.fixture(scope="session")
def test_secret() -> str:
    """The S3 secret of the test server: recognisable, random per run."""
    return "TEST-SECRET-" + secrets.token_hex(12)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory, test_secret):
    """One SeaweedFS S3 server for the session, advertised through the environment."""
    saved = {k: os.environ.get(k) for k in _ENV_KEYS}
    server = SeaweedServer(
        tmp_path_factory.mktemp("seaweedfs"), access_key=TEST_ACCESS_KEY, secret_key=test_secret, stop_grace_s=1.0,
        die_with_parent=True, tls=True,
    )
    server.start()
    config_dir = tmp_path_factory.mktemp("aws-config")  # empty: no developer profile leaks into a test
    for k in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(k, None)
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": TEST_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": test_secret,
            "AWS_DEFAULT_REGION": "us-east-1",
            "SPECTRALEARTH_S3_ENDPOINT": server.endpoint_url,
            "AWS_CA_BUNDLE": str(server.ca_file),
            "CURL_CA_BUNDLE": str(server.ca_file),  # GDAL/curl readers of the same server
            "AWS_CONFIG_FILE": str(config_dir / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(config_dir / "credentials"),
        }
    )
    try:
        yield server
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_server):
    """A fresh bucket for one test, deleted with its objects afterwards (the server's disk holds one test's data)."""
    name = s3_server.create_bucket(f"test-{uuid.uuid4().hex[:16]}")
    yield name
    s3_server.delete_bucket(name)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def storage_root(request, tmp_path) -> StorageRoot:
    """A storage root on the local filesystem and on S3 (the test runs once for each)."""
    if request.param == "local":
        return StorageRoot(url=str(tmp_path / "root"), storage_options={}, kind="local")
    bucket = request.getfixturevalue("s3_bucket")
    return StorageRoot(url=f"s3://{bucket}/{uuid.uuid4().hex[:8]}", storage_options={}, kind="s3")


@pytest.fixture
def s3_http_options(s3_server) -> dict:
    """Storage options for the test server over plain HTTP (the environment's endpoint is HTTPS)."""
    return {"client_kwargs": {"endpoint_url": s3_server.http_endpoint_url}}


@pytest.fixture
def fault_proxy(s3_server):
    """Factory: ``fault_proxy(fail_rate=..., kinds=..., seed=...) -> (proxy, storage_options)``.

    The proxy serves HTTPS (the server's certificate, so ``AWS_CA_BUNDLE`` verifies it)
    behind a relay that delivers responses in ``segment_bytes`` TCP segments, and talks
    HTTPS to the server; ``tls=False`` gives plain HTTP on both sides, ``segment_bytes=None``
    no relay. The storage options point s3fs at it (credentials still come from the
    environment) and ask botocore for up to 10 attempts in ``standard`` retry mode.
    Every proxy started is stopped after the test.
    """
    import ssl

    from spectralearth.platform.faultproxy import SEGMENT

    proxies: list[FaultProxy] = []

    def start(*, fail_rate: float = 0.0, kinds=("503", "slowdown", "drop", "latency"), seed: int = 0,
              latency_s: float = 0.05, max_attempts: int = 10, tls: bool = True, segment_bytes: int | None = SEGMENT):
        server_ssl = None
        if tls:
            server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            server_ssl.load_cert_chain(s3_server.certificates.cert_file, s3_server.certificates.key_file)
        upstream = s3_server.endpoint_url if tls else s3_server.http_endpoint_url
        proxy = FaultProxy(upstream, fail_rate=fail_rate, kinds=tuple(kinds), seed=seed, latency_s=latency_s,
                           server_ssl=server_ssl, segment_bytes=segment_bytes).start()
        proxies.append(proxy)
        options = {
            "client_kwargs": {"endpoint_url": proxy.endpoint_url},
            "config_kwargs": {"retries": {"max_attempts": max_attempts, "mode": "standard"}},
        }
        return proxy, options

    yield start
    for proxy in proxies:
        proxy.stop()


@pytest.fixture(scope="session")
def pixel_archive(tmp_path_factory) -> str:
    """A local synthetic archive with pixels, made once per session and shared by the pipeline tests.

    10 tiles of 240 px (seed 4), 30 % delivered as ZIPs with stored members (so kerchunk can
    reference them in place).
    """
    from spectralearth.catalog.synth import SynthConfig, synthesize_archive

    root = tmp_path_factory.mktemp("pixel-archive")
    synthesize_archive(str(root / "archive"), SynthConfig(tiles=10, tile_size=240, seed=4, zip_fraction=0.3, zip_deflate=False))
    yield str(root / "archive")
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def patch_catalog(tmp_path_factory):
    """A catalog with published patch items, shared by the publish, API and browser tests.

    A footprint-only tile catalog of 100 synthetic tiles (seed 5) and, beside it, the items
    and thumbnails of a sample cube of 90 patches (~160 views, quick pixels, nodata
    corners on every third view) whose views name those tiles. It stores every 5th of
    SpectralEarth's 202 bands (41 bands, 418-2445 nm), which keeps writing it to seconds;
    publishing reads the bands (and picks those nearest 640/550/460 nm) from the cube either way.
    """
    from types import SimpleNamespace

    from spectralearth.catalog import index_archive
    from spectralearth.catalog.patches import publish_patches
    from spectralearth.catalog.synth import SynthConfig, synthesize_archive
    from spectralearth.platform.cluster import ClusterSpec
    from spectralearth.platform.samplecube import SampleCube, write_sample_cube

    root = tmp_path_factory.mktemp("patch-catalog")
    synthesize_archive(str(root / "archive"), SynthConfig(tiles=100, footprints_only=True, seed=5))
    catalog = str(root / "catalog")
    index_archive(str(root / "archive"), catalog_url=catalog, cluster=ClusterSpec(kind="sync"))
    cube = str(root / "cube.zarr")
    from spectralearth.catalog.patches import cube_version
    from spectralearth.platform.samplecube import SPECTRALEARTH_BANDS

    cfg = SampleCube(n_patches=90, quick=True, seed=3, bands=SPECTRALEARTH_BANDS[::5])
    write_sample_cube(cube, cfg)  # commits version v1 of a new versioned cube
    version = cube_version(cube)
    assert version == "v1"
    report = publish_patches(cube, catalog, file_rows=16)  # several part files, as at full scale
    yield SimpleNamespace(root=root, catalog=catalog, cube=cube, version=version, cfg=cfg, report=report)
    shutil.rmtree(root, ignore_errors=True)
