"""One runtime per model framework: what the server calls for a loaded model version.

Keras models go through the compiled, batch-bucketed :mod:`.predictor` of their backend. The
others (scikit-learn, XGBoost, LightGBM, ONNX through onnxruntime, PyTorch) through the
:class:`~jupyter_pipeline.frameworks.Runtime` their framework gives: their libraries take any batch
size as it is, so batches are neither padded nor bucketed. Either way the result is a
:class:`~.predictor.Predictor`, which the batcher, statistics and warm-up use alike.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..frameworks import Runtime, frameworks
from ..registry import Registry
from .predictor import Predictor, make_predictor
from .protocol import Signature, TensorSpec


def signature_of(doc: dict) -> Signature:
    """A served :class:`Signature` from a meta.json signature."""
    def specs(entries):
        return tuple(TensorSpec(e["name"], tuple(e["shape"]), np.dtype(e["dtype"])) for e in entries)
    return Signature(specs(doc["inputs"]), specs(doc["outputs"]))


class RuntimePredictor(Predictor):
    """A framework's :class:`Runtime` behind the :class:`Predictor` interface, no padding."""

    def __init__(self, runtime: Runtime, max_batch_size: int = 32):
        self.runtime = runtime
        super().__init__(runtime, signature_of(runtime.signature), max_batch_size)
        self.buckets = []  # any batch size runs as it is

    def _compile(self) -> Callable:
        return self.runtime.fn

    def _run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self._lock:
            self.calls += 1
        return [np.asarray(o) for o in self._fn(inputs)]


#: ``(model, meta, max_batch_size) -> Predictor`` by meta.json ``format``; ``default`` serves the rest.
runtimes: Registry[Callable[[object, dict, int], Predictor]] = Registry("model runtime")


def predictor_for(model, meta: dict, max_batch_size: int = 32) -> Predictor:
    """The predictor serving ``model`` (loaded from a version whose metadata is ``meta``)."""
    fmt = meta.get("format", "keras")
    return runtimes.get(fmt if fmt in runtimes else "default")(model, meta, max_batch_size)


def platform_of(meta: dict) -> str:
    """The OIP ``platform`` of a served model: ``keras_jax``, ``sklearn``, ``onnxruntime_onnx``, ..."""
    fmt = meta.get("format", "keras")
    if fmt == "keras":
        return f"keras_{meta.get('framework', {}).get('backend') or 'keras'}"
    return frameworks.get(fmt).platform if fmt in frameworks else fmt


runtimes.register("keras", lambda model, meta, max_batch_size: make_predictor(model, max_batch_size))
runtimes.register("default", lambda model, meta, max_batch_size: RuntimePredictor(
    frameworks.get(meta["format"]).runtime(model, meta), max_batch_size))
