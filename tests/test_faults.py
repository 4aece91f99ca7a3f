"""Faults in local runs, one test per kind; whatever the fault, nothing may be lost.

Every test ends by checking the same three things (:func:`assert_nothing_lost`): the run record is
final and is the one in the store, every stage that executed kept its executed notebook, and no
stage process (worker or kernel) outlives its run. Stages and the test coordinate through files in
the notebook's folder (the stages' working directory): a stage writes its kernel's and worker's
pids to ``pids``, and waits while ``hold`` exists.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from jupyter_pipeline.exceptions import PipelineError
from jupyter_pipeline.local.lease import Lease
from jupyter_pipeline.notebook.parse import load
from jupyter_pipeline.store.records import (
    RunRecord, RunState, StageRecord, StageState, load_run, parse_iso, save_run, stage_key
)
from jupyter_pipeline.local.lease import effective_status
from jupyter_pipeline.local.runner import LocalRunner, resume_run, run_pipeline
from jupyter_pipeline.store.base import open_store

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

EXE = str(Path(sys.executable).parent / "jupyter-pipeline")
#: Generous bound on how long a fault may take to end a stage: the goal is ~1 s and benchmarks/
#: measures it; this only tells a slow machine from a hang.
HANG_SECONDS = 30

WRITE_PIDS = ("import os, pathlib, time\n"  # the worker started the kernel (its parent, or the zygote forked it)
              "pathlib.Path('pids').write_text(f'{os.getpid()} {os.environ[\"JPY_PARENT_PID\"]}')\n")
HOLD = "while pathlib.Path('hold').exists():\n    time.sleep(0.05)\n"


def wait_until(condition, timeout: float = HANG_SECONDS, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def stage_pids(folder: Path) -> tuple[int, int]:
    """(kernel pid, worker pid) of the stage that wrote ``folder/pids``."""
    path = folder / "pids"
    text = wait_until(lambda: path.exists() and path.read_text().strip(), what="the stage to start")
    kernel, worker = map(int, text.split())
    return kernel, worker


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def in_background(fn):
    """Run ``fn()`` in a thread; returns (thread, result dict filled with "value" or "error")."""
    result: dict = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, result


def assert_nothing_lost(store, record: RunRecord, *pids: int) -> None:
    """The record is final and the one in the store; every executed stage kept its notebook; no process lives on."""
    assert record.status != RunState.RUNNING and record.finished_at
    assert load_run(store, record.run_id).to_json() == record.to_json()
    for name, rec in record.stages.items():
        assert rec.status.done, (name, rec.status)
        if rec.started_at and not rec.reused and rec.status != StageState.SKIPPED:
            key = stage_key(record.run_id, name, "output.ipynb")
            assert rec.output_notebook == store.uri(key) and store.exists(key), (name, rec.to_json())
    wait_until(lambda: not any(alive(pid) for pid in pids), timeout=10, what=f"processes {pids} to end")


def executed_text(store, record: RunRecord, stage: str) -> str:
    return store.get_bytes(stage_key(record.run_id, stage, "output.ipynb")).decode()


# -- stage and kernel faults -----------------------------------------------------------------------
def test_crashed_stage_process_fails_the_attempt_and_retries_apply(tmp_path, write_notebook):
    nb = write_notebook(tmp_path / "crash.ipynb", [
        (["stage:crashy", "retries:1"], "import pathlib\nfirst = not pathlib.Path('pids').exists()\n" + WRITE_PIDS
         + "if first:\n    time.sleep(120)\nv = 1"),
    ])
    store = open_store(str(tmp_path / "store"))
    thread, result = in_background(lambda: LocalRunner(store).run(load(nb)))
    kernel, worker = stage_pids(tmp_path)
    os.kill(worker, signal.SIGKILL)  # the stage's own process crashes (its kernel must follow it)
    thread.join(HANG_SECONDS * 2)
    record = result["value"]
    crashy = record.stages["crashy"]
    assert crashy.status == StageState.SUCCEEDED and crashy.attempts == 2, crashy.to_json()
    assert_nothing_lost(store, record, kernel, worker)


def test_kernel_death_fails_the_stage_within_seconds_and_retries_apply(tmp_path, write_notebook):
    nb = write_notebook(tmp_path / "dies.ipynb", [
        # (output still in the kernel's send queue when it dies is lost with it: let it go out first)
        (["stage:dies", "retries:1"], "import os, time\nprint('last words', flush=True)\ntime.sleep(0.5)\n"
                                      "open('died', 'a').write(f'{time.time()}\\n')\nos._exit(3)"),
        (["stage:fine"], "ok = 1"),
    ])
    store = open_store(str(tmp_path / "store"))
    record = run_pipeline(nb, store=store, workers=2)
    dies = record.stages["dies"]
    assert dies.status == StageState.FAILED and dies.attempts == 2, dies.to_json()
    assert "the kernel died (exit status 3)" in dies.error and "last words" in dies.error
    assert dies.error_cell == 1  # the source notebook's first cell, counted as JupyterLab does
    deaths = [float(t) for t in (tmp_path / "died").read_text().split()]
    assert len(deaths) == 2 and parse_iso(dies.finished_at).timestamp() - deaths[-1] < HANG_SECONDS
    assert record.stages["fine"].status == StageState.SUCCEEDED and record.status == RunState.FAILED
    assert "last words" in executed_text(store, record, "dies")
    assert_nothing_lost(store, record)


def test_killed_kernel_fails_its_stage_and_skips_what_depends_on_it(tmp_path, write_notebook):
    nb = write_notebook(tmp_path / "victim.ipynb", [
        (["stage:victim"], WRITE_PIDS + "print('working', flush=True)\ntime.sleep(120)\nv = 1"),
        (["stage:after"], "w = v + 1"),
    ])
    store = open_store(str(tmp_path / "store"))
    thread, result = in_background(lambda: LocalRunner(store).run(load(nb)))
    kernel, worker = stage_pids(tmp_path)
    time.sleep(0.3)  # let the print reach the notebook
    os.kill(kernel, signal.SIGKILL)  # what the out-of-memory killer does
    killed = time.monotonic()
    thread.join(HANG_SECONDS * 2)
    assert time.monotonic() - killed < HANG_SECONDS
    record = result["value"]
    victim = record.stages["victim"]
    assert victim.status == StageState.FAILED and "killed by signal SIGKILL" in victim.error, victim.error
    assert "working" in victim.error and victim.error_cell == 1
    assert record.stages["after"].status == StageState.SKIPPED
    assert "working" in executed_text(store, record, "victim")
    assert_nothing_lost(store, record, kernel, worker)


def test_timed_out_and_cancelled_stages_keep_their_executed_notebook(tmp_path, write_notebook):
    nb = write_notebook(tmp_path / "slow.ipynb", [
        (["stage:slow", "timeout:2"], "print('slow began', flush=True)\nimport time\ntime.sleep(120)"),
        (["stage:sleepy"], WRITE_PIDS + "print('sleepy began', flush=True)\ntime.sleep(120)"),
    ])
    store = open_store(str(tmp_path / "store"))
    runner = LocalRunner(store, workers=2)
    thread, result = in_background(lambda: runner.run(load(nb)))
    kernel, worker = stage_pids(tmp_path)
    wait_until(lambda: runner.record.stages["slow"].status.done, what="the timeout")
    runner.cancel()
    thread.join(HANG_SECONDS * 2)
    record = result["value"]
    assert record.status == RunState.CANCELLED
    assert record.stages["slow"].status == StageState.FAILED and "timed out after 2 s" in record.stages["slow"].error
    assert record.stages["sleepy"].status == StageState.CANCELLED
    assert "slow began" in executed_text(store, record, "slow")
    assert "sleepy began" in executed_text(store, record, "sleepy")
    assert_nothing_lost(store, record, kernel, worker)


# -- runner faults ---------------------------------------------------------------------------------
def test_killed_runner_leaves_no_orphans_and_its_run_resumes(tmp_path, write_notebook):
    nb = write_notebook(tmp_path / "long.ipynb", [
        (["stage:first"], "a = 1"),
        (["stage:second"], WRITE_PIDS + "print('second began', flush=True)\n" + HOLD + "b = a + 1"),
    ])
    (tmp_path / "hold").touch()
    store = open_store(str(tmp_path / "store"))
    cli = subprocess.Popen([EXE, "run", str(nb), "--store", store.absolute_url()], cwd=tmp_path,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kernel, worker = stage_pids(tmp_path)
    (run_id,) = [p.name for p in (tmp_path / "store" / "runs").iterdir()]
    time.sleep(0.3)
    cli.send_signal(signal.SIGKILL)
    cli.wait()
    # The stage's processes stop with their runner; until then the run counts as running.
    wait_until(lambda: not alive(kernel) and not alive(worker), timeout=10, what="the orphans to stop")
    record = wait_until(lambda: (r := effective_status(store, load_run(store, run_id))).status != RunState.RUNNING
                        and r, timeout=10, what="the lease to be released")
    assert record.status == RunState.INTERRUPTED and "resume" in record.error
    assert record.stages["first"].status == StageState.SUCCEEDED
    second = record.stages["second"]
    assert second.status == StageState.INTERRUPTED and second.output_notebook  # kept as far as it ran
    assert "second began" in executed_text(store, record, "second")
    assert not store.exists(stage_key(run_id, "second", "outputs.json"))  # the orphan wrote nothing
    (tmp_path / "hold").unlink()
    resumed = resume_run(store, run_id)
    assert resumed.status == RunState.SUCCEEDED and resumed.stages["first"].reused
    assert resumed.stages["second"].status == StageState.SUCCEEDED
    assert_nothing_lost(store, resumed, kernel, worker)


def test_a_held_lease_keeps_a_run_running_and_resume_refuses(tmp_path, monkeypatch):
    import jupyter_pipeline.local.runner as runner_mod

    store = open_store(str(tmp_path / "store"))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record = RunRecord(run_id="20260101-000000-held-0000", pipeline="held", notebook=str(tmp_path / "held.ipynb"),
                       store=store.url, stages={"only": StageRecord(status=StageState.RUNNING)},
                       owner={"host": os.uname().nodename, "pid": dead.pid})
    save_run(store, record)
    lease = Lease(store.absolute_url(), record.run_id)
    assert lease.acquire()  # as a dead runner's surviving stage process would
    try:
        assert effective_status(store, load_run(store, record.run_id)).status == RunState.RUNNING
        monkeypatch.setattr(runner_mod, "STOPPING_GRACE_SECONDS", 0.2)
        with pytest.raises(PipelineError, match=f"cannot be resumed yet.*{os.getpid()}"):
            LocalRunner(store).resume(record.run_id)
    finally:
        lease.release()
    assert effective_status(store, load_run(store, record.run_id)).status == RunState.INTERRUPTED


# -- store faults ----------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", ["down", "stalled"])
def test_store_failing_mid_stage_fails_the_stage_loses_nothing_and_the_run_resumes(fault, tmp_path, private_s3,
                                                                                    monkeypatch, write_notebook):
    monkeypatch.setenv("JUPYTER_PIPELINE_S3_ENDPOINT", private_s3.endpoint)  # stage kernels inherit it
    monkeypatch.setenv("JUPYTER_PIPELINE_S3_TIMEOUT", "2")  # a stalled request gives up after 2 s
    store = open_store(f"s3://jp-{os.urandom(6).hex()}/faults")
    nb = write_notebook(tmp_path / "stored.ipynb", [
        (["stage:first"], "a = 1"),
        (["stage:second"], WRITE_PIDS + HOLD + "b = a + 1"),
        (["stage:third"], "c = b + 1"),
    ])
    (tmp_path / "hold").touch()
    thread, result = in_background(lambda: LocalRunner(store).run(load(nb)))
    kernel, worker = stage_pids(tmp_path)
    private_s3.stop() if fault == "down" else private_s3.stall()
    (tmp_path / "hold").unlink()  # `second` now saves `b` into a store that does not answer
    # The kernel's few retries are spent within seconds; the worker (the executed notebook) and
    # the runner (the run record) keep trying until the store is back.
    time.sleep(4 if fault == "down" else 9)
    private_s3.start() if fault == "down" else private_s3.stall(False)
    thread.join(HANG_SECONDS * 3)
    record = result["value"]
    second = record.stages["second"]
    assert second.status == StageState.FAILED, second.to_json()
    assert private_s3.endpoint in second.error
    assert ("connection refused" if fault == "down" else "timed out") in second.error, second.error
    assert record.stages["first"].status == StageState.SUCCEEDED
    assert record.stages["third"].status == StageState.SKIPPED and record.status == RunState.FAILED
    assert_nothing_lost(store, record, kernel, worker)
    resumed = resume_run(store, record.run_id)
    assert resumed.status == RunState.SUCCEEDED and resumed.stages["first"].reused
    assert_nothing_lost(store, resumed)


# -- the Jupyter server ----------------------------------------------------------------------------
class JupyterServer:
    """A real Jupyter server with this extension, in a subprocess the test may kill."""

    def __init__(self, root: Path, store: Path):
        from plugin_s3 import free_port

        self.root, self.store, self.port, self.token = root, store, free_port(), os.urandom(8).hex()
        config = root.parent / "jupyter_server_config.json"
        config.write_text(json.dumps({
            # Only this extension (a faster start); root may run it (containers, CI).
            "ServerApp": {"jpserver_extensions": {"jupyter_pipeline.server": True, "jupyterlab": False,
                                                  "jupyter_lsp": False, "jupyter_server_terminals": False,
                                                  "notebook_shim": False},
                          "root_dir": str(root), "ip": "127.0.0.1", "port": self.port, "open_browser": False,
                          "allow_root": True},
            "IdentityProvider": {"token": self.token},
            "JupyterPipeline": {"store": str(store), "max_concurrent_runs": 1, "workers": 2},
        }))
        env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(root.parent / "runtime")}
        self.log = open(root.parent / "server.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "jupyter_server", f"--config={config}"], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(self._up, timeout=60, what="the Jupyter server to start")

    def _up(self) -> bool:
        assert self.proc.poll() is None, (self.root.parent / "server.log").read_text()
        try:
            return self.api("GET", "config")[0] == 200
        except OSError:
            return False

    def api(self, method: str, *parts: str, body=None) -> tuple[int, dict]:
        url = f"http://127.0.0.1:{self.port}/jupyter-pipeline/" + "/".join(parts)
        data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={"Authorization": f"token {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def run_to_end(self, path: str) -> dict:
        status, body = self.api("POST", "runs", body={"path": path, "target": "local"})
        assert status == 202, body
        return wait_until(lambda: (r := self.api("GET", "runs", body["run_id"])[1])["status"] != "running" and r,
                          what=f"run of {path} to end")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.close()


@pytest.fixture
def jupyter_server(tmp_path):
    (tmp_path / "root").mkdir()
    server = JupyterServer(tmp_path / "root", tmp_path / "store")
    yield server
    server.kill()


def test_jupyter_server_dead_kernels_free_their_slot_and_a_killed_server_leaves_resumable_runs(jupyter_server,
                                                                                               write_notebook):
    from jupyter_pipeline.server.manager import RunManager

    root = jupyter_server.root
    write_notebook(root / "dies.ipynb", [(["stage:dies"], "import os\nos._exit(1)")])
    write_notebook(root / "long.ipynb", [
        (["stage:first"], "a = 1"),
        (["stage:second"], WRITE_PIDS + HOLD + "b = a + 1"),
    ])
    # Runs whose kernel dies end, so they do not hold the server's only run slot.
    for _ in range(2):
        record = jupyter_server.run_to_end("dies.ipynb")
        assert record["status"] == "failed" and "the kernel died (exit status 1)" in record["stages"]["dies"]["error"]
    # The server is killed mid-run: its stage processes stop with it, and the run is resumable.
    (root / "hold").touch()
    status, body = jupyter_server.api("POST", "runs", body={"path": "long.ipynb", "target": "local"})
    assert status == 202, body
    kernel, worker = stage_pids(root)
    jupyter_server.kill()
    wait_until(lambda: not alive(kernel) and not alive(worker), timeout=10, what="the orphans to stop")
    store = open_store(str(jupyter_server.store))
    # (idle warm stage processes hold the run's lease too, until they see their runner gone)
    wait_until(lambda: not Lease(store.absolute_url(), body["run_id"]).held(), timeout=10, what="the lease")
    assert RunManager(store).recover() == 1  # what the next server start does
    record = load_run(store, body["run_id"])
    assert record.status == RunState.INTERRUPTED and record.stages["second"].status == StageState.INTERRUPTED
    (root / "hold").unlink()
    resumed = resume_run(store, body["run_id"])
    assert resumed.status == RunState.SUCCEEDED and resumed.stages["first"].reused
    assert_nothing_lost(store, resumed, kernel, worker)


def test_a_stopping_jupyter_server_marks_its_runs_interrupted_and_resumable(tmp_path, write_notebook):
    from jupyter_pipeline.server.manager import SERVER_STOPPED, RunManager

    nb = write_notebook(tmp_path / "long.ipynb", [
        (["stage:first"], "a = 1"),
        (["stage:second"], WRITE_PIDS + "print('second began', flush=True)\n" + HOLD + "b = a + 1"),
    ])
    (tmp_path / "hold").touch()
    store = open_store(str(tmp_path / "store"))
    manager = RunManager(store)
    run_id = manager.start(load(nb), {}, "local")
    kernel, worker = stage_pids(tmp_path)
    manager.shutdown()  # what the server does as it stops
    record = load_run(store, run_id)
    assert record.status == RunState.INTERRUPTED and record.error == SERVER_STOPPED and record.owner is None
    assert record.stages["first"].status == StageState.SUCCEEDED
    second = record.stages["second"]
    assert second.status == StageState.INTERRUPTED and second.output_notebook, second.to_json()
    (tmp_path / "hold").unlink()
    resumed = resume_run(store, run_id)
    assert resumed.status == RunState.SUCCEEDED and resumed.stages["first"].reused
    assert_nothing_lost(store, resumed, kernel, worker)
