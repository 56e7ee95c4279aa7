"""PatchStream end to end: real cubes on local disk and SeaweedFS S3, real DataLoader workers."""

from __future__ import annotations

import os
import shutil
import uuid

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from spectralearth.platform.cube import locate_version, open_index
from spectralearth.platform.cube import open_cube as _open_cube
from spectralearth.platform.normalize import BandNormalize
from spectralearth.platform.reader import ChunkCorruptError, ChunkMissingError
from spectralearth.platform.samplecube import SampleCube, write_sample_cube
from spectralearth.platform.storage import filesystem, join
from spectralearth.platform.stream import PatchStream

# small patches keep cube writing fast; the stream does not care about the patch size
CUBE = SampleCube(n_patches=23, patch_px=32, multi_date_fraction=0.5, max_views=4, seed=11)
BATCH = 3


class _CubeArrays:
    """A version's arrays as stored: index arrays through zarr, reflectance as int16."""

    def __init__(self, url, storage_options=None):
        self.index = open_index(url, storage_options=storage_options)
        self.reflectance = _open_cube(url, storage_options=storage_options, decode=False)["reflectance"].data

    def __getitem__(self, name):
        return self.reflectance if name == "reflectance" else self.index[name]


def open_cube(url, storage_options=None):
    return _CubeArrays(url, storage_options)


def view_chunk_key(view, url, options=None):
    return locate_version(url, storage_options=options).chunk_key(view)


@pytest.fixture(scope="module")
def local_cube(tmp_path_factory) -> str:
    url = str(tmp_path_factory.mktemp("stream") / "cube")
    write_sample_cube(url, CUBE)
    yield url
    shutil.rmtree(os.path.dirname(url), ignore_errors=True)  # module data goes once the module is done (CI disk)


def _keys(batch: dict) -> list[tuple]:
    views = batch["view"].reshape(batch["patch"].shape[0], -1).tolist()
    return [(p, c, tuple(v)) for p, c, v in zip(batch["position"].tolist(), batch["patch"].tolist(), views)]


def _run(url, *, options=None, workers=0, ctx=None, limit=None, **kw) -> list[tuple]:
    stream = PatchStream(url, storage_options=options, batch_size=BATCH, **kw)
    loader = DataLoader(stream, batch_size=None, num_workers=workers, multiprocessing_context=ctx)
    out: list[tuple] = []
    for i, batch in enumerate(loader):
        if limit is not None and i >= limit:
            break
        out.extend(_keys(batch))
    return out


def test_exactly_once_over_two_ranks_times_three_workers(storage_root):
    url = join(storage_root.url, "cube")
    write_sample_cube(url, CUBE, storage_options=storage_root.storage_options)
    group = open_cube(url, storage_options=storage_root.storage_options)
    n_views = group["reflectance"].shape[0]
    per_rank = [
        _run(url, options=storage_root.storage_options, workers=3, rank=r, world_size=2, every_view=True,
             policy="drop" if storage_root.kind == "s3" else "pad")
        for r in range(2)
    ]
    assert len(per_rank[0]) == len(per_rank[1])  # equal counts: DDP never waits on a missing batch
    views = [v[0] for rank in per_rank for _, _, v in rank]
    if storage_root.kind == "s3":  # drop policy: the incomplete last round is left out
        assert len(views) == n_views - n_views % 2 and len(set(views)) == len(views)
    else:  # pad policy: every view, the padding repeats the start of the epoch order
        assert set(views) == set(range(n_views)) and len(views) == n_views + n_views % 2
    # the pixels are the cube's pixels
    stream = PatchStream(url, storage_options=storage_root.storage_options, every_view=True, shuffle=False)
    for sample in list(stream)[:3]:
        expected = group["reflectance"][int(sample["view"])]
        assert np.array_equal(sample["image"].numpy(), expected)
        assert int(sample["patch"]) == int(group["view_patch"][int(sample["view"])])


