"""Partitioned tables: parts written by tasks, one atomic commit, old runs invisible and then removed."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from spectralearth.platform import storage, tables


def _frame(lo: int, hi: int) -> gpd.GeoDataFrame:
    x = np.arange(lo, hi, dtype=float)
    return gpd.GeoDataFrame({"row": np.arange(lo, hi, dtype=np.int64)}, geometry=shapely.points(x, x), crs=4326)


@pytest.mark.parametrize("storage_root", ["local", "s3"], indirect=True)
def test_commit_replaces_the_table_at_once(storage_root):
    url = storage.join(storage_root.url, "t.parquet")
    opts = storage_root.storage_options
    first = tables.TableWriter(url, opts)
    first.commit([first.part(k, _frame(10 * k, 10 * k + 10), lo=10 * k) for k in range(3)])
    got = tables.read_table(url, storage_options=opts)
    assert isinstance(got, gpd.GeoDataFrame) and got.crs.to_epsg() == 4326
    assert got["row"].tolist() == list(range(30))
    assert [p["lo"] for p in tables.manifest(url, opts)["parts"]] == [0, 10, 20]

    # a second run writes its parts, then dies before committing: readers still see the first run
    second = tables.TableWriter(url, opts)
    second.part(0, _frame(100, 105))
    assert tables.read_table(url, storage_options=opts)["row"].tolist() == list(range(30))
    # a third run commits (parts handed over out of order: the table keeps part order)
    third = tables.TableWriter(url, opts)
    entries = [third.part(k, _frame(200 + k, 201 + k)) for k in (1, 0)]
    doc = third.commit(entries)
    assert doc["rows"] == 2 and tables.read_table(url, storage_options=opts)["row"].tolist() == [200, 201]
    fs, path = storage.filesystem(url, opts)
    fs.invalidate_cache()
    left = sorted(p[len(path.rstrip("/")) + 1 :] for p in fs.find(path))  # objects (an S3 server may keep empty folders)
    assert left == [tables.MANIFEST, *sorted(e["file"] for e in entries)]  # the first and the dead run are gone
    assert tables.read_table(url, storage_options=opts, parts=[1])["row"].tolist() == [201]


def test_a_part_of_another_run_is_refused(tmp_path):
    url = str(tmp_path / "t.parquet")
    a, b = tables.TableWriter(url), tables.TableWriter(url)
    entry = a.part(0, _frame(0, 2))
    with pytest.raises(ValueError, match=f"not of run '{b.run}'"):
        b.commit([entry])
    assert not tables.exists(url)


def test_missing_and_foreign_tables_are_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no table at .*nothing.parquet"):
        tables.read_table(str(tmp_path / "nothing.parquet"))
    bad = tmp_path / "bad.parquet"
    bad.mkdir()
    (bad / tables.MANIFEST).write_text(json.dumps({"format": "something-else", "parts": []}))
    with pytest.raises(ValueError, match="not a table manifest"):
        tables.manifest(str(bad))


def test_a_single_file_reads_as_one_part_and_is_replaced_by_a_table(tmp_path):
    url = tmp_path / "t.parquet"
    pd.DataFrame({"row": [1, 2, 3]}).to_parquet(url)
    assert tables.exists(str(url)) and tables.read_table(str(url))["row"].tolist() == [1, 2, 3]
    w = tables.TableWriter(str(url))
    w.commit([w.part(0, pd.DataFrame({"row": [7]}))])
    assert url.is_dir() and tables.read_table(str(url))["row"].tolist() == [7]


def test_abandon_removes_the_runs_parts_only(tmp_path):
    url = str(tmp_path / "t.parquet")
    w = tables.TableWriter(url)
    w.commit([w.part(0, pd.DataFrame({"row": [1]}))])
    dead = tables.TableWriter(url)
    dead.part(0, pd.DataFrame({"row": [2]}))
    dead.abandon()
    assert not (tmp_path / "t.parquet" / f"run={dead.run}").exists()
    assert tables.read_table(url)["row"].tolist() == [1]
