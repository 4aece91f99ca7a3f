"""Model frameworks: how ``log_model`` writes a model, how ``load_model`` reads it back, how the
server calls it. One :class:`Framework` per library, in a module of its own:

:mod:`.keras` (``model.keras``, safe mode), :mod:`.sklearn` (estimators and pipelines as
``model.skops``, refusing types not known to be safe), :mod:`.xgboost` (``Booster`` and the
scikit-learn wrappers in XGBoost's own JSON model file), :mod:`.lightgbm` (``Booster`` and the
wrappers in LightGBM's model text file), :mod:`.onnx` (``ModelProto`` as ``model.onnx``, served by
onnxruntime) and :mod:`.torch` (``nn.Module`` as a ``torch.export`` program, or TorchScript, traced
on an example input). Common parts are here: the registry :data:`frameworks`, :func:`detect`
(by the model's type, without importing any framework), :func:`require` (a framework that is not
installed is a :class:`FrameworkMissing` naming the package and the extra), the pickle sniff every
loader runs first, and the signature helpers.

A signature (``meta.json``'s ``signature``) is ``{"inputs": [...], "outputs": [...]}`` of
``{"name", "shape", "dtype"}`` (``None`` a free dimension, NumPy dtype names, ``object`` for
strings), plus ``"classes"`` for classifiers, whose outputs are ``label`` and ``probabilities``.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..exceptions import PipelineError
from ..registry import Registry


class ModelFormatError(PipelineError):
    """Raised when a model cannot be written, or a model file is refused or unreadable."""


class FrameworkMissing(ModelFormatError):
    """Raised when a model's framework (or its safe file format's package) is not installed here."""

    http_status = 501


@dataclass(frozen=True)
class Runtime:
    """A loaded model as the server calls it: ``fn(inputs by name) -> outputs`` in ``signature``'s order."""

    signature: dict
    fn: Callable[[dict[str, np.ndarray]], list[np.ndarray]]


class Framework(ABC):
    """One model library: detect its models, write and read its file, serve it.

    Subclasses set the class attributes and implement :meth:`save`, :meth:`load` and
    :meth:`runtime`; :meth:`matches` looks at the modules of the model type's classes.
    """

    #: ``meta.json``'s ``format``, the registry key.
    name: str = ""
    #: The distribution to install, named in errors, and the extra that brings it.
    package: str = ""
    extra: str = ""
    #: Top-level module names of classes whose instances are this framework's models.
    modules: tuple[str, ...] = ()
    #: The file in the version's folder.
    filename: str = ""
    #: KServe's ``modelFormat`` name and the OIP ``platform`` of the served model.
    kserve_format: str = ""
    platform: str = ""

    def matches(self, model) -> bool:
        """Whether ``model`` is this framework's (by its type's modules; imports nothing)."""
        return bool(type_modules(model) & set(self.modules))

    @abstractmethod
    def save(self, model, path: Path, example=None) -> dict:
        """Write ``model`` to ``path``; return the meta.json entries (``signature`` at least)."""

    @abstractmethod
    def load(self, path: Path, meta: dict, **options):
        """The model object saved at ``path``, read without running code from the file."""

    @abstractmethod
    def runtime(self, model, meta: dict) -> Runtime:
        """How the server calls ``model`` (loaded by :meth:`load`)."""

    def versions(self) -> dict:
        """Library versions for ``meta.json``'s ``framework``."""
        mod = require(self.modules[0], self)
        return {self.modules[0]: getattr(mod, "__version__", "?")}


#: Frameworks by ``format`` name, tried in order by :func:`detect` (wrappers before what they wrap).
frameworks: Registry[Framework] = Registry("model format")


def type_modules(obj) -> set[str]:
    """Top-level modules of the classes ``obj``'s type derives from."""
    return {(getattr(c, "__module__", "") or "").split(".")[0] for c in type(obj).__mro__}


def detect(model) -> Framework:
    """The framework ``model`` belongs to, or a :class:`ModelFormatError` listing the supported ones."""
    for framework in frameworks.values():
        if framework.matches(model):
            return framework
    kinds = ", ".join(f.name for f in frameworks.values())
    raise ModelFormatError(f"log_model cannot register a {type(model).__module__}.{type(model).__qualname__}: "
                           f"it takes models of {kinds} (a scikit-learn Pipeline, an XGBoost or LightGBM "
                           "Booster or estimator, a torch nn.Module, an onnx ModelProto, a Keras model).")


