"""Running a model server: in the foreground until SIGTERM/SIGINT (then drain), or in a thread.

A drain stops accepting connections, reports not-ready, lets every in-flight request finish
(up to ``drain_timeout``) and only then closes connections, so a rolling update in Kubernetes
loses no requests.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading

from .app import ModelServer, ServerConfig

log = logging.getLogger("jupyter_pipeline.serving")


def serve(config: ServerConfig, *, on_started=None) -> bool:
    """Run a server until SIGTERM or SIGINT, then drain; True if every in-flight request finished."""
    return asyncio.run(_serve(config, on_started))


async def _serve(config: ServerConfig, on_started) -> bool:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = ModelServer(config)
    await server.start()
    log.info("serving models from %s on http://%s:%s (OIP v2 under /v2, TF Serving under /v1, metrics at /metrics)%s",
             server.store.url, config.address, server.port,
             f"; OIP gRPC on {config.address}:{server.grpc_port}" if server.grpc_port is not None else "")
    if on_started:
        on_started(server)
    await stop.wait()
    log.info("shutting down: draining %d request(s) in progress", server.requests_in_progress)
    finished = await server.drain()
    log.info("stopped")
    return finished


class ServerThread:
    """A server on its own event loop in a background thread (tests, benchmarks, notebooks).

    Example::

        with ServerThread(ServerConfig(store="./.pipeline-store", port=0)) as server:
            print(server.url)
    """

    def __init__(self, config: ServerConfig):
        self.config = config
        self.server: ModelServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="jp-serving", daemon=True)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.config.address in ("0.0.0.0", "") else self.config.address
        return f"http://{host}:{self.server.port}"

    def start(self, timeout: float = 120.0) -> "ServerThread":
        """Start and wait until the first scan of the store has loaded the models."""
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError("the model server did not start in time")
        if self._error is not None:
            raise self._error
        return self

    def call(self, fn, *args):
        """Run ``fn(*args)`` on the server's loop thread and return its result."""
        done = threading.Event()
        box = {}

        def run():
            try:
                box["value"] = fn(*args)
            finally:
                done.set()
        self._loop.call_soon_threadsafe(run)
        done.wait(30)
        return box.get("value")

    def stop(self, timeout: float = 60.0) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:
            self._error = exc
            self._started.set()

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.server = ModelServer(self.config)
        await self.server.start(wait_for_models=True)
        self._started.set()
        await self._stop.wait()
        await self.server.drain(timeout=10)

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
