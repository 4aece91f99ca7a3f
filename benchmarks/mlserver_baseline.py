"""MLServer 1.7.1 serving the same Keras model, as a baseline for ``bench_serving.py``.

MLServer has no Keras runtime, so it gets the custom runtime a user would write (``MLModel``
with ``NumpyCodec`` and ``model.predict``). It lives in a venv of its own (``venvs.py``);
``uvloop<0.22`` is pinned because MLServer 1.7.1 does not start with later ones.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import textwrap
from pathlib import Path

from venvs import baseline_python, installed_version

REQUIREMENTS = ["mlserver==1.7.1", "uvloop<0.22", "keras>=3.5", "jax"]

RUNTIME = textwrap.dedent('''
    import os
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras
    from mlserver import MLModel
    from mlserver.codecs import NumpyCodec
    from mlserver.types import InferenceRequest, InferenceResponse


    class KerasRuntime(MLModel):
        async def load(self) -> bool:
            self._model = keras.saving.load_model(self.settings.parameters.uri)
            return True

        async def predict(self, payload: InferenceRequest) -> InferenceResponse:
            x = NumpyCodec.decode_input(payload.inputs[0])
            y = self._model.predict(x, verbose=0)
            return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("probs", y)])
''')


def python() -> Path:
    """MLServer's interpreter (installed on first use; raises ``BaselineUnavailable`` with pip's words)."""
    return baseline_python("mlserver", REQUIREMENTS, "mlserver")


def version() -> str:
    return installed_version(python(), "mlserver")


def start(model_file: str, port: int, grpc_port: int, metrics_port: int, log: Path) -> subprocess.Popen:
    """``mlserver start`` on a folder holding the runtime, the settings and the model's settings."""
    folder = Path(tempfile.mkdtemp(prefix="jp-bench-mlserver-"))
    (folder / "runtime.py").write_text(RUNTIME)
    (folder / "settings.json").write_text(json.dumps({"http_port": port, "grpc_port": grpc_port,
                                                      "metrics_port": metrics_port, "host": "127.0.0.1"}))
    (folder / "model-settings.json").write_text(json.dumps({"name": "digits", "implementation": "runtime.KerasRuntime",
                                                            "parameters": {"uri": model_file}}))
    mlserver = python().parent / "mlserver"
    # Its own process group, so stopping it also stops the inference workers it forks.
    return subprocess.Popen([str(mlserver), "start", str(folder)], cwd=folder, stdout=subprocess.DEVNULL,
                            stderr=log.open("w"), start_new_session=True)
