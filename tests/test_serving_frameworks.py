"""scikit-learn, XGBoost, LightGBM, ONNX and PyTorch models: trained in real pipeline stages,
registered with ``log_model``, read back with ``load_model``, served over OIP v2 REST (JSON and
binary, through tritonclient) and gRPC; every answer equals the model's own predictions. Model
files tampered to hold a pickle payload are refused.

PyTorch is too large for CI's ``test`` extra: its stage and tests run only where torch is installed
(``pip install 'jupyter-pipeline[torch]'``).
"""

from __future__ import annotations

import importlib.util
import pickle
import sys

import httpx
import numpy as np
import pytest

pytest.importorskip("skops")
httpclient = pytest.importorskip("tritonclient.http")
grpcclient = pytest.importorskip("tritonclient.grpc")

from jupyter_pipeline.frameworks import FrameworkMissing, ModelFormatError
from jupyter_pipeline.local.runner import run_pipeline
from jupyter_pipeline.serving import ServerConfig, ServerThread
from jupyter_pipeline.store.base import open_store
from jupyter_pipeline.store.models import get_meta, load_model

pytestmark = pytest.mark.slow

HAVE_TORCH = importlib.util.find_spec("torch") is not None
NO_TORCH = "PyTorch is not installed (it is not in the test extra: pip install 'jupyter-pipeline[torch]')"

SETUP = """\
import numpy as np
from sklearn.datasets import load_iris
from jupyter_pipeline import log_model
X, y = load_iris(return_X_y=True)
X_probe = X[::7].astype(np.float32)  # what the test sends; float32 so every model sees the same values
"""

#: Stage name -> its code; each trains on iris, registers and saves its own predictions on X_probe.
STAGES = {
    "sklearn": """\
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.linear_model import LogisticRegression
clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
log_model(clf, "iris-sklearn")
x = X_probe.astype(np.float64)
np.savez(f"{outdir}/iris-sklearn.npz", label=clf.predict(x), probabilities=clf.predict_proba(x))
from sklearn.tree import DecisionTreeClassifier
names = load_iris().target_names[y]  # string labels: answered as BYTES
tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, names)
log_model(tree, "iris-names")
np.savez(f"{outdir}/iris-names.npz", label=tree.predict(x), probabilities=tree.predict_proba(x))
""",
    "xgboost": """\
import xgboost as xgb
clf = xgb.XGBClassifier(n_estimators=8, max_depth=3).fit(X, y)
log_model(clf, "iris-xgboost")
np.savez(f"{outdir}/iris-xgboost.npz", label=clf.predict(X_probe), probabilities=clf.predict_proba(X_probe))
booster = xgb.train({"objective": "multi:softprob", "num_class": 3, "max_depth": 2}, xgb.DMatrix(X, y), 6)
log_model(booster, "iris-xgb-booster")
np.savez(f"{outdir}/iris-xgb-booster.npz", prediction=booster.inplace_predict(X_probe))
""",
    "lightgbm": """\
import lightgbm as lgb
clf = lgb.LGBMClassifier(n_estimators=8, num_leaves=7, min_child_samples=5, verbose=-1).fit(X, y)
log_model(clf, "iris-lightgbm")
x = X_probe.astype(np.float64)
np.savez(f"{outdir}/iris-lightgbm.npz", label=clf.predict(x), probabilities=clf.predict_proba(x))
""",
    "onnx": """\
import onnxruntime as ort
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression
onx = to_onnx(LogisticRegression(max_iter=500).fit(X, y), X_probe[:1], options={"zipmap": False})
log_model(onx, "iris-onnx")
session = ort.InferenceSession(onx.SerializeToString())
outputs = session.run(None, {"X": X_probe})
np.savez(f"{outdir}/iris-onnx.npz", **{o.name: v for o, v in zip(session.get_outputs(), outputs)})
""",
    "torch": """\
import torch
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3), torch.nn.Softmax(-1))
opt = torch.optim.Adam(net.parameters(), lr=0.05)
xt, yt = torch.tensor(X, dtype=torch.float32), torch.tensor(y)
for _ in range(30):
    opt.zero_grad()
    torch.nn.functional.nll_loss(torch.log(net(xt)), yt).backward()
    opt.step()
log_model(net, "iris-torch", example=xt[:4])
np.savez(f"{outdir}/iris-torch.npz", output=net(torch.tensor(X_probe)).detach().numpy())
""",
}

