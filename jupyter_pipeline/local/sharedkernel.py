"""Shared-kernel mode (``run --shared-kernel``): one kernel runs a run's stages one after another.

A fresh kernel per stage (the default) is what Kubeflow does, one pod per stage; it costs a
process and a kernel start per stage. In shared-kernel mode one worker process keeps one kernel
for the whole run and runs each stage's notebook in it, exactly as a fresh worker would (same
generated cells: inputs loaded and outputs saved through the savers), then empties the kernel's
namespace before the next stage: every global the stage defined goes, IPython's own names stay.

What the reset does not undo: imported modules and their state (a module-level cache, a
monkeypatch), random-number generator state, environment variables, the working directory,
open files and threads, GPU memory. A stage that needs a clean process runs in a fresh kernel:
``map:``, ``workers:`` and ``timeout:`` stages always do (see :func:`isolation_reason`), and so
does the retry of a stage that failed; after a failure the shared kernel is replaced.

This module is the runner side (:class:`SharedKernel`, one per run); the worker side is
``python -m jupyter_pipeline.local.worker --serve --shared`` (:func:`.stageworker.serve_shared`).
"""

from __future__ import annotations

import threading

from ..notebook.pipeline import Stage
from .pool import Worker, keeping
from .zygote import shared as shared_zygote

#: The mode names the run record carries (``kernel_mode``).
FRESH, SHARED = "fresh", "shared"


def isolation_reason(stage: Stage) -> str | None:
    """Why ``stage`` runs in a fresh kernel even in shared-kernel mode, or None if it may share."""
    options = stage.options
    if options.map_var:
        return "map: items run side by side, each in its own kernel"
    if options.workers > 1:
        return "workers: replicas are processes of their own"
    if options.timeout:
        return "timeout: stops the stage's process"
    return None


# -- runner side ------------------------------------------------------------------------------------
class SharedWorker(Worker):
    """A ``stageworker --serve --shared`` process: runs job after job in one kernel."""

    def run(self, job: dict, on_started=None) -> dict:
        with keeping(job) as job:
            if (unsent := self.send(job)) is not None:  # (stdin stays open: the next stage's job follows on it)
                return unsent  # failed: SharedKernel discards this worker and its kernel
            result = self.read_result(on_started)
            return self.ended_result(job) if result is None else result


class SharedKernel:
    """The shared kernel of one run: stages take turns in it; a failure replaces it."""

    def __init__(self, cmd: list[str], cwd: str, pass_fds: tuple[int, ...] = ()):
        self.cmd, self.cwd, self.pass_fds = [*cmd, "--shared"], cwd, pass_fds
        self.turn = threading.Lock()  # one stage at a time
        self._worker: SharedWorker | None = None
        self._closed = False

    def start(self) -> None:
        """Start the worker and its kernel now, ahead of the first stage."""
        with self.turn:
            self._current()

    def _current(self) -> SharedWorker:
        if self._worker is None or self._worker.proc.poll() is not None:
            self._worker = SharedWorker(self.cmd, self.cwd, self.pass_fds, shared_zygote())
        return self._worker

    def run(self, job: dict, on_proc) -> dict:
        """Run ``job`` in the shared kernel (waiting for its turn); ``on_proc(proc)`` is told the process."""
        with self.turn:
            if self._closed:
                return {"status": "cancelled", "error": "cancelled"}
            worker = self._current()
            on_proc(worker.proc)
            result = worker.run(job)
            if result.pop("not_run", False):  # the kernel was not reset after the last stage: use a new one
                worker.discard()
                worker = self._worker = SharedWorker(self.cmd, self.cwd, self.pass_fds, shared_zygote())
                on_proc(worker.proc)
                result = worker.run(job)
            if result["status"] != "succeeded":
                # Whatever the failed stage left half done must not reach the next one.
                worker.discard()
                self._worker = None
            return result

    def close(self) -> None:
        self._closed = True
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.discard()


