"""End to end on CPU: synthetic archive -> cube -> synthetic CDL-like product -> label cube -> every protocol
of the spectral-adapter backbone -> the metrics table, all through the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spectralearth.pipelines.labels import open_label_cube
from spectralearth.platform.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_archive_to_metrics_table(pixel_archive, tmp_path, capsys):
    out = tmp_path / "out"
    bands = ",".join(str(b) for b in range(1, 225, 8) if not (127 <= b <= 141 or 161 <= b <= 167))
    assert main(["-q", "build", pixel_archive, "--out", str(out), "--cluster", "sync", "--bands", bands,
                 "--max-cloud", "0.6", "--max-cloud-shadow", "0.6", "--max-snow", "1.0"]) == 0
    cube = str(out / "cube.zarr")
    assert main(["-q", "synth-labels", "--cube", cube, "--product", "cdl", "--seed", "4", "--out", str(tmp_path / "cdl")]) == 0
    labels = str(tmp_path / "labels-cdl.zarr")
    capsys.readouterr()
    assert main(["-q", "labels", "--cube", cube, "--labels", str(tmp_path / "cdl"), "--task", "seg", "--nomenclature", "cdl",
                 "--out", labels, "--cluster", "sync", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    g = open_label_cube(labels)
    status = np.asarray(g["status"][:])
    assert report["kept"] == int((status == 0).sum()) >= 4
    assert report["kept"] + report["dropped_low_labelled"] + report["dropped_outside"] == report["patches"]
    res = str(tmp_path / "eval.json")
    assert main(["-q", "evaluate", cube, "--labels", labels, "--backbone", "adapter", "--epochs", "1", "--batch-size", "8",
                 "--crop", "32", "--device", "cpu", "--out", res]) == 0
    r = json.loads(Path(res).read_text())
    assert set(r["protocols"]) == {"linear", "finetune", "adapter"} and r["task"] == "seg"
    assert r["protocols"]["adapter"]["trainable_params"] == 56_192 + 128 * 14 + 14
    doc = tmp_path / "evaluation.md"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "report_eval.py"), res, "--doc", str(doc)], check=True)
    text = doc.read_text()
    for name in ("frozen encoder + head", "full fine-tuning", "spectral adapter only"):
        row = next(line for line in text.splitlines() if name in line)
        miou = float(row.split("|")[9].split()[0])
        assert miou == pytest.approx(r["protocols"][{"frozen encoder + head": "linear", "full fine-tuning": "finetune",
                                                     "spectral adapter only": "adapter"}[name]]["test"]["miou"], abs=1e-3)
