"""The command line as a user runs it: exit codes, --json, one-paragraph errors, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXE = str(Path(sys.executable).parent / "jupyter-pipeline")
DIGITS = "examples/digits/digits.ipynb"


def cli(*args, cwd=None, env=None):
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600, env=env)


def said(proc) -> str:
    """What the command said on stderr, as one line: errors are wrapped at 100 columns, and where
    a line breaks depends on the length of the paths in it (the clone's folder, pytest's tmp)."""
    return " ".join(proc.stderr.split())


def assert_clean_error(proc):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert proc.stderr.startswith("error:"), proc.stderr


def test_help_lists_commands_with_examples():
    proc = cli("--help")
    assert proc.returncode == 0
    for command in ("validate", "graph", "run", "runs", "resume"):
        assert command in proc.stdout
    assert "examples:" in proc.stdout
    assert "-p epochs 3" in cli("run", "--help").stdout


def test_validate_ok_and_json():
    proc = cli("validate", DIGITS)
    assert proc.returncode == 0 and "5 stage(s)" in proc.stdout and "0 error(s)" in proc.stdout
    data = json.loads(cli("validate", DIGITS, "--json").stdout)
    assert [s["name"] for s in data["stages"]] == ["load", "preprocess", "train", "evaluate", "register"]
    assert data["problems"] == []


def test_validate_reports_problems_and_fails(fixture_nb):
    proc = cli("validate", fixture_nb("cycle"))
    assert proc.returncode == 1
    assert "a → b → a" in proc.stdout and "[cycle]" in proc.stdout
    data = json.loads(cli("validate", fixture_nb("undefined_name"), "--json").stdout)
    assert data["problems"][0]["code"] == "undefined-name" and data["problems"][0]["cell"] == 1


def test_unreadable_notebook_is_one_paragraph(fixture_nb, tmp_path):
    proc = cli("validate", fixture_nb("not_a_notebook"))
    assert_clean_error(proc)
    assert "not_a_notebook.ipynb" in said(proc) and "not a Jupyter notebook" in said(proc)
    data = json.loads(cli("validate", tmp_path / "nope.ipynb", "--json").stdout)
    assert data["problems"][0]["code"] == "unreadable"


@pytest.mark.parametrize("fmt, marker", [("text", "└─▶"), ("dot", "digraph"), ("mermaid", "flowchart TD")])
def test_graph_formats(fmt, marker):
    proc = cli("graph", DIGITS, "--format", fmt)
    assert proc.returncode == 0 and marker in proc.stdout
    assert "train" in proc.stdout


def test_run_rejects_unknown_parameter_and_bad_value_before_running(tmp_path):
    proc = cli("run", DIGITS, "-p", "epoch", "3", "--store", tmp_path)
    assert_clean_error(proc)
    assert "no parameter 'epoch'" in said(proc) and "epochs" in said(proc)
    proc = cli("run", DIGITS, "-p", "epochs", "many", "--store", tmp_path)
    assert_clean_error(proc)
    assert "'many' is not an int" in said(proc)
    assert not (tmp_path / "runs").exists()


def test_run_invalid_notebook_refused(fixture_nb, tmp_path):
    proc = cli("run", fixture_nb("cycle"), "--store", tmp_path)
    assert_clean_error(proc)
    assert "cycle" in said(proc) and "validate" in said(proc)


def test_run_json_prints_one_object_when_it_cannot_start(fixture_nb, tmp_path):
    proc = cli("run", fixture_nb("generator_across_stages"), "--store", tmp_path, "--json")
    assert_clean_error(proc)
    data = json.loads(proc.stdout)
    assert data["status"] == "invalid" and "not a valid pipeline" in data["error"]
    assert [(x["code"], x["stage"], x["cell"]) for x in data["problems"]] == [("unsavable-variable", "use", 2)]
    for args, kind in ((["run", tmp_path / "nope.ipynb"], "NotebookReadError"),
                       (["run", DIGITS, "-p", "epochs", "many"], "ParameterError"),
                       (["run", DIGITS, "-p", "epochs", "1", "-p", "epochs", "2"], "CommandFailed"),
                       (["run", DIGITS, "--target", "mars"], "UnknownKeyError")):
        proc = cli(*args, "--store", tmp_path, "--json")
        assert_clean_error(proc)
        data = json.loads(proc.stdout)
        assert data["status"] == "error" and data["error_type"] == kind and data["error"] in said(proc)


def test_unknown_target_is_clear(tmp_path):
    proc = cli("run", DIGITS, "--target", "mars", "--store", tmp_path)
    assert_clean_error(proc)
    assert "Unknown run target 'mars'" in said(proc) and "local" in said(proc)


@pytest.mark.slow
def test_run_json_record_on_failure_then_runs_and_resume(fixture_nb, tmp_path):
    store = tmp_path / "store"
    proc = cli("run", fixture_nb("failing_stage"), "--store", store, "--json")
    assert proc.returncode == 1
    record = json.loads(proc.stdout)  # stdout is the run record even though the run failed
    assert record["status"] == "failed"
    broken = record["stages"]["broken"]
    assert broken["status"] == "failed" and "boom in broken" in broken["error"]
    for key in ("started_at", "finished_at", "output_notebook"):
        assert broken[key]
    assert Path(broken["output_notebook"]).exists()
    assert "✖ broken failed" in said(proc)  # progress lines while it ran
    assert "ValueError: boom in broken (cell 2)" in said(proc)  # numbered as JupyterLab numbers cells
    assert broken["error_cell"] == 2
    listing = cli("runs", "--store", store)
    assert record["run_id"] in listing.stdout and "failed" in listing.stdout
    one = json.loads(cli("runs", record["run_id"], "--store", store, "--json").stdout)
    assert one["stages"]["independent"]["status"] == "succeeded"
    missing = cli("runs", "no-such-run", "--store", store)
    assert_clean_error(missing)
    assert "no-such-run" in missing.stderr


@pytest.mark.slow
def test_example_runs_end_to_end(tmp_path):
    store = tmp_path / "store"
    proc = cli("run", DIGITS, "-p", "epochs", "3", "--store", store)
    assert proc.returncode == 0, proc.stderr
    assert "accuracy=" in proc.stdout and "succeeded" in proc.stdout
    models = list((store / "models" / "digits").glob("*/model.keras"))
    assert len(models) == 1
    meta = json.loads((models[0].parent / "meta.json").read_text())
    assert meta["metrics"]["accuracy"] > 0.8 and meta["stage"] == "register"
    assert meta["signature"]["inputs"][0]["shape"] == [None, 64]


@pytest.mark.slow
def test_sigterm_cancels_the_run_and_records_it(tmp_path):
    import signal
    import time

    from nbformat.v4 import new_code_cell, new_notebook
    import nbformat

    cell = new_code_cell("import time\ntime.sleep(120)\nv = 1")
    cell.metadata["tags"] = ["stage:sleepy"]
    nbformat.write(new_notebook(cells=[cell]), tmp_path / "sleepy.ipynb")
    store = tmp_path / "store"
    proc = subprocess.Popen([EXE, "run", str(tmp_path / "sleepy.ipynb"), "--store", str(store), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(store.glob("runs/*/stages/sleepy/input.ipynb")):
        time.sleep(0.2)
    time.sleep(4)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    record = json.loads(out)
    assert record["status"] == "cancelled" and record["stages"]["sleepy"]["status"] == "cancelled"
    assert "Traceback" not in err


@pytest.mark.slow
def test_untagged_notebook_is_a_one_stage_pipeline_and_keras_works_out_of_the_box(fixture_nb, tmp_path):
    """A notebook nobody tagged, whose code imports Keras, in a shell where no Keras backend was chosen."""
    import importlib.util
    import os

    import nbformat
    from nbformat.v4 import new_code_cell

    if importlib.util.find_spec("tensorflow") is not None:
        pytest.skip("TensorFlow is installed, so Keras's own default works and is kept")
    nb = nbformat.read(fixture_nb("whole_notebook"), as_version=4)
    nb.cells.append(new_code_cell("import keras\nprint('keras backend:', keras.backend.backend())"))
    path = tmp_path / "My Analysis.ipynb"
    nbformat.write(nb, path)
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["KERAS_HOME"] = str(tmp_path / "keras-home")  # no keras.json: the user chose nothing

    proc = cli("validate", path, env=env)
    assert proc.returncode == 0 and "info: [stage 'my-analysis'] no cell is tagged as a stage" in proc.stdout
    assert "1 stage(s), 1 parameter(s), 0 error(s), 0 warning(s)" in proc.stdout
    assert cli("graph", path, env=env).stdout.strip().splitlines()[-1] == "my-analysis  [params: n]"
    proc = cli("compile", path, "-o", tmp_path / "p.yaml", env=env)
    assert proc.returncode == 0, proc.stderr
    spec = (tmp_path / "p.yaml").read_text()
    # The stage is named like the pipeline; its component is not (KFP would take one for the other).
    assert "  comp-my-analysis-stage:\n" in spec and "_jp_entry.run_component(stage='my-analysis'" in spec

    store = tmp_path / "store"
    proc = cli("run", path, "-p", "n", "3", "--store", store, "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert list(record["stages"]) == ["my-analysis"] and record["status"] == "succeeded"
    executed = Path(record["stages"]["my-analysis"]["output_notebook"]).read_text()
    assert "keras backend: jax" in executed and "5.0" in executed
