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
HTTPS_RESULT = ROOT / "benchmarks" / "results" / "stream_https.json"
TLS_RESULT = ROOT / "benchmarks" / "results" / "tls_get.json"
HTTPS_START, HTTPS_END = "<!-- stream-https:start -->", "<!-- stream-https:end -->"
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


def _error_line(text: str, *, top_level: bool = False) -> str:
    """The last ``...Error: ...`` line of a traceback (``top_level``: not an indented one), for a table cell."""
    errors = [ln.strip() for ln in str(text).splitlines()
              if "Error" in ln and ":" in ln and not (top_level and ln.startswith(" "))]
    return errors[-1] if errors else "see the JSON"


def render_https(r: dict, tls: dict | None) -> str:
    """The HTTPS figures: the recommended setup, the fork fallback, the peers, planning."""
    c, m, s = r["cube"], r["machine"], r["stream"]
    out = [
        f"Measured {r['when']} on {m['cpus']} CPUs; cube of {c['views']} views x {c['bands']} bands x "
        f"{c['patch_px']}^2 px on SeaweedFS over HTTPS; {r['workers']} DataLoader workers ({r['context']}), "
        f"batches of {r['batch_size']}, `pin_memory=True`{'' if r.get('accelerator', True) else ' (a no-op: no accelerator here)'}, "
        f"{r['io_threads']} I/O threads per worker; each pass "
        f"starts fresh workers (their start-up counts); median of {r['repeats']} passes; 1-minute load "
        f"{r['load_start']:.1f} at the start, {r['load_end']:.1f} at the end. CPU: workers and the consuming "
        "process together (the S3 server's is left out)."
        + (f" The HTTPS rows of PatchStream were measured at {r['stream_measured']} on the same machine, a run "
           "before the plain-HTTP and peer rows (`--peers-only`)." if r.get("stream_measured") else ""),
        "",
        "| reader | samples/s (wall) | samples per CPU-second | stream vs it, per CPU-second | stream vs it, wall |",
        "|---|---:|---:|---:|---:|",
        f"| PatchStream (obstore) | {s['samples_per_s']:.1f} | {s['samples_per_cpu_s']:.1f} | | |",
    ]
    fb = r.get("fork_fallback")
    if fb:
        out.append(f"| PatchStream, workers forked after the parent used obstore (s3fs fallback) | "
                   f"{fb['samples_per_s']:.1f} | {fb['samples_per_cpu_s']:.1f} | "
                   f"{s['samples_per_cpu_s'] / fb['samples_per_cpu_s']:.2f} | {s['samples_per_s'] / fb['samples_per_s']:.2f} |")
    fs = r.get("after_parent_read_forkserver")
    if fs:
        out.append(f"| PatchStream, parent used obstore, workers from a preloaded forkserver (what `stream.loader()` does) | "
                   f"{fs['samples_per_s']:.1f} | {fs['samples_per_cpu_s']:.1f} | "
                   f"{s['samples_per_cpu_s'] / fs['samples_per_cpu_s']:.2f} | {s['samples_per_s'] / fs['samples_per_s']:.2f} |")
    ours = s
    sh = r.get("stream_http")
    if sh:  # the peers read the server's plain-HTTP port: the stream is compared with them there
        ours = sh
        out.append(f"| PatchStream (obstore), same server over plain HTTP | {sh['samples_per_s']:.1f} | "
                   f"{sh['samples_per_cpu_s']:.1f} | {s['samples_per_cpu_s'] / sh['samples_per_cpu_s']:.2f} | "
                   f"{s['samples_per_s'] / sh['samples_per_s']:.2f} |")
    over = r.get("peers_over", "https")
    peers = r.get("peers") or {}
    if "error" in peers:
        out.append(f"| peers (over {over}) | failed: {_error_line(peers['error'], top_level=True)[:200]} | | | |")
    for name, label in (("mosaicml_streaming", "MosaicML Streaming (MDS, zstd)"), ("litdata", "LitData (zstd)")):
        p = peers.get(name)
        if not p:
            continue
        if "error" in p:
            out.append(f"| {label} (over {over}) | failed: {_error_line(p['error'])[:160]} | | | |")
            continue
        ref = p.get("stream_same_run", ours)  # the stream figure of the peer's own run
        out.append(f"| {label} {p.get('version', '')} (over {over}; stream over {over} vs it) | {p['samples_per_s']:.1f} | "
                   f"{p['samples_per_cpu_s']:.1f} | {ref['samples_per_cpu_s'] / p['samples_per_cpu_s']:.2f} | "
                   f"{ref['samples_per_s'] / p['samples_per_s']:.2f} |")
    pl = r["planning"]
    out += [
        "",
        f"Decode floor {r['floor']['samples_per_cpu_s']:.0f} samples per CPU-second; the stream over HTTPS "
        f"through DataLoader workers reaches **{s['vs_floor']:.2f}x** of it. Cores to feed 1,000 samples/s in "
        f"this setup: **{pl['cores_for_1000_samples_per_s']:.0f}**. Shared memory per rank for these batches "
        f"({pl['batch_mb']:.0f} MiB): {pl['shm_mb_per_rank']:.0f} MiB (Kubernetes default: 64 MB).",
    ]
    if tls:
        paths = tls["paths"]
        out += ["", f"Whole-object GETs over HTTPS ({tls['objects']} objects of {tls['object_bytes'] / 1e6:.1f} MB, "
                f"{tls['threads']} threads): obstore's own GET {paths['obstore_get']['cpu_s_per_gb']:.2f} CPU-s/GB, "
                f"presigned GET received by `http.client` into a reused buffer "
                f"{paths['http_client_readinto']['cpu_s_per_gb']:.2f} CPU-s/GB "
                f"(ratio {tls['hand_written_cpu_ratio']:.2f}); wall {paths['obstore_get']['gb_per_s']:.2f} vs "
                f"{paths['http_client_readinto']['gb_per_s']:.2f} GB/s."]
    return "\n".join(out)


def _replace(text: str, start: str, end: str, body: str) -> str:
    if start not in text:
        return f"{text.rstrip()}\n\n{start}\n{body}\n{end}\n"
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    return f"{head}{start}\n{body}\n{end}{tail}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--print", action="store_true", help="print instead of rewriting docs/streaming.md")
    args = ap.parse_args()
    table = render(json.loads(RESULT.read_text()))
    https = None
    if HTTPS_RESULT.exists():
        https = render_https(json.loads(HTTPS_RESULT.read_text()),
                             json.loads(TLS_RESULT.read_text()) if TLS_RESULT.exists() else None)
    if args.print:
        print(table)
        if https:
            print("\n" + https)
        return
    text = _replace(DOC.read_text(), START, END, table)
    if https:
        text = _replace(text, HTTPS_START, HTTPS_END, https)
    DOC.write_text(text)
    print(f"updated {DOC}")


if __name__ == "__main__":
    main()
