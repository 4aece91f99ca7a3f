"""Stage workers forked from the zygote: real forks, real stages, real exits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from jupyter_pipeline.local import zygote
from jupyter_pipeline.store.records import RunState
from jupyter_pipeline.local.runner import LocalRunner
from jupyter_pipeline.notebook.parse import load
from jupyter_pipeline.stage.run import exit_description
from jupyter_pipeline.local.pool import STAGEWORKER, Worker

pytestmark = pytest.mark.skipif(not zygote.available(), reason="workers are forked on Linux only")


@pytest.fixture(scope="module")
def ready_zygote():
    z = zygote.shared()
    assert z.ready.wait(60), "the zygote did not finish its imports"
    return z


def worker_cmd(cwd) -> list[str]:
    return [sys.executable, "-m", STAGEWORKER, "--serve", "--cwd", str(cwd), "--kernel", "python3"]


def test_a_forked_worker_reports_how_it_ended(ready_zygote, tmp_path):
    idle = Worker(worker_cmd(tmp_path), str(tmp_path), zygote=ready_zygote)
    assert idle.forked and idle.proc.pid != ready_zygote.proc.pid
    idle.proc.stdin.close()  # an idle worker exits on end of input, as a started one does
    assert idle.proc.wait(30) == 0

    killed = Worker(worker_cmd(tmp_path), str(tmp_path), zygote=ready_zygote)
    assert os.getpgid(killed.proc.pid) == killed.proc.pid  # a session of its own, signalled as a group
    os.killpg(killed.proc.pid, signal.SIGKILL)
    assert killed.proc.wait(30) == -signal.SIGKILL
    result = killed.run({"store": str(tmp_path), "run_id": "r", "stage": "s"})
    assert result["status"] == "failed" and exit_description(-signal.SIGKILL) in result["error"]


def test_forked_stages_see_the_runners_current_environment_and_folder(ready_zygote, tmp_path, monkeypatch,
                                                                      write_notebook):
    # Set after the zygote started: a forked worker must still pass it to its kernel.
    monkeypatch.setenv("JP_ZYGOTE_PROBE", "late value")
    (tmp_path / "nb").mkdir()
    (tmp_path / "nb" / "beside.txt").write_text("next to the notebook")
    kernel_facts = ("import os, numpy as np\n"
                    "parent = open(f'/proc/{os.getppid()}/cmdline').read()\n"
                    "forked = os.getppid() != int(os.environ['JPY_PARENT_PID'])  # not the worker's child\n"
                    "import pyarrow  # skipped by the workers, importable in their kernels\n")
    write_notebook(tmp_path / "nb" / "env.ipynb", [
        (["stage:probe"], "import os\nprobe = os.environ['JP_ZYGOTE_PROBE']\nbeside = open('beside.txt').read()\n"
                          + kernel_facts + "first_parent, first_random = parent, np.random.rand()"),
        (["stage:check"], "assert probe == 'late value' and beside == 'next to the notebook', (probe, beside)\n"
                          + kernel_facts
                          + "assert forked and 'jupyter_pipeline.local.forkserver' in parent and parent == first_parent\n"
                          "assert np.random.rand() != first_random  # each forked kernel has its own random state"),
    ])
    record = LocalRunner(str(tmp_path / "store")).run(load(str(tmp_path / "nb" / "env.ipynb")))
    assert record.status == RunState.SUCCEEDED, record.to_json()


def test_without_forking_workers_start_afresh(tmp_path, monkeypatch):
    monkeypatch.setenv(zygote.ENV_SWITCH, "0")
    assert zygote.shared() is None
    worker = Worker(worker_cmd(tmp_path), str(tmp_path), zygote=None)
    assert not worker.forked and isinstance(worker.proc, subprocess.Popen)
    worker.discard()
    assert worker.proc.wait(30) == 0


def test_the_zygote_ends_with_its_runner_process(tmp_path):
    script = ("from jupyter_pipeline.local import zygote\nimport sys, time\nz = zygote.shared()\nz.ready.wait(60)\n"
              "print(z.proc.pid, flush=True)\ntime.sleep(600)\n")
    runner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(runner.stdout.readline())
        os.kill(pid, 0)  # the zygote is up
        runner.kill()  # as the out-of-memory killer would: no atexit, no goodbye
        runner.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        assert not _alive(pid), "the zygote outlived its runner"
    finally:
        runner.kill()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"  # a zombie has ended; its parent died too
    except FileNotFoundError:
        return False
