"""Run records: the persisted, JSON-shaped state of a pipeline run and of each of its stages.

The JSON shape (``to_json``) is the contract shared by the CLI's ``--json`` output, the REST API
and the TypeScript interfaces of the JupyterLab extension.
"""

from __future__ import annotations

import datetime as _dt
import enum
import secrets
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..notebook.pipeline import Pipeline


class StageState(str, enum.Enum):
    """The state of one stage within a run."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # not run: a stage it depends on failed, or its `if:` condition (or an upstream one) was false
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def done(self) -> bool:
        return self not in (StageState.PENDING, StageState.RUNNING)


class RunState(str, enum.Enum):
    """The state of a whole run."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


def now_iso() -> str:
    """The current UTC time in ISO 8601 with a ``Z`` suffix."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(value: str) -> _dt.datetime:
    return _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def new_run_id(pipeline_name: str) -> str:
    """A run id that sorts by start time: ``20261121-153000-digits-3f2a``."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^a-z0-9-]+", "-", pipeline_name.lower()).strip("-")[:40] or "pipeline"
    return f"{stamp}-{slug}-{secrets.token_hex(2)}"


@dataclass
class StageRecord:
    """What happened to one stage: state, times, output locations, metrics and error."""

    status: StageState = StageState.PENDING
    started_at: str | None = None
    finished_at: str | None = None
    output_notebook: str | None = None
    input_notebook: str | None = None
    attempts: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    error: str | None = None
    error_cell: int | None = None
    reused: bool = False
    reused_from: str | None = None  # run id whose identical stage this one shares (sweeps)
    cache_key: str | None = None
    fingerprint: dict | None = None  # what the cache key hashes: code, setup, parameters, upstream keys
    why: str | None = None  # with --incremental: why the stage ran (or that it was reused)
    items: list[dict] = field(default_factory=list)  # per-item state of a `map:` stage
    replicas: list[dict] = field(default_factory=list)  # per-replica state of a `workers:` stage
    skip_reason: str | None = None  # skipped though nothing failed: why (see stage.gate), "condition false: ..."
    #: Models the stage registered (``{name, version, format, uri}``) or promoted (``{..., alias}``).
    models: list[dict] = field(default_factory=list)

    @property
    def passed_over(self) -> bool:
        """Whether the stage was skipped by a condition (its own or an upstream stage's): a run still succeeds."""
        return self.status == StageState.SKIPPED and self.skip_reason is not None and not self.error

    @property
    def duration(self) -> float | None:
        if not (self.started_at and self.finished_at):
            return None
        return (parse_iso(self.finished_at) - parse_iso(self.started_at)).total_seconds()

    def to_json(self) -> dict:
        data = asdict(self)
        data["status"] = self.status.value
        data["duration"] = self.duration
        if data["error"] is None:
            del data["error"]
            del data["error_cell"]
        if data["skip_reason"] is None:
            del data["skip_reason"]
        return data

    @classmethod
    def from_json(cls, data: dict) -> "StageRecord":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["status"] = StageState(known.get("status", "pending"))
        return cls(**known)


@dataclass
class RunRecord:
    """The whole run: identity, inputs, overall status and one :class:`StageRecord` per stage."""

    run_id: str
    pipeline: str
    notebook: str
    store: str
    target: str = "local"
    status: RunState = RunState.RUNNING
    parameters: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=now_iso)
    finished_at: str | None = None
    stages: dict[str, StageRecord] = field(default_factory=dict)
    edges: list[list[str]] = field(default_factory=list)
    error: str | None = None
    external_id: str | None = None  # e.g. the Kubeflow run id
    url: str | None = None  # e.g. the Kubeflow run page
    history: list[dict] = field(default_factory=list)
    owner: dict | None = None  # {"host", "pid"} of the process driving a local run
    sweep_id: str | None = None  # the sweep this run is a variant of
    kernel_mode: str = "fresh"  # local runs: "fresh" (a kernel per stage) or "shared" (--shared-kernel)

    @property
    def key(self) -> str:
        return run_key(self.run_id)

    def metrics(self) -> dict[str, Any]:
        """All metrics logged by the run's stages, keyed by metric name."""
        out: dict[str, Any] = {}
        for rec in self.stages.values():
            out.update(rec.metrics)
        return out

    def to_json(self) -> dict:
        return {
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "notebook": self.notebook,
            "status": self.status.value,
            "target": self.target,
            "parameters": self.parameters,
            "store": self.store,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "stages": {name: rec.to_json() for name, rec in self.stages.items()},
            "edges": self.edges,
            "metrics": self.metrics(),
            "error": self.error,
            "external_id": self.external_id,
            "url": self.url,
            "history": self.history,
            "owner": self.owner,
            "sweep_id": self.sweep_id,
            "kernel_mode": self.kernel_mode,
        }

    @classmethod
    def from_json(cls, data: dict) -> "RunRecord":
        return cls(
            run_id=data["run_id"],
            pipeline=data.get("pipeline", ""),
            notebook=data.get("notebook", ""),
            store=data.get("store", ""),
            target=data.get("target", "local"),
            status=RunState(data.get("status", "running")),
            parameters=data.get("parameters", {}),
            created_at=data.get("created_at", ""),
            finished_at=data.get("finished_at"),
            stages={k: StageRecord.from_json(v) for k, v in data.get("stages", {}).items()},
            edges=data.get("edges", []),
            error=data.get("error"),
            external_id=data.get("external_id"),
            url=data.get("url"),
            history=data.get("history", []),
            owner=data.get("owner"),
            sweep_id=data.get("sweep_id"),
            kernel_mode=data.get("kernel_mode", "fresh"),
        )


