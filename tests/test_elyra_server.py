"""Elyra pipeline files through the server extension's routes (a real Jupyter server, ``jp_fetch``)."""
# ruff: noqa: F811 - the fixtures imported from test_server are used as parameters of the same name

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from pytest_jupyter.jupyter_server import *  # noqa: F401,F403 - fixtures, scoped to this module

from jupyter_pipeline.store.base import open_store
from test_server import api, assert_error, jp_server_config, root, store_path, wait_for  # noqa: F401 - fixtures

ELYRA = Path(__file__).resolve().parent / "fixtures" / "elyra"


@pytest.fixture
def elyra(root):
    """The Elyra fixtures in the server's root, under ``elyra/``."""
    shutil.copytree(ELYRA, root / "elyra")
    (root / "elyra" / "broken.pipeline").write_text("{not json")
    return root / "elyra"


def test_get_pipeline_reads_an_elyra_file(api, elyra):
    status, body = api("GET", "pipeline", params={"path": "elyra/files.pipeline"})
    assert status == 200, body
    assert body["path"] == "elyra/files.pipeline"  # as the browser named it
    assert [s["name"] for s in body["stages"]] == ["load-data", "clean", "report"]
    assert body["edges"] == [["load-data", "clean"], ["clean", "report"]]
    assert [p["code"] for p in body["problems"]] == ["elyra-runtime-image"]  # an info, for Kubeflow
    report = body["stages"][2]
    assert report["files_in"] == [{"file": "data/raw.csv", "from": "load-data"},
                                  {"file": "data/clean.csv", "from": "clean"}, {"file": "summary.json", "from": "clean"}]
    assert body["kubeflow"]["files"] == ["load_data.ipynb", "report.ipynb", "scripts/clean.py", "scripts/helpers.py"]
    # problems are data, naming the node
    status, body = api("GET", "pipeline", params={"path": "elyra/unknown_node.pipeline"})
    assert status == 200 and [p["code"] for p in body["problems"] if p["severity"] == "error"] == ["elyra-node-type"]
    assert "node 'Filter rows'" in body["problems"][0]["message"]
    status, body = api("GET", "pipeline", params={"path": "elyra/broken.pipeline"})
    assert_error(status, body, 404, "Cannot read pipeline file elyra/broken.pipeline", "not JSON")
    assert str(elyra) not in body["message"]  # the browser's path, not the server's


def test_compile_and_run_an_elyra_file(api, elyra, store_path, monkeypatch, tmp_path):
    # the working files travel through the store the pods use: a folder here
    monkeypatch.setenv("JUPYTER_PIPELINE_KFP_STORE", str(tmp_path / "cluster-store"))
    status, body = api("POST", "compile", body={"path": "elyra/files.pipeline"})
    assert status == 200, body
    spec = next(yaml.safe_load_all(body["yaml"]))
    assert spec["pipelineInfo"]["name"] == "elyra-files"
    assert list((tmp_path / "cluster-store" / "files").glob("*.tar.gz"))  # the bundle was published
    status, body = api("POST", "compile", body={"path": "elyra/cycle.pipeline"})
    assert_error(status, body, 422, "not a valid pipeline", "node 'first'")

    status, body = api("POST", "runs", body={"path": "elyra/files.pipeline", "parameters": {"THRESHOLD": 1000}})
    assert status == 202, body
    record = wait_for(api, body["run_id"])
    assert record["status"] == "succeeded", record
    report = open_store(str(store_path)).get_bytes(f"runs/{record['run_id']}/stages/report/files/report.txt")
    assert b"passed=False" in report
    assert not (elyra / "data").exists()  # the nodes worked in folders of their own
