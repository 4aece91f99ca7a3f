"""The catch-all value saver's pickler: what the notebook defined travels by value.

cloudpickle writes what lives in ``__main__`` (the kernel's namespace: notebook functions, lambdas,
closures, classes) by value with the globals they read, and importable code by reference. On top
of it, this pickler

- writes functions and classes the stage's ``setup`` cells defined by reference (``__main__.name``):
  every stage runs the same setup, so a consumer's instances belong to its own setup classes;
- writes ``functools.lru_cache``/``functools.cache`` wrappers of notebook functions by value (the
  wrapper is a C object that pickle would name by reference, which a later kernel cannot resolve):
  the wrapped function travels, and is wrapped again, with the same cache parameters and an empty
  cache, when loaded;
- writes a Keras model inside a container (a dict of models) as the Keras saver writes it, with the
  notebook's custom objects (:mod:`.frameworks`).

Loading is plain :func:`pickle.load`, which needs cloudpickle importable in the consumer.
"""

from __future__ import annotations

import functools
import pickle
import sys
import types
from pathlib import Path

import cloudpickle

#: Functions and classes the stage's setup cells defined (id -> object), pickled by reference.
_setup_objects: dict[int, object] = {}
#: What notebook code defines that pickle would otherwise write by reference.
_DEFINED = (type, types.FunctionType, functools._lru_cache_wrapper)


def remember_setup(namespace: dict) -> None:
    """Note the functions and classes (cached functions too) the setup cells just defined in ``namespace``."""
    _setup_objects.clear()
    for value in list(namespace.values()):
        if isinstance(value, _DEFINED) and getattr(value, "__module__", None) == "__main__":
            _setup_objects[id(value)] = value


def is_setup_object(value) -> bool:
    """Whether ``value`` is a function or class the setup cells defined (every stage has its own)."""
    return id(value) in _setup_objects


def _importable(obj) -> bool:
    """Whether pickle can find ``obj`` again by its module and qualified name in another process."""
    module_name = getattr(obj, "__module__", None)
    if not module_name or module_name == "__main__":
        return False
    found = sys.modules.get(module_name)
    for part in getattr(obj, "__qualname__", "<>").split("."):
        found = getattr(found, part, None)
    return found is obj


def rewrap_cached(func, parameters: dict):
    """A loaded ``functools.lru_cache`` wrapper: ``func`` cached with the parameters it had (empty cache)."""
    return functools.lru_cache(maxsize=parameters["maxsize"], typed=parameters["typed"])(func)


class Pickler(cloudpickle.Pickler):
    """cloudpickle's pickler with the two changes in the module docstring, and a faster type table."""

    def __init__(self, file):
        # The C pickler looks every object's type up in this table; cloudpickle's is a ChainMap,
        # Python code, which took most of the time for many small objects. The same table as a dict.
        self.dispatch_table = dict(cloudpickle.Pickler.dispatch_table)
        # A Keras model inside a container is written as the Keras saver writes it (with the notebook's
        # custom objects): Keras's own pickling would leave them out.
        keras = sys.modules.get("keras")
        self._keras_model = getattr(keras, "Model", None) if keras is not None else None
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)

    def reducer_override(self, obj):
        # Called for every object but a few builtins: hand all but classes and functions straight
        # back to the C pickler (cloudpickle would too, after more checks).
        if self._keras_model is not None and isinstance(obj, self._keras_model):
            from .frameworks import keras_bytes, keras_from_bytes

            return keras_from_bytes, (keras_bytes(obj),)
        if not isinstance(obj, _DEFINED) or id(obj) in _setup_objects:
            return NotImplemented  # a setup function or class: plain pickle, a global by reference
        if isinstance(obj, functools._lru_cache_wrapper):
            if _importable(obj):
                return NotImplemented
            # A recursive cached function reads itself as a global: pickle's memo resolves the cycle.
            return rewrap_cached, (obj.__wrapped__, obj.cache_parameters())
        return super().reducer_override(obj)


def dumps(value) -> bytes:
    """``value`` pickled by :class:`Pickler`."""
    import io

    buffer = io.BytesIO()
    Pickler(buffer).dump(value)
    return buffer.getvalue()


def save_pickle(value, path: Path) -> None:
    """The pickle saver's ``save``."""
    with open(path, "wb") as f:
        Pickler(f).dump(value)


def load_pickle(path: Path):
    """The pickle saver's ``load`` (cloudpickle writes standard pickles; its helpers are imported by name)."""
    with open(path, "rb") as f:
        return pickle.load(f)
