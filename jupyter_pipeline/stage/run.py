"""Run one stage: execute its notebook with papermill against the store.

Used in-process by Kubeflow components, and by the local runner's stage worker processes
(:mod:`.stageworker`: one process per stage, so a stage can be cancelled by signal and a crashing
kernel cannot take the runner down). The executed notebook is uploaded whenever the stage
fails, times out, is cancelled or loses its kernel, before the failure is reported.

Faults, and how each ends:

- **The kernel dies** (``os._exit``, a segfault, ``kill -9`` or the out-of-memory killer): the
  kernel is driven through an asynchronous client, so nbclient's once-a-second liveness check
  runs while a cell executes; the stage fails within a couple of seconds with the exit status or
  signal, the cell that was running and its last output.
- **SIGTERM** (cancel, ``timeout:``): raised as ``KeyboardInterrupt`` into the event loop the
  kernel is awaited on, so papermill records the cells that ran and the notebook is uploaded.
- **The runner dies**: see :mod:`.stageworker`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from ..store.records import stage_key

RESULT_PREFIX = "JUPYTER_PIPELINE_RESULT "
#: Printed by a worker when the stage's first cell starts (its kernel is up): ``timeout:`` counts from here.
STARTED_LINE = "JUPYTER_PIPELINE_STARTED"
#: Exit status of a worker that stopped because its runner went away.
EXIT_RUNNER_GONE = 3
#: How long such a worker may take to keep the executed notebook before it exits regardless.
ORPHAN_SAVE_SECONDS = 10


def run_stage(store, run_id: str, stage: str, parameters: dict | None = None, *, cwd: str | None = None,
              kernel_name: str | None = None, km=None, item: int | None = None, on_start=None,
              gang: dict | None = None, keep_path: str | None = None) -> dict:
    """Run ``runs/<run_id>/stages/<stage>/input.ipynb``; return ``{status, error?, metrics, ...}``.

    ``km`` is an already started kernel manager to run in (the warm-worker mode); without it
    papermill starts and stops a kernel of its own. ``on_start()`` is called once, as the first
    cell starts. ``gang`` makes this run one replica of a ``workers:`` stage (see ``replica``): its
    executed notebook goes to ``replicas/<rank>/output.ipynb``. ``keep_path`` is where the executed
    notebook is saved as each cell starts and finishes (a local runner reads it if this process is killed).
    """
    import nbformat
    import papermill
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    from .notebook import RUN_PARAMETER, failed_source_cell, last_run_cell, silent_failure
    from .engine import ENGINE_NAME
    from ..store import pending
    from ..store.base import open_store, patiently

    store = open_store(store)
    params = dict(parameters or {})
    params[RUN_PARAMETER] = {"store": store.absolute_url(), "run_id": run_id, "stage": stage, "item": item,
                             **({"gang": gang} if gang else {})}
    output_key = stage_key(run_id, stage, "output.ipynb", item, replica=gang["rank"] if gang else None)
    result: dict = {"status": "succeeded", "stage": stage}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"jp-{stage}-") as tmp:
        params[RUN_PARAMETER]["scratch"] = tmp  # for the stage's own working folder (stage.workfolder): removed with it
        src, out = Path(tmp) / "input.ipynb", Path(keep_path or Path(tmp) / "output.ipynb")
        engine = {"engine_name": ENGINE_NAME, "keep_path": str(out)}  # papermill hands these to the engine
        if km is not None:
            engine["km"] = km
        if on_start is not None:
            engine["on_cell_start"] = _first_time_only(on_start)
        store.get_file(stage_key(run_id, stage, "input.ipynb"), src)
        try:
            papermill.execute_notebook(
                str(src), str(out), parameters=params, kernel_name=kernel_name, cwd=cwd,
                progress_bar=False, log_output=False, request_save_on_cell_execute=False, **engine,
            )
        except PapermillExecutionError as exc:
            first_line = (str(exc.evalue).strip().splitlines() or [""])[0]  # the error's own first line
            result.update(status="failed", error=f"{exc.ename}: {first_line}".strip())
            if exc.ename == "ModuleNotFoundError":
                result["error"] += missing_module_hint(str(exc.evalue), kernel_name or "python3")
            if out.exists():
                executed = nbformat.read(out, as_version=4)
                cell = failed_source_cell(executed)
                if cell is None:
                    # No error output: IPython printed it (an unknown or failing magic's UsageError).
                    cell, printed = silent_failure(executed)
                    result["error"] = printed or result["error"]
                result["error_cell"] = None if cell is None else cell + 1  # as JupyterLab numbers cells
        except DeadKernelError:
            cell, output = last_run_cell(nbformat.read(out, as_version=4)) if out.exists() else (None, "")
            how = kernel_exit(km)
            result.update(status="failed", kernel_died=True, error_cell=None if cell is None else cell + 1, error=(
                f"the kernel died{f' ({how})' if how else ''}" + (f"; its last output: {output}" if output else "")))
        except BaseException as exc:
            reason = "cancelled" if isinstance(exc, (KeyboardInterrupt, SystemExit)) else f"{type(exc).__name__}: {exc}"
            try:  # the cell that was running when it stopped
                cell, _ = last_run_cell(nbformat.read(out, as_version=4)) if out.exists() else (None, "")
            except Exception:  # a notebook cut short while written: no cell to name
                cell = None
            result.update(status="failed", error=reason, error_cell=None if cell is None else cell + 1)
        finally:
            if out.exists():  # kept whatever happened: waiting out a store outage, else on this machine
                if unwritten := pending.put_file(store, output_key, out):
                    said = f"{result['error'].rstrip('.')}; " if result.get("error") else ""
                    result.update(status="failed", error=f"{said}its executed notebook was not written: {unwritten}")
                result["output_notebook"] = store.uri(output_key)
        if result.get("error_cell"):
            included = nbformat.read(src, as_version=4).metadata.get("jupyter_pipeline", {}).get("notebook")
            if included:  # a stage of an included notebook: the cell is numbered in that notebook
                result["error"] = f"{result.get('error') or ''} (cell {result['error_cell']} of {included})"
    metrics_key = stage_key(run_id, stage, "metrics.json", item)
    result["metrics"] = patiently(lambda: store.get_json(metrics_key) if store.exists(metrics_key) else {})
    models_key = stage_key(run_id, stage, "models.json", item)  # log_model and promote_model add to it
    result["models"] = patiently(lambda: store.get_json(models_key) if store.exists(models_key) else [])
    result["seconds"] = round(time.monotonic() - started, 3)
    return result


def missing_module_hint(message: str, kernel: str) -> str:
    """What to do about ``No module named 'x'`` raised in a stage's kernel."""
    match = re.search(r"No module named '([^']+)'", message)
    module = match.group(1).split(".")[0] if match else None
    if module == "jupyter_pipeline":
        return (f" — the kernel '{kernel}' runs a Python without jupyter-pipeline; install it there, "
                "or set metadata.jupyter_pipeline.kernel")
    what = f"'{module}'" if module else "the module"
    return (f" — install {what} into the Python environment of the kernel '{kernel}' when running locally "
            "(pip install in that environment); on Kubeflow, add its package to the notebook's `packages` "
            "setting or use an image that has it (`image:` tag or the notebook's `image` setting)")


