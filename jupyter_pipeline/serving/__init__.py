"""Serving registered models (Keras, scikit-learn, XGBoost, LightGBM, ONNX, PyTorch) over REST
(Open Inference Protocol v2 with binary tensors, TF Serving / KServe v1) and gRPC
(the OIP's ``inference.GRPCInferenceService``).

Modules: :mod:`.app` (settings, the server's parts and lifecycle), :mod:`.routes` (REST),
:mod:`.grpc_service` (gRPC), :mod:`.inference` (the one request-to-response path, statistics),
:mod:`.http` (the listener and its lossless drain), :mod:`.process` (foreground run with SIGTERM
drain, or a thread), :mod:`.repository` (loaded versions, hot reload, the ``production``
alias), :mod:`.runtimes` (one runtime per model framework), :mod:`.predictor` (Keras's compiled
call path), :mod:`.batcher` (adaptive batching), :mod:`.cache` (prediction cache),
:mod:`.protocol` (what the codecs share), :mod:`.oip` and :mod:`.tfserving` (REST codecs),
:mod:`.metrics` (Prometheus), :mod:`.errors`. Importing this package does not import Keras or grpc.
"""

from .app import ModelServer, ServerConfig
from .process import ServerThread, serve

__all__ = ["ModelServer", "ServerConfig", "ServerThread", "serve"]
