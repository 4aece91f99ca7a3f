"""The model server: tornado routes for OIP v2 and TF Serving v1, and the server's lifecycle.

Handlers are thin: resolve the model version, look in the cache, decode with a codec from
:mod:`.protocol`, await the model version's batcher, encode. Every error is a
:class:`~jupyter_pipeline.exceptions.PipelineError` mapped to its status in ``write_error``, the one
place where exceptions become responses; anything else is logged and answered 500 with a
message, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import tornado.netutil
import tornado.web

from .. import __version__
from ..exceptions import PipelineError
from ..store import open_store
from . import protocol
from .cache import PredictionCache
from .errors import ModelNotReady, PayloadTooLarge, PredictionFailed
from .http import GracefulHTTPServer
from .metrics import CONTENT_TYPE, ServerMetrics
from .repository import ModelRepository, ModelSpec, ServedModel

log = logging.getLogger("jupyter_pipeline.serving")
access_log = logging.getLogger("jupyter_pipeline.serving.access")

_NAME = r"([^/:]+)"
_VERSION = r"(?:/versions/([^/:]+))?"


@dataclass
class ServerConfig:
    """Settings of one model server (the ``serve`` command's options)."""

    store: str | None = None
    port: int = 8080
    address: str = "127.0.0.1"  # loopback unless told otherwise: the server has no authentication
    models: list[str] = field(default_factory=list)  # NAME or NAME:VERSION; empty = every model
    cache: bool = True
    cache_entries: int = 10_000
    cache_bytes: int = 64 * 1024 * 1024
    poll_interval: float = 10.0  # seconds between store scans for new versions; 0 = never
    max_batch_size: int = 32
    max_batch_wait_ms: float = 2.0
    max_body_bytes: int = 16 * 1024 * 1024
    drain_timeout: float = 30.0
    body_timeout: float = 60.0  # a request body must arrive within this; a shorter one is cut off
    idle_timeout: float = 300.0  # keep-alive connections idle this long are closed
    model_threads: int = 2


class ModelServer:
    """One server: repository, cache, metrics, the tornado application and its HTTP listener."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.store = open_store(config.store)
        self.specs = [ModelSpec.parse(m) for m in config.models]
        self.cache = (PredictionCache(config.cache_entries, config.cache_bytes) if config.cache else None)
        self.metrics = ServerMetrics(self.cache)
        self.metrics.in_flight.set_function(lambda: self.in_flight)
        self.executor = ThreadPoolExecutor(config.model_threads, thread_name_prefix="jp-model")
        self.repository = ModelRepository(
            self.store, self.specs, executor=self.executor, max_batch_size=config.max_batch_size,
            max_wait_ms=config.max_batch_wait_ms, on_batch=self.metrics.batch_hook, listener=self.metrics)
        self.app = make_app(self)
        self.in_flight = 0
        self.draining = False
        self.port: int | None = None
        self._http: GracefulHTTPServer | None = None
        self._poller: asyncio.Task | None = None

    @property
    def ready(self) -> bool:
        return self.repository.loaded_once and not self.draining

    async def start(self, wait_for_models: bool = False) -> None:
        """Listen, then load models in the background (``/v2/health/ready`` says when)."""
        sockets = tornado.netutil.bind_sockets(self.config.port, self.config.address)
        self.port = sockets[0].getsockname()[1]
        # tornado's own body limit answers a bare 400; the handlers answer 413 with a message,
        # so tornado's limit only guards against bodies far beyond ours.
        self._http = GracefulHTTPServer(self.app, max_body_size=2 * self.config.max_body_bytes + 65536,
                                        xheaders=True, body_timeout=self.config.body_timeout,
                                        idle_connection_timeout=self.config.idle_timeout)
        self._http.add_sockets(sockets)
        self._poller = asyncio.get_running_loop().create_task(self._poll())
        if wait_for_models:
            while not self.repository.loaded_once:
                await asyncio.sleep(0.02)

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await loop.run_in_executor(self.repository._loader, self.repository.refresh)
            if self.config.poll_interval <= 0:
                return
            await asyncio.sleep(self.config.poll_interval)

    async def drain(self, timeout: float | None = None) -> bool:
        """Stop accepting, answer every request begun (the last on each connection with
        ``Connection: close``), close idle connections, then stop. True if nothing had to be cut."""
        self.draining = True
        timeout = self.config.drain_timeout if timeout is None else timeout
        finished = True
        deadline = time.monotonic() + timeout
        if self._http is not None:
            finished = await self._http.drain(timeout)
        # Requests whose clients went away are still computing; let them end before the
        # model threads go.
        while self.in_flight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if not finished:
            log.warning("drain timed out after %.0f s; closed connections with %d requests in flight",
                        timeout, self.in_flight)
        if self._poller is not None:
            self._poller.cancel()
        self.repository.close()
        self.executor.shutdown(wait=False)
        return finished


# -- handlers -------------------------------------------------------------------------------------

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
        self.send_json({"name": "jupyter-pipeline", "version": __version__, "extensions": [],
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
        self.send_json(protocol.model_metadata_v2(name, sorted(state.ready), served.signature, served.platform))


class ModelReadyHandler(_Handler):
    async def get(self, name, version=None):
        try:
            served = await self.server.repository.resolve(name, version)
        except ModelNotReady:
            self.send_json({"name": name, "ready": False}, 503)
            return
        self.send_json({"name": name, "version": str(served.version), "ready": True})


class ModelStatusV1Handler(_Handler):
    async def get(self, name, version=None):
        state = self.server.repository.state(name)
        versions: dict[int, str | None] = {v: None for v in state.ready}
        versions.update(state.failed)
        if version is not None:
            try:
                served = await self.server.repository.resolve(name, version)  # 404 as for inference
                versions = {served.version: None}
            except ModelNotReady as exc:
                versions = {int(version): str(exc)}
        self.send_json(protocol.model_status_v1(versions))


@tornado.web.stream_request_body
class _InferHandler(_Handler):
    """Shared inference flow; subclasses name the protocol's codec."""

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

    def decode(self, body: bytes, served: ServedModel) -> protocol.InferRequest:
        raise NotImplementedError

    def encode(self, served: ServedModel, request: protocol.InferRequest, outputs) -> bytes:
        raise NotImplementedError

    async def post(self, name: str, version: str | None = None):
        self._answering = True  # from here on, finish() (and so on_finish) is certain
        if self._too_large:
            raise self._payload_error(self._size)
        body = b"".join(self._chunks)
        served = await self.server.repository.resolve(name, version)
        self.model_label, self.model_version = name, served.version
        cache, key = self.server.cache, None
        if cache is not None:
            key = cache.key(name, served.version, self.protocol_name, body)
            response = cache.get(key)
            if response is not None:
                self.cache_state = "hit"
                self.server.metrics.cache_hits.inc()
                self.finish(response)
                return
            self.cache_state = "miss"
            self.server.metrics.cache_misses.inc()
        request = self.decode(body, served)
        try:
            outputs = await served.batcher.submit(request.inputs)
        except PipelineError:
            raise
        except Exception as exc:  # noqa: BLE001 - the model raised: report it, keep serving
            log.error("model %s version %s failed on a request", name, served.version, exc_info=exc)
            detail = " ".join(str(exc).split())[:300]
            raise PredictionFailed(f"Model '{name}' version {served.version} failed on this input: {detail}") from None
        response = self.encode(served, request, outputs)
        if key is not None:
            cache.put(key, response)
        self.finish(response)


class InferV2Handler(_InferHandler):
    protocol_name = "v2"

    def decode(self, body, served):
        return protocol.decode_v2(body, served.signature)

    def encode(self, served, request, outputs):
        return protocol.encode_v2(served.name, served.version, served.signature, request, outputs)


class PredictV1Handler(_InferHandler):
    protocol_name = "v1"

    def decode(self, body, served):
        return protocol.decode_v1(body, served.signature)

    def encode(self, served, request, outputs):
        return protocol.encode_v1(served.signature, request, outputs)


class MetricsHandler(_Handler):
    def get(self):
        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(self.server.metrics.render())


def _log_request(handler: tornado.web.RequestHandler) -> None:
    """One access-log line per request."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    request = handler.request
    model = getattr(handler, "model_label", "-")
    version = getattr(handler, "model_version", None)
    access_log.info('%s "%s %s" %d %d %.2fms model=%s version=%s cache=%s', request.remote_ip, request.method,
                    request.uri, handler.get_status(), len(request.body or b"") or getattr(handler, "_size", 0),
                    1000.0 * request.request_time(), model, version if version is not None else "-",
                    getattr(handler, "cache_state", "-"))


def make_app(server: ModelServer) -> tornado.web.Application:
    """The tornado application: every route of DESIGN.md's "Serving"."""
    args = {"server": server}
    routes = [
        (r"/v2/?", ServerMetadataHandler, args),
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
