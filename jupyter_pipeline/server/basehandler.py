"""What every REST handler shares: the server's state, JSON bodies, blocking calls off the event
loop, and the one place errors become ``{"message"}`` with an HTTP status (:func:`error_reply`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

import tornado.web
from jupyter_server.base.handlers import APIHandler

from ..exceptions import PipelineError, ValidationFailed, redact
from ..store import jsontext
from .config import JupyterPipeline
from .manager import RunManager
from .paths import BadRequest, resolve_notebook

SETTINGS_KEY = "jupyter_pipeline"
#: The largest JSON body a handler parses (on the event loop: ~0.1 s per 4 MiB on a loaded machine).
MAX_BODY_BYTES = 16 * 2**20


class BodyTooLarge(PipelineError):
    """Raised when a request body is over :data:`MAX_BODY_BYTES`."""

    http_status = 413


@dataclass
class ServerState:
    """What every handler needs: settings, the run manager and the contents root."""

    config: JupyterPipeline
    manager: RunManager
    root_dir: str


def error_reply(exc: BaseException | None, status: int, root_dir: str | None = None) -> tuple[int, str]:
    """The one mapping from an exception to an HTTP status and a user-facing message.

    Paths in the message are shown relative to ``root_dir``, as the browser names files; the
    server's own folders are none of the browser's business.
    """
    if isinstance(exc, ValidationFailed):  # the browser lists every problem itself
        status, message = exc.http_status, f"{exc.summary()} The Problems list shows every problem."
    elif isinstance(exc, PipelineError):
        status, message = exc.http_status, str(exc)
    elif isinstance(exc, tornado.web.HTTPError):
        message = exc.log_message % exc.args if exc.log_message and exc.args else exc.log_message
        status, message = exc.status_code, message or exc.reason or tornado.httputil.responses.get(
            exc.status_code, "Error")
    elif exc is None:
        message = tornado.httputil.responses.get(status, "Error")
    else:
        status, message = 500, (f"Internal error in jupyter-pipeline ({type(exc).__name__}: {exc}). "
                                "The Jupyter server log has the details; please report it.")
    message = redact(message)  # a KFP host or store URL in it may carry user:password@
    return status, root_relative(message, root_dir) if root_dir else message


def root_relative(message: str, root_dir: str) -> str:
    """``message`` with absolute paths under ``root_dir`` made root-relative (``/srv/nb/a.ipynb`` → ``a.ipynb``)."""
    roots = {str(Path(root_dir)), str(Path(root_dir).resolve())}
    for root in sorted(roots, key=len, reverse=True):  # the longer spelling first, if one contains the other
        root = root.rstrip("/") or "/"
        message = message.replace(root + "/", "")
        message = re.sub(re.escape(root) + r"(?![\w.-])", ".", message)
    return message


class BaseHandler(APIHandler):
    """Shared plumbing: state, JSON bodies, blocking calls off the loop, error replies."""

    @property
    def jp(self) -> ServerState:
        return self.settings[SETTINGS_KEY]

    def json_body(self) -> dict:
        if len(self.request.body) > MAX_BODY_BYTES:  # parsing it would hold up the server's event loop for seconds
            raise BodyTooLarge(f"The request body is {len(self.request.body) / 2**20:.0f} MiB; this API takes JSON "
                               f"bodies of up to {MAX_BODY_BYTES // 2**20} MiB (save a large notebook and send its path).")
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError as exc:
            raise BadRequest(f"The request body is not valid JSON: {exc}.") from None
        except RecursionError:
            raise BadRequest("The request body nests deeper than this server reads; send a flatter JSON object.") from None
        if not isinstance(body, dict):
            raise BadRequest("The request body must be a JSON object.")
        return body

    def notebook_path(self, path) -> Path:
        return resolve_notebook(self.jp.root_dir, path)

    async def blocking(self, fn, *args, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args, **kwargs))

    def reply(self, data, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(jsontext.dumps(data))

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = (kwargs.get("exc_info") or (None, None, None))[1]
        status, message = error_reply(exc, status_code, self.jp.root_dir)
        self._user_fault = isinstance(exc, PipelineError)
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(jsontext.dumps({"message": message}))

    def _log(self) -> None:
        # jupyter_server's access log writes every 5xx as an error with the request's headers; a 502 from
        # an unreachable Kubeflow host or S3 endpoint the user configured is theirs to fix, not a server fault.
        if getattr(self, "_user_fault", False) and self.get_status() >= 500:
            self.log.warning("%d %s %s (%.2f ms): see the message in the reply", self.get_status(), self.request.method,
                             self.request.path, 1000 * self.request.request_time())
            return
        super()._log()

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, PipelineError):  # the user's to fix: one line, no traceback
            self.log.warning("jupyter-pipeline: %s %s: %s", self.request.method, redact(self.request.uri), value)
        else:
            super().log_exception(typ, value, tb)
