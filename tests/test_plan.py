"""The patch plan: grid alignment, containment, no overlap, determinism, view policy, QL filters."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import pytest
import shapely

from spectralearth.catalog.synth import SynthConfig, plan_archive, synthesize_archive
from spectralearth.pipelines.combinations import combinations
from spectralearth.pipelines.overlaps import overlap_edges
from spectralearth.pipelines.plan import PlanParams, filter_views, place_patches, select_views
from spectralearth.platform.cluster import ClusterSpec

SIDE = 128 * 30.0


def _table(config: SynthConfig) -> gpd.GeoDataFrame:
    """A tile table straight from the synthetic plan (swath footprints, no pixels)."""
    specs = plan_archive(config)
    return gpd.GeoDataFrame(
        {
            "id": [s.stem for s in specs],
            "enmap:datatake_id": [s.datatake for s in specs],
            "enmap:tile_id": [s.tile for s in specs],
            "proj:code": [f"EPSG:{s.epsg}" for s in specs],
            "proj:transform": [list(s.transform) for s in specs],
            "proj:shape": [[s.height, s.width] for s in specs],
            "datetime": pd.to_datetime([s.start for s in specs], utc=True),
        },
        geometry=[shapely.Polygon(s.footprint_lonlat) for s in specs],
        crs=4326,
    )


@pytest.fixture(scope="module")
def table():
    tiles = _table(SynthConfig(tiles=120, tile_size=512, seed=3))
    combos = combinations(tiles, overlap_edges(tiles))
    return tiles, combos


def _utm(geom, epsg: int):
    tr = pyproj.Transformer.from_crs(4326, int(epsg), always_xy=True)
    return shapely.transform(geom, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))


def test_windows_are_aligned_inside_and_disjoint(table):
    tiles, combos = table
    patches, counts = place_patches(tiles, combos)
    assert counts["placed"] == len(patches) > 20
    assert (patches["x0"] % 30 == 15).all() and (patches["y0"] % 30 == 15).all()
    assert patches["priority"].max() >= 3
    combo_rows = patches[patches["combination"] >= 0]
    assert (np.diff(combo_rows["priority"].to_numpy()) <= 0).all(), "higher-n combinations are placed first"
    for p in patches.itertuples():
        box = shapely.box(p.x0, p.y0 - SIDE, p.x0 + SIDE, p.y0)
        for m in p.members:
            assert _utm(tiles.geometry.iat[m], p.crs).contains(box)
    for epsg, g in patches.groupby("crs"):
        x, y = g["x0"].to_numpy(), g["y0"].to_numpy()
        boxes = shapely.box(x, y - SIDE, x + SIDE, y)
        a, b = shapely.STRtree(boxes).query(boxes, predicate="intersects")
        pairs = a < b
        assert np.all(shapely.area(shapely.intersection(boxes[a[pairs]], boxes[b[pairs]])) < 1e-6)


def test_placement_is_deterministic_and_overlap_is_configurable(table):
    tiles, combos = table
    first, _ = place_patches(tiles, combos)
    shuffled = combos.sample(frac=1.0, random_state=7)
    second, _ = place_patches(tiles, shuffled.reset_index(drop=True))
    cols = ["crs", "x0", "y0", "priority"]
    pd.testing.assert_frame_equal(first[cols], second[cols])
    loose, _ = place_patches(tiles, combos, PlanParams(max_overlap=0.5))
    assert len(loose) > len(first)


def test_views_policy(table):
    tiles, combos = table
    patches, _ = place_patches(tiles, combos)
    wide = select_views(patches, tiles, PlanParams())
    narrow = select_views(patches, tiles, PlanParams(wide_views=False))
    assert len(wide) >= len(narrow) and narrow["member"].all()
    assert not wide.duplicated(["patch", "datatake"]).any()
    by_patch = patches.set_index("patch")
    for v in wide.itertuples():
        p = by_patch.loc[v.patch]
        assert tiles["proj:code"].iat[v.tile] == f"EPSG:{p.crs}"
        assert _utm(tiles.geometry.iat[v.tile], p.crs).contains(shapely.box(p.x0, p.y0 - SIDE, p.x0 + SIDE, p.y0))
        t = tiles["proj:transform"].iat[v.tile]
        assert v.col0 == (p.x0 - t[2]) / 30 and v.row0 == (t[5] - p.y0) / 30
    # every member of a combination patch views it (distinct datatakes by construction)
    got = set(zip(narrow["patch"], narrow["tile"]))
    for p in patches.itertuples():
        assert all((p.patch, m) in got for m in p.members)


def test_quality_filters_match_the_masks(tmp_path):
    """Removed views really exceed a threshold in their QL mask; kept ones do not."""
    from rasterio.windows import Window

    from spectralearth.catalog import index_archive, read_item_dicts, read_tiles
    from spectralearth.pipelines.plan import MASKS, tile_source

    config = SynthConfig(tiles=10, tile_size=240, seed=4, zip_fraction=0.3, zip_deflate=False)
    root = tmp_path
    synthesize_archive(str(root / "archive"), config)
    catalog = str(tmp_path / "catalog")
    index_archive(str(root / "archive"), catalog_url=catalog, cluster=ClusterSpec(kind="sync"))
    tiles = read_tiles(catalog)
    items = read_item_dicts(catalog)
    from spectralearth.pipelines.plan import _tiles_with_masks

    # counted from the mask assets' href leaves alone: the tiles whose item has a mask asset
    with_masks = sum(1 for it in items if {"ql_quality_classes", "ql_quality_cloud"} & set(it["assets"]))
    assert _tiles_with_masks(catalog, None) == with_masks == len(items) > 0
    patches, _ = place_patches(tiles, None)
    params = PlanParams(max_cloud=0.0, max_cloud_shadow=0.0, max_snow=0.0)
    views = filter_views(select_views(patches, tiles, params), items, params)
    assert len(views) > 3 and (views["fail"] != "").any()
    from spectralearth.catalog.enmap import open_raster

    for v in views.itertuples():
        fr = {}
        for name, (suffix, flag) in MASKS.items():
            with open_raster(tile_source(items[v.tile]), suffix) as ds:
                m = ds.read(1, window=Window(v.col0, v.row0, 128, 128))
            fr[name] = float((m == flag).mean())
            assert fr[name] == pytest.approx(getattr(v, f"{name}_frac"))
        failing = [n for n, lim in params.thresholds().items() if fr[n] > lim]
        assert v.fail == (failing[0] if failing else "")


def test_row_centres_match_line_intersections():
    """The vectorised rows of window centres (convex regions) are those of one line intersection per row."""
    import shapely

    from spectralearth.pipelines.plan import _erode_convex, _line_centres, _row_centres

    rng = np.random.default_rng(3)
    side, pixel, checked = 3840.0, 30.0, 0
    for _ in range(600):
        pts = rng.uniform(0, 60_000, size=(int(rng.integers(3, 12)), 2)) + rng.uniform(-1e6, 1e6, 2).round(-3)
        hull = shapely.convex_hull(shapely.multipoints(pts))
        if hull.geom_type != "Polygon" or hull.area < side * side:
            continue
        cen = _erode_convex(hull, side / 2)
        if cen.is_empty or cen.geom_type != "Polygon":
            continue
        want = _line_centres(cen, side, pixel)
        got = _row_centres(cen, side, pixel)
        assert got.shape == want.shape and np.allclose(got, want, atol=1e-6)
        checked += 1
    square = shapely.box(0, 0, 2 * side, 2 * side)  # horizontal edges lie on rows
    cen = _erode_convex(square, side / 2)
    np.testing.assert_allclose(_row_centres(cen, side, pixel), _line_centres(cen, side, pixel))
    assert checked > 300


def test_rows_of_many_polygons_at_once_are_each_polygons_rows():
    """Batched rows of window centres keep each polygon's rows together, in order, as one polygon at a time gives them."""
    import shapely

    from spectralearth.pipelines.plan import _erode_convex_all, _row_centres, _rows_centres

    rng = np.random.default_rng(11)
    side, pixel = 3840.0, 30.0
    hulls = [shapely.convex_hull(shapely.multipoints(rng.uniform(0, 50_000, size=(int(rng.integers(3, 10)), 2))
                                                     + rng.uniform(-1e6, 1e6, 2).round(-3))) for _ in range(300)]
    hulls = np.asarray([h for h in hulls if h.geom_type == "Polygon" and h.area > side * side], dtype=object)
    cens = _erode_convex_all(hulls, side / 2)
    cens = cens[(~shapely.is_empty(cens)) & (shapely.get_type_id(cens) == 3)]
    xy, owner = _rows_centres(cens, side, pixel)
    assert len(cens) > 100 and len(xy) > 1000
    assert np.all(np.diff(owner) >= 0)
    for k in range(len(cens)):
        np.testing.assert_array_equal(xy[owner == k], _row_centres(cens[k], side, pixel))


