"""Reading EnMAP L2A products: names, METADATA.XML, discovery, image checks and footprints."""

from spectralearth.catalog.enmap.footprint import Footprint, mask_footprint, utm_epsg_for, valid_footprint
from spectralearth.catalog.enmap.image import ImageInfo, check_image, tiff_data_end
from spectralearth.catalog.enmap.metadata import Band, EnmapMetadata, parse_metadata, utm_epsg
from spectralearth.catalog.enmap.naming import SUFFIXES, ProductName, looks_like_product, split_file_name
from spectralearth.catalog.enmap.product import (
    Discovery,
    ProductSource,
    discover_products,
    object_size,
    open_file,
    open_raster,
    read_metadata,
)

__all__ = [
    "SUFFIXES",
    "Band",
    "Discovery",
    "EnmapMetadata",
    "Footprint",
    "ImageInfo",
    "ProductName",
    "ProductSource",
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
    "utm_epsg",
    "utm_epsg_for",
    "valid_footprint",
]
