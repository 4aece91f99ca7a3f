"""Keras models the serving tests register and serve, and inputs for them.

Importing this module picks JAX as Keras's backend (unless one is set) and skips the importing
test module where Keras is not installed.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")


def dense(seed: int = 0, hidden: int = 16):
    """The digits model: 64 pixels in, 10 class probabilities out."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input(shape=(64,), name="pixels"),
                             keras.layers.Dense(hidden, activation="relu"),
                             keras.layers.Dense(10, activation="softmax", name="probs")])


def two_headed():
    """Two named inputs (float ``a``, int ``b``) and two named outputs (``score``, ``classes``)."""
    keras.utils.set_random_seed(3)
    a = keras.Input(shape=(3,), name="a")
    b = keras.Input(shape=(2,), name="b", dtype="int32")
    h = keras.layers.Concatenate()([a, keras.layers.Dense(2)(keras.ops.cast(b, "float32"))])
    return keras.Model([a, b], [keras.layers.Dense(1, name="score")(h),
                                keras.layers.Dense(4, activation="softmax", name="classes")(h)])


def expected(model, x):
    """The model's own outputs for ``x``, as a list of arrays in output order."""
    return [np.asarray(o) for o in keras.tree.flatten(model(x, training=False))]


def rows(n, seed=0):
    """``n`` rows of the digits model's input."""
    return np.random.default_rng(seed).random((n, 64), dtype=np.float32)
