"""The model registry: ``models/<name>/<version>/<model file>`` + ``meta.json`` in the store.

Each framework (:mod:`jupyter_pipeline.frameworks`) writes its own safe file (``model.keras``,
``model.skops``, ``model.json``, ``model.txt``, ``model.onnx``, ``model.pt2``); ``meta.json`` names
the ``format`` and ``file``. Versions are increasing integers claimed with an exclusive create of
a marker (local files: ``O_EXCL``; S3: see ``S3Store.create_exclusive``), so concurrent writers
never share a version. Aliases (``aliases.json``: ``{"production": 3}``) point at versions;
the model server answers unnamed requests with the ``production`` one.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

from ..exceptions import ModelNotFound, PipelineError
from ..stage import context
from .base import Store, open_store
from .records import now_iso

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
ALIAS_RE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
#: The alias ``promote_model`` sets by default and the model server follows.
PRODUCTION = "production"


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
    """Every registered model with the metadata of each version (``aliases`` lists the names pointing at it)."""
    store = open_store(store or context.default_store_url())
    out = {}
    for key in store.list(MODELS_PREFIX):
        if not key.endswith("/"):
            continue
        name = key.rstrip("/").rsplit("/", 1)[-1]
        named = aliases(store, name)
        versions = [{**get_meta(store, name, v), "aliases": sorted(a for a, n in named.items() if n == v)}
                    for v in list_versions(store, name)]
        if versions:
            out[name] = versions
    return out


def get_meta(store: Store, name: str, version: int) -> dict:
    return store.get_json(f"{model_prefix(name, version)}meta.json")


def signature(model) -> dict:
    """Input/output names, shapes and dtypes of a built Keras model."""
    from ..frameworks.keras import signature as keras_signature

    return keras_signature(model)


def _note_in_stage(entry: dict) -> None:
    """Add ``entry`` to the stage's ``models.json``: its record lists it, the KFP UI shows it."""
    ctx = context.current()
    if ctx is None:
        return
    key = ctx.key("models.json")
    listed = ctx.store.get_json(key) if ctx.store.exists(key) else []
    ctx.store.put_json(key, listed + [entry])


def log_model(model, name: str, store: Store | str | None = None, metadata: dict | None = None, *,
              example=None) -> int | None:
    """Register ``model`` under ``name``; return its new version number.

    The framework is found from the model's type: Keras, scikit-learn (estimators and pipelines),
    XGBoost and LightGBM (boosters and their estimators), PyTorch (``nn.Module``; needs
    ``example``, an input of a few rows) or ONNX (``ModelProto``). Each is written in its own safe
    format with its signature in ``meta.json``; ``example`` also gives tabular models their input
    dtype. Inside a pipeline stage the model goes to the run's store with the run id, stage and
    run metrics in its ``meta.json``; outside a run it goes to the default store.

    Example::

        from jupyter_pipeline import log_model
        version = log_model(clf, "iris")
    """
    from ..frameworks import detect

    _check_name(name)
    ctx = context.current()
    if ctx is not None and ctx.rank:  # a workers: stage registers rank 0's model, once
        print(f"log_model: replica {ctx.rank} leaves registering '{name}' to rank 0")
        return None
    framework = detect(model)
    store = open_store(store or context.default_store_url())
    with tempfile.TemporaryDirectory(prefix="jp-model-") as tmp:
        saved = framework.save(model, Path(tmp) / framework.filename, example=example)
        filename = saved.pop("file", framework.filename)
        meta: dict[str, Any] = {
            "name": name,
            "format": framework.name,
            "file": filename,
            **saved,
            "framework": framework.versions(),
            "run_id": ctx.run_id if ctx else None,
            "stage": ctx.stage if ctx else None,
            "metrics": context.run_metrics(),
            "created_at": now_iso(),
            **(metadata or {}),
        }
        # Claim a version by exclusive create of a marker, upload the model, publish meta.json
        # last: a version is visible (listed, served) only once meta.json exists, and two writers
        # racing for the same number see one of the creates fail and move on to the next.
        claimed = [int(k.rstrip("/").rsplit("/", 1)[-1]) for k in store.list(model_prefix(name))
                   if k.endswith("/") and k.rstrip("/").rsplit("/", 1)[-1].isdigit()]
        version = max(claimed, default=0) + 1
        while not store.create_exclusive(f"{model_prefix(name, version)}.claim", now_iso().encode()):
            version += 1
        meta["version"] = version
        store.put_file(f"{model_prefix(name, version)}{filename}", Path(tmp) / filename)
    store.put_json(f"{model_prefix(name, version)}meta.json", meta)
    _note_in_stage({"name": name, "version": version, "format": framework.name,
                    "uri": store.uri(model_prefix(name, version))})
    if ctx is None:
        print(f"registered model {name} version {version} ({framework.name}) in "
              f"{store.uri(model_prefix(name, version))}")
    return version


