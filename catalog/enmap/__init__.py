"""Reading EnMAP L2A products: names, METADATA.XML, discovery, image checks and footprints."""

from spectralearth.catalog.enmap.footprint import Footprint, mask_footprint, utm_epsg_for, valid_footprint
from spectralearth.catalog.enmap.image import ImageInfo, check_image, tiff_data_end
from spectralearth.catalog.enmap.metadata import Band, EnmapMetadata, parse_metadata, utm_epsg
from spectralearth.catalog.enmap.naming import SUFFIXES, ProductName, looks_like_product, split_file_name
from spectralearth.catalog.enmap.discovery import Discovery, archive_kind, discover_products, unsafe_member_reason
from spectralearth.catalog.enmap.product import (
    MAX_XML_BYTES,
    ProductSource,
    object_size,
    open_file,
    open_raster,
    read_metadata,
)

__all__ = [
    "MAX_XML_BYTES",
    "SUFFIXES",
    "Band",
    "Discovery",
    "EnmapMetadata",
    "Footprint",
    "ImageInfo",
    "ProductName",
    "ProductSource",
    "archive_kind",
    "check_image",
    "discover_products",
    "looks_like_product",
    "mask_footprint",
    "object_size",
    "open_file",
    "open_raster",
    "parse_metadata",
    "read_metadata",
    "split_file_name",
    "tiff_data_end",
    "unsafe_member_reason",
    "utm_epsg",
    "utm_epsg_for",
    "valid_footprint",
]
