"""``map:`` stages in the local runner: each item of a stage run in parallel, then the outputs gathered.

How a value splits into items is :mod:`jupyter_pipeline.stage.fanout`'s (stage kernels import that module,
never this one).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Callable

from ..exceptions import PipelineError
from ..stage.fanout import gather, map_count, mean_metrics
from ..notebook.pipeline import Stage
from ..store.records import RunRecord, now_iso

if TYPE_CHECKING:
    from .launcher import Launcher
    from ..store.base import Store


class MapStages:
    """Runs the ``map:`` stages of :class:`~jupyter_pipeline.local.runner.LocalRunner`'s runs: each item is
    an execution by the run's ``launcher``; ``publish(record)`` writes the record as items change."""

    def __init__(self, store: Store, launcher: Launcher, publish: Callable[[RunRecord], None]):
        self.store, self.launcher, self.publish = store, launcher, publish

    def run(self, stage: Stage, record: RunRecord) -> dict:
        """Run a ``map:`` stage once per item, in parallel; then publish its outputs as lists."""
        rec = record.stages[stage.name]
        o = stage.options
        try:
            count = map_count(self.store, record.run_id, stage.name, o.map_var, dict(stage.inputs).get(o.map_var),
                              o.map_chunks, record.parameters)
        except PipelineError as exc:
            return {"status": "failed", "error": str(exc)}
        done = {it["index"]: it for it in rec.items if it.get("status") == "succeeded"}  # kept by resume
        rec.items = [done.get(i, {"index": i, "status": "pending"}) for i in range(count)]
        self.publish(record)
        todo = [i for i in range(count) if i not in done]
        workers = self.launcher.workers
        size = max(1, min(len(todo), workers, stage.options.parallelism or workers))

        def run_item(i: int) -> None:
            if self.launcher.cancelled.is_set():
                rec.items[i] = {"index": i, "status": "cancelled"}
                return
            rec.items[i] = {"index": i, "status": "running", "started_at": now_iso()}
            self.publish(record)
            result = self.launcher.execute(stage, record, i)
            rec.items[i] = {
                "index": i, "status": result["status"], "started_at": rec.items[i]["started_at"],
                "finished_at": now_iso(), "output_notebook": result.get("output_notebook"),
                "metrics": result.get("metrics", {}),
                **({"error": result.get("error"), "error_cell": result.get("error_cell")}
                   if result["status"] != "succeeded" else {}),
            }
            self.publish(record)

        with ThreadPoolExecutor(max_workers=size, thread_name_prefix=f"jp-{stage.name}") as pool:
            list(pool.map(run_item, todo))
        metrics = mean_metrics(rec.items)
        bad = [it for it in rec.items if it["status"] != "succeeded"]
        if bad:
            first = bad[0]
            status = "cancelled" if self.launcher.cancelled.is_set() else "failed"
            return {"status": status, "metrics": metrics, "output_notebook": first.get("output_notebook"),
                    "error": f"{len(bad)} of {count} item(s) did not succeed; item {first['index']}: "
                             f"{first.get('error') or first['status']}",
                    "error_cell": first.get("error_cell")}
        gather(self.store, record.run_id, stage.name, stage.outputs, count)
        return {"status": "succeeded", "metrics": metrics,
                "output_notebook": rec.items[0].get("output_notebook") if rec.items else None}
