"""``debug RUN STAGE``: the written notebook reproduces the stage with the inputs it had, for runs of
every target and stores of every kind; ``%pipeline debug`` loads the same into a kernel; ``--from-stage``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest
from nbformat.v4 import new_code_cell, new_notebook
from papermill.exceptions import PapermillExecutionError

EXE = str(Path(sys.executable).parent / "jupyter-pipeline")


def cli(*args, cwd=None):
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)


def write_flow(folder: Path) -> Path:
    """A setup class, a parameter, a stage that makes values and one that fails while ``fail.flag`` exists."""
    def cell(source, *tags):
        c = new_code_cell(source)
        c.metadata["tags"] = list(tags)
        return c

    path = folder / "flow.ipynb"
    nbformat.write(new_notebook(cells=[
        cell("import os\nfrom jupyter_pipeline import log_metric\n"
             "class Box:\n    def __init__(self, v):\n        self.v = v", "setup"),
        cell("scale = 2", "parameters"),
        cell("box = Box(21)\nitems = [1, 2, 3]", "stage:make"),
        cell("total = box.v * scale + sum(items)\nlog_metric('total', total)\nif os.path.exists('fail.flag'):\n"
             "    raise ValueError(f'boom with total {total}')", "stage:use"),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}), path)
    (folder / "fail.flag").write_text("")
    return path


def run_json(*args) -> dict:
    proc = cli("run", *args, "--json")
    return json.loads(proc.stdout)


def assert_reproduces(path: Path, cwd: Path, error: str) -> nbformat.NotebookNode:
    """Execute the debug notebook in a normal kernel: it fails with the stage's own error."""
    with pytest.raises(PapermillExecutionError) as failed:
        papermill.execute_notebook(str(path), str(cwd / "executed.ipynb"), cwd=str(cwd), progress_bar=False,
                                   kernel_name="python3")
    assert f"{failed.value.ename}: {failed.value.evalue}" == error
    return nbformat.read(path, as_version=4)


@pytest.mark.slow
def test_debug_reproduces_a_failed_local_stage_then_loads_into_a_kernel_and_reruns_from_a_stage(tmp_path):
    source, store = write_flow(tmp_path), tmp_path / "store"
    record = run_json(source, "-p", "scale", "3", "--store", store)
    assert record["status"] == "failed" and record["stages"]["use"]["error"].startswith("ValueError: boom with total 69")
    run_id = record["run_id"]
    before = sorted(p.relative_to(store) for p in store.rglob("*"))

    proc = cli("debug", run_id, "use", "--store", store, "--json")
    assert proc.returncode == 0, proc.stderr
    path = Path(json.loads(proc.stdout)["path"])
    assert path == tmp_path / "flow-debug-use.ipynb"  # next to the source
    nb = assert_reproduces(path, tmp_path, "ValueError: boom with total 69")
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert "scale = 3" in code[0]  # the run's parameter, not the notebook's default
    # setup as it ran, then the inputs (they hold a Box)
    assert code[1].startswith("import os\nfrom jupyter_pipeline import log_metric\nclass Box")
    assert "box = _jp_inputs['box']" in code[2] and "items = _jp_inputs['items']" in code[2]
    assert code[3].startswith("total = box.v * scale")
    assert not any("save_outputs" in c or "activate" in c for c in code)  # nothing talks to the run
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before  # the run's store is untouched

    # The same inputs in a live kernel: once its setup ran (the values hold a Box), not before.
    magic = tmp_path / "magic.ipynb"
    load = f"%pipeline debug {run_id} use --store {store}"
    nbformat.write(new_notebook(cells=[new_code_cell(
        f"%load_ext jupyter_pipeline\ntry:\n    get_ipython().run_line_magic('pipeline', {load[10:]!r})\n"
        "except Exception as exc:\n    print('refused:', exc)"), new_code_cell(
        f"class Box:\n    def __init__(self, v):\n        self.v = v\n{load}\nprint(box.v, items, scale)")],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}), magic)
    papermill.execute_notebook(str(magic), str(magic), cwd=str(tmp_path), progress_bar=False)
    executed = nbformat.read(magic, as_version=4)
    refused = "".join(o.get("text", "") for o in executed.cells[0].outputs)
    assert "could not load variable 'box', which stage 'make' made" in refused and "Box" in refused, refused
    printed = "".join(o.get("text", "") for o in executed.cells[1].outputs)
    assert "loaded the parameters and inputs of stage 'use'" in printed and "21 [1, 2, 3] 3" in printed

    # Bad input: one paragraph naming what exists.
    proc = cli("debug", run_id, "nope", "--store", store)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "has no stage 'nope'" in proc.stderr and "make, use" in proc.stderr

    # Fixed: re-run from `use`, `make` reused from the run with the same code.
    (tmp_path / "fail.flag").unlink()
    again = run_json(source, "-p", "scale", "3", "--store", store, "--from-stage", "use")
    assert again["status"] == "succeeded", again
    assert again["stages"]["make"]["reused_from"] == run_id
    assert again["stages"]["use"]["why"] == "re-run from here" and not again["stages"]["use"].get("reused_from")


@pytest.mark.slow
def test_debug_a_kfp_local_run_in_an_s3_store(tmp_path, s3_url):
    source = write_flow(tmp_path)
    record = run_json(source, "--target", "kfp-local", "--store", s3_url)
    assert record["status"] == "failed" and record["target"] == "kfp-local", record
    proc = cli("debug", record["run_id"], "use", "--store", s3_url, "-o", tmp_path / "dbg" / "use.ipynb")
    assert proc.returncode == 0, proc.stderr
    nb = assert_reproduces(tmp_path / "dbg" / "use.ipynb", tmp_path, "ValueError: boom with total 48")
    inputs = next(c.source for c in nb.cells if c.metadata["jupyter_pipeline"]["kind"] == "inputs")
    assert f"load_inputs({s3_url!r}, {record['run_id']!r}, 'use')" in inputs  # read from the run's store
