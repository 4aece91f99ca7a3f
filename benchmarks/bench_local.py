"""Local execution vs Elyra's local mode (or, without Elyra, each stage notebook run by plain papermill).

    .venv/bin/python benchmarks/bench_local.py [--quick]

Ours: ``run_pipeline`` on the tagged notebook (one kernel per stage, independent stages in
parallel, values passed through the store). The baseline is what an Elyra user builds for the
same work: one notebook per stage (the setup code, the parameters, ``pickle.load`` of each input
file, the stage's code, ``pickle.dump`` of each output; Elyra passes data only as files), joined
in a pipeline with the same dependencies and run by Elyra's ``LocalPipelineProcessor`` (it runs
the notebooks one after another with papermill). Elyra (``elyra-server`` from the package index)
lives in ``benchmarks/.venvs/elyra``; its notebooks run on a kernel of this project's venv, so
both sides execute the same code with the same libraries. Without Elyra the same stage notebooks
run one after another with plain papermill. Notebooks: ``tests/fixtures/diamond.ipynb`` (two
independent 2-second stages) and the digits example (quick mode: the diamond only). The machine
may be shared, so the full mode times each side twice in the order ours, baseline, baseline, ours
and reports medians; quick mode times each once.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import print_rows, row, save_rows
from venvs import BaselineUnavailable, baseline_python, installed_version

# Runs inside Elyra's venv: one GenericOperation per stage notebook, processed by the local runtime.
ELYRA_DRIVER = textwrap.dedent('''
    import json, logging, sys, time
    from elyra.pipeline.pipeline import GenericOperation, Pipeline
    from elyra.pipeline.local.local_processor import LocalPipelineProcessor

    root, spec = sys.argv[1], json.loads(sys.argv[2])
    pipeline = Pipeline(id="bench", name="bench", runtime="local", source="bench.pipeline")
    for name, parents in spec:
        pipeline.operations[name] = GenericOperation(
            id=name, type="execution_node", name=name, classifier="execute-notebook-node",
            parent_operation_ids=parents,
            component_props={"filename": f"{name}.ipynb", "runtime_image": "unused-locally"})
    processor = LocalPipelineProcessor(root_dir=root)
    t = time.perf_counter()
    processor.process(pipeline)
    print("RESULT " + json.dumps({"seconds": time.perf_counter() - t}))
''')


def baseline_notebooks(pipeline, folder: Path) -> list[tuple[str, list[str]]]:
    """One plain notebook per stage passing values as pickle files; ``[(stage, parents)]`` in order."""
    from jupyter_pipeline.kfp.compiler import topological

    folder.mkdir(parents=True, exist_ok=True)
    new = nbformat.v4.new_code_cell
    setup = "\n\n".join(pipeline.cells[i].source for i in pipeline.setup_cells)
    order = []
    for stage in topological(pipeline):
        params = "\n".join(f"{p.name} = {p.default!r}" for p in pipeline.parameters)
        cells = [new("import pickle\n" + setup), new(params, metadata={"tags": ["parameters"]})]
        if stage.inputs:
            cells.append(new("\n".join(f"with open('data/{n}.pkl', 'rb') as f:\n    {n} = pickle.load(f)"
                                       for n, _ in stage.inputs)))
        cells += [new(pipeline.cells[i].source) for i in stage.cells
                  if pipeline.cells[i].cell_type == "code" and pipeline.cells[i].role.value != "skip"]
        cells.append(new("import os\nos.makedirs('data', exist_ok=True)\n" + "\n".join(
            f"with open('data/{n}.pkl', 'wb') as f:\n    pickle.dump({n}, f)" for n in stage.outputs)))
        nb = nbformat.v4.new_notebook(cells=cells)
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, folder / f"{stage.name}.ipynb")
        order.append((stage.name, list(stage.depends_on)))
    return order


def project_kernel(folder: Path) -> dict:
    """Environment whose ``python3`` kernel is this project's interpreter (Elyra's venv has no numpy)."""
    spec = folder / "kernels" / "python3"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (jupyter-pipeline venv)", "language": "python"}))
    return {**os.environ, "JUPYTER_PATH": str(folder), "PYDEVD_DISABLE_FILE_VALIDATION": "1"}


def run_elyra(python: Path, folder: Path, order, env: dict) -> float:
    driver = folder / "elyra_driver.py"
    driver.write_text(ELYRA_DRIVER)
    proc = subprocess.run([str(python), str(driver), str(folder), json.dumps(order)], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=1800)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise BaselineUnavailable("Elyra's local processor failed here:\n"
                                  + "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-6:]))
    return json.loads(line[len("RESULT "):])["seconds"]


def run_papermill(folder: Path, order) -> float:
    import papermill

    t = time.perf_counter()
    for name, _ in order:
        path = str(folder / f"{name}.ipynb")
        papermill.execute_notebook(path, path, cwd=str(folder), progress_bar=False, kernel_name="python3")
    return time.perf_counter() - t


def bench_local(quick: bool) -> tuple[list[dict], dict]:
    from jupyter_pipeline.notebook.parse import load
    from jupyter_pipeline.local.runner import run_pipeline

    details: dict = {}
    cases = {"diamond (4 stages, two 2 s sleeps side by side)": ROOT / "tests/fixtures/diamond.ipynb"}
    if not quick:
        cases["digits example (5 stages, Keras training)"] = ROOT / "examples/digits/digits.ipynb"
    try:
        elyra = baseline_python("elyra", "elyra-server", "elyra.pipeline.local.local_processor")
        details["baseline"] = f"Elyra {installed_version(elyra, 'elyra-server')} local mode"
    except BaselineUnavailable as exc:
        elyra = None
        details["baseline"] = "stage notebooks run one after another by plain papermill"
        details["elyra_unavailable"] = str(exc)
    rows = []
    with tempfile.TemporaryDirectory(prefix="jp-bench-local-") as tmp:
        tmp = Path(tmp)
        env = project_kernel(tmp / "jupyter")
        os.environ["JUPYTER_PIPELINE_STORE"] = str(tmp / "user-store")  # log_model outside a run
        env["JUPYTER_PIPELINE_STORE"] = os.environ["JUPYTER_PIPELINE_STORE"]
        for i, (label, path) in enumerate(cases.items()):
            pipeline = load(path).require_valid()
            folder = tmp / f"case{i}"
            order = baseline_notebooks(pipeline, folder)
            name = details["baseline"]

            def ours(pipeline=pipeline):
                t = time.perf_counter()
                record = run_pipeline(pipeline, store=str(tmp / "store"))
                assert record.status.value == "succeeded", record.status
                return time.perf_counter() - t

            def base(folder=folder, order=order):
                nonlocal elyra, name
                if elyra:
                    try:
                        return run_elyra(elyra, folder, order, env)
                    except BaselineUnavailable as exc:  # installed but cannot run here: say so, use papermill
                        details["elyra_failed"], elyra = str(exc), None
                        name = "plain papermill, one stage notebook after another"
                return run_papermill(folder, order)

            samples = {"ours": [], "base": []}
            for side in (["ours", "base"] if quick else ["ours", "base", "base", "ours"]):
                samples[side].append(ours() if side == "ours" else base())
            t_ours, t_base = statistics.median(samples["ours"]), statistics.median(samples["base"])
            rows.append(row(f"local run, {label}", t_ours, t_base, "s", name,
                            "ours runs independent stages in parallel"))
    return rows, details


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "jax")
    rows, details = bench_local(args.quick)
    print_rows(rows)
    print(json.dumps(details, indent=1))
    save_rows("local", rows)
    return rows


if __name__ == "__main__":
    main()
