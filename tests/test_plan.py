"""Planning: which stages run, which reuse earlier results or keep their own, and why (no kernels)."""

from __future__ import annotations

import pytest

from jupyter_pipeline import plan
from jupyter_pipeline.notebook.parse import load
from jupyter_pipeline.plan import Action
from jupyter_pipeline.store.records import RunRecord, StageState, new_record
from jupyter_pipeline.stagecache import stage_fingerprints

CHAIN = [
    (["parameters"], "n = 1\nm = 2"),
    (["stage:load"], "data = list(range(10))"),
    (["stage:scale"], "scaled = [x * n for x in data]"),
    (["stage:total"], "total = sum(scaled)"),
    (["stage:report", "cache:off"], "print(total, m)"),
]


@pytest.fixture
def chain(tmp_path, write_notebook):
    """load -> scale (uses n) -> total -> report (cache:off, uses m)."""
    return load(write_notebook(tmp_path / "chain.ipynb", CHAIN))


def finished_run(pipeline, values: dict, run_id: str, **states: StageState) -> RunRecord:
    """A record as the runner leaves it: every stage succeeded (unless ``states`` says otherwise), keyed."""
    record = new_record(pipeline, store="file:///store", target="local", parameters=values, run_id=run_id)
    for name, fp in stage_fingerprints(pipeline, values).items():
        rec = record.stages[name]
        rec.status = states.get(name, StageState.SUCCEEDED)
        rec.cache_key, rec.fingerprint = fp["key"], {k: v for k, v in fp.items() if k != "key"}
    return record


def actions(p: plan.Plan) -> dict[str, tuple[str, str | None]]:
    return {name: (d.action.value, d.why) for name, d in p.decisions.items()}


def test_a_plain_run_runs_every_stage_and_gives_no_reason(chain):
    p = plan.fresh(chain)
    assert p.to_run == ["load", "scale", "total", "report"]
    assert all(d.why is None and d.reused_from is None for d in p.decisions.values())


def test_incremental_with_no_earlier_run_runs_everything_and_says_why(chain):
    p = plan.incremental(chain, stage_fingerprints(chain, {"n": 1, "m": 2}), [], lambda run, stage: True)
    assert actions(p) == {
        "load": ("run", "no earlier run of this notebook has it"),
        "scale": ("run", "no earlier run of this notebook has it"),
        "total": ("run", "no earlier run of this notebook has it"),
        "report": ("run", "tagged cache:off"),
    }


def test_incremental_reuses_unchanged_stages_and_names_what_changed(chain):
    values = {"n": 1, "m": 2}
    first = finished_run(chain, values, "run-1")
    same = plan.incremental(chain, stage_fingerprints(chain, values), [first], lambda run, stage: True)
    assert same.to_run == ["report"]
    assert same["load"].why == "unchanged since run run-1"
    assert (same["total"].source_run, same["total"].reused_from, same["total"].earlier) == \
        ("run-1", "run-1", first.stages["total"])
    assert same.reuses("scale") and not same.reuses("report")

    changed = plan.incremental(chain, stage_fingerprints(chain, {"n": 3, "m": 2}), [first], lambda run, stage: True)
    assert actions(changed) == {
        "load": ("reuse", "unchanged since run run-1"),
        "scale": ("run", "parameter n 1 → 3"),
        "total": ("run", "upstream stage scale changed"),
        "report": ("run", "tagged cache:off"),
    }


def test_incremental_needs_the_saved_outputs_and_a_success(chain):
    values = {"n": 1, "m": 2}
    first = finished_run(chain, values, "run-1", scale=StageState.FAILED)
    p = plan.incremental(chain, stage_fingerprints(chain, values), [first],
                         lambda run, stage: stage != "load")
    assert actions(p)["load"] == ("run", "the earlier outputs are not in the store")
    assert actions(p)["scale"] == ("run", "it did not succeed last time (failed)")
    # each stage is judged by its own record: total succeeded in run-1 with the same key
    assert p["total"].action == Action.REUSE


def test_incremental_takes_the_newest_match_and_the_run_that_computed_it(chain):
    values = {"n": 1, "m": 2}
    first = finished_run(chain, values, "run-1")
    second = finished_run(chain, values, "run-2")
    second.stages["load"].reused_from = "run-1"  # run-2 reused load from run-1
    p = plan.incremental(chain, stage_fingerprints(chain, values), [second, first], lambda run, stage: True)
    assert (p["load"].source_run, p["load"].reused_from, p["load"].why) == ("run-2", "run-1", "unchanged since run run-2")
    assert (p["scale"].source_run, p["scale"].reused_from) == ("run-2", "run-2")


def test_resume_reruns_what_did_not_succeed_and_everything_downstream(chain):
    record = finished_run(chain, {"n": 1, "m": 2}, "run-1", scale=StageState.FAILED, total=StageState.SKIPPED,
                          report=StageState.SKIPPED)
    p = plan.resume(chain, record, lambda stage: {"data"})
    assert actions(p) == {
        "load": ("keep", "it succeeded in run run-1"),
        "scale": ("run", "it did not succeed (failed)"),
        "total": ("run", "it did not succeed (skipped)"),
        "report": ("run", "it did not succeed (skipped)"),
    }
    edited = finished_run(chain, {"n": 1, "m": 2}, "run-2", load=StageState.INTERRUPTED)
    assert actions(plan.resume(chain, edited, lambda stage: set()))["total"] == ("run", "upstream stage scale re-runs")


def test_resume_reruns_a_kept_stage_that_did_not_save_what_a_rerun_stage_needs(chain):
    record = finished_run(chain, {"n": 1, "m": 2}, "run-1", scale=StageState.FAILED)
    del record.stages["report"]  # a stage added to the notebook since
    saved = {"load": set(), "scale": set(), "total": {"total"}}
    p = plan.resume(chain, record, lambda stage: saved[stage])
    assert actions(p) == {
        "load": ("run", "stage scale needs data, which it did not save"),
        "scale": ("run", "it did not succeed (failed)"),
        "total": ("run", "upstream stage scale re-runs"),
        "report": ("run", "run run-1 has no record of it"),
    }


def test_sweeps_share_the_stages_whose_key_no_variant_changes(tmp_path, write_notebook):
    path = write_notebook(tmp_path / "sweep.ipynb", [
        (["parameters"], "a = 1"),
        (["stage:prep", "after:late"], "base = 10"),  # after a stage further down the notebook
        (["stage:late"], "note = 'x'"),
        (["stage:score"], "score = base * a"),
        (["stage:cold", "cache:off"], "cold = base + 1"),
    ])
    pipeline = load(path)
    variants = plan.variants(pipeline, {"a": ["1", "2"]})
    assert variants == [{"a": 1}, {"a": 2}]
    assert plan.shared_stages(pipeline, variants) == ["late", "prep"]  # upstream first; score uses a
    assert plan.shared_stages(pipeline, variants[:1]) == ["late", "prep", "score"]
