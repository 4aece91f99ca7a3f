"""The model server against real clients nobody here wrote: tritonclient (HTTP) and the KServe SDK
(REST v1 and v2, and gRPC). tritonclient's gRPC client is in ``test_serving_grpc.py``.

Binary tensors both ways, JSON, metadata, readiness, statistics and the repository index, and
KServe's v1 liveness and model status; each answer is checked against the model's own output.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from serving_models import dense, expected, rows, two_headed  # picks Keras's backend; skips without Keras

httpclient = pytest.importorskip("tritonclient.http")

from jupyter_pipeline.store.models import log_model
from jupyter_pipeline.serving import ServerConfig, ServerThread


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    store = str(tmp_path_factory.mktemp("clients") / "store")
    models = {"digits": dense(), "multi": two_headed()}
    for name, model in models.items():
        log_model(model, name, store=store)
    with ServerThread(ServerConfig(store=store, port=0, grpc_port=0, poll_interval=0)) as thread:
        yield thread, models


# -- tritonclient over HTTP ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def triton(served):
    thread, _ = served
    client = httpclient.InferenceServerClient(url=thread.url.removeprefix("http://"))
    yield client
    client.close()


@pytest.mark.parametrize("binary_in", [True, False], ids=["binary-in", "json-in"])
@pytest.mark.parametrize("binary_out", [True, False, None], ids=["binary-out", "json-out", "default-out"])
def test_tritonclient_infer(served, triton, binary_in, binary_out):
    _, models = served
    x = rows(5, seed=int(binary_in) * 3 + (binary_out is None) + 2 * bool(binary_out))
    inp = httpclient.InferInput("pixels", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary_in)
    outputs = None if binary_out is None else [httpclient.InferRequestedOutput("probs", binary_data=binary_out)]
    result = triton.infer("digits", [inp], outputs=outputs, request_id="r-1")
    got = result.as_numpy("probs")
    assert got.dtype == np.float32 and got.shape == (5, 10)
    np.testing.assert_allclose(got, expected(models["digits"], x)[0], rtol=1e-6, atol=1e-7)
    response = result.get_response()
    assert response["id"] == "r-1" and response["model_version"] == "1"
    [out] = response["outputs"]
    binary = binary_out is not False  # tritonclient asks for binary outputs when it names none
    assert ("parameters" in out and out["parameters"]["binary_data_size"] == 5 * 10 * 4) == binary
    assert ("data" in out) == (not binary)


def test_tritonclient_several_inputs_outputs_and_an_int_tensor(served, triton):
    _, models = served
    a = np.array([[0.5, -1.0, 2.0], [1.0, 0.0, 0.25]], np.float32)
    b = np.array([[1, 2], [3, -4]], np.int32)
    ia, ib = httpclient.InferInput("a", [2, 3], "FP32"), httpclient.InferInput("b", [2, 2], "INT32")
    ia.set_data_from_numpy(a)
    ib.set_data_from_numpy(b, binary_data=False)
    want = expected(models["multi"], {"a": a, "b": b})
    result = triton.infer("multi", [ib, ia], outputs=[httpclient.InferRequestedOutput("classes"),
                                                       httpclient.InferRequestedOutput("score", binary_data=False)])
    np.testing.assert_allclose(result.as_numpy("classes"), want[1], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(result.as_numpy("score"), want[0], rtol=1e-6, atol=1e-7)
    only = triton.infer("multi", [ia, ib], outputs=[httpclient.InferRequestedOutput("score")])
    assert only.as_numpy("classes") is None and only.as_numpy("score").shape == (2, 1)


def test_tritonclient_errors_name_the_problem(served, triton):
    from tritonclient.utils import InferenceServerException

    wrong = httpclient.InferInput("pixels", [1, 32], "FP32")
    wrong.set_data_from_numpy(rows(1)[:, :32])
    with pytest.raises(InferenceServerException, match=r"does not fit the model's shape \[-1, 64\]"):
        triton.infer("digits", [wrong])
    nan = rows(1)
    nan[0, 3] = np.nan
    bad = httpclient.InferInput("pixels", [1, 64], "FP32")
    bad.set_data_from_numpy(nan)  # binary: NaN travels, and is refused as it would be in JSON
    with pytest.raises(InferenceServerException, match="NaN, infinity"):
        triton.infer("digits", [bad])


def test_tritonclient_health_metadata_statistics_and_repository_index(served, triton):
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.is_model_ready("digits") and not triton.is_model_ready("nope")
    meta = triton.get_server_metadata()
    assert "binary_tensor_data" in meta["extensions"]
    model = triton.get_model_metadata("multi")
    assert [i["name"] for i in model["inputs"]] == ["a", "b"] and model["inputs"][1]["datatype"] == "INT32"
    inp = httpclient.InferInput("pixels", [3, 64], "FP32")
    inp.set_data_from_numpy(rows(3, seed=42))
    triton.infer("digits", [inp])
    triton.infer("digits", [inp])  # the same bytes again: a cache hit
    [stats] = triton.get_inference_statistics("digits")["model_stats"]
    assert stats["name"] == "digits" and stats["version"] == "1"
    assert stats["inference_count"] >= 3 and stats["execution_count"] >= 1 and stats["last_inference"] > 0
    s = stats["inference_stats"]
    assert s["success"]["count"] >= 2 and s["cache_hit"]["count"] >= 1 and s["cache_miss"]["count"] >= 1
    assert s["compute_infer"]["ns"] > 0
    everything = triton.get_inference_statistics()["model_stats"]
    assert {m["name"] for m in everything} == {"digits", "multi"}
    index = triton.get_model_repository_index()
    assert {(m["name"], m["version"], m["state"]) for m in index} == {("digits", "1", "READY"), ("multi", "1", "READY")}


# -- the KServe SDK, in a process of its own --------------------------------------------------------
# The SDK registers the OIP messages in protobuf's default pool at import, and so does
# tritonclient.grpc: the two cannot be imported into one process (duplicate symbol
# 'inference.ServerLiveRequest'). The server's own messages live in a private pool.

KSERVE_SCRIPT = """
import asyncio, json, sys
import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig

