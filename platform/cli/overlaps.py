"""`spectralearth overlaps`: the overlap graph of a tile catalog."""

from __future__ import annotations

import argparse
import json
import sys

from spectralearth.platform.cli import _common

_DESCRIPTION = """\
Build the overlap graph of a tile catalog: one node per tile, an edge between
two tiles whose valid-data footprints share more than --min-area m² (measured
in the UTM zone of the intersection's centroid, so pairs across a zone
boundary are measured correctly; footprints crossing the antimeridian are not
supported).

The graph is computed as dask tasks: candidate pairs from the footprints'
envelopes (one vectorised STRtree query), then the exact intersections in tasks
of spatially close pairs (Hilbert order), on a local dask cluster, or on a
running scheduler with --scheduler.

Writes, beside the catalog (each task writes its part of the edges table,
committed by one _manifest.json write; the components in one atomic write):
  overlap_edges.parquet       table of GeoParquet parts, one row per edge: a, b (tile rows,
                              a < b), id_a, id_b, area_m2, utm_epsg,
                              same_datatake, geometry (WGS84 intersection)
  planning_tiles.parquet      table of GeoParquet parts, tiles that are spatial
                              neighbours together: tile, id, datatake, geometry (the
                              simplified footprint the graph was built from), datetime,
                              proj:code, proj:transform, proj:shape (the combinations
                              and plan tasks read their tiles from it)
  overlap_components.parquet  per tile: tile, id, component, degree, usable,
                              quarantine_reason, planning_part

Invalid footprints (e.g. self-intersecting) are repaired with make_valid;
empty footprints and superseded duplicate deliveries are set aside. Both are
counted in the summary.

Examples:
  spectralearth overlaps --catalog demo-out/catalog --plot demo-out/overlaps.png
  spectralearth overlaps --catalog s3://bucket/catalog --scheduler tcp://10.0.0.5:8786

Exit codes: 0 done, 1 the job failed (e.g. empty or missing catalog), 2 bad usage.
"""


def register(sub) -> None:
    p = sub.add_parser(
        "overlaps",
        help="overlap graph of a tile catalog (edges, components, degree map)",
        description=_DESCRIPTION,
        formatter_class=_common.HelpFormatter,
    )
    p.add_argument("--catalog", required=True, metavar="CATALOG_URL", help="tile catalog folder (local path or fsspec URL)")
    p.add_argument("--plot", metavar="PNG", default=None, help="also draw the map (footprints by degree, edges) to this PNG")
    p.add_argument("--min-area", type=float, default=1.0, metavar="M2", help="smallest intersection (m²) that makes an edge")
    p.add_argument("--partitions", type=int, default=None, metavar="N", help="tasks of the exact edge test (default: ~2,000 tiles each)")
    _common.add_cluster_args(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    _common.add_storage_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spectralearth.pipelines.overlaps import overlaps_job

    try:
        report = overlaps_job(
            args.catalog,
            storage_options=_common.storage_options_from_args(args),
            cluster=_common.cluster_spec_from_args(args),
            plot=args.plot,
            min_area_m2=args.min_area,
            npartitions=args.partitions,
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"overlaps: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0
    rows = report.as_dict()
    _common.print_summary(
        "overlap graph",
        {
            "tiles": rows["n_tiles"],
            "repaired footprints": rows["n_repaired"],
            "quarantined tiles": rows["n_quarantined"],
            "edges": f"{rows['n_edges']} ({rows['n_same_datatake']} within one datatake)",
            "components": f"{rows['n_components']} (largest {rows['largest_component']} tiles, {rows['isolated']} isolated)",
            "degree": f"max {rows['degree_max']}, mean {rows['degree_mean']}, {rows['degree_gt_30']} tiles > 30",
            "edges file": rows["edges_url"],
            "components file": rows["components_url"],
            "map": rows["plot_url"] or "-",
            "seconds": rows["seconds"],
        },
    )
    return 0
