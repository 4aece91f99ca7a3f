"""Conditional stages (``if:EXPR``): the tag and ``%%stage --if``, the grammar, validation, the graph,
and local runs of both outcomes with real kernels."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_pipeline.notebook import condition
from jupyter_pipeline.notebook.diagram import FORMATS
from jupyter_pipeline.notebook.parse import load
from jupyter_pipeline.notebook.tags import read_cell
from jupyter_pipeline.local.runner import run_pipeline
from jupyter_pipeline.store.base import open_store
from jupyter_pipeline.store.records import load_run

CLI = [str(Path(sys.executable).parent / "jupyter-pipeline")]


# -- the tag parser ---------------------------------------------------------------------------------
@pytest.mark.parametrize("tags,source,expected", [
    (["stage:register", "if:accuracy >= min_accuracy"], "x = 1", "accuracy >= min_accuracy"),
    (["stage:register", "if:  accuracy>=min_accuracy  "], "x = 1", "accuracy>=min_accuracy"),
    (["stage:full", 'if:mode == "full"'], "x = 1", 'mode == "full"'),
    (["stage:r", "if:a > 1", "if:not b"], "x = 1", "(a > 1) and (not b)"),  # several tags must all hold
    ([], "%%stage register --after train --if \"accuracy >= min_accuracy\"\nx = 1", "accuracy >= min_accuracy"),
    ([], "%%stage full --if 'mode == \"full\" or passed'\nx = 1", 'mode == "full" or passed'),
])
def test_if_tag_and_magic_flag_set_the_condition(tags, source, expected):
    spec, _ = read_cell(tags, source)
    assert spec.problems == []
    assert spec.options["condition"] == expected


@pytest.mark.parametrize("text,says", [
    ("f(x) > 1", "`f(x)` (a call)"),
    ("x.y > 1", "`x.y` (an attribute)"),
    ("a in b", "uses `in`"),
    ("a + 1 > 2", "`a + 1` (arithmetic)"),
    ("a > [1]", "`[1]` (a list)"),
    ("1 < 2", "compares two literals"),
    ("True", "is a literal"),
    ("a >", "is not a valid expression"),
    ("__import__('os').system('x')", "(a call)"),
    ("m == \"it's\"", "may not contain '"),
    ("", "the condition is empty"),
])
def test_conditions_outside_the_grammar_are_tag_problems(text, says):
    spec, _ = read_cell(["stage:a", f"if:{text}"], "x = 1")
    assert [code for code, _ in spec.problems] == ["bad-condition"]
    assert says in spec.problems[0][1]
    assert "condition" not in spec.options


def test_a_bad_if_flag_is_a_problem_of_the_magic_line():
    spec, _ = read_cell([], "%%stage a --if 'os.system(1)'\nx = 1")
    assert [code for code, _ in spec.problems] == ["bad-condition"]


# -- evaluation, without eval ------------------------------------------------------------------------
@pytest.mark.parametrize("text,values,holds,why", [
    ("accuracy >= min_accuracy", {"accuracy": 0.91, "min_accuracy": 0.95}, False, "accuracy=0.91 < min_accuracy=0.95"),
    ("accuracy >= min_accuracy", {"accuracy": 0.97, "min_accuracy": 0.95}, True, "accuracy=0.97 >= min_accuracy=0.95"),
    ('mode == "full"', {"mode": "quick"}, False, "mode='quick' != 'full'"),
    ("a > 1 and b", {"a": 2, "b": False}, False, "b=False"),
    ("a > 1 or b", {"a": 0, "b": False}, False, "a=0 <= 1 and b=False"),
    ("not (a < 1)", {"a": 0}, False, "a=0 < 1"),
    ("0.5 <= a < 1", {"a": 1.2}, False, "a=1.2 >= 1"),
    ("passed", {"passed": True}, True, "passed=True"),
    ("n != -1", {"n": -1}, False, "n=-1 == -1"),
])
def test_evaluate_says_which_comparison_decided(text, values, holds, why):
    assert condition.evaluate(condition.parse(text), values) == (holds, why)


def test_evaluate_runs_no_code_and_refuses_to_order_strings_and_numbers():
    parsed = condition.parse("mode > 3")
    with pytest.raises(TypeError, match="cannot order 'x' and 3"):
        condition.evaluate(parsed, {"mode": "x"})
    np = pytest.importorskip("numpy")
    assert condition.evaluate(condition.parse("a >= 0.5"), {"a": np.float64(0.91)}) == (True, "a=0.91 >= 0.5")


def test_conjunctions_push_not_into_the_operators_and_or_is_not_one():
    links = condition.conjunction(condition.parse("not (a < 1) and b and not c"))
    assert [(getattr(left, "id", left), op, getattr(right, "id", right)) for left, op, right in links] == [
        ("a", ">=", 1), ("b", "==", True), ("c", "==", False)]
    assert condition.conjunction(condition.parse("a > 1 or b")) is None
    assert condition.conjunction(condition.parse("not (a > 1 and b)")) is None


# -- validation and binding --------------------------------------------------------------------------
def test_condition_names_become_data_edges_and_scalars_of_their_producers(fixture_nb):
    pipeline = load(fixture_nb("conditional"))
    assert pipeline.ok, [p.describe() for p in pipeline.problems]
    register = pipeline.stage("register")
    assert register.options.condition == "accuracy >= min_accuracy"
    assert ("accuracy", "evaluate") in register.inputs and "evaluate" in register.depends_on
    assert "min_accuracy" not in register.parameters  # a parameter read by the condition is no input
    assert pipeline.stage("evaluate").scalars == (("accuracy", "float"), ("passed", "bool"))
    assert pipeline.stage("full").options.condition == "mode == 'full' and passed"  # from %%stage --if
    assert pipeline.stage("register").to_json()["condition"] == "accuracy >= min_accuracy"


def test_validate_names_each_condition_problem_and_its_cell(fixture_nb):
    pipeline = load(fixture_nb("condition_problems"))
    found = {(p.stage, p.code, p.cell) for p in pipeline.errors}
    assert found == {
        ("gate", "condition-name", 4),        # `later` is bound by a later stage; `score`, `threshold` are fine
        ("self", "condition-name", 5),        # bound by the stage itself
        ("setup-read", "condition-name", 6),  # a setup cell's name
        ("listy", "condition-not-scalar", 7),  # a list parameter
        ("mapped", "condition-not-scalar", 8),  # a map: stage's output is a list
        ("typed", "condition-type", 9),       # a string parameter ordered against a number
        ("grammar", "bad-condition", 10),     # a call
        ("missing", "condition-name", 11),    # bound nowhere
    }
    messages = {p.stage: p.describe() for p in pipeline.errors}
    assert messages["gate"].startswith("[cell 5, stage 'gate'] `if:score >= threshold and later > 1`: 'later' is "
                                       "first bound by a later stage, 'late'")
    assert "'own' is bound by stage 'self' itself" in messages["self"]
    assert "'limit' comes from a setup cell" in messages["setup-read"]
    assert "parameter 'labels' is a list" in messages["listy"]
    assert "'doubled' comes from `map:` stage 'each'" in messages["mapped"]
    assert "`mode > 3` compares a string with a number" in messages["typed"]
    assert "no stage above binds 'nowhere' and no parameter has that name" in messages["missing"]


def test_validate_cli_reports_condition_problems_with_exit_1(fixture_nb):
    out = subprocess.run(CLI + ["validate", str(fixture_nb("condition_problems")), "--json"],
                         capture_output=True, text=True)
    assert out.returncode == 1, out.stderr
    codes = {p["code"] for p in json.loads(out.stdout)["problems"]}
    assert {"condition-name", "condition-not-scalar", "condition-type", "bad-condition"} <= codes
    assert "Traceback" not in out.stderr


def test_graph_shows_the_condition_in_every_format(fixture_nb):
    pipeline = load(fixture_nb("conditional"))
    text = FORMATS["text"](pipeline)
    assert "register  [if accuracy >= min_accuracy]" in text
    assert '"register" [label="register  [if accuracy >= min_accuracy]", style="rounded,dashed"];' in FORMATS["dot"](pipeline)
    assert 's2["register  [if accuracy #gt;= min_accuracy]"]' in FORMATS["mermaid"](pipeline)
    assert "register  [if accuracy &gt;= min_accuracy]" in FORMATS["svg"](pipeline)


# -- local runs, real kernels ------------------------------------------------------------------------
@pytest.mark.slow
def test_false_condition_skips_the_stage_and_its_dependents_and_the_run_succeeds(fixture_nb, store_dir):
    events = []
    record = run_pipeline(fixture_nb("conditional"), store=store_dir,
                          on_event=lambda kind, rec, stage: events.append((kind, stage)))
    assert record.status.value == "succeeded", record.to_json()
    stages = record.to_json()["stages"]
    assert stages["register"]["status"] == "skipped"
    assert stages["register"]["skip_reason"] == "condition false: accuracy=0.91 < min_accuracy=0.95"
    assert "error" not in stages["register"] and stages["register"]["output_notebook"] is None
    assert stages["publish"]["status"] == "skipped"
    assert stages["publish"]["skip_reason"] == ("upstream stage register was skipped (condition false: "
                                                "accuracy=0.91 < min_accuracy=0.95)")
    assert {n: s["status"] for n, s in stages.items() if n not in ("register", "publish")} == dict.fromkeys(
        ["train", "evaluate", "full", "report"], "succeeded")
    assert stages["full"]["why"] == "condition true: mode='full' == 'full' and passed=True"
    assert ("stage-finished", "register") in events and ("stage-started", "register") not in events
    # the plain value the condition read, next to the saved variable
    index = open_store(store_dir).get_json(f"runs/{record.run_id}/stages/evaluate/outputs.json")
    assert index["accuracy"]["scalar"] == 0.91 and index["passed"]["scalar"] is True
    assert load_run(open_store(store_dir), record.run_id).stages["register"].passed_over


@pytest.mark.slow
def test_true_condition_runs_the_stage_and_the_cli_shows_both(fixture_nb, store_dir):
    cli = CLI
    out = subprocess.run(cli + ["run", str(fixture_nb("conditional")), "--store", store_dir,
                                "-p", "min_accuracy", "0.9", "-p", "mode", "quick"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "▶ register started (condition true: accuracy=0.91 >= min_accuracy=0.9)" in out.stderr
    assert "✔ publish succeeded" in out.stderr
    assert "– full skipped: condition false: mode='quick' != 'full'" in out.stderr
    assert "full skipped: condition false: mode='quick' != 'full'" in out.stdout  # the final table's note
    listing = subprocess.run(cli + ["runs", "--store", store_dir], capture_output=True, text=True).stdout
    assert "succeeded  5/6 (1 skipped by if:)" in listing


@pytest.mark.slow
def test_a_value_that_is_no_scalar_fails_its_producer_naming_it(tmp_path, write_notebook, store_dir):
    path = write_notebook(tmp_path / "not_scalar.ipynb", [
        (["stage:evaluate"], "accuracy = [0.9, 0.8]"),
        (["stage:register", "if:accuracy > 0.5"], "print('registered')"),
    ])
    record = run_pipeline(path, store=store_dir)
    assert record.status.value == "failed"
    error = record.stages["evaluate"].error
    assert "variable 'accuracy' of stage 'evaluate' (cell 1) is read by a later stage's `if:` condition" in error
    assert "it holds list '[0.9, 0.8]'" in error
    assert record.stages["register"].status.value == "skipped" and not record.stages["register"].passed_over


def test_the_live_table_shows_a_skipped_stages_reason(fixture_nb):
    from jupyter_pipeline.livetable import run_bundle
    from jupyter_pipeline.stage.gate import skip
    from jupyter_pipeline.store.records import new_record

    record = new_record(load(fixture_nb("conditional_small")), store="file:///tmp/x", target="local", parameters={})
    skip(record, "register", "condition false: accuracy=0.91 < min_accuracy=0.95")
    bundle = run_bundle(record)
    assert "register             skipped" in bundle["text/plain"]
    assert "— condition false: accuracy=0.91 < min_accuracy=0.95" in bundle["text/plain"]
    assert "condition false: accuracy=0.91 &lt; min_accuracy=0.95" in bundle["text/html"]


@pytest.mark.slow
def test_stage_magic_with_if_skips_its_body_in_a_live_kernel_when_false(tmp_path):
    """A real kernel runs `%%stage ... --if`: the body runs only when the condition holds on its variables."""
    import nbformat
    import papermill
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(cells=[
        new_code_cell("%load_ext jupyter_pipeline"),
        new_code_cell("import numpy as np\naccuracy = np.float64(0.91)\nmin_accuracy = 0.95"),
        new_code_cell('%%stage register --if "accuracy >= min_accuracy"\nprint("REGISTERED", accuracy)'),
        new_code_cell("min_accuracy = 0.9"),
        new_code_cell('%%stage register --if "accuracy >= min_accuracy"\nprint("REGISTERED", accuracy)'),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "live.ipynb")
    papermill.execute_notebook(str(tmp_path / "live.ipynb"), str(tmp_path / "out.ipynb"), kernel_name="python3",
                               progress_bar=False, cwd=str(tmp_path))
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)

    def printed(i):
        return "".join(o.get("text", "") for o in out.cells[i].outputs if o.output_type == "stream")

    assert printed(2) == "stage 'register' skipped: condition false: accuracy=0.91 < min_accuracy=0.95\n"
    assert printed(4) == "REGISTERED 0.91\n"
