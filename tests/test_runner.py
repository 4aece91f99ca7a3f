"""The local runner with real kernels: parallelism, values, failures, parameters, resume."""

from __future__ import annotations

import shutil

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from jupyter_pipeline.exceptions import ParameterError, PipelineError, ValidationFailed
from jupyter_pipeline.notebook.parse import load
from jupyter_pipeline.store.records import list_runs, load_run, parse_iso
from jupyter_pipeline.local.runner import LocalRunner, resume_run, run_pipeline
from jupyter_pipeline.store.base import open_store

pytestmark = pytest.mark.slow


def interval(rec):
    return parse_iso(rec.started_at), parse_iso(rec.finished_at)


def test_diamond_branches_overlap_in_time(fixture_nb, store_dir):
    events = []
    record = run_pipeline(fixture_nb("diamond"), store=store_dir, workers=2,
                          on_event=lambda kind, r, stage: events.append((kind, stage)))
    assert record.status.value == "succeeded", record.to_json()
    (l0, l1), (r0, r1) = interval(record.stages["left"]), interval(record.stages["right"])
    assert l0 < r1 and r0 < l1, "independent stages did not run at the same time"
    j0, _ = interval(record.stages["join"])
    assert j0 >= max(l1, r1)
    assert record.stages["join"].metrics == {"joined": 23}
    assert events[0] == ("run-started", None) and events[-1] == ("run-finished", None)
    assert ("stage-started", "left") in events
    # every executed stage notebook is kept, and the record in the store matches
    store = open_store(store_dir)
    for name in record.stages:
        nb = nbformat.reads(store.get_bytes(f"runs/{record.run_id}/stages/{name}/output.ipynb").decode(), 4)
        assert any(c.get("outputs") is not None for c in nb.cells)
    assert load_run(store, record.run_id).to_json() == record.to_json()


def test_values_cross_stages(fixture_nb, store_dir):
    record = run_pipeline(fixture_nb("values"), store=store_dir)
    assert record.status.value == "succeeded", record.stages["check"].error
    assert set(record.stages["make"].outputs) == {"arr", "frame", "odd_frame", "info", "model"}
    files = open_store(store_dir).list(f"runs/{record.run_id}/stages/make/vars/")
    assert {f.rsplit("/", 1)[1] for f in files} == {"arr.npy", "frame.parquet", "odd_frame.pkl", "info.pkl", "model.keras"}


def test_failure_stops_dependents_but_not_independent_branches(fixture_nb, store_dir):
    record = run_pipeline(fixture_nb("failing_stage"), store=store_dir, workers=2)
    states = {name: rec.status.value for name, rec in record.stages.items()}
    assert states == {"start": "succeeded", "broken": "failed", "after_broken": "skipped", "independent": "succeeded"}
    assert record.status.value == "failed"
    broken = record.stages["broken"]
    assert "ValueError: boom in broken" in broken.error
    assert broken.error_cell == 2  # the source notebook's cell as JupyterLab numbers it, not the generated one
    out = open_store(store_dir).get_bytes(f"runs/{record.run_id}/stages/broken/output.ipynb").decode()
    assert "boom in broken" in out  # executed notebook kept with its error


def test_unpicklable_value_fails_with_named_variable(fixture_nb, store_dir):
    record = run_pipeline(fixture_nb("unpicklable_var"), store=store_dir)
    make = record.stages["make"]
    assert make.status.value == "failed"
    assert make.error.startswith("VariableNotSavable: Variable 'stream' in stage 'make' (cell 3) cannot be passed")
    assert "holds a generator" in make.error and "list(...)" in make.error
    assert make.error_cell == 3  # the cell that assigned it, not the generated cell that saved it
    assert record.stages["use"].status.value == "skipped"


def test_functions_classes_and_closures_cross_stages(fixture_nb, store_dir):
    record = run_pipeline(fixture_nb("callables_across_stages"), {"factor": "4"}, store=store_dir)
    assert record.status.value == "succeeded", {n: r.error for n, r in record.stages.items()}
    assert set(record.stages["prep"].outputs) == {"scale", "square", "add_five", "Counter", "counter", "unit", "circle"}
    assert record.stages["report"].metrics == {"scaled": 41}  # factor 4 travelled inside `scale`


def test_modules_cross_stages_as_imports(fixture_nb, store_dir):
    record = run_pipeline(fixture_nb("module_across_stages"), store=store_dir)
    assert record.status.value == "succeeded", record.stages["use"].error
    files = open_store(store_dir).list(f"runs/{record.run_id}/stages/load/vars/")
    assert {f.rsplit("/", 1)[1] for f in files} == {"os.module.json", "js.module.json", "ET.module.json",
                                                    "path.module.json", "name.pkl"}


