"""The ``kfp-local`` target: run the *compiled* pipeline with ``kfp.local`` on this machine.

The pipeline is compiled exactly as for a cluster, then the YAML is loaded back and executed by
``kfp.local.SubprocessRunner(use_venv=False)``: each stage is the compiled lightweight component,
run by this environment's Python. Stages report through the store (``input.ipynb`` when they
start, ``result.json`` when they end), which is also how the run record is built, so the record
has the same shape as a local run's and ``runs`` shows it.
"""

from __future__ import annotations

import contextlib
import io
import threading
import warnings
from pathlib import Path

from .. import parameters as params_mod
from ..pipeline import Pipeline
from ..records import RunRecord, RunState, StageRecord, StageState, new_run_id, now_iso, run_prefix, save_run, stage_key
from ..store import open_store
from .compiler import CompileOptions, compile_pipeline, parameter_arguments
from .entry import RESULT_FILE

POLL_SECONDS = 0.2
#: kfp.local keeps global configuration; one kfp.local run at a time per process.
_lock = threading.Lock()


def record_from_results(record: RunRecord, store, pipeline: Pipeline) -> RunRecord:
    """Fill ``record``'s stages from the ``result.json`` files the stage components wrote."""
    for stage in pipeline.stages:
        rec = record.stages[stage.name]
        key = stage_key(record.run_id, stage.name, RESULT_FILE)
        if store.exists(key):
            result = store.get_json(key)
            rec.status = StageState(result.get("status", "failed"))
            rec.started_at, rec.finished_at = result.get("started_at"), result.get("finished_at")
            rec.metrics = result.get("metrics") or {}
            rec.output_notebook = result.get("output_notebook")
            rec.attempts = int(result.get("attempts") or 1)
            rec.error = result.get("error") if rec.status != StageState.SUCCEEDED else None
            rec.error_cell = result.get("error_cell") if rec.status != StageState.SUCCEEDED else None
            outputs_key = stage_key(record.run_id, stage.name, "outputs.json")
            if rec.status == StageState.SUCCEEDED and store.exists(outputs_key):
                rec.outputs = sorted(store.get_json(outputs_key))
        input_key = stage_key(record.run_id, stage.name, "input.ipynb")
        if store.exists(input_key):
            rec.input_notebook = store.uri(input_key)
    return record


def _finish(record: RunRecord, pipeline: Pipeline, error: str | None) -> RunRecord:
    failed = [n for n, r in record.stages.items() if r.status == StageState.FAILED]
    for name, rec in record.stages.items():
        if not rec.status.done:
            rec.status = StageState.SKIPPED
            rec.error = (f"not run: kfp.local stopped the pipeline after stage {', '.join(failed)} failed"
                         if failed else f"not run: {error or 'the pipeline stopped'}")
    if all(r.status == StageState.SUCCEEDED for r in record.stages.values()):
        record.status = RunState.SUCCEEDED
    else:
        record.status = RunState.FAILED
        record.error = (f"stage{'s' if len(failed) > 1 else ''} {', '.join(failed)} failed" if failed
                        else error or "kfp.local reported a failure")
    record.finished_at = now_iso()
    record.owner = None
    return record


class _Watcher(threading.Thread):
    """Turns the stages' store files into run events while kfp.local runs (it runs one task at a time)."""

    def __init__(self, store, record: RunRecord, pipeline: Pipeline, on_event):
        super().__init__(name="jp-kfp-local-watch", daemon=True)
        self.store, self.record, self.pipeline, self.on_event = store, record, pipeline, on_event
        self.stop = threading.Event()

    def poll(self) -> None:
        for name, rec in self.record.stages.items():
            if rec.status == StageState.PENDING and self.store.exists(stage_key(self.record.run_id, name, "input.ipynb")):
                rec.status, rec.started_at = StageState.RUNNING, now_iso()
                save_run(self.store, self.record)
                self.on_event("stage-started", self.record, name)
            if rec.status == StageState.RUNNING and self.store.exists(stage_key(self.record.run_id, name, RESULT_FILE)):
                record_from_results(self.record, self.store, self.pipeline)
                save_run(self.store, self.record)
                self.on_event("stage-finished", self.record, name)

    def run(self) -> None:
        while not self.stop.wait(POLL_SECONDS):
            self.poll()


def run_kfp_local(pipeline: Pipeline, parameters: dict | None, store, options: dict | None = None,
                  on_event=None) -> RunRecord:
    """Compile ``pipeline`` and run the compiled spec with kfp.local; return the finished record."""
    from kfp import components, local

    options = options or {}
    on_event = on_event or (lambda kind, record, stage: None)
    pipeline.require_valid()
    values = params_mod.resolve(pipeline, parameters)
    store = open_store(store)
    store.check()
    record = RunRecord(
        run_id=options.get("run_id") or new_run_id(pipeline.name),
        pipeline=pipeline.name,
        notebook=str(Path(pipeline.path).resolve()),
        store=store.url,
        target="kfp-local",
        parameters=values,
        stages={s.name: StageRecord() for s in pipeline.stages},
        edges=[list(e) for e in pipeline.edges],
    )
    prefix = run_prefix(record.run_id)
    # The stages must use this store from this process's environment: no cluster endpoint.
    compile_options = CompileOptions.for_pipeline(pipeline, store=store.absolute_url(), s3_endpoint="")
    yaml_text = compile_pipeline(pipeline, options=compile_options)
    store.put_bytes(f"{prefix}/pipeline.yaml", yaml_text.encode())
    with open(pipeline.path, "rb") as f:
        store.put_bytes(f"{prefix}/notebook.ipynb", f.read())
    store.put_json(f"{prefix}/pipeline.json", pipeline.to_json())
    save_run(store, record)
    on_event("run-started", record, None)

    arguments = parameter_arguments(pipeline, values)
    arguments.update(jp_run_id=record.run_id, jp_workdir=str(Path(pipeline.path).resolve().parent))
    watcher = _Watcher(store, record, pipeline, on_event)
    log = io.StringIO()
    error = None
    with _lock, warnings.catch_warnings():
        import tempfile

        with tempfile.TemporaryDirectory(prefix="jp-kfp-local-") as tmp:
            yaml_path = Path(tmp) / "pipeline.yaml"
            yaml_path.write_text(yaml_text)
            local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(Path(tmp) / "outputs"),
                       raise_on_error=False)
            compiled = components.load_component_from_file(str(yaml_path))
            watcher.start()
            try:
                warnings.simplefilter("ignore", RuntimeWarning)  # "non-Python base image": it is ours
                warnings.simplefilter("ignore", UserWarning)  # "accelerator has no effect locally": known
                # kfp.local echoes every task's output on stdout; keep it out of --json output.
                with contextlib.redirect_stdout(log):
                    compiled(**arguments)
            except Exception as exc:  # noqa: BLE001 - kfp.local's own failures become the run's error
                error = f"kfp.local: {type(exc).__name__}: {exc}"
            finally:
                watcher.stop.set()
                watcher.join()
    store.put_bytes(f"{prefix}/kfp-local.log", log.getvalue().encode())
    watcher.poll()  # events of the last stage
    record_from_results(record, store, pipeline)
    _finish(record, pipeline, error)
    save_run(store, record)
    for name, rec in record.stages.items():
        if rec.status == StageState.SKIPPED:
            on_event("stage-finished", record, name)
    on_event("run-finished", record, None)
    return record


__all__ = ["run_kfp_local", "record_from_results"]
