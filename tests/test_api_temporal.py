"""The embedded backend's datetime search: intervals parsed as RFC 3339, spans matched by intersection."""

from __future__ import annotations

import pytest

from spectralearth.catalog.api.temporal import intersects_filter, parse_interval


def test_intervals_and_instants():
    assert parse_interval("2022-06-01T00:00:00Z/2023-06-30T12:00:00+02:00") == (
        "2022-06-01T00:00:00.000000Z", "2023-06-30T10:00:00.000000Z")
    assert parse_interval("2022-06-01t10:20:30.5z") == ("2022-06-01T10:20:30.500000Z",) * 2
    assert parse_interval("../2023-01-01T00:00:00Z") == (None, "2023-01-01T00:00:00.000000Z")
    assert parse_interval("2023-01-01T00:00:00Z/") == ("2023-01-01T00:00:00.000000Z", None)


@pytest.mark.parametrize("bad, says", [("../..", "open at both ends"), ("2023-02-01T00:00:00Z/2023-01-01T00:00:00Z", "ends before"),
                                       ("yesterday", "RFC 3339"), ("a/b/c", "more than one"), ("2023-01-01T00:00:00", "time zone")])
def test_bad_datetime_named(bad, says):
    with pytest.raises(ValueError, match=says):
        parse_interval(bad)


def _matches(flt: dict, props: dict) -> bool:
    """Evaluate the generated CQL2 (and/or of <=, >= on timestamps) on one item's properties."""
    op, args = flt["op"], flt["args"]
    if op in ("and", "or"):
        results = [_matches(a, props) for a in args]
        return all(results) if op == "and" else any(results)
    value, ts = props.get(args[0]["property"]), args[1]["timestamp"]
    if value is None:
        return False
    return value <= ts if op == "<=" else value >= ts


def test_span_intersection_not_containment():
    q = "2022-07-01T00:00:00Z/2022-12-31T00:00:00Z"
    f = intersects_filter(q, has_span=True)
    inside = {"datetime": "2022-08-01T00:00:00.000000Z", "start_datetime": "2022-08-01T00:00:00.000000Z", "end_datetime": "2022-09-01T00:00:00.000000Z"}
    crossing = {"datetime": "2022-06-15T00:00:00.000000Z", "start_datetime": "2022-06-15T00:00:00.000000Z", "end_datetime": "2022-10-01T00:00:00.000000Z"}
    around = {"datetime": "2022-06-15T00:00:00.000000Z", "start_datetime": "2022-01-01T00:00:00.000000Z", "end_datetime": "2023-06-01T00:00:00.000000Z"}
    before = {"datetime": "2022-03-01T00:00:00.000000Z", "start_datetime": "2022-03-01T00:00:00.000000Z", "end_datetime": "2022-06-30T00:00:00.000000Z"}
    assert [_matches(f, p) for p in (inside, crossing, around, before)] == [True, True, True, False]
    tiles = intersects_filter(q, has_span=False)  # items with a datetime only
    assert _matches(tiles, {"datetime": "2022-08-01T00:00:00.000000Z"})
    assert not _matches(tiles, {"datetime": "2023-08-01T00:00:00.000000Z"})
    open_end = intersects_filter("2022-09-15T00:00:00Z/..", has_span=True)
    assert _matches(open_end, crossing) and not _matches(open_end, before)
    with pytest.raises(ValueError, match="no datetime"):
        intersects_filter(q, has_span=False, has_datetime=False)
