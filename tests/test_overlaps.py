"""The overlap graph: dask-geopandas edges against the naive all-pairs version, bad input, the job."""

from __future__ import annotations

import io

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import pyproj
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spectralearth.pipelines.overlaps import (
    connected_components,
    degree_stats,
    overlap_edges,
    prepare_tiles,
    utm_epsg,
    write_overlap_outputs,
)
from spectralearth.pipelines.reference import naive_edges, rectangles_frame
from spectralearth.platform import storage

# Footprints around the UTM 32/33 boundary (12°E), a few km to 30 km across.
rect = st.tuples(
    st.floats(11.75, 12.25),  # lon
    st.floats(46.85, 47.15),  # lat
    st.floats(3_000, 30_000),  # width m
    st.floats(3_000, 30_000),  # height m
    st.floats(0, 90),  # rotation
    st.integers(0, 6),  # datatake
)


def _compare(edges: pd.DataFrame, ref: pd.DataFrame) -> None:
    assert list(zip(edges["a"], edges["b"])) == list(zip(ref["a"], ref["b"]))
    np.testing.assert_allclose(edges["area_m2"], ref["area_m2"], rtol=1e-6)
    assert (edges["utm_epsg"].to_numpy() == ref["utm_epsg"].to_numpy()).all()
    assert (edges["same_datatake"].to_numpy() == ref["same_datatake"].to_numpy()).all()
    assert (edges["a"] < edges["b"]).all()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(rect, min_size=2, max_size=30), nparts=st.integers(1, 5))
def test_edges_match_all_pairs(specs, nparts):
    tiles = rectangles_frame(specs)
    edges = overlap_edges(tiles, npartitions=nparts)
    _compare(edges, naive_edges(tiles))
    assert (edges["id_a"] == tiles["id"].to_numpy()[edges["a"]]).all()


def test_edges_on_a_distributed_client_match():
    from distributed import Client, LocalCluster

    rng = np.random.default_rng(3)
    specs = [(rng.uniform(11.7, 12.3), rng.uniform(46.8, 47.2), rng.uniform(3e3, 3e4), rng.uniform(3e3, 3e4),
              rng.uniform(0, 90), rng.integers(0, 9)) for _ in range(60)]
    tiles = rectangles_frame(specs)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as client:
        edges = overlap_edges(tiles, client=client, npartitions=4, keep_geometry=True)
    _compare(edges, naive_edges(tiles))
    assert isinstance(edges, gpd.GeoDataFrame) and edges.crs.to_epsg() == 4326
    inter = shapely.intersection(tiles.geometry.values[edges["a"]], tiles.geometry.values[edges["b"]])
    assert np.allclose(shapely.area(edges.geometry.values), shapely.area(inter))


def test_area_is_metric_and_measured_in_the_zone_of_the_intersection():
    # Two 20 km squares straddling 12°E: most of the intersection lies east of the boundary.
    tiles = rectangles_frame([(12.02, 47.0, 20_000, 20_000, 0, 1), (12.06, 47.0, 20_000, 20_000, 0, 2)])
    edges = overlap_edges(tiles)
    assert len(edges) == 1
    inter = tiles.geometry.values[0].intersection(tiles.geometry.values[1])
    assert inter.bounds[0] < 12.0 < inter.centroid.x
    assert edges["utm_epsg"].iat[0] == 32633
    geodesic, _ = pyproj.Geod(ellps="WGS84").geometry_area_perimeter(inter)
    assert abs(edges["area_m2"].iat[0] / abs(geodesic) - 1) < 2e-3  # UTM scale error only, not degree²


def test_utm_zones():
    assert utm_epsg([11.99, 12.0, -0.5, 179.9], [47.0, 47.0, -10.0, 1.0]).tolist() == [32632, 32633, 32730, 32660]


def test_touching_tiles_are_no_edge():
    tiles = gpd.GeoDataFrame(
        {"id": ["a", "b"], "enmap:datatake_id": [1, 2]},
        geometry=[shapely.box(9.0, 47.0, 9.2, 47.2), shapely.box(9.2, 47.0, 9.4, 47.2)],
        crs=4326,
    )
    assert len(overlap_edges(tiles)) == 0


