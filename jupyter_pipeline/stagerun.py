"""The stage runner: execute one stage notebook with papermill against the store.

Used in-process by Kubeflow components and as ``python -m jupyter_pipeline.stagerun`` by the
local runner (one process per stage, so a stage can be cancelled by signal and a crashing
kernel cannot take the runner down). The executed notebook is uploaded even when the stage
fails, before the failure is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from .records import stage_key
from .startup import skip_slow_optional_imports

RESULT_PREFIX = "JUPYTER_PIPELINE_RESULT "


def run_stage(store, run_id: str, stage: str, parameters: dict | None = None, *, cwd: str | None = None,
              kernel_name: str | None = None) -> dict:
    """Run ``runs/<run_id>/stages/<stage>/input.ipynb``; return ``{status, error?, metrics, ...}``."""
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from .stagebook import RUN_PARAMETER, failed_source_cell
    from .store import open_store

    store = open_store(store)
    params = dict(parameters or {})
    params[RUN_PARAMETER] = {"store": store.absolute_url(), "run_id": run_id, "stage": stage}
    result: dict = {"status": "succeeded", "stage": stage}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"jp-{stage}-") as tmp:
        src, out = Path(tmp) / "input.ipynb", Path(tmp) / "output.ipynb"
        store.get_file(stage_key(run_id, stage, "input.ipynb"), src)
        try:
            papermill.execute_notebook(
                str(src), str(out), parameters=params, kernel_name=kernel_name, cwd=cwd,
                progress_bar=False, log_output=False, request_save_on_cell_execute=False,
            )
        except PapermillExecutionError as exc:
            result.update(status="failed", error=f"{exc.ename}: {exc.evalue}".strip())
            if out.exists():
                result["error_cell"] = failed_source_cell(nbformat.read(out, as_version=4))
        except BaseException as exc:  # noqa: BLE001 - kernel death, cancellation: report, keep notebook
            reason = "cancelled" if isinstance(exc, (KeyboardInterrupt, SystemExit)) else f"{type(exc).__name__}: {exc}"
            result.update(status="failed", error=reason)
        finally:
            if out.exists():
                store.put_file(stage_key(run_id, stage, "output.ipynb"), out)
                result["output_notebook"] = store.uri(stage_key(run_id, stage, "output.ipynb"))
    metrics_key = stage_key(run_id, stage, "metrics.json")
    result["metrics"] = store.get_json(metrics_key) if store.exists(metrics_key) else {}
    result["seconds"] = round(time.monotonic() - started, 3)
    return result


def _terminate(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jupyter_pipeline.stagerun", description=__doc__)
    p.add_argument("--store", required=True)
    p.add_argument("--run-id", required=True)
    p.add_argument("--stage", required=True)
    p.add_argument("--parameters", default="{}", help="JSON object of parameter values")
    p.add_argument("--cwd")
    p.add_argument("--kernel")
    args = p.parse_args(argv)
    skip_slow_optional_imports()
    signal.signal(signal.SIGTERM, _terminate)
    try:
        result = run_stage(args.store, args.run_id, args.stage, json.loads(args.parameters),
                           cwd=args.cwd, kernel_name=args.kernel)
    except Exception as exc:  # noqa: BLE001 - report, never a traceback to the parent's user
        result = {"status": "failed", "stage": args.stage, "error": f"{type(exc).__name__}: {exc}", "metrics": {}}
    sys.stdout.write("\n" + RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0 if result["status"] == "succeeded" else 1


if __name__ == "__main__":
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    sys.exit(main())
