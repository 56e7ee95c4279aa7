"""The dask jobs that turn a tile catalog into a training set.

The whole public API on one screen::

    from spectralearth.pipelines import overlap_edges, combinations, overlaps_job, combinations_job

* :func:`overlap_edges` - the overlap graph of a tile table (envelope candidates, exact test in dask tasks).
* :func:`connected_components`, :func:`degree_stats` - its components and degrees.
* :func:`combinations` - temporal combinations (SpectralEarth's Algorithm 1).
* :func:`overlaps_job`, :func:`combinations_job` - the same as jobs: catalog in, parquet beside it.
* :func:`plot_overlaps` - a map of the graph (PNG).
* :mod:`spectralearth.pipelines.reference` - naive all-pairs versions, for tests and benchmarks.
"""

from spectralearth.pipelines.combinations import (
    CombinationParams,
    CombinationReport,
    combinations,
    combinations_job,
    fits_square,
)
from spectralearth.pipelines.overlaps import (
    OverlapReport,
    PreparedTiles,
    connected_components,
    degree_stats,
    overlap_edges,
    overlaps_job,
    prepare_tiles,
    utm_epsg,
)
from spectralearth.pipelines.plot import plot_overlaps

__all__ = [
    "CombinationParams",
    "CombinationReport",
    "OverlapReport",
    "PreparedTiles",
    "combinations",
    "combinations_job",
    "connected_components",
    "degree_stats",
    "fits_square",
    "overlap_edges",
    "overlaps_job",
    "plot_overlaps",
    "prepare_tiles",
    "utm_epsg",
]
