"""The ``spectralearth`` command line: one sub-command per job step.

Each sub-command lives in its own module here and exposes ``register(subparsers)``,
which adds its parser and sets ``func`` to a callable taking the parsed
arguments and returning the process exit code. The commands are thin: they parse
arguments, call library functions, print a summary.

Exit codes: 0 success, 1 the job failed (or ``--strict`` found bad input),
2 bad usage (argparse), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

__all__ = ["main", "build_parser"]

# Order here is the order in `spectralearth --help`.
_COMMANDS = ("synth", "index", "overlaps", "combinations", "plan", "extract", "build", "versions", "stack", "stream-bench",
             "publish", "serve", "export-patch", "train", "labels", "evaluate")

_DESCRIPTION = """\
SpectralEarth platform: turn an archive of EnMAP L2A tiles into a
SpectralEarth-style training cube and stream it into GPU training.

Typical flow:
  spectralearth synth ARCHIVE --tiles 16 --tile-size 384   # a synthetic archive
  spectralearth build ARCHIVE --out OUT                    # everything below, as one job
    spectralearth index ARCHIVE --catalog OUT/catalog      #   STAC tile catalog
    spectralearth overlaps --catalog OUT/catalog --plot map.png
    spectralearth combinations --catalog OUT/catalog       #   Algorithm 1
    spectralearth plan --catalog OUT/catalog               #   patch windows and views
    spectralearth extract --catalog OUT/catalog --cube OUT/cube.zarr
  spectralearth stream-bench OUT/cube.zarr                 # what the training loader gets
  spectralearth versions OUT/cube.zarr                     # the cube's committed versions
  spectralearth train OUT/cube.zarr --ssl moco --backbone vit_s --out runs/moco
  spectralearth publish --cube OUT/cube.zarr --catalog OUT/catalog   # patch STAC items
  spectralearth serve --catalog OUT/catalog                # STAC API + browser on 127.0.0.1:8080

URLs are local paths or fsspec URLs (s3://bucket/prefix). S3 credentials come
from the standard AWS environment/config chain; an S3-compatible endpoint from
SPECTRALEARTH_S3_ENDPOINT (or AWS_ENDPOINT_URL). Every job takes --cluster
local|gateway|sync or --scheduler ADDRESS; `spectralearth stack up` starts a
local S3 + dask-gateway for trying that out.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spectralearth",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, only errors and the summary")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMANDS:
        module = importlib.import_module(f"{__name__}.{name.replace('-', '_')}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # dask's in-process scheduler logs every worker start/stop at INFO: keep that for -v.
    # distributed applies this config when it is first imported, and again below if it already was.
    import dask

    if not args.verbose:
        import warnings

        warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
    dist_level = "info" if args.verbose else "warning"
    dask.config.set({"logging.distributed": dist_level})
    for name in ("distributed", "dask_gateway", "bokeh", "tornado"):
        logging.getLogger(name).setLevel(logging.INFO if args.verbose else logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except RuntimeError as exc:  # cluster problems: say what is wrong, no traceback
        from spectralearth.platform.cluster import VersionMismatchError
        from spectralearth.platform.gateway import GatewayError

        if not isinstance(exc, GatewayError | VersionMismatchError):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
