"""METADATA.XML of an EnMAP L2A product, parsed into a typed, picklable object.

Everything comes from the file itself: the number of bands, their wavelengths and widths,
the footprint corners, the grid size and projection. Nothing is taken from a table, so the
218-band pre-launch products and the 224-band products of the mission read alike.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime

import defusedxml
import defusedxml.ElementTree

from spectralearth.catalog.enmap.naming import ProductName
from spectralearth.catalog.errors import MetadataError, NamingError

__all__ = ["Band", "EnmapMetadata", "parse_metadata", "utm_epsg"]

# Large sections that the platform never reads (orbit/attitude state vectors, RPCs,
# per-frame times: ~95 % of a real file). They are blanked before parsing, keeping
# the line count so that error positions stay true.
_SKIPPED = (b"calibration", b"navigation", b"time")
_PROJECTION = re.compile(r"UTM_?(?:WGS84_?)?Zone_?(\d{1,2})_?(North|South|N|S)$", re.IGNORECASE)
_XML_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]00:?00)?$")


@dataclass(frozen=True)
class Band:
    """One spectral band as described in ``specific/bandCharacterisation``."""

    number: int
    """1-based band number in the image."""
    wavelength_nm: float
    """Centre wavelength in nm."""
    fwhm_nm: float
    """Full width at half maximum in nm."""
    gain: float
    """Reflectance = DN * gain + offset."""
    offset: float
    """Reflectance = DN * gain + offset."""


@dataclass(frozen=True)
class EnmapMetadata:
    """What the platform needs from one METADATA.XML."""

    name: ProductName
    """The product's parsed name."""
    product_id: str
    """The product stem."""
    schema_version: str | None
    """``metadata/schema/versionSchema`` (``00.02.00``)."""
    processing_level: str | None
    """``metadata/schema/processingLevel`` (``L2A``)."""
    processor_version: str | None
    """``base/revision`` (``01.04.02``)."""
    start_time: datetime
    """Acquisition start, UTC."""
    stop_time: datetime
    """Acquisition stop, UTC."""
    corners_lonlat: tuple[tuple[float, float], ...]
    """``base/spatialCoverage/boundingPolygon`` points as read, without ``center``; a closed ring."""
    center_lonlat: tuple[float, float] | None
    """The ``center`` point of the bounding polygon."""
    datatake_id: int
    """``specific/datatakeID``."""
    tile_id: int
    """``specific/tileID``."""
    number_of_tiles: int | None
    """``specific/numberOfTiles``."""
    bands: tuple[Band, ...]
    """The bands, in image order."""
    cloud_cover: float | None
    """Percent of the tile flagged cloud."""
    cloud_shadow_cover: float | None
    """Percent flagged cloud shadow."""
    haze_cover: float | None
    """Percent flagged haze."""
    cirrus_cover: float | None
    """Percent flagged cirrus."""
    snow_cover: float | None
    """Percent flagged snow."""
    water_cover: float | None
    """Percent flagged water."""
    epsg: int | None
    """EPSG code from ``product/ortho/projection``; None if absent."""
    width: int
    """Columns of the ortho scene."""
    height: int
    """Rows of the ortho scene."""
    pixel_size: float | None
    """Ground sampling distance in m."""
    orbit_direction: str | None
    """``ASCENDING`` or ``DESCENDING``."""
    across_off_nadir_deg: float | None
    """Across-track off-nadir angle at the scene centre."""
    scene_azimuth_deg: float | None
    """Scene azimuth at the centre."""
    sun_elevation_deg: float | None
    """Sun elevation at the centre."""
    sun_azimuth_deg: float | None
    """Sun azimuth at the centre."""
    background_value: float | None
    """``specific/backgroundValue``."""
    processing_time: datetime | None
    """``specific/processingDateTime``, UTC."""
    files: tuple[str, ...]
    """File names listed in ``product/productFileInformation``."""
    ortho_corners_lonlat: tuple[tuple[float, float], ...] = ()
    """``specific/spatialCoverageOfOrthoScene`` corners (upper_left, upper_right, lower_right,
    lower_left) of the ortho grid; empty if absent or not four valid points."""

    @property
    def band_count(self) -> int:
        """Number of bands."""
        return len(self.bands)

    @property
    def wavelengths_nm(self) -> tuple[float, ...]:
        """Centre wavelengths in band order."""
        return tuple(b.wavelength_nm for b in self.bands)


