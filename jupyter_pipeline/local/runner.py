"""The local runner: a pipeline's stages as papermill executions on this machine.

Each stage runs in its own process (``python -m jupyter_pipeline.local.worker``) with its own kernel;
independent stages run at the same time, up to ``workers``. A failed stage stops what depends
on it while independent branches finish. The run record is republished on every state change,
so another process (the CLI's ``runs``, the Jupyter server, a browser) sees progress live.

The runner executes a :mod:`jupyter_pipeline.plan` (what runs, what is reused or kept); its
:class:`~jupyter_pipeline.local.launcher.Launcher` starts the executions (``map:`` stages through
:class:`~jupyter_pipeline.local.mapstages.MapStages`, ``workers:`` stages through
:class:`~jupyter_pipeline.local.gang.GangStages`) and stops them on ``cancel()``.

A run is leased (:mod:`jupyter_pipeline.local.lease`) by the runner that drives it, and its stage
workers and kernels inherit the lease; a run whose runner died is marked interrupted, and may be
resumed, only once the lease is free, so no stage of it can still be writing.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable

import nbformat

from .. import plan
from ..notebook import parameters as params_mod
from ..exceptions import PipelineError, StoreError
from ..notebook.parse import from_notebook, load
from ..notebook.pipeline import Pipeline, Stage
from ..store.records import (
    RunRecord, RunState, StageState, finish, link_outputs, list_runs, load_run, new_record, now_iso, reopen,
    run_prefix, save_run, snapshot, stage_key
)
from .gang import GangStages
from .launcher import Launcher
from .mapstages import MapStages
from .lease import STOPPING_GRACE_SECONDS, Lease, owner_alive, this_process
from ..stage.gate import admit
from ..stage.notebook import stage_notebook
from ..stagecache import StageCache, stage_fingerprints
from ..store import attempts, pending
from ..store.base import Store, open_store, patiently, resolve_store_url
from .sharedkernel import FRESH, SHARED

#: ``on_event(kind, record, stage)`` with kind one of run-started, stage-started,
#: stage-finished, run-finished; ``stage`` is None for run events.
EventHandler = Callable[[str, RunRecord, str | None], None]


class LocalRunner:
    """Runs one pipeline run at a time on this machine; ``cancel()`` may be called from any thread."""

    def __init__(self, store: Store | str | None = None, *, workers: int | None = None,
                 on_event: EventHandler | None = None, python: str = sys.executable,
                 cache: StageCache | None = None, slots: threading.Semaphore | None = None,
                 warm: int | None = None, sweep_id: str | None = None, incremental: bool = False,
                 shared_kernel: bool = False, from_stage: str | None = None):
        self.store = open_store(store)
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.on_event = on_event or (lambda kind, record, stage: None)
        self.python = python
        self._lock = threading.RLock()
        self.cache, self.warm, self.sweep_id = cache, warm, sweep_id
        self._keys: dict[str, str] = {}
        self.incremental = incremental
        self.from_stage = from_stage  # run this stage and those downstream, reuse those upstream (plan.rerun_from)
        self._plan = plan.Plan()  # what the current run executes, reuses or keeps (jupyter_pipeline.plan)
        self.record: RunRecord | None = None
        self._lease: Lease | None = None
        self._store_fault: StoreError | None = None  # why the store stopped taking writes mid-run
        # --shared-kernel: stages take turns in one kernel (see jupyter_pipeline.local.sharedkernel).
        self.kernel_mode = SHARED if shared_kernel else FRESH
        # Kernels running at once; a sweep shares one semaphore among its runs.
        self._launcher = Launcher(self.store, self.workers, slots or threading.BoundedSemaphore(self.workers),
                                  self.kernel_mode)
        self._maps = MapStages(self.store, self._launcher, self._publish)
        self._gangs = GangStages(self._launcher, self._publish)

    # -- public -------------------------------------------------------------------------------------
    def run(self, pipeline: Pipeline, parameters: dict | None = None, run_id: str | None = None) -> RunRecord:
        """Run every stage of ``pipeline``; return the finished record (failed runs too)."""
        pipeline.require_valid()
        values = params_mod.resolve(pipeline, parameters)
        kernel_note = self._choose_kernel(pipeline)
        self.store.check()
        record = new_record(
            pipeline, store=self.store.url, target="local", parameters=values, run_id=run_id,
            owner=this_process(),
            sweep_id=self.sweep_id,
            kernel_mode=self.kernel_mode,
            history=[{"event": "kernel-fallback", "at": now_iso(), "message": kernel_note}] if kernel_note else [],
        )
        fingerprints = stage_fingerprints(pipeline, values)
        self._keys = {name: fp["key"] for name, fp in fingerprints.items()}
        for name, fp in fingerprints.items():
            # The record keeps the key and what went into it (for --incremental's "why").
            record.stages[name].cache_key = fp["key"]
            record.stages[name].fingerprint = {k: v for k, v in fp.items() if k != "key"}
        self._plan = plan.fresh(pipeline)
        if self.incremental or self.from_stage:
            self._plan = plan.incremental(pipeline, fingerprints, list_runs(self.store, notebook=record.notebook),
                                          lambda run, stage: self.store.exists(stage_key(run, stage, "outputs.json")))
            if self.from_stage:
                self._plan = plan.rerun_from(pipeline, self._plan, self.from_stage)
            for name, decision in self._plan.decisions.items():
                record.stages[name].why = decision.why
                record.stages[name].reused_from = decision.reused_from
        with self._leased(record):
            snapshot(self.store, pipeline, record.run_id)
            return self._execute(pipeline, record, [s.name for s in pipeline.stages])

    def resume(self, run_id: str, pipeline: Pipeline | None = None) -> RunRecord:
        """Re-run the stages of ``run_id`` that did not succeed, reusing the outputs of those that did."""
        pending.flush(self.store, f"{run_prefix(run_id)}/")  # what the store did not take when the run stopped
        record = load_run(self.store, run_id)
        if record.status == RunState.RUNNING and owner_alive(record):
            raise PipelineError(f"Run {run_id} is still running (process {record.owner['pid']}); cancel it first.")
        with self._leased(record, wait=STOPPING_GRACE_SECONDS):
            return self._resume(record, pipeline)

    def _resume(self, record: RunRecord, pipeline: Pipeline | None) -> RunRecord:
        if pipeline is None:
            pipeline = self._pipeline_for_resume(record)
        pipeline.require_valid()
        kernel_note = self._choose_kernel(pipeline)
        self.store.check()
        self._plan = plan.resume(pipeline, record, lambda stage: self._saved_outputs(record.run_id, stage))
        attempts.keep(self.store, record, self._plan.to_run)  # each attempt's notebook and error stay readable
        reopen(record, pipeline, self._plan.to_run, owner=this_process(), kernel_mode=self.kernel_mode)
        if kernel_note:
            record.history.append({"event": "kernel-fallback", "at": now_iso(), "message": kernel_note})
        snapshot(self.store, pipeline, record.run_id)
        return self._execute(pipeline, record, self._plan.to_run)

    def cancel(self) -> None:
        """Stop the run: running stages get SIGTERM (then SIGKILL), pending ones never start."""
        self._launcher.cancel()

    # -- internals ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _leased(self, record: RunRecord, wait: float = 0.0):
        """Hold the run's lease while driving it, or say which processes of an earlier runner still do."""
        lease = Lease(self.store.absolute_url(), record.run_id)
        if not lease.acquire(wait):
            holders = ", ".join(f"{pid} ({what})" for pid, what in lease.holders()) or "unknown"
            raise PipelineError(
                f"Run {record.run_id} cannot be resumed yet: stage processes of the runner that drove it are still "
                f"alive (process(es) {holders}) and could still write its outputs. They stop within seconds of their "
                "runner; try again, or end them first.")
        self._lease = lease
        try:
            yield
        finally:
            lease.release()  # the workers' copies close as they exit

    def _pipeline_for_resume(self, record: RunRecord) -> Pipeline:
        if Path(record.notebook).is_file():
            return load(record.notebook)  # the user may have fixed the failing code
        from ..notebook.elyra import is_pipeline_file

        if is_pipeline_file(record.notebook):  # its nodes are read from their own files: no snapshot holds them
            raise PipelineError(f"Cannot resume {record.run_id}: the Elyra pipeline file {record.notebook} is gone; "
                                "put it (and its nodes' files) back to resume the run.")
        kept = f"{run_prefix(record.run_id)}/notebook.ipynb"
        if not self.store.exists(kept):
            raise PipelineError(f"Cannot resume {record.run_id}: {record.notebook} is gone and the run has no snapshot.")
        nb = nbformat.reads(self.store.get_bytes(kept).decode(), as_version=4)
        return from_notebook(nb, record.notebook)

    def _saved_outputs(self, run_id: str, stage: str) -> set[str]:
        key = stage_key(run_id, stage, "outputs.json")
        return set(self.store.get_json(key)) if self.store.exists(key) else set()

    def _publish(self, record: RunRecord, final: bool = False) -> None:
        """Write the record to the store: every change as it happens (best effort: a store outage
        must not stop the run; the next change writes it again), the final one patiently."""
        with self._lock:
            if final:
                patiently(lambda: save_run(self.store, record))
                return
            try:
                save_run(self.store, record)
            except StoreError as exc:
                # Down for now: the next change, at the latest the final one, writes it. Refusing
                # (a full disk, a read-only folder): nothing more can be kept there, so the run stops.
                if not exc.transient and self._store_fault is None:
                    self._store_fault = exc
                    threading.Thread(target=self.cancel, daemon=True, name="jp-store-fault").start()

    def _execute(self, pipeline: Pipeline, record: RunRecord, names: list[str]) -> RunRecord:
        self.record, self._store_fault = record, None
        for name in names:
            nb = stage_notebook(pipeline, name)
            key = stage_key(record.run_id, name, "input.ipynb")
            self.store.put_bytes(key, nbformat.writes(nb).encode())
            record.stages[name].input_notebook = self.store.uri(key)
        self._publish(record)
        self.on_event("run-started", record, None)
        stages = {s.name: s for s in pipeline.stages}
        pending = list(names)
        running: dict[Future, str] = {}
        cwd = str(Path(record.notebook).parent)
        lease_fd = self._lease.fd
        cmd = [self.python, "-m", "jupyter_pipeline.local.worker", "--serve", "--cwd", cwd, "--kernel", self._kernel,
               "--lease-fd", str(lease_fd)]
        shares = any(self._launcher.shares(stages[n]) for n in names if not self._plan.reuses(n))
        self._launcher.open(cmd, cwd, lease_fd, shared_kernel=shares)
        try:
            self._schedule(record, stages, pending, running)
        finally:
            self._launcher.close()
        return self._finish_run(record)

    def _schedule(self, record: RunRecord, stages: dict, pending: list[str], running: dict) -> None:
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="jp-stage") as pool:
            while pending or running:
                to_run = sum(1 for name in pending
                             if not self._plan.reuses(name) and not self._launcher.shares(stages[name]))
                self._launcher.warm(min(self.warm if self.warm is not None else self.workers, to_run))
                if self._launcher.cancelled.is_set():
                    for name in pending:
                        record.stages[name].status = StageState.CANCELLED
                    pending = []
                for name in list(pending):
                    deps = [record.stages[d] for d in stages[name].depends_on]
                    if any(d.status in (StageState.FAILED, StageState.SKIPPED, StageState.CANCELLED)
                           and not d.passed_over for d in deps):
                        pending.remove(name)
                        record.stages[name].status = StageState.SKIPPED
                        record.stages[name].error = "not run: a stage it depends on did not succeed"
                        self._publish(record)
                        self.on_event("stage-finished", record, name)
                    elif all(d.status == StageState.SUCCEEDED or d.passed_over for d in deps) \
                            and len(running) < self.workers:
                        pending.remove(name)
                        if not admit(stages[name], record, self.store):  # its if: condition (stage.gate)
                            self._publish(record)
                            self.on_event("stage-finished", record, name)
                            continue
                        rec = record.stages[name]
                        rec.status, rec.started_at = StageState.RUNNING, now_iso()
                        self._publish(record)
                        self.on_event("stage-started", record, name)
                        running[pool.submit(self._run_stage, stages[name], record)] = name
                if not running:
                    continue
                try:
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                except KeyboardInterrupt:
                    # Ctrl-C (or SIGTERM turned into it by the CLI): stop the stages, then keep
                    # looping so every record is written as cancelled before returning.
                    self.cancel()
                    continue
                for future in done:
                    name = running.pop(future)
                    self._finish_stage(record, name, _result_of(future))

    def _choose_kernel(self, pipeline: Pipeline) -> str | None:
        """Set the kernel the stages run in: the notebook's, if this machine has it.

        Returns a note for the run record when it falls back. Notebooks often carry the kernel name
        of the machine they were written on (a conda or
        venv kernel); unless ``metadata.jupyter_pipeline.kernel`` asks for one explicitly, a
        missing kernel falls back to ``python3`` and the run record says so.
        """
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

        name = self._kernel = pipeline.kernel_name
        try:
            KernelSpecManager().get_kernel_spec(name)
            return None
        except NoSuchKernel:
            known = sorted(KernelSpecManager().find_kernel_specs())
            if pipeline.settings.get("kernel") or "python3" not in known:
                raise PipelineError(
                    f"{pipeline.path} asks for the kernel '{name}', which is not installed here; installed "
                    f"kernels: {', '.join(known) or 'none'}. Install it, or set "
                    "metadata.jupyter_pipeline.kernel to one of these."
                ) from None
            self._kernel = "python3"
            return f"kernel '{name}' is not installed here; stages run in 'python3'"

    def _reuse_earlier(self, stage: Stage, record: RunRecord) -> dict:
        decision = self._plan[stage.name]
        earlier = decision.earlier
        self._link_outputs(stage, record, decision.source_run, stage.name)
        record.stages[stage.name].items = earlier.items
        return {"status": "succeeded", "metrics": earlier.metrics, "output_notebook": earlier.output_notebook,
                "reused_from": decision.reused_from}

    def _run_stage(self, stage: Stage, record: RunRecord) -> dict:
        if self._plan.reuses(stage.name):
            return self._reuse_earlier(stage, record)
        if self.cache is not None and stage.options.cache and stage.name in self._keys:
            owner, entry = self.cache.claim(self._keys[stage.name], record.run_id, stage.name)
            if not owner:
                return self._share(stage, record, entry)
            result = {"status": "failed", "error": "not run"}
            try:
                result = self._compute(stage, record)
            finally:
                self.cache.publish(entry, result)
            return result
        return self._compute(stage, record)

    def _share(self, stage: Stage, record: RunRecord, entry) -> dict:
        """Use the outputs of an identical stage another run computes (or computed)."""
        entry.done.wait()
        result = entry.result or {}
        if result.get("status") != "succeeded":
            return {"status": "failed", "error": f"the identical stage of run {entry.run_id} did not succeed: "
                                                f"{result.get('error')}"}
        self._link_outputs(stage, record, entry.run_id, entry.stage)
        return {**result, "reused_from": entry.run_id}

    def _link_outputs(self, stage: Stage, record: RunRecord, run_id: str, source: str) -> None:
        """Point this run's output index of ``stage`` at the values ``source`` saved in ``run_id``."""
        if stage.outputs or stage.files_out:
            link_outputs(self.store, record.run_id, stage.name, run_id, source)

    def _compute(self, stage: Stage, record: RunRecord) -> dict:
        if stage.options.map_var:
            return self._maps.run(stage, record)
        if stage.options.workers > 1:
            return self._gangs.run(stage, record)
        return self._launcher.execute(stage, record)

    def _finish_stage(self, record: RunRecord, name: str, result: dict) -> None:
        rec = record.stages[name]
        rec.finished_at = now_iso()
        rec.status = StageState(result["status"])
        rec.metrics = result.get("metrics", {})
        rec.models = result.get("models", [])
        rec.output_notebook = result.get("output_notebook")
        rec.reused_from = result.get("reused_from")
        if rec.status == StageState.SUCCEEDED:
            rec.outputs = sorted(patiently(lambda: self._saved_outputs(record.run_id, name)))
        else:
            rec.outputs = []
        if rec.status != StageState.SUCCEEDED:
            rec.error = result.get("error")
            rec.error_cell = result.get("error_cell")
        self._publish(record)
        self.on_event("stage-finished", record, name)

    def _finish_run(self, record: RunRecord) -> RunRecord:
        finish(record, cancelled=self._launcher.cancelled.is_set())
        if self._store_fault is None:
            try:
                self._publish(record, final=True)
            except StoreError as exc:
                self._store_fault = exc
        if self._store_fault is not None:  # interrupted; what the store did not take waits on this machine
            error = pending.end_run(self.store, record, self._store_fault)
            self.on_event("run-finished", record, None)
            raise error
        self.on_event("run-finished", record, None)
        return record


def _result_of(future: Future) -> dict:
    """A stage thread's result; an error it raised (the store failing a fan-in, say) fails the stage."""
    try:
        return future.result()
    except PipelineError as exc:
        return {"status": "failed", "error": str(exc)}
    except Exception as exc:
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}


def run_pipeline(pipeline: Pipeline | str, parameters: dict | None = None, store: Store | str | None = None,
                 workers: int | None = None, on_event: EventHandler | None = None) -> RunRecord:
    """Run a pipeline (or the notebook at a path) locally; the Python API behind ``jupyter-pipeline run``."""
    if isinstance(pipeline, (str, os.PathLike)):
        pipeline = load(pipeline)
    store = open_store(store or resolve_store_url(None, pipeline.settings))
    return LocalRunner(store, workers=workers, on_event=on_event).run(pipeline, parameters)


def resume_run(store: Store | str, run_id: str, workers: int | None = None,
               on_event: EventHandler | None = None) -> RunRecord:
    """Resume a run: re-run its failed, skipped, cancelled or interrupted stages."""
    return LocalRunner(store, workers=workers, on_event=on_event).resume(run_id)


__all__ = ["LocalRunner", "run_pipeline", "resume_run"]