def aliases(store: Store, name: str) -> dict[str, int]:
    """Named pointers to versions of ``name`` (``{"production": 3}``), set by :func:`promote`."""
    key = f"{model_prefix(name)}aliases.json"
    return store.get_json(key) if store.exists(key) else {}


def promote(name: str, version: int | str, store: Store | str | None = None, alias: str = PRODUCTION) -> dict:
    """Point ``alias`` of model ``name`` at ``version``; ``load_model(name, alias)`` then loads it."""
    store = open_store(store or context.default_store_url())
    v = resolve_version(store, name, version)
    if not ALIAS_RE.match(alias) or alias == "latest":
        raise PipelineError(f"Alias {alias!r} is not valid: lowercase letters, digits, '-' or '_', not 'latest'.")
    current = aliases(store, name)
    current[alias] = v
    store.put_json(f"{model_prefix(name)}aliases.json", current)
    return current


def promote_model(name: str, version: int | str | None = None, alias: str = PRODUCTION,
                  store: Store | str | None = None) -> int:
    """Point ``alias`` (default ``production``) of model ``name`` at ``version``; return that version.

    Without ``version``: inside a stage, the version this run registered last (else the latest).
    The model server answers ``/v2/models/NAME`` with the ``production`` version and follows it
    when it moves; the promoting stage's record lists the promotion.

    Example::

        from jupyter_pipeline import log_model, promote_model
        if accuracy >= min_accuracy:
            promote_model("iris", log_model(clf, "iris"))
    """
    _check_name(name)
    ctx = context.current()
    if ctx is not None and ctx.rank:
        print(f"promote_model: replica {ctx.rank} leaves promoting '{name}' to rank 0")
        return None
    store = open_store(store or context.default_store_url())
    if version is None and ctx is not None:
        version = _registered_by_run(store, name, ctx.run_id)
    current = promote(name, "latest" if version is None else version, store, alias)
    v = current[alias]
    _note_in_stage({"name": name, "version": v, "alias": alias, "uri": store.uri(model_prefix(name, v))})
    print(f"promoted model {name} version {v} to {alias}")
    return v


def _registered_by_run(store: Store, name: str, run_id: str) -> int | None:
    for v in reversed(list_versions(store, name)):
        if get_meta(store, name, v).get("run_id") == run_id:
            return v
    return None


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


def load_meta_and_model(store: Store, name: str, version: int | str | None = None, **options) -> tuple[dict, Any]:
    """``(meta, model object)`` of a registered version, read by its framework's safe loader."""
    from ..frameworks import ModelFormatError, frameworks

    v = resolve_version(store, name, version)
    meta = get_meta(store, name, v)
    fmt = meta.get("format", "keras")
    if fmt not in frameworks:
        raise ModelFormatError(f"Model {name} v{v} is in format {fmt!r}, which this jupyter-pipeline does not "
                               f"know ({', '.join(frameworks)}); upgrade jupyter-pipeline.")
    framework = frameworks.get(fmt)
    filename = meta.get("file", framework.filename)
    if "/" in filename or filename.startswith("."):
        raise ModelFormatError(f"Model {name} v{v}: meta.json names the file {filename!r}, outside its folder.")
    with store.reading(f"{model_prefix(name, v)}{filename}") as path:
        return meta, framework.load(path, meta, **options)


def load_model(name: str, version: int | str | None = None, store: Store | str | None = None, **options):
    """Load a registered model (latest version by default; a number or an alias such as ``production``).

    Each framework reads its own file without running code from it: Keras in safe mode,
    scikit-learn through skops (types not known to be safe are refused; ``trusted=[...]`` names
    the ones you trust), XGBoost, LightGBM and ONNX from their data formats, PyTorch from the
    exported graph. A file holding a pickle stream is refused.
    """
    store = open_store(store or context.default_store_url())
    return load_meta_and_model(store, name, version, **options)[1]
