"""Temporal combinations (Algorithm 1): against the naive version, the patch test, rules, the CLI."""

from __future__ import annotations

import io

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spectralearth.pipelines.combinations import CombinationParams, combinations, erode_square, fits_square
from spectralearth.pipelines.overlaps import overlap_edges
from spectralearth.pipelines.reference import naive_combinations, naive_edges, rectangles_frame

SIDE = 128 * 30.0

# Footprints around the UTM 32/33 boundary (12°E), 4 km to 30 km across, few datatakes.
rect = st.tuples(
    st.floats(11.85, 12.15),
    st.floats(46.92, 47.08),
    st.floats(4_000, 30_000),
    st.floats(4_000, 30_000),
    st.floats(0, 90),
    st.integers(0, 12),
)


def _check_invariants(combos: gpd.GeoDataFrame, tiles: gpd.GeoDataFrame, edges: pd.DataFrame) -> None:
    adjacent = set(zip(edges["a"], edges["b"]))
    geoms = tiles.geometry.values
    dts = tiles["enmap:datatake_id"].to_numpy()
    for row in combos.itertuples():
        m = list(row.members)
        assert m == sorted(set(m)) and row.n == len(m) >= 2
        assert all((x, y) in adjacent for i, x in enumerate(m) for y in m[i + 1 :])
        assert len(set(dts[m])) == len(m)  # distinct datatakes
        assert list(row.member_ids) == tiles["id"].to_numpy()[m].tolist()
        # measured without vertices that lie on a straight WGS84 edge (their number depends on the order of intersection)
        inter = shapely.simplify(shapely.intersection_all(geoms[m]), 1e-10, preserve_topology=False)
        tr = pyproj.Transformer.from_crs(4326, int(row.utm_epsg), always_xy=True)
        utm = shapely.transform(inter, lambda xy, tr=tr: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
        assert utm.area == pytest.approx(row.area_m2, rel=1e-6)
        assert shapely.from_wkb(row.geometry_utm).area == pytest.approx(row.area_m2, rel=1e-9)
        assert fits_square([utm], SIDE)[0]
    assert len({tuple(m) for m in combos["members"]}) == len(combos)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(rect, min_size=2, max_size=14), beam=st.integers(1, 4), n_tasks=st.integers(1, 4))
def test_combinations_match_naive(specs, beam, n_tasks):
    tiles = rectangles_frame(specs)
    edges = naive_edges(tiles)
    combos = combinations(tiles, edges, beam=beam, n_tasks=n_tasks)
    ref = naive_combinations(tiles, edges, params=CombinationParams(beam=beam))
    assert [tuple(m) for m in combos["members"]] == list(ref["members"])
    np.testing.assert_allclose(combos["area_m2"], ref["area_m2"], rtol=1e-6)
    _check_invariants(combos, tiles, edges)


def test_same_result_whatever_the_partitioning_and_cluster():
    from distributed import Client, LocalCluster

    rng = np.random.default_rng(11)
    specs = [(rng.uniform(11.8, 12.2), rng.uniform(46.9, 47.1), rng.uniform(5e3, 3e4), rng.uniform(5e3, 3e4),
              rng.uniform(0, 90), rng.integers(0, 25)) for _ in range(45)]
    tiles = rectangles_frame(specs)
    edges = overlap_edges(tiles)
    one = combinations(tiles, edges, beam=3, n_tasks=1)
    many = combinations(tiles, edges, beam=3, n_tasks=9)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as client:
        dist = combinations(tiles, edges, beam=3, client=client)
    assert one["n"].max() >= 4  # the case is not trivial
    for other in (many, dist):
        assert [tuple(m) for m in other["members"]] == [tuple(m) for m in one["members"]]
        assert other["area_m2"].tolist() == one["area_m2"].tolist()
        assert other["geometry_utm"].tolist() == one["geometry_utm"].tolist()
    _check_invariants(one, tiles, edges)


def _square(side, angle=0.0):
    return shapely.affinity.rotate(shapely.box(500_000, 5_200_000, 500_000 + side, 5_200_000 + side), angle)


