"""EnMAP L2A products -> STAC tile catalog.

The whole public API of the catalog on one screen::

    from spectralearth.catalog import index_archive, read_tiles, create_item, create_collection

* :func:`index_archive` - the index job (discover, parse, footprint, references, items, quarantine).
* :func:`read_tiles` - the tile table as a GeoDataFrame (the input of the pipelines).
* :func:`create_item` / :func:`create_collection` - STAC objects from parsed metadata.
* :mod:`spectralearth.catalog.enmap` - the EnMAP product reader.
* :mod:`spectralearth.catalog.synth` - the synthetic archive generator.
"""

from spectralearth.catalog.catalogio import read_item_dicts, read_table, read_tiles
from spectralearth.catalog.errors import (
    ImageError,
    MetadataError,
    NamingError,
    NothingFoundError,
    ProductError,
    TransientError,
)
from spectralearth.catalog.index import IndexConfig, IndexReport, QuarantineRecord, index_archive
from spectralearth.catalog.items import create_collection, create_item, create_item_dict

__all__ = [
    "IndexConfig",
    "IndexReport",
    "ImageError",
    "MetadataError",
    "NamingError",
    "NothingFoundError",
    "ProductError",
    "QuarantineRecord",
    "TransientError",
    "create_collection",
    "create_item",
    "create_item_dict",
    "index_archive",
    "read_item_dicts",
    "read_table",
    "read_tiles",
]
