"""Validation: every problem reported at once, as data, with stage and cell."""

from __future__ import annotations

import pytest
from nbformat.v4 import new_code_cell, new_notebook

from jupyter_pipeline.exceptions import ValidationFailed
from jupyter_pipeline.parse import from_notebook, load


@pytest.mark.parametrize("name, code, cell, stage, text", [
    ("cycle", "cycle", 0, "a", "a → b → a"),
    ("unknown_after", "unknown-after", 1, "b", "after:nope"),
    ("orphan_cell", "orphan-cell", 1, None, "belongs to no stage"),
    ("syntax_error", "syntax-error", 0, "a", "line 2"),
    ("invalid_stage_name", "bad-tag", 0, "Bad Name", "not valid"),
    ("undefined_name", "undefined-name", 1, "b", "missing_thing"),
    ("defined_later", "defined-later", 0, "a", "later stage, 'b'"),
    ("parameters_not_literal", "parameter-not-literal", 0, None, "rate = compute_rate()"),
    ("unsavable_static", "unsavable-variable", 1, "use", "open file"),
    ("empty_stage", "empty-stage", 1, "b", "no code"),
])
def test_each_problem_fixture(fixture_nb, name, code, cell, stage, text):
    p = load(fixture_nb(name))
    found = [x for x in p.problems if x.code == code]
    assert len(found) == 1, p.problems
    problem = found[0]
    assert problem.cell == cell and problem.stage == stage
    assert text in problem.message
    expected_severity = "warning" if code == "empty-stage" else "error"
    assert problem.severity == expected_severity
    assert (not p.ok) == (expected_severity == "error")


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
