"""Direct chunk writes: the bytes, the key and the empty-chunk rule are exactly zarr's."""

from __future__ import annotations

import threading

import numcodecs
import numpy as np
import pytest
import zarr

from spectralearth.platform import storage
from spectralearth.platform.cube import (
    NODATA,
    CubeSpec,
    UnsupportedChunkFormatError,
    create_cube_arrays,
    open_store,
    view_chunk_format,
    write_view_bytes,
)


def _spec(n_bands: int = 7, **kw) -> CubeSpec:
    return CubeSpec(n_views=4, n_patches=2, wavelength_nm=tuple(range(400, 400 + n_bands)), fwhm_nm=(6.0,) * n_bands,
                    band_numbers=tuple(range(1, n_bands + 1)), **kw)


def _views(rng, n_bands: int) -> list[np.ndarray]:
    smooth = rng.normal(1500, 400, (4, n_bands, 128, 128)).astype(np.int16)
    smooth[1, :, :40, :] = NODATA  # partly nodata
    smooth[2] = rng.integers(-32768, 32767, smooth.shape[1:], dtype=np.int16)  # incompressible
    smooth[3] = NODATA  # all fill: zarr stores nothing
    return list(smooth)


@pytest.mark.parametrize("clevel", [5, 1])
def test_direct_chunks_equal_zarr_bytes_and_read_back(tmp_path, clevel):
    spec = _spec(clevel=clevel)
    rng = np.random.default_rng(clevel)
    views = _views(rng, spec.n_bands)
    by_zarr, direct = str(tmp_path / "zarr.zarr"), str(tmp_path / "direct.zarr")
    create_cube_arrays(by_zarr, spec)
    create_cube_arrays(direct, spec)
    arr = zarr.open_array(open_store(storage.join(by_zarr, "reflectance")), mode="r+")
    for v, data in enumerate(views):
        arr[v] = data

    fmt = view_chunk_format(direct)
    assert (fmt.cname, fmt.clevel, fmt.shuffle, fmt.typesize) == ("zstd", clevel, "shuffle", 2)
    fs, root = storage.filesystem(direct)
    numcodecs.blosc.set_nthreads(1)
    for v, data in enumerate(views):
        if fmt.is_fill(data):
            continue
        blob = fmt.encode(data)
        # the same bytes as the plain numcodecs call, and as zarr wrote
        assert blob == numcodecs.Blosc(cname="zstd", clevel=clevel, shuffle=numcodecs.Blosc.SHUFFLE).encode(data)
        assert blob == (tmp_path / "zarr.zarr" / fmt.key(v)).read_bytes()
        write_view_bytes(fs, f"{root}/{fmt.key(v)}", blob)
    # same bytes from a worker thread (blosc then uses a private context)
    out: list[bytes] = []
    t = threading.Thread(target=lambda: out.append(fmt.encode(views[0])))
    t.start()
    t.join()
    assert out[0] == (tmp_path / "zarr.zarr" / fmt.key(0)).read_bytes()

    def objects(path):
        return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())

    assert objects(tmp_path / "direct.zarr" / "reflectance") == objects(tmp_path / "zarr.zarr" / "reflectance")
    back = zarr.open_array(open_store(storage.join(direct, "reflectance"), read_only=True), mode="r")[:]
    np.testing.assert_array_equal(back, np.stack(views))


def test_chunk_key_follows_the_metadata_and_sharded_arrays_are_refused(tmp_path):
    url = str(tmp_path / "v2keys")
    store = open_store(storage.join(url, "reflectance"))
    zarr.create_array(store=store, shape=(3, 2, 128, 128), chunks=(1, 2, 128, 128), dtype="int16", fill_value=NODATA,
                      compressors=zarr.codecs.BloscCodec(cname="zstd", clevel=5, shuffle="shuffle", typesize=2),
                      chunk_key_encoding={"name": "v2", "separator": "."})
    fmt = view_chunk_format(url)
    data = np.arange(2 * 128 * 128, dtype=np.int16).reshape(2, 128, 128)
    zarr.open_array(store, mode="r+")[2] = data
    assert fmt.key(2) == "reflectance/2.0.0.0"
    assert fmt.encode(data) == (tmp_path / "v2keys" / "reflectance" / "2.0.0.0").read_bytes()

    sharded = str(tmp_path / "sharded.zarr")
    create_cube_arrays(sharded, _spec(shard_views=2))
    with pytest.raises(UnsupportedChunkFormatError, match="sharding"):
        view_chunk_format(sharded)
    with pytest.raises(ValueError, match="shape"):
        fmt.encode(np.zeros((3, 128, 128), np.int16))
