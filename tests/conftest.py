"""Shared fixtures: a real S3 server (SeaweedFS) on loopback, buckets, storage roots, a fault proxy.

* ``s3_server`` (session): one ``weed server -s3`` for the whole run. While it runs,
  ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_DEFAULT_REGION`` and
  ``SPECTRALEARTH_S3_ENDPOINT`` point at it, so library code and spawned CLI
  processes find it through the environment, as in production.
* ``test_secret``: the server's secret, to assert that it never shows up in outputs.
* ``s3_bucket``: a fresh, validly named bucket per test.
* ``storage_root``: parametrized over ``local`` and ``s3``; any test that takes it runs
  against both backends. Yields a :class:`StorageRoot`.
* ``fault_proxy``: a factory starting a :class:`FaultProxy` in front of the server.
"""

from __future__ import annotations

import os
import secrets
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
        die_with_parent=True,
    )
    server.start()
    for k in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(k, None)
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": TEST_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": test_secret,
            "AWS_DEFAULT_REGION": "us-east-1",
            "SPECTRALEARTH_S3_ENDPOINT": server.endpoint_url,
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
def s3_bucket(s3_server) -> str:
    """A fresh bucket for one test."""
    return s3_server.create_bucket(f"test-{uuid.uuid4().hex[:16]}")


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def storage_root(request, tmp_path) -> StorageRoot:
    """A storage root on the local filesystem and on S3 (the test runs once for each)."""
    if request.param == "local":
        return StorageRoot(url=str(tmp_path / "root"), storage_options={}, kind="local")
    bucket = request.getfixturevalue("s3_bucket")
    return StorageRoot(url=f"s3://{bucket}/{uuid.uuid4().hex[:8]}", storage_options={}, kind="s3")


@pytest.fixture
def fault_proxy(s3_server):
    """Factory: ``fault_proxy(fail_rate=..., kinds=..., seed=...) -> (proxy, storage_options)``.

    The storage options point s3fs at the proxy (credentials still come from the
    environment) and ask botocore for up to 10 attempts in ``standard`` retry mode.
    Every proxy started is stopped after the test.
    """
    proxies: list[FaultProxy] = []

    def start(*, fail_rate: float = 0.0, kinds=("503", "slowdown", "drop", "latency"), seed: int = 0,
              latency_s: float = 0.05, max_attempts: int = 10):
        proxy = FaultProxy(s3_server.endpoint_url, fail_rate=fail_rate, kinds=tuple(kinds), seed=seed,
                           latency_s=latency_s).start()
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

    10 tiles of 224 px (seed 4), 30 % delivered as ZIPs with stored members (so kerchunk can
    reference them in place).
    """
    from spectralearth.catalog.synth import SynthConfig, synthesize_archive

    root = tmp_path_factory.mktemp("pixel-archive")
    synthesize_archive(str(root / "archive"), SynthConfig(tiles=10, tile_size=224, seed=4, zip_fraction=0.3, zip_deflate=False))
    return str(root / "archive")


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
    version = "20260101T000000-sample01"
    from spectralearth.platform.samplecube import SPECTRALEARTH_BANDS

    cfg = SampleCube(n_patches=90, quick=True, seed=3, bands=SPECTRALEARTH_BANDS[::5])
    write_sample_cube(cube, cfg, attrs={"spectralearth:version": version})
    report = publish_patches(cube, catalog)
    return SimpleNamespace(root=root, catalog=catalog, cube=cube, version=version, cfg=cfg, report=report)
