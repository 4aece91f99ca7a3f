"""Conditional stages on Kubeflow: the compiled dsl.If blocks (exact trigger policies), the producers'
scalar outputs, and both outcomes executed by kfp.local."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from jupyter_pipeline.exceptions import TargetError
from jupyter_pipeline.kfp.compiler import CompileOptions, compile_pipeline
from jupyter_pipeline.notebook.parse import load
from jupyter_pipeline.store.base import open_store
from jupyter_pipeline.targets import get_target
from test_kfp_compile import stage_dag

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def compiled(pipeline) -> dict:
    text = compile_pipeline(pipeline, options=CompileOptions.for_pipeline(pipeline, image="example.org/img:1"))
    return next(yaml.safe_load_all(text))


def tree(spec: dict, tasks: dict) -> dict:
    """``{display name: (trigger condition, nested tree)}`` of a DAG's tasks, blocks opened."""
    out = {}
    for task in tasks.values():
        component = spec["components"][task["componentRef"]["name"]]
        nested = tree(spec, component["dag"]["tasks"]) if "dag" in component else None
        out[task["taskInfo"]["name"]] = (task.get("triggerPolicy", {}).get("condition"), nested)
    return out


def channel(name: str) -> str:
    return f"inputs.parameter_values['pipelinechannel--{name}']"


def test_conditions_compile_to_nested_if_blocks_over_task_outputs_and_parameters():
    spec = compiled(load(FIXTURES / "conditional.ipynb"))
    assert tree(spec, stage_dag(spec)) == {
        "train": (None, None),
        "evaluate": (None, None),
        "report": (None, None),  # reads accuracy but has no condition: outside every block
        "register: upstream done": (f"{channel('evaluate-Output')} != ''", {
            "if accuracy >= min_accuracy": (f"{channel('evaluate-jp_scalar_accuracy')} >= {channel('min_accuracy')}", {
                "register": (None, None),
                "publish": (None, None),  # below register: skipped with it
            }),
        }),
        "full: upstream done": (f"{channel('evaluate-Output')} != ''", {
            "if mode == 'full'": (f"{channel('mode')} == 'full'", {
                "if passed == True": (f"{channel('evaluate-jp_scalar_passed')} == true", {"full": (None, None)}),
            }),
        }),
    }


def test_the_producer_exposes_its_scalars_as_typed_outputs_and_stays_cacheable():
    spec = compiled(load(FIXTURES / "conditional.ipynb"))
    evaluate = spec["components"]["comp-evaluate"]
    assert evaluate["outputDefinitions"]["parameters"] == {
        "Output": {"parameterType": "STRING"},  # its location, as for every stage
        "jp_scalar_accuracy": {"parameterType": "NUMBER_DOUBLE"},
        "jp_scalar_passed": {"parameterType": "BOOLEAN"},
    }
    assert stage_dag(spec)["evaluate"]["cachingOptions"] == {"enableCache": True}
    # no per-run value among the producer's inputs: KFP's cache recognises it, outputs included
    assert set(stage_dag(spec)["evaluate"]["inputs"]["parameters"]) == {
        "jp_files", "jp_notebook", "jp_s3_endpoint", "jp_store", "jp_workdir"}
    source = spec["deploymentSpec"]["executors"]["exec-evaluate"]["container"]["command"][-1]
    assert "jp_scalar_accuracy: OutputPath(float)" in source and "jp_scalar_passed: OutputPath(bool)" in source
    assert "scalar_kinds={'accuracy': 'float', 'passed': 'bool'}" in source
    # a pipeline without conditions compiles as before: no scalar outputs
    plain = compiled(load(FIXTURES / "diamond.ipynb"))
    assert all(set(c.get("outputDefinitions", {}).get("parameters", {})) <= {"Output"}
               for name, c in plain["components"].items() if "dag" not in c)


def test_a_condition_with_or_is_evaluated_by_a_check_task(tmp_path, write_notebook):
    path = write_notebook(tmp_path / "either.ipynb", [
        (["parameters"], "mode = 'full'"),
        (["stage:evaluate"], "accuracy = 0.91"),
        (["stage:register", "if:accuracy >= 0.95 or mode == 'full'"], "print('registered')"),
    ])
    spec = compiled(load(path))
    dag = tree(spec, stage_dag(spec))
    assert dag["register: if accuracy >= 0.95 or mode == 'full'"] == (None, None)
    assert dag["if accuracy >= 0.95 or mode == 'full'"] == (
        f"{channel('check-register-Output')} == true", {"register": (None, None)})
    check = spec["components"]["comp-check-register"]["inputDefinitions"]["parameters"]
    assert check == {"accuracy": {"parameterType": "NUMBER_DOUBLE"}, "mode": {"parameterType": "STRING"}}


