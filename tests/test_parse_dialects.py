"""Notebooks as other tools write them: papermill's parameters cell, Kale's blocks, IPython's line magics.

Each test reads a notebook the way the tool that wrote it means it; the generated stage notebooks
show what runs.
"""

from __future__ import annotations

import pytest
import yaml

from jupyter_pipeline.kfp.compiler import compile_pipeline
from jupyter_pipeline.local.runner import run_pipeline
from jupyter_pipeline.notebook.parse import load
from jupyter_pipeline.notebook.pipeline import Role
from jupyter_pipeline.stage.notebook import stage_notebook


def test_imports_in_a_papermill_parameters_cell_run_as_setup(fixture_nb):
    pipeline = load(fixture_nb("papermill_imports_in_parameters"))
    assert pipeline.ok, pipeline.errors
    assert [(p.name, p.default) for p in pipeline.parameters] == [("radius", 2.0), ("label", "circle")]
    assert pipeline.setup_cells == (0,) and pipeline.cells[0].role == Role.PARAMETERS
    assert pipeline.setup_source(0) == "import math\nfrom pathlib import Path"
    nb = stage_notebook(pipeline, pipeline.stages[0], {"radius": 3.0})
    kinds = [(c.metadata["jupyter_pipeline"]["kind"], c.source) for c in nb.cells]
    assert ("setup", "import math\nfrom pathlib import Path") in kinds  # the imports, not the defaults
    assert not any("radius = 2.0" in source for kind, source in kinds if kind == "setup")


def test_a_computed_parameter_is_still_refused_with_advice_that_fits(tmp_path, write_notebook):
    path = write_notebook(tmp_path / "computed.ipynb", [(["parameters"], "import math\nrate = math.pi"),
                                                       (["stage:a"], "x = rate")])
    [problem] = load(path).errors
    assert problem.code == "parameter-not-literal" and problem.line == 2
    assert problem.message.endswith("Move computed values to a stage (imports may stay: they run at the start of "
                                    "every stage)")


def test_a_stage_named_like_the_pipeline_gets_a_component_of_its_own(fixture_nb):
    pipeline = load(fixture_nb("papermill_imports_in_parameters"))
    spec = next(yaml.safe_load_all(compile_pipeline(pipeline)))
    assert spec["pipelineInfo"]["name"] == "papermill-imports-in-parameters"
    assert "comp-papermill-imports-in-parameters-stage" in spec["components"]
    assert "comp-papermill-imports-in-parameters" not in spec["components"]


def test_kale_continuations_read_as_kale_reads_them(fixture_nb):
    pipeline = load(fixture_nb("kale_continuations"))
    assert pipeline.ok, pipeline.errors
    assert not pipeline.problems  # not the orphan-cell warning for the cell below `imports`
    assert pipeline.setup_cells == (0, 1)  # untagged code after `imports` joins the imports
    after = {s.name: s.after for s in pipeline.stages}
    assert after == {"load": (), "clean": ("load",), "summary": ("clean",)}  # `prev:` of continuations ignored
    assert {s.name: s.cells for s in pipeline.stages} == {"load": (3, 4), "clean": (5, 6), "summary": (7,)}


def test_dependency_errors_point_at_the_tag_as_written(tmp_path, write_notebook):
    path = write_notebook(tmp_path / "deps.ipynb", [
        (["stage:a"], "x = 1"),
        (["after:nope"], "y = x"),  # a later cell of stage a carries the tag
        (["block:b", "prev:pre"], "z = y"),
        (["step:c", "prev:c"], "w = z"),
    ])
    problems = {(p.code, p.cell): p.message for p in load(path).errors}
    assert problems[("unknown-after", 1)].startswith("`after:nope` names no stage")
    assert problems[("unknown-after", 2)].startswith("`prev:pre` names no stage")
    assert problems[("self-dependency", 3)] == "stage 'c' is tagged after itself (`prev:c`)"


@pytest.mark.slow
def test_kale_continuations_run(fixture_nb, store_dir):
    record = run_pipeline(fixture_nb("kale_continuations"), store=store_dir)
    assert record.status.value == "succeeded", {n: r.error for n, r in record.stages.items()}


def test_names_in_line_magic_statements_are_reads_and_writes(fixture_nb):
    pipeline = load(fixture_nb("line_magic_names"))
    assert pipeline.ok, pipeline.errors
    measure, report = pipeline.stage("measure"), pipeline.stage("report")
    assert measure.inputs == (("factor", "make"), ("values", "make"))  # `factor` read only inside %timeit
    assert measure.defines == {"total"}  # %timeit's own binding (`scaled`) does not outlive it
    assert report.inputs == (("total", "measure"),)


@pytest.mark.slow
def test_line_magic_names_run(fixture_nb, store_dir):
    record = run_pipeline(fixture_nb("line_magic_names"), store=store_dir)
    assert record.status.value == "succeeded", {n: r.error for n, r in record.stages.items()}
    assert record.stages["report"].metrics == {"total": 6}


def test_cell_magic_stages_are_not_empty_and_an_empty_notebook_is_told_so(tmp_path, write_notebook):
    path = write_notebook(tmp_path / "magics.ipynb", [
        (["stage:write"], "%%writefile settings.txt\nrate=2"),
        (["stage:shell", "after:write"], "%%bash\ncat settings.txt"),
        (["stage:empty"], "# nothing yet"),
    ])
    assert [(p.code, p.stage) for p in load(path).problems] == [("empty-stage", "empty")]
    empty = write_notebook(tmp_path / "empty.ipynb", [])
    [problem] = load(empty).errors
    assert problem.code == "no-stages" and problem.message == "the notebook has no code to run: add code cells"


def test_validate_counts_the_kubeflow_warnings_apart(tmp_path, write_notebook, capsys):
    from jupyter_pipeline.cli import main

    path = write_notebook(tmp_path / "plain.ipynb", [(["stage:a"], "x = 1")])
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "on Kubeflow, warning:" in out  # the built-in image is not published
    assert "0 error(s), 0 warning(s) (and 1 that matter(s) on Kubeflow only)" in out


def test_a_notebook_of_parameters_only_is_told_what_is_missing(tmp_path, write_notebook):
    # papermill's test notebooks hold a parameters cell alone; tagging steps would not help.
    path = write_notebook(tmp_path / "only_parameters.ipynb", [(["parameters"], "msg = None")])
    [problem] = load(path).errors
    assert problem.code == "no-stages" and problem.message.startswith(
        "no stage to run: every code cell is tagged `parameters`, `setup` or `skip`")


def test_a_function_called_before_its_helpers_are_defined_is_defined_later(tmp_path, write_notebook):
    path = write_notebook(tmp_path / "helpers.ipynb", [
        (["setup"], "import math"),
        (["stage:a"], "def area(r):\n    return math.pi * square(r)\n\ntotal = area(2)"),
        ([], "def square(v):\n    return v * v"),
        (["stage:b"], "def twice(v):\n    return v * 2\n\nlater = area(twice(1))"),
    ])
    problems = [(p.code, p.stage, p.cell) for p in load(path).errors]
    assert problems == [("defined-later", "a", 1)]  # stage b calls area after stage a defined square
    [problem] = load(path).errors
    assert problem.message.startswith("'area' reads 'square' and is called here, before the cell of stage 'a'")
