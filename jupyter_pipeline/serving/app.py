"""The model server: its settings, its parts (repository, cache, metrics, inference path) and
its lifecycle (listen, hot reload, drain). Routes are in :mod:`.routes`, the gRPC service in
:mod:`.grpc_service`; both answer through the same :class:`~.inference.Inference`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import tornado.netutil

from ..store.base import open_store
from .cache import PredictionCache
from .http import GracefulHTTPServer
from .inference import Inference
from .metrics import ServerMetrics
from .repository import ModelRepository, ModelSpec
from .routes import InferShortcut, make_app

log = logging.getLogger("jupyter_pipeline.serving")


@dataclass
class ServerConfig:
    """Settings of one model server (the ``serve`` command's options)."""

    store: str | None = None
    port: int = 8080
    grpc_port: int | None = None  # the OIP gRPC service's port (0 picks one); None = no gRPC
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
    max_loaded_versions: int = 3  # per model, least recently used unloaded first; pinned and latest stay


class ModelServer:
    """One server: repository, cache, metrics, the inference path, its HTTP and gRPC listeners."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.store = open_store(config.store)
        self.specs = [ModelSpec.parse(m) for m in config.models]
        self.cache = (PredictionCache(config.cache_entries, config.cache_bytes) if config.cache else None)
        self.metrics = ServerMetrics(self.cache)
        self.metrics.in_flight.set_function(lambda: self.requests_in_progress)
        self.executor = ThreadPoolExecutor(config.model_threads, thread_name_prefix="jp-model")
        self.repository = ModelRepository(
            self.store, self.specs, executor=self.executor, max_batch_size=config.max_batch_size,
            max_wait_ms=config.max_batch_wait_ms, max_loaded_versions=config.max_loaded_versions,
            on_batch=self.metrics.batch_hook, listener=self)
        self.inference = Inference(self.repository, self.cache, self.metrics)
        self.app = make_app(self)
        self.in_flight = 0  # REST requests in their handlers (a drain waits for these)
        self.grpc_in_flight = 0
        self.draining = False
        self.port: int | None = None
        self.grpc_port: int | None = None
        self._http: GracefulHTTPServer | None = None
        self._grpc = None
        self._poller: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- what the repository reports (its ``listener``) -------------------------------------------
    def versions_changed(self, model: str, before: set[int], after: set[int]) -> None:
        """Versions of ``model`` were loaded or unloaded: metrics follow, and the cached answers of
        versions no longer served are dropped (they could never be hit again, only evicted)."""
        self.metrics.versions_changed(model, before, after)
        if self.cache is not None and before - after and self._loop is not None:
            # Called from the loading thread; only the event loop touches the cache.
            self._loop.call_soon_threadsafe(self.cache.drop_model, model, set(after))

    def load_failed(self, model: str, version: int) -> None:
        self.metrics.load_failed(model, version)

    @property
    def requests_in_progress(self) -> int:
        """Requests begun and not answered yet: REST ones by connection (headers in, response not
        flushed, whoever answers it) and gRPC calls."""
        return (self._http.busy_connections if self._http is not None else 0) + self.grpc_in_flight

    @property
    def ready(self) -> bool:
        return self.repository.loaded_once and not self.draining

    async def start(self, wait_for_models: bool = False) -> None:
        """Listen, then load models in the background (``/v2/health/ready`` says when)."""
        self._loop = asyncio.get_running_loop()
        sockets = tornado.netutil.bind_sockets(self.config.port, self.config.address)
        self.port = sockets[0].getsockname()[1]
        # tornado's own body limit answers a bare 400; the handlers answer 413 with a message,
        # so tornado's limit only guards against bodies far beyond ours.
        self._http = GracefulHTTPServer(self.app, max_body_size=2 * self.config.max_body_bytes + 65536,
                                        body_timeout=self.config.body_timeout,
                                        idle_connection_timeout=self.config.idle_timeout,
                                        shortcut=InferShortcut(self) if self.cache is not None else None)
        self._http.add_sockets(sockets)
        if self.config.grpc_port is not None:
            from . import grpc_service  # grpc loads only when asked for

            self._grpc, self.grpc_port = await grpc_service.start(self, self.config.address, self.config.grpc_port,
                                                                  self.config.max_body_bytes)
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
        deadline = time.monotonic() + timeout
        drains = [self._http.drain(timeout)] if self._http is not None else []
        if self._grpc is not None:  # refuses new calls at once, lets the running ones finish
            drains.append(self._grpc.stop(timeout))
        finished = (await asyncio.gather(*drains))[0] if drains else True
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