url, grpc_target, x = sys.argv[1], sys.argv[2], np.asarray(json.loads(sys.argv[3]), dtype=np.float32)


def request(binary):
    inp = InferInput("pixels", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    return InferRequest("digits", [inp], request_id="k")


async def main():
    out = {}
    v2 = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
    for binary in (True, False):
        res = await v2.infer(url, request(binary), model_name="digits")
        out["v2 binary" if binary else "v2 json"] = [res.id, res.outputs[0].as_numpy().tolist()]
    out["v2 ready, live"] = [await v2.is_model_ready(url, "digits"), await v2.is_server_live(url)]
    await v2.close()
    v1 = InferenceRESTClient(RESTConfig(protocol="v1", timeout=30))
    out["v1 ready, live"] = [await v1.is_model_ready(url, "digits"), await v1.is_server_live(url)]
    out["v1 predict"] = ["-", (await v1.infer(url, {"instances": x.tolist()}, model_name="digits"))["predictions"]]
    await v1.close()
    grpc = InferenceGRPCClient(grpc_target, timeout=30)
    res = await grpc.infer(request(True))
    out["grpc"] = [res.id, res.outputs[0].as_numpy().tolist()]
    out["grpc ready, live"] = [await grpc.is_model_ready("digits"), await grpc.is_server_live()]
    await grpc.close()
    print(json.dumps(out))


asyncio.run(main())
"""


def test_kserve_sdk_rest_v1_v2_binary_and_grpc(served):
    thread, models = served
    x = rows(4, seed=7)
    proc = subprocess.run([sys.executable, "-c", KSERVE_SCRIPT, thread.url, f"127.0.0.1:{thread.server.grpc_port}",
                           json.dumps(x.tolist())], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    want = expected(models["digits"], x)[0]
    for key in ("v2 binary", "v2 json", "v1 predict", "grpc"):
        request_id, got = out[key]
        assert request_id in ("k", "-"), key
        np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=1e-6, atol=1e-7, err_msg=key)
    for key in ("v2 ready, live", "v1 ready, live", "grpc ready, live"):
        assert out[key] == [True, True], key
