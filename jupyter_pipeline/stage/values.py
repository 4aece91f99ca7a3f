"""Value savers: how a variable crosses from one stage to the next through the store.

Savers are tried in registry order; the first whose ``matches`` accepts the value writes it.
Type checks go by module name first so that checking a value never imports Keras or pandas.
Everything no typed saver takes is pickled with cloudpickle (:mod:`.pickling`), which writes
functions, lambdas, closures and classes defined in the notebook (module ``__main__``) by value,
together with the globals they read, so a later stage's kernel does not need their definitions.
Framework savers (Keras, XGBoost) are in :mod:`.frameworks`.

Each saved value's index entry records its saver, type, the cell that assigned it and the version of
the library its type comes from, so a value that fails to load says why (:func:`load_failure_cause`).
"""

from __future__ import annotations

import importlib
import inspect
import io
import json
import pickle
import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..exceptions import PipelineError, VariableNotSavable
from ..registry import Registry
from .frameworks import is_dmatrix, is_keras, load_dmatrix, load_keras, save_dmatrix, save_keras
from .pickling import load_pickle, remember_setup, save_pickle

__all__ = ["Saver", "savers", "save_value", "load_value", "load_failure_cause", "remember_setup", "saver_for",
           "type_name", "unsavable_kind"]


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
    if cell:
        entry["cell"] = cell
    library = _library(value)
    if library:
        entry["library"] = library
    try:
        entry["length"] = len(value)  # lets a downstream `map:` stage know its item count
    except Exception:
        pass
    return entry


def load_value(store, prefix: str, entry: dict):
    """Read the value an index entry of :func:`save_value` describes."""
    saver = savers.get(entry["saver"])
    with store.reading(f"{prefix}/{entry['file']}") as path:
        return saver.load(path)


def _library(value) -> dict | None:
    """``{"name", "version"}`` of the package the value's type comes from (its loader needs the same)."""
    top = type(value).__module__.split(".")[0]
    module = sys.modules.get(top)
    version = getattr(module, "__version__", None)
    return {"name": top, "version": str(version)} if isinstance(version, str) and top != "builtins" else None


_NO_MODULE = re.compile(r"No module named '([^']+)'")
_NO_ATTRIBUTE = re.compile(r"Can't get attribute '([^']+)' on <module '([^']+)'")
_KERAS_UNKNOWN = re.compile(r"Could not locate (class|function) '([^']+)'")


def load_failure_cause(exc: BaseException, entry: dict) -> str:
    """The likely reason a value described by ``entry`` failed to load with ``exc``, and what to do."""
    text = str(exc)
    library = entry.get("library") or {}
    missing = _NO_MODULE.search(text)
    if isinstance(exc, ImportError) or missing:
        module = (getattr(exc, "name", None) or (missing.group(1) if missing else "")).split(".")[0] or "a module"
        return (f"the value needs '{module}', which this stage's Python cannot import; install it where the stage "
                "runs (on Kubeflow: the notebook's `packages` setting, or an image that has it)")
    version = _installed_version(library.get("name"))
    if library.get("version") and version and version != library["version"]:
        return (f"it was saved with {library['name']} {library['version']} and this stage has {library['name']} "
                f"{version}; use the same version in every stage")
    unknown = _KERAS_UNKNOWN.search(text)
    if unknown:
        return (f"the model uses the {unknown.group(1)} '{unknown.group(2)}', which this stage cannot import; define it "
                "in a `setup` cell (every stage runs those), or register it with "
                "`@keras.saving.register_keras_serializable()` in one")
    if "Lambda" in text and "safe_mode" in text:
        return ("the model holds a Lambda layer, whose code Keras refuses to load in safe mode; write the "
                "computation as a layer class (in a `setup` cell) instead")
    gone = _NO_ATTRIBUTE.search(text)
    if gone:
        return (f"it refers to '{gone.group(1)}' of module {gone.group(2)}, which this stage does not define; "
                "define it in a `setup` cell so every stage has it")
    return ("the receiving side could not rebuild it (a class it cannot import, or a library missing or at "
            "another version than where it was saved)")


def _installed_version(name: str | None) -> str | None:
    if not name:
        return None
    try:
        module = importlib.import_module(name)
    except Exception:  # any import failure means: not usable here
        return None
    version = getattr(module, "__version__", None)
    return version if isinstance(version, str) else None


savers.register("keras", Saver("keras", "keras", is_keras, save_keras, load_keras))
savers.register("dmatrix", Saver("dmatrix", "dmatrix", is_dmatrix, save_dmatrix, load_dmatrix))
savers.register("numpy", Saver("numpy", "npy", _is_numpy, _save_numpy, _load_numpy))
savers.register("parquet", Saver("parquet", "parquet", _is_dataframe_for_parquet, _save_parquet, _load_parquet))
savers.register("module", Saver("module", "module.json", _is_importable_module, _save_module, _load_module))
savers.register("pickle", Saver("pickle", "pkl", lambda v: True, save_pickle, load_pickle))
