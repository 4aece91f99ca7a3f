"""The OIP gRPC service (``inference.GRPCInferenceService``) through tritonclient's gRPC client:
the same models, versions, batching, cache, hot reload, statistics and metrics as REST."""

from __future__ import annotations

import os
import threading
import time

import httpx
import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")
grpcclient = pytest.importorskip("tritonclient.grpc")

from tritonclient.utils import InferenceServerException

from jupyter_pipeline.store.models import log_model
from jupyter_pipeline.serving import ServerConfig, ServerThread


def dense(seed: int):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input(shape=(8,), name="x"), keras.layers.Dense(32, activation="relu"),
                             keras.layers.Dense(3, name="y")])


def ints():
    keras.utils.set_random_seed(5)
    a = keras.Input(shape=(2,), name="a", dtype="int32")
    return keras.Model(a, keras.layers.Dense(2, name="y")(keras.ops.cast(a, "float32")))


def expected(model, x):
    return np.asarray(model(x, training=False))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    store = str(tmp_path_factory.mktemp("grpc") / "store")
    models = {"m1": dense(1), "m2": dense(2), "ints": ints()}
    log_model(models["m1"], "model", store=store)
    log_model(models["ints"], "ints", store=store)
    config = ServerConfig(store=store, port=0, grpc_port=0, poll_interval=0.2, max_batch_wait_ms=5)
    with ServerThread(config) as thread:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{thread.server.grpc_port}")
        yield thread, client, models, store
        client.close()


def x_rows(n, seed=0):
    return np.random.default_rng(seed).random((n, 8), dtype=np.float32)


def infer(client, x, model="model", version=""):
    inp = grpcclient.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return client.infer(model, [inp], model_version=version, request_id="g-1")


def test_health_and_metadata(served):
    _, client, _, _ = served
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("model") and client.is_model_ready("model", "1")
    meta = client.get_server_metadata()
    assert meta.name == "jupyter-pipeline"
    model = client.get_model_metadata("ints")
    assert model.name == "ints" and list(model.versions) == ["1"] and model.platform == "keras_jax"
    assert [(t.name, t.datatype, list(t.shape)) for t in model.inputs] == [("a", "INT32", [-1, 2])]
    with pytest.raises(InferenceServerException, match="No model named 'nope'") as info:
        client.get_model_metadata("nope")
    assert info.value.status() == "StatusCode.NOT_FOUND"


def test_infer_raw_tensors_equals_the_model(served):
    _, client, models, _ = served
    x = x_rows(5, seed=1)
    result = infer(client, x)
    np.testing.assert_allclose(result.as_numpy("y"), expected(models["m1"], x), rtol=1e-6, atol=1e-7)
    response = result.get_response()
    assert response.id == "g-1" and response.model_name == "model" and response.model_version == "1"
    a = np.array([[1, 2], [-3, 4]], np.int32)
    inp = grpcclient.InferInput("a", [2, 2], "INT32")
    inp.set_data_from_numpy(a)
    got = client.infer("ints", [inp], outputs=[grpcclient.InferRequestedOutput("y")]).as_numpy("y")
    np.testing.assert_allclose(got, expected(models["ints"], a), rtol=1e-6, atol=1e-7)


def test_bad_requests_are_invalid_argument(served):
    _, client, _, _ = served
    wrong = grpcclient.InferInput("x", [1, 4], "FP32")
    wrong.set_data_from_numpy(x_rows(1)[:, :4])
    with pytest.raises(InferenceServerException, match=r"does not fit the model's shape \[-1, 8\]") as info:
        client.infer("model", [wrong])
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
    big = np.full((1, 2), 2 ** 40, np.int64)
    inp = grpcclient.InferInput("a", [1, 2], "INT64")
    inp.set_data_from_numpy(big)
    with pytest.raises(InferenceServerException, match="outside INT32's range"):
        client.infer("ints", [inp])
    with pytest.raises(InferenceServerException, match="has no version 7"):
        infer(client, x_rows(1), version="7")


def test_concurrent_calls_are_batched_and_cached_like_rest(served):
    thread, client, models, _ = served
    batcher = thread.call(lambda: thread.server.repository.get("model").batcher)
    calls0, requests0 = batcher.calls, batcher.requests
    inputs = [x_rows(1 + i % 3, seed=100 + i) for i in range(48)]
    # A slow model, whatever the machine's speed: the first call holds (on the worker thread)
    # until the other requests have arrived, so they can only be answered by coalescing.
    predict, inline_below = batcher.predict, batcher.inline_below

    def slow_first_call(feed):
        deadline = time.monotonic() + 30
        while batcher.calls == calls0 and batcher.pending < len(inputs) - 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        return predict(feed)

    def restore():
        batcher.predict, batcher.inline_below = predict, inline_below
    thread.call(lambda: setattr(batcher, "inline_below", 0.0) or setattr(batcher, "predict", slow_first_call))
    done = threading.Event()
    results: dict[int, np.ndarray] = {}

    def callback(i, result, error):
        results[i] = error if error else result.as_numpy("y")
        if len(results) == len(inputs):
            done.set()

    for i, x in enumerate(inputs):
        inp = grpcclient.InferInput("x", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        client.async_infer("model", [inp], callback=lambda result, error, i=i: callback(i, result, error))
    try:
        assert done.wait(60)
    finally:
        thread.call(restore)
    for i, x in enumerate(inputs):
        np.testing.assert_allclose(results[i], expected(models["m1"], x), rtol=1e-5, atol=1e-6)
    assert batcher.requests - requests0 == len(inputs) and batcher.calls - calls0 < len(inputs)
    infer(client, inputs[0])
    hits = thread.server.cache.hits
    again = infer(client, inputs[0])  # the same bytes again: answered from the cache
    assert thread.server.cache.hits == hits + 1 and again.get_response().id == "g-1"
    np.testing.assert_allclose(again.as_numpy("y"), results[0], rtol=1e-6)
    with httpx.Client(base_url=thread.url) as rest:
        metrics = rest.get("/metrics").text
        assert 'jp_serving_requests_total{model="model",protocol="grpc",status="200"}' in metrics
        assert 'protocol="grpc",status="400"' in metrics
        stats = rest.get("/v2/models/model/stats").json()["model_stats"][0]["inference_stats"]
        assert stats["cache_hit"]["count"] >= 1 and stats["success"]["count"] >= len(inputs)


def test_a_new_version_is_served_without_a_restart(served):
    thread, client, models, store = served
    x = x_rows(2, seed=9)
    assert infer(client, x).get_response().model_version == "1"
    log_model(models["m2"], "model", store=store)
    deadline = time.time() + 60
    while infer(client, x).get_response().model_version != "2":
        assert time.time() < deadline, "version 2 was not picked up"
        time.sleep(0.1)
    np.testing.assert_allclose(infer(client, x).as_numpy("y"), expected(models["m2"], x), rtol=1e-6, atol=1e-7)
    old = infer(client, x, version="1")
    assert old.get_response().model_version == "1"
    np.testing.assert_allclose(old.as_numpy("y"), expected(models["m1"], x), rtol=1e-6, atol=1e-7)
