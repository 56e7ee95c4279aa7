"""STAC 1.1 items and collection for EnMAP L2A tiles.

Pure functions: parsed metadata + footprint in, ``pystac`` objects out. The
item geometry is the *valid-data* footprint in WGS84; the grid is described with
the projection extension; the spectral image asset lists the bands with
``eo:center_wavelength``/``eo:full_width_half_max`` in micrometres (STAC 1.1
common ``bands``), ``nodata`` and ``data_type``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import pystac
import shapely.geometry

__all__ = [
    "COLLECTION_ID",
    "ENMAP_EXTENSION",
    "EO_EXTENSION",
    "PROJ_EXTENSION",
    "ASSET_KEYS",
    "create_item",
    "create_item_dict",
    "create_collection",
]

COLLECTION_ID = "enmap-l2a-tiles"
EO_EXTENSION = "https://stac-extensions.github.io/eo/v2.0.0/schema.json"
PROJ_EXTENSION = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
ENMAP_EXTENSION = "https://spectralearth.github.io/stac-enmap/v1.0.0/schema.json"

#: product file suffix -> (asset key, media type, roles, title)
ASSET_KEYS: dict[str, tuple[str, str, list[str], str]] = {
    "SPECTRAL_IMAGE.TIF": ("spectral_image", pystac.MediaType.GEOTIFF, ["data", "reflectance"], "Surface reflectance (x 1e4)"),
    "METADATA.XML": ("metadata", pystac.MediaType.XML, ["metadata"], "EnMAP product metadata"),
    "QL_QUALITY_CLASSES.TIF": ("ql_quality_classes", pystac.MediaType.GEOTIFF, ["data", "land-water"], "Land/water/background classes"),
    "QL_QUALITY_CLOUD.TIF": ("ql_quality_cloud", pystac.MediaType.GEOTIFF, ["data", "cloud"], "Cloud mask"),
    "QL_QUALITY_CLOUDSHADOW.TIF": ("ql_quality_cloudshadow", pystac.MediaType.GEOTIFF, ["data", "cloud-shadow"], "Cloud shadow mask"),
    "QL_QUALITY_HAZE.TIF": ("ql_quality_haze", pystac.MediaType.GEOTIFF, ["data"], "Haze mask"),
    "QL_QUALITY_CIRRUS.TIF": ("ql_quality_cirrus", pystac.MediaType.GEOTIFF, ["data", "cloud"], "Cirrus mask"),
    "QL_QUALITY_SNOW.TIF": ("ql_quality_snow", pystac.MediaType.GEOTIFF, ["data", "snow-ice"], "Snow mask"),
    "QL_QUALITY_TESTFLAGS.TIF": ("ql_quality_testflags", pystac.MediaType.GEOTIFF, ["data"], "Test flags"),
    "QL_PIXELMASK.TIF": ("ql_pixelmask", pystac.MediaType.GEOTIFF, ["data"], "Defective pixel mask"),
    "QL_VNIR.TIF": ("ql_vnir", pystac.MediaType.GEOTIFF, ["overview"], "VNIR quicklook"),
    "QL_SWIR.TIF": ("ql_swir", pystac.MediaType.GEOTIFF, ["overview"], "SWIR quicklook"),
}


def _iso(dt: datetime) -> str:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _bands(metadata) -> list[dict[str, Any]]:
    return [
        {
            "name": f"B{b.number:03d}",
            "eo:center_wavelength": round(float(b.wavelength_nm) / 1000.0, 6),
            "eo:full_width_half_max": round(float(b.fwhm_nm) / 1000.0, 6),
        }
        for b in metadata.bands
    ]


def create_item_dict(
    metadata,
    footprint,
    *,
    files: Mapping[str, str],
    grid: Mapping[str, Any] | None = None,
    references_href: str | None = None,
    delivery: str = "folder",
    extra_properties: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the STAC item of one tile as a plain dict (fast path for large archives).

    Args:
        metadata: parsed ``EnmapMetadata``.
        footprint: ``Footprint`` (its ``wgs84`` geometry becomes the item geometry).
        files: product file suffix -> URL of that file (or ZIP member).
        grid: ``{"epsg", "transform", "shape"}`` from the raster (or derived from metadata).
        references_href: URL of the kerchunk references JSON, if written.
        delivery: 'folder' or 'zip'.
        extra_properties: more properties to merge (e.g. ``enmap:superseded``).
    """
    geom = footprint.wgs84
    epsg = (grid or {}).get("epsg") or footprint.epsg or metadata.epsg
    props: dict[str, Any] = {
        "datetime": _iso(metadata.start_time),
        "start_datetime": _iso(metadata.start_time),
        "end_datetime": _iso(metadata.stop_time or metadata.start_time),
        "platform": "enmap",
        "instruments": ["hsi"],
        "constellation": "enmap",
        "gsd": float(metadata.pixel_size or 30.0),
        "proj:code": f"EPSG:{int(epsg)}" if epsg else None,
        "enmap:product_id": metadata.product_id,
        "enmap:datatake_id": int(metadata.datatake_id),
        "enmap:tile_id": int(metadata.tile_id),
        "enmap:processor_version": str(metadata.processor_version),
        "enmap:schema_version": str(metadata.schema_version),
        "enmap:delivery": delivery,
        "enmap:footprint_source": footprint.source,
    }
    if grid:
        props["proj:shape"] = [int(v) for v in grid["shape"]]
        props["proj:transform"] = [float(v) for v in list(grid["transform"])[:6]]
    if footprint.valid_fraction is not None:
        props["enmap:valid_fraction"] = round(float(footprint.valid_fraction), 4)
    for key, attr in (("eo:cloud_cover", "cloud_cover"), ("eo:snow_cover", "snow_cover")):
        value = getattr(metadata, attr, None)
        if value is not None:
            props[key] = float(value)
    for key, attr in (
        ("enmap:cloud_shadow_cover", "cloud_shadow_cover"),
        ("enmap:haze_cover", "haze_cover"),
        ("enmap:cirrus_cover", "cirrus_cover"),
        ("enmap:water_cover", "water_cover"),
        ("enmap:across_off_nadir", "across_off_nadir_deg"),
        ("enmap:scene_azimuth", "scene_azimuth_deg"),
        ("enmap:sun_elevation", "sun_elevation_deg"),
        ("enmap:sun_azimuth", "sun_azimuth_deg"),
    ):
        value = getattr(metadata, attr, None)
        if value is not None:
            props[key] = float(value)
    if extra_properties:
        props.update(extra_properties)
    props = {k: v for k, v in props.items() if v is not None}

    assets: dict[str, dict[str, Any]] = {}
    for suffix, href in sorted(files.items()):
        if suffix not in ASSET_KEYS:
            continue
        key, media, roles, title = ASSET_KEYS[suffix]
        asset: dict[str, Any] = {"href": href, "type": str(media), "roles": list(roles), "title": title}
        if suffix == "SPECTRAL_IMAGE.TIF":
            asset["bands"] = _bands(metadata)
            asset["nodata"] = -32768
            asset["data_type"] = "int16"
        elif suffix.startswith("QL_"):
            asset["data_type"] = "uint8"
        assets[key] = asset
    if "spectral_image" not in assets and metadata.bands:
        # footprint-only products still describe their bands at item level
        props["bands"] = _bands(metadata)
    if references_href:
        assets["references"] = {
            "href": references_href,
            "type": "application/json",
            "roles": ["references", "kerchunk"],
            "title": "Kerchunk references to SPECTRAL_IMAGE.TIF (open with xarray engine='kerchunk')",
        }

    bbox = list(shapely.bounds(geom))
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [EO_EXTENSION, PROJ_EXTENSION, ENMAP_EXTENSION],
        "id": metadata.product_id,
        "collection": COLLECTION_ID,
        "geometry": shapely.geometry.mapping(geom),
        "bbox": [float(v) for v in bbox],
        "properties": props,
        "links": [{"rel": "collection", "href": "./collection.json", "type": "application/json"}],
        "assets": assets,
    }


