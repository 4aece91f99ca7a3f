"""The model server end to end: real Keras models registered with ``log_model`` in a temporary
store, served by the real tornado server on a loopback port, called over HTTP."""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from serving_models import dense, expected, rows, two_headed  # picks Keras's backend; skips without Keras

from jupyter_pipeline.store.models import log_model
from jupyter_pipeline.serving import ServerConfig, ServerThread
from jupyter_pipeline.serving.cache import PredictionCache

ROOT = Path(__file__).resolve().parent.parent
BODY_LIMIT = 200_000


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One server over a store with several models; yields (server thread, client, models)."""
    store = str(tmp_path_factory.mktemp("serving") / "store")
    models = {"digits": dense(0), "multi": two_headed(), "v1": dense(1), "v2": dense(2),
              "reload1": dense(4), "reload2": dense(5), "batch": dense(6, hidden=256)}
    log_model(models["digits"], "digits", store=store)
    log_model(models["multi"], "multi", store=store)
    log_model(models["v1"], "versions", store=store)
    log_model(models["v2"], "versions", store=store)
    log_model(models["reload1"], "reload", store=store)
    log_model(models["batch"], "batch", store=store)
    log_model(dense(7), "broken", store=store)
    Path(store, "models/broken/1/model.keras").write_bytes(b"not a zip file")
    config = ServerConfig(store=store, port=0, address="127.0.0.1", poll_interval=0.2,
                          max_body_bytes=BODY_LIMIT, max_batch_size=32, max_batch_wait_ms=2)
    with ServerThread(config) as thread:
        with httpx.Client(base_url=thread.url, timeout=30) as client:
            yield thread, client, models, store


def v2_body(x, name="pixels", datatype="FP32", **extra):
    return {"inputs": [{"name": name, "shape": list(x.shape), "datatype": datatype,
                        "data": x.reshape(-1).tolist()}], **extra}


# -- protocols ------------------------------------------------------------------------------------

def test_v2_infer_equals_the_models_own_output(served):
    thread, client, models, _ = served
    x = rows(3)
    r = client.post("/v2/models/digits/infer", json=v2_body(x, id="req-7"))
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["model_name"] == "digits" and doc["model_version"] == "1" and doc["id"] == "req-7"
    [out] = doc["outputs"]
    assert out["name"] == "probs" and out["shape"] == [3, 10] and out["datatype"] == "FP32"
    got = np.asarray(out["data"], np.float32).reshape(3, 10)
    np.testing.assert_allclose(got, expected(models["digits"], x)[0], rtol=1e-6, atol=1e-7)
    # The version can be named; nested data is accepted as well as flat.
    r = client.post("/v2/models/digits/versions/1/infer",
                    json={"inputs": [{"name": "pixels", "shape": [3, 64], "datatype": "FP64", "data": x.tolist()}]})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.asarray(r.json()["outputs"][0]["data"]).reshape(3, 10), got, rtol=1e-6)


def test_v2_several_inputs_and_outputs_with_output_selection(served):
    _, client, models, _ = served
    a = np.array([[0.5, -1.0, 2.0], [1.0, 0.0, 0.25]], np.float32)
    b = np.array([[1, 2], [3, -4]], np.int32)
    body = {"inputs": [{"name": "b", "shape": [2, 2], "datatype": "INT32", "data": b.ravel().tolist()},
                       {"name": "a", "shape": [2, 3], "datatype": "FP32", "data": a.ravel().tolist()}]}
    want = expected(models["multi"], {"a": a, "b": b})
    doc = client.post("/v2/models/multi/infer", json=body).json()
    assert [o["name"] for o in doc["outputs"]] == ["score", "classes"]
    for out, ref in zip(doc["outputs"], want):
        np.testing.assert_allclose(np.asarray(out["data"]).reshape(out["shape"]), ref, rtol=1e-6, atol=1e-7)
    doc = client.post("/v2/models/multi/infer", json={**body, "outputs": [{"name": "classes"}]}).json()
    assert [o["name"] for o in doc["outputs"]] == ["classes"]
    assert doc["outputs"][0]["shape"] == [2, 4]


def test_v1_predict_instances_and_inputs_forms(served):
    _, client, models, _ = served
    x = rows(2, seed=1)
    want = expected(models["digits"], x)[0]
    r = client.post("/v1/models/digits:predict", json={"instances": x.tolist()})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.asarray(r.json()["predictions"]), want, rtol=1e-6, atol=1e-7)
    r = client.post("/v1/models/digits/versions/1:predict", json={"inputs": x.tolist()})
    np.testing.assert_allclose(np.asarray(r.json()["outputs"]), want, rtol=1e-6, atol=1e-7)
    a, b = [[0.5, -1.0, 2.0]], [[1, 2]]
    want = expected(models["multi"], {"a": np.asarray(a, np.float32), "b": np.asarray(b, np.int32)})
    preds = client.post("/v1/models/multi:predict", json={"instances": [{"a": a[0], "b": b[0]}]}).json()["predictions"]
    assert set(preds[0]) == {"score", "classes"}
    np.testing.assert_allclose(preds[0]["classes"], want[1][0], rtol=1e-6)
    outs = client.post("/v1/models/multi:predict", json={"inputs": {"a": a, "b": b}}).json()["outputs"]
    np.testing.assert_allclose(outs["score"], want[0], rtol=1e-6)


def test_metadata_health_and_v1_status(served):
    _, client, _, _ = served
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert "digits" in client.get("/v2").json()["models"]
    meta = client.get("/v2/models/multi").json()
    assert meta["name"] == "multi" and meta["versions"] == ["1"] and meta["platform"] == "keras_jax"
    assert meta["inputs"] == [{"name": "a", "datatype": "FP32", "shape": [-1, 3]},
                              {"name": "b", "datatype": "INT32", "shape": [-1, 2]}]
    assert [o["name"] for o in meta["outputs"]] == ["score", "classes"]
    assert client.get("/v2/models/digits/ready").json()["ready"] is True
    assert client.get("/v2/models/digits/versions/1/ready").status_code == 200
    doc = client.get("/v1/models/digits").json()  # TF Serving's status and KServe v1's at once
    assert doc["model_version_status"] == [{"version": "1", "state": "AVAILABLE",
                                            "status": {"error_code": "OK", "error_message": ""}}]
    assert doc["name"] == "digits" and doc["ready"] is True
    assert client.get("/").json() == {"status": "alive"}  # KServe v1 liveness


def test_older_versions_stay_addressable(served):
    _, client, models, _ = served
    x = rows(1, seed=2)
    latest = client.post("/v2/models/versions/infer", json=v2_body(x)).json()
    assert latest["model_version"] == "2"
    np.testing.assert_allclose(np.reshape(latest["outputs"][0]["data"], (1, 10)), expected(models["v2"], x)[0],
                               rtol=1e-6, atol=1e-7)
    status = client.get("/v1/models/versions/versions/1").json()["model_version_status"]
    assert [(s["version"], s["state"]) for s in status] == [("1", "AVAILABLE")]
    old = client.post("/v2/models/versions/versions/1/infer", json=v2_body(x)).json()
    assert old["model_version"] == "1"
    np.testing.assert_allclose(np.reshape(old["outputs"][0]["data"], (1, 10)), expected(models["v1"], x)[0],
                               rtol=1e-6, atol=1e-7)


# -- bad requests ---------------------------------------------------------------------------------

X1 = rows(1).reshape(-1).tolist()
BAD = {
    "malformed JSON": (b'{"inputs": [', "not valid JSON"),
    "empty body": (b"", "empty"),
    "not an object": ([1, 2], '"inputs"'),
    "inputs missing": ({"id": "x"}, '"inputs"'),
    "tensor lacks data": ({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32"}]}, "lacks 'data'"),
    "unknown input": ({"inputs": [{"name": "pixel", "shape": [1, 64], "datatype": "FP32", "data": X1}]},
                      "Unknown input 'pixel'"),
    "wrong shape": ({"inputs": [{"name": "pixels", "shape": [2, 32], "datatype": "FP32", "data": X1}]},
                    "does not fit the model's shape [-1, 64]"),
    "wrong rank": ({"inputs": [{"name": "pixels", "shape": [64], "datatype": "FP32", "data": X1}]},
                   "does not fit"),
    "data count": ({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": X1[:-1]}]},
                   "has 63"),
    "unknown datatype": ({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FLOAT", "data": X1}]},
                         "unknown datatype 'FLOAT'"),
    "wrong datatype": ({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "BOOL", "data": [True] * 64}]},
                       "expects FP32, got BOOL"),
    "strings as numbers": ({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": ["a"] * 64}]},
                           "must be numbers"),
    "unknown output": ({**v2_body(rows(1)), "outputs": [{"name": "nope"}]}, "Unknown output(s) 'nope'"),
    "id not a string": ({**v2_body(rows(1)), "id": 5}, '"id" must be a string'),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_v2_requests_are_400_with_a_message(served, case):
    _, client, _, _ = served
    body, fragment = BAD[case]
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = client.post("/v2/models/digits/infer", content=content)
    assert r.status_code == 400, r.text
    doc = r.json()
    assert fragment in doc["error"] and doc["message"] == doc["error"]
    assert "Traceback" not in r.text


@pytest.mark.parametrize("model, body, fragment", [
    ("multi", {"inputs": [{"name": "a", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}, "Missing input(s) 'b'"),
    ("multi", {"inputs": [{"name": "a", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},
                          {"name": "b", "shape": [1, 2], "datatype": "FP32", "data": [1.5, 2]}]}, "expects INT32"),
    ("multi", {"inputs": [{"name": "a", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},
                          {"name": "a", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}, "given twice"),
])
def test_bad_multi_input_requests(served, model, body, fragment):
    _, client, _, _ = served
    r = client.post(f"/v2/models/{model}/infer", json=body)
    assert r.status_code == 400 and fragment in r.json()["error"], r.text


@pytest.mark.parametrize("body, fragment", [
    ({"instances": [[0.1] * 64, [0.1] * 63]}, "ragged"),
    ({"instances": [[0.1] * 64], "inputs": [[0.1] * 64]}, "exactly one of"),
    ({"instances": [[0.1] * 65]}, "does not fit"),
    ({"instances": [{"pixels": [0.1] * 64, "other": [1]}]}, "Unknown input 'other'"),
    ({"instances": []}, "non-empty"),
])
def test_bad_v1_requests_are_400(served, body, fragment):
    _, client, _, _ = served
    r = client.post("/v1/models/digits:predict", json=body)
    assert r.status_code == 400 and fragment in r.json()["error"], r.text


@pytest.mark.parametrize("method, path", [
    ("POST", "/v2/models/nope/infer"), ("GET", "/v2/models/nope"), ("GET", "/v2/models/nope/ready"),
    ("POST", "/v2/models/digits/versions/9/infer"), ("POST", "/v2/models/digits/versions/x/infer"),
    ("POST", "/v1/models/nope:predict"), ("GET", "/v1/models/nope"), ("GET", "/v3/anything"),
])
def test_unknown_models_versions_and_routes_are_404(served, method, path):
    _, client, _, _ = served
    r = client.request(method, path, json=v2_body(rows(1)) if method == "POST" else None)
    assert r.status_code == 404, r.text
    assert r.json()["error"] and "Traceback" not in r.text


def test_body_over_the_limit_is_413(served):
    thread, client, _, _ = served
    big = json.dumps(v2_body(rows(400))).encode()
    assert len(big) > BODY_LIMIT
    r = client.post("/v2/models/digits/infer", content=big)
    assert r.status_code == 413 and str(BODY_LIMIT) in r.json()["error"]
    # Refused from the Content-Length alone, before the body is sent.
    with socket.create_connection(("127.0.0.1", thread.server.port), timeout=10) as sock:
        sock.sendall(b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n")
        head = sock.recv(4096).decode()
    assert head.startswith("HTTP/1.1 413")


def test_model_that_fails_to_load_is_503_while_others_serve(served):
    _, client, _, store = served
    r = client.post("/v2/models/broken/infer", json=v2_body(rows(1)))
    assert r.status_code == 503, r.text
    assert "Model 'broken' is not ready (version 1: " in r.json()["error"]
    assert "Traceback" not in r.text
    # Anyone may ask why: the answers name the model's file in the store, never this machine's folders.
    answers = [r.text, client.get("/v1/models/broken").text, client.post("/v2/repository/index", json={}).text]
    assert "models/broken/1/model.keras" in " ".join(answers)
    assert not [a for a in answers if str(Path(store).resolve()) in a or str(Path(store).parent) in a], answers
    assert client.get("/v2/models/broken/ready").status_code == 503
    doc = client.get("/v1/models/broken").json()
    status = doc["model_version_status"][0]
    assert status["state"] == "END" and status["status"]["error_message"] and doc["ready"] is False
    assert client.get("/v1/models/broken/versions/1").json()["model_version_status"][0]["state"] == "END"
    assert client.post("/v2/models/digits/infer", json=v2_body(rows(1))).status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    assert 'jp_serving_model_load_failures_total{model="broken"} 1.0' in client.get("/metrics").text


# -- batching, cache, hot reload, metrics -----------------------------------------------------------

def test_concurrent_requests_are_batched_into_fewer_model_calls(served):
    thread, client, models, _ = served
    batcher = thread.call(lambda: thread.server.repository.get("batch").batcher)
    calls0, requests0 = batcher.calls, batcher.requests
    n_clients, per_client = 16, 6
    inputs = {(c, i): rows(1 + (c + i) % 3, seed=1000 + c * 10 + i) for c in range(n_clients) for i in range(per_client)}

    def worker(c):
        out = {}
        with httpx.Client(base_url=thread.url, timeout=30) as own:
            for i in range(per_client):
                r = own.post("/v2/models/batch/infer", json=v2_body(inputs[(c, i)]))
                assert r.status_code == 200, r.text
                out[(c, i)] = np.reshape(r.json()["outputs"][0]["data"], (-1, 10))
        return out

    results = {}
    with concurrent.futures.ThreadPoolExecutor(n_clients) as pool:
        for part in pool.map(worker, range(n_clients)):
            results.update(part)
    calls, requests = batcher.calls - calls0, batcher.requests - requests0
    assert requests == n_clients * per_client
    assert calls < 0.75 * requests, (calls, requests)
    # Every request got its own rows back, in order, whatever batch it rode in.
    for key, x in inputs.items():
        np.testing.assert_allclose(results[key], expected(models["batch"], x)[0], rtol=1e-5, atol=1e-6)
    metrics = client.get("/metrics").text
    count = _metric(metrics, 'jp_serving_batch_requests_count{model="batch"}')
    total = _metric(metrics, 'jp_serving_batch_requests_sum{model="batch"}')
    assert total / count > 1.3


def test_cache_answers_repeated_inputs_and_counts_hits(served):
    thread, client, _, _ = served
    cache = thread.server.cache
    body = json.dumps(v2_body(rows(1, seed=77), id="c")).encode()
    hits0, misses0 = cache.hits, cache.misses
    first = client.post("/v2/models/digits/infer", content=body)
    second = client.post("/v2/models/digits/infer", content=body)
    other = client.post("/v2/models/digits/infer", content=json.dumps(v2_body(rows(1, seed=78))).encode())
    assert first.status_code == second.status_code == other.status_code == 200
    assert first.content == second.content
    assert (cache.hits - hits0, cache.misses - misses0) == (1, 2)
    metrics = client.get("/metrics").text
    assert _metric(metrics, "jp_serving_cache_hits_total") >= 1
    assert 0 < _metric(metrics, "jp_serving_cache_hit_ratio") < 1


def test_cache_is_lru_bounded_by_entries_and_bytes():
    cache = PredictionCache(max_entries=2, max_bytes=10_000)
    keys = [cache.key("m", 1, "v2", bytes([i]) * 10) for i in range(3)]
    cache.put(keys[0], b"a")
    cache.put(keys[1], b"b")
    assert cache.get(keys[0]) == b"a"  # now keys[1] is the least recent
    cache.put(keys[2], b"c")
    assert cache.get(keys[1]) is None and cache.get(keys[0]) == b"a" and len(cache) == 2
    assert cache.get(cache.key("m", 2, "v2", bytes([0]) * 10)) is None  # another version never hits
    small = PredictionCache(max_entries=100, max_bytes=3000)
    for i in range(10):
        small.put(small.key("m", 1, "v2", str(i).encode()), b"x" * 1000)
    assert small.bytes <= 3000 and 1 <= len(small) < 3 and small.evictions >= 8
    assert not small.put(small.key("m", 1, "v2", b"big"), b"x" * 5000)


def test_no_cache_server_never_hits(served, tmp_path):
    _, _, _, store = served
    config = ServerConfig(store=store, port=0, address="127.0.0.1", models=["digits"], cache=False, poll_interval=0)
    with ServerThread(config) as thread, httpx.Client(base_url=thread.url) as client:
        body = json.dumps(v2_body(rows(1))).encode()
        assert client.post("/v2/models/digits/infer", content=body).content == \
            client.post("/v2/models/digits/infer", content=body).content
        assert thread.server.cache is None
        assert "jp_serving_cache_hits_total 0.0" in client.get("/metrics").text
        assert client.get("/v2/models/multi").status_code == 404  # only the selected model is served


def test_hot_reload_under_concurrent_load_fails_no_request(served):
    thread, _, models, store = served
    stop = threading.Event()
    seen, failures = [], []
    x = rows(2, seed=9)

    def load():
        with httpx.Client(base_url=thread.url, timeout=30) as own:
            while not stop.is_set():
                try:
                    r = own.post("/v2/models/reload/infer", json=v2_body(x))
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if r.status_code != 200:
                    failures.append(r.text)
                else:
                    doc = r.json()
                    seen.append((doc["model_version"], np.reshape(doc["outputs"][0]["data"], (2, 10))))

    workers = [threading.Thread(target=load) for _ in range(4)]
    for w in workers:
        w.start()
    time.sleep(0.5)
    log_model(models["reload2"], "reload", store=store)
    deadline = time.time() + 30
    while time.time() < deadline and not any(v == "2" for v, _ in seen[-5:]):
        time.sleep(0.05)
    time.sleep(0.3)
    stop.set()
    for w in workers:
        w.join()
    assert not failures, failures[:3]
    versions = [v for v, _ in seen]
    assert versions[0] == "1" and versions[-1] == "2"
    assert versions == sorted(versions)  # once swapped, never back
    v2 = next(out for v, out in seen if v == "2")
    np.testing.assert_allclose(v2, expected(models["reload2"], x)[0], rtol=1e-6, atol=1e-7)
    assert not np.allclose(v2, expected(models["reload1"], x)[0])


def test_metrics_and_access_log(served, caplog):
    _, client, _, _ = served
    with caplog.at_level(logging.INFO, logger="jupyter_pipeline.serving.access"):
        client.post("/v2/models/digits/infer", json=v2_body(rows(1, seed=5)))
        client.post("/v1/models/digits:predict", json={"instances": [[1]]})
        time.sleep(0.1)
    lines = [r.getMessage() for r in caplog.records if r.name == "jupyter_pipeline.serving.access"]
    assert any('"POST /v2/models/digits/infer" 200' in line and "model=digits version=1" in line for line in lines)
    assert any('"POST /v1/models/digits:predict" 400' in line for line in lines)
    text = client.get("/metrics").text
    assert _metric(text, 'jp_serving_requests_total{model="digits",protocol="v2",status="200"}') >= 1
    assert _metric(text, 'jp_serving_requests_total{model="digits",protocol="v1",status="400"}') >= 1
    assert 'jp_serving_request_seconds_bucket{le="0.25",model="digits",protocol="v2",status="200"}' in text
    assert _metric(text, 'jp_serving_model_version_loaded{model="digits",version="1"}') == 1
    assert _metric(text, 'jp_serving_model_version_loaded{model="versions",version="2"}') == 1
    assert 'jp_serving_batch_rows_bucket' in text and "jp_serving_cache_entries" in text


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


# -- the command line, in its own process -----------------------------------------------------------

def _cli(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KERAS_BACKEND": "jax"}
    code = "import sys; from jupyter_pipeline.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_serve_unknown_model_fails_in_one_paragraph(tmp_path):
    proc = _cli("serve", "--store", str(tmp_path / "empty"), "--model", "nope")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err.startswith("error: No model named 'nope'") and "Traceback" not in err


def test_sigterm_drains_in_flight_requests(served):
    _, _, models, store = served
    proc = _cli("serve", "--store", store, "--model", "digits", "--port", "0", "--address", "127.0.0.1",
                "--json", "--poll-interval", "0")
    try:
        text = ""
        while True:  # the --json start line (indented JSON) comes once models are being loaded
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            text += line
            if line.startswith("}"):
                break
        port = json.loads(text)["port"]
        deadline = time.time() + 60
        while httpx.get(f"http://127.0.0.1:{port}/v2/health/ready").status_code != 200:
            assert time.time() < deadline
            time.sleep(0.1)
        x = rows(1, seed=11)
        body = json.dumps(v2_body(x)).encode()
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        # Headers and half the body: the request is in flight when SIGTERM arrives.
        sock.sendall(b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body[:100])
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert proc.poll() is None, "exited with a request in flight"
        with pytest.raises(OSError):  # no new connections while draining
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        sock.sendall(body[100:])
        response = b""
        while b"\r\n\r\n" not in response or len(response.split(b"\r\n\r\n", 1)[1]) < _length(response):
            chunk = sock.recv(65536)
            if not chunk:
                break
            response += chunk
        sock.close()
        head, payload = response.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200"), response[:300]
        got = np.reshape(json.loads(payload)["outputs"][0]["data"], (1, 10))
        np.testing.assert_allclose(got, expected(models["digits"], x)[0], rtol=1e-6, atol=1e-7)
        assert proc.wait(timeout=30) == 0
        err = proc.stderr.read()
        assert "draining 1 request(s) in progress" in err and "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()


def _length(response: bytes) -> int:
    for line in response.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 1 << 30
