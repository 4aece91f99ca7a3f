"""Runs started from Jupyter: each in a background thread that outlives the HTTP request.

The run record in the store is the single source of truth (the runner republishes it on every
state change), so a page reload, a second browser or the CLI's ``runs`` all see the same state.
The manager only keeps what the store cannot: which runs this server drives (their target cancels
them) and, for a target that has not written its record yet, the last event's snapshot.

Nothing here imports tornado; handlers call these blocking methods off the event loop.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from ..notebook import parameters as params_mod
from ..exceptions import ParameterError, PipelineError, RunNotFound, StoreError
from ..local.lease import mark_interrupted
from ..notebook.pipeline import Pipeline
from ..store.records import RunState, list_runs, load_run, new_run_id, now_iso, save_run
from ..store.base import Store, open_store
from ..targets import get_target, run_status

#: How long ``start`` waits for a target to report its run before answering anyway.
START_WAIT_SECONDS = 60
#: How long ``cancel`` waits for the run's thread to write the final record.
CANCEL_WAIT_SECONDS = 30
#: How long a stopping server waits for cancelled runs before marking them interrupted.
SHUTDOWN_WAIT_SECONDS = 15
#: A Kubeflow run's state is read from the cluster at most this often per run.
REFRESH_SECONDS = 5


class TooManyRuns(PipelineError):
    """Raised when the server already drives ``max_concurrent_runs`` runs."""

    http_status = 429


class RunConflict(PipelineError):
    """Raised when a run cannot be cancelled in its current state or from this server."""

    http_status = 409


@dataclass
class ActiveRun:
    """A run this server drives: its thread and what it reported so far."""

    run_id: str
    target: str
    thread: threading.Thread | None = None
    reported: threading.Event = field(default_factory=threading.Event)  # first event, or the end
    done: threading.Event = field(default_factory=threading.Event)
    snapshot: dict | None = None  # the record as of the last event
    error: BaseException | None = None


class RunManager:
    """Starts, tracks and cancels the runs of one Jupyter server against one store."""

    def __init__(self, store: Store | str, *, max_concurrent_runs: int = 2, workers: int | None = None,
                 target_options: dict | None = None, log: logging.Logger | None = None):
        self.store = open_store(store)
        self.max_concurrent_runs = max(1, max_concurrent_runs)
        self.workers = workers or None
        self.target_options = dict(target_options or {})
        self.log = log or logging.getLogger(__name__)
        self._lock = threading.Lock()
        self._active: dict[str, ActiveRun] = {}
        self._refreshed: dict[str, float] = {}  # run id -> when its Kubeflow state was last read

    # -- starting -------------------------------------------------------------------------------
    def start(self, pipeline: Pipeline, parameters: dict | None, target: str = "local",
              options: dict | None = None) -> str:
        """Start a run in the background and return its id once the target reported it.

        Problems a user can fix (invalid notebook, bad parameter, unknown target, a target that
        rejects the pipeline at once) are raised here, so the request that started the run gets
        them as its answer rather than as a failed run.
        """
        pipeline.require_valid()
        params_mod.resolve(pipeline, parameters)  # raises ParameterError before anything starts
        target_obj = get_target(target)
        run_id = new_run_id(pipeline.name)
        active = self._claim(ActiveRun(run_id=run_id, target=target))
        opts = {**self.target_options, "workers": self.workers, "run_id": run_id, "store": self.store.url,
                **{k: v for k, v in (options or {}).items() if v not in (None, "")}}

        def work():
            record = target_obj.run(pipeline, dict(parameters or {}), self.store, opts, self._on_event(active))
            if record is not None and hasattr(record, "to_json"):
                active.snapshot = record.to_json()

        self._launch(active, work)
        if active.snapshot and active.snapshot.get("run_id") not in (None, run_id):
            with self._lock:  # the target chose its own id; answer with that one
                self._active[active.snapshot["run_id"]] = active
            return active.snapshot["run_id"]
        return run_id

    def start_sweep(self, pipeline: Pipeline, grid: dict, parameters: dict | None = None, target: str = "local",
                    options: dict | None = None) -> str:
        """Start a sweep (one run per combination of ``grid``'s values) in the background; return its id.

        It counts as one of ``max_concurrent_runs``; its variants are ordinary runs carrying
        ``sweep_id``, listed by :meth:`list` as they start.
        """
        from ..sweep import variants

        pipeline.require_valid()
        if not isinstance(grid, dict) or not grid or not all(isinstance(v, list) and v for v in grid.values()):
            raise ParameterError("a sweep's grid maps parameter names to non-empty lists of values")
        variants(pipeline, grid, parameters)  # raises ParameterError before anything starts
        target_obj = get_target(target)
        sweep_id = new_run_id(f"{pipeline.name}-sweep")
        active = self._claim(ActiveRun(run_id=sweep_id, target=target))
        opts = {**{k: v for k, v in (options or {}).items() if v not in (None, "")},
                "fixed": dict(parameters or {}), "workers": self.workers, "sweep_id": sweep_id}

        def work():
            result = target_obj.sweep(pipeline, grid, self.store, opts, self._on_event(active, keep=False))
            active.snapshot = {"sweep_id": sweep_id, **result.to_json()}

        self._launch(active, work)
        return sweep_id

    def resume(self, run_id: str) -> str:
        """Resume a failed, cancelled or interrupted run in the background (its failed stages and those
        downstream re-run, the others are kept); return its id once it reported."""
        record = run_status(self.store, load_run(self.store, run_id), ask_target=False)  # RunNotFound → 404
        if record.status in (RunState.RUNNING, RunState.SUCCEEDED):
            raise RunConflict(f"Run {run_id} {'is still running' if record.status == RunState.RUNNING else 'succeeded'}; "
                              "only a failed, cancelled or interrupted run can be resumed.")
        target_obj = get_target(record.target)
        active = self._claim(ActiveRun(run_id=run_id, target=record.target))
        opts = {**self.target_options, "workers": self.workers}

        def work():
            done = target_obj.resume(self.store, run_id, opts, self._on_event(active))
            active.snapshot = done.to_json()

        self._launch(active, work)
        return run_id

    def _claim(self, active: ActiveRun) -> ActiveRun:
        with self._lock:
            # Finished runs are read from the store from now on; forget them here.
            self._active = {k: a for k, a in self._active.items() if not a.done.is_set()}
            running = len({id(a) for a in self._active.values()})
            if running >= self.max_concurrent_runs:
                # A run's final record is written just before it reports its end: a client that
                # saw it end may ask for the next run in between. The store has the last word.
                self._active = {k: a for k, a in self._active.items() if not self._ended_in_store(k)}
                running = len({id(a) for a in self._active.values()})
            if running >= self.max_concurrent_runs:
                raise TooManyRuns(
                    f"This server already drives {running} run(s), its limit "
                    f"(c.JupyterPipeline.max_concurrent_runs = {self.max_concurrent_runs}). "
                    "Wait for one to finish or cancel one.")
            self._active[active.run_id] = active
        return active

    def _ended_in_store(self, run_id: str) -> bool:
        try:
            return load_run(self.store, run_id).status != RunState.RUNNING
        except Exception:
            return False

    def _launch(self, active: ActiveRun, work) -> None:
        """Run ``work`` in a daemon thread; return once it reported (or failed, raising its error)."""
        active.thread = threading.Thread(target=self._drive, args=(active, work), name=f"jp-run-{active.run_id}",
                                         daemon=True)
        active.thread.start()
        active.reported.wait(START_WAIT_SECONDS)
        if active.done.is_set() and active.error is not None and active.snapshot is None:
            raise active.error  # failed before it began: the caller's request gets the error

    def _on_event(self, active: ActiveRun, keep: bool = True):
        def on_event(kind, record, stage):
            if keep:
                try:
                    active.snapshot = record.to_json()
                except Exception:
                    pass
                if kind == "run-finished":
                    # Its record is final: the slot is free now, not once the thread has wound down
                    # (a client that sees the run end may start the next at once).
                    active.done.set()
            active.reported.set()
        return on_event

    def _drive(self, active: ActiveRun, work) -> None:
        try:
            work()
        except BaseException as exc:
            active.error = exc
            if isinstance(exc, PipelineError):
                self.log.warning("jupyter-pipeline: run %s failed: %s", active.run_id, exc)
            else:
                self.log.exception("jupyter-pipeline: run %s failed unexpectedly", active.run_id)
            self._record_failure(active, exc)
        finally:
            active.done.set()
            active.reported.set()

    def _record_failure(self, active: ActiveRun, exc: BaseException) -> None:
        """A run that died of an exception must not stay ``running`` while this server lives."""
        run_id = (active.snapshot or {}).get("run_id", active.run_id)
        try:
            record = load_run(self.store, run_id)
        except Exception:
            return
        if record.status == RunState.RUNNING and not isinstance(exc, StoreError):  # (that one kept its record)
            record.status, record.finished_at, record.owner = RunState.FAILED, now_iso(), None
            record.error = str(exc) or type(exc).__name__
            try:
                save_run(self.store, record)
            except PipelineError as also:
                self.log.warning("jupyter-pipeline: could not record run %s as failed: %s", run_id, also)

    # -- reading --------------------------------------------------------------------------------
    def get(self, run_id: str) -> dict:
        """The run record as JSON; a run this server drives is read back from the store too."""
        try:
            return self._status(load_run(self.store, run_id)).to_json()
        except RunNotFound:
            active = self._active.get(run_id)
            if active is not None and active.snapshot is not None:
                return active.snapshot
            raise

    def _status(self, record):
        """The run's state as its target reports it; a running run's target is asked at most every few seconds
        (a Kubeflow run's state is read from the cluster)."""
        ask = False
        if record.status == RunState.RUNNING:
            now = time.monotonic()
            ask = now - self._refreshed.get(record.run_id, -REFRESH_SECONDS) >= REFRESH_SECONDS
            if ask:
                self._refreshed[record.run_id] = now
        return run_status(self.store, record, self.target_options, ask_target=ask)

    def list(self, notebook: str | None = None, limit: int | None = None) -> list[dict]:
        """Run records newest first, optionally of one notebook (absolute path)."""
        return [run_status(self.store, r, ask_target=False).to_json() for r in list_runs(self.store, notebook, limit)]

    # -- cancelling -----------------------------------------------------------------------------
    def cancel(self, run_id: str) -> dict:
        """Cancel a local run this server drives; return the final record."""
        active = self._active.get(run_id)
        if active is None or active.done.is_set() or not _can_cancel(active.target):
            record = run_status(self.store, load_run(self.store, run_id), ask_target=False)  # RunNotFound → 404
            if record.status != RunState.RUNNING:
                raise RunConflict(f"Run {run_id} is not running (it {record.status.value}).")
            if not _can_cancel(record.target):
                raise RunConflict(
                    f"Run {run_id} runs on target '{record.target}'; only local runs can be cancelled from "
                    "Jupyter. Stop it in the Kubeflow Pipelines UI" + (f": {record.url}" if record.url else "."))
            owner = record.owner or {}
            raise RunConflict(
                f"Run {run_id} is driven by another process (host {owner.get('host')}, pid {owner.get('pid')}), "
                "not by this server; stop it there.")
        get_target(active.target).cancel(self.store, run_id)
        active.done.wait(CANCEL_WAIT_SECONDS)
        return self.get(run_id)

    # -- server lifecycle ----------------------------------------------------------------------
    def recover(self) -> int:
        """Mark runs left ``running`` by a process that no longer exists as interrupted."""
        count = 0
        for record in list_runs(self.store):
            stale = record.status == RunState.RUNNING
            if stale and run_status(self.store, record, ask_target=False).status == RunState.INTERRUPTED:
                count += 1
        if count:
            self.log.info("jupyter-pipeline: marked %d run(s) left running by a stopped process as interrupted", count)
        return count

    def shutdown(self) -> None:
        """Stop the local runs this server drives and record them as interrupted (resumable)."""
        with self._lock:
            unique = {id(a): a for a in self._active.values()}.values()
            actives = [a for a in unique if not a.done.is_set() and _can_cancel(a.target)]
        for active in actives:
            try:
                get_target(active.target).cancel(self.store, active.run_id)
            except PipelineError:
                pass  # it ended meanwhile
        for active in actives:
            active.done.wait(SHUTDOWN_WAIT_SECONDS)
            try:
                record = load_run(self.store, active.run_id)
                if record.status in (RunState.RUNNING, RunState.CANCELLED):  # stopped by us, not by the user
                    mark_interrupted(self.store, record, SERVER_STOPPED, cancelled_too=True)
            except Exception as exc:
                self.log.warning("jupyter-pipeline: could not mark run %s interrupted: %s", active.run_id, exc)


#: Why a run this server drove was marked interrupted when the server stopped.
SERVER_STOPPED = "the Jupyter server stopped during this run; `jupyter-pipeline resume` continues it"


def _can_cancel(target: str) -> bool:
    """True if the target can stop, from this process, a run this process drives."""
    try:
        return get_target(target).can_cancel
    except Exception:
        return False
