"""Contract test of the ``kfp`` target: a loopback HTTP server plays the KFP v2beta1 REST API.

No Kubeflow cluster is reachable here, so the requests ``kfp.Client`` makes for jupyter-pipeline
(health check, upload, new version, experiments, runs, recurring runs, get run) are checked
exactly against what the v2beta1 API documents, and the server's answers are fed back through
the CLI into run records.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from jupyter_pipeline.cli import main
from test_kfp_compile import stage_dag

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
API = "/apis/v2beta1"


class FakeKfp:
    """State and canned answers of the fake API server; ``requests`` records every call."""

    def __init__(self):
        self.requests: list[dict] = []
        self.pipelines: list[dict] = []
        self.experiments: list[dict] = []
        self.fail: dict[str, tuple[int, dict]] = {}  # "METHOD path" -> (status, body)
        self.run_state = "RUNNING"
        self.tasks: list[dict] = []

    def answer(self, method: str, path: str, query: dict, body) -> tuple[int, dict]:
        key = f"{method} {path}"
        if key in self.fail:
            return self.fail[key]
        if key == f"GET {API}/healthz":
            return 200, {"multi_user": False}
        if key == f"GET {API}/pipelines":
            return 200, {"pipelines": self.pipelines, "total_size": len(self.pipelines)} if self.pipelines else {}
        if key == f"POST {API}/pipelines/upload":
            self.pipelines.append({"pipeline_id": "pipe-1", "display_name": query["name"][0]})
            return 200, {"pipeline_id": "pipe-1", "display_name": query["name"][0]}
        if key == f"GET {API}/pipelines/pipe-1/versions":
            return 200, {"pipeline_versions": [{"pipeline_id": "pipe-1", "pipeline_version_id": "ver-1"}]}
        if key == f"POST {API}/pipelines/upload_version":
            return 200, {"pipeline_id": query["pipelineid"][0], "pipeline_version_id": "ver-2"}
        if key == f"GET {API}/experiments":
            return 200, {"experiments": self.experiments} if self.experiments else {}
        if key == f"POST {API}/experiments":
            exp = {"experiment_id": "exp-1", "display_name": body["display_name"]}
            self.experiments.append(exp)
            return 200, exp
        if key == f"POST {API}/runs":
            return 200, {"run_id": "kfp-run-1", "display_name": body["display_name"], "state": "PENDING"}
        if key == f"POST {API}/recurringruns":
            return 200, {"recurring_run_id": "rec-1", "display_name": body["display_name"]}
        if key == f"GET {API}/runs/kfp-run-1":
            return 200, {"run_id": "kfp-run-1", "display_name": "x", "state": self.run_state,
                         "run_details": {"task_details": self.tasks}}
        return 404, {"error": f"no route {key}", "message": f"no route {key}", "code": 5}


@pytest.fixture
def kfp_server():
    fake = FakeKfp()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self, method):
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            ctype = self.headers.get("Content-Type", "")
            body = json.loads(raw) if raw and "json" in ctype else raw
            query = parse_qs(url.query)
            fake.requests.append({"method": method, "path": url.path, "query": query, "body": body,
                                  "content_type": ctype, "authorization": self.headers.get("Authorization"),
                                  "cookie": self.headers.get("Cookie")})
            status, answer = fake.answer(method, url.path, query, body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._handle("GET")

        def do_POST(self):
            self._handle("POST")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.host = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    server.shutdown()
    server.server_close()


def calls(fake) -> list[str]:
    return [f"{r['method']} {r['path']}" for r in fake.requests]


def uploaded_spec(request) -> dict:
    """The pipeline YAML inside a multipart upload body."""
    raw = request["body"]
    start = raw.index(b"# PIPELINE DEFINITION")
    end = raw.index(b"\r\n--", start)
    return list(yaml.safe_load_all(raw[start:end]))[0]


def run_cli(args, capsys):
    """Exit status, stdout and stderr (unwrapped: errors are printed as a wrapped paragraph)."""
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())


def test_run_uploads_creates_experiment_and_starts_run(kfp_server, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    store = str(tmp_path / "store")
    code, out, err = run_cli(["run", "tests/fixtures/kfp_values.ipynb", "--target", "kfp", "--kfp-host", kfp_server.host,
                              "--experiment", "nightly", "--kfp-token", "tok-123", "-p", "n", "7", "-p", "extra", "[1]",
                              "--store", store, "--json"], capsys)
    assert code == 0, err
    assert calls(kfp_server) == [
        f"GET {API}/healthz",
        f"GET {API}/pipelines",
        f"POST {API}/pipelines/upload",
        f"GET {API}/pipelines/pipe-1/versions",
        f"GET {API}/experiments",
        f"POST {API}/experiments",
        f"POST {API}/runs",
    ]
    assert all(r["authorization"] == "Bearer tok-123" for r in kfp_server.requests)
    lookup = json.loads(kfp_server.requests[1]["query"]["filter"][0])
    assert lookup["predicates"] == [{"operation": "EQUALS", "key": "display_name", "stringValue": "kfp-values"}]
    upload = kfp_server.requests[2]
    assert upload["query"]["name"] == ["kfp-values"]
    assert upload["content_type"].startswith("multipart/form-data")
    spec = uploaded_spec(upload)
    assert spec["pipelineInfo"]["name"] == "kfp-values"
    assert set(stage_dag(spec)) == {"make", "scale", "shift", "report"}
    assert kfp_server.requests[3]["query"] == {"page_size": ["1"], "sort_by": ["created_at desc"]}
    assert kfp_server.requests[5]["body"] == {"display_name": "nightly", "namespace": ""}  # single-user
    run = kfp_server.requests[6]["body"]
    record = json.loads(out)
    assert run["experiment_id"] == "exp-1"
    # the stages write to kfp-<KFP run id> (no per-run input, so KFP's cache can hit): so does the record
    assert record["run_id"] == "kfp-kfp-run-1" and "-kfp-values-" in run["display_name"]
    assert run["pipeline_version_reference"] == {"pipeline_id": "pipe-1", "pipeline_version_id": "ver-1"}
    params = run["runtime_config"]["parameters"]
    assert params["n"] == 7 and params["scale"] == 2.5 and params["shift"] == [1, 2]
    assert params["extra"] == "json:[1]"  # None-default parameter travels as JSON text
    assert not any(name.startswith("jp_") for name in params)
    assert "pipeline_spec" not in run  # the run references the uploaded version
    assert record["target"] == "kfp" and record["status"] == "running"
    assert record["external_id"] == "kfp-run-1"
    assert record["url"] == f"{kfp_server.host}/#/runs/details/kfp-run-1"
    # the record and the exact spec are kept in the store, so `runs` lists the run; the notebook and
    # the parsed pipeline too, as every target keeps them (records.snapshot)
    folder = Path(store) / "runs" / record["run_id"]
    assert (folder / "pipeline.yaml").is_file() and (folder / "notebook.ipynb").is_file()
    parsed = json.loads((folder / "pipeline.json").read_text())
    assert {s["name"] for s in parsed["stages"]} == {"make", "scale", "shift", "report"}
    code, out, _ = run_cli(["runs", "--store", store, "--json"], capsys)
    assert [r["run_id"] for r in json.loads(out)["runs"]] == [record["run_id"]]


def test_existing_pipeline_gets_a_new_version_and_existing_experiment_is_reused(kfp_server, tmp_path, capsys,
                                                                                monkeypatch):
    monkeypatch.chdir(ROOT)
    kfp_server.pipelines.append({"pipeline_id": "pipe-9", "display_name": "kfp-values"})
    kfp_server.experiments.append({"experiment_id": "exp-7", "display_name": "Default"})
    code, out, err = run_cli(["run", "tests/fixtures/kfp_values.ipynb", "--target", "kfp", "--kfp-host", kfp_server.host,
                              "--kfp-cookie", "authservice_session=abc", "--namespace", "team-a",
                              "--store", str(tmp_path / "s"), "--json"], capsys)
    assert code == 0, err
    assert calls(kfp_server) == [f"GET {API}/healthz", f"GET {API}/pipelines", f"POST {API}/pipelines/upload_version",
                                 f"GET {API}/experiments", f"POST {API}/runs"]
    assert all(r["cookie"] == "authservice_session=abc" for r in kfp_server.requests)
    assert kfp_server.requests[1]["query"]["namespace"] == ["team-a"]
    version = kfp_server.requests[2]
    record = json.loads(out)
    assert record["pipeline"] == "kfp-values"
    display = kfp_server.requests[4]["body"]["display_name"]  # the run's name is the version's
    assert version["query"] == {"name": [display], "pipelineid": ["pipe-9"],
                                "description": ["from tests/fixtures/kfp_values.ipynb"]}
    assert uploaded_spec(version)["pipelineInfo"]["name"] == "kfp-values"
    exp_filter = json.loads(kfp_server.requests[3]["query"]["filter"][0])
    assert exp_filter["predicates"][0]["string_value" if "string_value" in exp_filter["predicates"][0]
                                       else "stringValue"] == "Default"
    assert kfp_server.requests[3]["query"]["namespace"] == ["team-a"]
    assert kfp_server.requests[4]["body"]["experiment_id"] == "exp-7"
    assert kfp_server.requests[4]["body"]["pipeline_version_reference"]["pipeline_version_id"] == "ver-2"


def test_runs_target_kfp_maps_task_states(kfp_server, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    store = str(tmp_path / "store")
    code, out, _ = run_cli(["run", "tests/fixtures/kfp_values.ipynb", "--target", "kfp", "--kfp-host", kfp_server.host,
                            "--store", store, "--json"], capsys)
    run_id = json.loads(out)["run_id"]
    kfp_server.requests.clear()
    kfp_server.run_state = "FAILED"
    kfp_server.tasks = [
        {"display_name": "kfp-values", "state": "FAILED"},  # the root DAG: not a stage
        {"display_name": "make", "state": "SUCCEEDED", "start_time": "2026-01-01T00:00:00Z",
         "end_time": "2026-01-01T00:00:05Z"},
        {"display_name": "scale", "state": "CACHED"},
        {"display_name": "shift", "state": "FAILED", "error": {"message": "exit code 1", "code": 2}},
        {"display_name": "shift", "state": "SUCCEEDED"},  # an earlier attempt entry: the failure wins
    ]
    code, out, err = run_cli(["runs", run_id, "--target", "kfp", "--kfp-host", kfp_server.host, "--store", store,
                              "--json"], capsys)
    assert code == 0, err
    assert calls(kfp_server) == [f"GET {API}/healthz", f"GET {API}/runs/kfp-run-1"]
    record = json.loads(out)
    stages = record["stages"]
    assert stages["make"]["status"] == "succeeded" and stages["make"]["duration"] == 5.0
    assert stages["scale"]["status"] == "succeeded" and stages["scale"]["reused"] is True
    assert stages["shift"]["status"] == "failed" and stages["shift"]["error"] == "exit code 1"
    assert stages["report"]["status"] == "skipped"  # never started before the run failed
    assert record["status"] == "failed" and record["error"] == "stage shift failed"
    # the refreshed state is saved: plain `runs RUN` shows it without asking Kubeflow
    code, out, _ = run_cli(["runs", run_id, "--store", store, "--json"], capsys)
    assert json.loads(out)["stages"]["shift"]["status"] == "failed"


def test_schedule_creates_recurring_run(kfp_server, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code, out, err = run_cli(["schedule", "tests/fixtures/kfp_values.ipynb", "--cron", "0 3 * * *",
                              "--kfp-host", kfp_server.host, "-p", "label", "nightly", "--json"], capsys)
    assert code == 0, err
    assert calls(kfp_server)[-1] == f"POST {API}/recurringruns"
    body = kfp_server.requests[-1]["body"]
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * *"}}
    assert body["max_concurrency"] == "1" or body["max_concurrency"] == 1
    assert body["mode"] == "ENABLE"
    assert body["pipeline_version_reference"] == {"pipeline_id": "pipe-1", "pipeline_version_id": "ver-1"}
    assert body["runtime_config"]["parameters"]["label"] == "nightly"
    assert "jp_run_id" not in body["runtime_config"]["parameters"]  # each scheduled run: kfp-<job id>
    result = json.loads(out)
    assert result["recurring_run_id"] == "rec-1" and result["cron"] == "0 0 3 * * *"


@pytest.mark.parametrize("status,expected", [
    (401, "refused the credentials"),
    (403, "refused the credentials"),
])
def test_auth_failure_is_one_sentence_and_fast(kfp_server, capsys, status, expected, monkeypatch):
    import time

    monkeypatch.chdir(ROOT)
    kfp_server.fail[f"GET {API}/healthz"] = (status, {"message": "bad token", "code": 16})
    started = time.monotonic()
    code, out, err = run_cli(["run", "tests/fixtures/kfp_values.ipynb", "--target", "kfp",
                              "--kfp-host", kfp_server.host], capsys)
    assert code == 1
    assert expected in err and "bad token" in err and "Traceback" not in err
    assert len(kfp_server.requests) == 1  # no retry loop against a refused token
    assert time.monotonic() - started < 30


def test_rejected_spec(kfp_server, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    kfp_server.fail[f"POST {API}/pipelines/upload"] = (400, {"message": "invalid pipeline spec: bad DAG", "code": 3})
    code, out, err = run_cli(["run", "tests/fixtures/kfp_values.ipynb", "--target", "kfp",
                              "--kfp-host", kfp_server.host], capsys)
    assert code == 1
    assert "rejected the pipeline spec" in err and "bad DAG" in err
    assert f"POST {API}/runs" not in calls(kfp_server)


def test_unreachable_host(capsys, monkeypatch):
    import socket

    monkeypatch.chdir(ROOT)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out, err = run_cli(["run", "tests/fixtures/kfp_values.ipynb", "--target", "kfp",
                              "--kfp-host", f"http://127.0.0.1:{port}"], capsys)
    assert code == 1
    assert "Cannot reach Kubeflow Pipelines" in err and "Traceback" not in err
    said = " ".join(err.split())
    assert f"at http://127.0.0.1:{port} while connecting (connection refused: nothing listens there); check" in said
    assert "MaxRetry" not in said and "HTTPConnectionPool" not in said  # urllib3's words stay out


def test_missing_host(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)
    code, out, err = run_cli(["run", "tests/fixtures/kfp_values.ipynb", "--target", "kfp"], capsys)
    assert code == 1 and "--kfp-host" in err


def test_inside_a_pod_nothing_needs_configuring(kfp_server, in_pod, tmp_path, capsys, monkeypatch):
    """In a Kubeflow notebook pod: the in-cluster endpoint, the projected KFP token, the pod's
    namespace and the notebook's own image, as kfp.Client and Kale find them."""
    from jupyter_pipeline import cluster

    monkeypatch.chdir(ROOT)
    for name in ("KF_PIPELINES_ENDPOINT", "JUPYTER_PIPELINE_KFP_HOST", "KF_PIPELINES_TOKEN", "JUPYTER_PIPELINE_IMAGE",
                 "JUPYTER_PIPELINE_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JUPYTER_PIPELINE_CONFIG", str(tmp_path / "none.json"))
    monkeypatch.setattr(cluster, "KFP_IN_CLUSTER_HOST", kfp_server.host)
    code, out, err = run_cli(["run", "tests/fixtures/kfp_values.ipynb", "--target", "kfp",
                              "--store", str(tmp_path / "s"), "--json"], capsys)
    assert code == 0, err
    assert all(r["authorization"] == "Bearer kfp-projected-token" for r in kfp_server.requests)
    assert kfp_server.requests[1]["query"]["namespace"] == ["team-a"]
    spec = uploaded_spec(kfp_server.requests[2])
    assert {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()} == {
        "registry.example/team/notebook:7"}
    assert json.loads(out)["history"][0]["host"] == kfp_server.host
