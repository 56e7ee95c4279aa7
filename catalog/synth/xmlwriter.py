"""METADATA.XML of a synthetic product, on the element skeleton of a real one."""

from __future__ import annotations

import copy
import functools
import math
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from xml.sax.saxutils import quoteattr

import numpy as np

from ._template import SECTIONS, TEMPLATE
from .plan import TileSpec

__all__ = ["SUFFIXES", "SCHEMA_VERSION", "metadata_xml", "dotted_version"]

SCHEMA_VERSION = "01.02.00"
"""Metadata schema version written into current products."""
SUFFIXES = (
    "METADATA.XML", "QL_PIXELMASK.TIF", "QL_QUALITY_CIRRUS.TIF", "QL_QUALITY_CLASSES.TIF",
    "QL_QUALITY_CLOUD.TIF", "QL_QUALITY_CLOUDSHADOW.TIF", "QL_QUALITY_HAZE.TIF", "QL_QUALITY_SNOW.TIF",
    "QL_QUALITY_TESTFLAGS.TIF", "QL_SWIR.TIF", "QL_VNIR.TIF", "SPECTRAL_IMAGE.TIF",
)
"""Files of a product, in the order of productFileInformation."""
QL_VNIR_NM = (847.1, 671.21, 548.06)
QL_SWIR_NM = (2201.0, 1645.3, 1051.3)


def dotted_version(version: str) -> str:
    """'010402' -> '01.04.02'."""
    return f"{version[0:2]}.{version[2:4]}.{version[4:6]}"


