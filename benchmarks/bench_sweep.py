"""Sweep benchmark: a 6-variant sweep against the same 6 variants as independent runs.

    python benchmarks/bench_sweep.py [--quick]

Full mode sweeps the digits example (learning_rate x hidden_units, 2 epochs), where `load` and
`preprocess` are shared by all variants; --quick sweeps tests/fixtures/sweep_metric.ipynb.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import print_rows, row, save_rows

ROOT = Path(__file__).resolve().parent.parent


def bench_sweep(tmp: Path, quick: bool) -> list[dict]:
    from jupyter_pipeline.notebook.parse import load
    from jupyter_pipeline.local.runner import LocalRunner
    from jupyter_pipeline.sweep import run_sweep, variants

    if quick:
        pipeline = load(ROOT / "tests/fixtures/sweep_metric.ipynb")
        grid, fixed, metric = {"a": ["1", "3", "5"], "b": ["0", "2"]}, {}, "score"
    else:
        pipeline = load(ROOT / "examples/digits/digits.ipynb")
        grid = {"learning_rate": ["0.05", "0.01", "0.001"], "hidden_units": ["16", "32"]}
        fixed, metric = {"epochs": 2}, "accuracy"
    t0 = time.perf_counter()
    result = run_sweep(pipeline, grid, store=str(tmp / "sweep"), fixed=fixed, metric=metric)
    t_sweep = time.perf_counter() - t0
    assert all(r.status.value == "succeeded" for r in result.runs)
    t0 = time.perf_counter()
    for values in variants(pipeline, grid, fixed):
        record = LocalRunner(str(tmp / "separate")).run(pipeline, values)
        assert record.status.value == "succeeded"
    t_separate = time.perf_counter() - t0
    executed, used = result.stage_runs
    what = "digits example" if not quick else "sweep_metric fixture"
    return [row(f"6-variant sweep of the {what}", t_sweep, t_separate, "s", "6 independent local runs",
                f"{executed} stage executions for {used} results")]


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "jax")
    with tempfile.TemporaryDirectory(prefix="jp-bench-sweep-") as tmp:
        rows = bench_sweep(Path(tmp), args.quick)
    print_rows(rows)
    save_rows("sweep", rows)
    return rows


if __name__ == "__main__":
    main()
