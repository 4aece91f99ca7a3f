"""Value savers: how a variable crosses from one stage to the next through the store.

Savers are tried in registry order; the first whose ``matches`` accepts the value writes it.
Type checks go by module name first so that checking a value never imports Keras or pandas.
Everything no typed saver takes is pickled with cloudpickle, which writes functions, lambdas,
closures and classes defined in the notebook (module ``__main__``) by value, together with the
globals they read, so a later stage's kernel does not need their definitions.
"""

from __future__ import annotations

import importlib
import inspect
import io
import json
import pickle
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cloudpickle

from ..exceptions import PipelineError, VariableNotSavable
from ..registry import Registry


@dataclass(frozen=True)
class Saver:
    """One way of writing values of some types to a file and reading them back."""

    name: str
    ext: str
    matches: Callable[[Any], bool]
    save: Callable[[Any, Path], None]
    load: Callable[[Path], Any]


savers: Registry[Saver] = Registry("saver")


def _module_of(value) -> str:
    return type(value).__module__.split(".")[0]


# -- Keras ------------------------------------------------------------------------------------------
def _is_keras(value) -> bool:
    if "keras" not in sys.modules:
        return False
    import keras

    return isinstance(value, keras.Model)


def _save_keras(value, path: Path) -> None:
    value.save(path)


def _load_keras(path: Path):
    from ..startup import default_keras_backend

    default_keras_backend()
    import keras

    # Our own file from an upstream stage of the same run: custom layers defined in the
    # notebook need unsafe deserialisation only if they use lambdas; stay safe by default.
    return keras.saving.load_model(path, safe_mode=True)


# -- NumPy ------------------------------------------------------------------------------------------
def _is_numpy(value) -> bool:
    if "numpy" not in sys.modules:
        return False
    import numpy as np

    return isinstance(value, np.ndarray) and value.dtype != object


def _save_numpy(value, path: Path) -> None:
    import numpy as np

    with open(path, "wb") as f:
        np.save(f, value, allow_pickle=False)


def _load_numpy(path: Path):
    import numpy as np

    return np.load(path, allow_pickle=False)


# -- pandas -----------------------------------------------------------------------------------------
def _has_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401 - only whether it imports
    except ImportError:
        return False
    return True


def _is_dataframe_for_parquet(value) -> bool:
    if _module_of(value) != "pandas":
        return False
    import pandas as pd

    if not isinstance(value, pd.DataFrame) or not _has_pyarrow():
        return False
    # Parquet needs string column names; other frames go to pickle, which keeps them exactly.
    return all(isinstance(c, str) for c in value.columns)


def _save_parquet(value, path: Path) -> None:
    value.to_parquet(path)


def _load_parquet(path: Path):
    import pandas as pd

    return pd.read_parquet(path)


# -- modules: travel as imports ----------------------------------------------------------------------
def _is_importable_module(value) -> bool:
    return (isinstance(value, types.ModuleType) and value.__name__ != "__main__"
            and getattr(value, "__spec__", None) is not None)


def _save_module(value, path: Path) -> None:
    path.write_text(json.dumps({"import": value.__name__}))


def _load_module(path: Path):
    return importlib.import_module(json.loads(path.read_text())["import"])


# -- anything else: pickle, written by cloudpickle -----------------------------------------------------
#: Functions and classes the stage's setup cells defined (id -> object). Every stage runs the same
#: setup, so these are pickled by reference (``__main__.name``): a consumer's instances then belong
#: to the consumer's own classes, and ``isinstance`` keeps working.
_setup_objects: dict[int, object] = {}


def remember_setup(namespace: dict) -> None:
    """Note the functions and classes the setup cells just defined in ``namespace``."""
    _setup_objects.clear()
    for value in list(namespace.values()):
        if isinstance(value, (type, types.FunctionType)) and getattr(value, "__module__", None) == "__main__":
            _setup_objects[id(value)] = value


class _Pickler(cloudpickle.Pickler):
    def __init__(self, file):
        # The C pickler looks every object's type up in this table; cloudpickle's is a ChainMap,
        # Python code, which took most of the time for many small objects. The same table as a dict.
        self.dispatch_table = dict(cloudpickle.Pickler.dispatch_table)
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)

    def reducer_override(self, obj):
        # Called for every object but a few builtins: hand all but classes and functions straight
        # back to the C pickler (cloudpickle would too, after more checks).
        if not isinstance(obj, (type, types.FunctionType)) or id(obj) in _setup_objects:
            return NotImplemented  # a setup function or class: plain pickle, a global by reference
        return super().reducer_override(obj)