def _t(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _set(root: ET.Element, path: str, value) -> ET.Element:
    el = root.find(path)
    if el is None:
        raise KeyError(path)
    el.text = str(value)
    return el


def _polygon(parent: ET.Element, corners, times, center, center_time) -> None:
    """Fill a boundingPolygon: UL, LL, LR, UR, UL (closing), center, as in DLR products."""
    template = parent.find("point")
    for p in list(parent):
        parent.remove(p)
    ul, ur, lr, ll = corners
    t_up, t_low = times
    pts = [("upper_left", ul, t_up), ("lower_left", ll, t_low), ("lower_right", lr, t_low),
           ("upper_right", ur, t_up), ("upper_left", ul, t_up), ("center", center, center_time)]
    for frame, (lon, lat), when in pts:
        p = copy.deepcopy(template)
        _set(p, "frame", frame)
        _set(p, "latitude", f"{lat:.7f}")
        _set(p, "longitude", f"{lon:.7f}")
        _set(p, "utcTime", _t(when) if when is not None else "NA")
        parent.append(p)


def _corner_angles(root: ET.Element, name: str, center: float, spread: tuple[float, float, float, float]) -> None:
    for key, d in zip(("upper_left", "upper_right", "lower_right", "lower_left"), spread, strict=True):
        _set(root, f"specific/{name}/{key}", f"{center + d:.6f}")
    _set(root, f"specific/{name}/center", f"{center:.6f}")


def metadata_xml(
    spec: TileSpec,
    *,
    wavelengths: np.ndarray,
    fwhm: np.ndarray,
    cover: dict[str, float],
    grid_corners_lonlat: tuple[tuple[float, float], ...],
    file_sizes: dict[str, int] | None = None,
    stem: str | None = None,
    compact: bool = False,
) -> bytes:
    """Serialize the METADATA.XML of one product.

    Args:
        spec: the planned tile.
        wavelengths: centre wavelength per band (nm); its length is the declared band count.
        fwhm: FWHM per band (nm).
        cover: percent CLOUD, CLOUDSHADOW, HAZE, CIRRUS, SNOW, WATER of the swath.
        grid_corners_lonlat: ortho grid corners UL, UR, LR, LL as (lon, lat).
        file_sizes: bytes per SUFFIX of the files delivered (listed in productFileInformation
            with their sizes, METADATA.XML always); None lists every file with size 0.
        stem: product stem, if it differs from ``spec.stem`` (a re-delivery).
        compact: leave the calibration and navigation sections empty (see
            ``SynthConfig.compact_xml``).

    Returns:
        UTF-8 XML bytes.
    """
    stem = stem or spec.stem
    sizes = file_sizes or {}
    root = ET.fromstring(TEMPLATE)  # parsing (C) is faster than a deep copy
    rev = dotted_version(spec.version)
    nb = int(len(wavelengths))
    root.set("{http://www.w3.org/2001/XMLSchema-instance}noNamespaceSchemaLocation",
             f"metadata_Lx_{SCHEMA_VERSION.replace('.', '-')}.xsd")
    _set(root, "metadata/schema/versionSchema", SCHEMA_VERSION)
    _set(root, "metadata/schema/name", f"metadata_Lx_{SCHEMA_VERSION.replace('.', '-')}.xsd")
    _set(root, "metadata/schema/copyright", f"(c) DLR EnMAP {spec.processed.year}")
    _set(root, "metadata/copyright", f"(c) DLR EnMAP {spec.processed.year}")
    _set(root, "metadata/name", f"{stem}-METADATA.XML")
    _set(root, "metadata/comment", f"EnMAP Level 2A Product of datatake {spec.datatake}, tile {spec.tile}")
    _set(root, "metadata/citation",
         f"DLR ({spec.processed.year}): EnMAP Product {spec.datatake:09d}_{spec.tile:02d}_2A_"
         f"{spec.start:%Y%m%dT%H%M%S}_{spec.version}_{spec.processed:%y%m%d}. synthetic")
    month = spec.start.month if spec.center_lat >= 0 else (spec.start.month + 5) % 12 + 1
    _set(root, "processing/season", "summer" if 4 <= month <= 9 else "winter")

    mid = spec.start + (spec.stop - spec.start) / 2
    center = (spec.center_lon, spec.center_lat)
    _polygon(root.find("base/spatialCoverage/boundingPolygon"), spec.footprint_lonlat,
             (spec.start, spec.stop), center, mid)
    _set(root, "base/temporalCoverage/startTime", _t(spec.start))
    _set(root, "base/temporalCoverage/stopTime", _t(spec.stop))
    _set(root, "base/revision", rev)
    _set(root, "base/archivedVersion", rev)
    _set(root, "base/size", sum(sizes.values()))

    sp = "specific"
    dtc = spec.datatake_lonlat
    dcx = sum(p[0] for p in dtc) / 4
    dcy = sum(p[1] for p in dtc) / 4
    dmid = spec.datatake_start + (spec.datatake_stop - spec.datatake_start) / 2
    _polygon(root.find(f"{sp}/spatialCoverageOfDatatake/boundingPolygon"), dtc,
             (spec.datatake_start, spec.datatake_stop), (dcx, dcy), dmid)
    gcx = sum(p[0] for p in grid_corners_lonlat) / 4
    gcy = sum(p[1] for p in grid_corners_lonlat) / 4
    _polygon(root.find(f"{sp}/spatialCoverageOfOrthoScene/boundingPolygon"), grid_corners_lonlat,
             (None, None), (gcx, gcy), None)
    q = f"{sp}/qualityFlag"
    for key, name in (("CLOUD", "cloudCover"), ("CLOUDSHADOW", "cloudShadow"), ("HAZE", "hazeCover"),
                      ("CIRRUS", "cirrusCover"), ("SNOW", "snowCover"), ("WATER", "waterCover")):
        _set(root, f"{q}/{name}", int(round(cover.get(key, 0.0))))
    _set(root, f"{q}/sceneSZA", f"{90.0 - spec.sun_elevation_deg:.6f}")
    _set(root, f"{q}/numTilesUsed", spec.number_of_tiles)
    vnir = [i + 1 for i, w in enumerate(wavelengths) if w < 1000.0]
    swir = [i + 1 for i, w in enumerate(wavelengths) if w >= 1000.0]
    _set(root, f"{sp}/numberOfVNIRBands", len(vnir))
    _set(root, f"{sp}/numberOfSWIRBands", len(swir))
    for part, chans in (("vnir", vnir), ("swir", swir)):
        _set(root, f"{sp}/{part}ProductQuality/numChannelsExpected", len(chans))
        _set(root, f"{sp}/{part}ProductQuality/expectedChannelsList", ",".join(map(str, chans)))
    _set(root, f"{sp}/processingDateTime", _t(spec.processed))
    _set(root, f"{sp}/archivingDateTime", _t(spec.processed))
    _set(root, f"{sp}/receivingDateTime", _t(spec.datatake_stop))
    _set(root, f"{sp}/inputDatatake/datatakeAssemblyTime", _t(spec.datatake_stop))
    _set(root, f"{sp}/missionPhase", "routine")
    _set(root, f"{sp}/datatakeID", f"{spec.datatake:010d}")
    _set(root, f"{sp}/imageID", f"{spec.datatake * 10 + spec.tile:09d}"[-9:])
    _set(root, f"{sp}/datatakeStart", _t(spec.datatake_start))
    _set(root, f"{sp}/datatakeStop", _t(spec.datatake_stop))
    _set(root, f"{sp}/backgroundValue", -32768)
    _set(root, f"{sp}/tileID", f"{spec.tile:02d}")
    _set(root, f"{sp}/numberOfTiles", f"{spec.number_of_tiles:02d}")
    across, along = spec.swath_px
    _set(root, f"{sp}/widthOfScene", across)
    _set(root, f"{sp}/heightOfScene", along)
    _set(root, f"{sp}/orbitNo", 10000 + (spec.datatake * 7) % 9000)
    _set(root, f"{sp}/orbitDirection", "DESCENDING")
    _set(root, f"{sp}/pixelSizeOfOrthoScene", 30)
    _set(root, f"{sp}/widthOfOrthoScene", spec.width)
    _set(root, f"{sp}/heightOfOrthoScene", spec.height)
    _corner_angles(root, "sunElevationAngle", spec.sun_elevation_deg, (-0.2, 0.0, 0.2, 0.0))
    _corner_angles(root, "sunAzimuthAngle", spec.sun_azimuth_deg, (-0.1, 0.5, 0.1, -0.5))
    half = math.degrees(math.atan(across * 15.0 / 653000.0))
    _corner_angles(root, "acrossOffNadirAngle", spec.across_track_deg, (half, -half, -half, half))
    _corner_angles(root, "alongOffNadirAngle", -0.1, (0.03, 0.03, -0.05, -0.05))
    _corner_angles(root, "sceneAzimuthAngle", spec.heading_deg - 180.0, (0.04, 0.04, -0.04, -0.04))

    bc = root.find(f"{sp}/bandCharacterisation")
    for b in list(bc):
        bc.remove(b)
    bc.text = "@@BANDS@@"
    merge = "product/image/merge"
    _set(root, f"{merge}/channels", nb)
    _set(root, f"{merge}/name", f"{stem}-SPECTRAL_IMAGE.TIF")
    _set(root, f"{merge}/size", sizes.get("SPECTRAL_IMAGE.TIF", 0) // 1024)
    _set(root, f"{merge}/version", rev)
    _set(root, f"{merge}/dimension/columns", spec.width)
    _set(root, f"{merge}/dimension/rows", spec.height)
    lons = [p[0] for p in grid_corners_lonlat]
    lats = [p[1] for p in grid_corners_lonlat]
    _set(root, f"{merge}/dimensionGeographic/longitude", f"{max(lons) - min(lons):.7f}")
    _set(root, f"{merge}/dimensionGeographic/latitude", f"{max(lats) - min(lats):.7f}")
    for part, suffix in (("vnir", "QL_VNIR.TIF"), ("swir", "QL_SWIR.TIF")):
        base = f"product/quicklook/{part}"
        _set(root, f"{base}/name", f"{stem}-{suffix}")
        _set(root, f"{base}/size", sizes.get(suffix, 0) // 1024)
        _set(root, f"{base}/version", rev)
        _set(root, f"{base}/dimension/columns", spec.width)
        _set(root, f"{base}/dimension/rows", spec.height)
    hemi = "North" if spec.epsg < 32700 else "South"
    _set(root, "product/ortho/projection", f"UTM_Zone{spec.epsg % 100}_{hemi}")

    pfi = root.find("product/productFileInformation")
    proto = pfi.find("file")
    for fl in list(pfi):
        pfi.remove(fl)
    # the files delivered (a footprint-only product lists only its METADATA.XML)
    listed = SUFFIXES if file_sizes is None else [s for s in SUFFIXES if s == "METADATA.XML" or s in sizes]
    for i, suffix in enumerate(listed):
        fl = copy.deepcopy(proto)
        fl.set("number", str(i + 1))
        _set(fl, "name", f"{stem}-{suffix}")
        _set(fl, "size", sizes.get(suffix, 0) // 1024)
        _set(fl, "version", rev)
        _set(fl, "format", "xml" if suffix.endswith(".XML") else "binary")
        pfi.append(fl)
    bands = "".join(
        f'\n      <bandID number="{i + 1}">'
        f"\n        <wavelengthCenterOfBand>{_num(w, 3)}</wavelengthCenterOfBand>"
        f"\n        <FWHMOfBand>{_num(f, 4)}</FWHMOfBand>"
        "\n        <GainOfBand>0.0001</GainOfBand>"
        "\n        <OffsetOfBand>0</OffsetOfBand>"
        "\n      </bandID>"
        for i, (w, f) in enumerate(zip(wavelengths, fwhm, strict=True))
    )
    # the large sections at real size, in the real order (calibration and navigation between
    # quicklook and ortho, time before ortho, band statistics last)
    product = root.find("product")
    names = [c.tag for c in product]
    for tag, before in (("calibration", "matching"), ("navigation", "ortho"), ("time", "ortho"), ("bandStatistics", None)):
        if product.find(tag) is None:
            marker = ET.Element(tag)
            marker.text = f"@@{tag.upper()}@@"
            idx = names.index(before) if before in names else len(names)
            product.insert(idx, marker)
            names.insert(idx, tag)
    calibration, navigation = ("<calibration/>", "<navigation/>") if compact else _static_sections()
    text = ET.tostring(root, encoding="unicode").replace("@@BANDS@@", bands + "\n    ")
    text = (text.replace("<calibration>@@CALIBRATION@@</calibration>", calibration)
                .replace("<navigation>@@NAVIGATION@@</navigation>", navigation)
                .replace("<time>@@TIME@@</time>", _time_section(spec))
                .replace("<bandStatistics>@@BANDSTATISTICS@@</bandStatistics>", _band_statistics(wavelengths)))
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + text).encode("utf-8")


def _render(el: ET.Element, number: int | None = None, inner: str | None = None) -> str:
    attrs = "".join(
        f" {k}={quoteattr(str(number) if k == 'number' and number is not None else v)}"
        for k, v in el.attrib.items() if k != "_n"
    )
    body = _inner(el) if inner is None else inner
    return f"<{el.tag}{attrs}>{body}</{el.tag}>" if body else f"<{el.tag}{attrs}/>"


def _inner(el: ET.Element, depth: int = 3) -> str:
    """Content of a skeleton element, each child repeated ``_n`` times (numbered 1..n), indented as DLR does."""
    if len(el) == 0:
        return el.text or ""
    pad = "\n" + "  " * depth
    parts = []
    for child in el:
        n = int(child.get("_n", "1"))
        inner = _inner(child, depth + 1)
        if n == 1:
            parts.append(pad + _render(child, inner=inner))
        else:
            parts.extend(pad + _render(child, i + 1, inner) for i in range(n))
    return "".join(parts) + "\n" + "  " * (depth - 1)


@functools.lru_cache(maxsize=1)
def _skeletons() -> dict[str, ET.Element]:
    return {el.tag: el for el in ET.fromstring(SECTIONS)}


@functools.lru_cache(maxsize=1)
def _static_sections() -> tuple[str, str]:
    """calibration and navigation at real size (the same in every product: ~3.8 MB)."""
    sk = _skeletons()
    return _render(sk["calibration"]), _render(sk["navigation"])


def _time_section(spec: TileSpec) -> str:
    """Frame times of the VNIR and SWIR detectors over the tile's acquisition."""
    sk = _skeletons()["time"]
    out = []
    for det in sk:
        frames = int(det.find("frameTime").get("_n"))
        step = (spec.stop - spec.start) / max(1, frames - 1)
        offset = timedelta(microseconds=64) if det.tag == "vnir" else timedelta(0)
        body = "".join(f'<frameTime number="{i + 1}">{(spec.start + i * step - offset):%Y-%m-%dT%H:%M:%S.%fZ}</frameTime>'
                       for i in range(frames))
        jitter = det.find("jitter")
        if jitter is not None:
            body += "".join(f'<jitter number="{i + 1}">{6.34e-05 * math.sin(i / 37.0):.10e}</jitter>'
                            for i in range(int(jitter.get("_n"))))
        out.append(f"<{det.tag}>{body}</{det.tag}>")
    return f"<time>{''.join(out)}</time>"


def _band_statistics(wavelengths: np.ndarray) -> str:
    rows = "".join(
        f'<bandID number="{i + 1}"><waveLength>{_num(w, 3)}</waveLength><mean>{0.03 + 0.2 * math.exp(-((w - 850) / 600) ** 2):.7f}'
        f"</mean><stdDeviation>{0.011 + 0.05 * math.exp(-((w - 850) / 600) ** 2):.6f}</stdDeviation></bandID>"
        for i, w in enumerate(wavelengths)
    )
    return f"<bandStatistics>{rows}</bandStatistics>"


def _num(value: float, digits: int) -> str:
    return f"{value:.{digits}f}".rstrip("0").rstrip(".")