#: Served model -> (its input's datatype, its outputs in order).
MODELS = {
    "iris-sklearn": ("FP64", ["label", "probabilities"]),
    "iris-xgboost": ("FP32", ["label", "probabilities"]),
    "iris-xgb-booster": ("FP32", ["prediction"]),
    "iris-lightgbm": ("FP64", ["label", "probabilities"]),
    "iris-onnx": ("FP32", ["label", "probabilities"]),  # skl2onnx's names for a classifier's outputs
    "iris-torch": ("FP32", ["output"]),
}
INPUT_NAME = {"iris-onnx": "X"}


def probe() -> np.ndarray:
    from sklearn.datasets import load_iris

    return load_iris(return_X_y=True)[0][::7].astype(np.float32)


def model_params(names):
    return [pytest.param(n, marks=pytest.mark.skipif(n == "iris-torch" and not HAVE_TORCH, reason=NO_TORCH))
            for n in names]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, write_notebook):
    work = tmp_path_factory.mktemp("frameworks")
    store = str(work / "store")
    cells = [(["parameters"], 'outdir = ""'), (["setup"], SETUP)]
    cells += [([f"stage:{name}"], code) for name, code in STAGES.items() if name != "torch" or HAVE_TORCH]
    nb = write_notebook(work / "frameworks.ipynb", cells)
    record = run_pipeline(nb, {"outdir": str(work)}, store=store, workers=2)
    assert record.status.value == "succeeded", {s: r.error for s, r in record.stages.items() if r.error}
    expected = {f.stem: dict(np.load(f)) for f in work.glob("*.npz")}
    return store, expected, record


@pytest.fixture(scope="module")
def served(trained):
    store, expected, _ = trained
    with ServerThread(ServerConfig(store=store, port=0, grpc_port=0, poll_interval=0)) as thread:
        http = httpclient.InferenceServerClient(url=thread.url.removeprefix("http://"))
        grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{thread.server.grpc_port}")
        yield thread, http, grpc, expected
        http.close()
        grpc.close()


def assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    if want.dtype.kind in "iu":
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", model_params(MODELS))
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_rest_answers_equal_the_models_own(served, name, binary):
    _, http, _, expected = served
    datatype, outputs = MODELS[name]
    x = probe().astype(np.float64 if datatype == "FP64" else np.float32)
    inp = httpclient.InferInput(INPUT_NAME.get(name, "input"), list(x.shape), datatype)
    inp.set_data_from_numpy(x, binary_data=binary)
    result = http.infer(name, [inp], outputs=[httpclient.InferRequestedOutput(o, binary_data=binary) for o in outputs])
    for out in outputs:
        assert_same(result.as_numpy(out), expected[name][out])


@pytest.mark.parametrize("name", model_params(MODELS))
def test_grpc_answers_equal_the_models_own(served, name):
    _, _, grpc, expected = served
    datatype, outputs = MODELS[name]
    x = probe().astype(np.float64 if datatype == "FP64" else np.float32)
    inp = grpcclient.InferInput(INPUT_NAME.get(name, "input"), list(x.shape), datatype)
    inp.set_data_from_numpy(x)
    result = grpc.infer(name, [inp])
    for out in outputs:
        assert_same(result.as_numpy(out), expected[name][out])


