"""The compiled call path of a served Keras model, one implementation per Keras backend.

``model.predict`` builds a data pipeline and a progress callback on every call (about 1 ms for a
small model here) and ``model(x)`` dispatches layer by layer; both dominate small requests. A
:class:`Predictor` instead compiles the model's forward pass once per *batch bucket* (powers of two
up to the largest batch) and pads each batch up to its bucket, so any batch size reuses one of a
few compiled programs. Backends come from :data:`predictors`; a new one implements :meth:`_compile`.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Callable

import numpy as np

from ..registry import Registry
from .protocol import Signature, TensorSpec


def buckets(max_batch_size: int) -> list[int]:
    """Batch sizes compiled for: 1, 2, 4, ... up to and including ``max_batch_size``."""
    out, b = [], 1
    while b < max_batch_size:
        out.append(b)
        b *= 2
    return out + [max(1, max_batch_size)]


def served_signature(model) -> Signature:
    """Inputs and outputs of a loaded Keras model, outputs named after the layers producing them.

    ``meta.json`` names outputs after Keras tensors (``keras_tensor_7``), which are numbered per
    process and so differ between the process that saved a model and the one serving it; layer
    names are saved with the model and stay put.
    """
    inputs = tuple(TensorSpec(str(t.name).split(":")[0], _shape(t), np.dtype(_dtype(t))) for t in model.inputs)
    names: list[str] = []
    for i, t in enumerate(model.outputs):
        history = getattr(t, "_keras_history", None)
        name = getattr(history[0], "name", None) if history else None
        names.append(name if name and name not in names else f"output_{i}")
    outputs = tuple(TensorSpec(n, _shape(t), np.dtype(_dtype(t))) for n, t in zip(names, model.outputs))
    return Signature(inputs, outputs)


def _shape(t) -> tuple:
    return tuple(None if d is None else int(d) for d in t.shape)


def _dtype(t) -> str:
    dtype = str(getattr(t, "dtype", "float32"))
    return "float32" if dtype == "bfloat16" else dtype


class Predictor(ABC):
    """Base class: owns bucketing, padding, chunking and output ordering; a backend compiles."""

    def __init__(self, model, signature: Signature, max_batch_size: int = 32):
        self.model = model
        self.signature = signature
        self.buckets = buckets(max_batch_size) if signature.batched else []
        self.calls = 0  # compiled-program invocations (a padded batch counts once)
        self._fn = self._compile()
        self._lock = threading.Lock()

    @abstractmethod
    def _compile(self) -> Callable[[object], list]:
        """Return ``fn(x) -> list of output arrays``; ``x`` is one array or a dict by input name."""

    def warm_up(self) -> None:
        """Compile every bucket now, so the first requests (and a hot swap) pay no compile time."""
        for size in self.buckets or [None]:
            feed = {}
            for spec in self.signature.inputs:
                dims = [d or 1 for d in spec.shape]
                if size is not None:
                    dims[0] = size
                feed[spec.name] = np.zeros(dims, spec.dtype)
            self(feed)

    def __call__(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs (signature order) for ``inputs`` (arrays by input name, same leading size)."""
        if not self.buckets:
            return self._run(inputs)
        rows = next(iter(inputs.values())).shape[0]
        largest = self.buckets[-1]
        if rows > largest:
            parts = [self(({k: v[i:i + largest] for k, v in inputs.items()})) for i in range(0, rows, largest)]
            return [np.concatenate(chunk) for chunk in zip(*parts)]
        size = next(b for b in self.buckets if b >= rows)
        if size != rows:
            inputs = {k: np.concatenate([v, np.zeros((size - rows,) + v.shape[1:], v.dtype)]) for k, v in inputs.items()}
        return [out[:rows] for out in self._run(inputs)]

    def _run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        names = [s.name for s in self.signature.inputs]
        x = inputs[names[0]] if len(names) == 1 else {n: inputs[n] for n in names}
        with self._lock:
            self.calls += 1
        outs = self._fn(x)
        return [np.asarray(o) for o in outs]


def _flatten_outputs(model, out) -> list:
    import keras

    flat = keras.tree.flatten(out)
    if len(flat) != len(model.outputs):
        raise ValueError(f"model returned {len(flat)} outputs, its signature has {len(model.outputs)}")
    return flat


class JaxPredictor(Predictor):
    """JAX: one ``jax.jit`` of ``model.stateless_call`` with the weights passed as arguments."""

    def _compile(self):
        import jax
        import jax.numpy as jnp

        model = self.model
        # Own copies of the weights: Keras may donate or replace the model's buffers later.
        trainable = [jnp.array(v.value, copy=True) for v in model.trainable_variables]
        non_trainable = [jnp.array(v.value, copy=True) for v in model.non_trainable_variables]

        @jax.jit
        def forward(tv, ntv, x):
            out, _ = model.stateless_call(tv, ntv, x, training=False)
            return _flatten_outputs(model, out)

        return lambda x: forward(trainable, non_trainable, x)


class EagerPredictor(Predictor):
    """Any other backend: ``model(x, training=False)``, still bucketed so graph caches are reused."""

    def _compile(self):
        model = self.model
        return lambda x: _flatten_outputs(model, model(x, training=False))


#: Predictor classes by Keras backend name; ``default`` serves any backend not listed.
predictors: Registry[type[Predictor]] = Registry("predictor backend")


def make_predictor(model, max_batch_size: int = 32) -> Predictor:
    """The compiled predictor for ``model`` under the active Keras backend."""
    import keras

    backend = keras.backend.backend()
    cls = predictors.get(backend if backend in predictors else "default")
    return cls(model, served_signature(model), max_batch_size)


predictors.register("jax", JaxPredictor)
predictors.register("default", EagerPredictor)
