"""Parsing: tag dialects, stage grouping, parameters, data dependencies."""

from __future__ import annotations

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from jupyter_pipeline import analysis
from jupyter_pipeline.exceptions import NotebookReadError
from jupyter_pipeline.parse import from_notebook, load
from jupyter_pipeline.pipeline import Role


def nb(*cells):
    out = []
    for tags, source in cells:
        c = new_markdown_cell(source) if tags == "md" else new_code_cell(source)
        if tags and tags != "md":
            c.metadata["tags"] = tags.split()
        out.append(c)
    return new_notebook(cells=out)


def test_example_digits_structure():
    p = load("examples/digits/digits.ipynb")
    assert p.ok, p.problems
    assert p.stage_names == ["load", "preprocess", "train", "evaluate", "register"]
    assert set(p.edges) == {("load", "preprocess"), ("preprocess", "train"), ("preprocess", "evaluate"),
                            ("train", "evaluate"), ("train", "register"), ("evaluate", "register")}
    train = p.stage("train")
    assert train.options.gpu == 1
    assert dict(train.inputs) == {"x_train": "preprocess", "y_train": "preprocess"}
    assert train.outputs == ("model",)
    assert set(train.parameters) == {"epochs", "hidden_units", "learning_rate", "seed"}
    assert [(x.name, x.type, x.default) for x in p.parameters][:2] == [("epochs", "int", 5), ("learning_rate", "float", 0.01)]


def test_untagged_cells_join_previous_stage_and_repeated_tags_merge():
    p = from_notebook(nb(
        ("stage:a", "x = 1"),
        ("", "x2 = x * 2"),
        ("md", "notes"),
        ("stage:b", "y = x2"),
        ("stage:a", "z = 3"),
        ("stage:c", "w = z + y"),
    ))
    assert p.stage("a").cells == (0, 1, 2, 4)
    assert p.stage("a").defines == {"x", "x2", "z"}
    assert dict(p.stage("b").inputs) == {"x2": "a"}
    assert dict(p.stage("c").inputs) == {"z": "a", "y": "b"}


def test_nearest_earlier_definition_wins():
    p = from_notebook(nb(("stage:a", "v = 1"), ("stage:b", "v = 2"), ("stage:c", "print(v)")))
    assert dict(p.stage("c").inputs) == {"v": "b"}
    assert p.stage("c").depends_on == ("b",)


def test_setup_and_parameter_names_are_not_transferred():
    p = from_notebook(nb(
        ("setup", "import numpy as np\ndef helper(v):\n    return v + rate"),
        ("parameters", "rate = 0.5\nname = 'x'\nflags = [1, 2]"),
        ("stage:a", "x = np.ones(3) * rate"),
        ("stage:b", "y = helper(x)"),
    ))
    assert p.ok, p.problems
    assert dict(p.stage("b").inputs) == {"x": "a"}
    # helper() (setup) reads `rate`, so every stage receives it
    assert p.stage("b").parameters == ("rate",)
    assert [x.type for x in p.parameters] == ["float", "str", "list"]


def test_kale_dialect_is_accepted_unchanged(fixture_nb):
    p = load(fixture_nb("kale_dialect"))
    assert p.ok, p.problems
    assert p.stage_names == ["load", "double", "total", "pipeline-metrics"]
    assert p.stage("double").options.gpu == 1
    assert p.stage("double").after == ("load",)
    assert p.stage("total").options.cache is False
    assert [x.name for x in p.parameters] == ["factor"]
    assert p.stage("pipeline-metrics").metrics_cell
    assert dict(p.stage("pipeline-metrics").inputs) == {"total": "total"}
    skipped = [c for c in p.cells if c.role == Role.SKIP]
    assert len(skipped) == 1 and skipped[0].stage is None


def test_stage_magic_first_line(fixture_nb):
    p = load(fixture_nb("magic_dialect"))
    assert p.ok, p.problems
    double = p.stage("double")
    assert (double.options.gpu, double.options.gpu_type, double.options.memory) == (1, "nvidia-tesla-t4", "1Gi")
    assert double.after == ("load",)
    assert not p.cells[3].source.startswith("%%stage")  # the magic line is not part of the code


