"""Offline STAC validation: shipped schemas, valid and broken Items and Collections."""

from __future__ import annotations

import copy
import json
import socket
from datetime import datetime, timezone
from pathlib import Path

import pystac
import pytest

from spectralearth.catalog import schemas
from spectralearth.catalog.schemas import (
    ENMAP_EXTENSION,
    EO_EXTENSION,
    FILE_EXTENSION,
    PROJECTION_EXTENSION,
    SchemaNotShippedError,
    SchemaValidationError,
    validate_collection,
    validate_item,
)

SCHEMA_DIR = Path(schemas.__file__).parent
ITEM_ID = "ENMAP01-____L2A-DT0000326721_20170626T102020Z_001_V000204_20200406T201930Z"


def _item() -> dict:
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [EO_EXTENSION, PROJECTION_EXTENSION, ENMAP_EXTENSION],
        "id": ITEM_ID,
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[10.60, 47.70], [11.05, 47.72], [11.02, 48.01], [10.58, 47.99], [10.60, 47.70]]],
        },
        "bbox": [10.58, 47.70, 11.05, 48.01],
        "properties": {
            "datetime": "2017-06-26T10:20:20Z",
            "platform": "enmap",
            "instruments": ["hsi"],
            "eo:cloud_cover": 12.5,
            "proj:code": "EPSG:32632",
            "proj:shape": [1212, 1128],
            "proj:transform": [30.0, 0.0, 628785.0, 0.0, -30.0, 5294265.0],
            "enmap:datatake_id": 326721,
            "enmap:tile_id": 1,
            "enmap:processor_version": "01.04.02",
            "enmap:schema_version": "00.02.00",
            "enmap:product_id": ITEM_ID,
        },
        "links": [],
        "assets": {
            "spectral_image": {
                "href": f"s3://archive/{ITEM_ID}/{ITEM_ID}-SPECTRAL_IMAGE.TIF",
                "type": "image/tiff; application=geotiff",
                "roles": ["data", "reflectance"],
                "nodata": -32768,
                "data_type": "int16",
                "bands": [
                    {"name": "B1", "eo:center_wavelength": 0.41863, "eo:full_width_half_max": 0.00689},
                    {"name": "B2", "eo:center_wavelength": 0.42346, "eo:full_width_half_max": 0.00695},
                    {"name": "B224", "eo:center_wavelength": 2.44551, "eo:full_width_half_max": 0.00761},
                ],
            },
            "metadata": {
                "href": f"s3://archive/{ITEM_ID}/{ITEM_ID}-METADATA.XML",
                "type": "application/xml",
                "roles": ["metadata"],
            },
        },
    }


