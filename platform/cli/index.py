"""`spectralearth index` (placeholder until implemented)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("index", help="(not implemented yet)")
    p.set_defaults(func=lambda args: 1)
