"""examples/iris: train -> evaluate -> register only when accurate enough -> promote -> serve, and the
model server following the ``production`` alias as ``promote_model`` and ``models promote`` move it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

pytest.importorskip("skops")
httpclient = pytest.importorskip("tritonclient.http")

from jupyter_pipeline.cli import main as cli_main  # noqa: E402
from jupyter_pipeline.local.runner import run_pipeline  # noqa: E402
from jupyter_pipeline.serving import ServerConfig, ServerThread  # noqa: E402
from jupyter_pipeline.store.base import open_store  # noqa: E402
from jupyter_pipeline.store.models import aliases, list_versions, load_model, log_model  # noqa: E402

pytestmark = pytest.mark.slow

IRIS = Path(__file__).resolve().parent.parent / "examples" / "iris" / "iris.ipynb"


def rows():
    from sklearn.datasets import load_iris

    return load_iris(return_X_y=True)[0][::10]


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    """The example run twice on one store: once accurate enough, once with an unreachable bar."""
    store = str(tmp_path_factory.mktemp("iris") / "store")
    passed = run_pipeline(IRIS, {"min_accuracy": 0.9}, store=store)
    refused = run_pipeline(IRIS, {"min_accuracy": 1.01}, store=store)
    return store, passed, refused


def test_an_accurate_model_is_registered_and_promoted_and_the_stage_record_says_so(gated):
    store, passed, _ = gated
    assert passed.status.value == "succeeded"
    assert [passed.stages[s].status.value for s in ("train", "evaluate", "register", "promote")] == ["succeeded"] * 4
    assert passed.stages["evaluate"].metrics["accuracy"] >= 0.9
    [registered] = passed.stages["register"].models
    assert (registered["name"], registered["version"], registered["format"]) == ("iris", 1, "sklearn")
    [promoted] = passed.stages["promote"].models
    assert (promoted["name"], promoted["version"], promoted["alias"]) == ("iris", 1, "production")
    assert aliases(open_store(store), "iris") == {"production": 1}


def test_below_the_bar_register_and_promote_are_skipped_and_the_run_succeeds(gated):
    store, _, refused = gated
    assert refused.status.value == "succeeded"
    for stage in ("register", "promote"):
        assert refused.stages[stage].status.value == "skipped"
        assert refused.stages[stage].models == []
    assert "accuracy" in json.dumps(refused.stages["register"].to_json())  # the reason names the condition
    assert list_versions(open_store(store), "iris") == [1]


def test_the_served_model_answers_like_the_registered_one(gated):
    store, _, _ = gated
    clf = load_model("iris", "production", store=store)
    x = rows()
    with ServerThread(ServerConfig(store=store, port=0, poll_interval=0)) as thread:
        client = httpclient.InferenceServerClient(url=thread.url.removeprefix("http://"))
        inp = httpclient.InferInput("input", list(x.shape), "FP64")
        inp.set_data_from_numpy(x)
        result = client.infer("iris", [inp])
        np.testing.assert_array_equal(result.as_numpy("label"), clf.predict(x))
        np.testing.assert_allclose(result.as_numpy("probabilities"), clf.predict_proba(x), rtol=1e-6, atol=1e-6)
        meta = client.get_model_metadata("iris")
        assert [o["name"] for o in meta["outputs"]] == ["label", "probabilities"]
        client.close()


def test_the_server_answers_with_the_production_version_and_follows_it(tmp_path, capsys):
    """v1 promoted, v2 registered later: unnamed requests stay on v1 until the alias moves to v2."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    store = str(tmp_path / "store")
    first = LogisticRegression(C=0.01, max_iter=500).fit(X, y)
    second = LogisticRegression(C=10.0, max_iter=500).fit(X, y)
    log_model(first, "iris", store=store)
    assert cli_main(["models", "promote", "iris", "--store", store]) == 0  # no version: the latest
    assert "production -> version 1" in capsys.readouterr().out
    log_model(second, "iris", store=store)
    x = rows()
    body = {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP64", "data": x.ravel().tolist()}]}

    def answer():
        doc = httpx.post(f"{thread.url}/v2/models/iris/infer", json=body).json()
        return doc["model_version"], np.asarray(doc["outputs"][1]["data"]).reshape(len(x), 3)

    with ServerThread(ServerConfig(store=store, port=0, poll_interval=0.2)) as thread:
        version, proba = answer()
        assert version == "1"
        np.testing.assert_allclose(proba, first.predict_proba(x), rtol=1e-6)
        assert httpx.get(f"{thread.url}/v2/models/iris/versions/2/ready").status_code == 200  # by number, still
        assert cli_main(["models", "promote", "iris", "2", "--store", store]) == 0
        deadline = time.monotonic() + 30
        while answer()[0] != "2":
            assert time.monotonic() < deadline, "the server did not follow the alias to version 2"
            time.sleep(0.1)
        np.testing.assert_allclose(answer()[1], second.predict_proba(x), rtol=1e-6)
    assert cli_main(["models", "--store", store]) == 0
    listing = capsys.readouterr().out
    assert "production" in listing and "sklearn" in listing
