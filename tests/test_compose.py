"""Pipelines of several notebooks: `notebook:PATH` cells and Kale 2.3's `notebook:NAME` references.

The fixtures are in tests/fixtures/compose (regenerate with its make_compose.py): `parent` includes
`parts/child`, whose stages read the parent's variable and parameter, bind what the parent reads after,
collide with a parent stage name and read a file next to them; `kale_root` composes two notebooks in
Kale's spelling; `cycle_a`/`cycle_b` include each other; `missing_include` names no notebook.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from jupyter_pipeline.cli import main
from jupyter_pipeline.notebook.diagram import dot, mermaid, svg, text_tree
from jupyter_pipeline.notebook.parse import load
from jupyter_pipeline.stage.notebook import stage_notebook
from jupyter_pipeline.stagecache import stage_keys

COMPOSE = Path(__file__).resolve().parent / "fixtures" / "compose"
CHILD = "parts/child.ipynb"


def run_cli(capsys, *args) -> tuple[int, dict]:
    code = main([*map(str, args), "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_the_child_stands_in_place_of_its_notebook_cell():
    pipeline = load(COMPOSE / "parent.ipynb")
    assert pipeline.ok, [p.describe() for p in pipeline.problems]
    assert pipeline.stage_names == ["prepare", "child-prepare", "compute", "report"]  # `prepare` qualified
    stages = {s.name: s for s in pipeline.stages}
    assert {s: stages[s].notebook for s in stages} == {"prepare": "", "child-prepare": CHILD, "compute": CHILD,
                                                       "report": ""}
    # data edges across notebooks, found by the same analysis: base and scale down, total back up
    assert stages["compute"].inputs == (("base", "prepare"), ("extra", "child-prepare"))
    assert stages["compute"].parameters == ("offset", "scale")
    assert stages["report"].inputs == (("total", "compute"),)
    # one `-p scale` reaches every notebook: the parent's default wins, the child's own parameter stays
    assert [(p.name, p.default) for p in pipeline.parameters] == [("scale", 2), ("offset", 1)]
    # each notebook's setup cells run in its own stages only
    assert [pipeline.cells[i].source for i in pipeline.setup_cells_of(stages["compute"])] == ["import math"]
    assert [pipeline.cells[i].source for i in pipeline.setup_cells_of(stages["report"])] == ["import json"]
    nb = stage_notebook(pipeline, "compute", {"scale": 5})
    code = "\n".join(c.source for c in nb.cells)
    assert "import math" in code and "import json" not in code and "scale = 5" in code
    assert "_jp_io.enter_folder('parts')" in code  # it runs in its notebook's folder
    user = [c.metadata["jupyter_pipeline"] for c in nb.cells if c.metadata["jupyter_pipeline"]["kind"] == "user"]
    assert user == [{"kind": "user", "source_cell": 3, "source_notebook": CHILD}]  # errors point at the child's cell
    data = pipeline.to_json()
    assert data["notebooks"] == [{"path": CHILD, "parent": "", "cell": 3, "depth": 1, "prefix": "child",
                                  "spelling": "native"}]
    assert [s["cells"] for s in data["stages"]] == [[2], [2], [3], [4]]  # numbered in their own notebooks
    assert data["notebook_edges"] == [{"from": "", "to": CHILD, "variables": ["base"]},
                                      {"from": CHILD, "to": "", "variables": ["total"]}]


def test_validate_and_graph_show_the_notebooks(capsys):
    assert main(["validate", str(COMPOSE / "parent.ipynb")]) == 0
    assert "4 stage(s), 2 parameter(s), 0 error(s)" in capsys.readouterr().out
    pipeline = load(COMPOSE / "parent.ipynb")
    text = text_tree(pipeline)
    assert "compute  [params: offset, scale]  (base)  — parts/child.ipynb" in text
    assert "parent.ipynb ─▶ parts/child.ipynb  (base)" in text and "parts/child.ipynb ─▶ parent.ipynb  (total)" in text
    graph = dot(pipeline)
    assert 'subgraph "cluster_1" {\n    label="parts/child.ipynb"' in graph
    assert '"compute" -> "report" [label="total", penwidth=2' in graph  # between notebooks: bold
    assert '"child-prepare" -> "compute" [label="extra"];' in graph  # inside one: plain
    flow = mermaid(pipeline)
    assert 'subgraph n1["parts/child.ipynb"]' in flow and "s2 ==>|\"total\"| s3" in flow
    drawing = svg(pipeline)
    assert drawing.count('class="jp-notebook"') == 2 and drawing.count('class="jp-stage"') == 4
    code = main(["graph", str(COMPOSE / "parent.ipynb"), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and [s["notebook"] for s in data["stages"]] == ["", CHILD, CHILD, ""]
    assert data["notebook_edges"][1] == {"from": CHILD, "to": "", "variables": ["total"]}


def check_parent_run(record: dict, scale: int) -> None:
    assert record["status"] == "succeeded", record
    assert record["parameters"]["scale"] == scale
    # sum(base) * scale + offset + the 100 in parts/offset.txt, read from the child's folder
    assert record["stages"]["report"]["metrics"] == {"total": 6 * scale + 1 + 100}


@pytest.mark.slow
def test_parent_and_child_run_locally_with_a_parameter(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the stages' folders come from the notebooks, not from here
    shutil.copytree(COMPOSE, tmp_path / "compose")
    parent = tmp_path / "compose" / "parent.ipynb"
    code, record = run_cli(capsys, "run", parent, "-p", "scale", "5", "--store", tmp_path / "s")
    assert code == 0, record
    check_parent_run(record, 5)
    # an edit to the included notebook: --incremental runs its stage again, and the parent's reader of it
    nb = nbformat.read(tmp_path / "compose" / CHILD, as_version=4)
    nb.cells[3].source = nb.cells[3].source.replace("offset +", "offset + 1 +")
    nbformat.write(nb, tmp_path / "compose" / CHILD)
    code, again = run_cli(capsys, "run", parent, "-p", "scale", "5", "--store", tmp_path / "s", "--incremental")
    assert code == 0, again
    assert {name for name, rec in again["stages"].items() if not rec.get("reused_from")} == {"compute", "report"}
    assert again["stages"]["compute"]["why"] == "its code changed"
    assert again["stages"]["report"]["metrics"] == {"total": 6 * 5 + 1 + 1 + 100}


@pytest.mark.slow
def test_parent_and_child_run_on_kfp_local(tmp_path, capsys, monkeypatch):
    import tarfile

    monkeypatch.chdir(tmp_path)
    code, notes = run_cli(capsys, "validate", COMPOSE / "parent.ipynb")
    assert notes["kubeflow"]["files"] == ["parts/offset.txt"]  # the child's `files`, under its folder
    code, record = run_cli(capsys, "run", COMPOSE / "parent.ipynb", "--target", "kfp-local", "--store",
                           tmp_path / "s", "-p", "scale", "3")
    assert code == 0, record
    check_parent_run(record, 3)
    [bundle] = (tmp_path / "s" / "files").glob("*.tar.gz")
    with tarfile.open(bundle) as tar:
        assert tar.getnames() == ["parts/offset.txt"]


def test_kale_references_compose_with_kales_order():
    pipeline = load(COMPOSE / "kale_root.ipynb")
    assert pipeline.ok, [p.describe() for p in pipeline.problems]
    assert pipeline.stage_names == ["load", "transform", "consume", "final"]
    stages = {s.name: s for s in pipeline.stages}
    assert stages["transform"].inputs == (("raw", "load"),) and stages["transform"].parameters == ("factor",)
    assert stages["consume"].inputs == (("dataset", "transform"),)
    # Kale: a root step runs after every notebook above it (the sinks of both: transform, consume)
    assert stages["final"].depends_on == ("consume",)  # not transform too: consume runs after it
    assert [(p.name, p.default) for p in pipeline.parameters] == [("factor", 3)]  # the root's value wins
    assert [n.to_json()["spelling"] for n in pipeline.notebooks] == ["kale", "kale"]
    assert [n.prefix for n in pipeline.notebooks] == ["producer", "consumer"]
    assert pipeline.setup_cells_of(stages["consume"]) == ()  # the root's `imports` are the root's


@pytest.mark.slow
def test_kale_root_runs_locally(tmp_path, capsys):
    code, record = run_cli(capsys, "run", COMPOSE / "kale_root.ipynb", "-p", "factor", "2", "--store", tmp_path / "s")
    assert code == 0, record
    assert record["stages"]["final"]["metrics"] == {"mean": 5.0}  # [2, 4, 6] + 1


def describe_errors(capsys, name: str) -> list[str]:
    assert main(["validate", str(COMPOSE / name)]) == 1
    out = capsys.readouterr().out
    return [line for line in out.splitlines() if ": error: " in line]


def test_an_include_cycle_is_an_error_naming_the_notebooks(capsys):
    [line] = describe_errors(capsys, "cycle_a.ipynb")
    assert "[cycle_b.ipynb, cell 2]" in line and "[include-cycle]" in line
    assert "would include cycle_a.ipynb inside itself (cycle_a.ipynb → cycle_b.ipynb → cycle_a.ipynb)" in line


def test_a_missing_included_notebook_is_an_error(capsys):
    [line] = describe_errors(capsys, "missing_include.ipynb")
    assert "[cell 2] `notebook:nowhere.ipynb` includes nowhere.ipynb" in line and "no such file" in line
    assert "[include-missing]" in line
    assert main(["run", str(COMPOSE / "missing_include.ipynb"), "--store", "unused"]) != 0
    err = capsys.readouterr().err
    assert "nowhere.ipynb" in err and "Traceback" not in err


def write(path: Path, cells: list, metadata: dict | None = None) -> Path:
    out = []
    for cell in cells:
        tags, source, *meta = cell
        c = nbformat.v4.new_code_cell(source)
        c.metadata["tags"] = tags
        c.metadata.update(meta[0] if meta else {})
        out.append(c)
    nb = nbformat.v4.new_notebook(cells=out)
    nb.metadata.update(metadata or {})
    nbformat.write(nb, path)
    return path


def test_nested_untagged_and_held_code(tmp_path):
    """An untagged notebook is one stage; nested includes work; code below a reference joins the next stage."""
    write(tmp_path / "leaf.ipynb", [([], "base = 2")])  # no stage tags: one stage, named after it
    write(tmp_path / "middle.ipynb", [(["notebook:leaf.ipynb"], ""), (["stage:grow"], "grown = base * 10")])
    root = write(tmp_path / "root.ipynb", [
        (["stage:start"], "seed = 1"),
        (["notebook:middle.ipynb"], "# middle's stages"),
        ([], "held = grown + seed"),
        (["stage:end"], "print(held)"),
    ])
    pipeline = load(root)
    assert pipeline.ok, [p.describe() for p in pipeline.problems]
    assert pipeline.stage_names == ["start", "leaf", "grow", "end"]
    assert [n.path for n in pipeline.notebooks] == ["middle.ipynb", "leaf.ipynb"]
    assert pipeline.notebooks[1].parent == "middle.ipynb" and pipeline.notebooks[1].depth == 2
    end = pipeline.stage("end")
    assert [pipeline.cells[i].own_index for i in end.cells] == [2, 3]  # the held cell joined `end`
    assert end.inputs == (("grown", "grow"), ("seed", "start"))
    # with nothing to hold it, code below a reference is an error naming the cells
    write(tmp_path / "orphan.ipynb", [(["stage:a"], "x = 1"), (["notebook:leaf.ipynb"], ""), ([], "y = base")])
    [error] = load(tmp_path / "orphan.ipynb").errors
    assert error.code == "code-after-include" and "cell 3 below the `notebook:` cell 2" in error.message
    # a notebook without stage tags: its code above a reference runs before the included stages, below after
    write(tmp_path / "whole.ipynb", [([], "x = 1"), (["notebook:leaf.ipynb"], ""), ([], "y = base + x")])
    whole = load(tmp_path / "whole.ipynb")
    assert whole.ok, [p.describe() for p in whole.problems]
    assert whole.stage_names == ["whole", "leaf", "whole-2"]
    assert whole.stage("whole-2").inputs == (("base", "leaf"), ("x", "whole"))


def test_problems_in_an_included_notebook_name_it_and_its_cell(tmp_path):
    write(tmp_path / "bad.ipynb", [(["stage:a"], "y = undefined_thing"), (["stage:b"], "z = (")])
    root = write(tmp_path / "root.ipynb", [(["notebook:bad.ipynb"], "x = 1")])
    problems = {p.code: p for p in load(root).problems}
    assert problems["include-has-code"].notebook is None and problems["include-has-code"].cell == 0
    assert (problems["undefined-name"].notebook, problems["undefined-name"].cell) == ("bad.ipynb", 0)
    assert problems["syntax-error"].describe().startswith("[bad.ipynb, cell 2 line 1, stage 'b']")


@pytest.mark.slow
def test_a_map_stage_inside_an_included_notebook(tmp_path, capsys):
    write(tmp_path / "fan.ipynb", [(["stage:square", "map:numbers"], "squared = item * item")])
    root = write(tmp_path / "root.ipynb", [
        (["stage:make"], "numbers = [1, 2, 3]"),
        (["notebook:fan.ipynb"], ""),
        (["stage:total"], "import jupyter_pipeline as jp\njp.log_metric('sum', sum(squared))"),
    ])
    code, record = run_cli(capsys, "run", root, "--store", tmp_path / "s")
    assert code == 0, record
    assert record["stages"]["total"]["metrics"] == {"sum": 14}


def test_an_edit_to_an_included_notebook_changes_only_its_stages_and_dependents(tmp_path):
    shutil.copytree(COMPOSE, tmp_path / "compose")
    parent, child = tmp_path / "compose" / "parent.ipynb", tmp_path / "compose" / CHILD
    before = stage_keys(load(parent), {"scale": 2, "offset": 1})
    nb = nbformat.read(child, as_version=4)
    nb.cells[3].source += "  # edited"
    nbformat.write(nb, child)
    after = stage_keys(load(parent), {"scale": 2, "offset": 1})
    assert {name for name in before if before[name] != after[name]} == {"compute", "report"}
    nb.cells[1].source = "import math  # the child's setup, edited"
    nbformat.write(nb, child)
    again = stage_keys(load(parent), {"scale": 2, "offset": 1})
    assert {name for name in after if after[name] != again[name]} == {"child-prepare", "compute", "report"}


@pytest.mark.slow
def test_a_failing_stage_of_an_included_notebook_names_it(tmp_path, capsys):
    write(tmp_path / "bad.ipynb", [(["stage:check"], "x = 1"), ([], "raise ValueError('no good')")])
    root = write(tmp_path / "root.ipynb", [(["notebook:bad.ipynb"], "")])
    code, record = run_cli(capsys, "run", root, "--store", tmp_path / "s")
    assert code == 1 and record["stages"]["check"]["error_cell"] == 2
    assert record["stages"]["check"]["error"] == "ValueError: no good (cell 2 of bad.ipynb)"


def test_kale_orders_root_steps_by_reading_even_without_data(tmp_path):
    """Kale 2.3: `prepare`, a reference, `report` run in that order with no variable between them;
    two references with nothing between them stay parallel; our `notebook:PATH` keeps data edges only."""
    write(tmp_path / "sub.ipynb", [(["step:work"], "result = 42"), (["step:more"], "print(result)")])
    write(tmp_path / "other.ipynb", [(["step:side"], "print('independent')")])
    ref = {"notebook_path": "./sub.ipynb"}
    kale = write(tmp_path / "kale.ipynb", [
        (["step:prepare"], "print('preparing')"),
        (["notebook:sub"], "", ref),
        (["notebook:other"], "", {"notebook_path": "other.ipynb"}),
        (["step:report"], "print('done')"),
    ])
    stages = {s.name: s.depends_on for s in load(kale).stages}
    assert stages == {"prepare": (), "work": ("prepare",), "more": ("work",), "side": ("prepare",),
                      "report": ("more", "side")}
    native = write(tmp_path / "native.ipynb", [
        (["stage:prepare"], "print('preparing')"), (["notebook:sub.ipynb"], ""), (["stage:report"], "print('done')")])
    assert {s.name: s.depends_on for s in load(native).stages} == {"prepare": (), "work": (), "more": ("work",),
                                                                   "report": ()}


def test_an_included_notebooks_settings_apply_to_its_stages(tmp_path):
    write(tmp_path / "train.ipynb", [(["stage:fit"], "model = 1")],
          {"jupyter_pipeline": {"image": "registry.example/train:1", "packages": ["tabulate>=0.9"]}})
    write(tmp_path / "score.ipynb", [(["stage:fit"], "score = model + 1")])  # included twice below
    root = write(tmp_path / "root.ipynb", [
        (["stage:prep"], "x = 1"), (["notebook:train.ipynb"], ""), (["notebook:score.ipynb"], ""),
        (["notebook:score.ipynb"], ""), (["stage:end"], "print(score)")],
        {"jupyter_pipeline": {"packages": ["numpy"]}})
    pipeline = load(root)
    assert pipeline.ok, [p.describe() for p in pipeline.problems]
    # `fit` in three notebooks: each qualified by its notebook, the second copy of score.ipynb numbered
    assert pipeline.stage_names == ["prep", "train-fit", "score-fit", "score-2-fit", "end"]
    images = {s.name: s.options.image for s in pipeline.stages}
    assert images["train-fit"] == "registry.example/train:1" and images["prep"] is None and images["score-fit"] is None
    assert pipeline.settings["packages"] == ["numpy", "tabulate>=0.9"]
    # each copy reads the nearest `model`/`score` above it, as stages do
    assert pipeline.stage("score-2-fit").inputs == (("model", "train-fit"),)
    assert pipeline.stage("end").inputs == (("score", "score-2-fit"),)


def test_a_notebook_outside_the_folder_is_included_with_a_warning(tmp_path):
    (tmp_path / "shared").mkdir()
    (tmp_path / "project").mkdir()
    write(tmp_path / "shared" / "lib.ipynb", [(["stage:make"], "value = 3")])
    root = write(tmp_path / "project" / "root.ipynb", [(["notebook:../shared/lib.ipynb"], ""), (["stage:use"], "print(value)")])
    pipeline = load(root)
    assert pipeline.ok and pipeline.stage("make").folder == "../shared"
    [warning] = [p for p in pipeline.problems if p.severity == "warning"]
    assert warning.code == "include-outside-folder" and warning.cell == 0 and "../shared/lib.ipynb" in warning.message


def test_kale_metrics_cells_in_two_notebooks_stay_two_metrics_stages(tmp_path):
    write(tmp_path / "child.ipynb", [(["step:fit"], "score = 0.5"), (["pipeline-metrics"], "print(score)")])
    root = write(tmp_path / "root.ipynb", [
        (["notebook:child"], "", {"notebook_path": "child.ipynb"}),
        (["step:final"], "accuracy = score * 2"), (["pipeline-metrics"], "print(accuracy)")])
    pipeline = load(root)
    assert pipeline.ok, [p.describe() for p in pipeline.problems]
    metrics = {s.name: s.metrics_cell for s in pipeline.stages}
    assert metrics == {"fit": False, "child-pipeline-metrics": True, "final": False, "pipeline-metrics": True}
