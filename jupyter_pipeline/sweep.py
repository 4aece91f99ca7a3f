"""Parameter sweeps: run a pipeline once per combination of parameter values, sharing the stages
whose inputs are identical across variants, and rank the variants by a logged metric.

    jupyter-pipeline run digits.ipynb --sweep learning_rate=0.1,0.01 --sweep hidden_units=16,64 \\
        --metric accuracy --goal max
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from .exceptions import ParameterError
from .notebook.pipeline import Pipeline
from .plan import variants
from .store.records import RunRecord, SweepResult, new_run_id, sweep_key
from .local.runner import LocalRunner
from .stagecache import StageCache
from .store.base import Store, open_store


def parse_sweep_args(items: list[str]) -> dict[str, list[str]]:
    """``["lr=0.1,0.01", "units=32,64"]`` → ``{"lr": ["0.1", "0.01"], "units": ["32", "64"]}``."""
    out: dict[str, list[str]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not name.strip() or not values.strip():
            raise ParameterError(f"--sweep {item!r}: write NAME=V1,V2,... (for example --sweep learning_rate=0.1,0.01)")
        if name in out:
            raise ParameterError(f"--sweep names parameter '{name}' twice")
        out[name.strip()] = [v.strip() for v in values.split(",") if v.strip()]
    return out


def run_sweep(pipeline: Pipeline, grid: dict[str, list], *, store: Store | str | None = None,
              fixed: dict | None = None, metric: str | None = None, goal: str = "max",
              sample: int | None = None, max_parallel: int | None = None, workers: int | None = None,
              on_event=None, sweep_id: str | None = None) -> SweepResult:
    """Run every variant; identical stages run once. Returns the ranked result (also stored)."""
    pipeline.require_valid()
    if goal not in ("max", "min"):
        raise ParameterError(f"--goal must be max or min, not {goal!r}")
    store = open_store(store)
    overrides = variants(pipeline, grid, fixed, sample)
    sweep_id = sweep_id or new_run_id(f"{pipeline.name}-sweep")
    result = SweepResult(sweep_id, pipeline.path, metric, goal, swept=list(grid))
    cache = StageCache()
    probe = LocalRunner(store, workers=workers)
    slots = threading.BoundedSemaphore(probe.workers)  # kernels at once, across all variants
    lock = threading.Lock()

    def one(values: dict) -> RunRecord:
        runner = LocalRunner(store, workers=probe.workers, cache=cache, slots=slots, warm=1,
                             sweep_id=sweep_id, on_event=on_event)
        record = runner.run(pipeline, values)
        with lock:
            result.runs.append(record)
        return record

    with ThreadPoolExecutor(max_workers=max_parallel or len(overrides) or 1, thread_name_prefix="jp-variant") as pool:
        list(pool.map(one, overrides))
    store.put_json(sweep_key(sweep_id), result.to_json())
    return result


__all__ = ["SweepResult", "parse_sweep_args", "run_sweep", "variants"]
