"""``workers:N`` stages run locally as a gang of kernels on loopback: barrier, JAX collectives,
rank 0's outputs, every replica's notebook kept, failure of one stopping all, retries, validation."""

from __future__ import annotations

import threading
import time

import nbformat
import pytest

from jupyter_pipeline.stage import context
from jupyter_pipeline.exceptions import DistributedError
from jupyter_pipeline.notebook.parse import from_notebook, load
from jupyter_pipeline.store.records import parse_iso
from jupyter_pipeline.stage.replica import Distributed, distributed, rendezvous
from jupyter_pipeline.local.runner import run_pipeline
from jupyter_pipeline.stage.notebook import stage_notebook
from jupyter_pipeline.store.base import open_store
from jupyter_pipeline.notebook.tags import read_cell

from jupyter_pipeline.local.gang import free_ports


def replicas_of(record, stage):
    return {r["rank"]: r for r in record.stages[stage].replicas}


@pytest.mark.slow
def test_two_replicas_sum_with_jax_collectives_and_rank_0_values_are_the_outputs(fixture_nb, store_dir):
    record = run_pipeline(fixture_nb("gang_psum"), store=store_dir)
    # `check` asserts the psum over both replicas' shards (28.0), world size 2, two devices, and
    # that the values it received are rank 0's.
    assert record.status.value == "succeeded", record.to_json()
    psum = record.stages["psum"]
    assert psum.metrics == {"rank": 0}  # rank 1's log_metric is printed, not recorded
    assert sorted(psum.outputs) == ["devices", "rank_seen", "total", "world"]
    store = open_store(store_dir)
    replicas = replicas_of(record, "psum")
    assert set(replicas) == {0, 1} and all(r["status"] == "succeeded" for r in replicas.values())
    for rank, rep in replicas.items():
        key = f"runs/{record.run_id}/stages/psum/replicas/{rank}/output.ipynb"
        assert rep["output_notebook"] == store.uri(key)
        text = store.get_bytes(key).decode()
        assert f"rank {rank} of 2: part" in text and "total 28.0" in text
        timings = store.get_json(f"runs/{record.run_id}/stages/psum/replicas/{rank}/gang.json")
        assert timings["up"] <= timings["released"] <= timings["initialized"]
    assert psum.output_notebook == replicas[0]["output_notebook"]
    # The barrier released both replicas within moments of the later one coming up.
    ups = [store.get_json(f"runs/{record.run_id}/stages/psum/replicas/{r}/gang.json") for r in (0, 1)]
    assert max(t["released"] for t in ups) - max(t["up"] for t in ups) < 5


@pytest.mark.slow
def test_a_failing_replica_stops_the_others_and_fails_the_stage(fixture_nb, store_dir):
    record = run_pipeline(fixture_nb("gang_failing"), store=store_dir)
    boom = record.stages["boom"]
    assert record.status.value == "failed" and boom.status.value == "failed"
    assert boom.error.startswith("replica 1 of 2 failed: ValueError: replica one gives up")
    assert boom.error_cell == 2
    replicas = replicas_of(record, "boom")
    assert replicas[1]["status"] == "failed" and replicas[1]["error_cell"] == 2
    assert replicas[0]["status"] == "stopped" and "error" not in replicas[0]
    # Rank 0 sleeps 120 s; it was stopped as soon as rank 1 failed.
    assert (parse_iso(boom.finished_at) - parse_iso(boom.started_at)).total_seconds() < 60
    store = open_store(store_dir)
    assert store.exists(f"runs/{record.run_id}/stages/boom/replicas/1/output.ipynb")


@pytest.mark.slow
def test_retries_restart_every_replica_together(fixture_nb, store_dir, tmp_path):
    marker = tmp_path / "first-attempt-failed"
    record = run_pipeline(fixture_nb("gang_retry"), {"marker": str(marker)}, store=store_dir)
    flaky = record.stages["flaky"]
    assert record.status.value == "succeeded", flaky.error
    assert marker.exists() and flaky.attempts == 2
    assert [r["status"] for r in flaky.replicas] == ["succeeded", "succeeded"]


@pytest.mark.slow
def test_timeout_stops_every_replica(tmp_path, write_notebook, store_dir):
    path = write_notebook(tmp_path / "slow_gang.ipynb", [(["stage:slow", "workers:2", "timeout:2"],
                                                          "import time\ntime.sleep(60)")])
    record = run_pipeline(path, store=store_dir)
    slow = record.stages["slow"]
    assert slow.status.value == "failed" and slow.error == "timed out after 2 s (tag timeout:); all 2 replicas were stopped"
    assert [r["status"] for r in slow.replicas] == ["stopped", "stopped"]
    assert (parse_iso(slow.finished_at) - parse_iso(slow.started_at)).total_seconds() < 40


