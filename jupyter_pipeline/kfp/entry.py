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


def run_component(*, stage: str, parameters: dict, notebook: str, store: str, run_id: str, job_id: str,
                  s3_endpoint: str = "", workdir: str = "", timeout: int = 0) -> dict:
    """Run ``stage`` of a compiled pipeline; raise ``RuntimeError`` when it fails (KFP marks the task failed).

    ``run_id`` names the run's folder in the store; when empty (a pipeline uploaded by hand and
    started from the KFP UI) the KFP job id is used, as ``kfp-<job id>``.
    """
    from ..records import now_iso, stage_key
    from ..stagerun import run_stage
    from ..store import open_store

    if s3_endpoint:
        os.environ[ENDPOINT_ENV] = s3_endpoint  # the kernel inherits it
    run_id = run_id or f"kfp-{job_id}"
    store = open_store(store)
    result_key = stage_key(run_id, stage, RESULT_FILE)
    previous = store.get_json(result_key) if store.exists(result_key) else {}
    store.put_bytes(stage_key(run_id, stage, "input.ipynb"), notebook.encode())
    started = now_iso()
    values = {name: _decode(value) for name, value in parameters.items()}
    with _Deadline(int(timeout or 0)) as deadline:
        result = run_stage(store, run_id, stage, values, cwd=workdir if workdir and os.path.isdir(workdir) else None)
    if deadline.fired and result["status"] != "succeeded":
        result["error"] = f"timed out after {timeout} s (tag timeout:)"
    result.update(started_at=started, finished_at=now_iso(), attempts=int(previous.get("attempts", 0)) + 1,
                  run_id=run_id)
    store.put_json(result_key, result)
    print(f"jupyter-pipeline: stage {stage} of run {run_id} {result['status']}", file=sys.stderr, flush=True)
    if result["status"] != "succeeded":
        where = f" (cell {result['error_cell'] + 1})" if result.get("error_cell") is not None else ""
        raise RuntimeError(f"stage {stage} failed{where}: {result.get('error')}")
    return result


def _decode(value):
    """Parameters whose default was ``None`` travel as JSON text (KFP has no 'any' type)."""
    if isinstance(value, str) and value.startswith(NONE_PREFIX):
        return json.loads(value[len(NONE_PREFIX):])
    return value


#: Prefix of a JSON-encoded value of a parameter whose notebook default is ``None``.
NONE_PREFIX = "json:"