def test_pair_mode_views_of_the_same_patch(local_cube):
    group = open_cube(local_cube)
    start, count = group["patch_view_start"][:], group["patch_view_count"][:]
    assert (count == 1).any() and (count >= 2).any()
    stream = PatchStream(local_cube, mode="pair", seed=5)
    samples = list(stream)
    assert sorted(int(s["patch"]) for s in samples) == list(range(CUBE.n_patches))
    for s in samples:
        p = int(s["patch"])
        a, b = s["view"].tolist()
        assert start[p] <= a < start[p] + count[p] and start[p] <= b < start[p] + count[p]
        assert (a != b) if count[p] >= 2 else (a == b)
        assert s["image"].shape == (2, 202, 32, 32)
        assert np.array_equal(s["image"][1].numpy(), group["reflectance"][b])
        assert s["time"].tolist() == group["view_time"][[a, b]].tolist()


def test_band_subset_by_index_and_wavelength(local_cube):
    group = open_cube(local_cube)
    wl = group["wavelength"][:]
    by_range = next(iter(PatchStream(local_cube, bands=[(400.0, 700.0), (2000.0, 2100.0)], shuffle=False)))
    keep = np.flatnonzero(((wl >= 400) & (wl <= 700)) | ((wl >= 2000) & (wl <= 2100)))
    view = int(by_range["view"])
    assert np.array_equal(by_range["image"].numpy(), group["reflectance"][view][keep])
    by_index = next(iter(PatchStream(local_cube, bands=[5, 0, 201], shuffle=False)))
    assert np.array_equal(by_index["image"].numpy(), group["reflectance"][int(by_index["view"])][[5, 0, 201]])
    with pytest.raises(ValueError, match="no band centre"):
        PatchStream(local_cube, bands=[(100.0, 200.0)]).band_index


@pytest.mark.parametrize("world_size, rank", [(1, 0), (2, 1)])
def test_resume_mid_epoch_gives_the_same_remaining_sequence(local_cube, world_size, rank):
    kw = dict(mode="pair", seed=9, rank=rank, world_size=world_size)
    full = _run(local_cube, workers=2, **kw)
    stream = PatchStream(local_cube, batch_size=BATCH, **kw)
    stream.set_epoch(0)
    loader = stream.loader(num_workers=2)
    before = []
    for i, batch in enumerate(loader):
        before.extend(_keys(batch))
        if i == 2:
            break
    state = loader.state_dict()
    fresh = PatchStream(local_cube, batch_size=BATCH, **kw)
    fresh.load_state_dict(state)
    fresh.set_epoch(0)  # the usual epoch loop keeps the restored position
    after = [k for batch in fresh.loader(num_workers=2) for k in _keys(batch)]
    assert before + after == full
    # the next epoch starts from its beginning with a new order
    fresh.set_epoch(1)
    assert len(list(fresh)) == len(full) // BATCH + bool(len(full) % BATCH)
    assert _run(local_cube, workers=0, **kw) == full


def test_world_size_change_keeps_the_global_order(local_cube):
    kw = dict(mode="single", seed=4, policy="drop")
    reference = _run(local_cube, rank=0, world_size=1, **kw)  # the global order itself
    assert [p for p, _, _ in reference] == list(range(CUBE.n_patches))
    # two ranks consume two batches each, then the job restarts on three ranks
    states = []
    for r in range(2):
        stream = PatchStream(local_cube, batch_size=BATCH, rank=r, world_size=2, **kw)
        loader = stream.loader(num_workers=1)
        consumed = []
        for i, batch in enumerate(loader):
            consumed.extend(_keys(batch))
            if i == 1:
                break
        assert consumed == reference[r::2][: 2 * BATCH]
        states.append(loader.state_dict())
    assert states[0] == states[1] and states[0]["consumed"] == 4 * BATCH
    rest = []
    for r in range(3):
        stream = PatchStream(local_cube, batch_size=BATCH, rank=r, world_size=3, **kw)
        stream.load_state_dict(states[0])
        got = [k for batch in stream.loader(num_workers=2) for k in _keys(batch)]
        remaining = reference[4 * BATCH:]
        assert got == remaining[: len(remaining) - len(remaining) % 3][r::3]
        rest.extend(got)
    assert sorted(rest) == reference[4 * BATCH: 4 * BATCH + len(rest)]


