"""The model registry (log_model / load_model / list_models) on the local folder and on S3."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from jupyter_pipeline.stage import context
from jupyter_pipeline.cli import main as cli_main
from jupyter_pipeline.exceptions import ModelNotFound, PipelineError
from jupyter_pipeline.store.models import list_models, list_versions, load_model, log_model
from jupyter_pipeline.store.base import LocalStore, open_store


@pytest.fixture(params=["local", "s3"])
def store(request, store_dir):
    if request.param == "local":
        return LocalStore(store_dir)
    return open_store(request.getfixturevalue("s3_url"))


@pytest.fixture
def no_run(monkeypatch):
    """Outside any pipeline run, whatever an earlier test activated."""
    monkeypatch.setattr(context, "_active", None)
    monkeypatch.setattr(context, "_interactive_metrics", {})


def small_model(seed: int = 0):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(4,), name="features")
    outputs = keras.layers.Dense(3, activation="softmax", name="probs")(keras.layers.Dense(8)(inputs))
    return keras.Model(inputs, outputs)


X = np.arange(8, dtype="float32").reshape(2, 4) / 8


def test_versions_increase_and_load_back(store, no_run):
    first, second = small_model(1), small_model(2)
    assert log_model(first, "digits", store=store) == 1
    assert log_model(second, "digits", store=store) == 2
    assert list_versions(store, "digits") == [1, 2]

    np.testing.assert_allclose(load_model("digits", store=store).predict(X, verbose=0), second.predict(X, verbose=0),
                               rtol=1e-6)
    np.testing.assert_allclose(load_model("digits", 1, store=store).predict(X, verbose=0), first.predict(X, verbose=0),
                               rtol=1e-6)
    assert store.exists("models/digits/2/model.keras") and store.exists("models/digits/2/meta.json")


def test_meta_has_signature_framework_and_time(store, no_run):
    context.log_metric("accuracy", 0.75)  # interactive: kept in memory and put in the model's meta
    log_model(small_model(), "iris", store=store)
    [meta] = list_models(store)["iris"]
    assert meta["version"] == 1 and meta["name"] == "iris"
    assert meta["signature"]["inputs"] == [{"name": "features", "shape": [None, 4], "dtype": "float32"}]
    assert meta["signature"]["outputs"][0]["shape"] == [None, 3]
    assert meta["framework"]["keras"] and meta["framework"]["backend"] == "jax"
    assert meta["metrics"] == {"accuracy": 0.75}
    assert meta["run_id"] is None and meta["created_at"].endswith("Z")


def test_inside_a_stage_the_model_goes_to_the_run_store_with_run_and_metrics(store, monkeypatch):
    monkeypatch.setattr(context, "_active", None)
    context.activate(store.url if not isinstance(store, LocalStore) else str(store.root), "20260101-000000-d-0001", "train")
    context.log_metric("loss", np.float32(0.5))
    version = log_model(small_model(), "digits")  # no store given: the run's store
    assert version == 1
    assert store.get_json("runs/20260101-000000-d-0001/stages/train/metrics.json") == {"loss": 0.5}
    meta = store.get_json("models/digits/1/meta.json")
    assert (meta["run_id"], meta["stage"], meta["metrics"]) == ("20260101-000000-d-0001", "train", {"loss": 0.5})


def test_concurrent_log_model_calls_get_distinct_versions(store, no_run):
    models = [small_model(i) for i in range(5)]
    versions, errors = [], []
    barrier = threading.Barrier(len(models))

    def register(model):
        barrier.wait()
        try:
            versions.append(log_model(model, "race", store=store))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=register, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(versions) == [1, 2, 3, 4, 5]
    assert list_versions(store, "race") == [1, 2, 3, 4, 5]
    for v in versions:  # each version holds a whole model of its own
        assert store.get_json(f"models/race/{v}/meta.json")["version"] == v


def test_unknown_models_and_versions_are_reported(store, no_run):
    with pytest.raises(ModelNotFound, match="No model named 'ghost'"):
        load_model("ghost", store=store)
    log_model(small_model(), "real", store=store)
    with pytest.raises(ModelNotFound, match=r"has no version 7 .* versions: \[1\]"):
        load_model("real", 7, store=store)
    with pytest.raises(PipelineError, match="not valid"):
        log_model(small_model(), "Bad Name", store=store)


def test_models_command_lists_versions(store, no_run, capsys):
    log_model(small_model(), "digits", store=store, metadata={"metrics": {"accuracy": 0.9}})
    log_model(small_model(), "digits", store=store)
    assert "registered model digits version 2" in capsys.readouterr().out
    url = store.url if not isinstance(store, LocalStore) else str(store.root)
    assert cli_main(["models", "--store", url, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [m["version"] for m in out["models"]["digits"]] == [1, 2]
    assert out["models"]["digits"][0]["metrics"] == {"accuracy": 0.9}

    assert cli_main(["models", "--store", url]) == 0
    text = capsys.readouterr().out
    assert "digits" in text and "features(?, 4)" in text and "accuracy=0.9" in text and "interactive" in text

    assert cli_main(["models", "ghost", "--store", url]) == 1
    assert "No model named 'ghost'" in capsys.readouterr().err


def test_promote_sets_an_alias_that_load_model_resolves(store, no_run, capsys):
    first, second = small_model(1), small_model(2)
    log_model(first, "digits", store=store)
    log_model(second, "digits", store=store)
    url = store.url if not isinstance(store, LocalStore) else str(store.root)
    assert cli_main(["models", "promote", "digits", "1", "--store", url]) == 0
    assert "production -> version 1" in capsys.readouterr().out
    np.testing.assert_allclose(load_model("digits", "production", store=store).predict(X, verbose=0),
                               first.predict(X, verbose=0), rtol=1e-6)
    assert load_model("digits", store=store) is not None  # latest is still version 2
    assert cli_main(["models", "promote", "digits", "9", "--store", url]) == 1
    assert "has no version 9" in capsys.readouterr().err
    with pytest.raises(ModelNotFound, match="no alias 'staging'"):
        load_model("digits", "staging", store=store)
