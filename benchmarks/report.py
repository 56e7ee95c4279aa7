"""Regenerate docs/benchmarks.md from the JSON results in benchmarks/results/.

Run after any benchmark: ``python benchmarks/report.py``. The tables are never typed by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DOC = HERE.parent / "docs" / "benchmarks.md"

#: benchmark name -> (title, how to reproduce, what it measures)
ABOUT = {
    "index": (
        "Indexing the footprint-only archive",
        "python benchmarks/bench_index.py",
        "`spectralearth synth --footprints-only` of 11,636 tiles, then `index_archive` on a 2-worker LocalCluster; "
        "peak memory is the whole process tree (client + workers).",
    ),
    "overlaps": (
        "Overlap graph and combinations",
        "python benchmarks/bench_overlaps.py",
        "Overlap graph + Algorithm 1 combinations on the full-scale footprint simulation; naive all-pairs ratio on a subset; "
        "growth at constant density (a 25 % sample of the components vs all) and under densification.",
    ),
    "scale_bound": (
        "The candidate bound against the exact combination search",
        "python benchmarks/bench_scale.py --only base,revisits4_bounded,revisit_bound --results scale_bound",
        "A later run on another machine with its own base: the full archive revisited 4 times with the combination "
        "search bounded (beam 4, 2 candidates per tuple), and that bound against the exact search on a 60-tile archive "
        "revisited 4–20 times, each followed by the patch plan (see docs/scale.md).",
    ),
    "scale_client": (
        "Planning with its client in a fresh process",
        "python benchmarks/bench_scale.py --only base,area4,area20 --results scale_client",
        "The real planning path of the base, area4 and area20 archives, the three jobs run in a new process each time, "
        "so the client's peak RSS is the jobs' own (see docs/scale.md).",
    ),
    "plan": ("Patch plan at full scale", "python benchmarks/bench_plan.py", "Patch/view counts of the plan next to SpectralEarth's."),
    "extract": (
        "Extraction throughput",
        "python benchmarks/bench_extract.py",
        "Pipeline MB/s per core against the floor measured in the same run (the same windows read, encoded and written "
        "in a tight loop by N pinned processes), for N = 1 and 2 workers.",
    ),
    "stream": ("Streaming dataset", "python benchmarks/bench_stream.py", "Samples/s per core against the decode floor and the per-view GeoTIFF pattern."),
    "gateway": (
        "dask-gateway scaling (cube on the stack's S3)",
        "python benchmarks/bench_gateway.py",
        "Extraction on 1 vs 2 gateway workers, and LocalCluster vs gateway; the SeaweedFS server shares the 2 cores.",
    ),
    "gateway_local_cube": (
        "dask-gateway scaling (cube on local disk)",
        "python benchmarks/bench_gateway.py --cube-on local",
        "The same, with the cube on local disk so that only the workers compete for the 2 cores.",
    ),
    "index_real_xml_s3": (
        "Indexing footprint-only tiles with real-size METADATA.XML from S3",
        "python benchmarks/bench_index.py --s3-real-xml --tiles 300 --rounds 3",
        "Footprint-only tiles whose METADATA.XML has the real size (~4.1 MB) on a loopback SeaweedFS, indexed on a "
        "2-worker LocalCluster: read by two range requests (the default), read whole, and the brief XML of the same "
        "tiles, in rotating rounds; 11,636 tiles extrapolated from the median rate.",
    ),
    "index_real_xml_s3_full": (
        "Indexing the full archive with real-size METADATA.XML from S3",
        "python benchmarks/bench_index.py --s3-real-xml --full",
        "11,636 footprint-only products whose METADATA.XML has the real size (~4.1 MB, 48 GB in all), synthesised "
        "straight into a loopback SeaweedFS bucket and indexed from there once on a 2-worker LocalCluster with the "
        "default range-read XML reader; peak memory is the whole process tree.",
    ),
    "extract_layouts": (
        "Extraction per image layout",
        "python benchmarks/bench_extract.py --layouts tiled-pixel,tiled-band,cog-pixel,stripped-pixel,stripped-band",
        "Per SPECTRAL_IMAGE layout, one core: the pipeline (`extract_cube`, windows read once per source block) and "
        "one read per window, each against the read+encode floor (covered rows read at once, windows encoded and stored).",
    ),
    "remote_read": (
        "Remote COG reads: GDAL /vsicurl/ vs fsspec",
        "python benchmarks/bench_remote_read.py",
        "The windows of a full-size 224-band COG over loopback HTTPS with basic auth, through `read_windows`; "
        "wall and client CPU seconds, requests and bytes sent (server counters).",
    ),
    "stream_https": (
        "Streaming over HTTPS S3 in the recommended setup",
        "python benchmarks/bench_stream_https.py --peers-python PEERS_VENV/bin/python",
        "DataLoader workers + pin_memory over HTTPS: samples/s, samples per CPU-second, vs the decode floor, the fork "
        "fallback, the peers (MosaicML Streaming, LitData), cores for 1,000 samples/s, /dev/shm per rank.",
    ),
    "tls_get": (
        "Whole-object GETs over HTTPS",
        "python benchmarks/bench_tls_get.py",
        "obstore's own GET against a presigned GET received by http.client into a reused buffer: CPU per GB, GB/s.",
    ),
    "train_gpu": (
        "Training throughput on a GPU",
        "python benchmarks/bench_train_gpu.py",
        "ViT-S with MoCo and with MAE at batch 64, bfloat16, streaming a 128 px, 202-band cube from a SeaweedFS S3 "
        "server on the GPU machine: samples/s and the share of step time spent waiting for data (median, p10/p90).",
    ),
    "cube": (
        "Cube engine: reads per engine, writes, a grown archive",
        "python benchmarks/bench_cube.py",
        "Every view of one cube read through PatchStream and zarr (plain Zarr v3 versions) and through Icechunk, local and "
        "SeaweedFS S3, as samples per CPU-second against the in-memory decode floor; write and commit cost per engine; "
        "a build after the newest 25 % of products arrive against a full build of the grown archive (bytes, views, time).",
    ),
    "cube_http": (
        "Cube engine reads, S3 over plain HTTP",
        "python benchmarks/bench_cube.py --skip grow --no-tls",
        "The same reads and writes with SeaweedFS over plain HTTP on loopback (an earlier run of the same script).",
    ),
    "eval": (
        "Downstream benchmarks end to end (CPU)",
        "python benchmarks/bench_eval.py",
        "Synthetic archive -> cube -> CORINE/CDL/NLCD-like label cubes -> linear / finetune / adapter protocols; "
        "the table is in docs/evaluation.md (python benchmarks/report_eval.py).",
    ),
    "publish": (
        "Publishing the patch items at full scale",
        "python benchmarks/bench_publish.py --workdir DIR",
        "`publish_patches` (no thumbnails) of every patch of the full-archive footprint simulation, from a cube holding the "
        "plan's index arrays and no pixels; against pystac's own static-catalog save of 10,000 of those items in the same run.",
    ),
    "publish_scattered": (
        "Publishing the patch items at full scale (scattered layout)",
        "python benchmarks/bench_publish.py --workdir DIR --layout scattered",
        "As above, with the plan's counts of patches and views (431,101 / 519,193) scattered over land instead of the plan itself.",
    ),
    "search_scattered": (
        "STAC API search latency, both backends (scattered layout)",
        "python benchmarks/bench_search.py --workdir DIR --layout scattered",
        "As below, over the scattered-layout items of `bench_publish.py --layout scattered`.",
    ),
    "search": (
        "STAC API search latency, both backends",
        "python benchmarks/bench_search.py --workdir DIR",
        "Bounded load on loopback over the full-scale patch items: bbox + datetime with limit 100 (half the boxes with no "
        "patch) and item by id, on the embedded geoparquet backend and on pgstac.",
    ),
}


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    rows = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            rows.extend(_flatten(v, key + "."))
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            rows.append((key, f"{len(v)} entries (see JSON)"))
        else:
            rows.append((key, v))
    return rows


def render() -> str:
    out = [
        "# Benchmarks",
        "",
        "Generated by `python benchmarks/report.py` from `benchmarks/results/*.json`; do not edit by hand.",
        "All figures were measured on the 2-core development machine, which is shared and noisy: compare",
        "ratios measured in the same run rather than absolute times.",
        "",
    ]
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text())
        name = data.get("benchmark", path.stem)
        title, cmd, what = ABOUT.get(name, (name, f"python benchmarks/bench_{name}.py", ""))
        m = data.get("machine", {})
        out += [
            f"## {title}",
            "",
            what,
            "",
            f"Reproduce: `{cmd}` (result: `benchmarks/results/{path.name}`, {data.get('when', '?')}, "
            f"{m.get('cpus', '?')} CPUs, {m.get('memory_gb', '?')} GB).",
            "",
        ]
        out += ["| metric | value |", "|---|---|"]
        for key, value in _flatten({k: v for k, v in data.items() if k not in ("benchmark", "when", "machine")}):
            out.append(f"| `{key}` | {value} |")
        out.append("")
    return "\n".join(out)


def main() -> int:
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(render())
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
