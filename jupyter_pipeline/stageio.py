"""What a generated stage notebook calls in its kernel: activate the run, load inputs, save outputs.

Kept import-light: a stage kernel imports this module first, and its start-up time is part of
every stage's overhead.
"""

from __future__ import annotations

from . import context
from .records import stage_key

_indexes: dict[tuple[str, str], dict] = {}


def activate(run: dict) -> None:
    """Called by the first generated cell with ``{"store", "run_id", "stage"}``."""
    context.activate(run["store"], run["run_id"], run["stage"])
    _indexes.clear()


def _index(producer: str) -> dict:
    ctx = context.current()
    key = (ctx.run_id, producer)
    if key not in _indexes:
        _indexes[key] = ctx.store.get_json(stage_key(ctx.run_id, producer, "outputs.json"))
    return _indexes[key]


def load(name: str, producer: str):
    """The value of ``name`` as stage ``producer`` left it."""
    from .marshal import load_value

    ctx = context.current()
    entry = _index(producer).get(name)
    if entry is None:
        raise RuntimeError(f"stage '{producer}' did not save variable '{name}' that stage '{ctx.stage}' needs")
    return load_value(ctx.store, stage_key(ctx.run_id, producer, "vars"), entry)


def save_outputs(names: list[str], namespace: dict) -> None:
    """Save each variable later stages need, then publish the stage's output index."""
    from .exceptions import PipelineError
    from .marshal import save_value

    ctx = context.current()
    missing = [n for n in names if n not in namespace]
    if missing:
        raise PipelineError(
            f"stage '{ctx.stage}' did not define {', '.join(repr(n) for n in missing)}, which later stages use "
            "(was the assignment inside a branch that did not run?)"
        )
    index = {}
    for name in names:
        index[name] = save_value(name, namespace[name], ctx.store, stage_key(ctx.run_id, ctx.stage, "vars"), ctx.stage)
    ctx.store.put_json(stage_key(ctx.run_id, ctx.stage, "outputs.json"), index)


def log_metrics_of(names: list[str], namespace: dict) -> None:
    """Kale's ``pipeline-metrics`` cell: log each named numeric variable as a metric."""
    for name in names:
        context.log_metric(name, namespace[name])
