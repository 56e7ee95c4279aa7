"""`spectralearth synth`: write a synthetic EnMAP L2A archive."""

from __future__ import annotations

import argparse
import sys

from . import _common

_DESCRIPTION = """\
Write a synthetic EnMAP L2A archive that looks like a real delivery: DLR product
names, METADATA.XML with the element paths of the ground processor's output,
224-band int16 SPECTRAL_IMAGE.TIF (nodata -32768, bands 130-135 empty) on the
30 m north-up UTM grid of each scene centre, rotated swaths with nodata
corners, quality masks and quicklooks. Spectra are linear mixtures of
vegetation, soil, water, impervious and snow with residual water-vapour
features, smooth land cover that agrees where tiles overlap, blobby clouds and
band-dependent noise. Everything is deterministic by --seed.

Layout written under OUT_URL:
  <YYYY>/<MM>/<stem>/<stem>-<SUFFIX>     folder delivery
  <YYYY>/<MM>/<stem>.ZIP                 zipped delivery, members <stem>/<stem>-<SUFFIX>
  _synth_manifest.json                   config, injected faults, superseded stems
where <stem> = ENMAP01-____L2A-DT<datatake>_<start>_<tile>_V<version>_<processed>.

Acquisitions are descending datatakes of 1-30 overlapping tiles (2022-04 ..
2024-12), concentrated on revisit hotspots, so that tiles overlap on several
dates (at 11,636 tiles some overlap 30+ others).

Faults (--faults, each injected into one product, recorded in the manifest):
  duplicate       a second, newer delivery (higher V, later processing time)
  truncated-tiff  SPECTRAL_IMAGE.TIF cut short (header intact, tiles missing)
  malformed-xml   METADATA.XML not well-formed
  missing-xml     product without METADATA.XML
  all-nodata      image entirely -32768, CLASSES all 3
  band-mismatch   XML declares 224 bands, the TIFF holds fewer

Examples:
  spectralearth synth /tmp/archive --tiles 12 --tile-size 256
  spectralearth synth /tmp/fp --tiles 11636 --footprints-only
  spectralearth synth s3://bucket/archive --tiles 16 --faults duplicate,truncated-tiff
  spectralearth synth /tmp/cogs --tiles 4 --tile-size 256 --layout cog
  spectralearth synth /tmp/strips --tiles 4 --tile-size 256 --layout stripped --interleave band
"""


def _faults(value: str) -> tuple[str, ...]:
    from spectralearth.catalog.synth import FAULT_KINDS

    kinds = tuple(k.strip() for k in value.split(",") if k.strip())
    bad = [k for k in kinds if k not in FAULT_KINDS]
    if bad:
        raise argparse.ArgumentTypeError(
            f"unknown fault kind(s): {', '.join(bad)}; valid kinds: {', '.join(FAULT_KINDS)}"
        )
    return kinds


def _fraction(value: str) -> float:
    f = float(value)
    if not 0.0 <= f <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within 0..1, got {value}")
    return f


def register(sub) -> None:
    p = sub.add_parser(
        "synth",
        help="write a synthetic EnMAP L2A archive (folders/ZIPs, METADATA.XML, GeoTIFFs)",
        description=_DESCRIPTION,
        formatter_class=_common.HelpFormatter,
    )
    p.add_argument("out_url", metavar="OUT_URL", help="archive root: local path or fsspec URL (s3://bucket/prefix)")
    p.add_argument("--tiles", type=int, required=True, metavar="N", help="number of distinct tiles")
    p.add_argument("--tile-size", type=int, default=None, metavar="PX",
                   help="swath width in pixels for small test tiles (30 m stays 30 m); default: full size (1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of plan, land cover, clouds and noise")
    p.add_argument("--footprints-only", action="store_true", help="write METADATA.XML only (no rasters)")
    p.add_argument("--compact-xml", action="store_true",
                   help="leave METADATA.XML's calibration and navigation sections empty (~0.3 MB instead of ~4.1 MB a file)")
    p.add_argument("--faults", type=_faults, default=(), metavar="KIND,...", help="fault kinds to inject")
    p.add_argument("--zip-fraction", type=_fraction, default=0.25, metavar="F", help="share of ZIP deliveries")
    p.add_argument("--interleave", choices=("pixel", "band"), default="pixel", help="SPECTRAL_IMAGE.TIF interleave")
    p.add_argument("--layout", choices=("tiled", "cog", "stripped"), default="tiled",
                   help="SPECTRAL_IMAGE.TIF layout: 128 px tiles, a Cloud-Optimized GeoTIFF (256 px tiles, overviews; "
                        "as DLR's STAC API serves it) or strips (a plain GeoTIFF download)")
    p.add_argument("--compress", choices=("none", "deflate"), default="none", help="GeoTIFF compression")
    _common.add_storage_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spectralearth.catalog.synth import SynthConfig, synthesize_archive
    from spectralearth.platform.storage import redact

    try:
        config = SynthConfig(
            tiles=args.tiles, tile_size=args.tile_size, seed=args.seed, footprints_only=args.footprints_only, compact_xml=args.compact_xml,
            faults=tuple(args.faults), zip_fraction=args.zip_fraction, interleave=args.interleave,
            layout=args.layout,
            compress=None if args.compress == "none" else args.compress,
        )
    except ValueError as exc:
        print(f"spectralearth synth: error: {exc}", file=sys.stderr)
        return 2
    opts = _common.storage_options_from_args(args)
    report = synthesize_archive(args.out_url, config, storage_options=opts, progress=not args.quiet)
    _common.print_summary(
        f"synth: {redact(args.out_url)}",
        {
            "products": len(report.products),
            "zipped": len(report.zipped),
            "faults": ", ".join(f"{k}={s}" for s, k in report.faults.items()) or "none",
            "superseded": len(report.superseded),
            "bytes": f"{report.bytes_written:,}",
            "seconds": f"{report.seconds:.1f}",
        },
    )
    return 0
