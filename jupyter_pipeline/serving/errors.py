"""Errors the model server answers with, as part of the package's one exception hierarchy.

Each carries its HTTP status; :mod:`.routes` maps every :class:`~jupyter_pipeline.exceptions.PipelineError`
to ``{"error": message, "message": message}`` in one place (``error`` is what the Open Inference
Protocol and TF Serving clients read, ``message`` is the house style of the other REST fronts).
"""

from __future__ import annotations

from ..exceptions import ModelNotFound, PipelineError

__all__ = ["InvalidRequest", "ModelNotFound", "ModelNotReady", "PayloadTooLarge", "PredictionFailed"]


class InvalidRequest(PipelineError):
    """Raised when an inference request is malformed or does not fit the model's signature."""

    http_status = 400


class PayloadTooLarge(PipelineError):
    """Raised when a request body is larger than the server's limit."""

    http_status = 413


class ModelNotReady(PipelineError):
    """Raised when a model (or version) is registered but could not be loaded or is not loaded yet."""

    http_status = 503


class PredictionFailed(PipelineError):
    """Raised when the model itself raised while computing a prediction."""

    http_status = 500
