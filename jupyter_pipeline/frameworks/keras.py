"""Keras models: ``model.keras`` (Keras's own zip of config and weights), loaded in safe mode."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

from . import Framework, Runtime, refuse_pickle


def _tensor_specs(tensors) -> list[dict]:
    specs = []
    for i, t in enumerate(tensors or []):
        shape = [None if d is None else int(d) for d in getattr(t, "shape", ())]
        dtype = str(getattr(t, "dtype", "float32"))
        name = getattr(t, "name", None) or f"input_{i}"
        specs.append({"name": str(name).split(":")[0], "shape": shape, "dtype": dtype})
    return specs


def signature(model) -> dict:
    """Input/output names, shapes and dtypes of a built Keras model."""
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        inputs = outputs = None
    return {"inputs": _tensor_specs(inputs), "outputs": _tensor_specs(outputs)}


class KerasFramework(Framework):
    name = "keras"
    package = "keras"
    extra = "models"
    modules = ("keras",)
    filename = "model.keras"
    kserve_format = "tensorflow"
    platform = "keras"

    def matches(self, model) -> bool:
        keras = sys.modules.get("keras")  # a Keras model exists only once keras is imported
        return keras is not None and isinstance(model, keras.Model)

    def save(self, model, path: Path, example=None) -> dict:
        from ..stage.replica import saving_alone

        with saving_alone():  # a workers: stage's rank 0 saves alone
            model.save(path)
        return {"signature": signature(model)}

    def load(self, path: Path, meta: dict, **options):
        from ..startup import default_keras_backend

        default_keras_backend()
        import keras

        refuse_pickle(path, f"Model {meta.get('name')} v{meta.get('version')}")
        return keras.saving.load_model(path, safe_mode=True)

    def runtime(self, model, meta: dict) -> Runtime:  # the server compiles Keras models itself
        raise NotImplementedError("Keras models are served by serving.predictor's compiled predictors")

    def versions(self) -> dict:
        import keras

        out = {"python": platform.python_version(), "keras": keras.__version__}
        try:
            out["backend"] = keras.backend.backend()
        except Exception:
            pass
        for mod in ("jax", "tensorflow", "torch", "numpy"):
            if mod in sys.modules:
                out[mod] = getattr(sys.modules[mod], "__version__", "?")
        return out


FRAMEWORK = KerasFramework()