def _save_pickle(value, path: Path) -> None:
    with open(path, "wb") as f:
        _Pickler(f).dump(value)


def _load_pickle(path: Path):
    # cloudpickle writes standard pickles (its helpers are imported by name while loading).
    with open(path, "rb") as f:
        return pickle.load(f)


# -- values that cannot travel ------------------------------------------------------------------------
def unsavable_kind(value) -> str | None:
    """What ``value`` is, if it is one of the kinds of live state no process can copy."""
    if isinstance(value, (types.GeneratorType, types.AsyncGeneratorType)):
        return "a generator"
    if isinstance(value, types.CoroutineType):
        return "a coroutine"
    if isinstance(value, io.IOBase) and not isinstance(value, (io.BytesIO, io.StringIO)):
        return "an open file"
    module, name = type(value).__module__.split(".")[0], type(value).__name__.lower()
    if module in ("_thread", "threading", "multiprocessing", "subprocess", "asyncio"):
        return "a running thread or process" if ("thread" in name or "popen" in name or "process" in name) else "a lock"
    if module in ("socket", "ssl", "sqlite3", "http", "select", "selectors"):
        return "a connection"
    return None


def _parts(value):
    """``(path suffix, part)`` for what ``value`` holds, to find the part that cannot travel."""
    if isinstance(value, dict):
        items = ((f"[{k!r}]", v) for k, v in value.items())
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = ((f"[{i}]", v) for i, v in enumerate(value))
    elif isinstance(value, types.FunctionType):
        try:
            found = inspect.getclosurevars(value)
        except (TypeError, ValueError):
            return
        items = [*((f" (reads global '{k}')", v) for k, v in found.globals.items()),
                 *((f" (reads '{k}' from its enclosing function)", v) for k, v in found.nonlocals.items())]
    elif hasattr(value, "__dict__") and not isinstance(value, (type, types.ModuleType)):
        items = ((f".{k}", v) for k, v in vars(value).items())
    else:
        return
    for n, item in enumerate(items):
        if n == 1000:
            return
        yield item


def _find_unsavable(value, path: str, depth: int = 4) -> tuple[str, str] | None:
    """``(path, kind)`` of the first part of ``value`` that is live state, searched depth first."""
    kind = unsavable_kind(value)
    if kind:
        return path, kind
    if depth:
        for suffix, part in _parts(value):
            found = _find_unsavable(part, path + suffix, depth - 1)
            if found:
                return found
    return None


def saver_for(value) -> Saver:
    for saver in savers.values():
        if saver.matches(value):
            return saver
    raise PipelineError(f"No saver accepts a value of type {type(value).__name__}.")  # pickle accepts all


def type_name(value) -> str:
    t = type(value)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def save_value(name: str, value, store, prefix: str, stage: str | None = None, cell: int | None = None) -> dict:
    """Write ``value`` under ``prefix/<name>.<ext>``; return its index entry.

    ``cell`` (1-based) is the source cell that last assigns ``name``, for the error message.
    """
    saver = saver_for(value)
    key = f"{prefix}/{name}.{saver.ext}"
    try:
        with store.writing(key) as path:
            saver.save(value, path)
    except (TypeError, AttributeError, pickle.PicklingError, NotImplementedError, ValueError, RecursionError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        found = _find_unsavable(value, name)
        raise VariableNotSavable(name, stage, type_name(value), reason, cell=cell,
                                 part=found[0] if found else None, kind=found[1] if found else None) from None
    entry = {"file": f"{name}.{saver.ext}", "saver": saver.name, "type": type_name(value)}
    try:
        entry["length"] = len(value)  # lets a downstream `map:` stage know its item count
    except Exception:
        pass
    return entry


def load_value(store, prefix: str, entry: dict):
    saver = savers.get(entry["saver"])
    with store.reading(f"{prefix}/{entry['file']}") as path:
        return saver.load(path)


savers.register("keras", Saver("keras", "keras", _is_keras, _save_keras, _load_keras))
savers.register("numpy", Saver("numpy", "npy", _is_numpy, _save_numpy, _load_numpy))
savers.register("parquet", Saver("parquet", "parquet", _is_dataframe_for_parquet, _save_parquet, _load_parquet))
savers.register("module", Saver("module", "module.json", _is_importable_module, _save_module, _load_module))
savers.register("pickle", Saver("pickle", "pkl", lambda v: True, _save_pickle, _load_pickle))
