"""Value savers of machine-learning frameworks: Keras models and XGBoost's DMatrix.

Registered in :data:`jupyter_pipeline.stage.values.savers` ahead of the generic ones. Type checks
look at ``sys.modules`` first, so checking a value never imports Keras or XGBoost.

**Keras.** A model is written in Keras's own ``.keras`` format. Keras rebuilds a model from its
config by class *name*, so a layer, loss, metric or model class the notebook defined (and did not
register) is unknown to the next stage's kernel: "Could not locate class 'Scale'". The saver
therefore also writes, inside the same zip file (``jupyter_pipeline/custom_objects.pkl``, a member
Keras ignores), the classes and functions the config names that Keras cannot import itself,
pickled like any other value (by value when the notebook's stage code defined them, by reference
when a ``setup`` cell did), and the loader passes them to ``keras.saving.load_model`` as
``custom_objects``. Keras's safe mode stays on: it refuses only the code of ``Lambda`` layers.

**XGBoost.** A ``DMatrix`` holds a pointer into the C library (pickle cannot copy it); it is
written with ``save_binary`` (data, labels, weights, feature names and types) and read back with
``xgboost.DMatrix(path)``.
"""

from __future__ import annotations

import json
import pickle
import sys
import zipfile
from pathlib import Path

#: The zip member of a ``.keras`` file holding the custom objects its model needs.
CUSTOM_OBJECTS_MEMBER = "jupyter_pipeline/custom_objects.pkl"


# -- Keras ------------------------------------------------------------------------------------------
def is_keras(value) -> bool:
    """Whether ``value`` is a Keras 3 model (without importing Keras)."""
    if "keras" not in sys.modules:
        return False
    import keras

    return isinstance(value, keras.Model)


def _named_in_config(config) -> list[tuple[str, str]]:
    """``(key, name)`` of every class or function ``config`` names that Keras cannot import by
    itself: ``key`` is what Keras looks the object up by, ``name`` its Python name."""
    found: list[tuple[str, str]] = []
    todo = [config]
    while todo:
        node = todo.pop()
        if isinstance(node, list):
            todo.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        todo.extend(node.values())
        if "class_name" not in node or "module" not in node:
            continue
        module = node.get("module") or ""
        if module == "keras" or module.startswith(("keras.", "keras_hub", "keras_cv", "keras_nlp")):
            continue  # Keras imports its own
        if node["class_name"] == "function" and isinstance(node.get("config"), str):
            found.append((node["config"], node["config"]))  # a plain function: looked up by its name
        else:
            found.append((node.get("registered_name") or node["class_name"], node["class_name"]))
    return found


def _model_classes(model) -> dict[str, type]:
    """The classes of ``model`` and of every layer in it, by name (a class made inside a function
    is in no namespace Keras could search)."""
    classes: dict[str, type] = {}
    todo = [model]
    while todo:
        layer = todo.pop()
        classes.setdefault(type(layer).__name__, type(layer))
        todo.extend(getattr(layer, "layers", None) or [])
    return classes


def custom_objects(model, config: dict) -> dict:
    """The objects Keras needs by name to rebuild ``model`` from ``config`` that it cannot import:
    the notebook's own layer, loss, metric and model classes and functions."""
    import keras

    main = vars(sys.modules["__main__"])
    classes = _model_classes(model)
    objects = {}
    for key, name in _named_in_config(config):
        found = keras.saving.get_registered_object(key) or classes.get(name) or main.get(name)
        if found is not None:
            objects[key] = found
    return objects


def save_keras(value, path: Path) -> None:
    """Keras's ``.keras`` file, with the custom objects it needs as an extra zip member."""
    from .pickling import dumps

    value.save(path)
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    objects = custom_objects(value, config)
    if objects:
        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr(CUSTOM_OBJECTS_MEMBER, dumps(objects))


def load_keras(path: Path):
    """A model written by :func:`save_keras`, its custom objects in scope, in Keras's safe mode."""
    from ..startup import default_keras_backend

    default_keras_backend()
    import keras

    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        objects = pickle.loads(archive.read(CUSTOM_OBJECTS_MEMBER)) if CUSTOM_OBJECTS_MEMBER in names else {}
    return keras.saving.load_model(path, custom_objects=objects, safe_mode=True)


def keras_bytes(model) -> bytes:
    """``model`` as the bytes of :func:`save_keras`'s file (a model inside a pickled container)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="jp-keras-") as tmp:
        path = Path(tmp) / "model.keras"
        save_keras(model, path)
        return path.read_bytes()


def keras_from_bytes(data: bytes):
    """The model :func:`keras_bytes` wrote (what unpickling a container of models calls)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="jp-keras-") as tmp:
        path = Path(tmp) / "model.keras"
        path.write_bytes(data)
        return load_keras(path)


# -- XGBoost ----------------------------------------------------------------------------------------
def is_dmatrix(value) -> bool:
    """Whether ``value`` is an XGBoost ``DMatrix`` (or a subclass, which :func:`save_dmatrix` refuses)."""
    if "xgboost" not in sys.modules:
        return False
    import xgboost

    return isinstance(value, xgboost.DMatrix)


def save_dmatrix(value, path: Path) -> None:
    """XGBoost's binary DMatrix format (only a plain DMatrix has one)."""
    import xgboost

    if type(value) is not xgboost.DMatrix:
        raise TypeError(f"XGBoost writes only a plain DMatrix to a file, not a {type(value).__name__}; pass the "
                        "arrays it is built from and build it in the stage that trains")
    value.save_binary(str(path), silent=True)


def load_dmatrix(path: Path):
    """A DMatrix written by :func:`save_dmatrix`."""
    import xgboost

    return xgboost.DMatrix(str(path), silent=True)
