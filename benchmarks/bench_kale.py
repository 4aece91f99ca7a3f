"""Conversion vs Kubeflow Kale: the same Kale-tagged notebooks compiled by Kale and by us.

    .venv/bin/python benchmarks/bench_kale.py [--quick]

Kale (``kubeflow-kale`` from the package index) is installed into ``benchmarks/.venvs/kale`` on
first use. Its compile-only path is what ``kale --nb X`` does without ``--upload_pipeline``:
``NotebookProcessor(nb).run()`` (parse, dependency analysis), ``Compiler(...).compile()`` (the KFP
DSL script) and ``kfputils.compile_pipeline`` (the DSL script run through ``kfp.compiler`` to
YAML). Ours is ``parse.load`` + ``kfp.compiler.compile_pipeline`` (YAML). Both run in a warm
process (one untimed conversion first); the medians are compared. The notebooks: the digits
example rewritten in Kale's tags, and generated chains of 10/40/80 ``step:`` cells (quick mode: 10) where step i
reads the values of steps i-1 and i//2 (Kale needs ``prev:`` for every dependency, so each step
names its predecessor). Besides the time, both tools' stages, dependency edges and per-stage
input variables are compared and the differences listed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import print_rows, row, save_rows, timed
from venvs import BaselineUnavailable, baseline_python, installed_version

# Runs inside Kale's venv: converts each notebook like `kale --nb` (no upload), reports the graph.
KALE_DRIVER = textwrap.dedent('''
    import json, logging, statistics, sys, time
    logging.disable(logging.WARNING)
    t0 = time.perf_counter()
    from kale.processors import NotebookProcessor
    from kale.compiler import Compiler
    from kale.common import kfputils
    import_s = time.perf_counter() - t0
    logging.disable(logging.WARNING)  # kale's logger setup re-enables INFO on import

    def convert(path):
        processor = NotebookProcessor(path, {"pipeline_name": "bench", "experiment_name": "bench"})
        pipeline = processor.run()
        script = Compiler(pipeline, processor.get_imports_and_functions()).compile()
        yaml_path = kfputils.compile_pipeline(script, pipeline.config.pipeline_name)
        return pipeline, yaml_path

    repeat = int(sys.argv[1])
    out = {"import_s": import_s, "notebooks": {}}
    for path in sys.argv[2:]:
        try:
            pipeline, yaml_path = convert(path)  # warm-up, and the graph
            samples = []
            for _ in range(repeat):
                t = time.perf_counter()
                convert(path)
                samples.append(time.perf_counter() - t)
            out["notebooks"][path] = {
                "seconds": statistics.median(samples),
                "stages": [s.name for s in pipeline.steps],
                "edges": sorted([list(e) for e in pipeline.edges]),
                "inputs": {s.name: sorted(s.ins) for s in pipeline.steps},
                "yaml_bytes": len(open(yaml_path, "rb").read()),
            }
        except Exception as exc:  # reported per notebook, the others still compared
            out["notebooks"][path] = {"error": f"{type(exc).__name__}: {exc}"}
    print("RESULT " + json.dumps(out))
''')

# Our native tags -> Kale's (tags.py reads both; Kale reads only its own).
KALE_ROLE = {"setup": "imports", "parameters": "pipeline-parameters", "skip": "skip"}


def kale_digits(path: Path) -> Path:
    """The digits example with Kale's tags: step:/prev:, imports, pipeline-parameters, limit:."""
    nb = nbformat.read(ROOT / "examples/digits/digits.ipynb", as_version=4)
    previous = None
    for cell in nb.cells:
        new = []
        for tag in cell.metadata.get("tags", []):
            if tag in KALE_ROLE:
                new.append(KALE_ROLE[tag])
            elif tag.startswith("stage:"):
                name = tag.split(":", 1)[1]
                new.append(f"step:{name}")
                if previous:
                    new.append(f"prev:{previous}")
                previous = name
            elif tag.startswith("gpu:"):
                new.append(f"limit:nvidia.com/gpu:{tag.split(':', 1)[1]}")
        if new:
            cell.metadata["tags"] = new
    nb.metadata.pop("jupyter_pipeline", None)
    nbformat.write(nb, path)
    return path


def kale_generated(path: Path, stages: int) -> Path:
    """Steps s0..s{n-1}; step i reads v{i-1} and v{i//2} and names s{i-1} as prev."""
    new = nbformat.v4.new_code_cell
    cells = [new("import math", metadata={"tags": ["imports"]}),
             new("k = 2\nbias = 0.5", metadata={"tags": ["pipeline-parameters"]}),
             new("v0 = k", metadata={"tags": ["step:s0"]})]
    for i in range(1, stages):
        cells.append(new(f"v{i} = v{i - 1} + v{i // 2} * k + math.sqrt(bias)",
                         metadata={"tags": [f"step:s{i}", f"prev:s{i - 1}"]}))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def our_graph(pipeline) -> dict:
    return {"stages": [s.name for s in pipeline.stages],
            "edges": sorted([list(e) for e in pipeline.edges]),
            "inputs": {s.name: sorted(n for n, _ in s.inputs) for s in pipeline.stages}}


