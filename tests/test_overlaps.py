"""The overlap graph: the job's edges against the naive all-pairs version, bad input, the job."""

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
from spectralearth.platform import storage, tables

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
    report = write_overlap_outputs(tiles, storage_root.url, storage_options=storage_root.storage_options, plot=png,
                                   npartitions=3)
    doc = tables.manifest(storage.join(storage_root.url, "overlap_edges.parquet"), storage_root.storage_options)
    assert len(doc["parts"]) >= 2 and doc["rows"] == report.n_edges  # one part per task
    edges = tables.read_table(storage.join(storage_root.url, "overlap_edges.parquet"), storage_options=storage_root.storage_options)
    edges = edges.sort_values(["a", "b"]).reset_index(drop=True)  # sorted within each part; parts by area
    comps = pd.read_parquet(io.BytesIO(storage.read_bytes(storage.join(storage_root.url, "overlap_components.parquet"),
                                                          storage_root.storage_options)))
    _compare(edges, naive_edges(tiles))
    assert (edges["id_a"] == tiles["id"].to_numpy()[edges["a"]]).all()
    assert (edges["id_b"] == tiles["id"].to_numpy()[edges["b"]]).all()
    assert edges.crs.to_epsg() == 4326 and len(edges) == report.n_edges
    assert comps["tile"].tolist() == list(range(40))
    assert comps["degree"].sum() == 2 * report.n_edges
    # the parts are plain GeoParquet: dask-geopandas reads the table as one partition per part
    import dask_geopandas

    opts = storage_root.storage_options
    fs, _ = storage.filesystem(storage_root.url, opts)  # the same fsspec filesystem (S3 endpoint, TLS CA) as the job's
    ddf = dask_geopandas.read_parquet(tables.part_urls(storage.join(storage_root.url, "overlap_edges.parquet"), opts),
                                      filesystem=fs)
    assert ddf.npartitions == len(doc["parts"]) and ddf.crs.to_epsg() == 4326
    got = ddf.compute().sort_values(["a", "b"]).reset_index(drop=True)
    assert got[["a", "b"]].equals(edges[["a", "b"]]) and got.geometry.equals(edges.geometry)
    planning = tables.read_table(storage.join(storage_root.url, "planning_tiles.parquet"), storage_options=opts)
    assert sorted(planning["tile"]) == comps.loc[comps["usable"], "tile"].tolist()
    assert (comps.loc[comps["usable"], "planning_part"] >= 0).all()
    assert report.n_components == comps["component"].nunique()
    assert report.degree_max == comps["degree"].max()
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def _cut_at_antimeridian(geom):
    """Split a WGS84 polygon whose longitudes wrap at ±180° into a MultiPolygon (as the antimeridian package does)."""
    from shapely.geometry import MultiPolygon, box

    un = shapely.transform(geom, lambda xy: np.column_stack([np.where(xy[:, 0] < 0, xy[:, 0] + 360.0, xy[:, 0]), xy[:, 1]]))
    west = un.intersection(box(0.0, -90.0, 180.0, 90.0))
    east = shapely.transform(un.intersection(box(180.0, -90.0, 360.0, 90.0)), lambda xy: xy - np.array([360.0, 0.0]))
    return MultiPolygon([west, east])