def test_string_labels_travel_as_bytes_and_v1_answers_rows(served):
    thread, http, _, expected = served
    x = probe().astype(np.float64)
    inp = httpclient.InferInput("input", list(x.shape), "FP64")
    inp.set_data_from_numpy(x)
    result = http.infer("iris-names", [inp])
    assert [v.decode() for v in result.as_numpy("label")] == expected["iris-names"]["label"].tolist()
    assert http.get_model_metadata("iris-names")["outputs"][0]["datatype"] == "BYTES"
    doc = httpx.post(f"{thread.url}/v1/models/iris-sklearn:predict", json={"instances": x.tolist()}).json()
    assert [row["label"] for row in doc["predictions"]] == expected["iris-sklearn"]["label"].tolist()
    np.testing.assert_allclose([row["probabilities"] for row in doc["predictions"]],
                               expected["iris-sklearn"]["probabilities"], rtol=1e-6)


def test_classifiers_list_labels_and_probabilities_in_their_metadata(served):
    _, http, grpc, _ = served
    meta = http.get_model_metadata("iris-sklearn")
    assert meta["platform"] == "sklearn"
    assert [(o["name"], o["datatype"], o["shape"]) for o in meta["outputs"]] == [
        ("label", "INT64", [-1]), ("probabilities", "FP64", [-1, 3])]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}]
    assert meta["parameters"]["classes"] == [0, 1, 2]
    assert http.get_model_metadata("iris-lightgbm")["platform"] == "lightgbm"
    g = grpc.get_model_metadata("iris-xgboost")
    assert g.platform == "xgboost" and [o.name for o in g.outputs] == ["label", "probabilities"]
    assert grpc.get_model_metadata("iris-onnx").platform == "onnxruntime_onnx"


def test_meta_json_records_format_file_signature_and_the_stage(trained):
    store, _, record = trained
    s = open_store(store)
    meta = get_meta(s, "iris-sklearn", 1)
    assert (meta["format"], meta["file"], meta["stage"], meta["run_id"]) == (
        "sklearn", "model.skops", "sklearn", record.run_id)
    assert meta["signature"]["classes"] == [0, 1, 2] and meta["framework"]["skops"]
    assert s.exists("models/iris-xgboost/1/model.json") and s.exists("models/iris-lightgbm/1/model.txt")
    assert s.exists("models/iris-onnx/1/model.onnx")
    assert get_meta(s, "iris-xgboost", 1)["wrapper"] == "XGBClassifier"
    assert [m["name"] for m in record.stages["xgboost"].models] == ["iris-xgboost", "iris-xgb-booster"]


def test_load_model_gives_the_object_back(trained):
    import lightgbm
    import onnx
    import xgboost
    from sklearn.pipeline import Pipeline

    store, expected, _ = trained
    x = probe()
    clf = load_model("iris-sklearn", store=store)
    assert isinstance(clf, Pipeline)
    np.testing.assert_allclose(clf.predict_proba(x.astype(np.float64)), expected["iris-sklearn"]["probabilities"])
    xgbc = load_model("iris-xgboost", store=store)
    assert isinstance(xgbc, xgboost.XGBClassifier)
    np.testing.assert_array_equal(xgbc.predict(x), expected["iris-xgboost"]["label"])
    assert isinstance(load_model("iris-xgb-booster", store=store), xgboost.Booster)
    lgbc = load_model("iris-lightgbm", store=store)
    assert isinstance(lgbc, lightgbm.LGBMClassifier)
    np.testing.assert_allclose(lgbc.predict_proba(x.astype(np.float64)), expected["iris-lightgbm"]["probabilities"])
    np.testing.assert_array_equal(lgbc.predict(x.astype(np.float64)), expected["iris-lightgbm"]["label"])
    assert isinstance(load_model("iris-onnx", store=store), onnx.ModelProto)


@pytest.mark.skipif(not HAVE_TORCH, reason=NO_TORCH)
def test_torch_model_loads_as_a_module_with_a_free_batch(trained):
    import torch

    store, expected, _ = trained
    net = load_model("iris-torch", store=store)
    assert isinstance(net, torch.nn.Module)
    x = torch.tensor(probe())
    np.testing.assert_allclose(net(x).detach().numpy(), expected["iris-torch"]["output"], rtol=1e-6, atol=1e-6)
    assert net(x[:1]).shape == (1, 3)  # exported from 4 rows, called with one
    assert get_meta(open_store(store), "iris-torch", 1)["torch_format"] == "export"


