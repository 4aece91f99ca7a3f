"""The server extension through a real Jupyter server (pytest-jupyter's ``jp_fetch``).

pytest-jupyter's fixtures are imported into this module rather than registered as a plugin for
the whole suite: its autouse fixtures replace the event loop and reset ``ServerApp`` around every
test, which only these tests want. Tests are plain functions that drive ``jp_fetch`` on that loop.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from pytest_jupyter.jupyter_server import *  # noqa: F403 - fixtures, scoped to this module

from test_kfp_client import kfp_server  # noqa: F401 - fixture: a loopback server playing the KFP API

from jupyter_pipeline.local.lease import Lease
from jupyter_pipeline.store.records import RunRecord, StageRecord, StageState, save_run
from jupyter_pipeline.server.config import JupyterPipeline
from jupyter_pipeline.store.base import open_store

FIXTURES = Path(__file__).resolve().parent / "fixtures"
POLL_TIMEOUT = 120


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture
def store_path(jp_root_dir):
    """The store inside the root, as by default (`./.pipeline-store`), so requests could aim at it."""
    return jp_root_dir / ".pipeline-store"


@pytest.fixture
def jp_server_config(store_path):
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_pipeline.server": True}},
        "JupyterPipeline": {"store": str(store_path), "max_concurrent_runs": 1, "workers": 2},
    }


@pytest.fixture
def root(jp_root_dir):
    """The server's root with the fixture notebooks, one in a sub-folder, and a symlink leading out."""
    shutil.copy(FIXTURES / "server_small.ipynb", jp_root_dir / "small.ipynb")
    shutil.copy(FIXTURES / "server_invalid.ipynb", jp_root_dir / "invalid.ipynb")
    (jp_root_dir / "sub" / "dir").mkdir(parents=True)
    shutil.copy(FIXTURES / "server_small.ipynb", jp_root_dir / "sub" / "dir" / "nb.ipynb")
    outside = jp_root_dir.parent / "outside"
    outside.mkdir()
    shutil.copy(FIXTURES / "server_small.ipynb", outside / "secret.ipynb")
    (jp_root_dir / "escape.ipynb").symlink_to(outside / "secret.ipynb")
    (jp_root_dir / "escape-dir").symlink_to(outside, target_is_directory=True)
    return jp_root_dir


@pytest.fixture
def api(jp_fetch, jp_asyncio_loop, root):
    """``api(method, *path, body=, params=, auth=True) -> (status, json)``; never raises on 4xx/5xx."""

    def call(method: str, *parts: str, body=None, params=None, auth: bool = True, raw: bool = False):
        kwargs = {"method": method, "raise_error": False}
        if body is not None:
            kwargs["body"] = body if isinstance(body, (str, bytes)) else json.dumps(body)
        elif method in ("POST", "PUT"):
            kwargs["body"] = ""
        headers = None if auth else {"Authorization": ""}
        response = jp_asyncio_loop.run_until_complete(
            jp_fetch("jupyter-pipeline", *parts, params=params, headers=headers, **kwargs))
        text = response.body.decode() if response.body else ""
        if raw:
            return response.code, text
        return response.code, json.loads(text) if text else None

    return call


def wait_for(api, run_id: str, done=lambda r: r["status"] != "running", timeout: float = POLL_TIMEOUT) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status, record = api("GET", "runs", run_id)
        assert status == 200, record
        if done(record):
            return record
        assert time.monotonic() < deadline, f"run {run_id} still {record['status']}: {record}"
        time.sleep(0.25)


def assert_error(status: int, body, expected: int | tuple, *words: str) -> None:
    expected = expected if isinstance(expected, tuple) else (expected,)
    assert status in expected, (status, body)
    assert isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"], body
    assert "Traceback" not in body["message"] and "traceback" not in body
    for word in words:
        assert word in body["message"], (word, body["message"])