def test_missing_module_in_a_stage_says_where_to_install_it(tmp_path, store_dir):
    nb = new_notebook(cells=[new_code_cell("x = 1"), new_code_cell("import surely_not_installed_here")])
    nb.cells[0].metadata["tags"] = ["stage:a"]
    nbformat.write(nb, tmp_path / "missing.ipynb")
    record = run_pipeline(tmp_path / "missing.ipynb", store=store_dir)
    a = record.stages["a"]
    assert a.error.startswith("ModuleNotFoundError: No module named 'surely_not_installed_here' — install "
                              "'surely_not_installed_here' into the Python environment of the kernel 'python3'")
    assert "`packages` setting" in a.error and a.error_cell == 2


def test_parameters_override_defaults_and_are_typed(fixture_nb, store_dir):
    pipeline = load(fixture_nb("diamond"))
    record = LocalRunner(store_dir).run(pipeline, {"pause": "0.1"})
    assert record.parameters["pause"] == 0.1
    nb = open_store(store_dir).get_bytes(f"runs/{record.run_id}/stages/left/output.ipynb").decode()
    assert "pause = 0.1" in nb  # papermill's injected-parameters cell
    with pytest.raises(ParameterError, match="no parameter 'pace'.*pause"):
        LocalRunner(store_dir).run(pipeline, {"pace": "1"})
    with pytest.raises(ParameterError, match="not a float"):
        LocalRunner(store_dir).run(pipeline, {"pause": "slow"})


def test_kale_and_magic_dialects_run(fixture_nb, store_dir):
    for name in ("kale_dialect", "magic_dialect"):
        record = run_pipeline(fixture_nb(name), store=store_dir)
        assert record.status.value == "succeeded", (name, record.to_json())
    assert record.stages["total"].status.value == "succeeded"
    kale = [r for r in list_runs(open_store(store_dir)) if r.pipeline == "kale-dialect"][0]
    assert kale.stages["pipeline-metrics"].metrics == {"total": 12.0}


def test_kale_notebook_runs_unchanged_and_logs_printed_parameters(fixture_nb, store_dir):
    record = run_pipeline(fixture_nb("kale_notebook"), store=store_dir)
    assert record.status.value == "succeeded", record.to_json()
    assert record.pipeline == "kale-sums"
    # values = [5, 6, 11, 1] (the empty block: and untagged cells ran in `make`), total doubled in `total`
    assert record.stages["pipeline-metrics"].metrics == {"d1": 5, "d2": 6, "total": 46.0}


def test_untagged_notebook_runs_as_one_stage(fixture_nb, store_dir):
    record = run_pipeline(fixture_nb("whole_notebook"), {"n": "3"}, store=store_dir)
    assert record.status.value == "succeeded", record.to_json()
    assert list(record.stages) == ["whole_notebook"]
    out = open_store(store_dir).get_bytes(f"runs/{record.run_id}/stages/whole_notebook/output.ipynb").decode()
    assert "5.0" in out  # 0 + 1 + 4, printed by the last cell


def test_invalid_pipeline_is_refused_before_running(fixture_nb, store_dir):
    with pytest.raises(ValidationFailed):
        run_pipeline(fixture_nb("cycle"), store=store_dir)


def test_resume_reruns_only_what_failed(fixture_nb, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(fixture_nb("resume"), work / "resume.ipynb")
    (work / "fail.flag").write_text("1")
    store = str(tmp_path / "store")
    first = run_pipeline(work / "resume.ipynb", store=store)
    assert first.stages["second"].status.value == "failed"
    kept_start = first.stages["first"].started_at
    (work / "fail.flag").unlink()
    resumed = resume_run(store, first.run_id)
    assert resumed.run_id == first.run_id and resumed.status.value == "succeeded"
    assert resumed.stages["first"].reused and resumed.stages["first"].started_at == kept_start
    assert resumed.stages["second"].status.value == "succeeded"
    assert resumed.history[-1]["stages"] == ["second"]


def test_timeout_and_retries(tmp_path, write_notebook):
    nb = write_notebook(tmp_path / "slow.ipynb", [
        (["stage:slow", "timeout:2"], "import time\ntime.sleep(60)"),
        (["stage:flaky", "retries:2"], "import os\nn = len(os.listdir('marks'))\nopen(f'marks/{n}', 'w').close()\n"
                                       "assert n >= 1, 'first attempt fails'"),
    ])
    (tmp_path / "marks").mkdir()
    t0 = __import__("time").monotonic()
    record = run_pipeline(nb, store=str(tmp_path / "store"), workers=2)
    assert __import__("time").monotonic() - t0 < 40
    slow, flaky = record.stages["slow"], record.stages["flaky"]
    assert slow.status.value == "failed" and "timed out after 2 s" in slow.error
    assert flaky.status.value == "succeeded" and flaky.attempts == 2


def test_cancel_stops_running_and_pending_stages(tmp_path, write_notebook):
    import threading
    import time

    nb = write_notebook(tmp_path / "long.ipynb", [
        (["stage:sleepy"], "import time\ntime.sleep(120)\nv = 1"),
        (["stage:later"], "w = v + 1"),
    ])
    runner = LocalRunner(str(tmp_path / "store"))
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("record", runner.run(load(nb))))
    thread.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (runner.record and runner.record.stages["sleepy"].status.value == "running"):
        time.sleep(0.2)
    time.sleep(3)  # let the kernel start executing
    t0 = time.monotonic()
    runner.cancel()
    thread.join(60)
    assert not thread.is_alive() and time.monotonic() - t0 < 20
    record = result["record"]
    assert record.status.value == "cancelled"
    assert record.stages["sleepy"].status.value == "cancelled"
    assert record.stages["later"].status.value in ("cancelled", "skipped")
    assert load_run(open_store(str(tmp_path / "store")), record.run_id).status.value == "cancelled"


