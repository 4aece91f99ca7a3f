"""Validation: every problem reported at once, as data, with stage and cell."""

from __future__ import annotations

import json

import pytest
from nbformat.v4 import new_code_cell, new_notebook

from jupyter_pipeline.exceptions import ValidationFailed
from jupyter_pipeline.notebook.parse import from_notebook, load


SEVERITY = {"empty-stage": "warning", "orphan-cell": "warning", "unknown-setting": "warning",
            "kale-unsupported": "warning", "whole-notebook": "info"}


@pytest.mark.parametrize("name, code, cell, stage, text", [
    ("cycle", "cycle", 0, "a", "a → b → a"),
    ("unknown_after", "unknown-after", 1, "b", "after:nope"),
    ("orphan_cell", "orphan-cell", 1, None, "leaves it out"),
    ("orphan_name", "orphan-name", 2, "b", "tag that cell `setup`"),
    ("syntax_error", "syntax-error", 0, "a", "line 2"),
    ("invalid_stage_name", "bad-tag", 0, "Bad Name", "not valid"),
    ("two_stage_names", "two-stage-names", 0, "one", "'stage:two'"),
    ("reopened_stage", "reopened-stage", 2, "a", "below stage 'b' (cell 2), which reads 'x'"),
    ("undefined_name", "undefined-name", 1, "b", "missing_thing"),
    ("defined_later", "defined-later", 0, "a", "later stage, 'b'"),
    ("parameters_not_literal", "parameter-not-literal", 0, None, "rate = compute_rate()"),
    ("unsavable_static", "unsavable-variable", 1, "use", "open file"),
    ("generator_across_stages", "unsavable-variable", 2, "use", "holds a generator (stage 'make')"),
    ("empty_stage", "empty-stage", 1, "b", "no code"),
    ("bad_setting", "bad-setting", None, None, "`metadata.jupyter_pipeline.retries` must be a whole number"),
    ("unknown_setting", "unknown-setting", None, None, "`metadata.jupyter_pipeline.retry` is not a setting"),
    ("invalid_cell", "invalid-cell", 1, None, 'write it as a list, like ["stage:b"]'),
    ("kale_unsupported", "kale-unsupported", None, None, "type 'clone'"),
    ("whole_notebook", "whole-notebook", None, "whole_notebook", "runs as one stage, 'whole_notebook'"),
])
def test_each_problem_fixture(fixture_nb, name, code, cell, stage, text):
    p = load(fixture_nb(name))
    found = [x for x in p.problems if x.code == code]
    assert len(found) == 1, p.problems
    problem = found[0]
    assert problem.cell == cell and problem.stage == stage
    assert text in problem.message
    expected_severity = SEVERITY.get(code, "error")
    assert problem.severity == expected_severity
    assert (not p.ok) == any(x.severity == "error" for x in p.problems)
    if expected_severity != "error":
        assert p.ok, p.problems


def test_star_import_makes_undefined_names_undecidable(fixture_nb):
    p = load(fixture_nb("star_import"))
    assert p.ok, p.problems


def test_all_problems_reported_together():
    n = new_notebook(cells=[new_code_cell("orphan = 1"), new_code_cell("x = (")])
    n.cells[1].metadata["tags"] = ["stage:Bad", "after:ghost"]
    n.cells.append(new_code_cell("y = nothing_defines_me"))
    p = from_notebook(n)
    assert {x.code for x in p.problems} >= {"orphan-cell", "syntax-error", "bad-tag", "unknown-after", "undefined-name"}


def test_no_stages_is_an_error():
    p = from_notebook(new_notebook(cells=[]))
    assert [x.code for x in p.errors] == ["no-stages"]


def test_three_stage_cycle_named_once():
    cells = [new_code_cell("a = c_val if False else 1"), new_code_cell("b = a"), new_code_cell("c_val = b")]
    for c, tags in zip(cells, (["stage:a", "after:c"], ["stage:b"], ["stage:c"])):
        c.metadata["tags"] = tags
    p = from_notebook(new_notebook(cells=cells))
    cycles = [x for x in p.problems if x.code == "cycle"]
    assert len(cycles) == 1
    assert "a → b → c → a" in cycles[0].message or "c → a → b → c" in cycles[0].message


def test_require_valid_raises_with_all_errors(fixture_nb):
    p = load(fixture_nb("undefined_name"))
    with pytest.raises(ValidationFailed, match="missing_thing") as info:
        p.require_valid()
    assert info.value.problems and "validate" in str(info.value)


def test_bad_option_values():
    c = new_code_cell("x = 1")
    c.metadata["tags"] = ["stage:a", "gpu:lots", "memory:8 gigs", "timeout:0"]
    p = from_notebook(new_notebook(cells=[c]))
    messages = " ".join(x.message for x in p.problems)
    assert "'lots' is not a whole number" in messages
    assert "not a Kubernetes quantity" in messages
    assert "≥ 1" in messages


def test_name_defined_only_in_a_skip_cell_is_explained():
    cells = [new_code_cell("x = 1"), new_code_cell("helper = 2"), new_code_cell("y = x + helper")]
    for c, tags in zip(cells, (["stage:a"], ["skip"], ["stage:b"])):
        c.metadata["tags"] = tags
    p = from_notebook(new_notebook(cells=cells))
    [problem] = p.errors
    assert problem.code == "undefined-name" and "cell 2 defines it but is tagged `skip`" in problem.message


def notebook(*cells, metadata=None):
    out = []
    for tags, source in cells:
        c = new_code_cell(source)
        c.metadata["tags"] = tags
        out.append(c)
    nb = new_notebook(cells=out)
    nb.metadata.update(metadata or {})  # may be schema-invalid on purpose
    return nb