def require(module: str, framework: Framework | str, purpose: str = ""):
    """``import module``, or a :class:`FrameworkMissing` naming what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        fw = framework if isinstance(framework, Framework) else frameworks.get(framework)
        package = fw.package if module == fw.modules[0] else module
        raise FrameworkMissing(
            f"{fw.name} models need the '{package}' package{purpose}, which is not installed here "
            f"({exc}): pip install '{package}' (or 'jupyter-pipeline[{fw.extra}]').") from None


#: How pickle streams start: PROTO opcode then protocol 2..5 (protocols 0 and 1 start with any opcode).
_PICKLE_HEADERS = tuple(bytes([0x80, p]) for p in range(2, 6))


def refuse_pickle(path: Path, what: str) -> None:
    """Refuse a model file that holds a pickle stream where its format has none."""
    with open(path, "rb") as f:
        head = f.read(2)
    if head in _PICKLE_HEADERS:
        raise ModelFormatError(f"{what}: the file {path.name} holds a pickle stream, not its format's data; "
                               "refusing to load it (unpickling can run any code). Register the model again "
                               "with log_model.")


# -- signatures ---------------------------------------------------------------------------------

def tensor(name: str, shape, dtype) -> dict:
    """One signature entry; ``dtype`` a NumPy dtype (strings become ``object``)."""
    dt = np.dtype(dtype)
    return {"name": name, "shape": [None if d is None or d < 0 else int(d) for d in shape],
            "dtype": "object" if dt.kind in "OSU" else dt.name}


def classes_of(estimator) -> list | None:
    """A classifier's class labels as JSON values (``None`` for other models)."""
    classes = getattr(estimator, "classes_", None)
    if classes is None:
        return None
    return [c.item() if hasattr(c, "item") else c for c in np.asarray(classes).tolist()]


def classifier_outputs(classes: list, prob_dtype="float64") -> list[dict]:
    """``label`` (one per row, of the classes' type) and ``probabilities`` (one column per class)."""
    label_dtype = np.asarray(classes).dtype
    return [tensor("label", [None], label_dtype), tensor("probabilities", [None, len(classes)], prob_dtype)]


def labels_array(values, classes: list) -> np.ndarray:
    """Predicted labels as the array the server sends (strings as an object array)."""
    arr = np.asarray(values)
    if arr.dtype.kind in "SU":
        return arr.astype(object)
    return arr.astype(np.asarray(classes).dtype, copy=False)


def example_array(example: Any, default_dtype="float64") -> np.ndarray | None:
    """``example`` (a NumPy array, a DataFrame, nested lists) as an array, or None."""
    if example is None:
        return None
    values = getattr(example, "to_numpy", None)
    arr = np.asarray(values() if callable(values) else example)
    return arr.astype(default_dtype) if arr.dtype.kind in "OU" else arr


def feature_input(n_features: int | None, example=None, default_dtype="float64") -> dict:
    """The one ``input`` tensor of a tabular model: rows of ``n_features`` values."""
    arr = example_array(example, default_dtype)
    dtype = arr.dtype if arr is not None and arr.dtype.kind in "fiub" else np.dtype(default_dtype)
    width = n_features if n_features is not None else (arr.shape[1] if arr is not None and arr.ndim == 2 else None)
    return tensor("input", [None, width], dtype)


def output_shape(predict, n_features: int | None, dtype="float64") -> list:
    """The shape of ``predict``'s answer to one row of zeros, batch dimension free (``[None]`` if unknown)."""
    if n_features is None:
        return [None]
    try:
        got = np.asarray(predict(np.zeros((1, n_features), dtype)))
    except Exception:
        return [None]
    return [None, *got.shape[1:]]


def _register_builtins() -> None:
    from . import keras, lightgbm, onnx, sklearn, torch, xgboost

    # Order matters: Keras models under the torch backend are torch modules, and XGBoost's and
    # LightGBM's estimators are scikit-learn estimators.
    for module in (keras, torch, xgboost, lightgbm, sklearn, onnx):
        fw = module.FRAMEWORK
        frameworks.register(fw.name, fw)


_register_builtins()
