"""The run-record lifecycle every target shares: new record, finish wording, snapshot, output links."""

from __future__ import annotations

from jupyter_pipeline.notebook.parse import load
from jupyter_pipeline.store.records import (
    RunState, StageState, failure_message, finish, link_outputs, new_record, snapshot, stage_key,
)
from jupyter_pipeline.store.base import open_store


def test_finish_names_the_failed_stages_the_same_way_for_every_target(fixture_nb, tmp_path):
    pipeline = load(fixture_nb("diamond"))
    record = new_record(pipeline, store=str(tmp_path), target="kfp-local", parameters={}, owner={"pid": 1})
    assert record.target == "kfp-local" and "-diamond-" in record.run_id and record.owner == {"pid": 1}
    assert list(record.stages) == [s.name for s in pipeline.stages] and record.edges
    assert all(r.status == StageState.PENDING for r in record.stages.values())
    for rec in record.stages.values():
        rec.status = StageState.SUCCEEDED
    assert finish(record).status == RunState.SUCCEEDED and record.owner is None and record.finished_at
    first, second = list(record.stages)[:2]
    record.stages[first].status = StageState.FAILED
    assert finish(record, error="kfp.local reported a failure").error == f"stage {first} failed"
    record.stages[second].status = StageState.FAILED
    assert failure_message(record) == f"stages {first}, {second} failed"
    for rec in record.stages.values():
        rec.status = StageState.SKIPPED
    assert finish(record, error="the pipeline stopped").error == "the pipeline stopped"
    assert finish(record, cancelled=True).status == RunState.CANCELLED


def test_snapshot_and_linked_outputs(fixture_nb, tmp_path):
    store = open_store(str(tmp_path))
    pipeline = load(fixture_nb("diamond"))
    snapshot(store, pipeline, "r1", compiled="yaml: text")
    assert store.get_bytes("runs/r1/pipeline.yaml") == b"yaml: text"
    assert store.get_json("runs/r1/pipeline.json")["stages"] and store.exists("runs/r1/notebook.ipynb")
    store.put_json(stage_key("r0", "load", "outputs.json"), {"x": {"type": "int"}, "y": {"run_id": "older"}})
    link_outputs(store, "r1", "load", "r0")
    assert store.get_json(stage_key("r1", "load", "outputs.json")) == {
        "x": {"type": "int", "run_id": "r0"}, "y": {"run_id": "older"}}
