"""Nomenclatures: how the codes of a land-cover product map onto the classes of a benchmark.

Built in (JSON files in ``pipelines/nomenclature/``):

* ``corine19`` - CORINE Land Cover level-3 codes (111 ... 523) to the 19 BigEarthNet classes;
* ``corine19-grid`` - the same for the CLC raster's ``GRID_CODE`` values (1 ... 44);
* ``cdl`` - the 14 Cropland Data Layer crops SpectralEarth keeps (1, 2, 3, 4, 5, 6, 45, 54,
  69, 72, 75, 76, 204, 210);
* ``nlcd`` - the 15 NLCD classes SpectralEarth keeps (11, 21, 22, 23, 24, 31, 41, 42, 43, 52,
  71, 81, 82, 90, 95).

Any other nomenclature is a JSON file of the same form::

    {"name": "mine", "classes": [{"name": "forest", "codes": [1, 2]}, {"name": "water", "codes": [7]}]}

Class ``i`` is the ``i``-th entry; every code not listed is ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

import numpy as np

__all__ = ["BUILTIN_NOMENCLATURES", "IGNORE", "Nomenclature", "load_nomenclature"]

IGNORE = 255
"""Mask value of pixels without a class (unmapped code, no data, outside the product)."""
BUILTIN_NOMENCLATURES = ("corine19", "corine19-grid", "cdl", "nlcd")


@dataclass(frozen=True)
class Nomenclature:
    """Classes of a benchmark and the product codes that make each of them."""

    name: str
    """Short name (``corine19``, ``cdl``, ...)."""
    classes: tuple[str, ...]
    """Class names; class ``i`` is mask value ``i``."""
    codes: tuple[tuple[int, ...], ...]
    """Product codes of each class."""

    def __post_init__(self) -> None:
        if not self.classes:
            raise ValueError(f"nomenclature {self.name!r}: no classes")
        if len(self.classes) >= IGNORE:
            raise ValueError(f"nomenclature {self.name!r}: {len(self.classes)} classes, at most {IGNORE - 1} fit a uint8 mask")
        if len(self.codes) != len(self.classes):
            raise ValueError(f"nomenclature {self.name!r}: {len(self.classes)} classes but {len(self.codes)} code lists")
        seen: dict[int, str] = {}
        for cls, codes in zip(self.classes, self.codes, strict=True):
            if not codes:
                raise ValueError(f"nomenclature {self.name!r}: class {cls!r} has no codes")
            for c in codes:
                if c in seen:
                    raise ValueError(f"nomenclature {self.name!r}: code {c} maps to both {seen[c]!r} and {cls!r}")
                seen[c] = cls

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def mapping(self) -> dict[int, int]:
        """Product code -> class index."""
        return {int(c): i for i, codes in enumerate(self.codes) for c in codes}

    def apply(self, codes: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """Map an array of product codes to a uint8 class mask (:data:`IGNORE` where unmapped or not ``valid``)."""
        m = self.mapping()
        keys = np.array(sorted(m), dtype=np.int64)
        vals = np.array([m[k] for k in keys], dtype=np.uint8)
        flat = np.asarray(codes).astype(np.int64, copy=False)
        pos = np.clip(np.searchsorted(keys, flat), 0, len(keys) - 1)
        hit = keys[pos] == flat
        if valid is not None:
            hit &= np.asarray(valid, bool)
        return np.where(hit, vals[pos], np.uint8(IGNORE)).astype(np.uint8)

    def to_dict(self) -> dict:
        """JSON form (the same as the nomenclature files)."""
        return {"name": self.name, "classes": [{"name": n, "codes": list(c)} for n, c in zip(self.classes, self.codes, strict=True)]}

    @classmethod
    def from_dict(cls, d: dict, *, source: str = "") -> Nomenclature:
        """Parse the JSON form.

        Raises:
            ValueError: naming ``source`` and what is wrong.
        """
        where = source or d.get("name", "nomenclature")
        try:
            classes = d["classes"]
            names = tuple(str(c["name"]) for c in classes)
            codes = tuple(tuple(int(x) for x in c["codes"]) for c in classes)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where}: expected {{'classes': [{{'name': ..., 'codes': [...]}}, ...]}} ({exc!r})") from None
        return cls(name=str(d.get("name") or where), classes=names, codes=codes)


def load_nomenclature(name_or_path: str) -> Nomenclature:
    """A built-in nomenclature by name, or one from a JSON file (local path or fsspec URL).

    Raises:
        ValueError: unknown name, or a file that is not a nomenclature.
        FileNotFoundError: no such file.
    """
    if name_or_path in BUILTIN_NOMENCLATURES:
        text = resources.files("spectralearth.pipelines").joinpath("nomenclature", f"{name_or_path}.json").read_text()
        return Nomenclature.from_dict(json.loads(text), source=name_or_path)
    if not name_or_path.lower().endswith(".json"):
        raise ValueError(f"unknown nomenclature {name_or_path!r}: use one of {', '.join(BUILTIN_NOMENCLATURES)} or a .json file")
    from spectralearth.platform.storage import read_bytes

    try:
        d = json.loads(read_bytes(name_or_path, None))
    except json.JSONDecodeError as exc:
        raise ValueError(f"nomenclature file {name_or_path}: not valid JSON ({exc})") from None
    return Nomenclature.from_dict(d, source=name_or_path)
