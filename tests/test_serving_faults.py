"""Faults of the model server: SIGTERM under keep-alive load, malformed and truncated requests.

Each test asserts that nothing was lost: every request the server accepted got a complete, valid
answer (a client may find the listener closed during a drain; that request was never accepted).
"""

from __future__ import annotations

import asyncio
import json
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

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")

from jupyter_pipeline.store.models import log_model
from jupyter_pipeline.serving import ServerConfig, ServerThread

ROOT = Path(__file__).resolve().parent.parent


def _model(inputs: int, outputs: int, seed: int, name: str = "x"):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input(shape=(inputs,), name=name),
                             keras.layers.Dense(outputs, name="y")])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("faults") / "store")
    log_model(_model(8, 4, 0), "small", store=path)
    log_model(_model(8, 4096, 1), "wide", store=path)  # 16 rows answer ~700 kB of JSON
    keras.utils.set_random_seed(2)
    a = keras.Input(shape=(2,), name="a", dtype="int32")
    h = keras.layers.Dense(2, name="y")(keras.ops.cast(a, "float32"))
    log_model(keras.Model(a, h), "ints", store=path)
    return path


def body(name: str, rows: int, seed: int = 0) -> bytes:
    x = np.random.default_rng(seed).random((rows, 8), dtype=np.float32)
    return json.dumps({"inputs": [{"name": "x", "shape": [rows, 8], "datatype": "FP32",
                                   "data": x.reshape(-1).tolist()}]}).encode()


# -- SIGTERM under load, in a real server process --------------------------------------------------

def _start_server(store: str, log: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    """A ``serve`` process, its stderr (the access log too: a pipe nobody reads would fill) in ``log``."""
    code = "import sys; from jupyter_pipeline.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KERAS_BACKEND": "jax"}
    proc = subprocess.Popen([sys.executable, "-c", code, "serve", "--store", store, "--port", "0", "--json",
                             "--poll-interval", "0", *extra], env=env, stdout=subprocess.PIPE,
                            stderr=log.open("w"), text=True)
    text = ""
    while not text.rstrip().endswith("}"):
        line = proc.stdout.readline()
        assert line, log.read_text()
        text += line
    port = json.loads(text)["port"]
    deadline = time.time() + 90
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready").status_code == 200:
                return proc, port
        except httpx.TransportError:
            pass
        assert time.time() < deadline and proc.poll() is None, "server did not become ready"
        time.sleep(0.1)


