"""Smoke test of ``benchmarks/run.py``: a small subset runs and writes its table; no timing is checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_run_quick_subset_writes_table(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/run.py"), "--quick", "--only", "core-validate",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "validate + graph, 80 stages" in proc.stdout
    assert "nbformat.read alone" in proc.stdout

    data = json.loads((tmp_path / "results.json").read_text())
    assert data["meta"]["quick"] is True
    assert data["meta"]["machine"]["cores"] >= 1
    assert len(data["meta"]["machine"]["load_average_at_start"]) == 3
    assert data["failures"] == {}
    (r,) = data["rows"]
    assert r["bench"] == "core-validate" and r["unit"] == "s"
    assert r["ours"] > 0 and r["baseline"] > 0 and r["ratio"] == r["ours"] / r["baseline"]

    md = (tmp_path / "results.md").read_text()
    assert "quick mode" in md and "load average at start" in md
    assert "| core-validate | validate + graph, 80 stages / 402 cells |" in md


def test_unknown_benchmark_is_refused(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/run.py"), "--only", "nope", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode != 0
    assert "unknown benchmark(s) nope" in proc.stderr
    assert not (tmp_path / "results.md").exists()