def utm_epsg(projection: str) -> int:
    """EPSG code of a UTM projection name such as ``UTM_Zone32_North`` (-> 32632).

    Raises:
        ValueError: the name is not a UTM zone.
    """
    m = _PROJECTION.search(projection.strip())
    if m is None or not 1 <= int(m[1]) <= 60:
        raise ValueError(f"not a UTM zone name: {projection!r}")
    return (32600 if m[2][0].upper() == "N" else 32700) + int(m[1])


def _blank_skipped(data: bytes) -> bytes:
    for tag in _SKIPPED:
        open_tag, close_tag = b"<" + tag + b">", b"</" + tag + b">"
        i = data.find(open_tag)
        if i < 0 or data.find(open_tag, i + 1) >= 0:
            continue
        j = data.find(close_tag, i)
        if j < 0 or data.find(close_tag, j + 1) >= 0:
            continue
        inner = data[i + len(open_tag) : j]
        data = data[: i + len(open_tag)] + b"\n" * inner.count(b"\n") + data[j:]
    return data


class _Reader:
    """Element lookups that raise MetadataError naming the product and the path."""

    def __init__(self, root: ET.Element, product: str):
        self.root = root
        self.product = product

    def error(self, path: str, message: str) -> MetadataError:
        return MetadataError(self.product, message, key=path)

    def text(self, path: str, *, required: bool = True, node: ET.Element | None = None) -> str | None:
        el = (self.root if node is None else node).find(path)
        text = None if el is None or el.text is None else el.text.strip()
        if not text:
            if required:
                what = "missing" if el is None else "empty"
                raise self.error(path, f"required element {what}")
            return None
        return text

    def number(self, path: str, *, required: bool = True, node: ET.Element | None = None, kind=float):
        text = self.text(path, required=required, node=node)
        if text is None:
            return None
        try:
            value = kind(text) if kind is float else int(text, 10)
        except ValueError:
            raise self.error(path, f"not a number: {text!r}") from None
        if kind is float and not math.isfinite(value):
            raise self.error(path, f"not a finite number: {text!r}")
        return value

    def cover(self, path: str) -> float | None:
        value = self.number(path, required=False)
        if value is None or value < 0:  # -999 marks "not computed"
            return None
        if value > 100:
            raise self.error(path, f"cover {value} is not a percentage (0-100)")
        return value

    def time(self, path: str, *, required: bool = True) -> datetime | None:
        text = self.text(path, required=required)
        if text is None:
            return None
        m = _XML_TIME.match(text)
        if m is None:
            raise self.error(path, f"not a UTC time YYYY-MM-DDTHH:MM:SS[.ffffff]Z: {text!r}")
        frac = (m[2] or "")[:6].ljust(6, "0")
        try:
            return datetime.fromisoformat(f"{m[1]}.{frac}").replace(tzinfo=UTC)
        except ValueError:
            raise self.error(path, f"not a valid date/time: {text!r}") from None


