"""Start-up time of our own processes (the CLI, each stage's runner process).

``jsonschema`` (imported by nbformat) optionally imports ``rfc3987_syntax``, which compiles a
grammar at import time: 1.5–4 s on this project's 2-core machines, paid by every stage. It only
validates the ``iri`` string format, which notebook schemas never use, so our processes skip it.
Library imports (a Jupyter server loading the extension) are left untouched.
"""

from __future__ import annotations

import sys

SLOW_OPTIONAL_MODULES = ("rfc3987_syntax",)


def skip_slow_optional_imports() -> None:
    for name in SLOW_OPTIONAL_MODULES:
        # None in sys.modules makes `import name` raise ImportError, which jsonschema tolerates.
        sys.modules.setdefault(name, None)


def default_keras_backend() -> None:
    """Use JAX for Keras unless the user chose a usable backend (environment or ``keras.json``).

    This package installs JAX, not TensorFlow. Keras defaults to TensorFlow and writes that
    default into ``~/.keras/keras.json`` on first import, so without this a plain ``import keras``
    in a stage or in ``load_model`` fails on a fresh install.
    """
    import importlib.util
    import json
    import os

    if "KERAS_BACKEND" in os.environ or "keras" in sys.modules:
        return
    config = os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")), "keras.json")
    try:
        with open(config) as f:
            chosen = json.load(f).get("backend")
    except (OSError, ValueError):
        chosen = None
    if chosen and chosen != "tensorflow":
        return  # the user picked another backend on purpose
    if importlib.util.find_spec("tensorflow") is None:
        os.environ["KERAS_BACKEND"] = "jax"
