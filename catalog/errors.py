"""Errors raised for bad products. Each names the product and what was wrong."""

from __future__ import annotations

__all__ = [
    "ProductError",
    "MetadataError",
    "ImageError",
    "NamingError",
    "TransientError",
    "NothingFoundError",
    "is_transient",
]


class ProductError(Exception):
    """A product that cannot be used. ``stage`` says where it failed (discover, metadata, image, footprint, item)."""

    stage = "product"
    retryable = False
    """True if the failure may pass (a later run tries the product again)."""

    def __init__(self, product: str, message: str, *, key: str | None = None):
        self.product = product
        self.key = key
        self.message = message
        where = f" [{key}]" if key else ""
        super().__init__(f"{product}{where}: {message}")

    def __reduce__(self):  # keep product/key/message across processes
        return (_rebuild, (type(self), self.product, self.message, self.key))


def _rebuild(cls, product, message, key):
    return cls(product, message, key=key)


class NamingError(ProductError):
    """A file or folder name that is not an EnMAP L2A product name."""

    stage = "discover"


class MetadataError(ProductError):
    """METADATA.XML missing, malformed, or lacking a required element (``key`` is its path)."""

    stage = "metadata"


class ImageError(ProductError):
    """SPECTRAL_IMAGE.TIF or a QL mask unreadable, truncated, or inconsistent with the metadata."""

    stage = "image"


class TransientError(ProductError):
    """The storage failed in a way that may pass (HTTP 5xx, throttling, a dropped connection)."""

    stage = "storage"
    retryable = True


class NothingFoundError(RuntimeError):
    """An archive in which no product was found; the message says what was searched and skipped."""


_TRANSIENT_CODES = {
    "InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "RequestTimeTooSkewed",
    "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests", "503", "500", "502", "504",
}


def is_transient(exc: BaseException) -> bool:
    """True if an exception (or one it was raised from) is a storage failure that may pass.

    Looks through ``__cause__``/``__context__`` for: botocore client errors with HTTP status
    5xx/429 or a throttling/internal error code, botocore and aiohttp connection errors and
    timeouts, aiohttp HTTP responses with status 5xx/429 (also under the ``FileNotFoundError``
    that fsspec's HTTP filesystem raises for them), and Python's own
    ``ConnectionError``/``TimeoutError``.
    """
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, TransientError | ConnectionError | TimeoutError):
            return True
        name = type(e).__name__
        module = type(e).__module__ or ""
        if module.startswith("botocore"):
            response = getattr(e, "response", None)
            if isinstance(response, dict):
                status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
                code = str(response.get("Error", {}).get("Code") or "")
                if status >= 500 or status == 429 or code in _TRANSIENT_CODES:
                    return True
            elif "Connection" in name or "Timeout" in name or name in ("IncompleteReadError", "ResponseStreamingError"):
                return True
        if module.startswith("aiohttp") and ("Connection" in name or "Disconnected" in name or "Payload" in name
                                              or "Timeout" in name):
            return True
        if module.startswith("aiohttp") and name == "ClientResponseError":
            # fsspec's HTTP filesystem raises a 5xx on a size lookup as FileNotFoundError from this
            status = int(getattr(e, "status", 0) or 0)
            if status >= 500 or status == 429:
                return True
        e = e.__cause__ or e.__context__
    return False
