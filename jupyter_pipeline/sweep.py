"""Parameter sweeps: run a pipeline once per combination of parameter values, sharing the stages
whose inputs are identical across variants, and rank the variants by a logged metric.

    jupyter-pipeline run digits.ipynb --sweep learning_rate=0.1,0.01 --sweep hidden_units=16,64 \\
        --metric accuracy --goal max
"""

from __future__ import annotations

import itertools
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from . import parameters as params_mod
from .exceptions import ParameterError
from .pipeline import Pipeline
from .records import RunRecord, new_run_id, now_iso
from .runner import LocalRunner
from .stagecache import StageCache
from .store import Store, open_store


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


def variants(pipeline: Pipeline, grid: dict[str, list], fixed: dict | None = None,
             sample: int | None = None, seed: int = 0) -> list[dict]:
    """Parameter overrides of each variant: the grid's product, or ``sample`` of it at random."""
    typed = {name: [params_mod.coerce(pipeline, name, v) for v in values] for name, values in grid.items()}
    combos = [dict(zip(typed, values)) for values in itertools.product(*typed.values())]
    if sample is not None and sample < len(combos):
        combos = random.Random(seed).sample(combos, sample)
    return [{**(fixed or {}), **combo} for combo in combos]


@dataclass
class SweepResult:
    """The variants of a sweep with their runs, metrics and ranking."""

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
    store.put_json(f"sweeps/{sweep_id}/sweep.json", result.to_json())
    return result