def _polygon(r: _Reader) -> tuple[tuple[tuple[float, float], ...], tuple[float, float] | None]:
    path = "base/spatialCoverage/boundingPolygon/point"
    corners, center, first_frame, last_frame = [], None, None, None
    for i, point in enumerate(r.root.findall(path), start=1):
        where = f"{path}[{i}]"
        frame = r.text("frame", required=False, node=point) or ""
        lat = r.number("latitude", node=point) if point.find("latitude") is not None else None
        lon = r.number("longitude", node=point) if point.find("longitude") is not None else None
        if lat is None or lon is None:
            raise r.error(where, "point without latitude/longitude")
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise r.error(where, f"latitude/longitude out of range: ({lat}, {lon})")
        if frame == "center":
            center = (lon, lat)
            continue
        corners.append((lon, lat))
        first_frame = first_frame or frame
        last_frame = frame
    if len(corners) < 3:
        raise r.error(path, f"bounding polygon needs at least 3 corner points, found {len(corners)}")
    closed = corners[-1] == corners[0] or (len(corners) > 3 and last_frame == first_frame and first_frame)
    if not closed:
        corners.append(corners[0])
    return tuple(corners), center


def _bands(r: _Reader) -> tuple[Band, ...]:
    path = "specific/bandCharacterisation/bandID"
    elements = r.root.findall(path)
    if not elements:
        raise r.error(path, "no bands described")
    bands = []
    for i, el in enumerate(elements, start=1):
        number_text = el.get("number")
        where = f"{path}[@number={number_text}]"
        try:
            number = int(number_text)
        except (TypeError, ValueError):
            raise r.error(f"{path}[{i}]", f"band without a valid number attribute: {number_text!r}") from None
        if number != i:
            raise r.error(where, f"band numbering gap or disorder: element {i} has number {number} (expected {i})")
        values = []
        for tag in ("wavelengthCenterOfBand", "FWHMOfBand", "GainOfBand", "OffsetOfBand"):
            if el.find(tag) is None:
                raise r.error(f"{where}/{tag}", "required element missing")
            values.append(r.number(tag, node=el))
        wl, fwhm, gain, offset = values
        if not (200 < wl < 3000) or not (0 < fwhm < 200):
            raise r.error(where, f"implausible band: wavelength {wl} nm, FWHM {fwhm} nm")
        bands.append(Band(number, wl, fwhm, gain, offset))
    return tuple(bands)


