"""The model registry: ``models/<name>/<version>/model.keras`` + ``meta.json`` in the store.

Versions are increasing integers claimed with an exclusive create of ``meta.json`` (local files:
``O_EXCL``; S3: a conditional put), so concurrent writers never share a version.
"""

from __future__ import annotations

import platform
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..stage import context
from ..exceptions import ModelNotFound, PipelineError
from .records import now_iso
from ..stage.replica import saving_alone
from .base import Store, open_store

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise PipelineError(
            f"Model name {name!r} is not valid: use lowercase letters, digits, '-', '_' or '.', "
            "starting with a letter or digit (at most 63 characters)."
        )


#: Where the registry keeps every model, one folder per name, one per version inside it.
MODELS_PREFIX = "models/"


def model_prefix(name: str, version: int | None = None) -> str:
    return f"{MODELS_PREFIX}{name}/" if version is None else f"{MODELS_PREFIX}{name}/{version}/"


def list_versions(store: Store, name: str) -> list[int]:
    """Registered versions of ``name``, ascending."""
    versions = []
    for key in store.list(model_prefix(name)):
        part = key.rstrip("/").rsplit("/", 1)[-1]
        if part.isdigit() and store.exists(f"{model_prefix(name, int(part))}meta.json"):
            versions.append(int(part))
    return sorted(versions)


def list_models(store: Store | str | None = None) -> dict[str, list[dict]]:
    """Every registered model with the metadata of each version."""
    store = open_store(store or context.default_store_url())
    out = {}
    for key in store.list(MODELS_PREFIX):
        if not key.endswith("/"):
            continue
        name = key.rstrip("/").rsplit("/", 1)[-1]
        versions = [get_meta(store, name, v) for v in list_versions(store, name)]
        if versions:
            out[name] = versions
    return out


def get_meta(store: Store, name: str, version: int) -> dict:
    return store.get_json(f"{model_prefix(name, version)}meta.json")


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


def _framework_versions() -> dict:
    import keras  # already imported by the caller's model

    out = {"python": platform.python_version(), "keras": keras.__version__}
    try:
        out["backend"] = keras.backend.backend()
    except Exception:  # noqa: BLE001 - metadata only
        pass
    for mod in ("jax", "tensorflow", "torch", "numpy"):
        if mod in sys.modules:
            out[mod] = getattr(sys.modules[mod], "__version__", "?")
    return out


def log_model(model, name: str, store: Store | str | None = None, metadata: dict | None = None) -> int | None:
    """Register a Keras model under ``name``; return its new version number.

    Inside a pipeline stage the model goes to the run's store with the run id, stage and run
    metrics in its ``meta.json``; outside a run it goes to the default store.

    Example::

        from jupyter_pipeline import log_model
        version = log_model(model, "digits")
    """
    _check_name(name)
    ctx = context.current()
    if ctx is not None and ctx.rank:  # a workers: stage registers rank 0's model, once
        print(f"log_model: replica {ctx.rank} leaves registering '{name}' to rank 0")
        return None
    store = open_store(store or context.default_store_url())
    meta: dict[str, Any] = {
        "name": name,
        "format": "keras",
        "signature": signature(model),
        "framework": _framework_versions(),
        "run_id": ctx.run_id if ctx else None,
        "stage": ctx.stage if ctx else None,
        "metrics": context.run_metrics(),
        "created_at": now_iso(),
        **(metadata or {}),
    }
    # Claim a version by exclusive create of a marker, upload the model, publish meta.json last:
    # a version is visible (listed, served) only once meta.json exists, and two writers racing
    # for the same number see one of the creates fail and move on to the next.
    claimed = [int(k.rstrip("/").rsplit("/", 1)[-1]) for k in store.list(model_prefix(name))
               if k.endswith("/") and k.rstrip("/").rsplit("/", 1)[-1].isdigit()]
    version = max(claimed, default=0) + 1
    with tempfile.TemporaryDirectory(prefix="jp-model-") as tmp:
        path = Path(tmp) / "model.keras"
        with saving_alone():
            model.save(path)
        while not store.create_exclusive(f"{model_prefix(name, version)}.claim", now_iso().encode()):
            version += 1
        meta["version"] = version
        store.put_file(f"{model_prefix(name, version)}model.keras", path)
    store.put_json(f"{model_prefix(name, version)}meta.json", meta)
    if ctx is not None:  # the stage's own list: the KFP UI shows it as the stage's Model artifact
        listed_key = ctx.key("models.json")
        listed = ctx.store.get_json(listed_key) if ctx.store.exists(listed_key) else []
        ctx.store.put_json(listed_key, listed + [{"name": name, "version": version,
                                                  "uri": store.uri(model_prefix(name, version))}])
    if ctx is None:
        print(f"registered model {name} version {version} in {store.uri(model_prefix(name, version))}")
    return version


def aliases(store: Store, name: str) -> dict[str, int]:
    """Named pointers to versions of ``name`` (``{"production": 3}``), set by :func:`promote`."""
    key = f"{model_prefix(name)}aliases.json"
    return store.get_json(key) if store.exists(key) else {}


def promote(name: str, version: int | str, store: Store | str | None = None, alias: str = "production") -> dict:
    """Point ``alias`` of model ``name`` at ``version``; ``load_model(name, alias)`` then loads it."""
    store = open_store(store or context.default_store_url())
    v = resolve_version(store, name, version)
    if not re.match(r"^[a-z][a-z0-9_-]{0,39}$", alias) or alias == "latest":
        raise PipelineError(f"Alias {alias!r} is not valid: lowercase letters, digits, '-' or '_', not 'latest'.")
    current = aliases(store, name)
    current[alias] = v
    store.put_json(f"{model_prefix(name)}aliases.json", current)
    return current


def resolve_version(store: Store, name: str, version: int | str | None = None) -> int:
    """A version number from a number, ``latest`` (default) or an alias set by :func:`promote`."""
    versions = list_versions(store, name)
    if not versions:
        raise ModelNotFound(f"No model named '{name}' in store {store.url}.")
    if version in (None, "latest"):
        return versions[-1]
    if isinstance(version, str) and not version.isdigit():
        named = aliases(store, name)
        if version not in named:
            raise ModelNotFound(f"Model '{name}' has no alias '{version}'; aliases: {sorted(named) or 'none'}.")
        version = named[version]
    try:
        v = int(version)
    except (TypeError, ValueError):
        raise ModelNotFound(f"Model version must be a number or 'latest', got {version!r}.") from None
    if v not in versions:
        raise ModelNotFound(f"Model '{name}' has no version {v} in store {store.url}; versions: {versions}.")
    return v


def load_model(name: str, version: int | str | None = None, store: Store | str | None = None):
    """Load a registered Keras model (latest version by default) with Keras safe mode on."""
    from ..startup import default_keras_backend

    default_keras_backend()
    import keras

    store = open_store(store or context.default_store_url())
    v = resolve_version(store, name, version)
    with store.reading(f"{model_prefix(name, v)}model.keras") as path:
        if path.suffix != ".keras":
            raise PipelineError(f"Model file for {name} v{v} is not a .keras file.")
        return keras.saving.load_model(path, safe_mode=True)
