"""Faults of the local store and of the stage process itself: whatever ran is kept.

- The store stops taking writes mid-run (its folder replaced by a file, or a full disk: a small
  tmpfs filled up): the run ends within seconds with one message naming the store and the error;
  what the store did not take (the executed notebook, the final record) waits on this machine and
  is written once the store takes writes again, the record then reads interrupted, and ``resume``
  finishes the run.
- The stage process is killed (``kill -9``, as the out-of-memory killer does) after cells ran: the
  executed notebook keeps them, since it is saved as each cell finishes.

Every test ends with :func:`test_faults.assert_nothing_lost`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from jupyter_pipeline.local.runner import resume_run
from jupyter_pipeline.store import pending
from jupyter_pipeline.store.base import open_store
from jupyter_pipeline.store.records import RunState, StageState, load_run

from test_faults import EXE, HOLD, WRITE_PIDS, alive, assert_nothing_lost, executed_text, stage_pids, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

#: The goal is under 10 s (benchmarks/bench_faults.py measures it); this tells slow from hung.
STORE_FAULT_SECONDS = 30


class StoreFault:
    """Makes the store folder at ``path`` stop taking writes, then takes it back."""

    def __init__(self, kind: str, path: Path):
        self.kind, self.path = kind, path
        if kind == "full":
            path.mkdir()
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(path)], capture_output=True)
            if done.returncode:
                pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")

    def start(self) -> str:
        """Break the store; return the words of the error it now gives."""
        if self.kind == "replaced":  # the folder is replaced by a file: nothing can be created under it
            self.path.rename(self.path.with_name("store.away"))
            self.path.write_text("not a folder")
            return "Not a directory"
        with open(self.path / "filler", "wb") as f:  # fill the disk
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        return "No space left on device"

    def stop(self) -> None:
        if self.kind == "replaced":
            self.path.unlink()
            self.path.with_name("store.away").rename(self.path)
        else:
            (self.path / "filler").unlink()

    def close(self) -> None:
        if self.kind == "full":
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """Where writes the store did not take wait (the CLI and its stage processes inherit it)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("kind", ["replaced", "full"])
def test_a_store_that_stops_taking_writes_ends_the_run_keeps_its_notebooks_and_resume_finishes(kind, tmp_path, cache,
                                                                                                write_notebook):
    nb = write_notebook(tmp_path / "long.ipynb", [
        (["stage:first"], "a = 1"),
        (["stage:second"], WRITE_PIDS + "print('second began', flush=True)\n" + HOLD + "b = a + 1"),
        (["stage:third"], "c = b + 1"),
    ])
    fault = StoreFault(kind, tmp_path / "store")
    try:
        store = open_store(str(tmp_path / "store"))
        (tmp_path / "hold").touch()
        cli = subprocess.Popen([EXE, "run", str(nb), "--store", store.absolute_url()], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        kernel, worker = stage_pids(tmp_path)
        (run_id,) = [p.name for p in (tmp_path / "store" / "runs").iterdir()]
        time.sleep(0.3)  # let the print reach the notebook
        words = fault.start()
        broke = time.monotonic()
        (tmp_path / "hold").unlink()  # `second` now saves `b` into a store that takes no writes
        out, err = cli.communicate(timeout=STORE_FAULT_SECONDS * 2)
        assert time.monotonic() - broke < STORE_FAULT_SECONDS
        # One paragraph: the store, its error, what to do; no traceback, not "internal error".
        assert cli.returncode == 1, (out, err)
        said = " ".join(err.split())
        assert f"error: Run {run_id} stopped: The store {store.absolute_url()} does not take writes: {words}" in said
        assert f"jupyter-pipeline resume {run_id}" in said and "Traceback" not in err and "internal error" not in err
        wait_until(lambda: not alive(kernel) and not alive(worker), timeout=10, what="the stage processes to end")
        assert pending.waiting(store, f"runs/{run_id}/")  # the notebook and the record wait on this machine
        fault.stop()
        # The store takes writes again: the next reader writes what waited; the record reads interrupted.
        shown = subprocess.run([EXE, "runs", run_id, "--store", store.absolute_url(), "--json"],
                               capture_output=True, text=True, timeout=120)
        assert shown.returncode == 0, shown.stderr
        record = json.loads(shown.stdout, parse_constant=lambda word: pytest.fail(f"bare {word}"))
        assert record["status"] == "interrupted" and words in record["error"]
        # `second`'s code did not fail, the store did: it reads interrupted, with the store's error
        assert [record["stages"][s]["status"] for s in ("first", "second", "third")] == \
            ["succeeded", "interrupted", "interrupted"]
        assert words in record["stages"]["second"]["error"]
        assert not pending.waiting(store)
        stored = load_run(store, run_id)
        assert stored.status == RunState.INTERRUPTED and stored.owner is None
        assert "second began" in executed_text(store, stored, "second")  # what ran is kept
        assert_nothing_lost(store, stored, kernel, worker)
        resumed = resume_run(store, run_id)
        assert resumed.status == RunState.SUCCEEDED and resumed.stages["first"].reused
        assert resumed.stages["third"].status == StageState.SUCCEEDED
        assert_nothing_lost(store, resumed)
    finally:
        fault.close()


# -- the stage process is killed -------------------------------------------------------------------------
def test_a_killed_stage_process_keeps_the_executed_notebook_of_the_cells_that_ran(tmp_path, write_notebook):
    from jupyter_pipeline.local.runner import LocalRunner
    from jupyter_pipeline.notebook.parse import load

    from test_faults import HANG_SECONDS, in_background

    nb = write_notebook(tmp_path / "big.ipynb", [
        (["stage:big"], "print('first cell done:', 'x' * 1000, flush=True)"),
        ([], "print('second cell done', flush=True)"),
        ([], WRITE_PIDS + "time.sleep(120)"),
        (["stage:after"], "import math"),
    ])
    store = open_store(str(tmp_path / "store"))
    thread, result = in_background(lambda: LocalRunner(store, workers=1).run(load(nb)))
    kernel, worker = stage_pids(tmp_path)
    os.kill(worker, signal.SIGKILL)  # what the out-of-memory killer does to the process holding the outputs
    thread.join(HANG_SECONDS * 2)
    record = result["value"]
    big = record.stages["big"]
    assert big.status == StageState.FAILED and "ended without a result (killed by signal SIGKILL" in big.error
    executed = executed_text(store, record, "big")  # the cells that finished, with their outputs
    assert "first cell done: xxx" in executed and "second cell done" in executed
    assert record.stages["after"].status == StageState.SUCCEEDED  # independent: it ran after
    assert_nothing_lost(store, record, kernel, worker)


def test_a_jupyter_servers_run_whose_store_stops_taking_writes_reads_interrupted_once_it_is_back(tmp_path, cache,
                                                                                                 write_notebook):
    from jupyter_pipeline.notebook.parse import load
    from jupyter_pipeline.server.manager import RunManager

    nb = write_notebook(tmp_path / "long.ipynb", [
        (["stage:first"], "a = 1"),
        (["stage:second"], WRITE_PIDS + "print('second began', flush=True)\n" + HOLD + "b = a + 1"),
    ])
    (tmp_path / "hold").touch()
    fault = StoreFault("replaced", tmp_path / "store")
    store = open_store(str(tmp_path / "store"))
    manager = RunManager(store)  # what the server's handlers call
    run_id = manager.start(load(nb), {}, "local")
    kernel, worker = stage_pids(tmp_path)
    time.sleep(0.3)
    fault.start()
    (tmp_path / "hold").unlink()
    # The run ends; until the store is back the server answers from what it saw (the run's end).
    shown = wait_until(lambda: (r := manager.get(run_id))["status"] != "running" and r, timeout=STORE_FAULT_SECONDS,
                       what="the run to end")
    assert shown["status"] == "interrupted" and "does not take writes: Not a directory" in shown["error"]
    wait_until(lambda: not alive(kernel) and not alive(worker), timeout=10, what="the stage processes to end")
    fault.stop()
    record = manager.get(run_id)  # the store is back: what waited is written, the stored record is final
    assert record["status"] == "interrupted" and not pending.waiting(store)
    stored = load_run(store, run_id)
    assert stored.status == RunState.INTERRUPTED and stored.owner is None
    assert "second began" in executed_text(store, stored, "second")
    assert_nothing_lost(store, stored, kernel, worker)
    resumed = resume_run(store, run_id)
    assert resumed.status == RunState.SUCCEEDED
    assert_nothing_lost(store, resumed)


def test_resume_keeps_each_failed_attempts_notebook_and_error(tmp_path, write_notebook):
    from jupyter_pipeline.local.runner import run_pipeline

    nb = write_notebook(tmp_path / "flaky.ipynb", [
        (["stage:flaky"], "import pathlib\nfixed = pathlib.Path('fixed').exists()\nprint('fixed:', fixed, flush=True)\n"
                          "if not fixed:\n    raise ValueError('not fixed yet')\nx = 1"),
    ])
    store = open_store(str(tmp_path / "store"))
    failed = run_pipeline(nb, store=store)
    assert failed.status == RunState.FAILED
    (tmp_path / "fixed").touch()
    resumed = resume_run(store, failed.run_id)
    assert resumed.status == RunState.SUCCEEDED and "fixed: True" in executed_text(store, resumed, "flaky")
    [attempt] = [e for e in resumed.history if e["event"] == "attempt"]
    assert attempt["stage"] == "flaky" and attempt["attempt"] == 1 and attempt["status"] == "failed"
    assert "not fixed yet" in attempt["error"] and attempt["error_cell"] == 1
    kept = Path(attempt["output_notebook"])
    assert kept.is_file() and "fixed: False" in kept.read_text() and "not fixed yet" in kept.read_text()
    assert load_run(store, failed.run_id).to_json() == resumed.to_json()
    assert_nothing_lost(store, resumed)