def test_windows_of_one_region_are_accepted_as_one_after_the_other():
    """A region's windows that overlap each other are accepted in order (each one against those accepted before it)."""
    import shapely

    from spectralearth.pipelines.plan import _Accepted

    side = 100.0
    acc = _Accepted(side, max_overlap=0.0, across_crs=False)
    x0 = np.array([0.0, 50.0, 100.0, 150.0, 400.0])  # each overlaps the next by half, the last stands alone
    y0 = np.zeros(5)
    boxes = shapely.box(x0, y0 - side, x0 + side, y0)
    bounds = shapely.bounds(boxes)
    ok = acc.free(32633, x0, y0, boxes, boxes, bounds)
    assert ok.tolist() == [True, False, True, False, True]
    acc.add(32633, x0[ok], y0[ok], boxes[ok], bounds[ok])
    again = acc.free(32633, x0 + 10.0, y0, boxes, boxes, bounds)  # every shifted window overlaps an accepted one
    assert not again.any()
    elsewhere = acc.free(32634, x0, y0, boxes, boxes, bounds)  # another zone's grid is not this one's
    assert elsewhere.tolist() == [True, False, True, False, True]


@pytest.fixture(scope="module")
def footprint_catalog(tmp_path_factory):
    """A footprint-only catalog of 300 tiles, indexed, with its overlap graph and combinations."""
    from spectralearth.catalog import index_archive
    from spectralearth.pipelines.combinations import combinations_job
    from spectralearth.pipelines.overlaps import overlaps_job

    root = tmp_path_factory.mktemp("plan-tasks")
    sync = ClusterSpec(kind="sync")
    synthesize_archive(str(root / "archive"), SynthConfig(tiles=300, footprints_only=True, seed=1, compact_xml=True))
    index_archive(str(root / "archive"), catalog_url=str(root / "catalog"), cluster=sync)
    overlaps_job(str(root / "catalog"), cluster=sync)
    combinations_job(str(root / "catalog"), cluster=sync)
    return str(root / "catalog")


