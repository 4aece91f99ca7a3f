"""What a compiled stage component runs inside its pod (or kfp.local's subprocess).

The component's own function body is one call to :func:`run_component`; everything else lives
here, in the image's installed package, so a compiled spec stays small and the behaviour is
tested like any other module. Kept import-light: it runs once per stage.

Per stage, in the store: ``input.ipynb`` (the notebook embedded in the spec, written first, so
its appearance means "started"), ``output.ipynb`` (by the stage runner, also on failure) and
``result.json`` (status, error, metrics, times, attempts), which the kfp-local target and
``runs --target kfp`` read back into the run record.

No task input changes from run to run, so KFP's cache can reuse a stage. Which run folder a task
writes to is found at run time (:func:`run_folder`); a stage returns that folder, and its
downstream stages receive it as an input: a stage KFP took from its cache hands them the folder
of the run that computed it, and they link its results into their own run (:func:`link_stage`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys

#: The run folder of every task of this process's pipeline run (set by the kfp-local target).
RUN_ID_ENV = "JUPYTER_PIPELINE_RUN_ID"
#: A KFP run id; on a cluster every output artifact's URI holds it (``ROOT/PIPELINE/RUN_ID/TASK/...``).
UUID_RE = re.compile(r"(?<![0-9a-f])[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?![0-9a-f])")
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
    cell fails cleanly and papermill still saves the executed notebook; raise only if it won't stop.

    The local runner (:mod:`jupyter_pipeline.local.runner`) enforces the same tag from outside instead: a
    timer in the runner sends SIGTERM to the stage's worker process, which papermill turns into a
    saved, failed notebook. That cannot serve here, so the two differ on purpose:

    - Here the stage runs *in this process* (``run_stage`` is called in-process, as the component's
      body): there is no separate worker to terminate, and this process must outlive the timeout to
      write ``result.json`` and the task's output artifacts and to fail the task with the error.
      So it interrupts its own child, the kernel, and keeps running itself.
    - The runner runs many stages at once from threads, where SIGALRM (process-wide, delivered to
      the main thread only) cannot time each one; a pod runs one stage, so one alarm is enough.
    - The clock here starts before the kernel does (its start counts); the runner's starts once the
      stage's kernel is up. In a pod, Kubernetes' own limit (``placement.TIMEOUT_GRACE_SECONDS``
      beyond the tag) backs this one up.
    - For a ``workers:`` stage's launcher on a cluster there is no child to interrupt: the alarm
      raises :class:`StageTimeout` into its watch loop, which deletes the job (``gang._launch``).

    Both word the failure alike (:func:`jupyter_pipeline.store.records.timeout_error`).
    """

    def __init__(self, seconds: int):
        self.seconds, self.fired = seconds, False

    def __enter__(self):
        if self.seconds and hasattr(signal, "SIGALRM"):
            signal.signal(signal.SIGALRM, self._fire)
            signal.alarm(self.seconds)
        return self

    def _fire(self, signum, frame):
        from ..store.records import timeout_error

        kernels = _children()
        if self.fired or not kernels:
            raise StageTimeout(timeout_error(self.seconds))
        self.fired = True
        for pid in kernels:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
        signal.alarm(INTERRUPT_GRACE_SECONDS)

    def __exit__(self, *exc):
        if self.seconds and hasattr(signal, "SIGALRM"):
            signal.alarm(0)


def run_folder(explicit: str = "", job_id: str = "", artifact_uri: str = "") -> str:
    """The run folder a task writes to: ``explicit`` (a sweep variant's), else the process's
    (``JUPYTER_PIPELINE_RUN_ID``, set by the kfp-local target), else ``kfp-<KFP run id>``, the run id
    taken from ``job_id`` (a resolved placeholder) or from an output artifact's URI."""
    if explicit:
        return explicit
    if os.environ.get(RUN_ID_ENV):
        return os.environ[RUN_ID_ENV]
    found = UUID_RE.search(job_id or "") or UUID_RE.search(artifact_uri or "")
    if found:
        return f"kfp-{found.group(0)}"
    raise RuntimeError(f"cannot tell which run this task belongs to: no {RUN_ID_ENV} and no KFP run id "
                       f"(job id {job_id!r}, output {artifact_uri!r})")


