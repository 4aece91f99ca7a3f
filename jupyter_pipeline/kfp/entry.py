"""What a compiled stage component runs inside its pod (or kfp.local's subprocess).

The component's own function body is one call to :func:`run_component`; everything else lives
here, in the image's installed package, so a compiled spec stays small and the behaviour is
tested like any other module. Kept import-light: it runs once per stage.

Per stage, in the store: ``input.ipynb`` (the notebook embedded in the spec, written first, so
its appearance means "started"), ``output.ipynb`` (by the stage runner, also on failure) and
``result.json`` (status, error, metrics, times, attempts), which the kfp-local target and
``runs --target kfp`` read back into the run record.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys

#: Environment variable the S3 store reads its endpoint from (see ``store_s3``).
ENDPOINT_ENV = "JUPYTER_PIPELINE_S3_ENDPOINT"
RESULT_FILE = "result.json"
#: Written by a ``map:`` stage's plan task: ``{"count": N}``, how many items the loop runs.
ITEMS_FILE = "items.json"


class StageTimeout(Exception):
    """Raised in the stage's process when its kernel ignored the interrupt sent at ``timeout:``."""


#: Seconds a kernel gets to stop after the interrupt before the stage process gives up on it.
INTERRUPT_GRACE_SECONDS = 30


def _children() -> list[int]:
    """Process ids of this process's children (the kernel), from /proc; empty elsewhere."""
    me, out = str(os.getpid()), []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[1] == me:
                        out.append(int(entry))
            except (OSError, IndexError):
                continue
    return out


class _Deadline:
    """``timeout:`` for the stage: interrupt the kernel (like Jupyter's stop button) so the running
    cell fails cleanly and papermill still saves the executed notebook; raise only if it won't stop."""

    def __init__(self, seconds: int):
        self.seconds, self.fired = seconds, False

    def __enter__(self):
        if self.seconds and hasattr(signal, "SIGALRM"):
            signal.signal(signal.SIGALRM, self._fire)
            signal.alarm(self.seconds)
        return self

    def _fire(self, signum, frame):  # noqa: ARG002
        kernels = _children()
        if self.fired or not kernels:
            raise StageTimeout(f"timed out after {self.seconds} s (tag timeout:)")
        self.fired = True
        for pid in kernels:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
        signal.alarm(INTERRUPT_GRACE_SECONDS)

    def __exit__(self, *exc):
        if self.seconds and hasattr(signal, "SIGALRM"):
            signal.alarm(0)


def _open(store: str, run_id: str, job_id: str, s3_endpoint: str):
    from ..store import open_store

    if s3_endpoint:
        os.environ[ENDPOINT_ENV] = s3_endpoint  # the kernel inherits it
    return open_store(store), run_id or f"kfp-{job_id}"


def run_component(*, stage: str, parameters: dict, notebook: str, store: str, run_id: str, job_id: str,
                  s3_endpoint: str = "", workdir: str = "", timeout: int = 0, item: int | None = None) -> dict:
    """Run ``stage`` of a compiled pipeline; raise ``RuntimeError`` when it fails (KFP marks the task failed).

    ``run_id`` names the run's folder in the store; when empty (a pipeline uploaded by hand and
    started from the KFP UI) the KFP job id is used, as ``kfp-<job id>``. ``item`` is the index
    of the item a ``map:`` stage's task runs on; its files go under ``items/<item>/``.
    """
    from ..records import now_iso, stage_key
    from ..stagerun import run_stage
    from .gang import is_gang, run_gang

    store, run_id = _open(store, run_id, job_id, s3_endpoint)
    item = None if item is None else int(item)
    result_key = stage_key(run_id, stage, RESULT_FILE, item)
    previous = store.get_json(result_key) if store.exists(result_key) else {}
    store.put_bytes(stage_key(run_id, stage, "input.ipynb"), notebook.encode())
    started = now_iso()
    values = {name: _decode(value) for name, value in parameters.items()}
    with _Deadline(int(timeout or 0)) as deadline:
        runner = run_gang if is_gang(notebook) else run_stage  # a workers: stage starts its replicas (gang.py)
        result = runner(store, run_id, stage, values, cwd=workdir if workdir and os.path.isdir(workdir) else None,
                        item=item)
    if deadline.fired and result["status"] != "succeeded":
        result["error"] = f"timed out after {timeout} s (tag timeout:)"
    result.update(started_at=started, finished_at=now_iso(), attempts=int(previous.get("attempts", 0)) + 1,
                  run_id=run_id, **({"index": item} if item is not None else {}))
    store.put_json(result_key, result)
    what = stage if item is None else f"{stage}[{item}]"
    print(f"jupyter-pipeline: stage {what} of run {run_id} {result['status']}", file=sys.stderr, flush=True)
    if result["status"] != "succeeded":
        from ..records import error_with_cell

        raise RuntimeError(f"stage {what} failed: {error_with_cell(result.get('error'), result.get('error_cell'))}")
    return result