def test_plan_tasks_on_a_cluster_equal_one_sequential_placement(footprint_catalog):
    from spectralearth.catalog import read_tiles
    from spectralearth.pipelines.plan import plan_job, plan_tables, read_plan
    from spectralearth.platform import tables

    from spectralearth.pipelines.plan import _tiles_with_masks

    assert _tiles_with_masks(footprint_catalog, None) == 0  # footprints only: nothing to filter with
    report = plan_job(footprint_catalog, cluster=ClusterSpec(kind="local", n_workers=2), n_tasks=6)
    patches, views = read_plan(footprint_catalog)
    tiles = read_tiles(footprint_catalog)
    whole, counts = place_patches(tiles, tables.read_table(f"{footprint_catalog}/combinations.parquet"))
    wide = select_views(whole, tiles)
    assert report.tasks == len(tables.manifest(plan_tables(footprint_catalog)[0])["parts"]) >= 3
    assert {k: report.placement[k] for k in counts} == counts
    key = ["crs", "x0", "y0"]
    assert sorted(map(tuple, patches[key].to_numpy())) == sorted(map(tuple, whole[key].to_numpy()))
    # the same views per window, numbered plan-wide: patch k's views are rows view_start .. + n_views
    assert patches["patch"].tolist() == list(range(len(patches))) and views["view"].tolist() == list(range(len(views)))
    assert (views.groupby("patch").size().to_numpy() == patches["n_views"].to_numpy()).all()
    assert (patches["view_start"].to_numpy() == np.concatenate([[0], np.cumsum(patches["n_views"])[:-1]])).all()
    got = {(tuple(patches[key].to_numpy()[p]), t) for p, t in zip(views["patch"], views["tile"])}
    want = {(tuple(whole[key].to_numpy()[p]), t) for p, t in zip(wide["patch"], wide["tile"])}
    assert got == want and len(views) == report.views > len(patches) == report.patches > 1000
    assert report.tiles_from == "planning copy"  # the tasks read their tiles; this process read none


