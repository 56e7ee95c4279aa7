"""EnMAP L2A product names: parse and format ``ENMAP01-____L2A-DT…`` stems and file names.

A product stem is
``ENMAP01-____L2A-DT<datatake 10 digits>_<start YYYYMMDDTHHMMSSZ>_<tile 3 digits>_V<version 6 digits>_<processed YYYYMMDDTHHMMSSZ>``;
its files are ``<stem>-<SUFFIX>`` and a zipped delivery is ``<stem>.ZIP``.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from spectralearth.catalog.errors import NamingError

__all__ = ["PREFIX", "SUFFIXES", "ProductName", "looks_like_product", "split_file_name"]

PREFIX = "ENMAP01-____L2A-"
"""Every L2A product stem starts with this."""

SUFFIXES: tuple[str, ...] = (
    "METADATA.XML",
    "SPECTRAL_IMAGE.TIF",
    "QL_PIXELMASK.TIF",
    "QL_QUALITY_CLASSES.TIF",
    "QL_QUALITY_CLOUD.TIF",
    "QL_QUALITY_CLOUDSHADOW.TIF",
    "QL_QUALITY_HAZE.TIF",
    "QL_QUALITY_CIRRUS.TIF",
    "QL_QUALITY_SNOW.TIF",
    "QL_QUALITY_TESTFLAGS.TIF",
    "QL_VNIR.TIF",
    "QL_SWIR.TIF",
)
"""The files of an L2A product, by the suffix after ``<stem>-``."""

_TIME = r"\d{8}T\d{6}Z"
_STEM = re.compile(
    rf"^ENMAP01-____L2A-DT(?P<datatake>\d{{10}})_(?P<start>{_TIME})_(?P<tile>\d{{3}})"
    rf"_V(?P<version>\d{{6}})_(?P<processed>{_TIME})$"
)
_STEM_LEN = len("ENMAP01-____L2A-DT0000326721_20170626T102020Z_001_V000204_20200406T201930Z")
_TIME_FORMAT = "%Y%m%dT%H%M%SZ"


def looks_like_product(name: str) -> bool:
    """True if a file or folder name is meant to be an EnMAP product (it starts with ``ENMAP``)."""
    return posixpath.basename(name.rstrip("/")).upper().startswith("ENMAP")


def _parse_time(text: str, name: str, what: str) -> datetime:
    try:
        return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise NamingError(name, f"{what} {text!r} is not a valid date YYYYMMDDTHHMMSSZ", key=what) from None


def split_file_name(name: str) -> tuple[ProductName, str | None]:
    """Split a product stem, file name, folder or ZIP name into ``(ProductName, suffix)``.

    Args:
        name: a bare stem, ``<stem>-<SUFFIX>``, a folder path ``…/<stem>/`` or ``<stem>.ZIP``;
            leading folders are ignored.

    Returns:
        The parsed name and the suffix (``None`` for a stem, folder or ZIP). The suffix
        may be one not listed in :data:`SUFFIXES`; callers decide whether they want it.

    Raises:
        NamingError: the name is not an EnMAP L2A product name (the error names it).
    """
    base = posixpath.basename(str(name).rstrip("/"))
    label = base or str(name)
    if base.upper().endswith(".ZIP"):
        base = base[:-4]
    stem, suffix = base, None
    if len(base) > _STEM_LEN and base[_STEM_LEN] == "-":
        stem, suffix = base[:_STEM_LEN], base[_STEM_LEN + 1 :]
        if not suffix:
            raise NamingError(label, "empty file suffix after the product stem", key="suffix")
    m = _STEM.match(stem)
    if m is None:
        if not base.startswith(PREFIX):
            why = f"does not start with {PREFIX!r}"
        else:
            why = (
                "does not match ENMAP01-____L2A-DT<10 digits>_<YYYYMMDDTHHMMSSZ>_<3 digits>"
                "_V<6 digits>_<YYYYMMDDTHHMMSSZ>[-<SUFFIX>]"
            )
        raise NamingError(label, f"not an EnMAP L2A product name: {why}", key="name")
    parsed = ProductName(
        datatake=int(m["datatake"]),
        start=_parse_time(m["start"], label, "start"),
        tile=int(m["tile"]),
        version=m["version"],
        processed=_parse_time(m["processed"], label, "processed"),
    )
    return parsed, suffix


@dataclass(frozen=True, order=True)
class ProductName:
    """The identity of an EnMAP L2A product, as written in its file names."""

    datatake: int
    """Datatake id (the ``DT`` number)."""
    start: datetime
    """Acquisition start of the datatake, UTC, to the second."""
    tile: int
    """Tile number within the datatake (1-based)."""
    version: str
    """Processor version, 6 digits (``000204`` for 00.02.04)."""
    processed: datetime
    """Processing time, UTC, to the second."""

    @classmethod
    def parse(cls, name: str) -> ProductName:
        """Parse a stem, ``<stem>-<SUFFIX>`` file name, folder path or ``<stem>.ZIP`` name.

        Raises:
            NamingError: naming the bad input and what was expected.
        """
        return split_file_name(name)[0]

    @property
    def stem(self) -> str:
        """The product stem, which is also the product id."""
        return (
            f"{PREFIX}DT{self.datatake:010d}_{self.start.strftime(_TIME_FORMAT)}_{self.tile:03d}"
            f"_V{self.version}_{self.processed.strftime(_TIME_FORMAT)}"
        )

    def filename(self, suffix: str) -> str:
        """The name of one of the product's files, ``<stem>-<suffix>``."""
        return f"{self.stem}-{suffix}"

    @property
    def tile_key(self) -> tuple[int, int]:
        """``(datatake, tile)``: deliveries with the same key are versions of one tile."""
        return (self.datatake, self.tile)

    @property
    def version_key(self) -> tuple[int, datetime]:
        """Sort key among deliveries of one tile: the greatest is the one that wins."""
        return (int(self.version), self.processed)

    def __str__(self) -> str:
        return self.stem
