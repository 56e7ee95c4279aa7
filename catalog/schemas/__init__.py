"""Offline JSON-schema validation of STAC Items and Collections.

The JSON schemas of STAC 1.1.0 (Item, Collection, Catalog and the common
metadata they reference), GeoJSON, PROJJSON 0.7, the ``eo`` (v2.0.0),
``projection`` (v2.0.0) and ``file`` (v2.1.0) extensions, and the platform's
own ``enmap`` extension ship with this package, in folders named after their
canonical URLs (``schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json``
holds ``https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json``).
Every ``$ref`` resolves from these files only; a schema that is not shipped is
an error (:class:`SchemaNotShippedError`), never a download.

    from spectralearth.catalog.schemas import validate_item
    validate_item(item.to_dict())   # raises SchemaValidationError naming id and JSON path
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema_specifications
import referencing
import referencing.exceptions
from referencing.jsonschema import DRAFT7

__all__ = [
    "ENMAP_EXTENSION",
    "EO_EXTENSION",
    "FILE_EXTENSION",
    "PROJECTION_EXTENSION",
    "STAC_VERSION",
    "SchemaNotShippedError",
    "SchemaValidationError",
    "shipped_schemas",
    "validate_collection",
    "validate_item",
]

STAC_VERSION = "1.1.0"
EO_EXTENSION = "https://stac-extensions.github.io/eo/v2.0.0/schema.json"
PROJECTION_EXTENSION = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
FILE_EXTENSION = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
ENMAP_EXTENSION = "https://spectralearth.github.io/stac-enmap/v1.0.0/schema.json"

_SCHEMA_DIR = Path(__file__).resolve().parent
_CORE = {
    "Item": "https://schemas.stacspec.org/v{version}/item-spec/json-schema/item.json",
    "Collection": "https://schemas.stacspec.org/v{version}/collection-spec/json-schema/collection.json",
}
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_MAX_LISTED = 10
_WEAK = ("anyOf", "oneOf")


class SchemaValidationError(ValueError):
    """A STAC object does not validate against one of its schemas.

    Attributes:
        object_id: the ``id`` of the Item or Collection.
        object_type: ``"Item"`` or ``"Collection"``.
        schema_url: the schema that failed.
        json_path: JSON path of the most relevant failing value (``$.properties.datetime``).
        errors: ``(json_path, message)`` of every error found against that schema.
    """

    def __init__(
        self,
        message: str,
        *,
        object_id: str | None,
        object_type: str,
        schema_url: str | None,
        json_path: str,
        errors: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.object_id = object_id
        self.object_type = object_type
        self.schema_url = schema_url
        self.json_path = json_path
        self.errors = errors


class SchemaNotShippedError(SchemaValidationError):
    """A schema URL (in ``stac_extensions`` or a ``$ref``) is not among the shipped schemas."""


def _url_for(path: Path) -> str:
    return "https://" + path.relative_to(_SCHEMA_DIR).as_posix()


def _normalise(url: str) -> str:
    return url[:-1] if url.endswith("#") else url


class _NotShipped(LookupError):
    pass


def _refuse(uri: str):
    raise _NotShipped(uri)


@functools.cache
def _registry() -> referencing.Registry:
    pairs = [(uri, jsonschema_specifications.REGISTRY[uri]) for uri in jsonschema_specifications.REGISTRY]
    for path in sorted(_SCHEMA_DIR.rglob("*.json")):
        contents = json.loads(path.read_text(encoding="utf-8"))
        resource = referencing.Resource.from_contents(contents, default_specification=DRAFT7)
        urls = {_url_for(path)}
        if isinstance(contents.get("$id"), str):
            urls.add(_normalise(contents["$id"]))
        pairs += [(url, resource) for url in urls]
    return referencing.Registry(retrieve=_refuse).with_resources(pairs).crawl()


def shipped_schemas() -> list[str]:
    """Canonical URLs of every shipped schema (one per file)."""
    return sorted(_url_for(p) for p in _SCHEMA_DIR.rglob("*.json"))


def _is_rfc3339(value: object) -> bool:
    if not isinstance(value, str):
        return True
    text = value.upper()
    if not _RFC3339.match(text):
        return False
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _format_checker() -> jsonschema.FormatChecker:
    checker = jsonschema.FormatChecker()
    checker.checks("date-time")(_is_rfc3339)
    return checker


@functools.cache
def _validator(url: str):
    registry = _registry()
    schema = registry[url].contents
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return cls(schema, registry=registry, format_checker=_format_checker())


def _label(object_type: str, object_id: Any) -> str:
    return f"STAC {object_type} {object_id!r}" if object_id is not None else f"STAC {object_type} (without id)"


def _validate(obj: Mapping, object_type: str) -> None:
    object_id = obj.get("id") if isinstance(obj, Mapping) else None
    label = _label(object_type, object_id)

    def fail(message, *, cls=SchemaValidationError, schema_url=None, json_path="$", errors=()):
        raise cls(f"{label}: {message}", object_id=object_id, object_type=object_type, schema_url=schema_url,
                  json_path=json_path, errors=errors)

    if not isinstance(obj, Mapping):
        fail(f"expected a JSON object, got {type(obj).__name__}")
    try:
        document = json.loads(json.dumps(obj, allow_nan=False))
    except (TypeError, ValueError) as exc:
        fail(f"is not plain JSON ({exc})")
    version = document.get("stac_version")
    core = _CORE[object_type].format(version=version)
    registry = _registry()
    if not isinstance(version, str) or core not in registry:
        fail(f"stac_version {version!r} is not supported (schemas shipped for {STAC_VERSION})",
             cls=SchemaNotShippedError, schema_url=core, json_path="$.stac_version")
    extensions = document.get("stac_extensions", [])
    urls = [core]
    if isinstance(extensions, list):
        for i, url in enumerate(extensions):
            if not isinstance(url, str) or _normalise(url) not in registry:
                fail(f"extension schema {url!r} is not shipped with spectralearth.catalog.schemas "
                     "(validation works offline only; add its JSON schema there)",
                     cls=SchemaNotShippedError, schema_url=url if isinstance(url, str) else None,
                     json_path=f"$.stac_extensions[{i}]")
            urls.append(_normalise(url))
    for url in urls:
        try:
            errors = list(_validator(url).iter_errors(document))
        except referencing.exceptions.Unresolvable as exc:
            fail(f"schema {url} refers to {getattr(exc, 'ref', exc)!r}, which is not shipped",
                 cls=SchemaNotShippedError, schema_url=url)
        if not errors:
            continue
        best = _pick(_most_specific(errors))
        listed = tuple((e.json_path, e.message) for e in errors)
        more = f" ({len(errors) - 1} more error(s) against this schema)" if len(errors) > 1 else ""
        fail(f"does not validate against {url} at {best.json_path}: {_describe(best)}{more}",
             schema_url=url, json_path=best.json_path, errors=listed[:_MAX_LISTED])


def _most_specific(errors: list) -> Any:
    """The error deepest in the document (a failed alternative counts less), first on ties."""
    return max(errors, key=lambda e: (len(e.absolute_path), e.validator not in _WEAK))


def _pick(error) -> Any:
    """Follow a failed anyOf/oneOf into the alternative that came closest to matching.

    The closest alternative is the one with the fewest errors, then the deepest one (it
    got further into the document); within it the most specific error is taken.
    """
    while error.validator in _WEAK and error.context:
        branches: dict = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        closest = min(branches.values(), key=lambda errs: (len(errs), -max(len(e.absolute_path) for e in errs)))
        error = _most_specific(closest)
    return error


def _describe(error) -> str:
    """A readable message; for anyOf/oneOf, the distinct reasons of the alternatives."""
    if error.validator in _WEAK and error.context:
        reasons: list[str] = []
        for sub in error.context:
            where = sub.json_path if sub.json_path != error.json_path else ""
            reason = f"{where}: {_short(sub.message, 120)}" if where else _short(sub.message, 120)
            if reason not in reasons:
                reasons.append(reason)
        return "none of the alternatives holds: " + " | ".join(reasons[:4]) + (" | ..." if len(reasons) > 4 else "")
    return _short(error.message)


def _short(message: str, limit: int = 300) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."


def validate_item(item: Mapping) -> None:
    """Validate a STAC Item (a dict) against STAC and every schema in its ``stac_extensions``.

    Args:
        item: the Item as a JSON-like mapping (``pystac.Item.to_dict()``).

    Raises:
        SchemaValidationError: the item is invalid; the message names the item id, the schema
            and the JSON path of the failing value.
        SchemaNotShippedError: its ``stac_version`` or an extension schema is not shipped.
    """
    _validate(item, "Item")


def validate_collection(collection: Mapping) -> None:
    """Validate a STAC Collection (a dict) against STAC and every schema in its ``stac_extensions``.

    Raises:
        SchemaValidationError: as :func:`validate_item`.
    """
    _validate(collection, "Collection")
