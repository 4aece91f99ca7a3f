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

Worker side (``python -m jupyter_pipeline.stagerun --serve --shared``): :func:`serve`. Runner
side: :class:`SharedKernel`, one per run.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import sys
import tempfile
import threading
import time

from .pipeline import Stage
from .workers import Worker

#: The mode names the run record carries (``kernel_mode``).
FRESH, SHARED = "fresh", "shared"

#: Run in the kernel between stages: drop every global but IPython's own (``user_ns_hidden``),
#: put back any of those a stage rebound, and empty the output cache (``Out``, ``_``, ``_3``).
#: ``%reset -f`` does the same and more (history, aliases, a full ``gc.collect``) at several
#: times the cost.
RESET_CODE = (
    "def _jp_reset(ip=get_ipython()):\n"
    "    ns, hidden = ip.user_ns, ip.user_ns_hidden\n"
    "    for name in [n for n in ns if n not in hidden]:\n"
    "        del ns[name]\n"
    "    ns.update(hidden)\n"
    "    ip.displayhook.flush()\n"
    "_jp_reset()  # which deletes itself too\n"
)


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
    """A ``stagerun --serve --shared`` process: runs job after job in one kernel."""

    def run(self, job: dict, on_started=None) -> dict:
        self.send(job)  # stdin stays open: the next stage's job follows on it
        result = self.read_result(on_started)
        return self.ended_result() if result is None else result


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
            self._worker = SharedWorker(self.cmd, self.cwd, self.pass_fds)
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
                worker = self._worker = SharedWorker(self.cmd, self.cwd, self.pass_fds)
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


# -- worker side ------------------------------------------------------------------------------------
def _read_jobs(jobs: queue.Queue, busy: threading.Event, km) -> None:
    """Read job lines from stdin into ``jobs``; None at end of input, when the runner is done.

    End of input while a stage runs means the runner died (it keeps the pipe open until it has
    the result): the stage is stopped as a fresh worker's would be (``stagerun._watch_runner``).
    """
    from .stagerun import EXIT_RUNNER_GONE, ORPHAN_SAVE_SECONDS, _kill_kernel

    for line in sys.stdin:
        if line.strip():
            busy.set()  # before the job is queued: the runner waits for its result from here on
            jobs.put(json.loads(line))
    if busy.is_set():
        _kill_kernel(km)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(ORPHAN_SAVE_SECONDS)
        os._exit(EXIT_RUNNER_GONE)
    jobs.put(None)


def _shell_client(km):
    """A client of the kernel's shell channel only, for the resets."""
    from jupyter_client.blocking import BlockingKernelClient

    # A session of its own: a client sharing the manager's (as km.client() does) would share its
    # zmq identity too, and the kernel would send stage cells' replies to this one.
    kc = BlockingKernelClient()
    kc.load_connection_info(km.get_connection_info())
    kc.start_channels(iopub=False, stdin=False, hb=False, control=False)
    return kc


def _reset(kc, km) -> None:
    """Empty the kernel's namespace (:data:`RESET_CODE`); raise if the kernel died or refused."""
    from .stagerun import kernel_exit

    msg_id = kc.execute(RESET_CODE, silent=True, store_history=False)
    while True:
        try:
            reply = kc.get_shell_msg(timeout=1)
        except queue.Empty:
            if how := kernel_exit(km):
                raise RuntimeError(f"the kernel ended ({how})") from None
            continue
        if reply["parent_header"].get("msg_id") == msg_id:
            if reply["content"].get("status") != "ok":
                raise RuntimeError(f"resetting the shared kernel failed: {reply['content'].get('evalue')}")
            return


def serve(cwd: str | None, kernel_name: str | None, lease_fd: int | None = None) -> int:
    """Start a kernel, then run each job read from stdin in it, resetting its namespace after each.

    Ends at end of input. If input ends while a stage runs, the runner died: the kernel is killed
    and the stage stopped as in a fresh worker (``stagerun._watch_runner``).
    """
    import logging


    from .stagekernel import start_kernel
    from .stagerun import _emit, close_kernel, prepare, run_stage

    logging.getLogger("papermill").setLevel(logging.CRITICAL)
    sockets = tempfile.mkdtemp(prefix="jp-kernel-")
    jobs: queue.Queue = queue.Queue()
    busy = threading.Event()
    km = kc = None
    try:
        km = start_kernel(kernel_name or "python3", cwd, sockets, (lease_fd,) if lease_fd is not None else ())
        prepare()
        kc = _shell_client(km)
        threading.Thread(target=_read_jobs, args=(jobs, busy, km), daemon=True, name="jp-jobs").start()
        unusable = None  # why the kernel cannot take another stage
        while (job := jobs.get()) is not None:
            if unusable:
                busy.clear()
                _emit({"status": "failed", "stage": job.get("stage"), "not_run": True, "error": unusable, "metrics": {}})
                return 1
            try:
                result = run_stage(job["store"], job["run_id"], job["stage"], job.get("parameters"), cwd=cwd,
                                   kernel_name=kernel_name, km=km, item=job.get("item"))
            except Exception as exc:  # noqa: BLE001 - report, never a traceback to the parent's user
                result = {"status": "failed", "stage": job.get("stage"), "error": f"{type(exc).__name__}: {exc}",
                          "metrics": {}}
            busy.clear()
            _emit(result)
            if result["status"] != "succeeded":
                return 1  # the runner starts a new shared kernel
            try:
                _reset(kc, km)  # after the result: the reset overlaps with the runner's bookkeeping
            except Exception as exc:  # noqa: BLE001 - the next stage is sent back to run elsewhere
                unusable = f"the shared kernel could not be reset: {exc}"
        return 0
    finally:
        if kc is not None:
            kc.stop_channels()
        close_kernel(km, sockets)
