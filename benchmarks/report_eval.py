"""Render evaluation results (``results/eval.json`` or files from ``spectralearth evaluate``) as the table of docs/evaluation.md.

    python benchmarks/report_eval.py                          # rewrite the section in docs/evaluation.md
    python benchmarks/report_eval.py --print                  # only print it
    python benchmarks/report_eval.py run/eval-*.json --doc /tmp/eval.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "eval.json"
DOC = ROOT / "docs" / "evaluation.md"
START, END = "<!-- eval-table:start -->", "<!-- eval-table:end -->"
PROTOCOL_NAMES = {"linear": "frozen encoder + head", "finetune": "full fine-tuning", "adapter": "spectral adapter only"}


def _runs(paths: list[Path]) -> list[tuple[str, dict, dict]]:
    """(benchmark name, evaluation result, file meta) for every evaluation in the files."""
    out = []
    for path in paths:
        d = json.loads(path.read_text())
        if "benchmarks" in d:
            out += [(name, r, d) for name, r in d["benchmarks"].items()]
        else:
            out.append((Path(d.get("labels", path.stem)).stem, d, {}))
    return out


def render(paths: list[Path]) -> str:
    lines = ["| benchmark | task | encoder | protocol | trainable params | epochs | train / val / test | "
             "test F1 (micro / macro) | test mIoU (pixel acc.) | train s |",
             "|---|---|---|---|---:|---:|---|---:|---:|---:|"]
    notes = []
    for name, r, meta in _runs(paths):
        s = r["samples"]
        for proto, p in r["protocols"].items():
            t = p["test"]
            f1 = f"{t['f1_micro']:.3f} / {t['f1_macro']:.3f}" if r["task"] == "multilabel" else ""
            miou = f"{t['miou']:.3f} ({t['accuracy']:.3f})" if r["task"] == "seg" else ""
            lines.append(f"| {name} | {r['task']} ({len(r['classes'])} classes) | {r['encoder']} | "
                         f"{PROTOCOL_NAMES.get(proto, proto)} | {p['trainable_params']:,} | {r['params']['epochs']} | "
                         f"{s['train']} / {s['val']} / {s['test']} | {f1} | {miou} | {p['train_seconds']:.0f} |")
        lr = r.get("label_report")
        if lr:
            notes.append(f"{name}: {lr['kept']} of {lr['patches']} patches kept ({lr['dropped_low_labelled']} with too "
                         f"little labelled area, {lr['dropped_outside']} outside the product), split "
                         f"'{r['split']}', {r['bands']} bands, device {r['device']}.")
        if meta and not any("archive" in n for n in notes):
            a, c = meta["archive"], meta["cube"]
            m = meta["machine"]
            notes.insert(0, f"Measured {meta['when']} on {m['cpus']} CPUs ({m['machine']}): synthetic archive of "
                            f"{a['tiles']} tiles of {a['tile_size']} px (seed {a['seed']}) -> cube of {c['patches']} "
                            f"patches x {c['bands']} bands.")
    return "\n".join(lines + [""] + [f"- {n}" for n in notes]) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="*", type=Path, help=f"result files (default: {RESULT.relative_to(ROOT)})")
    ap.add_argument("--doc", type=Path, default=DOC, help="the Markdown file whose marked section is rewritten")
    ap.add_argument("--print", action="store_true", help="print the table only")
    args = ap.parse_args(argv)
    table = render(args.results or [RESULT])
    if args.print:
        print(table)
        return 0
    text = args.doc.read_text() if args.doc.exists() else f"# Evaluation\n\n{START}\n{END}\n"
    if START not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    args.doc.write_text(f"{head}{START}\n{table}{END}{tail}")
    print(f"wrote {args.doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
