"""Faults from what a run is given, one test per kind: parameters JSON cannot carry, jobs that cannot be
sent to a stage process, and REST requests that are bad input. Whatever the input, the answer is a
one-paragraph error (a 4xx with strict JSON over REST) and no process outlives it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from jupyter_pipeline.local.pool import STAGEWORKER, Worker

from test_faults import alive, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def children(pid: int) -> list[int]:
    """The pids of the processes whose parent is ``pid``."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


# -- item: a job the stage process cannot be sent ----------------------------------------------------
@pytest.mark.parametrize("value", [b"x", {1, 2}, 1j])
def test_a_job_that_cannot_be_sent_fails_the_stage_and_ends_its_process_and_kernel(value, tmp_path):
    # Started afresh (not forked), so its kernel is its child and can be seen ending.
    worker = Worker([sys.executable, "-m", STAGEWORKER, "--serve", "--cwd", str(tmp_path)], str(tmp_path))
    kernels = wait_until(lambda: children(worker.proc.pid), what="the worker's kernel to start")
    job = {"store": str(tmp_path / "store"), "run_id": "r", "stage": "s", "item": None, "parameters": {"x": value}}
    started = time.monotonic()
    result = worker.run(job)
    assert result["status"] == "failed" and "could not be sent to its process" in result["error"], result
    assert "is not JSON serializable" in result["error"]
    # The worker took end of input as "not needed": it stops its kernel and exits, freeing the run's lease.
    wait_until(lambda: worker.proc.poll() is not None and not any(alive(k) for k in kernels), timeout=15,
               what="the stage process and its kernel to end")
    assert time.monotonic() - started < 15
