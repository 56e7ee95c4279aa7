"""Direct chunk writes: the bytes and keys are exactly zarr's, CRC-32C included."""

from __future__ import annotations

import threading

import numcodecs
import numpy as np
import pytest
import zarr

from spectralearth.platform import storage
from spectralearth.platform.cube import (
    NODATA,
    ChunkChecksumError,
    UnsupportedChunkFormatError,
    create_build_arrays,
    open_store,
    view_chunk_format,
    write_view_bytes,
)


def _views(rng, n_bands: int) -> list[np.ndarray]:
    smooth = rng.normal(1500, 400, (4, n_bands, 128, 128)).astype(np.int16)
    smooth[1, :, :40, :] = NODATA  # partly nodata
    smooth[2] = rng.integers(-32768, 32767, smooth.shape[1:], dtype=np.int16)  # incompressible
    smooth[3] = NODATA  # all fill
    return list(smooth)


@pytest.mark.parametrize("clevel", [5, 1])
def test_direct_chunks_equal_zarr_bytes_and_read_back(tmp_path, clevel):
    n_bands = 7
    rng = np.random.default_rng(clevel)
    views = _views(rng, n_bands)
    by_zarr, direct = str(tmp_path / "zarr.zarr"), str(tmp_path / "direct.zarr")
    for url in (by_zarr, direct):
        create_build_arrays(url, n_slots=4, n_bands=n_bands, patch_px=128, clevel=clevel, slots_per_task=2)
    with zarr.config.set({"array.write_empty_chunks": True}):
        arr = zarr.open_array(open_store(storage.join(by_zarr, "reflectance")), mode="r+")
        for v, data in enumerate(views):
            arr[v] = data

    fmt = view_chunk_format(direct)
    assert (fmt.cname, fmt.clevel, fmt.shuffle, fmt.typesize, fmt.checksum) == ("zstd", clevel, "shuffle", 2, True)
    fs, root = storage.filesystem(direct)
    numcodecs.blosc.set_nthreads(1)
    for v, data in enumerate(views):
        blob = fmt.encode(data)
        # blosc frame + CRC-32C trailer: as zarr wrote it
        body = numcodecs.Blosc(cname="zstd", clevel=clevel, shuffle=numcodecs.Blosc.SHUFFLE).encode(data)
        assert blob[:-4] == body
        assert blob == (tmp_path / "zarr.zarr" / fmt.key(v)).read_bytes()
        np.testing.assert_array_equal(fmt.decode(blob), data)
        write_view_bytes(fs, f"{root}/{fmt.key(v)}", blob)
    # same bytes from a worker thread (blosc then uses a private context)
    out: list[bytes] = []
    t = threading.Thread(target=lambda: out.append(fmt.encode(views[0])))
    t.start()
    t.join()
    assert out[0] == (tmp_path / "zarr.zarr" / fmt.key(0)).read_bytes()
    back = zarr.open_array(open_store(storage.join(direct, "reflectance"), read_only=True), mode="r")[:]
    np.testing.assert_array_equal(back, np.stack(views))

    # one flipped bit that still decompresses is caught by the checksum, by us and by zarr
    blob = bytearray(fmt.encode(views[0]))
    blob[len(blob) // 2] ^= 0x10
    with pytest.raises(ChunkChecksumError, match="CRC-32C mismatch"):
        fmt.decode(bytes(blob))
    (tmp_path / "direct.zarr" / fmt.key(0)).write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="checksum"):
        zarr.open_array(open_store(storage.join(direct, "reflectance"), read_only=True), mode="r")[0]


def test_chunk_key_follows_the_metadata_and_sharded_arrays_are_refused(tmp_path):
    url = str(tmp_path / "v2keys")
    store = open_store(storage.join(url, "reflectance"))
    zarr.create_array(store=store, shape=(3, 2, 128, 128), chunks=(1, 2, 128, 128), dtype="int16", fill_value=NODATA,
                      compressors=zarr.codecs.BloscCodec(cname="zstd", clevel=5, shuffle="shuffle", typesize=2),
                      chunk_key_encoding={"name": "v2", "separator": "."})
    fmt = view_chunk_format(url)
    assert not fmt.checksum
    data = np.arange(2 * 128 * 128, dtype=np.int16).reshape(2, 128, 128)
    zarr.open_array(store, mode="r+")[2] = data
    assert fmt.key(2) == "reflectance/2.0.0.0"
    assert fmt.encode(data) == (tmp_path / "v2keys" / "reflectance" / "2.0.0.0").read_bytes()

    sharded = str(tmp_path / "sharded.zarr")
    zarr.create_array(store=open_store(storage.join(sharded, "reflectance")), shape=(4, 2, 128, 128),
                      chunks=(1, 2, 128, 128), shards=(2, 2, 128, 128), dtype="int16", fill_value=NODATA)
    with pytest.raises(UnsupportedChunkFormatError, match="sharding"):
        view_chunk_format(sharded)
    with pytest.raises(ValueError, match="shape"):
        fmt.encode(np.zeros((3, 128, 128), np.int16))
