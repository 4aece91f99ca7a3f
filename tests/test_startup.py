"""Start-up choices of our processes: the Keras backend when the user chose none."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

from jupyter_pipeline.startup import default_keras_backend

needs_no_tensorflow = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None,
                                         reason="with TensorFlow installed, Keras's own default is kept")


@pytest.fixture
def keras_home(monkeypatch, tmp_path):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    return tmp_path


@needs_no_tensorflow
@pytest.mark.parametrize("config", [None, {"backend": "tensorflow"}, "not json"])
def test_jax_when_no_usable_backend_was_chosen(keras_home, config):
    if config is not None:
        # Keras writes {"backend": "tensorflow"} on its first import: that is its default, not a choice.
        (keras_home / "keras.json").write_text(config if isinstance(config, str) else json.dumps(config))
    assert default_keras_backend() == "jax"
    assert os.environ["KERAS_BACKEND"] == "jax"


def test_a_chosen_backend_is_kept(keras_home, monkeypatch):
    (keras_home / "keras.json").write_text(json.dumps({"backend": "torch"}))
    assert default_keras_backend() is None and "KERAS_BACKEND" not in os.environ
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    assert default_keras_backend() is None and os.environ["KERAS_BACKEND"] == "tensorflow"