def test_footprints_cut_at_the_antimeridian(tmp_path):
    """Two tiles over Fiji, each cut into a MultiPolygon at 180°: one edge, measured whole; windows span the cut."""
    import pyproj

    from spectralearth.pipelines.combinations import combinations
    from spectralearth.pipelines.plan import PlanParams, place_patches, select_views

    epsg = 32760  # UTM 60 South: 180° is at x ≈ 819 km here
    inv = pyproj.Transformer.from_crs(epsg, 4326, always_xy=True)
    boxes = [shapely.box(790_005.0, 8_100_015.0, 850_005.0, 8_160_015.0), shapely.box(810_015.0, 8_100_015.0, 870_015.0, 8_160_015.0)]  # pixel corners at 15 mod 30
    geoms = []
    for b in boxes:
        wgs = shapely.transform(shapely.segmentize(b, 960.0), lambda xy: np.column_stack(inv.transform(xy[:, 0], xy[:, 1])))
        geoms.append(_cut_at_antimeridian(wgs))
    assert all(g.geom_type == "MultiPolygon" and g.is_valid for g in geoms)
    tiles = gpd.GeoDataFrame(
        {
            "id": ["A", "B"],
            "enmap:datatake_id": [1, 2],
            "enmap:tile_id": [1, 1],
            "proj:code": [f"EPSG:{epsg}"] * 2,
            "proj:transform": [[30.0, 0.0, b.bounds[0], 0.0, -30.0, b.bounds[3]] for b in boxes],
            "proj:shape": [[2000, 2000]] * 2,
            "datetime": pd.to_datetime(["2023-05-01", "2023-06-01"], utc=True),
        },
        geometry=geoms,
        crs=4326,
    )
    edges = overlap_edges(tiles)
    assert list(zip(edges["a"], edges["b"])) == [(0, 1)]
    # measured in the zone of its centroid, east of 180° (zone 1), not at the mean of ±180° (zone 31)
    assert int(edges["utm_epsg"].iat[0]) == 32701
    np.testing.assert_allclose(edges["area_m2"].iat[0], 39_990.0 * 60_000.0, rtol=2e-3)
    naive = naive_edges(tiles)
    np.testing.assert_allclose(naive["area_m2"].to_numpy(), edges["area_m2"].to_numpy(), rtol=1e-9)

    combos = combinations(tiles, edges)
    assert [list(m) for m in combos["members"]] == [[0, 1]]
    np.testing.assert_allclose(combos["area_m2"].iat[0], 39_990.0 * 60_000.0, rtol=2e-3)

    patches, _ = place_patches(tiles, combos, PlanParams())
    side = 128 * 30.0
    pair = patches[patches["priority"] == 2]
    assert len(pair) >= 9 * 14  # the whole 40 x 60 km intersection is used, across the cut
    seam_x = pyproj.Transformer.from_crs(4326, epsg, always_xy=True).transform(180.0, -17.0)[0]
    assert ((pair["x0"] < seam_x) & (pair["x0"] + side > seam_x)).any()
    inner = shapely.intersection(*boxes)
    for p in pair.itertuples():
        assert inner.contains(shapely.box(p.x0, p.y0 - side, p.x0 + side, p.y0))
    views = select_views(patches, tiles, PlanParams())
    assert (views.groupby("patch").size().reindex(pair["patch"]) == 2).all()


