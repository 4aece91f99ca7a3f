"""The REST routes of the model server: OIP v2 (JSON and binary tensors), TF Serving / KServe v1,
KServe's liveness, the model repository index and statistics, and Prometheus metrics.

Handlers are thin: parse the path and headers, call the server's
:class:`~.inference.Inference` (or read its repository), write the answer. Every error is a
:class:`~jupyter_pipeline.exceptions.PipelineError` mapped to its status in ``write_error``, the one
place where exceptions become responses; anything else is logged and answered 500 with a
message, never a traceback.
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote

import tornado.httputil
import tornado.web

from .. import __version__
from ..exceptions import PipelineError
from . import oip, protocol, tfserving
from .errors import InvalidRequest, ModelNotReady, PayloadTooLarge
from .http import GracefulHTTPServer
from .inference import Codec, codecs
from .metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from .inference import Inference
    from .metrics import ServerMetrics
    from .repository import ModelRepository


class ModelServer(Protocol):
    """What the routes use of the server that owns them (:class:`.app.ModelServer`). Spelled out
    here because app imports this module: the routes hold the server, they do not build it."""

    config: Any  # app.ServerConfig
    repository: ModelRepository
    inference: Inference
    metrics: ServerMetrics
    draining: bool
    in_flight: int

    @property
    def ready(self) -> bool: ...

log = logging.getLogger("jupyter_pipeline.serving")
access_log = logging.getLogger("jupyter_pipeline.serving.access")

_NAME = r"([^/:]+)"
_VERSION = r"(?:/versions/([^/:]+))?"
_V2_INFER = re.compile(rf"/v2/models/{_NAME}{_VERSION}/infer")
_V1_PREDICT = re.compile(rf"/v1/models/{_NAME}{_VERSION}:predict")


class _Handler(tornado.web.RequestHandler):
    """JSON responses, errors as ``{"error", "message"}``, metrics and the access log."""

    protocol_name = "-"
    counted = False  # whether this request counts in the inference metrics

    def initialize(self, server: ModelServer) -> None:
        self.server = server
        self.model_label = "-"
        self.model_version: int | None = None
        self.cache_state = "-"
        self._started = time.perf_counter()
        self._tracked = False

    def prepare(self):
        self.server.in_flight += 1
        self._tracked = True

    def _untrack(self) -> None:
        if self._tracked:
            self._tracked = False
            self.server.in_flight -= 1

    def on_finish(self) -> None:
        self._untrack()
        if self.counted:
            self.server.metrics.observe_request(self.model_label, self.protocol_name, self.get_status(),
                                                time.perf_counter() - self._started)


    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.clear_header("Server")

    def send_json(self, doc, status: int = 200) -> None:
        self.set_status(status)
        self.finish(protocol.dumps(doc))

    def finish(self, chunk=None):
        if self.server.draining:  # the last response on this connection: say so, then close it
            GracefulHTTPServer.close_after_response(self.request.connection)
        return super().finish(chunk)

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, PipelineError):
            message = str(exc)
        elif isinstance(exc, tornado.web.HTTPError):
            message = exc.log_message or self._reason
            if status_code == 405:
                message = f"{self.request.method} is not allowed on {self.request.path}."
        else:
            message = "Internal server error; the server log has the details."
        self.finish(protocol.dumps({"error": message, "message": message}))

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, PipelineError):
            return  # an expected, user-facing error: the access log line is enough
        if isinstance(value, tornado.web.HTTPError):
            return
        log.error("uncaught error in %s %s", self.request.method, self.request.uri, exc_info=(typ, value, tb))

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, PipelineError):
            if self._finished:
                return
            self.send_error(e.http_status, exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)


class NotFoundHandler(_Handler):
    def prepare(self):
        super().prepare()
        raise tornado.web.HTTPError(404, f"No route {self.request.path}; see /v2 and /v1/models/NAME.")


class ServerMetadataHandler(_Handler):
    def get(self):
        self.send_json({"name": "jupyter-pipeline", "version": __version__,
                        "extensions": ["binary_tensor_data", "statistics"],
                        "models": self.server.repository.names()})


class LiveHandler(_Handler):
    def get(self):
        self.send_json({"live": True})


class ReadyHandler(_Handler):
    def get(self):
        ready = self.server.ready
        self.send_json({"ready": ready}, 200 if ready else 503)


class ModelMetadataHandler(_Handler):
    async def get(self, name, version=None):
        served = await self.server.repository.resolve(name, version)
        state = self.server.repository.state(name)
        self.send_json(protocol.model_metadata_v2(name, sorted(state.ready), served.signature, served.platform,
                                                  served.parameters))


class ModelReadyHandler(_Handler):
    async def get(self, name, version=None):
        try:
            served = await self.server.repository.resolve(name, version)
        except ModelNotReady:
            self.send_json({"name": name, "ready": False}, 503)
            return
        self.send_json({"name": name, "version": str(served.version), "ready": True})


class KServeLiveHandler(_Handler):
    """``GET /``: KServe v1's liveness."""

    def get(self):
        self.send_json({"status": "alive"})


