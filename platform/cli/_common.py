"""Helpers shared by the sub-commands (argument types, summaries)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["HelpFormatter", "print_summary", "add_storage_args", "storage_options_from_args"]


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep the hand-written layout of descriptions and show defaults."""


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


def print_summary(title: str, rows: dict[str, Any], *, file=sys.stdout) -> None:
    """Print an aligned key/value summary block."""
    width = max((len(k) for k in rows), default=0)
    print(title, file=file)
    for key, value in rows.items():
        print(f"  {key:<{width}}  {value}", file=file)