def test_patch_test_is_a_shape_test():
    assert fits_square([_square(3850.0)], SIDE).tolist() == [True]
    assert fits_square([_square(3830.0)], SIDE).tolist() == [False]
    # a 45°-rotated square holds an axis-aligned square of side s/√2 only
    diamond_ok, diamond_small = _square(5450.0, 45), _square(5400.0, 45)
    assert fits_square([diamond_ok, diamond_small], SIDE).tolist() == [True, False]
    assert not shapely.buffer(diamond_small, -SIDE / 2, join_style="mitre").is_empty  # a disc erosion would accept it
    assert diamond_small.area > 1.9 * SIDE**2  # and so would an area test
    # a long thin strip: much area, no patch
    assert fits_square([shapely.box(0, 0, 100_000, 3_800)], SIDE).tolist() == [False]


def test_patch_test_non_convex_and_multipart():
    # an L whose arms are 3 km wide: 45 km² but no 3.84 km square fits
    ell = shapely.union_all([shapely.box(0, 0, 20_000, 3_000), shapely.box(0, 0, 3_000, 20_000)])
    # an L with one arm 4 km wide fits
    ell_ok = shapely.union_all([shapely.box(0, 0, 20_000, 4_000), shapely.box(0, 0, 3_000, 20_000)])
    # two 3 km squares that touch at a corner do not join into one patch-sized area
    pair = shapely.MultiPolygon([shapely.box(0, 0, 3_000, 3_000), shapely.box(3_000, 3_000, 6_000, 6_000)])
    assert fits_square([ell, ell_ok, pair], SIDE).tolist() == [False, True, False]


@settings(max_examples=40, deadline=None)
@given(w=st.floats(3_000, 12_000), h=st.floats(3_000, 12_000), angle=st.floats(0, 90))
def test_convex_and_general_erosion_agree(w, h, angle):
    poly = shapely.affinity.rotate(shapely.box(0, 0, w, h), angle)
    general = erode_square(poly, SIDE / 2).area > 1e-2
    assert fits_square([poly], SIDE)[0] == general
    # and an axis-aligned rectangle: fits iff both sides exceed the patch side
    if angle == 0:
        assert general == (w > SIDE and h > SIDE)


def test_rules_datatakes_neighbours_and_stopping():
    specs = [
        (12.00, 47.00, 20_000, 20_000, 0, 1),
        (12.01, 47.01, 20_000, 20_000, 0, 2),
        (12.02, 47.00, 20_000, 20_000, 0, 3),
        (12.015, 47.005, 20_000, 20_000, 0, 3),  # same datatake as row 2
        (12.13, 47.00, 3_000, 30_000, 0, 4),  # overlaps rows 0-3 by a strip narrower than a patch
        (13.50, 47.50, 20_000, 20_000, 0, 5),  # no neighbour
    ]
    tiles = rectangles_frame(specs)
    edges = overlap_edges(tiles)
    assert {(0, 4), (2, 3)} <= set(zip(edges["a"], edges["b"]))
    combos = combinations(tiles, edges, beam=8)
    members = [tuple(m) for m in combos["members"]]
    assert members == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (0, 1, 2), (0, 1, 3)]
    assert not any(5 in m or 4 in m for m in members)
    assert all(not {2, 3} <= set(m) for m in members)
    assert combos.crs.to_epsg() == 4326 and set(combos["utm_epsg"]) == {32633}


def _write_catalog(url: str, tiles: gpd.GeoDataFrame) -> None:
    from spectralearth.catalog.catalogio import write_items

    items = []
    for row in tiles.itertuples():
        items.append({
            "type": "Feature", "stac_version": "1.1.0", "id": row.id,
            "geometry": shapely.geometry.mapping(row.geometry), "bbox": list(row.geometry.bounds),
            "properties": {"datetime": "2023-05-01T10:00:00Z", "enmap:datatake_id": int(row[2]),
                           "enmap:tile_id": int(row[3]), "proj:code": "EPSG:32633"},
            "links": [], "assets": {},
        })
    write_items(items, url)


