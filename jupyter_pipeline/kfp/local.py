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
import os
import tempfile
import threading
import warnings
from pathlib import Path

from ..notebook import parameters as params_mod
from ..store import records as records_mod
from ..stage.fanout import mean_metrics
from ..notebook.pipeline import Pipeline
from ..store.records import (
    RunRecord, StageState, failed_stages, finish, now_iso, run_prefix, save_run, snapshot,
    stage_key
)
from ..stage.gate import decide, skip
from ..store.base import open_store
from .compiler import CompileOptions, compile_pipeline, parameter_arguments
from .entry import ITEMS_FILE, RESULT_FILE, RUN_ID_ENV
from .files import bundle, upload

POLL_SECONDS = 0.2
#: The folder of a run (in a local store) where kfp.local keeps the tasks' output artifacts.
OUTPUTS_FOLDER = "kfp-outputs"
#: kfp.local keeps global configuration; one kfp.local run at a time per process.
_lock = threading.Lock()


def record_from_results(record: RunRecord, store, pipeline: Pipeline) -> RunRecord:
    """Fill ``record``'s stages from the ``result.json`` files the stage components wrote."""
    for stage in pipeline.stages:
        rec = record.stages[stage.name]
        key = stage_key(record.run_id, stage.name, RESULT_FILE)
        result = store.get_json(key) if store.exists(key) else None
        if stage.options.map_var:
            result = _map_result(store, record.run_id, stage.name, result)
        if result is not None:
            rec.status = StageState(result.get("status", "failed"))
            rec.started_at, rec.finished_at = result.get("started_at"), result.get("finished_at")
            rec.metrics = result.get("metrics") or {}
            rec.models = result.get("models") or []
            rec.output_notebook = result.get("output_notebook")
            rec.attempts = int(result.get("attempts") or 1)
            rec.error = result.get("error") if rec.status != StageState.SUCCEEDED else None
            rec.error_cell = result.get("error_cell") if rec.status != StageState.SUCCEEDED else None
            rec.reused_from = result.get("reused_from")
            rec.items = result.get("items") or []
            rec.replicas = result.get("replicas") or []
            outputs_key = stage_key(record.run_id, stage.name, "outputs.json")
            if rec.status == StageState.SUCCEEDED and store.exists(outputs_key):
                rec.outputs = sorted(store.get_json(outputs_key))
        input_key = stage_key(record.run_id, stage.name, "input.ipynb")
        if store.exists(input_key):
            rec.input_notebook = store.uri(input_key)
    return record


def _map_result(store, run_id: str, stage: str, result: dict | None) -> dict | None:
    """A ``map:`` stage's result: the gather task's, or (a failed item stopped the loop) one made
    from the items' own results, worded as the local runner words it."""
    if result is not None:
        return result
    plan_key = stage_key(run_id, stage, ITEMS_FILE)
    if not store.exists(plan_key):
        return None
    count = store.get_json(plan_key)["count"]
    items = []
    for i in range(count):
        key = stage_key(run_id, stage, RESULT_FILE, i)
        r = store.get_json(key) if store.exists(key) else {"status": "skipped", "error": "not run"}
        items.append({"index": i, **{k: r.get(k) for k in ("status", "started_at", "finished_at",
                                                           "output_notebook", "metrics", "error", "error_cell")}})
    bad = [it for it in items if it["status"] != "succeeded"]
    if not bad or any(it["status"] is None for it in items):
        return None  # still running
    first = next((it for it in bad if it["status"] == "failed"), bad[0])
    started = [it["started_at"] for it in items if it["started_at"]]
    return {"status": "failed", "items": items, "metrics": mean_metrics(items),
            "started_at": min(started, default=None),
            "finished_at": max((it["finished_at"] for it in items if it["finished_at"]), default=None),
            "output_notebook": first.get("output_notebook"), "error_cell": first.get("error_cell"),
            "error": f"{len(bad)} of {count} item(s) did not succeed; item {first['index']}: "
                     f"{first.get('error') or first['status']}"}


def _finish(record: RunRecord, pipeline: Pipeline, error: str | None, store=None) -> RunRecord:
    failed = failed_stages(record)
    for stage in pipeline.dependency_order():
        rec = record.stages[stage.name]
        if store is not None and not rec.status.done and not error:
            # A stage inside a dsl.If that did not hold never started: say why, as a local run does.
            deps = [record.stages[d] for d in stage.depends_on]
            if all(d.status == StageState.SUCCEEDED or d.passed_over for d in deps):
                gate = decide(stage, record, store)
                if not gate.run and not gate.error:
                    skip(record, stage.name, gate.reason)
                    continue
        if not rec.status.done:
            rec.status = StageState.SKIPPED
            rec.error = (f"not run: kfp.local stopped the pipeline after stage {', '.join(failed)} failed"
                         if failed else f"not run: {error or 'the pipeline stopped'}")
    return finish(record, error=error or "kfp.local reported a failure")


