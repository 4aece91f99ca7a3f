"""Whether a stage runs: its ``if:`` condition on the values upstream stages saved and the run's parameters.

Every target asks through :func:`decide`: the local runner before it starts a stage (:func:`admit`),
the kfp-local target after kfp.local ran (to say why a stage did not run); :func:`skip` is the one
place a stage's record becomes "skipped by a condition". The values come from the
producers' output indexes (``outputs.json``), where each scalar a condition reads is kept as a
plain JSON value (:func:`jupyter_pipeline.stage.io.save_outputs`): nothing is unpickled to decide.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..exceptions import PipelineError
from ..notebook.condition import evaluate, parse
from ..notebook.pipeline import Stage
from ..store.records import RunRecord, StageState, now_iso, stage_key


@dataclass(frozen=True)
class Gate:
    """What to do with a stage whose upstream stages ended: run it, skip it (``reason``), or fail it (``error``)."""

    run: bool
    reason: str | None = None  # skipped: why; run: the condition that held, with its values
    error: str | None = None  # the condition could not be evaluated


def skip(record: RunRecord, stage: str, reason: str) -> None:
    """Mark ``stage`` skipped because a condition was false (``reason`` says which, with its values)."""
    rec = record.stages[stage]
    rec.status, rec.skip_reason, rec.error, rec.error_cell = StageState.SKIPPED, reason, None, None
    rec.finished_at = now_iso()


def admit(stage: Stage, record: RunRecord, store) -> bool:
    """Whether ``stage`` starts now; if not, its record says why (skipped) or that its condition could
    not be evaluated (failed). A condition that holds is noted in the record's ``why``."""
    gate = decide(stage, record, store)
    rec = record.stages[stage.name]
    if gate.run and gate.reason:
        rec.why = f"{rec.why}; {gate.reason}" if rec.why else gate.reason
    elif gate.error:
        rec.status, rec.error, rec.finished_at = StageState.FAILED, gate.error, now_iso()
    elif not gate.run:
        skip(record, stage.name, gate.reason)
    return gate.run


def upstream_skip(stage: Stage, record: RunRecord) -> str | None:
    """Why ``stage`` is skipped because a stage it depends on was skipped by a condition, or None."""
    for up in stage.depends_on:
        rec = record.stages[up]
        if rec.passed_over:
            if rec.skip_reason.startswith("upstream stage"):
                return rec.skip_reason
            return f"upstream stage {up} was skipped ({rec.skip_reason})"
    return None


def condition_values(store, run_id: str, stage: Stage, parameters: dict, names) -> dict:
    """The values of ``names`` for ``stage``'s condition: parameters, and scalars its producers saved."""
    values = {name: parameters[name] for name in names if name in parameters}
    producers = dict(stage.inputs)
    for name in names:
        if name in values:
            continue
        producer = producers[name]
        index = store.get_json(stage_key(run_id, producer, "outputs.json"))
        entry = index.get(name) or {}
        if "scalar" not in entry:
            raise PipelineError(f"stage '{producer}' saved no plain value of '{name}' (was it run by an older "
                                "version? run it again)")
        values[name] = entry["scalar"]
    return values


def decide(stage: Stage, record: RunRecord, store) -> Gate:
    """The gate of ``stage``, once every stage it depends on succeeded or was skipped by a condition."""
    reason = upstream_skip(stage, record)
    if reason:
        return Gate(False, reason)
    if not stage.options.condition:
        return Gate(True)
    condition = parse(stage.options.condition)
    try:
        values = condition_values(store, record.run_id, stage, record.parameters, condition.names)
        holds, why = evaluate(condition, values)
    except (TypeError, KeyError, PipelineError) as exc:
        return Gate(False, error=f"its condition `if:{condition}` cannot be evaluated: {exc}")
    return Gate(True, f"condition true: {why}") if holds else Gate(False, f"condition false: {why}")