def test_a_stage_below_two_independent_conditions_is_refused(tmp_path, write_notebook):
    path = write_notebook(tmp_path / "two_gates.ipynb", [
        (["stage:score"], "a = 1\nb = 2"),
        (["stage:left", "if:a > 0"], "x = 1"),
        (["stage:right", "if:b > 0"], "y = 2"),
        (["stage:join"], "print(x + y)"),
    ])
    pipeline = load(path)
    assert pipeline.ok  # locally this runs: join is skipped if either is
    with pytest.raises(TargetError, match="stage 'join' is below conditional stages 'left' and 'right'"):
        compiled(pipeline)
    # validate says so beforehand, among the Kubeflow notes
    from jupyter_pipeline.kfp.preflight import preflight

    notes = [p for p in preflight(pipeline)["problems"] if p["code"] == "conditions-not-nested"]
    assert len(notes) == 1 and notes[0]["stage"] == "join" and "Tag 'right' `after:left`" in notes[0]["message"]


@pytest.mark.slow
@pytest.mark.parametrize("min_accuracy,ran", [(0.95, False), (0.9, True)])
def test_kfp_local_runs_or_skips_the_conditional_stage(store_dir, min_accuracy, ran):
    pipeline = load(FIXTURES / "conditional_small.ipynb")
    record = get_target("kfp-local").run(pipeline, {"min_accuracy": str(min_accuracy)}, open_store(store_dir), {})
    assert record.status.value == "succeeded", record.to_json()
    stages = record.to_json()["stages"]
    assert stages["evaluate"]["status"] == "succeeded"
    store = open_store(store_dir)
    executed = [n for n in ("register", "publish") if store.exists(f"runs/{record.run_id}/stages/{n}/result.json")]
    if ran:
        assert {n: stages[n]["status"] for n in ("register", "publish")} == dict.fromkeys(["register", "publish"],
                                                                                          "succeeded")
        assert executed == ["register", "publish"]  # kfp.local ran their components
    else:
        assert stages["register"]["status"] == "skipped"
        assert stages["register"]["skip_reason"] == "condition false: accuracy=0.91 < min_accuracy=0.95"
        assert stages["publish"]["skip_reason"] == ("upstream stage register was skipped (condition false: "
                                                    "accuracy=0.91 < min_accuracy=0.95)")
        assert executed == []  # the dsl.If did not hold: kfp.local never started them


def test_a_cluster_run_that_succeeded_marks_the_stages_it_left_out_skipped_by_a_condition():
    from kfp_server_api import V2beta1PipelineTaskDetail, V2beta1Run, V2beta1RunDetails

    from jupyter_pipeline.kfp.client import KFP_SKIP_REASON, apply_run
    from jupyter_pipeline.store.records import finish, new_record

    pipeline = load(FIXTURES / "conditional_small.ipynb")
    record = new_record(pipeline, store="file:///tmp/x", target="kfp", parameters={"min_accuracy": 0.95})
    run = V2beta1Run(display_name="r", state="SUCCEEDED", run_details=V2beta1RunDetails(task_details=[
        V2beta1PipelineTaskDetail(display_name="evaluate", state="SUCCEEDED"),
        V2beta1PipelineTaskDetail(display_name="register", state="SKIPPED"),  # publish never appears
    ]))
    apply_run(record, run)
    assert record.status.value == "succeeded"
    assert record.stages["evaluate"].status.value == "succeeded"
    for name in ("register", "publish"):
        assert record.stages[name].status.value == "skipped" and record.stages[name].skip_reason == KFP_SKIP_REASON
    assert finish(record).status.value == "succeeded"


@pytest.mark.slow
def test_kfp_local_evaluates_an_or_condition_in_its_check_task(tmp_path, write_notebook, store_dir):
    path = write_notebook(tmp_path / "either.ipynb", [
        (["parameters"], "mode = 'full'"),
        (["stage:evaluate"], "accuracy = 0.91"),
        (["stage:register", "if:accuracy >= 0.95 or mode == 'full'"], "print('registered')"),
    ])
    pipeline = load(path)
    target, store = get_target("kfp-local"), open_store(store_dir)
    skipped = target.run(pipeline, {"mode": "quick"}, store, {})
    assert skipped.status.value == "succeeded", skipped.to_json()
    assert skipped.stages["register"].skip_reason == "condition false: accuracy=0.91 < 0.95 and mode='quick' != 'full'"
    ran = target.run(pipeline, {"mode": "full"}, store, {})
    assert ran.status.value == "succeeded" and ran.stages["register"].status.value == "succeeded", ran.to_json()
