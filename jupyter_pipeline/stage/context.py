"""The run context inside a stage's kernel, and the metric API users call from their code.

A stage notebook activates the context in its first generated cell; outside a pipeline run (an
interactive notebook) nothing is active and ``log_metric`` only records in memory and prints, so
the same notebook works top to bottom in JupyterLab.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass, field

from ..store.records import stage_key, stages_prefix


@dataclass(frozen=True)
class RunContext:
    """Where the current stage writes: its store, run id and stage name."""

    store_url: str
    run_id: str
    stage: str
    item: int | None = None  # the item index in a `map:` stage
    #: In a `workers:` stage: {"rank", "world_size", "coordinator", "barrier", ...} of this replica.
    gang: dict | None = field(default=None, compare=False, hash=False)

    @property
    def rank(self) -> int:
        return int(self.gang["rank"]) if self.gang else 0

    @property
    def store(self):
        from ..store.base import open_store

        return open_store(self.store_url)

    def key(self, name: str) -> str:
        return stage_key(self.run_id, self.stage, name, self.item)


_active: RunContext | None = None
_interactive_metrics: dict[str, float] = {}


def activate(store_url: str, run_id: str, stage: str, item: int | None = None, gang: dict | None = None) -> RunContext:
    """Make ``RunContext(store_url, run_id, stage, item, gang)`` the context of this process."""
    global _active
    _active = RunContext(store_url, run_id, stage, item, gang)
    return _active


def current() -> RunContext | None:
    """The active run context, or None outside a pipeline run."""
    return _active


def _metric_value(name: str, value) -> float | int | str:
    if not isinstance(name, str) or not name:
        raise TypeError("log_metric(name, value): name must be a non-empty string")
    if hasattr(value, "item") and callable(value.item):  # NumPy and JAX scalars
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Number):
        raise TypeError(f"log_metric({name!r}, ...): value must be a number, got {type(value).__name__}")
    value = float(value) if not isinstance(value, int) else value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf
    return value


def log_metric(name: str, value) -> None:
    """Record a numeric metric of the current stage (shown in the run record and the UI).

    Example::

        from jupyter_pipeline import log_metric
        log_metric("accuracy", acc)
    """
    value = _metric_value(name, value)
    ctx = current()
    if ctx is None or ctx.rank:  # replicas other than rank 0 only print: rank 0 speaks for the stage
        _interactive_metrics[name] = value
        print(f"metric {name} = {value}")
        return
    store = ctx.store
    key = ctx.key("metrics.json")
    metrics = store.get_json(key) if store.exists(key) else {}
    metrics[name] = value
    store.put_json(key, metrics)


def run_metrics() -> dict:
    """Metrics of the whole run so far (all stages), for model metadata."""
    ctx = current()
    if ctx is None:
        return dict(_interactive_metrics)
    store = ctx.store
    out: dict = {}
    for key in store.list(stages_prefix(ctx.run_id), recursive=True):
        if key.endswith("/metrics.json"):
            out.update(store.get_json(key))
    return out


def default_store_url() -> str:
    """The store a call outside a run uses (``JUPYTER_PIPELINE_STORE`` or the default)."""
    from ..store.base import resolve_store_url

    ctx = current()
    return ctx.store_url if ctx else resolve_store_url(os.environ.get("JUPYTER_PIPELINE_STORE"))