def parse_metadata(xml: bytes | str, *, product: str) -> EnmapMetadata:
    """Parse an EnMAP L2A METADATA.XML.

    Args:
        xml: the file's content.
        product: the product id (stem) used in error messages and checked against
            ``metadata/name``.

    Returns:
        The typed metadata.

    Raises:
        MetadataError: malformed or unsafe XML (a DTD, entities, external references), a
            required element missing, a value that does not
            parse, gaps in the band numbering, or a name/id that contradicts the product.
    """
    data = xml.encode("utf-8") if isinstance(xml, str) else bytes(xml)
    try:
        # untrusted input: defusedxml refuses entity expansion and external references
        root = defusedxml.ElementTree.fromstring(_blank_skipped(data), forbid_dtd=True)
    except defusedxml.DefusedXmlException as exc:
        raise MetadataError(product, f"refused unsafe XML ({type(exc).__name__}: {exc})", key="xml") from None
    except ET.ParseError as exc:
        line, col = getattr(exc, "position", (0, 0))
        reason = str(exc).split(":")[0]
        message = f"not well-formed XML at line {line}, column {col} ({reason})"
        raise MetadataError(product, message, key="xml") from None
    if root.tag != "level_X":
        raise MetadataError(product, f"root element is <{root.tag}>, expected <level_X>", key="level_X")
    r = _Reader(root, product)

    name_text = r.text("metadata/name", required=False)
    try:
        name = ProductName.parse(name_text or product)
    except NamingError as exc:
        raise r.error("metadata/name", exc.message) from None
    if name_text:
        try:
            expected = ProductName.parse(product)
        except NamingError:
            expected = None
        if expected is not None and expected != name:
            raise r.error("metadata/name", f"names product {name.stem}, expected {expected.stem}")

    datatake_id = r.number("specific/datatakeID", kind=int)
    tile_id = r.number("specific/tileID", kind=int)
    if datatake_id != name.datatake:
        raise r.error("specific/datatakeID", f"datatake {datatake_id} differs from the name's {name.datatake}")
    if tile_id != name.tile:
        raise r.error("specific/tileID", f"tile {tile_id} differs from the name's {name.tile}")

    start = r.time("base/temporalCoverage/startTime")
    stop = r.time("base/temporalCoverage/stopTime")
    if stop < start:
        raise r.error("base/temporalCoverage/stopTime", f"stop {stop.isoformat()} before start {start.isoformat()}")
    corners, center = _polygon(r)
    bands = _bands(r)
    channels = r.number("product/image/merge/channels", required=False, kind=int)
    if channels is not None and channels != len(bands):
        raise r.error("product/image/merge/channels", f"{channels} channels but {len(bands)} bands described")

    width = r.number("specific/widthOfOrthoScene", kind=int)
    height = r.number("specific/heightOfOrthoScene", kind=int)
    if width <= 0 or height <= 0:
        raise r.error("specific/widthOfOrthoScene", f"grid size {width}x{height} is not positive")
    projection = r.text("product/ortho/projection", required=False)
    epsg = None
    if projection is not None:
        try:
            epsg = utm_epsg(projection)
        except ValueError as exc:
            raise r.error("product/ortho/projection", str(exc)) from None

    q = "specific/qualityFlag/"
    ortho = _ortho_corners(root)
    files = tuple(
        el.text.strip()
        for el in root.findall("product/productFileInformation/file/name")
        if el.text and el.text.strip()
    )
    return EnmapMetadata(
        name=name,
        product_id=name.stem,
        schema_version=r.text("metadata/schema/versionSchema", required=False),
        processing_level=r.text("metadata/schema/processingLevel", required=False),
        processor_version=r.text("base/revision", required=False),
        start_time=start,
        stop_time=stop,
        corners_lonlat=corners,
        center_lonlat=center,
        datatake_id=datatake_id,
        tile_id=tile_id,
        number_of_tiles=r.number("specific/numberOfTiles", required=False, kind=int),
        bands=bands,
        cloud_cover=r.cover(q + "cloudCover"),
        cloud_shadow_cover=r.cover(q + "cloudShadow"),
        haze_cover=r.cover(q + "hazeCover"),
        cirrus_cover=r.cover(q + "cirrusCover"),
        snow_cover=r.cover(q + "snowCover"),
        water_cover=r.cover(q + "waterCover"),
        epsg=epsg,
        width=width,
        height=height,
        pixel_size=r.number("specific/pixelSizeOfOrthoScene", required=False),
        orbit_direction=r.text("specific/orbitDirection", required=False),
        across_off_nadir_deg=r.number("specific/acrossOffNadirAngle/center", required=False),
        scene_azimuth_deg=r.number("specific/sceneAzimuthAngle/center", required=False),
        sun_elevation_deg=r.number("specific/sunElevationAngle/center", required=False),
        sun_azimuth_deg=r.number("specific/sunAzimuthAngle/center", required=False),
        background_value=r.number("specific/backgroundValue", required=False),
        processing_time=r.time("specific/processingDateTime", required=False),
        files=files,
        ortho_corners_lonlat=ortho,
    )


def _ortho_corners(root: ET.Element) -> tuple[tuple[float, float], ...]:
    corners: dict[str, tuple[float, float]] = {}
    for point in root.findall("specific/spatialCoverageOfOrthoScene/boundingPolygon/point"):
        frame = (point.findtext("frame") or "").strip()
        try:
            lon, lat = float(point.findtext("longitude") or ""), float(point.findtext("latitude") or "")
        except ValueError:
            return ()
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            return ()
        corners.setdefault(frame, (lon, lat))
    order = ("upper_left", "upper_right", "lower_right", "lower_left")
    return tuple(corners[k] for k in order) if all(k in corners for k in order) else ()