def test_plan_from_the_catalog_equals_the_plan_from_the_planning_copy(footprint_catalog, tmp_path):
    """Without the overlaps job's planning copy (or with a catalog indexed since) the job reads the catalog: same plan."""
    import shutil

    from spectralearth.catalog.catalogio import read_item_dicts, write_items
    from spectralearth.pipelines.plan import plan_job, read_plan

    sync = ClusterSpec(kind="sync")
    copied = str(tmp_path / "catalog")
    shutil.copytree(footprint_catalog, copied)
    a = plan_job(copied, cluster=sync, n_tasks=4)
    pa_, va = read_plan(copied)
    shutil.rmtree(tmp_path / "catalog" / "planning_tiles.parquet")
    b = plan_job(copied, cluster=sync, n_tasks=4)
    pb, vb = read_plan(copied)
    assert (a.tiles_from, b.tiles_from) == ("planning copy", "catalog")
    assert (a.patches, a.views, a.placement) == (b.patches, b.views, b.placement) and a.patches > 1000
    key = ["crs", "x0", "y0"]

    def pairs(p, v):
        return {(tuple(p[key].to_numpy()[i]), t) for i, t in zip(v["patch"], v["tile"])}

    assert pairs(pa_, va) == pairs(pb, vb)
    # a catalog indexed again (here: one tile fewer) is not the one the copy describes: it is read itself
    shutil.copytree(footprint_catalog, tmp_path / "again")
    write_items(read_item_dicts(footprint_catalog)[:-1], str(tmp_path / "again"))
    c = plan_job(str(tmp_path / "again"), cluster=sync, n_tasks=4)
    assert c.tiles_from == "catalog" and c.tiles == a.tiles - 1
    # as many tiles, one of them another product: the ids' digest in the components' footer tells
    shutil.copytree(footprint_catalog, tmp_path / "renamed")
    items = read_item_dicts(footprint_catalog)
    items[7]["id"] = items[7]["id"] + "-reprocessed"
    write_items(items, str(tmp_path / "renamed"))
    d = plan_job(str(tmp_path / "renamed"), cluster=sync, n_tasks=4)
    assert d.tiles_from == "catalog" and d.tiles == a.tiles


def test_a_plan_that_fails_half_way_leaves_the_last_plan(footprint_catalog, monkeypatch):
    import spectralearth.pipelines.plan as plan_module
    from spectralearth.pipelines.plan import plan_job, plan_tables, read_plan
    from spectralearth.platform import storage

    sync = ClusterSpec(kind="sync")
    plan_job(footprint_catalog, cluster=sync, n_tasks=3)
    before, _ = read_plan(footprint_catalog)
    real = plan_module._renumber_bundle

    def dies_on_the_second(k, *args, **kwargs):
        if k == 1:
            raise OSError("storage went away while writing part 1")
        return real(k, *args, **kwargs)

    monkeypatch.setattr(plan_module, "_renumber_bundle", dies_on_the_second)
    with pytest.raises(OSError, match="part 1"):
        plan_job(footprint_catalog, cluster=sync, params=PlanParams(max_overlap=0.5), n_tasks=3)
    after, _ = read_plan(footprint_catalog)
    pd.testing.assert_frame_equal(pd.DataFrame(after.drop(columns="geometry")), pd.DataFrame(before.drop(columns="geometry")))
    for url in plan_tables(footprint_catalog):  # only the committed run is left
        fs, path = storage.filesystem(url)
        runs = {p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)} - {"_manifest.json"}
        assert len(runs) == 1, runs