@dataclass
class SweepResult:
    """The variants of a sweep with their runs, metrics and ranking (``sweeps/<id>/sweep.json``)."""

    sweep_id: str
    notebook: str
    metric: str | None
    goal: str
    runs: list[RunRecord] = field(default_factory=list)
    swept: list[str] = field(default_factory=list)
    created_at: str = field(default_factory=now_iso)

    @property
    def ranked(self) -> list[RunRecord]:
        if not self.metric:
            return list(self.runs)
        scored = [r for r in self.runs if isinstance(r.metrics().get(self.metric), (int, float))]
        rest = [r for r in self.runs if r not in scored]
        scored.sort(key=lambda r: r.metrics()[self.metric], reverse=self.goal == "max")
        return scored + rest

    @property
    def best(self) -> RunRecord | None:
        ranked = self.ranked
        if not self.metric or not ranked or self.metric not in ranked[0].metrics():
            return None
        return ranked[0]

    @property
    def stage_runs(self) -> tuple[int, int]:
        """(stage executions, stage results used): the difference is what sharing saved."""
        used = sum(len(r.stages) for r in self.runs)
        shared = sum(1 for r in self.runs for s in r.stages.values() if s.reused_from)
        return used - shared, used

    def to_json(self) -> dict:
        best = self.best
        executed, used = self.stage_runs
        return {
            "sweep_id": self.sweep_id,
            "notebook": self.notebook,
            "metric": self.metric,
            "goal": self.goal,
            "swept": self.swept,
            "created_at": self.created_at,
            "best": best.run_id if best else None,
            "stages_executed": executed,
            "stages_used": used,
            "variants": [
                {"run_id": r.run_id, "status": r.status.value, "parameters": {k: r.parameters[k] for k in self.swept},
                 "metrics": r.metrics(), "best": best is not None and r.run_id == best.run_id}
                for r in self.ranked
            ],
        }


# -- lifecycle: what every target does with a run's record -----------------------------------------
def new_record(pipeline: Pipeline, *, store: str, target: str, parameters: dict, run_id: str | None = None,
               **fields) -> RunRecord:
    """The record of a new run of ``pipeline`` on ``target``: every stage pending, the edges as parsed."""
    return RunRecord(
        run_id=run_id or new_run_id(pipeline.name), pipeline=pipeline.name,
        notebook=str(Path(pipeline.path).resolve()), store=store, target=target, parameters=parameters,
        stages={s.name: StageRecord() for s in pipeline.stages}, edges=[list(e) for e in pipeline.edges], **fields,
    )


def failed_stages(record: RunRecord) -> list[str]:
    return [n for n, r in record.stages.items() if r.status == StageState.FAILED]


def failure_message(record: RunRecord) -> str | None:
    """How every target words a failed run: ``stage X failed`` or ``stages X, Y failed`` (None: none did)."""
    failed = failed_stages(record)
    return f"stage{'s' if len(failed) > 1 else ''} {', '.join(failed)} failed" if failed else None


def timeout_error(seconds: int) -> str:
    """How every target words a stage its ``timeout:`` tag stopped."""
    return f"timed out after {seconds} s (tag timeout:)"


def finish(record: RunRecord, *, cancelled: bool = False, error: str | None = None) -> RunRecord:
    """End a run: cancelled, succeeded (every stage did) or failed, naming its failed stages (else
    ``error``); the record no longer has an owner."""
    if cancelled:
        record.status = RunState.CANCELLED
    elif all(r.status == StageState.SUCCEEDED or r.passed_over for r in record.stages.values()):
        record.status = RunState.SUCCEEDED
    else:
        record.status = RunState.FAILED
        record.error = failure_message(record) or error
    record.finished_at = now_iso()
    record.owner = None
    return record


