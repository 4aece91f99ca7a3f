"""Framework savers: Keras models whose classes the notebook defines, XGBoost's DMatrix.

Round trips load in a fresh Python where nothing of the saving code is defined (as the next stage's
kernel), then the fixture notebooks run stage to stage: locally and as the compiled pipeline on
kfp.local.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from jupyter_pipeline.exceptions import VariableNotSavable
from jupyter_pipeline.notebook.parse import load
from jupyter_pipeline.stage.frameworks import CUSTOM_OBJECTS_MEMBER
from jupyter_pipeline.stage.values import load_value, save_value
from jupyter_pipeline.store.base import open_store
from jupyter_pipeline.targets import get_target

KERAS_CODE = """
import numpy as np
import keras

class Scale(keras.layers.Layer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}

class Tiny(keras.Model):  # a subclassed model holding a custom layer
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.scale = Scale(4.0)
        self.dense = keras.layers.Dense(1, kernel_initializer="ones")

    def call(self, x):
        return self.dense(self.scale(x))

def gap(y_true, y_pred):
    return keras.ops.mean(keras.ops.abs(y_true - y_pred))

def build():
    class Inner(keras.layers.Layer):  # made inside a function: in no namespace, found through the model
        def call(self, x):
            return x - 1.0
    return Inner

layered = keras.Sequential([keras.Input((3,)), Scale(3.0), build()(), keras.layers.Dense(1, kernel_initializer="ones")])
layered.compile(optimizer="sgd", loss="mse", metrics=[gap])
subclassed = Tiny()
subclassed(np.ones((1, 3)))
values = {"layered": layered, "subclassed": subclassed}
"""

KERAS_CHECK = """
import numpy as np
x = np.ones((2, 3), dtype="float32")
assert [type(l).__name__ for l in layered.layers] == ["Scale", "Inner", "Dense"], layered.layers
np.testing.assert_allclose(layered.predict(x, verbose=0), np.full((2, 1), 6.0), rtol=1e-6)
layered.fit(x, np.ones((2, 1)), epochs=1, verbose=0)  # compiled again, with the notebook's metric
assert type(subclassed).__name__ == "Tiny"
np.testing.assert_allclose(subclassed.predict(x, verbose=0), np.full((2, 1), 12.0), rtol=1e-6)
"""


def save_then_load_elsewhere(tmp_path, store_dir, code: str, check: str) -> dict:
    """Save ``values`` made by ``code`` in one fresh Python; load and ``check`` them in another."""
    (tmp_path / "save.py").write_text(
        "import json, sys\nfrom jupyter_pipeline.stage.values import save_value\n"
        "from jupyter_pipeline.store.base import open_store\n" + code +
        "\nstore = open_store(sys.argv[1])\n"
        "print(json.dumps({n: save_value(n, v, store, 'vars', 'prep') for n, v in values.items()}))\n")
    (tmp_path / "load.py").write_text(
        "import json, sys\nfrom jupyter_pipeline.stage.values import load_value\n"
        "from jupyter_pipeline.store.base import open_store\nstore = open_store(sys.argv[1])\n"
        "globals().update({n: load_value(store, 'vars', e) for n, e in json.loads(sys.argv[2]).items()})\n" + check)
    saved = subprocess.run([sys.executable, str(tmp_path / "save.py"), store_dir], capture_output=True, text=True)
    assert saved.returncode == 0, saved.stderr
    index = saved.stdout.strip().splitlines()[-1]
    loaded = subprocess.run([sys.executable, str(tmp_path / "load.py"), store_dir, index], capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr
    return json.loads(index)


def test_keras_models_with_notebook_classes_load_in_a_fresh_process(tmp_path, store_dir):
    index = save_then_load_elsewhere(tmp_path, store_dir, KERAS_CODE, KERAS_CHECK)
    assert {e["saver"] for e in index.values()} == {"keras"}
    with zipfile.ZipFile(f"{store_dir}/vars/layered.keras") as archive:
        assert CUSTOM_OBJECTS_MEMBER in archive.namelist()  # beside Keras's own members, which it ignores
        assert {"config.json", "model.weights.h5"} <= set(archive.namelist())


def test_keras_models_inside_a_container_keep_their_custom_objects(tmp_path, store_dir):
    code = KERAS_CODE + "\nvalues = {'models': {'layered': layered, 'subclassed': subclassed}}\n"
    check = "layered, subclassed = models['layered'], models['subclassed']\n" + KERAS_CHECK
    index = save_then_load_elsewhere(tmp_path, store_dir, code, check)
    assert index["models"]["saver"] == "pickle"


def test_keras_model_of_keras_classes_only_carries_no_custom_objects(store_dir):
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    store = open_store(store_dir)
    entry = save_value("model", model, store, "vars", "s", 3)
    assert entry["cell"] == 3 and entry["library"]["name"] == "keras"
    with zipfile.ZipFile(f"{store_dir}/vars/model.keras") as archive:
        assert CUSTOM_OBJECTS_MEMBER not in archive.namelist()
    assert isinstance(load_value(store, "vars", entry), keras.Sequential)


def test_dmatrix_keeps_data_labels_weights_and_feature_names(store_dir):
    xgb = pytest.importorskip("xgboost")
    data = np.arange(12, dtype="float32").reshape(4, 3)
    matrix = xgb.DMatrix(data, label=[0, 1, 0, 1], weight=[1, 2, 3, 4], feature_names=["a", "b", "c"])
    store = open_store(store_dir)
    entry = save_value("train", matrix, store, "vars", "s")
    assert entry["saver"] == "dmatrix" and entry["file"] == "train.dmatrix"
    back = load_value(store, "vars", entry)
    assert back.feature_names == ["a", "b", "c"] and back.num_row() == 4 and back.num_col() == 3
    np.testing.assert_array_equal(back.get_label(), [0, 1, 0, 1])
    np.testing.assert_array_equal(back.get_weight(), [1, 2, 3, 4])


def test_quantile_dmatrix_is_refused_with_what_to_do(store_dir):
    xgb = pytest.importorskip("xgboost")
    matrix = xgb.QuantileDMatrix(np.ones((4, 2)), label=[0, 1, 0, 1])
    with pytest.raises(VariableNotSavable, match="only a plain DMatrix.*build it in the stage that trains"):
        save_value("train", matrix, open_store(store_dir), "vars", "prep", 2)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["local", "kfp-local"])
def test_keras_custom_objects_cross_stages(fixture_nb, store_dir, target):
    pipeline = load(fixture_nb("keras_custom_objects"))
    record = get_target(target).run(pipeline, {}, open_store(store_dir), {}, lambda *a: None)
    assert record.status.value == "succeeded", {n: r.error for n, r in record.stages.items()}
    assert record.stages["train"].outputs == ["expected", "model", "x", "y"]


@pytest.mark.slow
@pytest.mark.parametrize("target", ["local", "kfp-local"])
def test_xgboost_dmatrix_crosses_stages(fixture_nb, store_dir, target):
    pytest.importorskip("xgboost")
    pipeline = load(fixture_nb("xgboost_dmatrix"))
    record = get_target(target).run(pipeline, {}, open_store(store_dir), {}, lambda *a: None)
    assert record.status.value == "succeeded", {n: r.error for n, r in record.stages.items()}
    assert record.stages["evaluate"].metrics["accuracy"] > 0.8
    files = open_store(store_dir).list(f"runs/{record.run_id}/stages/load/vars/")
    assert {f.rsplit("/", 1)[1] for f in files} == {"test.dmatrix", "train.dmatrix"}

