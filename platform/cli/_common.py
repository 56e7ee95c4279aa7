"""Helpers shared by the sub-commands (argument types, summaries)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = [
    "HelpFormatter",
    "add_cluster_args",
    "add_storage_args",
    "cluster_spec_from_args",
    "print_summary",
    "storage_options_from_args",
]


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep the hand-written layout of descriptions and show defaults (except empty ones)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        default = action.default
        if default is None or default is False or default is argparse.SUPPRESS or "%(default)" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def add_storage_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage-options",
        metavar="JSON",
        default=None,
        help="extra fsspec storage options as JSON (never put secrets here; use the AWS environment)",
    )


def storage_options_from_args(args: argparse.Namespace) -> dict[str, Any] | None:
    raw = getattr(args, "storage_options", None)
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--storage-options: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise SystemExit("--storage-options: expected a JSON object")
    return value


CLUSTER_HELP = """\
Where the work runs:
  --cluster local      a dask LocalCluster on this machine (default)
  --cluster gateway    a new dask-gateway cluster, shut down when the job ends;
                       address and credentials from dask config / environment
                       (DASK_GATEWAY__ADDRESS, DASK_GATEWAY__PROXY_ADDRESS,
                       DASK_GATEWAY__AUTH__*; `eval "$(spectralearth stack env)"`
                       for the local stack)
  --cluster sync       no cluster: everything in this process
  --scheduler ADDRESS  an existing dask scheduler (overrides --cluster)
"""


def add_cluster_args(parser: argparse.ArgumentParser) -> None:
    """Add the cluster options every job command shares (see :func:`cluster_spec_from_args`)."""
    g = parser.add_argument_group("cluster", CLUSTER_HELP)
    g.add_argument("--cluster", choices=("local", "gateway", "sync"), default="local", help="where the work runs")
    g.add_argument("--scheduler", metavar="ADDRESS", default=None, help="use an existing dask scheduler (overrides --cluster)")
    g.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                   help="workers: local default one per core (at most 4), gateway default 1; fixed size")
    g.add_argument("--worker-cores", type=_positive_int, default=None, metavar="N",
                   help="threads per worker (gateway option worker_cores)")
    g.add_argument("--worker-memory", default=None, metavar="SIZE",
                   help="memory per worker, e.g. 4GiB (gateway option worker_memory)")
    g.add_argument("--image", default=None, metavar="IMAGE",
                   help="worker container image (gateway option image, where the server offers it)")
    g.add_argument("--adapt-min", type=_non_negative_int, default=None, metavar="N",
                   help="adaptive scaling: at least N workers (instead of a fixed --workers)")
    g.add_argument("--adapt-max", type=_positive_int, default=None, metavar="N", help="adaptive scaling: at most N workers")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def cluster_spec_from_args(args: argparse.Namespace):
    """The :class:`~spectralearth.platform.cluster.ClusterSpec` that :func:`add_cluster_args` options ask for.

    Raises:
        SystemExit: contradictory options (with a message naming them).
    """
    from spectralearth.platform.cluster import ClusterSpec

    kind = "scheduler" if getattr(args, "scheduler", None) else getattr(args, "cluster", "local")
    try:
        return ClusterSpec(
            kind=kind,
            address=args.scheduler if kind == "scheduler" else None,
            n_workers=getattr(args, "workers", None),
            worker_cores=getattr(args, "worker_cores", None),
            worker_memory=getattr(args, "worker_memory", None),
            image=getattr(args, "image", None),
            adapt_min=getattr(args, "adapt_min", None),
            adapt_max=getattr(args, "adapt_max", None),
        )
    except ValueError as exc:
        raise SystemExit(f"cluster options: {exc}") from None


def print_summary(title: str, rows: dict[str, Any], *, file=None) -> None:
    """Print an aligned key/value summary block (to stdout unless ``file`` is given)."""
    file = file or sys.stdout
    width = max((len(k) for k in rows), default=0)
    print(title, file=file)
    for key, value in rows.items():
        print(f"  {key:<{width}}  {value}", file=file)