def plan_items(*, stage: str, var: str, producer: str | None, chunks: int | None, parameters: dict, store: str,
               run_id: str, job_id: str, s3_endpoint: str = "", variant: dict | None = None) -> list:
    """The loop items of ``map:`` stage ``stage``: ``[{"item": i, **variant}, ...]``.

    A sweep's variant (its ``run_id`` and swept values) rides along in each item because a loop
    nested in the variant loop reads them from its own item (kfp.local resolves an outer loop's
    values wrongly inside an inner loop).
    """
    from ..fanout import map_count
    from ..records import stage_key

    variant = dict(variant or {})
    store_, run_id = _open(store, variant.get("run_id") or run_id, job_id, s3_endpoint)
    values = {name: _decode(value) for name, value in parameters.items()}
    count = map_count(store_, run_id, stage, var, producer, chunks, values)
    store_.put_json(stage_key(run_id, stage, ITEMS_FILE), {"count": count})
    return [{**variant, "item": i, "run_id": run_id} for i in range(count)]


def gather_items(*, stage: str, outputs: list, items: list, store: str, run_id: str, job_id: str,
                 s3_endpoint: str = "") -> dict:
    """Fan-in of ``map:`` stage ``stage`` after all its items succeeded: the stage's output index
    (lists, as the local runner's) and its ``result.json`` (per-item states, mean metrics)."""
    from ..fanout import gather, mean_metrics
    from ..records import stage_key

    store, run_id = _open(store, run_id, job_id, s3_endpoint)
    count = len(items)
    gather(store, run_id, stage, outputs, count)
    results = [store.get_json(stage_key(run_id, stage, RESULT_FILE, i)) for i in range(count)]
    keep = ("index", "status", "started_at", "finished_at", "output_notebook", "metrics")
    result = {
        "status": "succeeded", "stage": stage, "run_id": run_id, "metrics": mean_metrics(results),
        "items": [{k: r.get(k) for k in keep} for r in results],
        "started_at": min((r["started_at"] for r in results), default=None),
        "finished_at": max((r["finished_at"] for r in results), default=None),
        "output_notebook": results[0].get("output_notebook") if results else None, "attempts": 1,
    }
    store.put_json(stage_key(run_id, stage, RESULT_FILE), result)
    return result


def link_variant(*, stages: list, owner: str, store: str, run_id: str, job_id: str, s3_endpoint: str = "") -> None:
    """Give a sweep variant's run the results of the stages the sweep ran once, in run ``owner``:
    output indexes pointing at the owner's files (as the local sweep does) and a ``result.json``
    with ``reused_from``."""
    from ..records import stage_key

    store, run_id = _open(store, run_id, job_id, s3_endpoint)
    if run_id == owner:
        return
    for stage in stages:
        index_key = stage_key(owner, stage, "outputs.json")
        if store.exists(index_key):
            index = store.get_json(index_key)
            store.put_json(stage_key(run_id, stage, "outputs.json"),
                           {name: {**e, "run_id": e.get("run_id", owner)} for name, e in index.items()})
        result = store.get_json(stage_key(owner, stage, RESULT_FILE))
        store.put_json(stage_key(run_id, stage, RESULT_FILE), {**result, "run_id": run_id, "reused_from": owner})


def _decode(value):
    """Parameters whose default was ``None`` travel as JSON text (KFP has no 'any' type)."""
    if isinstance(value, str) and value.startswith(NONE_PREFIX):
        return json.loads(value[len(NONE_PREFIX):])
    return value


#: Prefix of a JSON-encoded value of a parameter whose notebook default is ``None``.
NONE_PREFIX = "json:"
