"""Stage launches of a local run: the processes its stages execute in, and stopping them.

A :class:`Launcher` holds what every kind of stage (plain, ``map:`` items, ``workers:`` replicas)
executes with: the pool of warm stage workers (:mod:`jupyter_pipeline.local.pool`), the run's shared
kernel with ``--shared-kernel`` (:mod:`jupyter_pipeline.local.sharedkernel`), the kernel slots (at most
``workers`` kernels at once; a sweep shares them among its runs), the processes running now, and
whether the run was cancelled. The runner, :class:`~jupyter_pipeline.local.mapstages.MapStages` and
:class:`~jupyter_pipeline.local.gang.GangStages` call it; ``cancel()`` may come from any thread.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from typing import TYPE_CHECKING

from ..notebook.pipeline import Stage
from ..store.records import RunRecord, timeout_error
from .sharedkernel import SHARED, SharedKernel, isolation_reason
from .pool import WarmWorkers, terminate

if TYPE_CHECKING:
    from ..store.base import Store


class Launcher:
    """Executes a run's stages in worker processes, ``workers`` kernels at a time."""

    def __init__(self, store: Store, workers: int, slots: threading.Semaphore, kernel_mode: str):
        self.store, self.workers, self.slots, self.kernel_mode = store, workers, slots, kernel_mode
        self.cancelled = threading.Event()
        self._lock = threading.Lock()
        self._procs: dict[str, subprocess.Popen] = {}
        self._workers: WarmWorkers | None = None
        self._shared: SharedKernel | None = None

    # -- the run's processes ------------------------------------------------------------------------
    def open(self, cmd: list[str], cwd: str, lease_fd: int, shared_kernel: bool) -> None:
        """Start the pool of workers (and the shared kernel, if a stage of this run takes it)."""
        self._workers = WarmWorkers(cmd, cwd, pass_fds=(lease_fd,))
        self._shared = None
        if shared_kernel:
            self._shared = SharedKernel(cmd, cwd, pass_fds=(lease_fd,))
            self._shared.start()

    def close(self) -> None:
        if self._workers is not None:
            self._workers.close()
        if self._shared is not None:
            self._shared.close()

    def cancel(self) -> None:
        """Stop the run: running stages get SIGTERM (then SIGKILL), pending ones never start."""
        self.cancelled.set()
        with self._lock:
            procs = list(self._procs.values())
        for proc in procs:
            terminate(proc)
        self.close()

    @staticmethod
    def stop(proc: subprocess.Popen) -> None:
        """Stop one process: SIGTERM, then SIGKILL if it lingers."""
        terminate(proc)

    def warm(self, count: int) -> None:
        """Keep ``count`` workers started ahead of the stages that will take them."""
        self._workers.ensure(count)

    def take(self):
        """A started worker, for one execution (a gang takes one per replica)."""
        return self._workers.take()

    @contextlib.contextmanager
    def running(self, slot: str, proc: subprocess.Popen | None = None):
        """Count ``proc`` as running ``slot`` (a stage, ``stage[item]`` or ``stage#rank``) while inside, so
        ``cancel`` stops it; yields a callback for a process known only once it starts."""
        def started(process: subprocess.Popen) -> None:
            with self._lock:
                self._procs[slot] = process
        if proc is not None:
            started(proc)
        try:
            yield started
        finally:
            with self._lock:
                self._procs.pop(slot, None)

    def shares(self, stage: Stage) -> bool:
        """Whether ``stage`` runs in the run's shared kernel (``--shared-kernel``, and it may)."""
        return self.kernel_mode == SHARED and isolation_reason(stage) is None

    # -- executions --------------------------------------------------------------------------------
    def job(self, stage: Stage, record: RunRecord, item: int | None = None) -> dict:
        """What a stage worker is given to execute ``stage`` (or one item of it) in ``record``'s run."""
        return {"store": self.store.absolute_url(), "run_id": record.run_id, "stage": stage.name, "item": item,
                "parameters": {k: v for k, v in record.parameters.items() if k in stage.parameters}}

    def execute(self, stage: Stage, record: RunRecord, item: int | None = None) -> dict:
        """One papermill execution of a stage (or of one item of a map stage), with retries."""
        job = self.job(stage, record, item)
        slot = stage.name if item is None else f"{stage.name}[{item}]"
        result: dict = {}
        for attempt in range(stage.options.retries + 1):
            if item is None:
                record.stages[stage.name].attempts = attempt + 1
            if self.cancelled.is_set():
                return {"status": "cancelled", "error": "cancelled"}
            with self.slots:  # at most `workers` kernels at once, map items included
                if attempt == 0 and item is None and self.shares(stage):  # a retry gets a fresh kernel
                    with self.running(slot) as started:
                        result = self._shared.run(job, started)
                else:
                    result = self._execute_once(stage, job, slot)
            if self.cancelled.is_set():
                result.update(status="cancelled", error="cancelled")
            if result["status"] != "failed":
                break
        return result

    def _execute_once(self, stage: Stage, job: dict, slot: str) -> dict:
        worker = self.take()
        timer, timed_out = None, threading.Event()
        if stage.options.timeout:
            def expire(proc=worker.proc):
                timed_out.set()
                terminate(proc)

            timer = threading.Timer(stage.options.timeout, expire)
        try:
            with self.running(slot, worker.proc):
                # `timeout:` limits the stage's own execution: the clock starts once its kernel is up.
                result = worker.run(job, on_started=timer.start if timer else None)
        finally:
            if timer:
                timer.cancel()
        if timed_out.is_set():
            result.update(status="failed", error=timeout_error(stage.options.timeout))
        return result
