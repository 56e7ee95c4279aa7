"""The fault-injecting S3 proxy: transparent at rate 0, survivable with retries, faults observable."""

from __future__ import annotations

import hashlib
import json
import http.client
import os
from urllib.parse import urlsplit

import pytest
import s3fs

from spectralearth.platform import storage
from spectralearth.platform.faultproxy import FaultProxy

pytestmark = pytest.mark.s3


def _conn(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)


def test_transparent_at_zero_fail_rate(fault_proxy, s3_bucket):
    proxy, opts = fault_proxy(fail_rate=0.0)
    root = f"s3://{s3_bucket}/clean"
    blobs = {f"{root}/obj-{i}.bin": os.urandom(1000 * (i + 1)) for i in range(5)}
    blobs[f"{root}/big.bin"] = os.urandom(3 * 1024 * 1024)  # larger than one socket buffer
    blobs[f"{root}/empty.bin"] = b""
    for url, data in blobs.items():
        storage.atomic_write_bytes(url, data, opts)
    for url, data in blobs.items():
        assert storage.exists(url, opts)
        assert storage.read_bytes(url, opts) == data
    fs, path = storage.filesystem(root, opts)
    assert sorted(fs.ls(path, detail=False)) == sorted(u.removeprefix("s3://") for u in blobs)
    stats = proxy.stats()
    assert stats["faults"] == 0
    assert stats["requests"] == stats["forwarded"] >= 2 * len(blobs)


def test_ranged_reads_and_multipart_through_proxy(fault_proxy, s3_bucket):
    _, opts = fault_proxy(fail_rate=0.0)
    fs = s3fs.S3FileSystem(**storage.resolve_storage_options("s3://x", opts))
    data = os.urandom(11 * 1024 * 1024)
    path = f"{s3_bucket}/multi/part.bin"
    with fs.open(path, "wb", block_size=5 * 1024 * 1024) as f:  # three parts
        f.write(data)
    assert fs.cat_file(path, start=1000, end=2000) == data[1000:2000]
    assert hashlib.sha256(fs.cat_file(path)).digest() == hashlib.sha256(data).digest()


def test_s3fs_survives_throttling_with_retries(fault_proxy, s3_bucket):
    proxy, opts = fault_proxy(fail_rate=0.2, kinds=("503", "slowdown"), seed=1)
    fs, root = storage.filesystem(f"s3://{s3_bucket}/flaky", opts)
    blobs = {f"{root}/obj-{i:03d}": os.urandom(2048 + 97 * i) for i in range(50)}
    # batched like the pipelines do it: s3fs runs the requests concurrently, so the
    # retry back-offs overlap
    fs.pipe(blobs)
    assert fs.cat(list(blobs)) == blobs
    # and one by one through the storage helpers
    for path in list(blobs)[:5]:
        url = f"s3://{path}"
        storage.atomic_write_bytes(url, blobs[path][::-1], opts)
        assert storage.read_bytes(url, opts) == blobs[path][::-1]
    stats = proxy.stats()
    assert stats["faults"] > 0
    assert stats["by_kind"]["503"] > 0 and stats["by_kind"]["slowdown"] > 0
    assert stats["requests"] == stats["forwarded"] + stats["faults"]


def test_throttling_without_retries_surfaces_an_error(fault_proxy, s3_bucket):
    # s3fs itself retries only throttling errors; an InternalError is botocore's to retry
    proxy, opts = fault_proxy(fail_rate=1.0, kinds=("500",), max_attempts=1)
    with pytest.raises(OSError):
        storage.atomic_write_bytes(f"s3://{s3_bucket}/never", b"data", opts)
    assert proxy.stats()["by_kind"]["500"] == proxy.stats()["requests"] >= 1


def test_error_bodies_are_s3_xml(s3_server):
    with FaultProxy(s3_server.endpoint_url, fail_rate=1.0, kinds=("slowdown",)) as proxy:
        conn = _conn(proxy.endpoint_url)
        conn.request("GET", "/some-bucket/key?x=1")
        resp = conn.getresponse()
        body = resp.read().decode()
        assert resp.status == 503
        assert "<Code>SlowDown</Code>" in body and "<Resource>/some-bucket/key</Resource>" in body
        # the connection stays usable after an injected error
        proxy.set_fail_rate(0.0)
        conn.request("GET", "/")
        resp = conn.getresponse()
        resp.read()
        assert resp.status in (200, 403)  # unsigned request: upstream answers itself
        conn.close()
    with FaultProxy(s3_server.endpoint_url, fail_rate=1.0, kinds=("500",)) as proxy:
        conn = _conn(proxy.endpoint_url)
        conn.request("PUT", "/b/k", body=b"x" * 5000)
        resp = conn.getresponse()
        assert resp.status == 500 and b"<Code>InternalError</Code>" in resp.read()
        conn.close()


