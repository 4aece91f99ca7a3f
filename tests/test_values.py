"""Value savers: each kind round-trips through a store; unsavable values fail clearly."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jupyter_pipeline.exceptions import UnknownKeyError, VariableNotSavable
from jupyter_pipeline.stage.values import load_value, remember_setup, save_value, saver_for, savers
from jupyter_pipeline.store.base import open_store


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


def roundtrip_elsewhere(tmp_path, store_dir, code: str, check: str) -> str:
    """Run ``code`` as ``__main__`` of one fresh Python, save its ``values`` through the store, load
    them in another fresh Python (where nothing of ``code`` is defined) and run ``check`` there."""
    saver = (
        "import sys\nfrom jupyter_pipeline.stage.values import save_value\nfrom jupyter_pipeline.store.base import open_store\n"
        f"{code}\n"
        "store = open_store(sys.argv[1])\n"
        "import json\nprint(json.dumps({n: save_value(n, v, store, 'vars', 'prep') for n, v in values.items()}))\n"
    )
    loader = (
        "import json, sys\nfrom jupyter_pipeline.stage.values import load_value\n"
        "from jupyter_pipeline.store.base import open_store\n"
        "store = open_store(sys.argv[1])\n"
        "globals().update({n: load_value(store, 'vars', e) for n, e in json.loads(sys.argv[2]).items()})\n"
        f"{check}\n"
    )
    (tmp_path / "save.py").write_text(saver)
    (tmp_path / "load.py").write_text(loader)
    index = subprocess.run([sys.executable, str(tmp_path / "save.py"), store_dir], capture_output=True, text=True,
                           check=True).stdout
    done = subprocess.run([sys.executable, str(tmp_path / "load.py"), store_dir, index], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return index


def test_functions_classes_lambdas_closures_travel_by_value(tmp_path, store_dir):
    code = """
factor = 3
tokenizer = {"a": 1}

def scale(v):
    return v * factor + tokenizer["a"]

def make_adder(n):
    def add(v):
        return v + n
    return add

class Counter:
    def __init__(self, start):
        self.count = start

    def bump(self):
        self.count += 1
        return self.count

values = {"scale": scale, "square": lambda v: v * v, "add_two": make_adder(2), "Counter": Counter,
          "counter": Counter(4)}
"""
    check = """
assert "factor" not in globals() and "tokenizer" not in globals()
assert scale(2) == 7 and square(3) == 9 and add_two(1) == 3
assert isinstance(counter, Counter) and counter.bump() == 5  # one class, though saved twice
"""
    index = json.loads(roundtrip_elsewhere(tmp_path, store_dir, code, check))
    assert {e["saver"] for e in index.values()} == {"pickle"}
    assert index["scale"]["type"] == "function" and index["counter"]["type"] == "__main__.Counter"


def test_modules_travel_as_imports(store):
    import os.path
    import xml.etree.ElementTree as ET

    for module in (os, os.path, ET, np):
        entry, back = roundtrip(store, module, "m")
        assert entry["saver"] == "module" and entry["file"] == "m.module.json"
        assert back is module
    assert json.loads(Path(store.root, "runs/r/stages/s/vars/m.module.json").read_text()) == {"import": "numpy"}


def test_setup_functions_and_classes_travel_by_reference(store):
    import types

    main = types.ModuleType("__main__")  # stands in for the kernel's namespace
    exec("class Unit:\n    pass\ndef helper():\n    return 1\nunit = Unit()", main.__dict__)
    real_main = sys.modules["__main__"]
    sys.modules["__main__"] = main
    try:
        entry = save_value("unit", main.unit, store, "p", "s")
        assert b"_make_skeleton_class" in Path(store.root, "p", entry["file"]).read_bytes()  # by value
        remember_setup(main.__dict__)
        entry = save_value("unit", main.unit, store, "p", "s")
        assert b"_make_skeleton_class" not in Path(store.root, "p", entry["file"]).read_bytes()
        assert isinstance(load_value(store, "p", entry), main.Unit)  # the consumer's own setup class
    finally:
        sys.modules["__main__"] = real_main
        remember_setup({})


@pytest.mark.parametrize("value, fragment, advice", [
    ((i for i in range(3)), "a generator", "list(...)"),
    (threading.Lock(), "a lock", "`setup` cell"),
    (socket.socket(), "a connection", "connect in the stage"),
])
def test_unsavable_values_name_variable_stage_cell_and_advice(store, value, fragment, advice):
    with pytest.raises(VariableNotSavable) as info:
        save_value("thing", value, store, "runs/r/stages/s/vars", "prep", cell=4)
    message = str(info.value)
    assert message.startswith("Variable 'thing' in stage 'prep' (cell 4) cannot be passed to later stages")
    assert f"it holds {fragment}" in message and advice in message
    assert info.value.cell == 4
    if isinstance(value, socket.socket):
        value.close()


def test_unsavable_part_is_named(store):
    lock = threading.Lock()

    def guarded():
        with lock:
            return 1

    notebook = {"__name__": "__main__", "lock": lock}  # a function defined in a notebook reads its globals
    exec("def locked():\n    with lock:\n        return 1", notebook)
    with pytest.raises(VariableNotSavable, match=r"`state\['guard'\]` is a lock"):
        save_value("state", {"n": 1, "guard": lock}, store, "p", "s")
    with pytest.raises(VariableNotSavable, match=r"`guarded \(reads 'lock' from its enclosing function\)` is a lock"):
        save_value("guarded", guarded, store, "p", "s")
    with pytest.raises(VariableNotSavable, match=r"`locked \(reads global 'lock'\)` is a lock"):
        save_value("locked", notebook["locked"], store, "p", "s")


def test_open_file_is_unsavable(store, tmp_path):
    with open(tmp_path / "f.txt", "w") as fh, pytest.raises(VariableNotSavable, match="holds an open file.*path"):
        save_value("fh", fh, store, "p", "s")


def test_in_memory_buffers_travel(store):
    entry, back = roundtrip(store, io.BytesIO(b"abc"))
    assert back.getvalue() == b"abc"


def test_registry_order_and_unknown_saver(store):
    assert list(savers) == ["keras", "dmatrix", "numpy", "parquet", "module", "pickle"]
    assert saver_for(3).name == "pickle"
    with pytest.raises(UnknownKeyError, match="saver"):
        load_value(store, "p", {"saver": "nope", "file": "x"})