@pytest.mark.parametrize("ctx", ["fork", "spawn", "forkserver"])
def test_multiprocessing_contexts_yield_the_same_samples(local_cube, ctx):
    stream = PatchStream(local_cube, mode="pair", seed=2, batch_size=BATCH)
    len(stream)  # the parent has read the index (zarr, fsspec) before the workers start
    loader = DataLoader(stream, batch_size=None, num_workers=2, multiprocessing_context=ctx)
    got = [k for batch in loader for k in _keys(batch)]
    assert got == _run(local_cube, mode="pair", seed=2)



def test_batches_the_consumer_holds_are_never_overwritten(local_cube):
    group = open_cube(local_cube)
    stream = PatchStream(local_cube, every_view=True, batch_size=BATCH, io_threads=2, prefetch_bytes=1)
    held = list(stream)  # buffers of dropped batches are reused; these stay referenced
    kept_views = [held[0]["image"][0].clone(), held[-1]["image"][-1].clone()]
    tail = [b["image"][0] for b in stream]  # keep only a view of each batch's first sample
    for batch in held:
        for image, view in zip(batch["image"], batch["view"].tolist()):
            assert np.array_equal(image.numpy(), group["reflectance"][view])
    assert torch.equal(held[0]["image"][0], kept_views[0]) and torch.equal(held[-1]["image"][-1], kept_views[1])
    assert all(torch.equal(t, h["image"][0]) for t, h in zip(tail, held))

def _break_chunk(url, options, view, data: bytes | None) -> str:
    fs, root = filesystem(url, options)
    key = view_chunk_key(view, url, options)
    path = join(root, key)
    if data is None:
        fs.rm(path)
    else:
        fs.pipe_file(path, data)
    return key