def test_bad_magic_line_is_a_problem():
    p = from_notebook(nb(("", "%%stage train --gpu\nx = 1")))
    assert any(x.code == "bad-tag" and "%%stage" in x.message for x in p.problems)


def test_notebook_settings_give_defaults():
    n = nb(("stage:a", "x = 1"), ("stage:b image:custom:2", "y = x"))
    n.metadata["jupyter_pipeline"] = {"name": "My Pipe", "image": "team/base:1"}
    p = from_notebook(n, "x.ipynb")
    assert p.name == "my-pipe"
    assert p.stage("a").options.image == "team/base:1"
    assert p.stage("b").options.image == "custom:2"


def test_magics_and_shell_lines_do_not_break_analysis(fixture_nb):
    p = load(fixture_nb("magics_and_shell"))
    assert p.ok, p.problems
    assert "files" in p.stage("a").defines
    assert dict(p.stage("b").inputs) == {"data": "a"}  # %%time body is analysed


def test_function_reading_globals_counts_as_use(fixture_nb):
    p = load(fixture_nb("function_globals"))
    assert dict(p.stage("b").inputs) == {"offset": "a", "scale": "a"}


@pytest.mark.parametrize("source, uses, defines", [
    ("x = x + 1", {"x"}, {"x"}),
    ("y = 1\nprint(y)", {"print"}, {"y"}),
    ("for i in items:\n    total = i\nprint(total)", {"items", "print"}, {"i", "total"}),
    ("[a * k for a in data if a > lo]", {"data", "k", "lo"}, set()),
    ("import os.path as osp, sys\nfrom a import b as c", set(), {"osp", "sys", "c"}),
    ("with open(p) as fh:\n    text = fh.read()", {"open", "p"}, {"fh", "text"}),
    ("try:\n    pass\nexcept ValueError as err:\n    msg = str(err)", {"ValueError", "str"}, {"err", "msg"}),
    ("n += 1", {"n"}, {"n"}),
    ("if (m := compute()) > 0:\n    r = m", {"compute"}, {"m", "r"}),
    ("class C(Base):\n    attr = glob", {"Base"}, {"C"}),
])
def test_scan_names(source, uses, defines):
    s = analysis.scan(source)
    assert s.uses == uses
    assert s.defines == defines


def test_scan_nested_scopes_report_globals_and_global_assignments():
    s = analysis.scan("def f(a):\n    global counter\n    counter = a + offset\n    return [b * w for b in a]")
    assert s.deferred_uses >= {"offset", "w"}
    assert "counter" in s.defines


def test_unreadable_files(tmp_path, fixture_nb):
    with pytest.raises(NotebookReadError, match="not a Jupyter notebook"):
        load(fixture_nb("not_a_notebook"))
    with pytest.raises(NotebookReadError, match="no such file"):
        load(tmp_path / "missing.ipynb")
    with pytest.raises(NotebookReadError, match="directory"):
        load(tmp_path)


def test_to_json_shape_round_trips_through_json():
    import json

    p = load("examples/digits/digits.ipynb")
    data = json.loads(json.dumps(p.to_json()))
    assert set(data) >= {"name", "stages", "edges", "parameters", "problems"}
    assert data["stages"][2]["gpu"] == 1
    assert {"name": "x_train", "from": "preprocess"} in data["stages"][2]["inputs"]


def test_large_generated_notebook_parses(tmp_path):
    cells = [("setup", "import math")]
    for i in range(80):
        prev = f"v{i - 1}" if i else "1"
        cells.append((f"stage:s{i}", f"v{i} = {prev} + 1"))
        cells += [("", f"t{i}_{j} = v{i} * {j}") for j in range(4)]
    p = from_notebook(nb(*cells))
    assert p.ok and len(p.stages) == 80
    assert p.stage("s79").depends_on == ("s78",)
