"""Render ``results/stream.json`` as the tables of ``docs/streaming.md`` (between the markers).

    python benchmarks/report_stream.py           # rewrite the section in docs/streaming.md
    python benchmarks/report_stream.py --print   # only print it
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "stream.json"
DOC = ROOT / "docs" / "streaming.md"
START, END = "<!-- stream-bench:start -->", "<!-- stream-bench:end -->"
TARGET_SAMPLES_PER_S = 1000.0


def render(r: dict) -> str:
    floor = r["floor"]["samples_per_cpu_s"]
    rows = [
        ("decode floor (blosc, in memory, 1 thread)", r["floor"]["samples_per_cpu_s"], None, "1.00"),
        ("PatchStream, local disk", r["stream_local"]["samples_per_cpu_s"], r["stream_local"]["samples_per_s"],
         f"{r['ratios']['local_vs_floor']:.2f}"),
        ("PatchStream, SeaweedFS S3", r["stream_s3"]["samples_per_cpu_s"], r["stream_s3"]["samples_per_s"],
         f"{r['ratios']['s3_vs_floor']:.2f}"),
        ("GeoTIFF per view + rasterio, same S3", r["reference_s3"]["samples_per_cpu_s"],
         r["reference_s3"]["samples_per_s"], f"{r['reference_s3']['samples_per_cpu_s'] / floor:.2f}"),
    ]
    c = r["cube"]
    m = r["machine"]
    out = [
        f"Measured {r['when']} on {m['cpus']} CPUs ({m['machine']}, Python {m['python']}); cube of "
        f"{c['views']} views x {c['bands']} bands x {c['patch_px']}^2 px, "
        f"{r['floor']['compressed_mb_per_view']:.2f} MB per view compressed "
        f"(ratio {r['floor']['compression_ratio']:.2f}); {r['io_threads']} I/O threads.",
        "",
        "| path | samples per CPU-second | samples/s (wall) | x decode floor |",
        "|---|---:|---:|---:|",
    ]
    for name, per_cpu, wall, ratio in rows:
        out.append(f"| {name} | {per_cpu:.0f} | {'' if wall is None else f'{wall:.0f}'} | {ratio} |")
    w = r["workers"]
    wm = r["worker_memory"]
    out += [
        "",
        f"Each ratio is the median over {r['repeats']} runs of the stream, each paired with a decode-floor "
        f"run just before it (same load); 1-minute load average {r['load_start']:.1f} at the start, "
        f"{r['load_end']:.1f} at the end (2 CPUs).",
        "",
        f"Stream vs GeoTIFF-per-view reading (per core, S3): **{r['ratios']['s3_vs_reference']:.1f}x**. "
        f"Time to first batch (2 forked workers, S3): **{w['first_batch_s']:.2f} s**. Through DataLoader "
        f"workers (their CPU only, start-up and imports included, so short runs understate the steady state): "
        f"{w['samples_per_cpu_s']:.0f} samples per CPU-second over {w['samples']} views (fork, S3), "
        f"{wm['large']['samples_per_cpu_s']:.0f} over {wm['large']['samples']} views (forkserver, local).",
        "",
        f"Memory of one DataLoader worker (2 workers, batches of 8 = {wm['batch_mb']:.0f} MB, "
        f"prefetch_bytes = {wm['prefetch_mb']:.0f} MB). USS is what the worker itself holds; RSS also counts "
        "pages shared with the parent (a forked worker starts with the parent's whole resident set, which is "
        "what a plain RSS figure mostly shows):",
        "",
        "| cube | workers | peak USS MB | peak PSS MB | peak RSS MB | USS at start MB |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name in ("small", "large"):
        m = wm[name]
        out.append(f"| {m['views']} views, local | {m['context']} | {m['peak_uss_mb']:.0f} | {m['peak_pss_mb']:.0f} "
                   f"| {m['peak_rss_mb']:.0f} | {m['start_uss_mb']:.0f} |")
    out += [
        f"| {r['cube']['views']} views, S3 | {w['context']} | {w['peak_uss_mb']:.0f} | {w['peak_pss_mb']:.0f} "
        f"| {w['peak_rss_mb']:.0f} | {w['start_uss_mb']:.0f} |",
        "",
        f"Shuffle quality (Spearman correlation of yield order and storage position; 0 is ideal): "
        f"default {r['shuffle_quality']['spearman_default']:+.3f}, block 8 + window 32 "
        f"{r['shuffle_quality']['spearman_block8_window32']:+.3f}, no shuffle +1.",
        "",
        f"CPU cores needed to feed one GPU at {TARGET_SAMPLES_PER_S:.0f} samples/s (from the per-core S3 figure; "
        "pair mode reads two views per sample):",
        "",
        "| mode | views/s | cores |",
        "|---|---:|---:|",
    ]
    per_core = r["stream_s3"]["samples_per_cpu_s"]
    for mode, k in (("single", 1), ("pair", 2)):
        views = TARGET_SAMPLES_PER_S * k
        out.append(f"| {mode} | {views:.0f} | {math.ceil(views / per_core)} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--print", action="store_true", help="print instead of rewriting docs/streaming.md")
    args = ap.parse_args()
    table = render(json.loads(RESULT.read_text()))
    if args.print:
        print(table)
        return
    text = DOC.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    DOC.write_text(f"{head}{START}\n{table}\n{END}{tail}")
    print(f"updated {DOC}")


if __name__ == "__main__":
    main()
