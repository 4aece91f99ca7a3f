"""Parsing: tag dialects, stage grouping, parameters, data dependencies."""

from __future__ import annotations

import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from jupyter_pipeline.notebook import analysis
from jupyter_pipeline.exceptions import NotebookReadError
from jupyter_pipeline.notebook.parse import from_notebook, load, whole_notebook_stage
from jupyter_pipeline.notebook.pipeline import Role
from jupyter_pipeline.stage.notebook import stage_notebook


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
        ("stage:b", "y = 2"),
        ("stage:a", "z = x2 + 3"),
        ("stage:c", "w = z + y"),
    ))
    assert p.ok, p.problems
    assert p.stage("a").cells == (0, 1, 4)
    assert p.stage("b").cells == (2, 3)  # the markdown right above stage b introduces it
    assert p.stage("a").defines == {"x", "x2", "z"}
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


def test_kale_notebook_converts_unchanged(fixture_nb):
    p = load(fixture_nb("kale_notebook"))
    assert [(x.severity, x.code, x.cell) for x in p.problems] == [("warning", "orphan-cell", 0)]
    assert p.stage_names == ["make", "total", "pipeline-metrics"]
    # empty `block:` cells and untagged cells continue the stage above; `skip` belongs to none
    assert p.stage("make").cells == (3, 4, 5) and p.stage("total").cells == (6, 7)
    assert p.cells[0].role == Role.SKIP and p.cells[0].stage is None  # the `!pip` cell is left out
    # kubeflow_notebook metadata: name, experiment, image, steps_defaults, volumes
    assert p.name == "kale-sums" and p.settings["experiment"] == "kale-experiments"
    make, total = p.stage("make").options, p.stage("total").options
    assert make.image == total.image == "example.org/team/kale-image:1"
    assert make.labels == {"access-ml-pipeline": "true", "tier": "gold"}
    assert make.annotations == {"example.com/cost-center": "42", "example.com/owner": "team-a"}
    assert total.labels == {"access-ml-pipeline": "true"}
    assert total.secrets == ({"name": "db-creds", "key": "password", "env": "DB_PASSWORD"},)
    assert p.settings["volumes"] == [
        {"name": "team-data", "mount_path": "/data"},
        {"name": "scratch", "mount_path": "/scratch", "new": True, "size": "5Gi", "access_mode": "ReadWriteMany",
         "annotations": {"example.com/keep": "no"}},
    ]
    options = p.to_json()["stages"][1]["options"]
    assert options["secrets"] == [{"name": "db-creds", "key": "password", "env": "DB_PASSWORD"}]
    # pipeline-metrics logs every printed name, parameters included
    metrics_cell = stage_notebook(p, "pipeline-metrics").cells[-1].source
    assert '["d1", "d2", "total"]' in metrics_cell
    assert p.stage("pipeline-metrics").parameters == ("d1", "d2")


def test_our_settings_and_stage_tags_win_over_kale_defaults():
    n = nb(("stage:a label:tier:gold", "x = 1"))
    n.metadata["kubeflow_notebook"] = {"pipeline_name": "kale-name", "docker_image": "kale/image:1",
                                       "steps_defaults": ["label:tier:silver", "limit:nvidia.com/gpu:1"]}
    n.metadata["jupyter_pipeline"] = {"name": "our-name"}
    p = from_notebook(n)
    assert p.ok, p.problems
    assert p.name == "our-name"
    a = p.stage("a").options
    assert (a.labels, a.gpu, a.image) == ({"tier": "gold"}, 1, "kale/image:1")


@pytest.mark.parametrize("tag, words", [
    ("label:bad$key:v", "label:KEY:VALUE"),
    ("label:team:not-ok!", "a label value"),
    ("annotation:no-value", "annotation:KEY:VALUE"),
    ("secret:creds", "secret:NAME:KEY:ENV"),
    ("secret:creds:key:1ENV", "secret:NAME:KEY:ENV"),
])
def test_bad_pod_metadata_tags(tag, words):
    p = from_notebook(nb((f"stage:a {tag}", "x = 1")))
    [problem] = p.errors
    assert problem.code == "bad-tag" and words in problem.message


def test_stage_tags_setting_holds_only_options():
    n = nb(("stage:a", "x = 1"))
    n.metadata["jupyter_pipeline"] = {"stage_tags": ["stage:b", "cpu:2", "secret:creds:/etc/creds"]}
    p = from_notebook(n)
    [problem] = p.errors
    assert problem.code == "bad-setting" and "'stage:b'" in problem.message
    assert p.stage("a").options.cpu == "2"
    assert p.stage("a").options.secrets == ({"name": "creds", "path": "/etc/creds"},)


def test_untagged_notebook_is_one_stage_named_after_the_file(fixture_nb):
    p = load(fixture_nb("whole_notebook"))
    assert p.ok, p.problems
    assert [(x.severity, x.code) for x in p.problems] == [("info", "whole-notebook")]
    [stage] = p.stages
    assert stage.name == "whole_notebook" and stage.cells == (0, 2, 3, 4)
    assert [x.name for x in p.parameters] == ["n"] and stage.parameters == ("n",)


@pytest.mark.parametrize("path, name", [
    ("work/01 My Analysis (v2).ipynb", "my-analysis-v2"),
    ("Untitled.ipynb", "untitled"),
    ("2024.ipynb", "notebook"),
    ("<notebook>", "notebook"),
    ("x" * 80 + ".ipynb", "x" * 63),
])
def test_whole_notebook_stage_name_is_a_valid_stage_name(path, name):
    assert whole_notebook_stage(path) == name


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


def test_a_heading_travels_with_the_stage_it_introduces():
    p = from_notebook(nb(
        ("md", "# Title"),
        ("stage:a", "x = 1"),
        ("md", "notes on a"),
        ("", "y = x"),
        ("md", "## B"),
        ("md", "what b does"),
        ("stage:b", "z = y"),
    ))
    assert p.stage("a").cells == (0, 1, 2, 3) and p.stage("b").cells == (4, 5, 6)
    assert [p.cells[i].stage for i in (0, 4, 5)] == ["a", "b", "b"]
    stage_b = stage_notebook(p, "b")
    assert [c.source for c in stage_b.cells if c.metadata["jupyter_pipeline"]["kind"] == "user"] == [
        "## B", "what b does", "z = y"]
    assert all("## B" not in c.source for c in stage_notebook(p, "a").cells)


def test_cells_of_pipeline_magics_are_left_out():
    p = from_notebook(nb(
        ("", "%load_ext jupyter_pipeline"),
        ("stage:a", "x = 1"),
        ("", "%pipeline validate\n\n# then\n%pipeline publish --experiment e"),
        ("", "%reload_ext jupyter_pipeline"),
        ("stage:b", "y = x"),
        ("", "%pipeline status\nprint(y)"),  # code besides the magic: part of the stage
    ))
    assert p.ok, p.problems
    assert p.stage("a").cells == (1,) and p.stage("b").cells == (4, 5)
    assert [c.role for c in p.cells[:4]] == [Role.SKIP, Role.STAGE, Role.SKIP, Role.SKIP]
    assert from_notebook(nb(("", "%load_ext autoreload"), ("stage:a", "x = 1"))).problems[0].code == "orphan-cell"


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
