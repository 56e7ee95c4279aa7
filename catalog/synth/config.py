"""Parameters of a synthetic archive."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

__all__ = ["FAULT_KINDS", "FULL_SWATH_PX", "LAYOUTS", "SynthConfig"]

#: Kinds of faulty deliveries the generator can inject (one product each).
FAULT_KINDS = ("duplicate", "truncated-tiff", "malformed-xml", "missing-xml", "all-nodata", "band-mismatch")

#: Layouts of SPECTRAL_IMAGE.TIF the generator writes (each with --interleave pixel or band).
LAYOUTS = ("tiled", "cog", "stripped")

#: Swath width of a full-size tile in pixels (30 km at 30 m).
FULL_SWATH_PX = 1000


@dataclass(frozen=True)
class SynthConfig:
    """How many tiles of which size, which faults, and how they are delivered."""

    tiles: int
    """Number of distinct tiles (datatake, tile) in the archive (a duplicate delivery adds one product)."""
    tile_size: int | None = None
    """Swath width in pixels; None = full size (1000 px across, 1024 along, ortho grid ~1150-1250 px)."""
    seed: int = 0
    """Seed of everything: plan, land cover, clouds, noise. Same seed, same bytes."""
    footprints_only: bool = False
    """Write METADATA.XML only (no rasters): a fast archive for catalog and planning work."""
    compact_xml: bool = False
    """Write METADATA.XML without the bodies of its calibration and navigation sections (~3.8 MB
    of a real file's ~4.1 MB, the same in every product and never read by the platform). For
    planning-scale archives on a small disk: 11,636 real-size files take 48 GB, compact ones
    ~3.5 GB. Everything the catalog reads is unchanged."""
    faults: tuple[str, ...] = ()
    """Fault kinds to inject, each into one deterministic product (see FAULT_KINDS)."""
    zip_fraction: float = 0.25
    """Share of products delivered as `<stem>.ZIP` instead of a `<stem>/` folder."""
    interleave: str = "pixel"
    """GeoTIFF interleave of SPECTRAL_IMAGE.TIF: "pixel" (as delivered) or "band"."""
    layout: str = "tiled"
    """Layout of SPECTRAL_IMAGE.TIF (see LAYOUTS): "tiled" (128 px tiles), "cog" (Cloud-Optimized GeoTIFF
    with overviews, as DLR's STAC API serves it) or "stripped" (strips, as a plain GeoTIFF download)."""
    compress: str | None = None
    """GeoTIFF compression of all rasters: None (uncompressed) or "deflate"."""
    zip_deflate: bool = True
    """Deflate the members of ZIP deliveries (False: stored, byte-addressable members)."""
    hotspots: int | None = None
    """Number of revisit hotspots; None = scaled with the archive (2 ... 40)."""
    start_date: date = date(2022, 4, 1)
    """First acquisition day."""
    end_date: date = date(2024, 12, 31)
    """Last acquisition day."""

    def __post_init__(self) -> None:
        if self.tiles < 1:
            raise ValueError(f"tiles must be >= 1, got {self.tiles}")
        if self.tile_size is not None and not 16 <= self.tile_size <= 4000:
            raise ValueError(f"tile_size must be within 16..4000 px, got {self.tile_size}")
        bad = [f for f in self.faults if f not in FAULT_KINDS]
        if bad:
            raise ValueError(f"unknown fault kind(s) {bad}; valid kinds: {', '.join(FAULT_KINDS)}")
        if not 0.0 <= self.zip_fraction <= 1.0:
            raise ValueError(f"zip_fraction must be within 0..1, got {self.zip_fraction}")
        if self.interleave not in ("pixel", "band"):
            raise ValueError(f"interleave must be 'pixel' or 'band', got {self.interleave!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.layout == "cog" and self.interleave != "pixel":
            raise ValueError("layout 'cog' is pixel-interleaved (GDAL's COG driver); use interleave='pixel'")
        if self.compress not in (None, "deflate"):
            raise ValueError(f"compress must be None or 'deflate', got {self.compress!r}")
        if self.end_date < self.start_date:
            raise ValueError("end_date before start_date")

    @property
    def swath_px(self) -> int:
        """Swath width (across track) in pixels."""
        return self.tile_size or FULL_SWATH_PX

    @property
    def length_px(self) -> int:
        """Tile length (along track) in pixels."""
        return round(self.swath_px * 1.024)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {
            "tiles": self.tiles,
            "tile_size": self.tile_size,
            "seed": self.seed,
            "footprints_only": self.footprints_only,
            "compact_xml": self.compact_xml,
            "faults": list(self.faults),
            "zip_fraction": self.zip_fraction,
            "interleave": self.interleave,
            "layout": self.layout,
            "compress": self.compress,
            "zip_deflate": self.zip_deflate,
            "hotspots": self.hotspots,
            "start_date": self.start_date.isoformat(),
            "end_date": self.end_date.isoformat(),
        }
