"""The server's actions on a stored run: ``POST runs/ID/stages/NAME/debug``, ``POST runs/ID/resume`` and
``POST runs {"from_stage"}``, through a real Jupyter server (fixtures of ``test_server``)."""

from __future__ import annotations

import json

import nbformat
import pytest

from pytest_jupyter.jupyter_server import *  # noqa: F403 - fixtures, scoped to this module

from test_debug import write_flow
from test_server import api, assert_error, jp_server_config, root, store_path, wait_for  # noqa: F401 - fixtures


@pytest.mark.slow
def test_debug_a_failed_stage_then_resume_and_rerun_from_a_stage(api, root):  # noqa: F811 - fixtures
    write_flow(root)
    status, body = api("POST", "runs", body={"path": "flow.ipynb", "parameters": {"scale": 3}})
    assert status == 202, body
    run_id = body["run_id"]
    failed = wait_for(api, run_id)
    assert failed["status"] == "failed" and failed["stages"]["use"]["status"] == "failed"

    status, text = api("GET", "runs", run_id, "stages", "use", "notebook", raw=True)
    assert status == 200 and "boom with total 69" in text
    assert str(root) not in text and str(root.resolve()) not in text  # the server's folders stay its own
    assert nbformat.reads(text, as_version=4).cells  # still a notebook

    status, body = api("POST", "runs", run_id, "stages", "use", "debug", body={})
    assert status == 200, body
    assert body["path"] == "flow-debug-use.ipynb"  # root-relative, next to the notebook
    nb = nbformat.read(root / body["path"], as_version=4)
    assert {k: v for k, v in nb.metadata["jupyter_pipeline_debug"].items() if k != "store"} == {
        "run_id": run_id, "stage": "use"}
    assert "jupyter_pipeline" not in nb.metadata  # no pipeline settings: the sidebar warns of none
    assert "scale = 3" in nb.cells[1].source
    status, again = api("POST", "runs", run_id, "stages", "use", "debug", body={})  # its own earlier notebook
    assert status == 200 and again["path"] == body["path"]
    status, other = api("POST", "runs", run_id, "stages", "use", "debug", body={"path": "sub/dir/use.ipynb"})
    assert status == 200 and other["path"] == "sub/dir/use.ipynb" and (root / "sub/dir/use.ipynb").is_file()

    # Refused: no login, paths out of the root, a notebook that is not a debug notebook, unknown names.
    status, _ = api("POST", "runs", run_id, "stages", "use", "debug", body={}, auth=False)
    assert status == 403
    for path in ("../out.ipynb", "/tmp/out.ipynb", "escape-dir/out.ipynb"):
        status, body = api("POST", "runs", run_id, "stages", "use", "debug", body={"path": path})
        assert_error(status, body, 403)
    status, body = api("POST", "runs", run_id, "stages", "use", "debug", body={"path": "flow.ipynb"})
    assert_error(status, body, 409, "not a debug notebook")
    status, body = api("POST", "runs", run_id, "stages", "use", "debug", body={"path": "use.txt"})
    assert_error(status, body, 403, ".ipynb")
    status, body = api("POST", "runs", run_id, "stages", "nope", "debug", body={})
    assert_error(status, body, 400, "no stage 'nope'", "make, use")
    status, body = api("POST", "runs", "no-such-run", "stages", "use", "debug", body={})
    assert_error(status, body, 404, "no-such-run")

    # Fixed: resume keeps `make` and re-runs `use`.
    (root / "fail.flag").unlink()
    status, body = api("POST", "runs", run_id, "resume")
    assert status == 202 and body == {"run_id": run_id}, body
    resumed = wait_for(api, run_id, lambda r: r["status"] != "running" and r["stages"]["use"]["status"] != "failed")
    assert resumed["status"] == "succeeded", resumed
    assert resumed["stages"]["make"]["started_at"] == failed["stages"]["make"]["started_at"]  # kept, not re-run
    status, body = api("POST", "runs", run_id, "resume")
    assert_error(status, body, 409, "succeeded")

    # Re-run from `use`: `make` reused from the latest run with the same code.
    status, body = api("POST", "runs", body={"path": "flow.ipynb", "parameters": {"scale": 3}, "from_stage": "use"})
    assert status == 202, body
    rerun = wait_for(api, body["run_id"])
    assert rerun["status"] == "succeeded", rerun
    assert rerun["stages"]["make"]["reused_from"] == run_id and rerun["stages"]["use"]["why"] == "re-run from here"
    status, body = api("POST", "runs", body={"path": "flow.ipynb", "from_stage": "nope"})
    assert_error(status, body, 400, "no stage 'nope'")
    status, body = api("POST", "runs", body={"path": "flow.ipynb", "from_stage": "use", "target": "kfp-local"})
    assert_error(status, body, 400, "kfp-local", "local")
    status, body = api("POST", "runs", body={"path": "flow.ipynb", "from_stage": ["use"]})
    assert_error(status, body, 400, "from_stage")
    assert json.loads((root / "flow-debug-use.ipynb").read_text())["metadata"]["jupyter_pipeline_debug"]


def test_an_unreachable_kubeflow_host_is_one_sentence_and_not_a_server_error_in_the_log(api, jp_serverapp):  # noqa: F811
    import logging
    import socket

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    jp_serverapp.log.addHandler(handler)
    try:
        with socket.socket() as s:  # a port nothing listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        status, body = api("POST", "runs", body={"path": "small.ipynb", "target": "kfp",
                                                 "kfp_host": f"http://127.0.0.1:{port}"})
    finally:
        jp_serverapp.log.removeHandler(handler)
    assert_error(status, body, 502, f"Cannot reach Kubeflow Pipelines at http://127.0.0.1:{port} while connecting "
                                    "(connection refused: nothing listens there); check")
    assert "MaxRetry" not in body["message"] and "HTTPConnectionPool" not in body["message"]
    mine = [r for r in records if "jupyter-pipeline" in r.getMessage()]
    assert mine and all(r.levelno == logging.WARNING for r in mine), [(r.levelname, r.getMessage()) for r in mine]