def _first_time_only(fn):
    """nbclient's ``on_cell_start`` hook: ``fn()`` as the first cell starts, never again."""
    called = []

    def hook(cell, cell_index):
        if not called:
            called.append(True)
            fn()
    return hook


def exit_description(code: int) -> str:
    """A process's end in words: "exit status 3", "killed by signal SIGKILL, as the out-of-memory killer does"."""
    if code >= 0:
        return f"exit status {code}"
    name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
    return f"killed by signal {name}" + (", as the out-of-memory killer does" if -code == signal.SIGKILL else "")


def kernel_exit(km) -> str | None:
    """How the kernel of ``km`` ended, if it has."""
    process = getattr(getattr(km, "provisioner", None), "process", None)
    code = process.poll() if process is not None else None
    return None if code is None else exit_description(code)


def _emit(result: dict) -> None:
    try:
        sys.stdout.write("\n" + RESULT_PREFIX + json.dumps(result) + "\n")
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        # The runner is gone; nobody reads the result (its record is marked interrupted instead).
        sys.stdout = open(os.devnull, "w")


def close_kernel(km, sockets: str) -> None:
    """Kill a worker's kernel (if it started), release its resources and remove its socket folder."""
    from jupyter_core.utils import run_sync

    if km is not None:
        _kill_kernel(km)
        with contextlib.suppress(Exception):
            run_sync(km.cleanup_resources)()
    shutil.rmtree(sockets, ignore_errors=True)


def _kill_kernel(km) -> None:
    """Kill the kernel's whole process group (it leads its own session) and reap it."""
    provisioner = getattr(km, "provisioner", None)
    process = getattr(provisioner, "process", None)
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(provisioner.pgid or process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()
    process.wait()


def prepare() -> None:
    """Do now, while the kernel starts and the worker waits, what the first job would pay for:
    importing papermill and compiling nbformat's notebook validator (half a second on a busy machine)."""
    import nbformat
    import papermill  # noqa: F401 - imported ahead, for its cost

    nbformat.validate(nbformat.v4.new_notebook())