def test_missing_notebook_kernel_falls_back_to_python3(fixture_nb, tmp_path):
    nb = nbformat.read(fixture_nb("resume"), 4)
    nb.metadata["kernelspec"] = {"name": "conda-env-elsewhere-py", "display_name": "x", "language": "python"}
    path = tmp_path / "other_kernel.ipynb"
    nbformat.write(nb, path)
    record = run_pipeline(path, store=str(tmp_path / "store"))
    assert record.status.value == "succeeded", record.to_json()
    assert record.history[0]["event"] == "kernel-fallback" and "conda-env-elsewhere-py" in record.history[0]["message"]
    nb.metadata["jupyter_pipeline"] = {"kernel": "conda-env-elsewhere-py"}  # asked for explicitly: an error
    nbformat.write(nb, path)
    with pytest.raises(PipelineError, match="not installed here; installed kernels: .*python3"):
        run_pipeline(path, store=str(tmp_path / "store"))
    assert len(list((tmp_path / "store" / "runs").iterdir())) == 1  # refused before a record was made


def test_incremental_reuses_unchanged_stages_and_says_why_others_run(fixture_nb, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    path = work / "diamond.ipynb"
    shutil.copy(fixture_nb("diamond"), path)
    store = str(tmp_path / "store")
    first = LocalRunner(store, incremental=True).run(load(path), {"pause": "0.1"})
    assert first.status.value == "succeeded"
    assert first.stages["start"].why == "no earlier run of this notebook has it"
    # same parameters: everything is reused, nothing runs
    second = LocalRunner(store, incremental=True).run(load(path), {"pause": "0.1"})
    assert all(s.reused_from == first.run_id for s in second.stages.values())
    assert second.stages["join"].metrics == {"joined": 23}
    # a parameter that only the branches use: start is reused, the branches and join run again
    nb = nbformat.read(path, 4)
    third = LocalRunner(store, incremental=True).run(load(path), {"pause": "0.2"})
    why = {name: rec.why for name, rec in third.stages.items()}
    assert third.stages["start"].reused_from == first.run_id
    assert why["left"] == "parameter pause 0.1 → 0.2" and why["join"] == "upstream stage left, right changed"
    assert third.stages["left"].reused_from is None and third.stages["left"].status.value == "succeeded"
    # edit one branch's code: only it and what depends on it run
    nb.cells[3].source = nb.cells[3].source.replace("base + 1", "base + 100")  # the `left` stage
    nbformat.write(nb, path)
    fourth = LocalRunner(store, incremental=True).run(load(path), {"pause": "0.2"})
    assert fourth.stages["left"].why == "its code changed"
    assert fourth.stages["right"].reused_from == third.run_id and fourth.stages["start"].reused_from == first.run_id
    assert fourth.stages["join"].metrics == {"joined": 122}  # 110 + 12: reused `right` value loaded through pointers


def test_stage_kernels_run_without_the_debugger_and_keep_history_in_memory(tmp_path, write_notebook):
    nb = write_notebook(tmp_path / "lean.ipynb", [
        (["stage:lean"], "import sys\nprint('first output', flush=True)\n"
                         "assert 'debugpy' in sys.modules and sys.modules['debugpy'] is None, 'debugpy imported'\n"
                         "assert get_ipython().history_manager.hist_file == ':memory:'"),
    ])
    record = run_pipeline(nb, store=str(tmp_path / "store"))
    assert record.status.value == "succeeded", record.stages["lean"].error
    out = open_store(str(tmp_path / "store")).get_bytes(f"runs/{record.run_id}/stages/lean/output.ipynb").decode()
    assert "first output" in out  # the first cell's output is not lost to a late IOPub subscription