class _Connection:
    """One keep-alive HTTP/1.1 connection spoken by hand, so a test knows exactly what happened on it."""

    def __init__(self, port: int):
        self.port = port
        self.reader = self.writer = None
        self.last_used = time.monotonic()

    async def post(self, path: str, content: bytes) -> tuple[int, dict, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)  # may be refused
        self.writer.write(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(content), content))
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head.decode("latin1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines if ":" in line)}
        payload = await self.reader.readexactly(int(headers["content-length"]))
        self.last_used = time.monotonic()
        if headers.get("connection", "").lower() == "close":
            self.writer.close()
            self.reader = self.writer = None
        return int(status_line.split()[1]), headers, payload


async def _load(port: int, clients: int, seconds_before: float, proc: subprocess.Popen) -> dict:
    """``clients`` keep-alive connections posting back to back; SIGTERM after ``seconds_before``.

    Every request ends as: answered (a complete 200 whose JSON parses), refused (the listener was
    closed: never accepted), idle-closed (sent on a connection the client had left idle longer than
    the server's idle grace during a drain: documented), or lost (anything else). Returns the tallies.
    """
    # Distinct small bodies (cache misses: the model path) and one repeated wide body (cache hits).
    smalls, wide = [body("small", 1, seed=i) for i in range(400)], body("wide", 16, seed=1)
    tally = {"answered": 0, "refused": 0, "lost": [], "idle_closed": 0, "closing": 0, "after_sigterm": 0}
    sigterm_at: list[float] = []

    async def worker(i: int):
        conn = _Connection(port)
        for n in range(i, 10 ** 6, clients):
            path, content = (("/v2/models/wide/infer", wide) if i % 4 == 0 else
                             ("/v2/models/small/infer", smalls[n % len(smalls)]))
            fresh = conn.writer is None
            idle = time.monotonic() - conn.last_used
            try:
                status, headers, payload = await conn.post(path, content)
            except ConnectionRefusedError:
                tally["refused"] += 1
                return
            except (OSError, asyncio.IncompleteReadError) as exc:
                if not fresh and sigterm_at and idle > 1.5:
                    tally["idle_closed"] += 1
                else:
                    tally["lost"].append(f"{type(exc).__name__}: {exc} ({'new' if fresh else 'reused'} connection, "
                                        f"idle {idle:.2f} s, {'after' if sigterm_at else 'before'} SIGTERM)")
                return
            if status != 200:
                tally["lost"].append(f"{status} {payload[:200]!r}")
                return
            # The whole body arrived (readexactly of its Content-Length); parse the small ones.
            assert payload.endswith(b"]}]}") and (len(payload) > 10 ** 5 or json.loads(payload)["outputs"])
            tally["answered"] += 1
            tally["after_sigterm"] += bool(sigterm_at)
            tally["closing"] += headers.get("connection", "").lower() == "close"

    async def terminate():
        await asyncio.sleep(seconds_before)
        sigterm_at.append(time.monotonic())
        proc.send_signal(signal.SIGTERM)

    await asyncio.wait_for(asyncio.gather(terminate(), *(worker(i) for i in range(clients))), 120)
    return tally


def test_sigterm_under_keep_alive_load_answers_every_accepted_request(store, tmp_path):
    log = tmp_path / "server.log"
    proc, port = _start_server(store, log, "--model", "small", "--model", "wide", "--max-batch-size", "16",
                               "--grpc-port", "0", "--access-log")
    try:
        tally = asyncio.run(_load(port, clients=32, seconds_before=1.5, proc=proc))
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    err = log.read_text()
    assert not tally["lost"], tally["lost"][:5]
    assert tally["answered"] > 30 and tally["after_sigterm"] > 0, tally
    # Each connection's last response said so: clients stop there instead of racing the close.
    assert tally["closing"] > 0 and tally["refused"] > 0, tally
    assert "Traceback" not in err and '" 500 ' not in err and "drain timed out" not in err, err[-3000:]


# -- versions swapped and unloaded under load -------------------------------------------------------

def test_versions_load_and_unload_under_load_without_failing_a_request(tmp_path):
    """Latest swaps to a new version and old versions load on demand and are unloaded (LRU, at most
    two loaded) while clients keep asking: every request is answered by the version it named."""
    store = str(tmp_path / "store")
    models = {v: _model(8, 4, 10 + v) for v in (1, 2, 3, 4)}
    for v in (1, 2, 3):
        log_model(models[v], "m", store=store)
    x = np.random.default_rng(5).random((2, 8), dtype=np.float32)
    want = {v: np.asarray(models[v](x, training=False)) for v in models}
    content = json.dumps({"inputs": [{"name": "x", "shape": [2, 8], "datatype": "FP32",
                                      "data": x.reshape(-1).tolist()}]}).encode()
    config = ServerConfig(store=store, port=0, poll_interval=0.2, cache=False, max_loaded_versions=2)
    failures, answered = [], {}

    def client(path: str, stop: threading.Event):
        with httpx.Client(base_url=thread.url, timeout=60) as c:
            while not stop.is_set():
                r = c.post(path, content=content)
                if r.status_code != 200:
                    failures.append(f"{path}: {r.status_code} {r.text[:200]}")
                    continue
                doc = r.json()
                v = int(doc["model_version"])
                got = np.reshape(doc["outputs"][0]["data"], (2, 4))
                if not np.allclose(got, want[v], rtol=1e-5, atol=1e-6):
                    failures.append(f"{path}: version {v} answered another version's numbers")
                answered[path] = answered.get(path, 0) + 1

    with ServerThread(config) as thread:
        repo = thread.server.repository
        stop_latest = threading.Event()
        latest = [threading.Thread(target=client, args=("/v2/models/m/infer", stop_latest)) for _ in range(2)]
        for t in latest:
            t.start()
        old = []
        for v in (1, 2, 1):  # v1 loads, v2 loads (v1 goes: at most 2), v1 loads again (v2 goes)
            path = f"/v2/models/m/versions/{v}/infer"
            before = answered.get(path, 0)
            stop = threading.Event()
            old.append(threading.Thread(target=client, args=(path, stop)))
            old[-1].start()
            deadline = time.time() + 60
            while answered.get(path, 0) < before + 3 and time.time() < deadline:
                time.sleep(0.05)
            stop.set()
            old[-1].join()
            loaded = sorted(thread.call(lambda: sorted(repo.state("m").ready)))
            assert loaded == sorted({v, 3}), loaded  # the latest always stays
        log_model(models[4], "m", store=store)  # a new latest arrives under load
        deadline = time.time() + 60
        while thread.call(lambda: repo.state("m").default.version) != 4 and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        stop_latest.set()
        for t in latest:
            t.join()
        assert thread.call(lambda: sorted(repo.state("m").ready)) in ([1, 4], [3, 4])
        metrics = httpx.get(f"{thread.url}/metrics").text
    assert not failures, failures[:3]
    assert answered["/v2/models/m/infer"] > 10
    assert 'jp_serving_model_version_loaded{model="m",version="4"} 1.0' in metrics
    assert 'jp_serving_model_version_loaded{model="m",version="2"}' not in metrics


# -- malformed requests ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(store):
    config = ServerConfig(store=store, port=0, poll_interval=0, body_timeout=1.0, models=["small", "ints"])
    with ServerThread(config) as thread:
        with httpx.Client(base_url=thread.url, timeout=30) as client:
            yield thread, client


ROW = [0.5] * 8
MALFORMED = {
    "nested 100,000 deep": (b"[" * 100_000, "nested more than 1,024 levels"),
    "nested object": (b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested more than 1,024 levels"),
    "NaN": (b'{"inputs": [{"name": "x", "shape": [1, 8], "datatype": "FP32", "data": [NaN, 1, 1, 1, 1, 1, 1, 1]}]}',
            "NaN and infinite numbers are not JSON"),
    "Infinity": (b'{"inputs": [{"name": "x", "shape": [1, 8], "datatype": "FP32", '
                 b'"data": [1, 1, 1, 1, 1, 1, 1, Infinity]}]}', "NaN and infinite numbers are not JSON"),
    "-Infinity": (b'{"inputs": [{"name": "x", "shape": [1, 8], "datatype": "FP32", '
                  b'"data": [-Infinity, 1, 1, 1, 1, 1, 1, 1]}]}', "NaN and infinite numbers are not JSON"),
    "1e400 (beyond FP64)": (b'{"inputs": [{"name": "x", "shape": [1, 8], "datatype": "FP64", '
                            b'"data": [1e400, 1, 1, 1, 1, 1, 1, 1]}]}', "NaN and infinite numbers are not JSON"),
    "1e39 (beyond FP32)": ({"inputs": [{"name": "x", "shape": [1, 8], "datatype": "FP32", "data": [1e39] + ROW[1:]}]},
                           "too large for FP32"),
    "not UTF-8": (b'{"inputs": "\xff\xfe"}', "not valid JSON"),
    "truncated JSON": (b'{"inputs": [{"name": "x"', "not valid JSON"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_bodies_are_400_with_a_json_message(server, case):
    _, client = server
    content, fragment = MALFORMED[case]
    content = content if isinstance(content, bytes) else json.dumps(content).encode()
    r = client.post("/v2/models/small/infer", content=content)
    assert r.status_code == 400, r.text[:300]
    assert fragment in r.json()["error"]  # the body is JSON whatever the input was
    v1 = client.post("/v1/models/small:predict", content=content.replace(b'"inputs"', b'"instances"'))
    assert v1.status_code == 400 and v1.json()["error"]
    assert client.post("/v2/models/small/infer", content=body("small", 1)).status_code == 200


def test_values_beyond_the_input_type_are_400(server):
    _, client = server
    for data, fragment in (([2 ** 40, 1], "outside INT32's range"), ([-2 ** 31 - 1, 1], "outside INT32's range")):
        r = client.post("/v2/models/ints/infer", json={"inputs": [{"name": "a", "shape": [1, 2], "datatype": "INT64",
                                                                   "data": data}]})
        assert r.status_code == 400 and fragment in r.json()["error"], r.text
    r = client.post("/v1/models/small:predict", json={"instances": [[3e38 * 10] + ROW[1:]]})
    assert r.status_code == 400 and "too large for FP32" in r.json()["error"]


def test_every_response_body_is_json_even_for_non_finite_outputs(server):
    thread, client = server
    # A model output that overflows FP32 from finite, in-range inputs: written as null, never NaN.
    r = client.post("/v2/models/small/infer", json={"inputs": [{"name": "x", "shape": [1, 8], "datatype": "FP32",
                                                                "data": [3e38] * 8}]})
    assert r.status_code == 200
    data = json.loads(r.content, parse_constant=lambda c: pytest.fail(f"{c} in a response body"))
    values = data["outputs"][0]["data"]
    assert None in values and all(v is None or isinstance(v, float) for v in values)


def test_body_shorter_than_its_content_length_times_out(server):
    thread, client = server

    def in_flight() -> float:
        for line in client.get("/metrics").text.splitlines():
            if line.startswith("jp_serving_requests_in_flight "):
                return float(line.split()[1]) - 1  # minus the /metrics request itself
        raise AssertionError("no in-flight gauge")

    assert in_flight() == 0
    with socket.create_connection(("127.0.0.1", thread.server.port), timeout=10) as sock:
        sock.sendall(b"POST /v2/models/small/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"inputs\"")
        time.sleep(0.3)
        assert in_flight() == 1
        started = time.monotonic()
        assert sock.recv(4096) == b""  # closed by the server (body_timeout = 1 s) ...
        assert time.monotonic() - started < 5
    assert in_flight() == 0  # ... and no longer counted
    assert client.post("/v2/models/small/infer", content=body("small", 1)).status_code == 200


def test_a_version_unloaded_takes_its_cached_answers_with_it(tmp_path):
    """Cached answers are keyed by version: once a version is unloaded they could only wait for
    eviction, so the server drops them (and keeps the served versions' answers)."""
    store = str(tmp_path / "store")
    models = {v: _model(8, 4, 20 + v) for v in (1, 2)}
    log_model(models[1], "m", store=store)
    x = np.random.default_rng(7).random((2, 8), dtype=np.float32)
    content = json.dumps({"inputs": [{"name": "x", "shape": [2, 8], "datatype": "FP32",
                                      "data": x.reshape(-1).tolist()}]}).encode()
    config = ServerConfig(store=store, port=0, poll_interval=0.2, cache=True, max_loaded_versions=1)
    with ServerThread(config) as thread, httpx.Client(base_url=thread.url, timeout=60) as c:
        cache = thread.server.cache

        def versions():  # the versions the cache holds answers of (read on the server's loop)
            return thread.call(lambda: sorted({key[1] for key in cache._entries}))

        assert c.post("/v2/models/m/infer", content=content).status_code == 200
        assert versions() == [1]
        log_model(models[2], "m", store=store)  # the new latest; at most one version stays loaded
        deadline = time.time() + 60
        while thread.call(lambda: sorted(thread.server.repository.state("m").ready)) != [2]:
            assert time.time() < deadline, "version 1 was never unloaded"
            time.sleep(0.05)
        assert c.post("/v2/models/m/infer", content=content).status_code == 200
        deadline = time.time() + 10
        while versions() != [2]:
            assert time.time() < deadline, f"cached versions {versions()}: version 1's answers were kept"
            time.sleep(0.05)