def test_planning_simplifies_catalog_footprints_without_moving_them(tmp_path):
    """The index's ~130-vertex outlines are simplified for planning: far fewer vertices, same places.

    And the combinations computed from the simplified outlines are those of the exact ones.
    """
    from spectralearth.catalog import index_archive, read_tiles
    from spectralearth.catalog.synth import SynthConfig, synthesize_archive
    from spectralearth.pipelines.combinations import combinations
    from spectralearth.pipelines.overlaps import PLANNING_SIMPLIFY_DEG, metric_geometry
    from spectralearth.platform.cluster import ClusterSpec

    synthesize_archive(str(tmp_path / "archive"), SynthConfig(tiles=60, footprints_only=True, compact_xml=True, seed=12, hotspots=2))
    index_archive(str(tmp_path / "archive"), catalog_url=str(tmp_path / "catalog"), cluster=ClusterSpec(kind="sync"))
    tiles = read_tiles(str(tmp_path / "catalog"))
    exact = prepare_tiles(tiles, simplify_deg=0).tiles
    simple = prepare_tiles(tiles).tiles
    ge, gs = np.asarray(exact.geometry.values), np.asarray(simple.geometry.values)
    assert np.median(shapely.get_num_coordinates(ge)) >= 5 * np.median(shapely.get_num_coordinates(gs))
    ue, _, ae = metric_geometry(ge)
    us, _, as_ = metric_geometry(gs)
    assert np.max(np.abs(as_ - ae) / ae) < 1e-9
    # no point of either outline is more than the tolerance (≤ 1.1 m) from the other
    assert max(shapely.hausdorff_distance(ue, us, densify=0.05)) <= 1.2
    assert PLANNING_SIMPLIFY_DEG * 111_320 <= 1.2

    edges = overlap_edges(tiles)
    assert len(edges) > 20
    with_simplified = combinations(tiles, edges)
    import spectralearth.pipelines.overlaps as ov

    original = ov.PLANNING_SIMPLIFY_DEG
    try:
        ov.prepare_tiles.__kwdefaults__["simplify_deg"] = 0.0
        with_exact = combinations(tiles, overlap_edges(tiles))
    finally:
        ov.prepare_tiles.__kwdefaults__["simplify_deg"] = original
    assert len(with_simplified) > 10
    assert [tuple(m) for m in with_simplified["members"]] == [tuple(m) for m in with_exact["members"]]
    # an intersection's outline moves by at most the tolerance: its area by at most perimeter × 1.2 m
    perimeter = shapely.length(shapely.from_wkb(with_exact["geometry_utm"].to_numpy()))
    delta = np.abs(with_simplified["area_m2"].to_numpy() - with_exact["area_m2"].to_numpy())
    assert np.all(delta <= perimeter * 1.2), (delta / perimeter).max()