def _collection() -> dict:
    return {
        "type": "Collection",
        "stac_version": "1.1.0",
        "stac_extensions": [ENMAP_EXTENSION],
        "id": "enmap-l2a-tiles",
        "description": "EnMAP L2A tiles",
        "license": "other",
        "extent": {
            "spatial": {"bbox": [[10.58, 47.70, 11.05, 48.01]]},
            "temporal": {"interval": [["2017-06-26T10:20:20Z", "2017-06-26T10:20:20Z"]]},
        },
        "summaries": {"enmap:processor_version": ["01.04.02"], "platform": ["enmap"]},
        "links": [],
    }


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(self, address, *args, **kwargs):
        raise AssertionError(f"network access attempted: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda address, *a, **k: refuse(None, address))


def test_valid_item_validates_offline(no_network):
    schemas._registry.cache_clear()
    schemas._validator.cache_clear()
    validate_item(_item())


def test_valid_item_with_file_extension():
    item = _item()
    item["stac_extensions"].append(FILE_EXTENSION)
    item["assets"]["metadata"]["file:size"] = 4_194_304
    validate_item(item)
    item["assets"]["metadata"]["file:size"] = "4 MB"
    with pytest.raises(SchemaValidationError, match=r"file:size"):
        validate_item(item)


def test_pystac_item_validates():
    item = pystac.Item(
        id="tile-1",
        geometry=_item()["geometry"],
        bbox=_item()["bbox"],
        datetime=datetime(2017, 6, 26, 10, 20, 20, tzinfo=timezone.utc),
        properties={"proj:code": "EPSG:32632", "proj:shape": [10, 10]},
        stac_extensions=[PROJECTION_EXTENSION],
    )
    validate_item(item.to_dict())


@pytest.mark.parametrize(
    ("mutate", "path", "needle"),
    [
        (lambda i: i["properties"].pop("datetime"), "$.properties", "'datetime' is a required property"),
        (lambda i: i["properties"].__setitem__("datetime", "26.06.2017 10:20"), "$.properties.datetime",
         "is not a 'date-time'"),
        (lambda i: i["properties"].__setitem__("proj:shape", "1212x1128"), "$.properties['proj:shape']",
         "is not of type 'array'"),
        (lambda i: i["properties"].__setitem__("proj:shape", [1212.5, 1128]), "$.properties['proj:shape'][0]",
         "is not of type 'integer'"),
        (lambda i: i["properties"].__setitem__("proj:transform", [30.0, 0.0]), "$.properties['proj:transform']",
         "too short"),
        (lambda i: i["properties"].__setitem__("eo:cloud_cover", 120), "$.properties['eo:cloud_cover']",
         "maximum of 100"),
        (lambda i: i["properties"].__setitem__("enmap:datatake_id", "326721"), "$.properties['enmap:datatake_id']",
         "is not of type 'integer'"),
        (lambda i: i["properties"].pop("enmap:tile_id"), "$.properties", "'enmap:tile_id' is a required property"),
        (lambda i: i["assets"]["spectral_image"]["bands"][1].__setitem__("eo:center_wavelength", "423 nm"),
         "$.assets.spectral_image.bands[1]['eo:center_wavelength']", "is not of type 'number'"),
        (lambda i: i["geometry"].__setitem__("type", "Triangle"), "$.geometry.type", "'Triangle' is not one of"),
        (lambda i: i.pop("links"), "$", "'links' is a required property"),
    ],
)
def test_broken_item_names_id_and_path(mutate, path, needle):
    item = _item()
    mutate(item)
    with pytest.raises(SchemaValidationError) as info:
        validate_item(item)
    err = info.value
    assert err.object_id == ITEM_ID and ITEM_ID in str(err)
    assert err.json_path == path, str(err)
    assert needle in str(err)
    assert err.schema_url in str(err)
    assert err.errors and all(isinstance(p, str) for p, _ in err.errors)


def test_unknown_extension_is_refused_not_downloaded(no_network):
    item = _item()
    sar = "https://stac-extensions.github.io/sar/v1.0.0/schema.json"
    item["stac_extensions"].append(sar)
    with pytest.raises(SchemaNotShippedError) as info:
        validate_item(item)
    assert info.value.json_path == "$.stac_extensions[3]"
    assert info.value.schema_url == sar
    assert sar in str(info.value) and ITEM_ID in str(info.value)


def test_unsupported_stac_version():
    item = _item()
    item["stac_version"] = "1.0.0"
    with pytest.raises(SchemaNotShippedError, match=r"stac_version '1.0.0' is not supported"):
        validate_item(item)


def test_extension_fields_without_declaring_them_are_unchecked_but_declared_ones_are():
    item = _item()
    item["stac_extensions"] = [EO_EXTENSION, PROJECTION_EXTENSION]
    item["properties"]["enmap:datatake_id"] = "not checked"
    validate_item(item)
    item["stac_extensions"].append(ENMAP_EXTENSION)
    with pytest.raises(SchemaValidationError, match="enmap"):
        validate_item(item)


def test_non_json_values_are_reported():
    item = _item()
    item["properties"]["eo:cloud_cover"] = float("nan")
    with pytest.raises(SchemaValidationError, match="not plain JSON"):
        validate_item(item)
    with pytest.raises(SchemaValidationError, match="expected a JSON object"):
        validate_item([_item()])


def test_collection_valid_and_broken():
    validate_collection(_collection())
    broken = _collection()
    del broken["extent"]
    with pytest.raises(SchemaValidationError) as info:
        validate_collection(broken)
    assert "STAC Collection 'enmap-l2a-tiles'" in str(info.value)
    assert "'extent' is a required property" in str(info.value)
    bad_summary = copy.deepcopy(_collection())
    bad_summary["summaries"]["enmap:processor_version"] = [1, 4, 2]
    with pytest.raises(SchemaValidationError, match="enmap"):
        validate_collection(bad_summary)
    wrong_type = _collection()
    wrong_type["type"] = "Feature"
    with pytest.raises(SchemaValidationError):
        validate_collection(wrong_type)


def _refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def test_every_ref_of_every_shipped_schema_resolves_offline(no_network):
    registry = schemas._registry()
    files = sorted(SCHEMA_DIR.rglob("*.json"))
    assert len(files) >= 20
    checked = 0
    for path in files:
        contents = json.loads(path.read_text())
        base = contents.get("$id", "https://" + path.relative_to(SCHEMA_DIR).as_posix()).rstrip("#")
        resolver = registry.resolver(base_uri=base)
        for ref in _refs(contents):
            resolver.lookup(ref)  # raises if the target is not shipped
            checked += 1
    assert checked > 100


def test_shipped_files_sit_at_their_canonical_url():
    known_typos = {"https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/commonjson"}  # as published
    for path in SCHEMA_DIR.rglob("*.json"):
        declared = json.loads(path.read_text())["$id"].rstrip("#")
        if declared in known_typos:
            continue
        assert declared == "https://" + path.relative_to(SCHEMA_DIR).as_posix()
    urls = schemas.shipped_schemas()
    for needed in (EO_EXTENSION, PROJECTION_EXTENSION, FILE_EXTENSION, ENMAP_EXTENSION,
                   "https://geojson.org/schema/Feature.json", "https://proj.org/schemas/v0.7/projjson.schema.json",
                   "https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json"):
        assert needed in urls