def test_empty_table_is_a_clear_error():
    empty = gpd.GeoDataFrame({"id": [], "enmap:datatake_id": []}, geometry=[], crs=4326)
    with pytest.raises(ValueError, match="empty"):
        overlap_edges(empty)
    with pytest.raises(ValueError, match="enmap:datatake_id"):
        overlap_edges(gpd.GeoDataFrame({"id": ["x"]}, geometry=[shapely.box(0, 0, 1, 1)], crs=4326))


def test_bad_footprints_are_repaired_or_quarantined():
    bowtie = shapely.Polygon([(9.0, 47.0), (9.3, 47.3), (9.3, 47.0), (9.0, 47.3)])
    assert not bowtie.is_valid
    tiles = gpd.GeoDataFrame(
        {
            "id": ["bowtie", "empty", "none", "plain", "DT5_007_V010200", "DT5_007_V010402"],
            "enmap:datatake_id": [1, 2, 3, 4, 5, 5],
            "enmap:tile_id": [1, 1, 1, 1, 7, 7],
        },
        geometry=[bowtie, shapely.Polygon(), None, shapely.box(9.1, 47.1, 9.2, 47.2),
                  shapely.box(9.0, 47.0, 9.3, 47.3), shapely.box(9.0, 47.0, 9.3, 47.3)],
        crs=4326,
    )
    # the newer processor version supersedes the older delivery of (datatake 5, tile 7)
    prep = prepare_tiles(tiles)
    assert prep.repaired == 1
    assert dict(zip(prep.quarantined["id"], prep.quarantined["reason"])) == {
        "empty": "empty footprint",
        "none": "empty footprint",
        "DT5_007_V010200": "superseded by DT5_007_V010402",
    }
    assert prep.tiles["tile"].tolist() == [0, 3, 5]
    edges = overlap_edges(tiles)
    assert sorted(zip(edges["a"], edges["b"])) == [(0, 3), (0, 5), (3, 5)]
    # the repaired bowtie is two triangles meeting at (9.15, 47.15): the plain box overlaps both halves
    ab = edges[(edges["a"] == 0) & (edges["b"] == 3)]["area_m2"].iat[0]
    box_area = edges[(edges["a"] == 3) & (edges["b"] == 5)]["area_m2"].iat[0]
    assert 0.45 < ab / box_area < 0.55


def test_components_match_networkx():
    rng = np.random.default_rng(0)
    n = 500
    a = rng.integers(0, n, 400)
    b = rng.integers(0, n, 400)
    edges = pd.DataFrame({"a": np.minimum(a, b), "b": np.maximum(a, b)})
    edges = edges[edges["a"] < edges["b"]]
    comp = connected_components(n, edges)
    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_edges_from(zip(edges["a"], edges["b"]))
    expected = {frozenset(c) for c in nx.connected_components(g)}
    got = {frozenset(np.flatnonzero(comp == k)) for k in np.unique(comp)}
    assert got == expected
    firsts = [np.flatnonzero(comp == k)[0] for k in range(comp.max() + 1)]
    assert firsts == sorted(firsts)  # numbered by their smallest tile
    deg = degree_stats(n, edges)["degree"]
    assert deg.tolist() == [g.degree(i) for i in range(n)]


def test_job_outputs(storage_root, tmp_path):
    rng = np.random.default_rng(5)
    specs = [(rng.uniform(11.8, 12.2), rng.uniform(46.9, 47.1), rng.uniform(5e3, 3e4), rng.uniform(5e3, 3e4),
              rng.uniform(0, 90), rng.integers(0, 20)) for _ in range(40)]
    tiles = rectangles_frame(specs)
    png = str(tmp_path / "map.png")
    report = write_overlap_outputs(tiles, storage_root.url, storage_options=storage_root.storage_options, plot=png)
    edges = gpd.read_parquet(io.BytesIO(storage.read_bytes(storage.join(storage_root.url, "overlap_edges.parquet"),
                                                           storage_root.storage_options)))
    comps = pd.read_parquet(io.BytesIO(storage.read_bytes(storage.join(storage_root.url, "overlap_components.parquet"),
                                                          storage_root.storage_options)))
    _compare(edges, naive_edges(tiles))
    assert edges.crs.to_epsg() == 4326 and len(edges) == report.n_edges
    assert comps["tile"].tolist() == list(range(40))
    assert comps["degree"].sum() == 2 * report.n_edges
    assert report.n_components == comps["component"].nunique()
    assert report.degree_max == comps["degree"].max()
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
