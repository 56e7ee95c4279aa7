"""Storage helpers against the local filesystem and a real S3 server."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from spectralearth.platform import storage
from spectralearth.platform.seaweed import validate_bucket_name


def test_write_read_exists_roundtrip(storage_root):
    url = storage.join(storage_root.url, "a", "b", "object.bin")
    opts = storage_root.storage_options
    payload = os.urandom(4096) + b"\x00end"
    assert not storage.exists(url, opts)
    storage.atomic_write_bytes(url, payload, opts)
    assert storage.exists(url, opts)
    assert storage.read_bytes(url, opts) == payload
    # the parent "folder" exists too
    assert storage.exists(storage.join(storage_root.url, "a", "b"), opts)


def test_overwrite_replaces_whole_object(storage_root):
    url = storage.join(storage_root.url, "obj")
    storage.atomic_write_bytes(url, b"x" * 10_000, storage_root.storage_options)
    storage.atomic_write_bytes(url, b"short", storage_root.storage_options)
    assert storage.read_bytes(url, storage_root.storage_options) == b"short"


def test_local_atomic_write_leaves_no_temporaries(tmp_path):
    url = str(tmp_path / "d" / "f.json")
    storage.atomic_write_bytes(url, b"{}")
    storage.atomic_write_bytes(url, b"{\"a\": 1}")
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["f.json"]


def test_read_missing_raises(storage_root):
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(storage.join(storage_root.url, "nope"), storage_root.storage_options)


def test_filesystem_protocol(storage_root):
    fs, path = storage.filesystem(storage_root.url, storage_root.storage_options)
    expected = {"local": "file", "s3": "s3"}[storage_root.kind]
    assert expected in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))
    assert storage.protocol_of(storage_root.url) == expected


@pytest.mark.parametrize(
    ("url", "parts", "expected"),
    [
        ("s3://bucket/prefix/", ("a", "/b/", "c.zarr"), "s3://bucket/prefix/a/b/c.zarr"),
        ("/data/root", ("x",), "/data/root/x"),
        ("file:///data/root/", ("", "y"), "file:///data/root/y"),
        ("s3://bucket", (), "s3://bucket"),
    ],
)
def test_join(url, parts, expected):
    assert storage.join(url, *parts) == expected


def test_resolve_storage_options_adds_endpoint_for_s3_only(s3_server, monkeypatch):
    s3 = storage.resolve_storage_options("s3://b/k")
    assert s3["client_kwargs"]["endpoint_url"] == s3_server.endpoint_url
    assert storage.resolve_storage_options("/local/path") == {}
    # the caller's endpoint wins
    mine = storage.resolve_storage_options("s3://b/k", {"client_kwargs": {"endpoint_url": "http://other:1"}})
    assert mine["client_kwargs"]["endpoint_url"] == "http://other:1"
    monkeypatch.delenv("SPECTRALEARTH_S3_ENDPOINT")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://fallback:2")
    assert storage.resolve_storage_options("s3://b/k")["client_kwargs"]["endpoint_url"] == "http://fallback:2"


def test_resolved_options_never_carry_the_secret(s3_server, test_secret, storage_root):
    opts = storage.resolve_storage_options(storage_root.url, storage_root.storage_options)
    assert test_secret not in repr(opts)
    assert test_secret not in repr(storage.redact(opts))
    fs, _ = storage.filesystem(storage_root.url, storage_root.storage_options)
    assert test_secret not in repr(fs)


def test_redact_masks_nested_secrets_and_keeps_endpoint():
    opts = {
        "key": "AKIAEXAMPLE",
        "secret": "s3cr3t",
        "token": "tok",
        "anon": False,
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000", "aws_secret_access_key": "s3cr3t2",
                          "region_name": "us-east-1"},
        "config_kwargs": {"s3": {"session_token": "tok2"}},
        "chain": [{"password": "pw"}, "plain"],
    }
    out = storage.redact(opts)
    text = repr(out)
    for secret in ("AKIAEXAMPLE", "s3cr3t", "tok", "s3cr3t2", "tok2", "pw"):
        assert f"'{secret}'" not in text
    assert out["client_kwargs"]["endpoint_url"] == "http://127.0.0.1:9000"
    assert out["client_kwargs"]["region_name"] == "us-east-1"
    assert out["anon"] is False
    assert out["chain"][1] == "plain"
    assert opts["secret"] == "s3cr3t", "redact must not modify its input"


@pytest.mark.parametrize("name", ["abc", "tiles-2024", "a.b.c", "x" * 63, "0numbers9"])
def test_valid_bucket_names(name):
    assert validate_bucket_name(name) == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("ab", "3 to 63"),
        ("x" * 64, "3 to 63"),
        ("Tiles", "uppercase"),
        ("under_score", "a-z, 0-9"),
        ("-leading", "start and end"),
        ("a..b", "'..'"),
        ("192.168.0.1", "IP address"),
    ],
)
def test_invalid_bucket_names_are_explained(name, why):
    with pytest.raises(ValueError, match="invalid S3 bucket name") as info:
        validate_bucket_name(name)
    assert why in str(info.value)


def test_create_bucket_rejects_bad_name(s3_server):
    with pytest.raises(ValueError, match="invalid S3 bucket name 'Bad_Name'"):
        s3_server.create_bucket("Bad_Name")


def test_server_identity_file_is_private(s3_server, test_secret):
    config = s3_server.data_dir / "s3-identities.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert test_secret not in repr(s3_server)
    assert test_secret not in s3_server.log_path.read_text(errors="replace")


@pytest.mark.s3
def test_wrong_secret_is_refused(s3_server, s3_bucket):
    import s3fs

    fs = s3fs.S3FileSystem(key=s3_server.access_key, secret="wrong-secret", skip_instance_cache=True,
                           client_kwargs={"endpoint_url": s3_server.endpoint_url})
    with pytest.raises(PermissionError):
        fs.pipe_file(f"{s3_bucket}/x", b"1")


def test_https_endpoint_is_verified_against_the_test_ca(s3_server, s3_bucket, s3_http_options, monkeypatch):
    import s3fs

    assert s3_server.endpoint_url.startswith("https://") and os.environ["AWS_CA_BUNDLE"] == str(s3_server.ca_file)
    url = f"s3://{s3_bucket}/tls/object.bin"
    storage.atomic_write_bytes(url, b"over TLS")
    assert storage.read_bytes(url, s3_http_options) == b"over TLS"  # the same object over plain HTTP
    monkeypatch.delenv("AWS_CA_BUNDLE")  # without the CA the certificate is refused
    fs = s3fs.S3FileSystem(skip_instance_cache=True, client_kwargs={"endpoint_url": s3_server.endpoint_url},
                           config_kwargs={"retries": {"max_attempts": 1}})
    with pytest.raises(Exception, match="(?i)certificate"):
        fs.cat_file(f"{s3_bucket}/tls/object.bin")


def _profile_with_credential_process(tmp_path, access_key: str, secret: str, *, region: str) -> tuple[str, str]:
    """An AWS config file whose profile ``stream`` gets its credentials from a credential_process."""
    import json
    import sys

    calls = tmp_path / "calls.log"
    helper = tmp_path / "creds.py"
    helper.write_text(
        "import json, sys\n"
        f"open({str(calls)!r}, 'a').write('x')\n"
        f"print(json.dumps({json.dumps({'Version': 1, 'AccessKeyId': access_key, 'SecretAccessKey': secret})}))\n"
    )
    config = tmp_path / "config"
    config.write_text(f"[profile stream]\nregion = {region}\ncredential_process = {sys.executable} {helper}\n")
    return str(config), str(calls)


@pytest.mark.s3
def test_profile_with_credential_process_is_honoured_by_every_backend(s3_server, s3_bucket, test_secret,
                                                                       tmp_path, monkeypatch):
    from spectralearth.platform.cube import locate_version
    from spectralearth.platform.reader import open_source, read_view
    from spectralearth.platform.samplecube import SampleCube, write_sample_cube
    from spectralearth.platform.stream import PatchStream

    url = f"s3://{s3_bucket}/cube"
    write_sample_cube(url, SampleCube(n_patches=4, patch_px=32, seed=2))  # with the environment's keys
    config, calls = _profile_with_credential_process(tmp_path, s3_server.access_key, test_secret,
                                                     region="eu-central-1")
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(k)
    monkeypatch.setenv("AWS_CONFIG_FILE", config)
    monkeypatch.setenv("AWS_PROFILE", "stream")
    aws = storage.aws_settings()
    assert aws.profile == "stream" and aws.region == "eu-central-1" and aws.ca_bundle == str(s3_server.ca_file)
    assert test_secret not in repr(aws)
    frozen = aws.credential_provider()()
    assert frozen["access_key_id"] == s3_server.access_key and frozen["expires_at"] is not None
    source = open_source(url, backend="obstore")
    assert source.region == "eu-central-1"
    expected = None
    for backend in ("obstore", "fsspec"):
        # no cached s3fs instance (it would hold the environment's keys from before)
        stream = PatchStream(url, every_view=True, shuffle=False, backend=backend,
                             storage_options={"skip_instance_cache": True})
        images = [s["image"] for s in stream]
        assert len(images) == stream.index.n_views
        expected = expected or images
        assert all(np.array_equal(a, b) for a, b in zip(images, expected))
    key = locate_version(url).chunk_key(0)
    assert read_view(source, 0, patch=0, shape=tuple(expected[0].shape), key=key).shape == tuple(expected[0].shape)
    assert len(open(calls).read()) >= 2  # the credential_process ran for obstore and for s3fs
    assert test_secret not in str(stream.state_dict())
