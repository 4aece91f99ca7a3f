"""Scaling: validation and compile time for 10/100/1,000 stages, local-run time for 2/8/32 stages.

    .venv/bin/python benchmarks/bench_scaling.py [--quick]

Each size's row has the previous size as its baseline, so the ratio column is the growth per step
and linear cost shows as a ratio equal to the step in stages (x10, x4). The first size of each
series is compared with a floor instead: ``nbformat.read`` of the same notebook for validation and
compilation, one papermill run of the same code for the local run. The notebooks are bench_kfp's
chain-and-fan (stage i reads the values of stages i-1 and i//2). Quick mode compiles up to 100
stages and runs up to 8.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_kfp import generated_notebook
from common import print_rows, row, save_rows, timed, write_notebook


def _series(label: str, sizes, measure, floor, floor_name: str, unit_note=lambda n, t: "") -> list[dict]:
    rows, previous = [], None
    for n in sizes:
        t = measure(n)
        if previous is None:
            rows.append(row(f"{label}, {n} stages", t, floor(n), "s", floor_name, unit_note(n, t)))
        else:
            pn, pt = previous
            rows.append(row(f"{label}, {n} stages", t, pt, "s", f"{pn} stages (growth)",
                            f"stages x{n // pn}; " + unit_note(n, t)))
        previous = (n, t)
    return rows


def bench_validate_compile(tmp: Path, quick: bool) -> list[dict]:
    from jupyter_pipeline.kfp.compiler import compile_pipeline
    from jupyter_pipeline.notebook.parse import load, read_notebook

    paths = {n: generated_notebook(tmp / f"gen{n}.ipynb", n) for n in (10, 100, 1000)}
    load(paths[10]), compile_pipeline(load(paths[10]))  # warm imports
    repeat = lambda n: 1 if n >= 1000 or quick else 3
    per_stage = lambda n, t: f"{t / n * 1000:.1f} ms/stage"
    read_floor = lambda n: timed(lambda: read_notebook(paths[n]), 3)[0]

    def validate(n):
        return timed(lambda: load(paths[n]).require_valid(), repeat(n))[0]

    def compile_(n):
        pipeline = load(paths[n]).require_valid()
        return timed(lambda: compile_pipeline(pipeline), repeat(n))[0]

    rows = _series("validate", (10, 100, 1000), validate, read_floor, "nbformat.read alone", per_stage)
    rows += _series("compile to KFP YAML", (10, 100) if quick else (10, 100, 1000), compile_, read_floor,
                    "nbformat.read alone", per_stage)
    return rows


def bench_run(tmp: Path, quick: bool) -> list[dict]:
    import papermill

    from jupyter_pipeline.local.runner import run_pipeline

    def chain(n: int, single: bool) -> Path:
        cells = []
        for i in range(n):
            code = f"a{i} = {f'a{i - 1}' if i else 0} + 1"
            cells.append(([] if single else [f"stage:s{i}"], code))
        return write_notebook(tmp / f"chain{n}{'-single' if single else ''}.ipynb", cells)

    def run(n):
        path = chain(n, False)
        t = time.perf_counter()
        record = run_pipeline(path, store=str(tmp / "store"))
        assert record.status.value == "succeeded"
        return time.perf_counter() - t

    def floor(n):
        path = chain(n, True)
        t = time.perf_counter()
        papermill.execute_notebook(str(path), str(tmp / "out.ipynb"), progress_bar=False, kernel_name="python3")
        return time.perf_counter() - t

    return _series("local run of a chain", (2, 8) if quick else (2, 8, 32), run, floor,
                   "same code, one papermill run", lambda n, t: f"{t / n:.2f} s/stage")


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="jp-bench-scaling-") as tmp:
        rows += bench_validate_compile(Path(tmp), args.quick)
        print_rows(rows)
        run_rows = bench_run(Path(tmp), args.quick)
        print_rows(run_rows)
    save_rows("scaling", rows + run_rows)
    return rows + run_rows


if __name__ == "__main__":
    main()