def test_missing_and_corrupt_chunks_raise_naming_patch_view_key(storage_root):
    url = join(storage_root.url, "cube")
    opts = storage_root.storage_options
    write_sample_cube(url, SampleCube(n_patches=4, patch_px=32, seed=3), storage_options=opts)
    group = open_cube(url, storage_options=opts)
    patch_of = group["view_patch"][:]
    fs, root = filesystem(url, opts)
    good = fs.cat_file(join(root, view_chunk_key(1, url, opts)))

    key = _break_chunk(url, opts, 2, None)
    with pytest.raises(ChunkMissingError) as err:
        list(PatchStream(url, storage_options=opts, every_view=True, shuffle=False))
    msg = str(err.value)
    assert f"patch {patch_of[2]}" in msg and "view 2" in msg and key in msg and "missing" in msg
    assert (err.value.patch, err.value.view, err.value.key) == (patch_of[2], 2, key)
    # through DataLoader workers the error keeps its type and names the key
    with pytest.raises(ChunkMissingError, match=key.replace("/", "/")):
        list(DataLoader(PatchStream(url, storage_options=opts, every_view=True), batch_size=None, num_workers=1))

    _break_chunk(url, opts, 2, good)  # a valid frame of another view: decodes, so it is not corrupt
    key = _break_chunk(url, opts, 0, good[: len(good) // 2])
    with pytest.raises(ChunkCorruptError, match=rf"patch {patch_of[0]}, view 0: .*{key}.* is corrupt"):
        list(PatchStream(url, storage_options=opts, every_view=True, shuffle=False))
    key = _break_chunk(url, opts, 0, b"garbage" * 100)
    with pytest.raises(ChunkCorruptError, match=rf"view 0: .*{key}.* is corrupt"):
        list(PatchStream(url, storage_options=opts, every_view=True, shuffle=False))


@pytest.mark.parametrize("backend", ["obstore", "fsspec"])
def test_faulty_s3_loses_and_duplicates_nothing(s3_server, fault_proxy, tmp_path, backend):
    bucket = s3_server.create_bucket(f"test-{uuid.uuid4().hex[:16]}")
    url = f"s3://{bucket}/cube"
    cfg = SampleCube(n_patches=12, patch_px=32, seed=5)
    write_sample_cube(url, cfg)
    local = str(tmp_path / "cube")
    write_sample_cube(local, cfg)  # the same pixels, to compare with
    proxy, options = fault_proxy(fail_rate=0.05, seed=1)
    stream = PatchStream(url, storage_options=options, every_view=True, backend=backend, batch_size=2, seed=1)
    got = {}
    # forkserver: this test process may already run obstore, whose runtime does not survive a fork
    for batch in DataLoader(stream, batch_size=None, num_workers=2, multiprocessing_context="forkserver"):
        for view, image in zip(batch["view"].tolist(), batch["image"]):
            assert view not in got
            got[view] = image
    n_views = stream.index.n_views
    assert sorted(got) == list(range(n_views))
    expected = {int(s["view"]): s["image"] for s in PatchStream(local, every_view=True)}
    assert all(torch.equal(got[v], expected[v]) for v in got)
    assert proxy.stats()["faults"] > 0


def test_normalizer_clips_then_standardises(local_cube):
    stream = PatchStream(local_cube, bands=[0, 100, 200])
    norm = stream.normalizer()
    group = open_cube(local_cube)
    mean = group["band_mean"][[0, 100, 200]]
    std = group["band_std"][[0, 100, 200]]
    x = torch.tensor([-32768, -5, 0, 5000, 10000, 12000], dtype=torch.int16).view(1, 1, 6).expand(3, 2, 6)
    y = norm(x.unsqueeze(0))
    assert y.dtype == torch.float32 and y.shape == (1, 3, 2, 6)
    clipped = np.array([0, 0, 0, 5000, 10000, 10000], np.float32)
    expected = (clipped[None, None, :] - mean[:, None, None]) / std[:, None, None]
    np.testing.assert_allclose(y[0].numpy(), np.broadcast_to(expected, (3, 2, 6)), rtol=1e-5, atol=1e-5)
    assert np.array_equal(BandNormalize.from_cube(local_cube, bands=[0, 100, 200]).mean.flatten().numpy(), mean)
    with pytest.raises(ValueError, match="expected"):
        norm(torch.zeros(4, 8, 8, dtype=torch.int16))


def test_state_dict_without_arguments_when_iterated_in_process(local_cube):
    kw = dict(mode="pair", seed=3, batch_size=BATCH)
    full = [k for batch in PatchStream(local_cube, **kw) for k in _keys(batch)]
    stream = PatchStream(local_cube, **kw)
    before = []
    for i, batch in enumerate(stream):
        before.extend(_keys(batch))
        if i == 2:
            break
    state = stream.state_dict()
    assert state["consumed"] == 3 * BATCH
    fresh = PatchStream(local_cube, **kw)
    fresh.load_state_dict(state)
    assert before + [k for batch in fresh for k in _keys(batch)] == full


@pytest.mark.parametrize("workers", [0, 2])
def test_stateful_dataloader_resumes_exactly(local_cube, workers):
    from torchdata.stateful_dataloader import StatefulDataLoader

    kw = dict(mode="single", seed=8, batch_size=BATCH)
    full = [k for batch in PatchStream(local_cube, **kw) for k in _keys(batch)]
    loader = StatefulDataLoader(PatchStream(local_cube, **kw), batch_size=None, num_workers=workers)
    before = []
    for i, batch in enumerate(loader):
        before.extend(_keys(batch))
        if i == 4:  # an odd count: the two workers stand at different places
            break
    state = loader.state_dict()
    del loader
    resumed = StatefulDataLoader(PatchStream(local_cube, **kw), batch_size=None, num_workers=workers)
    resumed.load_state_dict(state)
    after = [k for batch in resumed for k in _keys(batch)]
    assert before + after == full


def test_loader_misuse_that_breaks_resume_is_refused(local_cube):
    stream = PatchStream(local_cube, seed=1)
    with pytest.raises(ValueError, match="batch_size on the PatchStream"):
        next(iter(DataLoader(stream, batch_size=4)))
    with pytest.raises(ValueError, match="in_order=False"):
        next(iter(DataLoader(PatchStream(local_cube, batch_size=BATCH), batch_size=None, num_workers=1,
                             in_order=False, multiprocessing_context="fork")))
    with pytest.raises(ValueError, match="batch_size"):
        next(iter(DataLoader(PatchStream(local_cube, batch_size=BATCH), batch_size=2, num_workers=1)))
    # a stream whose batches go to workers cannot count in this process
    stream = PatchStream(local_cube, batch_size=BATCH)
    list(DataLoader(stream, batch_size=None, num_workers=1, multiprocessing_context="spawn", persistent_workers=False))
    with pytest.raises(RuntimeError, match="StatefulDataLoader"):
        stream.state_dict()


@pytest.mark.parametrize("backend", ["obstore", "fsspec"])
def test_error_classes_over_https_through_the_segmenting_proxy(s3_server, s3_bucket, fault_proxy, test_secret, backend):
    from spectralearth.platform.reader import RetriesExhaustedError, RetryPolicy, StoragePermanentError, open_source
    from spectralearth.platform.reader import read_view

    url = f"s3://{s3_bucket}/cube"
    write_sample_cube(url, SampleCube(n_patches=3, patch_px=32, seed=6))
    shape = tuple(open_cube(url)["reflectance"].shape[1:])
    proxy, options = fault_proxy(fail_rate=0.0, max_attempts=1)  # s3fs: no retries of its own
    assert proxy.endpoint_url.startswith("https://") and proxy.relay is not None
    source = open_source(url, storage_options=options, backend=backend)
    retry = RetryPolicy(attempts=3, base_s=0.01, max_s=0.02)
    key = view_chunk_key(1, url)
    good = read_view(source, 1, patch=0, shape=shape, retry=retry, key=key)
    assert proxy.relay.segments > good.nbytes // 1400 // 4  # bodies arrived in small segments

    def attempts(kind: str, error, match: str) -> int:
        proxy.set_kinds((kind,))
        proxy.set_fail_rate(1.0)
        before = proxy.stats()["requests"]
        with pytest.raises(error, match=match) as err:
            read_view(source, 1, patch=7, shape=shape, retry=retry, key=key)
        proxy.set_fail_rate(0.0)
        message = str(err.value)
        assert "patch 7" in message and "view 1" in message and key in message and test_secret not in message
        assert (err.value.patch, err.value.view, err.value.key) == (7, 1, key)
        return proxy.stats()["requests"] - before

    # requests per read: obstore sends one per attempt; s3fs adds a request of its own to each
    per = 1 if backend == "obstore" else 2
    assert attempts("503", RetriesExhaustedError, r"gave up after 3 attempts.*HTTP 503") == 3 * per
    assert attempts("404", ChunkMissingError, "is missing") <= per
    assert attempts("403", ChunkMissingError, "missing or forbidden") <= per
    assert attempts("400", StoragePermanentError, "HTTP 400") <= per
    if backend == "obstore":  # s3fs follows botocore's region redirect itself
        assert attempts("301", StoragePermanentError, "region 'us-east-1'") == 1
    # transient faults that clear: the read succeeds with the right pixels
    proxy.set_kinds(("500", "drop", "truncate", "slowdown"))
    proxy.set_fail_rate(0.5)
    for _ in range(4):
        assert np.array_equal(read_view(source, 1, patch=0, shape=shape, retry=RetryPolicy(attempts=12, base_s=0.01), key=key),
                              good)


@pytest.mark.slow
@pytest.mark.parametrize("launch", ["torchrun", "spawn"])
def test_ddp_example_on_cpu_with_gloo(s3_bucket, tmp_path, launch):
    """docs/examples/train_ddp.py on 2 CPU ranks over HTTPS S3: disjoint shards, synchronised weights.

    ``spawn``: mp.spawn without RANK in the environment and spawn-started DataLoader
    workers, where only the parent's process group knows the rank.
    """
    import json
    import subprocess
    import sys
    from pathlib import Path

    url = f"s3://{s3_bucket}/cube"
    write_sample_cube(url, SampleCube(n_patches=16, patch_px=32, seed=12))
    example = Path(__file__).resolve().parent.parent / "docs" / "examples" / "train_ddp.py"
    out = tmp_path / "out"
    common = [str(example), url, "--batch-size", "2", "--workers", "1", "--out", str(out)]
    if launch == "torchrun":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *common]
    else:
        cmd = [sys.executable, *common, "--spawn", "2", "--mp-context", "spawn"]
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((out / f"rank-{r}.json").read_text()) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    a, b = (set(r["patches"]) for r in ranks)
    assert not a & b and a | b == set(range(16))  # each patch on exactly one rank
    assert ranks[0]["weights_checksum"] == ranks[1]["weights_checksum"]  # DDP kept the replicas equal
    assert all(np.isfinite(r["losses"]).all() and len(r["losses"]) == 4 for r in ranks)
    assert ranks[0]["stream_state"]["consumed"] == 16
