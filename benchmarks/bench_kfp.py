"""Kubeflow benchmarks: compile time, and a kfp-local run against a local run of the same notebook.

    .venv/bin/python benchmarks/bench_kfp.py [--stages 80] [--repeat 3] [--skip-runs] [--quick]

Figures are printed as ratios against a baseline measured in the same process (STYLE.md):
compile time of an 80-stage notebook per stage vs the 5-stage example, and the wall time of
``run --target kfp-local`` vs ``run`` (local runner) on the same small notebook.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import print_rows, row, save_rows


def generated_notebook(path: Path, stages: int) -> Path:
    """A chain-and-fan notebook: stage i uses the values of stages i-1 and i//2, plus a parameter."""
    cells = [nbformat.v4.new_code_cell("k = 2\nbias = 0.5", metadata={"tags": ["parameters"]}),
             nbformat.v4.new_code_cell("v0 = k", metadata={"tags": ["stage:s0"]})]
    for i in range(1, stages):
        src = f"v{i} = v{i - 1} + v{i // 2} * k + bias"
        tags = [f"stage:s{i}"] + (["gpu:1"] if i % 10 == 0 else [])
        cells.append(nbformat.v4.new_code_cell(src, metadata={"tags": tags}))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["jupyter_pipeline"] = {"name": f"generated-{stages}"}
    nbformat.write(nb, path)
    return path


def timed(fn, repeat: int) -> float:
    from common import timed as median_time

    return median_time(fn, repeat)[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stages", type=int, default=80)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-runs", action="store_true", help="only the compile benchmark")
    ap.add_argument("--quick", action="store_true", help="one repeat (benchmarks/run.py --quick)")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeat = 1

    t0 = time.perf_counter()
    import kfp.compiler  # noqa: F401 - import cost reported separately

    from jupyter_pipeline.kfp.compiler import compile_pipeline
    from jupyter_pipeline.notebook.parse import load

    print(f"import kfp + compiler: {time.perf_counter() - t0:.2f} s (once per process)")
    example = load(ROOT / "examples/digits/digits.ipynb")
    with tempfile.TemporaryDirectory(prefix="jp-bench-") as tmp:
        big_path = generated_notebook(Path(tmp) / "generated.ipynb", args.stages)
        t0 = time.perf_counter()
        big = load(big_path).require_valid()
        parse_big = time.perf_counter() - t0
        compile_pipeline(example)  # warm-up
        t_example = timed(lambda: compile_pipeline(example), args.repeat)
        t_big = timed(lambda: compile_pipeline(big), args.repeat)
        size_big = len(compile_pipeline(big).encode())
        n_ex = len(example.stages)
        print(f"compile digits example ({n_ex} stages): {t_example * 1000:.0f} ms "
              f"({t_example / n_ex * 1000:.1f} ms/stage)")
        print(f"compile generated ({args.stages} stages, {len(big.edges)} edges): {t_big * 1000:.0f} ms "
              f"({t_big / args.stages * 1000:.1f} ms/stage; parse {parse_big * 1000:.0f} ms), YAML {size_big / 1024:.0f} KiB")
        rows = [
            row(f"compile digits example, {n_ex} stages", t_example, None, "s", "-"),
            row(f"compile generated {args.stages} stages, per stage", t_big / args.stages, t_example / n_ex, "s",
                "example, per stage", f"YAML {size_big / 1024:.0f} KiB"),
        ]
        if args.skip_runs:
            print_rows(rows)
            save_rows("kfp", rows)
            return 0

        from jupyter_pipeline.local.runner import run_pipeline
        from jupyter_pipeline.store.base import open_store
        from jupyter_pipeline.targets import get_target

        small = load(ROOT / "tests/fixtures/kfp_values.ipynb")
        store = str(Path(tmp) / "store")
        t0 = time.perf_counter()
        local = run_pipeline(small, {}, store=store)
        t_local = time.perf_counter() - t0
        t0 = time.perf_counter()
        remote = get_target("kfp-local")(small, {}, open_store(store), {}, None)
        t_kfp = time.perf_counter() - t0
        assert local.status.value == remote.status.value == "succeeded"
        assert local.metrics() == remote.metrics()
        stage_sum = sum(r.duration or 0 for r in remote.stages.values())
        print(f"run kfp_values ({len(small.stages)} stages): local runner {t_local:.1f} s, kfp-local {t_kfp:.1f} s, "
              f"ratio kfp-local/local {t_kfp / t_local:.2f} (kfp.local runs tasks one at a time; the local runner "
              f"runs independent stages in parallel; stage time inside kfp-local {stage_sum:.1f} s)")
        rows.append(row(f"run kfp_values ({len(small.stages)} stages) with --target kfp-local", t_kfp, t_local, "s",
                        "local runner, same notebook", "kfp.local: one task at a time, executor start per task"))
    print_rows(rows)
    save_rows("kfp", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
