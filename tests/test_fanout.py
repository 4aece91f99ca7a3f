"""Fan-out stages (`map:VAR`): items run in parallel, outputs gathered in order, failed items resumed."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from jupyter_pipeline.stage import fanout
from jupyter_pipeline.notebook.parse import load
from jupyter_pipeline.store.records import parse_iso
from jupyter_pipeline.local.runner import resume_run, run_pipeline


def test_map_tags_parse(fixture_nb):
    p = load(fixture_nb("fanout"))
    assert p.ok, p.problems
    features = p.stage("features")
    o = features.options
    assert (o.map_var, o.map_chunks, o.map_as, o.parallelism) == ("rows", 8, "part", 2)
    assert dict(features.inputs) == {"rows": "make"}  # `part` is provided per item, not a missing name
    assert p.stage("greet").parameters == ("names",)


def test_map_source_problems(fixture_nb):
    p = load(fixture_nb("map_bad_source"))
    codes = {(x.code, x.stage) for x in p.problems}
    assert ("map-source", "a") in codes  # a setup variable is not data to map over
    assert ("undefined-name", "b") in codes


@pytest.mark.parametrize("value, chunks, expected", [
    ([1, 2, 3, 4, 5], None, [1, 2, 3, 4, 5]),
    ([1, 2, 3, 4, 5], 2, [[1, 2, 3], [4, 5]]),
    ([1, 2], 5, [[1], [2]]),
])
def test_item_split(value, chunks, expected):
    count = fanout.item_count(len(value), chunks)
    assert [fanout.item(value, i, chunks) for i in range(count)] == expected


def test_array_and_frame_chunks_cover_everything_once():
    arr = np.arange(1003).reshape(-1, 1)
    parts = [fanout.item(arr, i, 8) for i in range(8)]
    np.testing.assert_array_equal(np.concatenate(parts), arr)
    df = pd.DataFrame({"a": range(10)})
    assert [len(fanout.item(df, i, 3)) for i in range(3)] == [4, 3, 3]


@pytest.mark.slow
def test_chunked_map_equals_unchunked_code(fixture_nb, store_dir):
    # 4 kernel slots, so that the stage's own `parallelism:2` is what limits its items
    record = run_pipeline(fixture_nb("fanout"), store=store_dir, workers=4)
    assert record.status.value == "succeeded", record.to_json()
    features = record.stages["features"]
    assert len(features.items) == 8 and all(it["status"] == "succeeded" for it in features.items)
    assert features.metrics == {"rows": 125.0}
    # parallelism:2 — items overlapped, but never more than two at once
    spans = [(parse_iso(it["started_at"]), parse_iso(it["finished_at"])) for it in features.items]
    most = max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)
    assert most <= 2
    assert len(record.stages["greet"].items) == 3


@pytest.mark.slow
def test_failed_item_is_kept_and_resume_reruns_only_it(fixture_nb, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(fixture_nb("fanout_resume"), work / "fanout_resume.ipynb")
    (work / "fail.flag").write_text("1")
    store = str(tmp_path / "store")
    first = run_pipeline(work / "fanout_resume.ipynb", store=store, workers=2)
    square = first.stages["square"]
    assert square.status.value == "failed" and "item 2" in square.error
    assert [it["status"] for it in square.items] == ["succeeded", "succeeded", "failed", "succeeded"]
    assert square.items[2]["output_notebook"].endswith("items/2/output.ipynb")
    assert first.stages["total"].status.value == "skipped"
    kept = {i: square.items[i]["started_at"] for i in (0, 1, 3)}
    (work / "fail.flag").unlink()
    second = resume_run(store, first.run_id)
    assert second.status.value == "succeeded", second.to_json()
    items = second.stages["square"].items
    assert {i: items[i]["started_at"] for i in (0, 1, 3)} == kept  # not re-run
    assert items[2]["status"] == "succeeded"
    assert second.stages["total"].metrics == {"total": 1 + 4 + 9 + 16}  # gathered in item order
