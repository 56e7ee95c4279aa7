"""Errors raised for bad products. Each names the product and what was wrong."""

from __future__ import annotations

__all__ = ["ProductError", "MetadataError", "ImageError", "NamingError"]


class ProductError(Exception):
    """A product that cannot be used. ``stage`` says where it failed (discover, metadata, image, footprint, item)."""

    stage = "product"

    def __init__(self, product: str, message: str, *, key: str | None = None):
        self.product = product
        self.key = key
        self.message = message
        where = f" [{key}]" if key else ""
        super().__init__(f"{product}{where}: {message}")


class NamingError(ProductError):
    """A file or folder name that is not an EnMAP L2A product name."""

    stage = "discover"


class MetadataError(ProductError):
    """METADATA.XML missing, malformed, or lacking a required element (``key`` is its path)."""

    stage = "metadata"


class ImageError(ProductError):
    """SPECTRAL_IMAGE.TIF or a QL mask unreadable, truncated, or inconsistent with the metadata."""

    stage = "image"