class _Watcher(threading.Thread):
    """Turns the stages' store files into run events while kfp.local runs (one run, or a sweep's variants)."""

    def __init__(self, store, records: list[RunRecord], pipeline: Pipeline, on_event):
        super().__init__(name="jp-kfp-local-watch", daemon=True)
        self.store, self.records, self.pipeline, self.on_event = store, records, pipeline, on_event
        self.stop = threading.Event()
        self.started: set[tuple[str, str]] = set()
        self.finished: set[tuple[str, str]] = set()

    def poll(self) -> None:
        for record in self.records:
            self._poll(record)

    def _poll(self, record: RunRecord) -> None:
        # kfp.local runs independent tasks and loop iterations at the same time: a stage may start
        # and finish between two polls, so events follow what changed, each stage's in order.
        changed = False
        for name, rec in record.stages.items():
            if rec.status == StageState.PENDING and self.store.exists(stage_key(record.run_id, name, "input.ipynb")):
                rec.status, rec.started_at = StageState.RUNNING, now_iso()
                changed = True
        record_from_results(record, self.store, self.pipeline)
        events = []
        for name, rec in record.stages.items():
            key = (record.run_id, name)
            if rec.status not in (StageState.PENDING, StageState.SKIPPED) and key not in self.started:
                self.started.add(key)
                events.append(("stage-started", name))
            if rec.status.done and key not in self.finished:
                self.finished.add(key)
                events.append(("stage-finished", name))
        if changed or events:
            save_run(self.store, record)
        for kind, name in events:
            self.on_event(kind, record, name)

    def run(self) -> None:
        while not self.stop.wait(POLL_SECONDS):
            self.poll()


def new_record(pipeline: Pipeline, store, values: dict, run_id: str | None = None, **fields) -> RunRecord:
    """The record of a kfp-local run of ``pipeline`` with parameter ``values``."""
    return records_mod.new_record(pipeline, store=store.url, target="kfp-local", parameters=values, run_id=run_id, **fields)


def local_options(pipeline: Pipeline, store) -> CompileOptions:
    """Compile options for running on this machine against ``store`` (no cluster endpoint), with
    the working files packed into the store as for a cluster."""
    packed = bundle(pipeline)
    upload(store, packed)
    return CompileOptions.for_pipeline(pipeline, store=store.absolute_url(), s3_endpoint="",
                                       files_key=packed.key if packed else None, create_volumes=False)


@contextlib.contextmanager
def _run_folder(run_id: str):
    """Tell the tasks kfp.local starts (child processes) which run folder is theirs."""
    previous = os.environ.get(RUN_ID_ENV)
    os.environ[RUN_ID_ENV] = run_id
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(RUN_ID_ENV, None)
        else:
            os.environ[RUN_ID_ENV] = previous


def outputs_root(store, run_id: str, tmp: str) -> str:
    """Where kfp.local keeps the tasks' output artifacts (HTML, Metrics, Model): in the run's folder
    (``kfp-outputs/``) of a local store, else a temporary folder."""
    root = getattr(store, "root", None)
    return str(Path(root) / run_prefix(run_id) / OUTPUTS_FOLDER) if root is not None else str(Path(tmp) / "outputs")


def execute(yaml_text: str, arguments: dict, store, records: list[RunRecord], pipeline: Pipeline,
            on_event, run_id: str | None = None) -> list[RunRecord]:
    """Run compiled ``yaml_text`` with kfp.local, turning the stages' files into ``records`` and events;
    the stages outside a sweep's variant loop write to run ``run_id`` (default: the first record's)."""
    from kfp import components, local

    for record in records:
        save_run(store, record)
        on_event("run-started", record, None)
    watcher = _Watcher(store, records, pipeline, on_event)
    log = io.StringIO()
    error = None
    with _lock, _run_folder(run_id or records[0].run_id), warnings.catch_warnings(), \
            tempfile.TemporaryDirectory(prefix="jp-kfp-local-") as tmp:
        yaml_path = Path(tmp) / "pipeline.yaml"
        yaml_path.write_text(yaml_text)
        local.init(runner=local.SubprocessRunner(use_venv=False),
                   pipeline_root=outputs_root(store, run_id or records[0].run_id, tmp), raise_on_error=False)
        compiled = components.load_component_from_file(str(yaml_path))
        watcher.start()
        try:
            warnings.simplefilter("ignore", RuntimeWarning)  # "non-Python base image": it is ours
            warnings.simplefilter("ignore", UserWarning)  # "accelerator has no effect locally": known
            # kfp.local echoes every task's output on stdout; keep it out of --json output.
            with contextlib.redirect_stdout(log):
                compiled(**arguments)
        except Exception as exc:
            error = f"kfp.local: {type(exc).__name__}: {exc}"
        finally:
            watcher.stop.set()
            watcher.join()
    for record in records:
        store.put_bytes(f"{run_prefix(record.run_id)}/kfp-local.log", log.getvalue().encode())
    watcher.poll()  # events of the last stages
    for record in records:
        _finish(record, pipeline, error, store)
        save_run(store, record)
    watcher.poll()  # skipped stages
    for record in records:
        on_event("run-finished", record, None)
    return records


def run_kfp_local(pipeline: Pipeline, parameters: dict | None, store, options: dict | None = None,
                  on_event=None) -> RunRecord:
    """Compile ``pipeline`` and run the compiled spec with kfp.local; return the finished record."""
    options = options or {}
    on_event = on_event or (lambda kind, record, stage: None)
    pipeline.require_valid()
    values = params_mod.resolve(pipeline, parameters)
    store = open_store(store)
    store.check()
    record = new_record(pipeline, store, values, options.get("run_id"))
    yaml_text = compile_pipeline(pipeline, options=local_options(pipeline, store))
    snapshot(store, pipeline, record.run_id, yaml_text)
    return execute(yaml_text, parameter_arguments(pipeline, values), store, [record], pipeline, on_event)[0]


__all__ = ["run_kfp_local", "record_from_results", "execute", "local_options", "new_record", "snapshot"]