def _open(store: str, s3_endpoint: str):
    """The run's store, as a pod opens it: never creating its bucket (Kubeflow's per-namespace
    users may not; the default store is in the pipeline root's bucket, which exists)."""
    from ..store.base import open_store

    if s3_endpoint:
        from ..store.s3 import ENDPOINT_ENV

        os.environ[ENDPOINT_ENV] = s3_endpoint  # the kernel inherits it
    return open_store(store, create=False)


def link_stage(store, owner: str, run_id: str, stage: str) -> None:
    """Give run ``run_id`` the results of ``stage`` computed in run ``owner``: an output index
    pointing at the owner's files and a ``result.json`` with ``reused_from``."""
    from ..store.records import link_outputs, stage_key

    if owner == run_id:
        return
    result_key = stage_key(owner, stage, RESULT_FILE)
    if not store.exists(result_key):
        raise RuntimeError(f"stage {stage}'s results from run {owner}, which this run reuses (KFP's cache), are "
                           f"not in the store {store.url} any more; run again with caching off for that stage "
                           "(tag cache:off) or for the whole run")
    if store.exists(stage_key(owner, stage, "outputs.json")):
        link_outputs(store, run_id, stage, owner)
    result = store.get_json(result_key)
    store.put_json(stage_key(run_id, stage, RESULT_FILE),
                   {**result, "run_id": run_id, "reused_from": result.get("reused_from") or owner})


def _link_upstream(store, run_id: str, upstream: dict | None) -> None:
    for stage, location in (upstream or {}).items():
        if location:
            link_stage(store, location, run_id, stage)


def run_component(*, stage: str, parameters: dict, notebook: str, store: str, s3_endpoint: str = "",
                  workdir: str = "", files: str = "", upstream: dict | None = None, html=None, metrics=None,
                  model=None, run_id: str = "", timeout: int = 0, item: int | None = None,
                  claims: dict | None = None, scalars: dict | None = None, scalar_kinds: dict | None = None) -> str:
    """Run ``stage`` of a compiled pipeline and return its run folder; raise ``RuntimeError`` when it
    fails (KFP marks the task failed).

    ``upstream`` maps each stage whose variables this one loads to the run folder holding them;
    ``files`` is the store key of the bundle of working files, unpacked into the kernel's working
    directory; ``html``, ``metrics`` and ``model`` are the component's output artifacts. ``item``
    is the index of the item a ``map:`` stage's task runs on; its files go under ``items/<item>/``.
    ``claims`` names a ``workers:`` stage's claims made for the run, by volume, for its replicas.
    """
    import tempfile

    from ..store.records import now_iso, stage_key, timeout_error
    from ..stage.run import run_stage
    from . import outputs
    from .files import unpack
    from .gang import is_gang, run_gang

    run_id = run_folder(run_id, artifact_uri=getattr(html, "uri", ""))
    store = _open(store, s3_endpoint)
    item = None if item is None else int(item)
    _link_upstream(store, run_id, upstream)
    result_key = stage_key(run_id, stage, RESULT_FILE, item)
    previous = store.get_json(result_key) if store.exists(result_key) else {}
    store.put_bytes(stage_key(run_id, stage, "input.ipynb"), notebook.encode())
    started = now_iso()
    values = {name: _decode(value) for name, value in parameters.items()}
    with contextlib.ExitStack() as stack:
        cwd = workdir if workdir and os.path.isdir(workdir) else None
        if cwd is None:
            cwd = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"jp-{stage}-work-"))
            unpack(store, files, cwd)
        with _Deadline(int(timeout or 0)) as deadline:
            if is_gang(notebook):  # a workers: stage starts its replicas (gang.py), which unpack the files too
                result = run_gang(store, run_id, stage, values, cwd=cwd, item=item, files=files, claims=claims)
            else:
                result = run_stage(store, run_id, stage, values, cwd=cwd, item=item)
    if deadline.fired and result["status"] != "succeeded":
        result["error"] = timeout_error(timeout)
    result.update(started_at=started, finished_at=now_iso(), attempts=int(previous.get("attempts", 0)) + 1,
                  run_id=run_id, **({"index": item} if item is not None else {}))
    store.put_json(result_key, result)
    # Written on failure too: the local copy shows in kfp.local's outputs; KFP uploads it only on success.
    if html is not None:
        outputs.write_html(html, store, stage_key(run_id, stage, "output.ipynb", item))
    if metrics is not None:
        outputs.write_metrics(metrics, result.get("metrics"))
    if model is not None:
        outputs.write_models(model, store, run_id, stage, item)
    if scalars and result["status"] == "succeeded":
        from .conditions import write_scalars

        write_scalars(scalars, scalar_kinds or {}, store, run_id, stage)
    what = stage if item is None else f"{stage}[{item}]"
    print(f"jupyter-pipeline: stage {what} of run {run_id} {result['status']}", file=sys.stderr, flush=True)
    if result["status"] != "succeeded":
        from ..store.records import error_with_cell

        raise RuntimeError(f"stage {what} failed: {error_with_cell(result.get('error'), result.get('error_cell'))}")
    return run_id


