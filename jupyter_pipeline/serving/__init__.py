"""Serving registered Keras models over REST (Open Inference Protocol v2 and TF Serving v1).

Modules: :mod:`.app` (routes, server), :mod:`.http` (the listener and its lossless drain),
:mod:`.process` (foreground run with SIGTERM drain, or a thread), :mod:`.repository` (loaded versions, hot reload), :mod:`.predictor` (compiled call path),
:mod:`.batcher` (adaptive batching), :mod:`.cache` (prediction cache), :mod:`.protocol` (codecs),
:mod:`.metrics` (Prometheus), :mod:`.errors`. Importing this package does not import Keras.
"""

from .app import ModelServer, ServerConfig
from .process import ServerThread, serve

__all__ = ["ModelServer", "ServerConfig", "ServerThread", "serve"]
