"""Start-up time of our own processes (the CLI, each stage's runner process).

``jsonschema`` (imported by nbformat) optionally imports ``rfc3987_syntax``, which compiles a
grammar at import time: 1.5–4 s on this project's 2-core machines, paid by every stage. It only
validates the ``iri`` string format, which notebook schemas never use, so our processes skip it.
Library imports (a Jupyter server loading the extension) are left untouched.
"""

from __future__ import annotations

import sys

SLOW_OPTIONAL_MODULES = ("rfc3987_syntax",)


#: Storage back ends papermill imports when they are installed, for notebook paths our stage
#: workers never hand it (they execute local copies): HDFS through pyarrow (which also imports
#: NumPy), S3 through boto3, GCS, Azure and GitHub. Skipping them saves a stage worker about
#: 0.35 CPU-seconds of imports.
PAPERMILL_BACKENDS = ("pyarrow", "boto3", "botocore", "gcsfs", "github", "azure")


def skip_slow_optional_imports() -> None:
    for name in SLOW_OPTIONAL_MODULES:
        # None in sys.modules makes `import name` raise ImportError, which jsonschema tolerates.
        sys.modules.setdefault(name, None)


def skip_papermill_backends() -> None:
    """In a stage worker: papermill finds none of its optional storage back ends (it tolerates that)."""
    for name in PAPERMILL_BACKENDS:
        sys.modules.setdefault(name, None)


def unskip() -> None:
    """Undo both skips (a kernel forked from a process that made them imports as usual)."""
    for name in (*SLOW_OPTIONAL_MODULES, *PAPERMILL_BACKENDS):
        if name in sys.modules and sys.modules[name] is None:
            del sys.modules[name]


def default_keras_backend() -> str | None:
    """Use JAX for Keras unless the user chose a usable backend (environment or ``keras.json``).

    This package installs JAX, not TensorFlow. Keras defaults to TensorFlow and writes that
    default into ``~/.keras/keras.json`` on first import, so without this a plain ``import keras``
    fails on a fresh install. Called by the CLI and each stage kernel, and by the Jupyter server
    extension at load so that the kernels the server starts inherit the variable. Returns the
    backend it set, or None when it left the choice alone.
    """
    import importlib.util
    import json
    import os

    if "KERAS_BACKEND" in os.environ:
        return None
    config = os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")), "keras.json")
    try:
        with open(config) as f:
            chosen = json.load(f).get("backend")
    except (OSError, ValueError, AttributeError):
        chosen = None
    if chosen and chosen != "tensorflow":
        return None  # the user picked another backend on purpose
    if importlib.util.find_spec("tensorflow") is not None:
        return None
    os.environ["KERAS_BACKEND"] = "jax"
    return "jax"
