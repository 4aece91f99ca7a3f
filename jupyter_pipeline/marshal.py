"""Value savers: how a variable crosses from one stage to the next through the store.

Savers are tried in registry order; the first whose ``matches`` accepts the value writes it.
Type checks go by module name first so that checking a value never imports Keras or pandas.
"""

from __future__ import annotations

import io
import pickle
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .exceptions import PipelineError, VariableNotSavable
from .registry import Registry


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
    from .startup import default_keras_backend

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
        import pyarrow  # noqa: F401
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


# -- anything else ----------------------------------------------------------------------------------
_NEVER_PICKLE = (types.GeneratorType, types.ModuleType, io.IOBase, types.CoroutineType)


def _save_pickle(value, path: Path) -> None:
    if isinstance(value, _NEVER_PICKLE):
        raise TypeError(f"{type(value).__name__} objects hold live state that cannot be copied")
    with open(path, "wb") as f:
        pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)


def _load_pickle(path: Path):
    with open(path, "rb") as f:
        return pickle.load(f)


def saver_for(value) -> Saver:
    for saver in savers.values():
        if saver.matches(value):
            return saver
    raise PipelineError(f"No saver accepts a value of type {type(value).__name__}.")  # pickle accepts all


def type_name(value) -> str:
    t = type(value)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def save_value(name: str, value, store, prefix: str, stage: str | None = None) -> dict:
    """Write ``value`` under ``prefix/<name>.<ext>``; return its index entry."""
    saver = saver_for(value)
    key = f"{prefix}/{name}.{saver.ext}"
    try:
        with store.writing(key) as path:
            saver.save(value, path)
    except (TypeError, AttributeError, pickle.PicklingError, NotImplementedError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise VariableNotSavable(name, stage, type_name(value), reason) from None
    entry = {"file": f"{name}.{saver.ext}", "saver": saver.name, "type": type_name(value)}
    try:
        entry["length"] = len(value)  # lets a downstream `map:` stage know its item count
    except Exception:  # noqa: BLE001 - no length (or a broken __len__): not mappable, nothing else
        pass
    return entry


def load_value(store, prefix: str, entry: dict):
    saver = savers.get(entry["saver"])
    with store.reading(f"{prefix}/{entry['file']}") as path:
        return saver.load(path)


savers.register("keras", Saver("keras", "keras", _is_keras, _save_keras, _load_keras))
savers.register("numpy", Saver("numpy", "npy", _is_numpy, _save_numpy, _load_numpy))
savers.register("parquet", Saver("parquet", "parquet", _is_dataframe_for_parquet, _save_parquet, _load_parquet))
savers.register("pickle", Saver("pickle", "pkl", lambda v: True, _save_pickle, _load_pickle))