def test_drop_closes_connection_without_response(s3_server):
    with FaultProxy(s3_server.endpoint_url, fail_rate=1.0, kinds=("drop",)) as proxy:
        conn = _conn(proxy.endpoint_url)
        conn.request("GET", "/")
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            conn.getresponse()
        conn.close()
        assert proxy.stats()["by_kind"]["drop"] == 1
        assert proxy.stats()["forwarded"] == 0


def test_truncate_cuts_the_body(s3_server, s3_bucket, fault_proxy):
    _, opts = fault_proxy(fail_rate=0.0)
    data = os.urandom(200_000)
    storage.atomic_write_bytes(f"s3://{s3_bucket}/t.bin", data, opts)
    # a signed GET URL, then replayed through a truncating proxy on the same address
    with FaultProxy(s3_server.endpoint_url, fail_rate=1.0, kinds=("truncate",)) as proxy:
        fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": proxy.endpoint_url}, skip_instance_cache=True)
        signed = fs.sign(f"{s3_bucket}/t.bin", expiration=60)
        parts = urlsplit(signed)
        conn = _conn(proxy.endpoint_url)
        conn.request("GET", f"{parts.path}?{parts.query}")
        resp = conn.getresponse()
        assert resp.status == 200
        assert int(resp.getheader("Content-Length")) == len(data)
        with pytest.raises(http.client.IncompleteRead) as info:
            resp.read()
        assert 0 < len(info.value.partial) < len(data)
        assert info.value.partial == data[: len(info.value.partial)]
        conn.close()


def test_latency_is_forwarded_unchanged(s3_server, s3_bucket, fault_proxy):
    _, opts = fault_proxy(fail_rate=0.0)
    storage.atomic_write_bytes(f"s3://{s3_bucket}/lat.txt", b"slow but whole", opts)
    with FaultProxy(s3_server.endpoint_url, fail_rate=1.0, kinds=("latency",), latency_s=0.01) as proxy:
        fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": proxy.endpoint_url}, skip_instance_cache=True)
        assert fs.cat_file(f"{s3_bucket}/lat.txt") == b"slow but whole"
        stats = proxy.stats()
        assert stats["by_kind"]["latency"] == stats["requests"] == stats["forwarded"] >= 1


def test_drops_and_latency_mixed_with_retries(fault_proxy, s3_bucket):
    proxy, opts = fault_proxy(fail_rate=0.3, kinds=("drop", "latency", "500"), seed=3, latency_s=0.01)
    root = f"s3://{s3_bucket}/mixed"
    fs, root = storage.filesystem(f"s3://{s3_bucket}/mixed", opts)
    blobs = {f"{root}/o{i}": os.urandom(1500) for i in range(20)}
    fs.pipe(blobs)
    assert fs.cat(list(blobs)) == blobs
    assert proxy.stats()["by_kind"]["drop"] > 0


def test_rejects_bad_parameters():
    with pytest.raises(ValueError, match="fail_rate"):
        FaultProxy("http://127.0.0.1:1", fail_rate=1.5)
    with pytest.raises(ValueError, match="unknown fault kinds"):
        FaultProxy("http://127.0.0.1:1", kinds=("meteor",))
    with pytest.raises(ValueError, match="upstream_url"):
        FaultProxy("127.0.0.1:1")


@pytest.mark.slow
def test_index_over_https_through_the_segmenting_faulty_proxy(fault_proxy, s3_bucket, test_secret):
    """The index job reads a whole archive over HTTPS in 1,400-byte segments with faults injected."""
    from spectralearth.catalog import index_archive, read_item_dicts
    from spectralearth.catalog.synth import SynthConfig, synthesize_archive
    from spectralearth.platform.cluster import ClusterSpec

    archive, catalog = f"s3://{s3_bucket}/archive", f"s3://{s3_bucket}/catalog"
    synth = synthesize_archive(archive, SynthConfig(tiles=6, tile_size=128, seed=9, zip_fraction=0.3,
                                                    zip_deflate=False))
    proxy, opts = fault_proxy(fail_rate=0.05, kinds=("503", "slowdown", "drop"), seed=4)
    assert proxy.endpoint_url.startswith("https://")
    index_archive(archive, catalog_url=catalog, storage_options=opts, cluster=ClusterSpec(kind="sync"))
    items = read_item_dicts(catalog, storage_options=opts)
    assert {it["id"] for it in items} >= set(synth.products) - set(synth.superseded)
    assert proxy.stats()["faults"] > 0 and proxy.relay.segments > 1000
    assert all(test_secret not in json.dumps(it) for it in items)