class ModelStatusV1Handler(_Handler):
    async def get(self, name, version=None):
        state = self.server.repository.state(name)
        versions: dict[int, str | None] = {v: None for v in state.ready}
        versions.update(state.failed)
        ready = state.default is not None
        if version is not None:
            try:
                served = await self.server.repository.resolve(name, version)  # 404 as for inference
                versions, ready = {served.version: None}, True
            except ModelNotReady as exc:
                versions, ready = {int(version): str(exc)}, False
        self.send_json(tfserving.model_status_v1(name, versions, ready))


class RepositoryIndexHandler(_Handler):
    """``POST /v2/repository/index``: every model version the server knows, with its state."""

    def post(self):
        body = protocol.loads(self.request.body) if self.request.body.strip() else {}
        if not isinstance(body, dict) or not isinstance(body.get("ready", False), bool):
            raise InvalidRequest('The body must be a JSON object; "ready" (optional) must be true or false.')
        index = self.server.repository.index()
        if body.get("ready"):
            index = [m for m in index if m["state"] == "READY"]
        self.send_json(index)


class StatisticsHandler(_Handler):
    """``GET /v2/models[/NAME[/versions/V]]/stats``: counts and cumulative times per loaded version."""

    def get(self, name=None, version=None):
        repo = self.server.repository
        names = [name] if name else repo.names()
        stats = []
        for n in names:
            state = repo.state(n)
            for v, served in sorted(state.ready.items()):
                if version is None or str(v) == version:
                    stats.append(served.stats.to_json(n, v, served.batcher.calls))
        if name and version is not None and not stats:
            repo.get(name, version)  # 404 for a version that does not exist; otherwise it is not loaded
            raise ModelNotReady(f"Model '{name}' version {version} is not loaded.")
        self.send_json({"model_stats": stats})


@tornado.web.stream_request_body
class _InferHandler(_Handler):
    """Streams the body in (refusing it past the size limit), then answers through the server's
    inference path with the codec named by ``protocol_name``."""

    counted = True
    _answering = False

    def on_connection_close(self) -> None:
        if not self._answering:  # closed while its body was arriving: post() will never run
            self._untrack()

    def prepare(self):
        super().prepare()
        self._chunks: list[bytes] = []
        self._size = 0
        self._too_large = False
        length = self.request.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > self.server.config.max_body_bytes:
            raise self._payload_error(int(length))

    def _payload_error(self, size: int) -> PayloadTooLarge:
        return PayloadTooLarge(f"The request body ({size} bytes) is larger than the server's limit of "
                               f"{self.server.config.max_body_bytes} bytes.")

    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self.server.config.max_body_bytes:
            self._too_large = True
            self._chunks = []
        else:
            self._chunks.append(chunk)

    def header_length(self, body: bytes) -> int | None:
        return None

    async def post(self, name: str, version: str | None = None):
        self._answering = True  # from here on, finish() (and so on_finish) is certain
        if self._too_large:
            raise self._payload_error(self._size)
        self.model_label = name
        body = b"".join(self._chunks)
        codec: Codec = codecs.get(self.protocol_name)
        answer, served, self.cache_state = await self.server.inference(name, version, codec, body,
                                                                       self.header_length(body))
        self.model_version = served.version
        if answer.json_length is not None:
            self.set_header(oip.HEADER, str(answer.json_length))
            self.set_header("Content-Type", "application/octet-stream")
        self.finish(answer.body)


class InferV2Handler(_InferHandler):
    protocol_name = "v2"

    def header_length(self, body):
        return oip.json_length(self.request.headers.get(oip.HEADER), len(body))


class PredictV1Handler(_InferHandler):
    protocol_name = "v1"


class MetricsHandler(_Handler):
    def get(self):
        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(self.server.metrics.render())