def test_a_notebook_outside_the_root_is_never_included(api, root):
    """A notebook: cell (or a symlinked folder) cannot make the server read or run a notebook
    outside its root: GET pipeline, compile and runs refuse naming the reference, with a 403."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    parent = new_notebook(cells=[new_code_cell("x = 1", metadata={"tags": ["stage:first"]}),
                                 new_code_cell("", metadata={"tags": ["notebook:../outside/secret.ipynb"]})])
    nbformat.write(parent, root / "includes_outside.ipynb")
    linked = new_notebook(cells=[new_code_cell("", metadata={"tags": ["notebook:escape-dir/secret.ipynb"]})])
    nbformat.write(linked, root / "includes_link.ipynb")
    for name, rel in (("includes_outside.ipynb", "includes_outside.ipynb, cell 2"),
                      ("includes_link.ipynb", "includes_link.ipynb, cell 1")):
        for method, parts, kwargs in (("GET", ("pipeline",), {"params": {"path": name}}),
                                      ("POST", ("compile",), {"body": {"path": name}}),
                                      ("POST", ("runs",), {"body": {"path": name}})):
            status, body = api(method, *parts, **kwargs)
            assert_error(status, body, 403, rel, "outside the server's root")
            assert "secret" not in json.dumps(body)  # nothing of it, not even where a symlink leads
    # the same notebook inside the root is included as usual
    inside = new_notebook(cells=[new_code_cell("", metadata={"tags": ["notebook:small.ipynb"]})])
    nbformat.write(inside, root / "includes_inside.ipynb")
    status, body = api("GET", "pipeline", params={"path": "includes_inside.ipynb"})
    assert status == 200 and [n["path"] for n in body["notebooks"]] == ["small.ipynb"], body


# -- pipeline ------------------------------------------------------------------------------------
def test_get_pipeline_returns_stages_edges_parameters_and_no_problems(api):
    status, body = api("GET", "pipeline", params={"path": "small.ipynb"})
    assert status == 200, body
    assert [s["name"] for s in body["stages"]] == ["make", "total"]
    total = body["stages"][1]
    assert total["inputs"] == [{"name": "numbers", "from": "make"}]
    assert set(total) >= {"name", "after", "inputs", "outputs", "gpu", "cells"}
    assert body["edges"] == [["make", "total"]]
    assert [(p["name"], p["type"]) for p in body["parameters"]] == [("n", "int"), ("delay", "float")]
    assert body["problems"] == []
    assert body["path"] == "small.ipynb"  # as the browser named it, not the server's absolute path


def test_get_pipeline_in_a_subfolder(api):
    status, body = api("GET", "pipeline", params={"path": "sub/dir/nb.ipynb"})
    assert status == 200 and len(body["stages"]) == 2


def test_problems_are_data_not_errors(api):
    status, body = api("GET", "pipeline", params={"path": "invalid.ipynb"})
    assert status == 200, body
    codes = {p["code"] for p in body["problems"]}
    assert {"orphan-cell", "undefined-name"} <= codes
    for p in body["problems"]:
        assert set(p) == {"severity", "code", "message", "stage", "cell", "line"}


def test_get_pipeline_of_several_notebooks(api, root):
    """A parent with a `notebook:` cell: stages say their notebook, cells are numbered in it."""
    shutil.copytree(FIXTURES / "compose", root / "compose")
    status, body = api("GET", "pipeline", params={"path": "compose/parent.ipynb"})
    assert status == 200, body
    assert [(s["name"], s["notebook"], s["cells"]) for s in body["stages"]] == [
        ("prepare", "", [2]), ("child-prepare", "parts/child.ipynb", [2]), ("compute", "parts/child.ipynb", [3]),
        ("report", "", [4])]
    assert [n["path"] for n in body["notebooks"]] == ["parts/child.ipynb"]
    assert body["notebook_edges"][0] == {"from": "", "to": "parts/child.ipynb", "variables": ["base"]}
    status, body = api("GET", "pipeline", params={"path": "compose/cycle_a.ipynb"})
    [problem] = [p for p in body["problems"] if p["severity"] == "error"]
    assert (problem["code"], problem["notebook"], problem["cell"]) == ("include-cycle", "cycle_b.ipynb", 1)


def test_post_pipeline_validates_unsaved_content(api, root):
    nb = nbformat.read(root / "small.ipynb", as_version=4)
    nb.cells[4].source = "total = sum(numbers) + missing_name"
    status, body = api("POST", "pipeline", body={"path": "small.ipynb", "content": nb})
    assert status == 200, body
    assert [p["code"] for p in body["problems"]] == ["undefined-name"]
    # without content: the saved file, as GET does
    status, body = api("POST", "pipeline", body={"path": "small.ipynb"})
    assert status == 200 and body["problems"] == []


def test_untagged_notebook_is_one_stage_with_an_info_problem(api, root):
    shutil.copy(FIXTURES / "whole_notebook.ipynb", root / "Untagged Notes.ipynb")
    status, body = api("GET", "pipeline", params={"path": "Untagged Notes.ipynb"})
    assert status == 200, body
    assert [s["name"] for s in body["stages"]] == ["untagged-notes"]
    assert [(p["severity"], p["code"]) for p in body["problems"]] == [("info", "whole-notebook")]
    assert [p["name"] for p in body["parameters"]] == ["n"]
    nb = nbformat.read(root / "Untagged Notes.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("more = total + 1"))
    status, body = api("POST", "pipeline", body={"path": "Untagged Notes.ipynb", "content": nb})
    assert status == 200 and body["stages"][0]["cells"][-1] == 5, body


def test_schema_invalid_content_is_problems_not_a_500(api):
    cells = [{"cell_type": "code", "metadata": {"tags": ["stage:a"]}, "outputs": [], "execution_count": None},
             {"cell_type": "code", "metadata": {"tags": 5}, "source": "x = 1", "outputs": [], "execution_count": None},
             {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "p = {[1]: 2}", "outputs": [],
              "execution_count": None}]
    content = {"nbformat": 4, "nbformat_minor": 4, "metadata": {"jupyter_pipeline": {"retries": "2"}}, "cells": cells}
    status, body = api("POST", "pipeline", body={"path": "x.ipynb", "content": content})
    assert status == 200, body
    assert {p["code"] for p in body["problems"] if p["severity"] == "error"} == {
        "invalid-cell", "parameter-not-literal", "bad-setting"}


def test_extension_gives_kernels_jax_for_keras_when_no_backend_is_chosen(monkeypatch, tmp_path, request):
    import importlib.util

    if importlib.util.find_spec("tensorflow") is not None:
        pytest.skip("TensorFlow is installed, so Keras's own default works and is kept")
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    request.getfixturevalue("jp_serverapp")  # starts the server, which loads the extension
    assert os.environ.get("KERAS_BACKEND") == "jax"  # kernels the server starts inherit it


def test_extension_keeps_a_keras_backend_the_user_chose(monkeypatch, request):
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    request.getfixturevalue("jp_serverapp")
    assert os.environ["KERAS_BACKEND"] == "torch"


def test_post_pipeline_rejects_content_that_is_not_a_notebook(api):
    status, body = api("POST", "pipeline", body={"path": "x.ipynb", "content": {"cells": "nope"}})
    assert_error(status, body, 400, "not a Jupyter notebook")
    status, body = api("POST", "pipeline", body={"path": "x.ipynb", "content": [1, 2]})
    assert_error(status, body, 400, "content")


def test_missing_notebook_is_404_without_server_paths(api, root):
    status, body = api("GET", "pipeline", params={"path": "nope.ipynb"})
    assert_error(status, body, 404, "nope.ipynb")
    assert str(root) not in body["message"]
    status, body = api("GET", "pipeline")
    assert_error(status, body, 400, "path")


# -- paths -----------------------------------------------------------------------------------------
BAD_PATHS = [
    ("../outside/secret.ipynb", "'..'"),
    ("sub/../../outside/secret.ipynb", "'..'"),
    ("/etc/passwd", "absolute"),
    ("escape.ipynb", "outside"),  # a symlink to a file out of the root
    ("escape-dir/secret.ipynb", "outside"),  # through a symlinked folder
]


@pytest.mark.parametrize("path,word", BAD_PATHS)
def test_paths_out_of_the_root_are_refused_on_every_route(api, path, word):
    calls = [
        ("GET", ("pipeline",), None, {"path": path}),
        ("POST", ("pipeline",), {"path": path}, None),
        ("POST", ("compile",), {"path": path}, None),
        ("POST", ("compile",), {"path": "small.ipynb", "output": path}, None),
        ("POST", ("runs",), {"path": path, "target": "local"}, None),
        ("GET", ("runs",), None, {"notebook": path}),
    ]
    for method, parts, body, params in calls:
        status, reply = api(method, *parts, body=body, params=params)
        assert_error(status, reply, (403, 404), word)
        assert "secret" not in reply["message"] or path.startswith(("..", "sub", "escape-dir")), reply
    status, reply = api("GET", "runs")
    assert reply["runs"] == []


# -- authentication --------------------------------------------------------------------------------
ROUTES = [
    ("GET", ("pipeline",), {"path": "small.ipynb"}, None),
    ("POST", ("pipeline",), None, {"path": "small.ipynb"}),
    ("POST", ("compile",), None, {"path": "small.ipynb"}),
    ("GET", ("runs",), None, None),
    ("POST", ("runs",), None, {"path": "small.ipynb", "target": "local"}),
    ("GET", ("runs", "20260101-000000-small-abcd"), None, None),
    ("DELETE", ("runs", "20260101-000000-small-abcd"), None, None),
    ("GET", ("runs", "20260101-000000-small-abcd", "stages", "make", "notebook"), None, None),
    ("GET", ("config",), None, None),
]


def test_every_route_refuses_unauthenticated_requests(api):
    for method, parts, params, body in ROUTES:
        status, reply = api(method, *parts, params=params, body=body, auth=False, raw=True)
        assert status in (401, 403), (method, parts, status, reply)
        assert "small" not in reply and "stages" not in reply, reply
    status, reply = api("GET", "runs")
    assert status == 200 and reply["runs"] == []  # the unauthenticated POST started nothing


# -- bad requests ----------------------------------------------------------------------------------
def test_bad_json_and_bad_fields_are_400_with_a_message(api):
    for route in ("pipeline", "compile", "runs"):
        status, body = api("POST", route, body="{not json")
        assert_error(status, body, 400, "not valid JSON")
        status, body = api("POST", route, body="[1, 2]")
        assert_error(status, body, 400, "JSON object")
        status, body = api("POST", route, body={})
        assert_error(status, body, 400, "path")
    status, body = api("POST", "runs", body={"path": "small.ipynb", "parameters": [1]})
    assert_error(status, body, 400, "parameters")
    status, body = api("GET", "runs", params={"limit": "many"})
    assert_error(status, body, 400, "limit")


def test_unknown_target_bad_parameters_and_invalid_notebooks_are_refused(api):
    status, body = api("POST", "runs", body={"path": "small.ipynb", "target": "mars"})
    assert_error(status, body, 400, "Unknown run target 'mars'", "local")
    status, body = api("POST", "runs", body={"path": "small.ipynb", "parameters": {"epochs": 3}})
    assert_error(status, body, 400, "no parameter 'epochs'")
    status, body = api("POST", "runs", body={"path": "small.ipynb", "parameters": {"n": "three"}})
    assert_error(status, body, 400, "'n'")
    status, body = api("POST", "runs", body={"path": "invalid.ipynb"})
    assert_error(status, body, 422, "not a valid pipeline")
    assert api("GET", "runs")[1]["runs"] == []


def test_unknown_and_malformed_run_ids(api):
    status, body = api("GET", "runs", "20260101-000000-nothing-0000")
    assert_error(status, body, 404, "No run")
    status, body = api("DELETE", "runs", "20260101-000000-nothing-0000")
    assert_error(status, body, 404, "No run")
    status, body = api("GET", "runs", "..", "stages", "make", "notebook")
    assert status in (400, 404)
    status, body = api("GET", "runs", "a b;c")
    assert_error(status, body, 400, "not a run id")


# -- config and compile ----------------------------------------------------------------------------
def test_config_shows_the_effective_settings(api, store_path):
    status, body = api("GET", "config")
    assert status == 200, body
    assert body["store"] == str(store_path)
    assert body["max_concurrent_runs"] == 1 and body["workers"] == 2
    targets = {t["name"]: t for t in body["targets"]}
    assert {"local", "kfp-local", "kfp"} <= set(targets) and targets["kfp"]["needs_kfp_host"] is True
    # Only a target that pulls an image makes the dialog show the image and its warnings.
    assert targets["kfp"]["uses_image"] and not targets["kfp-local"]["uses_image"] and not targets["local"]["uses_image"]
    assert targets["local"]["label"] == "Local (papermill on this server)"
    assert set(body) >= {"store", "kfp_host", "default_image"}


def test_config_never_shows_credentials(tmp_path):
    config = JupyterPipeline(store="s3://AKIAKEY:sEcReT@minio.local:9000/bucket/team",
                             kfp_host="https://user:pw@kfp.example/pipeline")
    public = config.public(str(tmp_path))
    assert public["store"] == "s3://minio.local:9000/bucket/team"
    assert public["kfp_host"] == "https://kfp.example/pipeline"
    assert "sEcReT" not in json.dumps(public) and "pw@" not in json.dumps(public)


def test_config_relative_store_is_under_the_root(tmp_path, monkeypatch):
    monkeypatch.delenv("JUPYTER_PIPELINE_STORE", raising=False)
    monkeypatch.setenv("JUPYTER_PIPELINE_CONFIG", str(tmp_path / "none.json"))
    assert JupyterPipeline().store_url(str(tmp_path)) == str(tmp_path / ".pipeline-store")
    monkeypatch.setenv("JUPYTER_PIPELINE_STORE", "elsewhere")
    assert JupyterPipeline().store_url(str(tmp_path)) == str(tmp_path / "elsewhere")


def test_compile_returns_the_kfp_yaml_and_saves_a_copy_on_request(api, root):
    status, body = api("POST", "compile", body={"path": "small.ipynb"})
    assert status == 200, body
    assert "PIPELINE DEFINITION" in body["yaml"] and "make" in body["yaml"] and "total" in body["yaml"]
    assert body["path"] is None and not (root / "small.yaml").exists()
    status, body = api("POST", "compile", body={"path": "sub/dir/nb.ipynb", "save": True})
    assert status == 200, body
    assert body["path"] == "sub/dir/nb.yaml"
    assert (root / "sub" / "dir" / "nb.yaml").read_text() == body["yaml"]
    status, body = api("POST", "compile", body={"path": "invalid.ipynb"})
    assert_error(status, body, 422, "not a valid pipeline")


def test_compile_writes_only_new_yaml_files_inside_the_root(api, root, store_path):
    notebook = (root / "small.ipynb").read_bytes()
    save_run(open_store(str(store_path)), RunRecord(run_id="20260101-000000-small-keep", pipeline="small",
                                                    notebook=str(root / "small.ipynb"), store=str(store_path)))
    record = store_path / "runs" / "20260101-000000-small-keep" / "run.json"
    kept = record.read_bytes()
    refused = [
        ("small.ipynb", 403, "only as a .yaml or .yml file"),  # over the notebook itself
        ("notes.txt", 403, "only as a .yaml or .yml file"),
        (".pipeline-store/runs/20260101-000000-small-keep/run.json", 403, "only as a .yaml"),
        (".pipeline-store/runs/20260101-000000-small-keep/pipeline.yaml", 403, "inside the pipeline store"),
        ("no/such/folder/p.yaml", 400, "does not exist"),
        ("sub", 403, "only as a .yaml"),
    ]
    for output, status, words in refused:
        code, body = api("POST", "compile", body={"path": "small.ipynb", "output": output})
        assert_error(code, body, status, words)
        code, body = api("POST", "compile", body={"path": "small.ipynb", "output": output, "overwrite": True})
        assert_error(code, body, status, words)
    # a YAML file that leads to the notebook by a symlink is judged by where it leads
    (root / "sneaky.yaml").symlink_to(root / "small.ipynb")
    code, body = api("POST", "compile", body={"path": "small.ipynb", "output": "sneaky.yaml", "overwrite": True})
    assert_error(code, body, 403, "only as a .yaml")
    assert (root / "small.ipynb").read_bytes() == notebook and record.read_bytes() == kept
    assert api("GET", "runs", "20260101-000000-small-keep")[0] == 200

    code, body = api("POST", "compile", body={"path": "small.ipynb", "output": "sub/p.yml"})
    assert code == 200 and body["path"] == "sub/p.yml", body
    assert (root / "sub" / "p.yml").read_text() == body["yaml"]
    (root / "sub" / "p.yml").write_text("mine")
    code, body = api("POST", "compile", body={"path": "small.ipynb", "output": "sub/p.yml"})
    assert_error(code, body, 409, "already exists", "overwrite")
    assert (root / "sub" / "p.yml").read_text() == "mine"
    code, body = api("POST", "compile", body={"path": "small.ipynb", "save": True})  # small.yaml is new
    assert code == 200 and body["path"] == "small.yaml"
    code, body = api("POST", "compile", body={"path": "small.ipynb", "save": True})
    assert_error(code, body, 409, "'small.yaml' already exists")
    code, body = api("POST", "compile", body={"path": "small.ipynb", "output": "sub/p.yml", "overwrite": True})
    assert code == 200 and (root / "sub" / "p.yml").read_text() == body["yaml"]
    code, body = api("POST", "compile", body={"path": "small.ipynb", "output": "sub/p.yml", "overwrite": "yes"})
    assert_error(code, body, 400, "overwrite")


def test_error_messages_show_root_relative_paths(api, root):
    (root / "broken.ipynb").write_text("{not a notebook")
    requests = [
        ("GET", ("pipeline",), None, {"path": "sub/dir/missing.ipynb"}, "sub/dir/missing.ipynb"),
        ("POST", ("compile",), {"path": "invalid.ipynb"}, None, "invalid.ipynb"),
        ("POST", ("runs",), {"path": "invalid.ipynb"}, None, "invalid.ipynb"),
        ("POST", ("compile",), {"path": "broken.ipynb"}, None, "broken.ipynb"),
        ("POST", ("runs",), {"path": "sub/dir/gone.ipynb"}, None, "sub/dir/gone.ipynb"),
    ]
    for method, parts, body, params, shown in requests:
        status, reply = api(method, *parts, body=body, params=params)
        assert 400 <= status < 500, (parts, status, reply)
        assert shown in reply["message"], reply
        assert str(root) not in reply["message"] and str(root.resolve()) not in reply["message"], reply
    # an invalid notebook points to the Problems list, not to a command line
    status, reply = api("POST", "runs", body={"path": "invalid.ipynb"})
    assert_error(status, reply, 422, "invalid.ipynb is not a valid pipeline", "Problems")
    assert "jupyter-pipeline validate" not in reply["message"]


def test_kubeflow_without_a_host_is_a_400_naming_the_setting(api, monkeypatch):
    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)
    status, body = api("POST", "runs", body={"path": "small.ipynb", "target": "kfp"})
    assert_error(status, body, 400, "Settings Editor", "Kubeflow Pipelines host")
    assert "--kfp-host" not in body["message"]
    assert api("GET", "runs")[1]["runs"] == []


# -- runs ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_background_local_run_polled_to_success(api, root, store_path):
    status, body = api("POST", "runs", body={"path": "small.ipynb", "target": "local", "parameters": {"n": 4}})
    assert status == 202, body
    run_id = body["run_id"]
    assert set(body) == {"run_id"}
    seen = set()
    record = wait_for(api, run_id, done=lambda r: seen.add(r["status"]) or r["status"] != "running")
    assert record["status"] == "succeeded", record
    assert "running" in seen or len(seen) == 1  # answered before the run ended, or it was very fast
    assert record["parameters"] == {"n": 4, "delay": 0.0}
    assert record["notebook"] == str((root / "small.ipynb").resolve())
    assert {n: s["status"] for n, s in record["stages"].items()} == {"make": "succeeded", "total": "succeeded"}
    assert record["metrics"] == {"total": 6}
    assert all(s["duration"] is not None and s["output_notebook"] for s in record["stages"].values())

    # the record the API shows is the one in the store, for any other reader
    on_disk = json.loads((store_path / "runs" / run_id / "run.json").read_text())
    assert on_disk["status"] == "succeeded"

    status, runs = api("GET", "runs")
    assert [r["run_id"] for r in runs["runs"]] == [run_id]
    assert api("GET", "runs", params={"notebook": "small.ipynb"})[1]["runs"][0]["run_id"] == run_id
    assert api("GET", "runs", params={"notebook": "sub/dir/nb.ipynb"})[1]["runs"] == []

    status, nb = api("GET", "runs", run_id, "stages", "total", "notebook")
    assert status == 200 and nb["nbformat"] == 4
    texts = [o.get("text", "") for c in nb["cells"] for o in c.get("outputs", [])]
    printed = "".join(t if isinstance(t, str) else "".join(t) for t in texts)
    assert "total 6" in printed
    status, nb = api("GET", "runs", run_id, "stages", "total", "notebook", params={"which": "input"})
    assert status == 200 and nb["cells"]
    status, body = api("GET", "runs", run_id, "stages", "nope", "notebook")
    assert_error(status, body, 404, "no stage 'nope'")
    status, body = api("DELETE", "runs", run_id)
    assert_error(status, body, 409, "not running")


@pytest.mark.slow
def test_sweep_runs_in_the_background_and_lists_its_variants(api, store_path):
    sweep = {"grid": {"n": [2, 4, 3]}, "metric": "total", "goal": "max"}
    status, body = api("POST", "runs", body={"path": "small.ipynb", "parameters": {"delay": 0.5}, "sweep": sweep})
    assert status == 202 and set(body) == {"sweep_id"}, body
    sweep_id = body["sweep_id"]
    deadline = time.monotonic() + POLL_TIMEOUT
    while True:
        runs = api("GET", "runs")[1]["runs"]
        if len(runs) == 3 and all(r["status"] != "running" for r in runs):
            break
        assert time.monotonic() < deadline, runs
        time.sleep(0.25)
    assert {r["sweep_id"] for r in runs} == {sweep_id} and {r["status"] for r in runs} == {"succeeded"}
    assert sorted((r["parameters"]["n"], r["parameters"]["delay"], r["metrics"]["total"]) for r in runs) == [
        (2, 0.5, 1), (3, 0.5, 3), (4, 0.5, 6)]
    result_file = store_path / "sweeps" / sweep_id / "sweep.json"
    while not result_file.exists():  # written just after the last variant's record
        assert time.monotonic() < deadline
        time.sleep(0.1)
    result = json.loads(result_file.read_text())
    assert result["best"] == next(r["run_id"] for r in runs if r["parameters"]["n"] == 4)


def test_bad_sweeps_are_refused_before_anything_runs(api):
    for sweep, words in [({"grid": []}, ("grid",)), ({"grid": {"n": []}}, ("non-empty list",)),
                         ({"grid": {"n": [1]}, "goal": "up"}, ("goal",)),
                         ({"grid": {"n": [1]}, "max_parallel": 0}, ("max_parallel",))]:
        status, body = api("POST", "runs", body={"path": "small.ipynb", "sweep": sweep})
        assert_error(status, body, 400, *words)
    status, body = api("POST", "runs", body={"path": "small.ipynb", "sweep": {"grid": {"epochs": [1, 2]}}})
    assert_error(status, body, 400, "no parameter 'epochs'")
    status, body = api("POST", "runs", body={"path": "small.ipynb", "sweep": {"grid": {"n": ["x"]}}})
    assert_error(status, body, 400, "'n'")
    status, body = api("POST", "runs", body={"path": "small.ipynb", "target": "kfp", "sweep": {"grid": {"n": [1]}}})
    assert_error(status, body, (400, 502), "not submitted to a Kubeflow cluster yet")
    assert api("GET", "runs")[1]["runs"] == []


@pytest.mark.slow
def test_cancel_a_running_local_run(api, store_path):
    status, body = api("POST", "runs", body={"path": "small.ipynb", "parameters": {"delay": 120}})
    assert status == 202, body
    run_id = body["run_id"]
    wait_for(api, run_id, done=lambda r: r["stages"]["make"]["status"] == "running")

    # the limit (max_concurrent_runs = 1) holds while it runs
    status, body = api("POST", "runs", body={"path": "small.ipynb"})
    assert_error(status, body, 429, "max_concurrent_runs")
    status, body = api("GET", "runs", run_id, "stages", "make", "notebook")
    assert_error(status, body, 404, "has not run yet")

    lease = Lease(open_store(str(store_path)).absolute_url(), run_id)
    assert [h for h in lease.holders() if h[0] != os.getpid()]  # the stage's worker and kernel, while it runs
    started = time.monotonic()
    status, record = api("DELETE", "runs", run_id)
    assert status == 200, record
    assert record["status"] == "cancelled"
    assert record["stages"]["make"]["status"] == "cancelled"
    assert record["stages"]["total"]["status"] in ("cancelled", "skipped")
    assert time.monotonic() - started < 30
    assert api("GET", "runs", run_id)[1]["status"] == "cancelled"
    # the slot is free again, and the stage's processes (worker, kernel) are gone: none holds the run's lease
    deadline = time.monotonic() + 10
    while (others := [h for h in lease.holders() if h[0] != os.getpid()]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not others, others


# -- recovery --------------------------------------------------------------------------------------
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def left_running(store_path):
    """Before the server starts: one run left `running` by a dead process, one by a live one."""
    store = open_store(str(store_path))
    host = socket.gethostname()

    def record(run_id: str, pid: int) -> RunRecord:
        rec = RunRecord(run_id=run_id, pipeline="small", notebook="/nowhere/small.ipynb", store=str(store_path),
                        stages={"make": StageRecord(status=StageState.SUCCEEDED),
                                "total": StageRecord(status=StageState.RUNNING)},
                        owner={"host": host, "pid": pid})
        save_run(store, rec)
        return rec

    return record("20260101-000000-small-dead", _dead_pid()), record("20260101-000001-small-live", os.getpid())


def test_runs_left_running_by_a_dead_process_are_interrupted_at_start(left_running, jp_serverapp, store_path, api):
    dead, live = left_running
    path = store_path / "runs" / dead.run_id / "run.json"
    deadline = time.monotonic() + 20
    while json.loads(path.read_text())["status"] == "running":  # the server's own start-up check
        assert time.monotonic() < deadline, "the server did not mark the dead run interrupted"
        time.sleep(0.1)
    on_disk = json.loads(path.read_text())
    assert on_disk["status"] == "interrupted"
    assert on_disk["stages"]["make"]["status"] == "succeeded"
    assert on_disk["stages"]["total"]["status"] == "interrupted"
    assert "resume" in on_disk["error"]
    assert json.loads((store_path / "runs" / live.run_id / "run.json").read_text())["status"] == "running"
    status, body = api("GET", "runs")
    assert {r["run_id"]: r["status"] for r in body["runs"]} == {live.run_id: "running", dead.run_id: "interrupted"}


# -- Kubeflow target (a loopback server plays the KFP API, as in test_kfp_client.py) --------------
@pytest.mark.slow
def test_kfp_run_is_submitted_and_followed_through_the_api(api, kfp_server):  # noqa: F811 - the imported fixture
    kfp_server.run_state = "SUCCEEDED"
    status, body = api("POST", "runs", body={"path": "small.ipynb", "target": "kfp", "experiment": "from-lab",
                                             "kfp_host": kfp_server.host})
    assert status == 202, body
    run_id = body["run_id"]
    submitted = [r for r in kfp_server.requests if r["method"] == "POST" and r["path"].endswith("/runs")]
    assert len(submitted) == 1
    assert any(e["display_name"] == "from-lab" for e in kfp_server.experiments)
    status, record = api("GET", "runs", run_id)  # read back, refreshed from the (fake) cluster
    assert status == 200, record
    assert record["target"] == "kfp" and record["external_id"] == "kfp-run-1" and record["url"]
    assert record["status"] == "succeeded"
    assert any(r["method"] == "GET" and r["path"].endswith("/runs/kfp-run-1") for r in kfp_server.requests)
    status, body = api("DELETE", "runs", run_id)
    assert_error(status, body, 409, "not running")


@pytest.mark.slow
def test_unreachable_kubeflow_is_a_502_with_a_message(api):
    status, body = api("POST", "runs", body={"path": "small.ipynb", "target": "kfp",
                                             "kfp_host": f"http://127.0.0.1:{_closed_port()}"})
    assert_error(status, body, 502, "127.0.0.1")
    assert api("GET", "runs")[1]["runs"] == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_a_run_in_shared_kernel_mode(api):
    status, body = api("POST", "runs", body={"path": "small.ipynb", "shared_kernel": "yes"})
    assert_error(status, body, 400, "\"shared_kernel\" must be true or false")
    status, body = api("POST", "runs", body={"path": "small.ipynb", "parameters": {"n": 4}, "shared_kernel": True})
    assert status == 202, body
    record = wait_for(api, body["run_id"], done=lambda r: r["status"] != "running")
    assert record["status"] == "succeeded", record
    assert record["kernel_mode"] == "shared" and record["metrics"] == {"total": 6}