def reopen(record: RunRecord, pipeline: Pipeline, rerun: list[str], *, owner: dict, kernel_mode: str) -> RunRecord:
    """Resume a run: the stages in ``rerun`` start afresh (a ``map:`` stage keeps its items, so only
    the failed ones run again), the others keep their results (``reused``); the record follows the
    pipeline as it is now, is running again under ``owner`` and says in its history what re-runs."""
    for stage in pipeline.stages:
        if stage.name in rerun:
            old = record.stages.get(stage.name, StageRecord())
            record.stages[stage.name] = StageRecord(items=old.items if stage.options.map_var else [])
        else:
            record.stages[stage.name].reused = True
    record.stages = {s.name: record.stages[s.name] for s in pipeline.stages}
    record.edges = [list(e) for e in pipeline.edges]
    record.status, record.finished_at, record.error = RunState.RUNNING, None, None
    record.owner, record.kernel_mode = owner, kernel_mode
    record.history.append({"event": "resumed", "at": now_iso(), "stages": sorted(rerun)})
    return record


def snapshot(store, pipeline: Pipeline, run_id: str, compiled: str | None = None) -> None:
    """What a run folder keeps of its pipeline: the notebook, the parsed pipeline and (compiled for
    Kubeflow) the pipeline YAML, so resume and the UI read the run as it was started."""
    prefix = run_prefix(run_id)
    if compiled is not None:
        store.put_bytes(f"{prefix}/pipeline.yaml", compiled.encode())
    with open(pipeline.path, "rb") as f:
        store.put_bytes(f"{prefix}/notebook.ipynb", f.read())
    store.put_json(f"{prefix}/pipeline.json", pipeline.to_json())


def link_outputs(store, run_id: str, stage: str, source_run: str, source_stage: str | None = None) -> None:
    """Point ``run_id``'s output index of ``stage`` at the values ``source_run`` saved (a reused or
    shared stage: nothing is copied; each entry keeps the run its files are in)."""
    index = store.get_json(stage_key(source_run, source_stage or stage, "outputs.json"))
    pointed = {name: {**e, "run_id": e.get("run_id", source_run)} for name, e in index.items()}
    store.put_json(stage_key(run_id, stage, "outputs.json"), pointed)


# -- store layout (docs/store.md) ---------------------------------------------------------------
def error_with_cell(error: str | None, cell: int | None) -> str:
    """A stage's error naming the source cell (1-based) it failed in, unless the message names it already."""
    error = error or ""
    return f"{error} (cell {cell})" if cell and f"cell {cell}" not in error else error


def run_prefix(run_id: str) -> str:
    return f"runs/{run_id}"


def run_key(run_id: str) -> str:
    return f"runs/{run_id}/run.json"


def sweep_key(sweep_id: str, name: str = "sweep.json") -> str:
    """Key of a file of a sweep: its record ``sweep.json``, a Kubeflow sweep's ``pipeline.yaml``."""
    return f"sweeps/{sweep_id}/{name}"


def stages_prefix(run_id: str) -> str:
    """The folder under which every stage of a run keeps its files."""
    return f"{run_prefix(run_id)}/stages/"


def stage_key(run_id: str, stage: str, name: str, item: int | None = None, replica: int | None = None) -> str:
    """Key of a file of one stage (or of one item of a ``map:`` stage, or of one replica of a
    ``workers:`` stage): ``output.ipynb``, ``vars/x.npy``..."""
    if replica is not None:
        return f"runs/{run_id}/stages/{stage}/replicas/{replica}/{name}"
    if item is not None:
        return f"runs/{run_id}/stages/{stage}/items/{item}/{name}"
    return f"runs/{run_id}/stages/{stage}/{name}"


# -- persistence -----------------------------------------------------------------------------------
def save_run(store, record: RunRecord) -> None:
    """Publish the run record (atomically, as every store write is)."""
    store.put_json(record.key, record.to_json())


def load_run(store, run_id: str) -> RunRecord:
    """Read a run record back; raises :class:`RunNotFound`."""
    from ..exceptions import ArtifactNotFound, RunNotFound

    try:
        return RunRecord.from_json(store.get_json(run_key(run_id)))
    except ArtifactNotFound:
        raise RunNotFound(run_id, store.url) from None


def list_runs(store, notebook: str | None = None, limit: int | None = None) -> list[RunRecord]:
    """Run records in the store, newest first, optionally only those of one notebook."""
    from ..exceptions import ArtifactNotFound

    ids = sorted((k[len("runs/"):].rstrip("/") for k in store.list("runs/") if k.endswith("/")), reverse=True)
    out: list[RunRecord] = []
    for run_id in ids:
        try:
            record = RunRecord.from_json(store.get_json(run_key(run_id)))
        except (ArtifactNotFound, ValueError, KeyError):
            continue  # a run folder whose record is not written yet
        if notebook and record.notebook != notebook:
            continue
        out.append(record)
        if limit and len(out) >= limit:
            break
    return out
