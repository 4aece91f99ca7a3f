"""Core benchmarks: validation speed, per-stage overhead, variable transfer, CLI start-up.

    python benchmarks/bench_core.py [--quick]

Prints one row per measurement with the baseline measured in the same run and the ratio.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import print_rows, row, save_rows, timed, write_notebook

ROOT = Path(__file__).resolve().parent.parent


def generated_notebook(path: Path, stages: int, cells_per_stage: int) -> Path:
    cells = [(["setup"], "import math"), (["parameters"], "scale = 2")]
    for i in range(stages):
        prev = f"v{i - 1}" if i else "scale"
        cells.append(([f"stage:s{i}"], f"v{i} = {prev} + 1"))
        cells += [([], f"t{i}_{j} = math.sqrt(v{i}) * {j}\n%time _ = t{i}_{j}") for j in range(cells_per_stage - 1)]
    return write_notebook(path, cells)


def bench_validate(tmp: Path, quick: bool) -> list[dict]:
    from jupyter_pipeline.notebook.diagram import mermaid, text_tree
    from jupyter_pipeline.notebook.parse import load, read_notebook

    path = generated_notebook(tmp / "big.ipynb", 80, 5)  # 80 stages, 402 cells

    def ours():
        p = load(path)
        assert p.ok and len(p.stages) == 80
        text_tree(p), mermaid(p)

    ours()  # warm imports
    t, _ = timed(ours, 3 if quick else 7)
    base, _ = timed(lambda: read_notebook(path), 3 if quick else 7)
    return [row("validate + graph, 80 stages / 402 cells", t, base, "s", "nbformat.read alone",
                "target < 1 s")]


def bench_stage_overhead(tmp: Path, quick: bool) -> list[dict]:
    import papermill

    from jupyter_pipeline.local.runner import run_pipeline

    n = 3 if quick else 6
    body = [(["setup"], "import numpy as np")]
    single = [([], "import numpy as np")]
    for i in range(n):
        prev = f"a{i - 1}" if i else "np.zeros(1000)"
        code = f"a{i} = {prev} + 1"
        body.append(([f"stage:s{i}"], code))
        single.append(([], code))
    pipe = write_notebook(tmp / "chain.ipynb", body)
    one = write_notebook(tmp / "single.ipynb", single)

    def pipeline():
        record = run_pipeline(pipe, store=str(tmp / "store"))  # default workers (cores)
        assert record.status.value == "succeeded"

    def baseline():
        papermill.execute_notebook(str(one), str(tmp / "single-out.ipynb"), progress_bar=False, kernel_name="python3")

    repeat = 1 if quick else 3
    t_pipe, _ = timed(pipeline, repeat)
    t_one, _ = timed(baseline, repeat)
    per_stage = (t_pipe - t_one) / n
    return [
        row(f"local run of a {n}-stage chain", t_pipe, t_one, "s", "same code, one papermill run"),
        row("overhead per stage (kernel, params, values)", per_stage, None, "s", "-", "target <= 1.5 s"),
    ]


def bench_transfer(tmp: Path, quick: bool) -> list[dict]:
    from jupyter_pipeline.stage.values import load_value, save_value
    from jupyter_pipeline.store.base import open_store

    size_mb = 256 if quick else 1024
    arr = np.ones(size_mb * 1024 * 1024 // 8, dtype=np.float64)
    store = open_store(str(tmp / "xfer-store"))
    plain = tmp / "plain.npy"

    def ours():
        entry = save_value("big", arr, store, "runs/r/stages/s/vars", "s")
        back = load_value(store, "runs/r/stages/s/vars", entry)
        assert back.shape == arr.shape

    def base():
        np.save(plain, arr)
        back = np.load(plain)
        assert back.shape == arr.shape

    repeat = 2 if quick else 3
    t_ours, _ = timed(ours, repeat)
    t_base, _ = timed(base, repeat)
    mbps_ours, mbps_base = 2 * size_mb / t_ours, 2 * size_mb / t_base
    return [row(f"pass a {size_mb} MiB NumPy array (save + load)", mbps_ours, mbps_base, "MB/s",
                "np.save + np.load", "target >= 50% of baseline (ratio >= 0.5)")]


def bench_values(tmp: Path, quick: bool) -> list[dict]:
    """Values that are not arrays or frames: what carrying code (cloudpickle) costs against plain pickle."""
    import datetime
    import pickle

    from jupyter_pipeline.stage.values import load_value, save_value
    from jupyter_pipeline.store.base import open_store

    store = open_store(str(tmp / "values-store"))
    vocabulary = {f"word{i}": i for i in range(10_000)}
    notebook = {"__name__": "__main__", "vocabulary": vocabulary}  # what a notebook's namespace looks like
    exec("def encode(words):\n    return [vocabulary.get(w, 0) for w in words]", notebook)
    values = [
        ("a notebook function reading a 10k-entry dict", notebook["encode"], vocabulary,
         "pickle saver, the dict alone (before: the function did not load)"),
        ("100k datetime.date objects", [datetime.date(2020, 1, 1) + datetime.timedelta(days=i % 3000)
                                        for i in range(100_000)], None, "pickle saver (before)"),
        ("a dict of 1,000 lists of 100 floats", {f"k{i}": [float(j) for j in range(100)] for i in range(1000)},
         None, "pickle saver (before)"),
    ]
    rows = []
    repeat = 5 if quick else 15
    for what, value, baseline_value, baseline_name in values:
        base_value = value if baseline_value is None else baseline_value

        def ours(value=value):
            entry = save_value("v", value, store, "runs/r/stages/s/vars", "s")
            load_value(store, "runs/r/stages/s/vars", entry)

        def base(base_value=base_value):  # the saver before cloudpickle: pickle, through the same store
            with store.writing("runs/r/stages/s/vars/base.pkl") as path, open(path, "wb") as f:
                pickle.dump(base_value, f, protocol=pickle.HIGHEST_PROTOCOL)
            with store.reading("runs/r/stages/s/vars/base.pkl") as path, open(path, "rb") as f:
                pickle.load(f)

        ours(), base()  # warm
        t_ours, _ = timed(ours, repeat)
        t_base, _ = timed(base, repeat)
        rows.append(row(f"pass {what} (save + load)", t_ours, t_base, "s", baseline_name))
    return rows


def bench_cli(quick: bool) -> list[dict]:
    exe = Path(sys.executable).parent / "jupyter-pipeline"
    run = lambda *a: subprocess.run([str(exe), *a], check=True, capture_output=True)
    t_help, _ = timed(lambda: run("--help"), 3 if quick else 7)
    t_py, _ = timed(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), 3 if quick else 7)
    t_val, _ = timed(lambda: run("validate", str(ROOT / "examples/digits/digits.ipynb")), 3 if quick else 5)
    return [
        row("jupyter-pipeline --help", t_help, t_py, "s", "python -c pass", "target < 0.5 s"),
        row("jupyter-pipeline validate digits.ipynb", t_val, t_py, "s", "python -c pass"),
    ]


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "jax")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for bench in (lambda: bench_validate(tmp, args.quick), lambda: bench_cli(args.quick),
                      lambda: bench_transfer(tmp, args.quick), lambda: bench_values(tmp, args.quick),
                      lambda: bench_stage_overhead(tmp, args.quick)):
            t0 = time.perf_counter()
            new = bench()
            print_rows(new)
            print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
            rows += new
    save_rows("core", rows)
    return rows


if __name__ == "__main__":
    main()