def test_cli_overlaps_then_combinations(tmp_path, capsys):
    from spectralearth.platform import tables
    from spectralearth.platform.cli import main

    catalog = str(tmp_path / "catalog")
    rng = np.random.default_rng(2)
    specs = [(rng.uniform(11.9, 12.1), rng.uniform(46.95, 47.05), rng.uniform(8e3, 3e4), rng.uniform(8e3, 3e4),
              rng.uniform(0, 90), i) for i in range(12)]
    tiles = rectangles_frame(specs)
    _write_catalog(catalog, tiles)
    assert main(["combinations", "--catalog", catalog, "--cluster", "sync"]) == 1
    assert "run `spectralearth overlaps` first" in capsys.readouterr().err
    png = str(tmp_path / "graph.png")
    assert main(["overlaps", "--catalog", catalog, "--cluster", "sync", "--plot", png]) == 0
    assert "overlap graph" in capsys.readouterr().out
    assert main(["combinations", "--catalog", catalog, "--cluster", "sync", "--beam", "4"]) == 0
    assert "temporal combinations" in capsys.readouterr().out
    got = tables.read_table(str(tmp_path / "catalog" / "combinations.parquet"))
    expected = naive_combinations(tiles, naive_edges(tiles), params=CombinationParams(beam=4))
    # the table is in component order, (n, members) within a component: compare in (n, members) order
    assert sorted((len(m), tuple(m)) for m in got["members"]) == [(len(m), m) for m in expected["members"]]
    assert len(got) > 0 and got.crs.to_epsg() == 4326
    assert open(png, "rb").read(4) == b"\x89PNG"
    assert main(["combinations", "--catalog", catalog, "--cluster", "sync", "--beam", "4", "--max-candidates", "1"]) == 0
    capsys.readouterr()
    bounded = tables.read_table(str(tmp_path / "catalog" / "combinations.parquet"))
    ref = naive_combinations(tiles, naive_edges(tiles), params=CombinationParams(beam=4, max_candidates=1))
    assert sorted((len(m), tuple(m)) for m in bounded["members"]) == [(len(m), m) for m in ref["members"]]
    assert main(["combinations", "--catalog", catalog, "--cluster", "sync", "--max-candidates", "0"]) == 1
    assert "max_candidates must be at least 1" in capsys.readouterr().err
    empty = str(tmp_path / "empty")
    _write_catalog(empty, tiles.iloc[:0])
    assert main(["overlaps", "--catalog", empty, "--cluster", "sync"]) == 1
    assert capsys.readouterr().err.startswith("overlaps: ")


def test_combinations_read_from_a_written_graph_are_the_same(tmp_path):
    from spectralearth.pipelines.combinations import read_edges
    from spectralearth.pipelines.overlaps import write_overlap_outputs

    rng = np.random.default_rng(4)
    specs = [(rng.uniform(11.9, 12.1), rng.uniform(46.95, 47.05), rng.uniform(8e3, 3e4), rng.uniform(8e3, 3e4),
              rng.uniform(0, 90), rng.integers(0, 6)) for _ in range(15)]
    tiles = rectangles_frame(specs)
    write_overlap_outputs(tiles, str(tmp_path))
    edges = read_edges(str(tmp_path / "overlap_edges.parquet"))
    a = combinations(tiles, edges, beam=2)
    b = combinations(tiles, overlap_edges(tiles), beam=2)
    assert a["members"].map(tuple).tolist() == b["members"].map(tuple).tolist()
    buf = io.BytesIO()
    a.to_parquet(buf)
    assert gpd.read_parquet(io.BytesIO(buf.getvalue()))["members"].map(list).tolist() == a["members"].tolist()


def _revisited_stack(copies: int, seed: int) -> gpd.GeoDataFrame:
    """One 25 km × 20 km scene and a neighbour, each acquired ``copies`` times, moved by up to 1.2 km."""
    rng = np.random.default_rng(seed)
    specs = []
    for k in range(copies):
        for lon in (12.0, 12.22):
            dx, dy = rng.integers(-40, 41, size=2) * 30.0
            specs.append((lon + dx / 76_000.0, 47.0 + dy / 110_574.0, 25_000.0, 20_000.0, 12.0, 100 + 2 * k + (lon > 12.1)))
    return rectangles_frame(specs)


