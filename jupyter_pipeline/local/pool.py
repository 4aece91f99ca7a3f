"""Warm stage workers: ``python -m jupyter_pipeline.local.worker --serve`` processes started ahead of need.

Each worker imports papermill and starts its kernel as soon as it is spawned, then waits for
one job on stdin; the local runner keeps a few waiting so that a stage's process start, imports
and kernel start overlap with the stages running before it.

A worker's stdin stays open until the runner has read its result: the worker takes an early end
of input as its runner's death and stops with its kernel (``stageworker._watch_runner``), so killing
a runner, even with ``kill -9``, leaves no stage running behind it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

from ..stage.run import RESULT_PREFIX, STARTED_LINE, exit_description
from ..store.records import stage_key
from .zygote import Zygote, shared as shared_zygote

STAGEWORKER = "jupyter_pipeline.local.worker"

TERMINATE_GRACE_SECONDS = 5


class Worker:
    """One warm stage process (``stageworker --serve``): imports done and kernel started, waiting for a job."""

    def __init__(self, cmd: list[str], cwd: str, pass_fds: tuple[int, ...] = (), zygote: Zygote | None = None):
        self.stderr = tempfile.TemporaryFile(mode="w+")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if zygote is not None and zygote.ready.is_set() and cmd[:3] == [sys.executable, "-m", STAGEWORKER]:
            with contextlib.suppress(OSError):  # the zygote went away: start afresh instead
                self.proc = zygote.fork_worker(cmd[3:], cwd, env, self.stderr, pass_fds)
                return
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
            start_new_session=True, cwd=cwd, env=env, pass_fds=pass_fds,
        )

    @property
    def forked(self) -> bool:
        """Whether the zygote forked this worker (else it was started afresh)."""
        return not isinstance(self.proc, subprocess.Popen)

    def run(self, job: dict, on_started=None) -> dict:
        """Send the job; return its result as soon as the worker prints it.

        ``on_started()`` is called when the stage's first cell starts (its kernel is up).
        """
        # stdin stays open until the result is in (the worker's sign that we live), and is closed
        # whatever happens, a job that cannot be sent included: an idle worker ends (with its
        # kernel and its copy of the run's lease) once its input ends.
        with keeping(job) as job:
            try:
                if (unsent := self.send(job)) is not None:
                    threading.Thread(target=self._drain, daemon=True).start()
                    return unsent
                result = self.read_result(on_started)
            finally:
                self._close_stdin()
            if result is None:
                return self.ended_result(job)
        # The worker still shuts its kernel down; let that finish off this thread.
        threading.Thread(target=self._drain, daemon=True).start()
        return result

    def send(self, job: dict) -> dict | None:
        """Write the job to the worker; a failed result if it cannot be encoded (else None)."""
        try:
            line = json.dumps(job) + "\n"
        except (TypeError, ValueError) as exc:
            return {"status": "failed", "stage": job.get("stage"), "metrics": {},
                    "error": f"the stage's job could not be sent to its process: {exc}"}
        try:
            self.proc.stdin.write(line)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the worker died while waiting; its stderr says why
        return None

    def read_result(self, on_started=None) -> dict | None:
        """The result the worker prints next, or None if it exits without one."""
        for line in self.proc.stdout:
            if line.rstrip("\n") == STARTED_LINE and on_started is not None:
                on_started()
            elif line.startswith(RESULT_PREFIX):
                result = json.loads(line[len(RESULT_PREFIX):])
                if result.pop("kernel_died", False) and (words := self._stderr_tail()):
                    # The kernel shares this worker's stderr: its last words may say why it died.
                    result["error"] += f" (kernel stderr: {words})"
                return result
        self.proc.wait()
        return None

    def ended_result(self, job: dict | None = None) -> dict:
        """The failure of a worker that exited without a result (killed, say, by the out-of-memory killer),
        with the executed notebook as far as it was saved (see :func:`keeping`)."""
        how = exit_description(self.proc.returncode)
        result = {"status": "failed", "error": f"the stage process ended without a result ({how}): "
                                               f"{self._stderr_tail(default='no output')}", "metrics": {}}
        kept = (job or {}).get("keep_path")
        if kept and os.path.exists(kept):
            from ..store import pending
            from ..store.base import open_store

            store, gang = open_store(job["store"]), job.get("gang") or {}
            key = stage_key(job["run_id"], job["stage"], "output.ipynb", job.get("item"), replica=gang.get("rank"))
            if unwritten := pending.put_file(store, key, kept):
                result["error"] += f"; its executed notebook was not written: {unwritten}"
            result["output_notebook"] = store.uri(key)
        return result

    def _close_stdin(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.proc.stdin.close()

    def _drain(self) -> None:
        for _ in self.proc.stdout:
            pass
        self.proc.wait()
        self.stderr.close()

    def _stderr_tail(self, default: str = "") -> str:
        self.stderr.seek(0)
        lines = [ln for ln in self.stderr.read().strip().splitlines() if "WARNING" not in ln]
        return " ".join(lines[-3:]) or default

    def discard(self) -> None:
        self._close_stdin()  # an idle worker exits on end of input
        threading.Thread(target=self._drain, daemon=True).start()


@contextlib.contextmanager
def keeping(job: dict):
    """``job`` with a ``keep_path``, a file in a folder of the runner's where the worker saves the executed
    notebook as its cells run: if the worker is killed, that file is what ran. Removed afterwards."""
    folder = tempfile.mkdtemp(prefix="jp-keep-")
    try:
        yield {**job, "keep_path": os.path.join(folder, "output.ipynb")}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class WarmWorkers:
    """Keeps up to ``size`` stage processes started ahead of need, so each stage's process start,
    imports and kernel start overlap with the stages running before it."""

    def __init__(self, cmd: list[str], cwd: str, pass_fds: tuple[int, ...] = ()):
        self.cmd, self.cwd, self.pass_fds = cmd, cwd, pass_fds
        self._idle: list[Worker] = []
        self._lock = threading.Lock()
        self._wanted = 0
        self._closed = False
        self.zygote = shared_zygote() if cmd[:3] == [sys.executable, "-m", STAGEWORKER] else None
        if self.zygote is not None:
            self.zygote.when_ready(self._top_up)

    def ensure(self, count: int) -> None:
        """Keep ``count`` workers waiting. Until the zygote can fork them, only one is started
        afresh (a worker starting afresh costs as much CPU as the zygote's own start)."""
        with self._lock:
            self._wanted = count
        self._top_up()

    def _top_up(self) -> None:
        with self._lock:
            if self._closed:
                return
            forking = self.zygote is None or self.zygote.ready.is_set()
            while len(self._idle) < (self._wanted if forking else min(self._wanted, 1)):
                self._idle.append(self._new())

    def _new(self) -> Worker:
        return Worker(self.cmd, self.cwd, self.pass_fds, self.zygote)

    def take(self) -> Worker:
        with self._lock:
            if self._idle:
                return self._idle.pop(0)
        return self._new()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.discard()


def terminate(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(TERMINATE_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