def check_condition(*, stage: str, condition: str, values: dict) -> bool:
    """Whether ``stage``'s condition holds for ``values`` (a condition with ``or``; see :mod:`.conditions`)."""
    from ..notebook.condition import evaluate, parse

    holds, why = evaluate(parse(condition), {name: _decode(value) for name, value in values.items()})
    print(f"jupyter-pipeline: stage {stage}: condition {'true' if holds else 'false'}: {why}", file=sys.stderr,
          flush=True)
    return holds


def plan_items(*, stage: str, var: str, producer: str | None, chunks: int | None, parameters: dict, store: str,
               run_id: str, job_id: str, s3_endpoint: str = "", variant: dict | None = None,
               upstream: dict | None = None, carry: dict | None = None) -> list:
    """The loop items of ``map:`` stage ``stage``: ``[{"item": i, **variant, **locations}, ...]``.

    A sweep's variant (its ``run_id`` and swept values) and the locations of the stage's upstream
    stages ride along in each item because a loop reads values from outside only through its
    items (kfp.local resolves an outer loop's values, and other tasks' outputs, wrongly inside a loop).
    """
    from ..stage.fanout import map_count
    from ..store.records import stage_key

    variant = dict(variant or {})
    run_id = run_folder(variant.get("run_id") or run_id, job_id)
    store_ = _open(store, s3_endpoint)
    _link_upstream(store_, run_id, upstream)
    values = {name: _decode(value) for name, value in parameters.items()}
    count = map_count(store_, run_id, stage, var, producer, chunks, values)
    store_.put_json(stage_key(run_id, stage, ITEMS_FILE), {"count": count})
    return [{**variant, **_carried(upstream, carry), "item": i, "run_id": run_id} for i in range(count)]


def _carried(upstream: dict | None, carry: dict | None) -> dict:
    """Upstream locations (by stage) as loop-item fields (``carry``: stage -> field name)."""
    return {carry[stage]: location for stage, location in (upstream or {}).items() if stage in (carry or {})}


def expand_variants(*, variants: list, upstream: dict, carry: dict) -> list:
    """A sweep's variants with the locations of the stages run once for all, for the variant loop."""
    return [{**variant, **_carried(upstream, carry)} for variant in variants]


def gather_items(*, stage: str, outputs: list, items: list, store: str, run_id: str, job_id: str,
                 s3_endpoint: str = "") -> str:
    """Fan-in of ``map:`` stage ``stage`` after all its items succeeded: the stage's output index
    (lists, as the local runner's) and its ``result.json`` (per-item states, mean metrics).
    Returns the run folder, as a stage does."""
    from ..stage.fanout import gather, mean_metrics
    from ..store.records import stage_key

    run_id = run_folder((items[0].get("run_id") if items else "") or run_id, job_id)
    store = _open(store, s3_endpoint)
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
    return run_id


def link_variant(*, upstream: dict, store: str, run_id: str, job_id: str, s3_endpoint: str = "") -> None:
    """Give a sweep variant's run the results of the stages the sweep ran once (``upstream``: each
    shared stage's run folder), as the local sweep does."""
    _link_upstream(_open(store, s3_endpoint), run_folder(run_id, job_id), upstream)


def report_failures(*, stages: list, store: str, run_id: str, job_id: str, s3_endpoint: str = "", html=None) -> None:
    """The pipeline's exit task: the executed notebooks of the stages that failed, as one HTML page."""
    from .outputs import failures_page, write_text

    run_id = run_folder(run_id, job_id, getattr(html, "uri", ""))
    write_text(html, failures_page(_open(store, s3_endpoint), run_id, stages))


def _decode(value):
    """Parameters whose default was ``None`` travel as JSON text (KFP has no 'any' type)."""
    if isinstance(value, str) and value.startswith(NONE_PREFIX):
        return json.loads(value[len(NONE_PREFIX):])
    return value


#: Prefix of a JSON-encoded value of a parameter whose notebook default is ``None``.
NONE_PREFIX = "json:"