@pytest.mark.parametrize("settings, words", [
    ({"retries": "2"}, "`metadata.jupyter_pipeline.retries` must be a whole number ≥ 0 (without quotes), not \"2\""),
    ({"timeout": "abc"}, "`metadata.jupyter_pipeline.timeout` must be a whole number ≥ 1"),
    ({"timeout": True}, "(a boolean)"),
    ({"cpu": "lots"}, "a Kubernetes quantity"),
    ({"labels": {"team": 1}}, "values are strings"),
    ({"volumes": [{"name": "data"}]}, "\"mount_path\""),
    ({"volumes": [{"name": "s", "mount_path": "/s", "new": True}]}, "Kubernetes quantity"),
    ({"store": "s3://AKIA:sup3r@bucket/x"}, "without credentials"),
    ({"s3_endpoint": "http://minio:sup3r@minio:9000"}, "without credentials"),
    (["a", "b"], "`metadata.jupyter_pipeline` must be an object of settings"),
    ("abc", "`metadata.jupyter_pipeline` must be an object of settings, not \"abc\" (a string)"),
])
def test_wrong_setting_types_are_validation_errors(settings, words):
    p = from_notebook(notebook((["stage:a"], "x = 1"), metadata={"jupyter_pipeline": settings}))
    [problem] = p.problems
    assert problem.code == "bad-setting" and words in problem.message, problem.message
    assert "sup3r" not in problem.message
    # the bad value is left out, so nothing downstream meets it
    assert p.stage("a").options.retries == 0 and p.stage("a").options.timeout is None
    assert not set(p.settings) & {"retries", "timeout", "store", "s3_endpoint", "volumes"}
    with pytest.raises(ValidationFailed, match="bad-setting|must be"):
        p.require_valid()


@pytest.mark.parametrize("raw, words", [
    ({"cell_type": "code", "metadata": {"tags": ["stage:a"]}, "outputs": []}, "has no `source` text"),
    ({"cell_type": "code", "metadata": {"tags": 5}, "source": "x = 1"}, "`metadata.tags` 5"),
    ({"cell_type": "code", "metadata": {"tags": ["stage:a", 7]}, "source": "x = 1"}, "tag 7 is not text"),
    ({"cell_type": "sql", "metadata": {}, "source": "x = 1"}, "cell_type 'sql'"),
    ({"cell_type": "code", "metadata": {}, "source": 12}, "not text (int)"),
])
def test_schema_invalid_cells_are_problems_not_crashes(tmp_path, raw, words):
    path = tmp_path / "bad.ipynb"
    path.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"id": "c0", **raw}]}))
    p = load(path)
    found = [x for x in p.problems if x.code == "invalid-cell"]
    assert len(found) == 1 and words in found[0].message and found[0].cell == 0, p.problems


def test_cell_metadata_that_is_not_an_object():
    from nbformat import NotebookNode

    nb = NotebookNode({"metadata": {}, "cells": [NotebookNode({"cell_type": "code", "metadata": None, "source": "x = 1"})]})
    [problem] = from_notebook(nb).problems[1:]  # after the whole-notebook note
    assert problem.code == "invalid-cell" and "`metadata` that is not an object" in problem.message


def test_unhashable_parameter_literal_is_one_clear_error():
    p = from_notebook(notebook((["parameters"], "table = {[1, 2]: 'a'}"), (["stage:a"], "x = table")))
    [problem] = p.errors
    assert problem.code == "parameter-not-literal" and "unhashable type: 'list'" in problem.message


def test_kernelspec_that_is_not_an_object_falls_back_to_python3():
    p = from_notebook(notebook((["stage:a"], "x = 1"), metadata={"kernelspec": "python3"}))
    assert p.ok and p.kernel_name == "python3"


def test_stage_reopened_below_a_stage_that_does_not_read_it_is_fine():
    p = from_notebook(notebook((["stage:a"], "x = 1"), (["stage:b"], "y = 2"), (["stage:a"], "z = x"),
                               (["stage:c"], "w = y + z")))
    assert p.ok, p.problems
    assert p.stage("a").cells == (0, 2)


@pytest.mark.parametrize("make, hint", [
    ("stream = (v for v in values)", "a generator"),
    ("def gen():\n    yield 1\nstream = gen()", "a generator"),
    ("def gen():\n    def inner():\n        yield 1\n    return [1]\nstream = gen()", None),  # inner yields
    ("stream = open('f.txt')", "an open file"),
    ("with open('f.txt') as stream:\n    pass", "an open file"),
    ("stream = threading.Lock()", "a lock"),
    ("stream = threading.Event()", "a lock"),
    ("stream = Event()", None),  # a user's own class, as far as the code shows
    ("stream = open('f.txt')\nstream = stream.read()", None),  # rebound: a string now
    ("stream = [1]", None),
])
def test_unsavable_values_seen_statically(make, hint):
    cells = [new_code_cell("import threading\nvalues = [1]"), new_code_cell(make), new_code_cell("x = stream")]
    for cell, tags in zip(cells, (["setup"], ["stage:make"], ["stage:use"])):
        cell.metadata["tags"] = tags
    found = [p for p in from_notebook(new_notebook(cells=cells)).problems if p.code == "unsavable-variable"]
    assert [hint in p.message for p in found] == ([True] if hint else [])


def test_a_later_cell_of_the_stage_rebinding_the_name_clears_it():
    cells = [new_code_cell("def gen():\n    yield 1\nstream = gen()"), new_code_cell("stream = list(stream)"),
             new_code_cell("x = stream")]
    for cell, tags in zip(cells, (["stage:make"], [], ["stage:use"])):
        cell.metadata["tags"] = tags
    assert from_notebook(new_notebook(cells=cells)).ok
