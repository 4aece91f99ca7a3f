"""Sweeps: one run per parameter combination, identical stages shared, variants ranked by a metric."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_pipeline.exceptions import ParameterError
from jupyter_pipeline.notebook.parse import load
from jupyter_pipeline.stagecache import stage_keys
from jupyter_pipeline.sweep import parse_sweep_args, run_sweep, variants


def test_grid_and_random_sample(fixture_nb):
    p = load(fixture_nb("sweep_metric"))
    grid = parse_sweep_args(["a=1,2,3", "b=0,5"])
    combos = variants(p, grid)
    assert len(combos) == 6 and {"a": 3, "b": 5} in combos and all(isinstance(c["a"], int) for c in combos)
    sample = variants(p, grid, sample=4)
    assert len(sample) == 4 and all(c in combos for c in sample)
    with pytest.raises(ParameterError, match="NAME=V1,V2"):
        parse_sweep_args(["a"])
    with pytest.raises(ParameterError, match="no parameter 'c'"):
        variants(p, {"c": ["1"]})


def test_stage_keys_change_only_with_what_a_stage_uses(fixture_nb):
    p = load(fixture_nb("sweep_metric"))
    k1, k2 = stage_keys(p, {"a": 1, "b": 1}), stage_keys(p, {"a": 2, "b": 1})
    assert k1["prep"] == k2["prep"]  # prep uses no parameter
    assert k1["score"] != k2["score"]


@pytest.mark.slow
def test_sweep_shares_identical_stages_and_finds_the_best(fixture_nb, store_dir):
    p = load(fixture_nb("sweep_metric"))
    result = run_sweep(p, {"a": ["1", "3", "5"], "b": ["0", "2"]}, store=store_dir, metric="score", goal="max")
    data = result.to_json()
    assert len(data["variants"]) == 6 and all(v["status"] == "succeeded" for v in data["variants"])
    # prep ran once; the five other variants point at that run's outputs
    preps = [r.stages["prep"] for r in result.runs]
    assert sum(1 for s in preps if s.reused_from is None) == 1
    owner = next(r.run_id for r in result.runs if r.stages["prep"].reused_from is None)
    assert all(s.reused_from == owner for s in preps if s.reused_from)
    assert data["stages_executed"] == 7 and data["stages_used"] == 12
    best = data["variants"][0]
    assert best["best"] and best["parameters"] == {"a": 3, "b": 2} and best["metrics"]["score"] == 12
    scores = [v["metrics"]["score"] for v in data["variants"]]
    assert scores == sorted(scores, reverse=True)
    stored = json.loads((Path(store_dir) / "sweeps" / data["sweep_id"] / "sweep.json").read_text())
    assert stored["best"] == data["best"]


@pytest.mark.slow
def test_sweep_of_the_example_from_the_cli(tmp_path):
    exe = Path(sys.executable).parent / "jupyter-pipeline"
    proc = subprocess.run(
        [str(exe), "run", "examples/digits/digits.ipynb", "-p", "epochs", "2", "--store", str(tmp_path),
         "--sweep", "learning_rate=0.05,0.01,0.001", "--sweep", "hidden_units=16,32",
         "--metric", "accuracy", "--json"],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout)
    assert len(data["variants"]) == 6
    # load and preprocess use no swept parameter: 2 executions instead of 12
    records = [json.loads((tmp_path / "runs" / v["run_id"] / "run.json").read_text()) for v in data["variants"]]
    for stage in ("load", "preprocess"):
        assert sum(1 for r in records if not r["stages"][stage]["reused_from"]) == 1
    assert data["stages_executed"] == 6 * 5 - 10
    accuracies = {v["run_id"]: v["metrics"]["accuracy"] for v in data["variants"]}
    assert data["best"] == max(accuracies, key=accuracies.get)
    models = json.loads(subprocess.run([str(exe), "models", "--store", str(tmp_path), "--json"],
                                       capture_output=True, text=True).stdout)["models"]["digits"]
    assert len(models) == 6 and data["best"] in {m["run_id"] for m in models}