@pytest.mark.parametrize("name, code, severity, text", [
    ("workers_with_map", "workers-with-map", "error", "both `workers:2` and `map:items`"),
    ("workers_one", "bad-workers", "error", "at least 2 workers"),
    ("workers_without_distribution", "workers-without-distribution", "warning", "initialize_keras()"),
    ("workers_single_node_volume", "workers-single-node-volume", "warning",
     "stage 'train' runs on 2 workers, each mounting volume 'scratch' at /scratch, whose claim is made per run with "
     "access mode ReadWriteOnce: only pods on one node can mount it"),
])
def test_validation_of_workers_stages(fixture_nb, name, code, severity, text):
    p = load(fixture_nb(name))
    [problem] = [x for x in p.problems if x.code == code]
    assert problem.severity == severity and text in problem.message
    assert problem.stage is not None and problem.cell is not None
    assert not any(x.code.startswith("workers") for x in load(fixture_nb("gang_psum")).problems)


def test_magic_and_tag_spellings_agree():
    spec, _ = read_cell([], "%%stage train --workers 3 --gpu 1\nx = 1")
    assert spec.options == {"workers": 3, "gpu": 1}
    spec, _ = read_cell(["stage:train", "workers:two"], "x = 1")
    assert [code for code, _ in spec.problems] == ["bad-workers"]


def test_stage_notebook_joins_before_any_user_cell_and_leaves_after(fixture_nb):
    pipeline = load(fixture_nb("gang_psum"))
    kinds = [c.metadata["jupyter_pipeline"]["kind"] for c in stage_notebook(pipeline, "psum").cells]
    assert kinds.index("gang-join") < kinds.index("setup") < kinds.index("user") < kinds.index("gang-leave")
    assert kinds[-2:] == ["outputs", "gang-end"]
    plain = [c.metadata["jupyter_pipeline"]["kind"] for c in stage_notebook(pipeline, "make").cells]
    assert not any(k.startswith("gang") for k in plain)


def test_distributed_outside_a_workers_stage_is_rank_0_of_1():
    assert distributed() == Distributed(0, 1, None)
    assert distributed().shard([1, 2, 3]) == [1, 2, 3]
    context.activate("/tmp/none", "run", "train", gang={"rank": 2, "world_size": 3, "coordinator": "h:1"})
    try:
        dist = distributed()
        assert (dist.rank, dist.world_size, dist.coordinator, dist.is_primary) == (2, 3, "h:1", False)
        # Equal parts for every replica: the remainder (10 = 3 * 3 + 1) is left out.
        assert dist.shard(list(range(10))) == [6, 7, 8]
        assert dist.shard(list(range(10)), "abcdefghij") == ([6, 7, 8], "ghi")
    finally:
        context._active = None


def test_rendezvous_releases_all_at_once_and_times_out_naming_the_missing():
    [port] = free_ports(1)
    released = {}

    def member(rank, delay):
        time.sleep(delay)
        rendezvous(rank, 3, f"127.0.0.1:{port}", bind="127.0.0.1", timeout=20)
        released[rank] = time.monotonic()

    threads = [threading.Thread(target=member, args=(r, d)) for r, d in ((1, 0), (0, 0.3), (2, 0.8))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(released) == {0, 1, 2} and max(released.values()) - min(released.values()) < 0.5

    [port] = free_ports(1)
    with pytest.raises(DistributedError, match=r"replica\(s\) 2 of 3 did not come up within 1 s"):
        follower = threading.Thread(target=lambda: _quietly(rendezvous, 1, 3, f"127.0.0.1:{port}", timeout=3))
        follower.start()
        try:
            rendezvous(0, 3, f"127.0.0.1:{port}", bind="127.0.0.1", timeout=1)
        finally:
            follower.join()
    with pytest.raises(DistributedError, match="could not reach rank 0"):
        rendezvous(1, 2, f"127.0.0.1:{port}", timeout=0.5)


def _quietly(fn, *args, **kw):
    try:
        fn(*args, **kw)
    except DistributedError:
        pass


def test_workers_stage_on_whole_pipeline_json():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("%%stage train --workers 2\nimport jax")])
    stage = from_notebook(nb).stages[0]
    assert stage.to_json()["options"]["workers"] == 2


def test_distributed_digits_example_is_the_example_with_train_on_two_workers(tmp_path):
    import runpy
    from pathlib import Path

    # Not `from conftest import ROOT`: with the whole suite collected, `conftest` may be tests/ui's.
    ROOT = Path(__file__).resolve().parent.parent
    script = runpy.run_path(str(ROOT / "examples/digits/make_distributed.py"))
    written = script["main"](tmp_path / "digits_distributed.ipynb")
    assert written.read_text() == (ROOT / "examples/digits/digits_distributed.ipynb").read_text(), \
        "run examples/digits/make_distributed.py"
    pipeline = load(written)
    assert pipeline.ok and not pipeline.problems, pipeline.problems
    train = pipeline.stage("train")
    assert (train.options.workers, train.options.gpu) == (2, 1)
    assert [s.name for s in pipeline.stages] == [s.name for s in load(ROOT / "examples/digits/digits.ipynb").stages]