def create_item(metadata, footprint, **kwargs: Any) -> pystac.Item:
    """Build the STAC item of one tile (see :func:`create_item_dict` for arguments)."""
    return pystac.Item.from_dict(create_item_dict(metadata, footprint, **kwargs), preserve_dict=False)


def create_collection(
    items: Iterable[Mapping[str, Any]] | None = None,
    *,
    bbox: Sequence[float] | None = None,
    interval: tuple[datetime | None, datetime | None] | None = None,
    items_href: str | None = None,
    extra_assets: Mapping[str, Mapping[str, Any]] | None = None,
    summaries: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The STAC Collection of the tile catalog, as a dict (extent from the items if not given)."""
    if items is not None and (bbox is None or interval is None):
        xs0, ys0, xs1, ys1, times = [], [], [], [], []
        for it in items:
            b = it["bbox"]
            xs0.append(b[0]), ys0.append(b[1]), xs1.append(b[2]), ys1.append(b[3])
            times.append(it["properties"]["datetime"])
        if xs0:
            bbox = bbox or [min(xs0), min(ys0), max(xs1), max(ys1)]
            interval = interval or (min(times), max(times))
    bbox = list(bbox or [-180.0, -90.0, 180.0, 90.0])
    start, end = interval or (None, None)
    start = _iso(start) if isinstance(start, datetime) else start
    end = _iso(end) if isinstance(end, datetime) else end
    assets: dict[str, Any] = {}
    if items_href:
        assets["geoparquet-items"] = {
            "href": items_href,
            "type": "application/vnd.apache.parquet",
            "roles": ["stac-items"],
            "title": "Tile items (stac-geoparquet)",
        }
    if extra_assets:
        assets.update({k: dict(v) for k, v in extra_assets.items()})
    collection = {
        "type": "Collection",
        "stac_version": "1.1.0",
        "stac_extensions": [],
        "id": COLLECTION_ID,
        "title": "EnMAP L2A tiles",
        "description": (
            "EnMAP L2A surface reflectance tiles (30 m, up to 224 bands), one item per tile, "
            "geometry = valid-data footprint. Newest processing version wins for duplicate deliveries."
        ),
        "license": "other",
        "keywords": ["EnMAP", "hyperspectral", "L2A", "surface reflectance"],
        "providers": [{"name": "DLR", "roles": ["producer", "licensor"], "url": "https://www.enmap.org"}],
        "extent": {"spatial": {"bbox": [bbox]}, "temporal": {"interval": [[start, end]]}},
        "summaries": {"platform": ["enmap"], "instruments": ["hsi"], "gsd": [30.0], **dict(summaries or {})},
        "links": [],
        "assets": assets,
    }
    return collection
