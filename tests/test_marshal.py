"""Value savers: each kind round-trips through a store; unsavable values fail clearly."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from jupyter_pipeline.exceptions import UnknownKeyError, VariableNotSavable
from jupyter_pipeline.marshal import load_value, save_value, saver_for, savers
from jupyter_pipeline.store import open_store


@pytest.fixture
def store(store_dir):
    return open_store(store_dir)


def roundtrip(store, value, name="v"):
    entry = save_value(name, value, store, "runs/r/stages/s/vars", "s")
    return entry, load_value(store, "runs/r/stages/s/vars", entry)


def test_numpy_uses_npy_without_pickle(store):
    arr = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    entry, back = roundtrip(store, arr)
    assert entry["saver"] == "numpy" and entry["file"] == "v.npy"
    np.testing.assert_array_equal(arr, back)
    assert back.dtype == np.float32


def test_object_arrays_go_to_pickle(store):
    entry, back = roundtrip(store, np.array([{"a": 1}, None], dtype=object))
    assert entry["saver"] == "pickle" and back[0] == {"a": 1}


def test_dataframe_parquet_and_non_string_columns_pickle(store):
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    entry, back = roundtrip(store, df)
    assert entry["saver"] == "parquet"
    pd.testing.assert_frame_equal(df, back)
    odd = pd.DataFrame({0: [1.0], 1: [2.0]})
    entry, back = roundtrip(store, odd, "odd")
    assert entry["saver"] == "pickle"
    pd.testing.assert_frame_equal(odd, back)


def test_keras_model_saved_as_keras_file(store):
    import keras

    model = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(2)])
    entry, back = roundtrip(store, model, "model")
    assert entry["saver"] == "keras" and entry["file"] == "model.keras"
    x = np.ones((1, 3), dtype="float32")
    np.testing.assert_allclose(model.predict(x, verbose=0), back.predict(x, verbose=0), rtol=1e-6)


def test_plain_values_pickle(store):
    entry, back = roundtrip(store, {"k": [1, 2.5, "s"], "t": (1, 2)})
    assert entry["saver"] == "pickle" and back == {"k": [1, 2.5, "s"], "t": (1, 2)}


@pytest.mark.parametrize("value, fragment", [
    ((i for i in range(3)), "generator"),
    (threading.Lock(), "lock"),
    (np, "module"),
])
def test_unsavable_values_name_variable_stage_and_type(store, value, fragment):
    with pytest.raises(VariableNotSavable) as info:
        save_value("thing", value, store, "runs/r/stages/s/vars", "prep")
    message = str(info.value)
    assert "'thing'" in message and "'prep'" in message and fragment in message.lower()
    assert "setup" in message  # suggests what to do instead


def test_open_file_is_unsavable(store, tmp_path):
    with open(tmp_path / "f.txt", "w") as fh, pytest.raises(VariableNotSavable, match="TextIOWrapper"):
        save_value("fh", fh, store, "p", "s")


def test_registry_order_and_unknown_saver(store):
    assert list(savers)[:3] == ["keras", "numpy", "parquet"]
    assert saver_for(3).name == "pickle"
    with pytest.raises(UnknownKeyError, match="saver"):
        load_value(store, "p", {"saver": "nope", "file": "x"})
