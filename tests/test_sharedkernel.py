"""Shared-kernel mode with real kernels: same values as fresh kernels, no leaked globals, failures isolated."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from jupyter_pipeline.notebook.parse import load
from jupyter_pipeline.local.runner import LocalRunner
from jupyter_pipeline.stage.io import load_entry
from jupyter_pipeline.store.base import open_store

pytestmark = pytest.mark.slow

CHAIN = [
    (["setup"], "import numpy as np"),
    (["stage:first"], "a = 2\narr = np.arange(5) * a\nsecret = 'only in first'"),
    (["stage:second"], "b = a + 1\ntotal = int(arr.sum()) + b"),
    # `secret` is named only in a string, so no stage receives it: it must not reach `third`.
    (["stage:third"], "assert 'secret' not in globals(), 'a global of stage first leaked'\n"
                      "assert 'a' not in globals(), 'a global of stage first leaked'\n"
                      "c = total * 2"),
    (["stage:last"], "result = {'c': c, 'b': b}"),
]


def values(store, record, stage: str) -> dict:
    index = store.get_json(f"runs/{record.run_id}/stages/{stage}/outputs.json")
    return {name: load_entry(store, record.run_id, stage, entry) for name, entry in index.items()}


def test_chain_passes_the_same_values_in_both_modes(tmp_path, store_dir, write_notebook):
    pipeline = load(write_notebook(tmp_path / "chain.ipynb", CHAIN))
    store = open_store(store_dir)
    shared = LocalRunner(store, shared_kernel=True).run(pipeline)
    fresh = LocalRunner(store).run(pipeline)
    assert shared.status.value == "succeeded", {n: s.error for n, s in shared.stages.items()}
    assert fresh.status.value == "succeeded", {n: s.error for n, s in fresh.stages.items()}
    assert (shared.kernel_mode, fresh.kernel_mode) == ("shared", "fresh")
    assert store.get_json(f"runs/{shared.run_id}/run.json")["kernel_mode"] == "shared"
    for stage in ("first", "second", "third"):
        ours, theirs = values(store, shared, stage), values(store, fresh, stage)
        assert ours.keys() == theirs.keys() and ours
        for name in ours:
            assert repr(ours[name]) == repr(theirs[name]) and type(ours[name]) is type(theirs[name])
    assert shared.stages["third"].outputs == ["c"]


def test_a_failing_stage_keeps_its_notebook_and_skips_what_follows(fixture_nb, store_dir):
    # Through the CLI, so that --shared-kernel is seen to reach the runner.
    exe = str(Path(sys.executable).parent / "jupyter-pipeline")
    proc = subprocess.run([exe, "run", str(fixture_nb("failing_stage")), "--store", store_dir, "--shared-kernel",
                           "--workers", "1", "--json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    record = json.loads(proc.stdout)
    assert record["kernel_mode"] == "shared"
    states = {name: rec["status"] for name, rec in record["stages"].items()}
    assert states == {"start": "succeeded", "broken": "failed", "after_broken": "skipped", "independent": "succeeded"}
    broken = record["stages"]["broken"]
    assert "ValueError: boom in broken" in broken["error"] and broken["error_cell"] == 2
    out = open_store(store_dir).get_bytes(f"runs/{record['run_id']}/stages/broken/output.ipynb").decode()
    assert "boom in broken" in out


def test_a_kernel_that_cannot_be_reset_is_replaced_before_the_next_stage(tmp_path, store_dir, write_notebook):
    pipeline = load(write_notebook(tmp_path / "breaks_reset.ipynb", [
        (["stage:first"], "x = 1\nget_ipython = None  # the reset calls get_ipython(): it fails after this stage"),
        (["stage:second"], "y = x + 1"),
    ]))
    record = LocalRunner(store_dir, shared_kernel=True).run(pipeline)
    assert record.status.value == "succeeded", {n: s.error for n, s in record.stages.items()}


def test_reset_keeps_ipython_names_and_drops_the_stage_globals():
    from jupyter_core.utils import run_sync

    from jupyter_pipeline.local.worker import _reset, _shell_client
    from jupyter_pipeline.local.kernel import start_kernel

    with tempfile.TemporaryDirectory() as sockets:
        km = start_kernel("python3", None, sockets)
        kc = _shell_client(km)
        try:
            def run(code: str) -> dict:
                msg_id = kc.execute(code, user_expressions={"v": "sorted(k for k in globals() if not k.startswith('_'))"})
                while (reply := kc.get_shell_msg(timeout=60))["parent_header"]["msg_id"] != msg_id:
                    pass
                return reply["content"]

            before = run("pass")["user_expressions"]["v"]["data"]["text/plain"]
            run("x = 1\nexit = 'rebound'\nx")  # a global, a rebound IPython name, an Out entry
            _reset(kc, km)
            after = run("pass")
            assert after["user_expressions"]["v"]["data"]["text/plain"] == before
            assert run("assert callable(exit) and not Out")["status"] == "ok"
        finally:
            kc.stop_channels()
            run_sync(km.shutdown_kernel)(now=True)