def test_tiles_read_for_planning_prepare_to_the_footprints_of_the_full_read(tmp_path, monkeypatch):
    """The planning jobs read the catalog with ``simplify_deg`` (a batch of full outlines at a time):
    prepared, the footprints are vertex for vertex those of the full read, a broken (self-intersecting)
    one included, which is repaired first and simplified after."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from spectralearth.catalog import index_archive, read_tiles
    from spectralearth.catalog import catalogio
    from spectralearth.catalog.synth import SynthConfig, synthesize_archive
    from spectralearth.pipelines.overlaps import PLANNING_SIMPLIFY_DEG
    from spectralearth.platform.cluster import ClusterSpec

    synthesize_archive(str(tmp_path / "archive"), SynthConfig(tiles=40, footprints_only=True, compact_xml=True, seed=5))
    index_archive(str(tmp_path / "archive"), catalog_url=str(tmp_path / "catalog"), cluster=ClusterSpec(kind="sync"))
    path = tmp_path / "catalog" / "tiles.parquet"
    table = pq.read_table(path)
    geoms = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    x0, y0, x1, y1 = geoms[3].bounds  # a bow-tie of ~130 vertices, as a broken delivery would give
    corners = np.array([(x0, y0), (x1, y1), (x1, y0 + 0.3 * (y1 - y0)), (x0, y1), (x0, y0)])
    t = np.linspace(0, 1, 33)[:-1, None]  # 32 points per side (shapely.segmentize would repair it)
    geoms[3] = shapely.Polygon(np.concatenate([a + t * (b - a) for a, b in zip(corners[:-1], corners[1:])]))
    assert not shapely.is_valid(geoms[3])
    col = table.column_names.index("geometry")
    pq.write_table(table.set_column(col, "geometry", pa.array(shapely.to_wkb(geoms), type=table.schema.field(col).type)), path)

    monkeypatch.setattr(catalogio, "READ_BATCH_ROWS", 7)  # several batches, the last one short
    lean = read_tiles(str(tmp_path / "catalog"), simplify_deg=PLANNING_SIMPLIFY_DEG)
    full = read_tiles(str(tmp_path / "catalog"))
    assert lean.attrs[catalogio.SIMPLIFIED_ATTR] == PLANNING_SIMPLIFY_DEG and not full.attrs
    assert lean["id"].tolist() == full["id"].tolist() == table.column("id").to_pylist()
    assert lean["proj:transform"].map(list).tolist() == full["proj:transform"].map(list).tolist()
    nl, nf = shapely.get_num_coordinates(lean.geometry.values), shapely.get_num_coordinates(full.geometry.values)
    assert nl[3] == nf[3] and np.median(nf) >= 5 * np.median(nl)  # the broken outline is left for the repair
    a, b = prepare_tiles(full), prepare_tiles(lean)
    assert a.repaired == b.repaired == 1
    assert a.tiles["tile"].tolist() == b.tiles["tile"].tolist() and 3 in a.tiles["tile"].tolist()
    assert shapely.equals_exact(a.tiles.geometry.values, b.tiles.geometry.values, tolerance=0).all()
    repaired = b.tiles.geometry.values[b.tiles["tile"].to_numpy() == 3][0]
    assert shapely.get_num_coordinates(repaired) < nf[3] / 4  # simplified after its repair


def test_a_footprint_wrapped_the_wrong_way_round_the_globe_is_measured_not_fatal():
    """Parts at ±180° that are no clean cut (here: one reaches 64° W) made the zone join raise a
    TopologyException and fail the whole graph; they are now measured as they are."""
    from spectralearth.pipelines.overlaps import metric_geometry

    bad = shapely.from_wkt("MULTIPOLYGON (((179.8145420466556 46.352852742227604, 179.6586193696543 46.35285186093624, 179.67784239999997 46.40733499999999, 179.74888055353028 46.39530409109975, 179.82541599015147 46.38228481689052, 179.8145420466556 46.352852742227604)), ((-64.10227083844153 46.185686193374735, -179.84486464662837 46.18829864929104, -179.82218140437564 46.24874218212446, -179.8008515842816 46.305458324967795, -179.7837550719614 46.350820254850866, 179.6586193696543 46.35285186093624, 179.62627211900687 46.26090199464415, 179.6119986790433 46.2202204121498, 179.6004016454139 46.187113566585516, -64.10227083844153 46.185686193374735)))")
    with pytest.raises(shapely.errors.GEOSException):
        shapely.union_all(shapely.get_parts(_project_raw(bad, 32603)), grid_size=1e-3)  # what the join did
    utm, epsg, area = metric_geometry(np.array([bad, shapely.box(12.0, 47.0, 12.01, 47.01)], dtype=object))
    assert epsg.tolist() == [32603, 32633] and area[0] > 0 and shapely.is_valid(utm[0])
    assert area[1] == pytest.approx(shapely.area(_project_raw(shapely.box(12.0, 47.0, 12.01, 47.01), 32633)), rel=1e-9)


def _project_raw(geom, epsg: int):
    tr = pyproj.Transformer.from_crs(4326, epsg, always_xy=True)
    return shapely.transform(geom, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))


@settings(max_examples=40, deadline=None)
@given(boxes=st.lists(st.tuples(st.integers(-20, 20), st.integers(-20, 20), st.integers(0, 6), st.integers(0, 6)),
                      max_size=60),
       world=st.integers(0, 3), budget=st.integers(1, 50))
def test_candidate_sweep_finds_the_pairs_of_the_envelope_tree(boxes, world, budget):
    """The job's candidate pairs (a sweep over numbers) are the STRtree's on the envelopes: touching boxes
    included, boxes spanning the globe (a footprint cut at the antimeridian) included, in chunks of any size."""
    from spectralearth.pipelines.overlaps import _candidates_of_bounds, candidate_pairs

    b = np.array([(x / 4, y / 4, (x + w) / 4, (y + h + 1) / 4) for x, y, w, h in boxes], dtype=float).reshape(-1, 4)
    b[: min(world, len(b)), 0], b[: min(world, len(b)), 2] = -180.0, 180.0
    i, j = candidate_pairs(shapely.box(b[:, 0], b[:, 1], b[:, 2], b[:, 3]))
    si, sj = _candidates_of_bounds(b, budget=budget)
    got = list(zip(si.tolist(), sj.tolist()))
    assert len(got) == len(set(got)) and set(got) == set(zip(i.tolist(), j.tolist()))


def test_job_tasks_read_the_catalog_row_groups_and_write_what_the_table_in_memory_gives(tmp_path, monkeypatch):
    """overlaps_job: reading tasks of a few row groups each (a broken footprint among them), the planning copy
    and the exact test as tasks on a cluster; the same edges, planning copy and components as the graph of the
    table read whole."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from spectralearth.catalog import catalogio, index_archive, read_tiles
    from spectralearth.catalog.synth import SynthConfig, synthesize_archive
    from spectralearth.pipelines.overlaps import PLANNING_SIMPLIFY_DEG, overlaps_job
    from spectralearth.platform.cluster import ClusterSpec

    monkeypatch.setattr(catalogio, "CATALOG_ROW_GROUP", 16)
    synthesize_archive(str(tmp_path / "archive"), SynthConfig(tiles=80, footprints_only=True, compact_xml=True, seed=11))
    catalog = str(tmp_path / "catalog")
    index_archive(str(tmp_path / "archive"), catalog_url=catalog, cluster=ClusterSpec(kind="sync"))
    path = tmp_path / "catalog" / "tiles.parquet"
    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups == 5 and meta.row_group(0).num_rows == 16  # as the index job wrote it
    table = pq.read_table(path)
    geoms = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    x0, y0, x1, y1 = geoms[21].bounds  # a self-intersecting outline in the second group
    geoms[21] = shapely.Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1)])
    col = table.column_names.index("geometry")
    table = table.set_column(col, "geometry", pa.array(shapely.to_wkb(geoms), type=table.schema.field(col).type))
    pq.write_table(table, path, row_group_size=16)

    report = overlaps_job(catalog, cluster=ClusterSpec(kind="local", n_workers=2), npartitions=4)
    whole = write_overlap_outputs(read_tiles(catalog, simplify_deg=PLANNING_SIMPLIFY_DEG), str(tmp_path / "whole"),
                                  npartitions=4)
    assert report.n_repaired == whole.n_repaired == 1 and report.n_edges == whole.n_edges > 40
    assert report.n_components == whole.n_components
    for name, key in (("overlap_edges.parquet", ["a", "b"]), ("planning_tiles.parquet", ["tile"])):
        got = tables.read_table(f"{catalog}/{name}").sort_values(key).reset_index(drop=True)
        want = tables.read_table(f"{tmp_path}/whole/{name}").sort_values(key).reset_index(drop=True)
        assert got.drop(columns="geometry").astype(str).equals(want.drop(columns="geometry").astype(str))
        assert shapely.equals_exact(got.geometry.values, want.geometry.values, tolerance=0).all()
    planning = tables.read_table(f"{catalog}/planning_tiles.parquet")
    assert 21 in planning["tile"].tolist() and len(planning) == 80
    assert pd.read_parquet(f"{catalog}/overlap_components.parquet").equals(pd.read_parquet(f"{tmp_path}/whole/overlap_components.parquet"))


def test_the_ids_digest_is_the_ids_in_order_whatever_their_batches():
    """The plan job trusts the overlaps job's components when this digest (in their footer) is the catalog's."""
    import pyarrow as pa

    from spectralearth.catalog.catalogio import ids_digest

    ids = pa.array([f"ENMAP01-____L2A-DT{i:010d}" for i in range(40_000)])
    whole = ids_digest([ids])
    assert ids_digest([ids.slice(0, 100), ids.slice(100)]) == ids_digest([ids.to_pylist()]) == whole
    assert ids_digest([ids.slice(1)]) != whole  # one tile fewer
    swapped = ids.to_pylist()
    swapped[5], swapped[6] = swapped[6], swapped[5]
    assert ids_digest([swapped]) != whole  # the same tiles in another order
