"""jupyter-pipeline: tag notebook cells as stages and run them as a Kubeflow pipeline.

Public API (imported lazily so that ``jupyter-pipeline --help`` and stage kernels start fast)::

    import jupyter_pipeline as jp
    pipeline = jp.load("digits.ipynb")      # parse + validate
    record = pipeline_run = jp.run(pipeline, parameters={"epochs": 3})
    jp.log_metric("accuracy", 0.97)         # inside a stage
    jp.distributed().initialize_keras()     # inside a workers:N stage: rank, world size, Keras DataParallel
    jp.log_model(model, "digits")           # register a Keras, scikit-learn, XGBoost, LightGBM, PyTorch or ONNX model
    jp.promote_model("digits")              # point its `production` alias (what the server answers with) at it
    model = jp.load_model("digits")         # latest version, read by its framework's safe loader
"""

from __future__ import annotations

from importlib import import_module

try:  # the version lives in package.json; the installed distribution carries it
    from importlib.metadata import PackageNotFoundError, version as _version

    __version__ = _version("jupyter-pipeline")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+source"

_LAZY = {
    "load": ("jupyter_pipeline.notebook.parse", "load"),
    "from_notebook": ("jupyter_pipeline.notebook.parse", "from_notebook"),
    "run": ("jupyter_pipeline.local.runner", "run_pipeline"),
    "log_metric": ("jupyter_pipeline.stage.context", "log_metric"),
    "distributed": ("jupyter_pipeline.stage.replica", "distributed"),
    "log_model": ("jupyter_pipeline.store.models", "log_model"),
    "load_model": ("jupyter_pipeline.store.models", "load_model"),
    "promote_model": ("jupyter_pipeline.store.models", "promote_model"),
    "list_models": ("jupyter_pipeline.store.models", "list_models"),
    "open_store": ("jupyter_pipeline.store.base", "open_store"),
    "Pipeline": ("jupyter_pipeline.notebook.pipeline", "Pipeline"),
    "Stage": ("jupyter_pipeline.notebook.pipeline", "Stage"),
    "PipelineError": ("jupyter_pipeline.exceptions", "PipelineError"),
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'jupyter_pipeline' has no attribute {name!r}") from None
    value = getattr(import_module(module), attr)
    globals()[name] = value
    return value


def load_ipython_extension(ipython):
    """``%load_ext jupyter_pipeline``: the ``%%stage`` and ``%pipeline`` magics."""
    from .magics import register

    register(ipython)


def _jupyter_server_extension_points():
    return [{"module": "jupyter_pipeline.server"}]


def _jupyter_labextension_paths():
    return [{"src": "labextension", "dest": "jupyter-pipeline"}]