def differences(ours: dict, kale: dict) -> list[str]:
    """What the two tools disagree on, one line per kind of difference."""
    out = []
    if ours["stages"] != kale["stages"]:
        out.append(f"stages: ours {ours['stages']} vs Kale {kale['stages']}")
    only_ours = sorted(tuple(e) for e in ours["edges"] if e not in kale["edges"])
    only_kale = sorted(tuple(e) for e in kale["edges"] if e not in ours["edges"])
    if only_ours:
        out.append(f"{len(only_ours)} edge(s) only ours (a stage reads a value straight from its producer; Kale "
                   f"relays it through the prev: chain): " + ", ".join(f"{a}->{b}" for a, b in only_ours[:6])
                   + (" ..." if len(only_ours) > 6 else ""))
    if only_kale:
        out.append(f"{len(only_kale)} edge(s) only Kale's: " + ", ".join(f"{a}->{b}" for a, b in only_kale[:6]))
    diff_inputs = [s for s in ours["inputs"] if s in kale["inputs"] and ours["inputs"][s] != kale["inputs"][s]]
    for s in diff_inputs[:6]:
        out.append(f"inputs of {s}: ours {ours['inputs'][s]} vs Kale {kale['inputs'][s]}")
    if len(diff_inputs) > 6:
        out.append(f"... inputs differ in {len(diff_inputs)} stages in all")
    return out


def run_kale(python: Path, notebooks: list[Path], repeat: int, cwd: Path) -> dict:
    driver = cwd / "kale_driver.py"
    driver.write_text(KALE_DRIVER)
    proc = subprocess.run([str(python), str(driver), str(repeat), *map(str, notebooks)], cwd=cwd,
                          capture_output=True, text=True, timeout=900)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        raise BaselineUnavailable(f"Kale's compile-only path failed here:\n{tail}")
    return json.loads(line[len("RESULT "):])


def bench_kale(quick: bool) -> tuple[list[dict], dict]:
    """Rows, and details (versions, per-notebook differences, or why Kale could not be compared)."""
    from jupyter_pipeline.kfp.compiler import compile_pipeline
    from jupyter_pipeline.notebook.parse import load

    details: dict = {"notebooks": {}}
    sizes = (10,) if quick else (10, 40, 80)
    repeat = 1 if quick else 5
    with tempfile.TemporaryDirectory(prefix="jp-bench-kale-") as tmp:
        tmp = Path(tmp)
        notebooks = {"digits example (Kale tags)": kale_digits(tmp / "digits_kale.ipynb")}
        for n in sizes:
            notebooks[f"generated, {n} steps"] = kale_generated(tmp / f"kale_{n}.ipynb", n)

        ours: dict = {}
        compile_pipeline(load(notebooks["digits example (Kale tags)"]))  # warm imports
        for label, path in notebooks.items():
            pipeline = load(path).require_valid()
            t, _ = timed(lambda path=path: compile_pipeline(load(path)), repeat)
            ours[label] = {"seconds": t, **our_graph(pipeline)}

        try:
            python = baseline_python("kale", "kubeflow-kale", "kale.processors")
            details["kale_version"] = installed_version(python, "kubeflow-kale")
            kale = run_kale(python, list(notebooks.values()), repeat, tmp)
        except BaselineUnavailable as exc:
            details["unavailable"] = str(exc)
            rows = [row(f"compile {label} to KFP YAML", r["seconds"], None, "s", "Kale unavailable", "see notes")
                    for label, r in ours.items()]
            return rows, details

    details["kale_import_s"] = kale["import_s"]
    rows = []
    for label, path in notebooks.items():
        k = kale["notebooks"][str(path)]
        o = ours[label]
        if "error" in k:
            details["notebooks"][label] = {"kale_error": k["error"]}
            rows.append(row(f"compile {label} to KFP YAML", o["seconds"], None, "s", "Kale failed", k["error"][:80]))
            continue
        diff = differences(o, k)
        details["notebooks"][label] = {"stages": len(o["stages"]), "edges_ours": len(o["edges"]),
                                       "edges_kale": len(k["edges"]), "differences": diff}
        extra = len([e for e in o["edges"] if e not in k["edges"]])
        if not diff:
            same = "same stages, edges and inputs"
        elif o["stages"] == k["stages"] and len(diff) == 1 and extra:
            same = f"same stages and inputs; ours +{extra} direct data edges"
        else:
            same = "graphs differ (see notes)"
        rows.append(row(f"compile {label} to KFP YAML", o["seconds"], k["seconds"], "s",
                        f"Kale {details['kale_version']} compile-only", same))
    return rows, details


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "jax")
    rows, details = bench_kale(args.quick)
    print_rows(rows)
    print(json.dumps(details, indent=1))
    save_rows("kale", rows)
    return rows


if __name__ == "__main__":
    main()