class Payload:
    """Unpickling this runs ``open(marker, "w")``: what a tampered model file would do."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("name", model_params(["iris-sklearn", "iris-xgboost", "iris-lightgbm", "iris-onnx",
                                               "iris-torch"]))
def test_a_model_file_holding_a_pickle_payload_is_refused(trained, tmp_path, name):
    store, _, _ = trained
    s = open_store(store)
    meta = get_meta(s, name, 1)
    marker = tmp_path / "ran"
    key = f"models/{name}/1/{meta['file']}"
    original = s.get_bytes(key)
    s.put_bytes(key, pickle.dumps(Payload(str(marker))))
    try:
        with pytest.raises(ModelFormatError, match="holds a pickle stream"):
            load_model(name, store=store)
    finally:
        s.put_bytes(key, original)
    assert not marker.exists()


def test_a_skops_file_naming_an_unsafe_function_is_refused(trained, tmp_path):
    """A skops file is not a pickle, but it can name any callable: skops refuses those not known safe."""
    import os

    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    store, _, _ = trained
    s = open_store(store)
    tampered = tmp_path / "model.skops"
    sio.dump(FunctionTransformer(func=os.system), tampered)
    original = s.get_bytes("models/iris-sklearn/1/model.skops")
    s.put_bytes("models/iris-sklearn/1/model.skops", tampered.read_bytes())
    try:
        with pytest.raises(ModelFormatError, match=r"not known to be safe.*system"):
            load_model("iris-sklearn", store=store)
    finally:
        s.put_bytes("models/iris-sklearn/1/model.skops", original)


def test_a_framework_that_is_not_installed_is_named(trained, monkeypatch):
    store, _, _ = trained
    monkeypatch.setitem(sys.modules, "lightgbm", None)  # what `import lightgbm` meets where it is not installed
    with pytest.raises(FrameworkMissing, match=r"'lightgbm' package.*jupyter-pipeline\[lightgbm\]"):
        load_model("iris-lightgbm", store=store)


def test_what_log_model_cannot_register_is_one_line_naming_what_it_takes(tmp_path):
    from jupyter_pipeline.store.models import log_model

    with pytest.raises(ModelFormatError, match=r"cannot register a builtins\.dict.*scikit-learn Pipeline"):
        log_model({"weights": [1, 2]}, "nope", store=str(tmp_path / "store"))
    if HAVE_TORCH:
        import torch

        with pytest.raises(ModelFormatError, match=r"needs an example input.*example=x"):
            log_model(torch.nn.Linear(2, 1), "nope", store=str(tmp_path / "store"))
    assert not (tmp_path / "store" / "models" / "nope").exists()


def test_concurrent_requests_are_batched_and_each_gets_its_own_rows(served, trained):
    """Rows from concurrent requests share model calls (batching) and come back to their own request."""
    from concurrent.futures import ThreadPoolExecutor

    thread, http, _, _ = served
    clf = load_model("iris-lightgbm", store=trained[0])
    rng = np.random.default_rng(7)
    batches = [probe()[rng.integers(0, 22, 1 + i % 3)].astype(np.float64) + i * 0.01 for i in range(48)]

    def ask(x):
        body = {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP64", "data": x.ravel().tolist()}]}
        doc = httpx.post(f"{thread.url}/v2/models/iris-lightgbm/infer", json=body, timeout=30).json()
        return np.asarray(doc["outputs"][1]["data"]).reshape(len(x), 3)

    def executions():
        return http.get_inference_statistics("iris-lightgbm")["model_stats"][0]["execution_count"]

    shared = False
    for _ in range(3):  # until some requests shared a model call (how many do depends on timing)
        before = executions()
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(ask, batches))
        for x, got in zip(batches, answers):
            np.testing.assert_allclose(got, clf.predict_proba(x), rtol=1e-6, atol=1e-6)
        shared = executions() - before < len(batches)
        if shared:
            break
    assert shared, "48 requests from 16 clients never shared a model call in 3 rounds"
