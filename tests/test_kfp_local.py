"""The compiled pipeline itself, executed by ``kfp.local`` (SubprocessRunner, no Docker).

These runs go through the compiled YAML: each stage is the generated lightweight component,
started by kfp.local's executor, calling the stage runner; results come back through the store
into the same run-record format as the local runner's.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
import yaml

from jupyter_pipeline.cli import main
from jupyter_pipeline.notebook.parse import load
from jupyter_pipeline.store.records import load_run
from jupyter_pipeline.local.runner import run_pipeline
from jupyter_pipeline.store.base import open_store
from jupyter_pipeline.targets import get_target
from test_kfp_compile import stage_dag

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"

pytestmark = pytest.mark.slow


def expected_total(n, scale=2.5, shift=(1, 2), offset=10):
    numbers = list(range(n))
    return sum(v * scale for v in numbers) + sum(v + s for v in numbers for s in shift) + offset + float(sum(numbers))


def test_values_pass_between_compiled_stages(store_dir):
    events = []
    target = get_target("kfp-local")
    pipeline = load(FIXTURES / "kfp_values.ipynb")
    record = target.run(pipeline, {"n": "4", "extra": "[1, 2]"}, open_store(store_dir), {},
                    lambda kind, rec, stage: events.append((kind, stage, rec.stages[stage].status.value if stage else None)))
    assert record.status.value == "succeeded", record.to_json()
    assert record.target == "kfp-local"
    assert record.parameters["n"] == 4 and record.parameters["extra"] == [1, 2]
    # `extra` is no longer None: the None-default parameter reached the stage as a value
    assert record.stages["report"].metrics == {"sum": expected_total(4), "extra_is_none": 0}
    assert record.stages["make"].outputs == ["arr", "numbers"]
    assert all(rec.attempts == 1 and rec.duration is not None for rec in record.stages.values())
    store = open_store(store_dir)
    for name in pipeline.stage_names:
        # result.json is written by the compiled component's entry point only: proof kfp.local ran it
        result = store.get_json(f"runs/{record.run_id}/stages/{name}/result.json")
        assert result["status"] == "succeeded" and result["run_id"] == record.run_id
        executed = nbformat.reads(store.get_bytes(f"runs/{record.run_id}/stages/{name}/output.ipynb").decode(), 4)
        assert executed.metadata.kernelspec.name == "python3"  # not rewritten by kfp.local
    spec = next(yaml.safe_load_all(store.get_bytes(f"runs/{record.run_id}/pipeline.yaml").decode()))
    assert set(stage_dag(spec)) == set(pipeline.stage_names)
    # what the KFP UI shows of each stage, kept where kfp.local keeps outputs (in the run's folder)
    outputs = Path(store_dir) / "runs" / record.run_id / "kfp-outputs"
    for name in pipeline.stage_names:
        [html] = outputs.glob(f"*/{name}/jp_html")
        page = html.read_text()
        assert page.startswith("<!DOCTYPE html>") and f"<code>{name}</code>" in page  # the stage's notebook
        [metrics] = outputs.glob(f"*/{name}/jp_metrics")
        assert json.loads(metrics.read_text()) == record.stages[name].metrics
    assert "sum" in json.loads(next(outputs.glob("*/report/jp_metrics")).read_text())
    [failed] = outputs.glob("*/failed-stages/jp_failed")  # the exit task ran; nothing failed
    assert "No stage of run" in failed.read_text()
    # events: run-started first, run-finished last, each stage started before it finished
    assert events[0][0] == "run-started" and events[-1][0] == "run-finished"
    for name in pipeline.stage_names:
        kinds = [k for k, s, _ in events if s == name]
        assert kinds == ["stage-started", "stage-finished"], (name, events)
    # the persisted record is what `runs` shows
    assert load_run(store, record.run_id).to_json()["stages"] == record.to_json()["stages"]

    # A later run whose upstream tasks KFP took from its cache: the stage gets their location (this
    # run's folder) as input, links their results into its own run and loads the values from there.
    from jupyter_pipeline.kfp.entry import run_component
    from jupyter_pipeline.kfp.tasks import notebook_json

    location = run_component(stage="report", parameters={"label": "sum", "config": {"offset": 10}, "verbose": False,
                                                          "extra": "json:[1, 2]"},
                             notebook=notebook_json(pipeline, pipeline.stage("report")), store=store_dir,
                             upstream={"scale": record.run_id, "shift": record.run_id}, run_id="later-run")
    assert location == "later-run"
    assert store.get_json("runs/later-run/stages/report/metrics.json")["sum"] == expected_total(4)
    linked = store.get_json("runs/later-run/stages/scale/result.json")
    assert linked["reused_from"] == record.run_id and linked["status"] == "succeeded"

    # same notebook, same parameters, local runner: same metrics and outputs, same record shape
    local = run_pipeline(pipeline, {"n": "4", "extra": "[1, 2]"}, store=store_dir)
    assert local.metrics() == record.metrics()
    assert {n: r.outputs for n, r in local.stages.items()} == {n: r.outputs for n, r in record.stages.items()}
    assert set(local.to_json()) == set(record.to_json())


def test_functions_and_classes_pass_between_compiled_stages(store_dir):
    """cloudpickle works inside the compiled components (the image's package), not only in local runs."""
    pipeline = load(FIXTURES / "callables_across_stages.ipynb")
    record = get_target("kfp-local").run(pipeline, {"factor": "5"}, open_store(store_dir), {}, None)
    assert record.status.value == "succeeded", {n: r.error for n, r in record.stages.items()}
    assert record.stages["report"].metrics == {"scaled": 51}  # factor 5 travelled inside `scale`
    index = open_store(store_dir).get_json(f"runs/{record.run_id}/stages/prep/outputs.json")
    assert index["scale"]["saver"] == "pickle" and index["Counter"]["type"] == "type"


def test_untagged_notebook_named_like_its_only_stage_runs(store_dir):
    """papermill's shape: one stage named like the notebook, hence like the pipeline (KFP took the stage's
    component for the pipeline), with imports in its parameters cell."""
    pipeline = load(FIXTURES / "papermill_imports_in_parameters.ipynb")
    assert pipeline.name.replace("-", "_") == pipeline.stage_names[0]
    record = get_target("kfp-local").run(pipeline, {"radius": "1.0"}, open_store(store_dir), {}, None)
    assert record.status.value == "succeeded", {n: r.error for n, r in record.stages.items()}
    assert record.stages[pipeline.stage_names[0]].metrics == {"area": pytest.approx(3.14159265)}


def test_failing_stage_through_the_cli(store_dir, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code = main(["run", "tests/fixtures/kfp_failing.ipynb", "--target", "kfp-local", "--store", store_dir, "--json"])
    out, err = capsys.readouterr()
    assert code == 1
    record = json.loads(out)  # kfp.local's own output did not leak into --json
    stages = record["stages"]
    assert stages["first"]["status"] == "succeeded"
    assert stages["boom"]["status"] == "failed"
    assert stages["boom"]["error"] == "ValueError: boom in the middle"
    assert stages["boom"]["error_cell"] == 2  # the source notebook's cell, numbered as JupyterLab shows it
    assert stages["after-boom"]["status"] == "skipped"
    assert record["status"] == "failed" and record["error"] == "stage boom failed"
    # the executed notebook of the failed stage was uploaded, and shows the error
    executed = nbformat.read(stages["boom"]["output_notebook"], 4)
    assert any(o.get("ename") == "ValueError" for c in executed.cells for o in c.get("outputs", []))
    # KFP keeps no outputs of a failed task: the exit task shows the failed stage's notebook as HTML
    [page] = (Path(store_dir) / "runs" / record["run_id"] / "kfp-outputs").glob("*/failed-stages/jp_failed")
    text = page.read_text()
    assert "Stage boom failed" in text and "boom in the middle" in text and "Stage first failed" not in text
    code = main(["runs", "--store", store_dir, "--json"])
    listed = json.loads(capsys.readouterr().out)["runs"]
    assert [(r["run_id"], r["target"], r["status"]) for r in listed] == [(record["run_id"], "kfp-local", "failed")]


@pytest.mark.skipif(not (ROOT / "examples/digits/digits.ipynb").exists(), reason="example missing")
def test_digits_example(store_dir, monkeypatch):
    pytest.importorskip("sklearn")
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    record = get_target("kfp-local").run(load(ROOT / "examples/digits/digits.ipynb"), {"epochs": "1"},
                                     open_store(store_dir), {}, None)
    assert record.status.value == "succeeded", record.error
    assert 0.0 < record.metrics()["accuracy"] <= 1.0
    assert (Path(store_dir) / "models" / "digits").is_dir()
    # the stage that registered the model shows it as an Output[Model] naming the registry version
    [model] = (Path(store_dir) / "runs" / record.run_id / "kfp-outputs").glob("*/register/jp_model")
    [listed] = json.loads(model.read_text())
    assert listed["name"] == "digits" and listed["version"] == 1 and listed["uri"].endswith("models/digits/1")


def test_component_entry_timeout_keeps_the_executed_notebook(store_dir, tmp_path):
    """``timeout:`` inside the component: the stage stops, the task fails, the notebook is kept."""
    from jupyter_pipeline.kfp.tasks import notebook_json
    from jupyter_pipeline.kfp.entry import run_component
    from jupyter_pipeline.notebook.parse import from_notebook

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import time\nprint('sleeping')\ntime.sleep(120)", metadata={"tags": ["stage:slow"]})])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    pipeline = from_notebook(nb, str(tmp_path / "slow.ipynb"))
    store = open_store(store_dir)
    # an earlier attempt of this task (a KFP retry) left its result: this one is attempt 2
    store.put_json("runs/r1/stages/slow/result.json", {"status": "failed", "attempts": 1})
    # 10 s: longer than a kernel start on a busy machine, so the cell is running when it fires
    with pytest.raises(RuntimeError, match="timed out after 10 s"):
        run_component(stage="slow", parameters={}, notebook=notebook_json(pipeline, pipeline.stage("slow")),
                      store=store_dir, run_id="r1", timeout=10)
    result = store.get_json("runs/r1/stages/slow/result.json")
    assert result["status"] == "failed" and result["attempts"] == 2
    executed = nbformat.reads(store.get_bytes("runs/r1/stages/slow/output.ipynb").decode(), 4)
    assert "sleeping" in json.dumps(executed.cells[-1].outputs)


def test_map_stage_runs_each_item_as_a_loop_iteration(store_dir):
    """fanout.ipynb's `check` stage asserts that 8 chunks of a 1,000-row frame equal the unchunked code."""
    events = []
    pipeline = load(FIXTURES / "fanout.ipynb")
    record = get_target("kfp-local").run(pipeline, {}, open_store(store_dir), {},
                                     lambda kind, rec, stage: events.append((kind, stage)))
    assert record.status.value == "succeeded", record.to_json()
    features = record.stages["features"]
    assert [it["index"] for it in features.items] == list(range(8))
    assert all(it["status"] == "succeeded" for it in features.items) and features.metrics == {"rows": 125.0}
    assert len(record.stages["greet"].items) == 3 and record.stages["check"].status.value == "succeeded"
    store = open_store(store_dir)
    for i in range(8):  # written by the compiled component of iteration i
        assert store.get_json(f"runs/{record.run_id}/stages/features/items/{i}/result.json")["index"] == i
    for name in pipeline.stage_names:
        assert [k for k, s in events if s == name] == ["stage-started", "stage-finished"], (name, events)


def test_failed_map_item_fails_the_stage_and_keeps_its_notebook(tmp_path):
    import shutil

    shutil.copy(FIXTURES / "fanout_resume.ipynb", tmp_path / "fanout_resume.ipynb")
    (tmp_path / "fail.flag").write_text("1")  # item 2 (value 3) raises while it exists
    record = get_target("kfp-local").run(load(tmp_path / "fanout_resume.ipynb"), {}, open_store(str(tmp_path / "store")),
                                     {}, None)
    square = record.stages["square"]
    assert record.status.value == "failed" and square.status.value == "failed"
    assert square.error.startswith("1 of 4 item(s) did not succeed; item 2: RuntimeError: item 3 fails")
    assert [it["status"] for it in square.items] == ["succeeded", "succeeded", "failed", "succeeded"]
    assert square.output_notebook.endswith("items/2/output.ipynb")
    assert record.stages["total"].status.value == "skipped"


def test_sweep_is_one_kfp_local_pipeline_sharing_the_unswept_stage(store_dir, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code = main(["run", "tests/fixtures/sweep_metric.ipynb", "--target", "kfp-local", "--store", store_dir,
                 "--sweep", "a=1,3,5", "--sweep", "b=0,2", "--metric", "score", "--max-parallel", "2", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0, data
    assert len(data["variants"]) == 6 and data["stages_executed"] == 7 and data["stages_used"] == 12
    best = data["variants"][0]
    assert best["best"] and best["parameters"] == {"a": 3, "b": 2} and best["metrics"]["score"] == 12
    store = open_store(store_dir)
    records = [load_run(store, v["run_id"]) for v in data["variants"]]
    assert {(r.target, r.sweep_id) for r in records} == {("kfp-local", data["sweep_id"])}
    owners = [r.run_id for r in records if r.stages["prep"].reused_from is None]
    assert len(owners) == 1 and all(r.stages["prep"].reused_from in (None, owners[0]) for r in records)
    # prep ran once: one executed notebook, in the owner's folder
    assert sum(store.exists(f"runs/{r.run_id}/stages/prep/output.ipynb") for r in records) == 1
    spec = next(yaml.safe_load_all(store.get_bytes(f"sweeps/{data['sweep_id']}/pipeline.yaml").decode()))
    assert set(spec["root"]["dag"]["tasks"]) == {"prep", "sweep-variants", "for-loop-1"}


def test_working_files_travel_to_the_stages(tmp_path, monkeypatch, capsys):
    """A notebook that reads a CSV and a YAML file next to it (and a file its `files` setting lists)
    runs with --target kfp-local from another working directory: the files reach each stage's
    kernel through the bundle in the store, unpacked into the kernel's own working directory."""
    import tarfile

    monkeypatch.chdir(tmp_path)
    notebook = FIXTURES / "working_files" / "reads_files.ipynb"
    assert main(["validate", str(notebook), "--json"]) == 0
    notes = json.loads(capsys.readouterr().out)["kubeflow"]
    assert notes["files"] == ["config.yaml", "data/train.csv", "lookup/bonus.json"]  # not unrelated.txt
    store_dir = tmp_path / "store"
    code = main(["run", str(notebook), "--target", "kfp-local", "--store", str(store_dir), "--json"])
    record = json.loads(capsys.readouterr().out)
    assert code == 0, record
    assert record["stages"]["score"]["metrics"] == {"total": 447}
    [bundle] = (store_dir / "files").glob("*.tar.gz")  # one bundle, named by its content
    with tarfile.open(bundle) as tar:
        assert sorted(tar.getnames()) == notes["files"]
    outputs = store_dir / "runs" / record["run_id"] / "kfp-outputs"
    for stage in ("load", "score"):  # where kfp.local keeps the tasks' output artifacts
        [html] = outputs.glob(f"*/{stage}/jp_html")
        assert f"<code>{stage}</code>" in html.read_text()
        [metrics] = outputs.glob(f"*/{stage}/jp_metrics")
        assert json.loads(metrics.read_text()) == ({"total": 447} if stage == "score" else {})
