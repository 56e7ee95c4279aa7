"""The cube engine: a versioned, transactional Zarr v3 patch cube on any fsspec store.

Readers::

    from spectralearth.platform.cube import open_cube, list_versions
    ds = open_cube("s3://bucket/cube")              # latest committed version, xarray.Dataset
    ds = open_cube("s3://bucket/cube", version="v2")  # a pinned version

Writers commit whole versions (:func:`write_cube` for small cubes; extraction for
real ones). See :mod:`.format` for the layout, :mod:`.versions` for the commit.
"""

from spectralearth.platform.cube.format import (
    FORMAT_VERSION,
    NODATA,
    SCALE_FACTOR,
    ChunkChecksumError,
    CubeSpec,
    UnsupportedChunkFormatError,
    ViewChunkFormat,
    create_build_arrays,
    open_store,
    view_chunk_format,
    view_chunk_key,
    write_view_bytes,
)
from spectralearth.platform.cube.open import (
    VersionIndex,
    build_url,
    cube_checksums,
    locate_version,
    open_cube,
    open_index,
    verify_version,
)
from spectralearth.platform.cube.versions import (
    CubeNotCommittedError,
    Version,
    VersionConflictError,
    VersionNotFoundError,
    commit_version,
    list_versions,
    put_if_absent,
    resolve_version,
)
from spectralearth.platform.cube.write import build_id, version_moments, view_key, view_moments, write_cube, write_index

__all__ = [
    "FORMAT_VERSION",
    "NODATA",
    "SCALE_FACTOR",
    "ChunkChecksumError",
    "CubeNotCommittedError",
    "CubeSpec",
    "UnsupportedChunkFormatError",
    "Version",
    "VersionConflictError",
    "VersionIndex",
    "VersionNotFoundError",
    "ViewChunkFormat",
    "build_id",
    "build_url",
    "commit_version",
    "create_build_arrays",
    "cube_checksums",
    "list_versions",
    "locate_version",
    "open_cube",
    "open_index",
    "open_store",
    "put_if_absent",
    "resolve_version",
    "verify_version",
    "version_moments",
    "view_chunk_format",
    "view_chunk_key",
    "view_key",
    "view_moments",
    "write_cube",
    "write_index",
    "write_view_bytes",
]