def _log_request(handler: tornado.web.RequestHandler) -> None:
    """One access-log line per request."""
    if access_log.isEnabledFor(logging.INFO):
        request = handler.request
        log_access(request.remote_ip, request.method, request.uri, handler.get_status(),
                   len(request.body or b"") or getattr(handler, "_size", 0), request.request_time(),
                   getattr(handler, "model_label", "-"), getattr(handler, "model_version", None),
                   getattr(handler, "cache_state", "-"))


def log_access(ip, method, uri, status, size, seconds, model, version, cache) -> None:
    access_log.info('%s "%s %s" %d %d %.2fms model=%s version=%s cache=%s', ip, method, uri, status, size,
                    1000.0 * seconds, model, version if version is not None else "-", cache)


class InferShortcut:
    """Answers prediction-cache hits of ``infer`` and ``:predict`` from the request's bytes alone:
    no request handler, routing or decoding, which is most of a hit's cost. Everything else (a
    miss, an error, a model still loading) goes on to the application's handlers.
    """

    def __init__(self, server: ModelServer):
        self.server = server
        self.codecs = {"v2": codecs.get("v2"), "v1": codecs.get("v1")}
        self._date = (0, "")

    def wants(self, start_line, headers):
        if start_line.method != "POST":
            return None
        length = headers.get("Content-Length")
        if length is None or not length.isdigit() or int(length) > self.server.config.max_body_bytes:
            return None
        path = start_line.path.partition("?")[0]
        for protocol_name, pattern in (("v2", _V2_INFER), ("v1", _V1_PREDICT)):
            match = pattern.fullmatch(path)
            if match:
                name, version = match.groups()
                return protocol_name, unquote(name), unquote(version) if version is not None else None
        return None

    def answer(self, token, start_line, headers, body: bytes, request_conn) -> bool:
        started = time.perf_counter()
        protocol_name, name, version = token
        try:
            length = oip.json_length(headers.get(oip.HEADER), len(body)) if protocol_name == "v2" else None
        except InvalidRequest:
            return False
        found = self.server.inference.cached(name, version, self.codecs[protocol_name], body, length)
        if found is None:
            return False
        answer, served = found
        head = tornado.httputil.HTTPHeaders({"Content-Type": "application/json", "Date": self._now(),
                                             "Content-Length": str(len(answer.body))})
        if answer.json_length is not None:
            head[oip.HEADER] = str(answer.json_length)
            head["Content-Type"] = "application/octet-stream"
        if self.server.draining:
            GracefulHTTPServer.close_after_response(request_conn)
        request_conn.write_headers(tornado.httputil.ResponseStartLine("HTTP/1.1", 200, "OK"), head, answer.body)
        request_conn.finish()
        seconds = time.perf_counter() - started
        self.server.metrics.observe_request(name, protocol_name, 200, seconds)
        if access_log.isEnabledFor(logging.INFO):
            log_access(request_conn.context.remote_ip, "POST", start_line.path, 200, len(body), seconds, name,
                       served.version, "hit")
        return True

    def _now(self) -> str:
        second = int(time.time())
        if self._date[0] != second:
            self._date = (second, tornado.httputil.format_timestamp(second))
        return self._date[1]


def make_app(server: ModelServer) -> tornado.web.Application:
    """The tornado application with every REST route of the server."""
    args = {"server": server}
    routes = [
        (r"/", KServeLiveHandler, args),
        (r"/v2/?", ServerMetadataHandler, args),
        (r"/v2/repository/index", RepositoryIndexHandler, args),
        (r"/v2/models/stats", StatisticsHandler, args),
        (rf"/v2/models/{_NAME}{_VERSION}/stats", StatisticsHandler, args),
        (r"/v2/health/live", LiveHandler, args),
        (r"/v2/health/ready", ReadyHandler, args),
        (rf"/v2/models/{_NAME}{_VERSION}/ready", ModelReadyHandler, args),
        (rf"/v2/models/{_NAME}{_VERSION}/infer", InferV2Handler, args),
        (rf"/v2/models/{_NAME}{_VERSION}/?", ModelMetadataHandler, args),
        (rf"/v1/models/{_NAME}{_VERSION}:predict", PredictV1Handler, args),
        (rf"/v1/models/{_NAME}{_VERSION}/?", ModelStatusV1Handler, args),
        (r"/metrics", MetricsHandler, args),
    ]
    return tornado.web.Application(routes, default_handler_class=NotFoundHandler, default_handler_args=args,
                                   log_function=_log_request, compress_response=False)