def test_candidate_bound_matches_naive_and_bounds_the_work(tmp_path):
    from spectralearth.pipelines.combinations import write_combinations

    tiles = _revisited_stack(7, seed=3)
    edges = overlap_edges(tiles)
    beam, k = 3, 2
    bounded = combinations(tiles, edges, beam=beam, max_candidates=k, n_tasks=3)
    ref = naive_combinations(tiles, edges, params=CombinationParams(beam=beam, max_candidates=k))
    assert [tuple(m) for m in bounded["members"]] == list(ref["members"])
    np.testing.assert_allclose(bounded["area_m2"], ref["area_m2"], rtol=1e-6)
    _check_invariants(bounded, tiles, edges)
    exact = write_combinations(tiles, edges, str(tmp_path / "exact"), params=CombinationParams(beam=beam), n_tasks=1)
    rep = write_combinations(tiles, edges, str(tmp_path / "bounded"), params=CombinationParams(beam=beam, max_candidates=k),
                             n_tasks=1)
    seeds = len(set(edges["a"]) | set(edges["b"]))
    assert all(v <= seeds * beam * k for n, v in rep.evaluated.items() if n >= 3)
    assert sum(rep.evaluated.values()) < sum(exact.evaluated.values()) / 2  # the bound binds on a revisited stack
    assert rep.max_n >= 4 and rep.n_combinations == len(bounded)
    # a bound no tuple reaches is the exact search
    wide = combinations(tiles, edges, beam=beam, max_candidates=len(tiles), n_tasks=2)
    plain = combinations(tiles, edges, beam=beam, n_tasks=2)
    assert [tuple(m) for m in wide["members"]] == [tuple(m) for m in plain["members"]]
    assert wide["geometry_utm"].tolist() == plain["geometry_utm"].tolist()
    assert len(plain) > len(bounded)


def test_candidate_bound_is_checked():
    with pytest.raises(ValueError, match="max_candidates"):
        CombinationParams(max_candidates=0)


def test_job_reads_the_planning_copy_not_the_catalog(tmp_path, monkeypatch):
    """The combinations job's process never reads the catalog's footprints: its tasks read the planning copy."""
    import spectralearth.catalog as catalog_pkg
    import spectralearth.catalog.catalogio as catalogio
    from spectralearth.pipelines.combinations import combinations_job, read_edges, write_combinations
    from spectralearth.pipelines.overlaps import COMPONENTS_NAME, PLANNING_TILES_NAME, write_overlap_outputs
    from spectralearth.platform import tables
    from spectralearth.platform.cluster import ClusterSpec

    tiles = _revisited_stack(5, seed=6)
    out = str(tmp_path / "graph")
    write_overlap_outputs(tiles, out, npartitions=3)
    planning = tables.manifest(str(tmp_path / "graph" / PLANNING_TILES_NAME))
    comps = pd.read_parquet(tmp_path / "graph" / COMPONENTS_NAME)
    assert len(planning["parts"]) == 3 and planning["rows"] == int(comps["usable"].sum()) == len(tiles)
    assert sorted(set(comps["planning_part"])) == [0, 1, 2]
    edges = read_edges(str(tmp_path / "graph" / "overlap_edges.parquet"))
    ref = write_combinations(tiles, edges, str(tmp_path / "ref"), params=CombinationParams(beam=3), n_tasks=3)

    def no_catalog(*args, **kwargs):
        raise AssertionError("the combinations job read the catalog")

    monkeypatch.setattr(catalogio, "read_tiles", no_catalog)
    monkeypatch.setattr(catalog_pkg, "read_tiles", no_catalog)
    rep = combinations_job(out + "/catalog.parquet", cluster=ClusterSpec(kind="sync"), params=CombinationParams(beam=3),
                           n_tasks=3)
    got = tables.read_table(str(tmp_path / "graph" / "combinations.parquet"))
    want = tables.read_table(str(tmp_path / "ref" / "combinations.parquet"))
    assert rep.n_combinations == ref.n_combinations == len(got) > len(tiles) // 2
    assert got["members"].map(tuple).tolist() == want["members"].map(tuple).tolist()
    np.testing.assert_allclose(got["area_m2"], want["area_m2"], rtol=1e-9)
    assert rep.evaluated == ref.evaluated

    # components written before the planning copy existed: a clear error, not a wrong answer
    comps.drop(columns="planning_part").to_parquet(tmp_path / "graph" / COMPONENTS_NAME)
    with pytest.raises(ValueError, match="planning_part.*run `spectralearth overlaps` again"):
        combinations_job(out, cluster=ClusterSpec(kind="sync"))
    comps.to_parquet(tmp_path / "graph" / COMPONENTS_NAME)
    import shutil

    shutil.rmtree(tmp_path / "graph" / PLANNING_TILES_NAME)
    with pytest.raises(FileNotFoundError, match="planning copy of the tiles.*run `spectralearth overlaps` first"):
        combinations_job(out, cluster=ClusterSpec(kind="sync"))
