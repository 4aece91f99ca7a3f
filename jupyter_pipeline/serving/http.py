"""The HTTP listener of the model server: tornado's HTTPServer with a drain that drops nothing.

Tornado's own shutdown (``stop()`` then ``close_all_connections()``) closes keep-alive connections
wherever they are: a request that arrived a moment earlier is cut off, and a response still being
flushed is truncated. :meth:`GracefulHTTPServer.drain` instead

1. accepts the connections already waiting in the listen backlog (their clients have sent, or are
   sending, a request), then stops listening;
2. lets every request that has begun finish, answering it (and any later request on a connection
   still open) with ``Connection: close`` and closing the connection once that response is flushed,
   so no client sends another request on a connection we are about to close (the handlers call
   :meth:`GracefulHTTPServer.close_after_response` while ``draining``; a response whose headers
   already went out saying keep-alive leaves its connection open for one more request);
3. closes keep-alive connections that stay idle for ``idle_grace`` seconds with nothing unread on
   them (a client under load sends its next request sooner and gets step 2; an idle pooled
   connection goes quietly);
4. returns once every connection is closed, or at the deadline (then it closes the rest).
"""

from __future__ import annotations

import asyncio
import socket
import time

import tornado.httpserver
import tornado.httputil


class _ConnState:
    __slots__ = ("request", "busy", "idle_since")

    def __init__(self):
        self.request = None  # the HTTP1Connection of the request being read or answered
        self.busy = False  # headers of a request have arrived; its response is not flushed yet
        self.idle_since = time.monotonic()


class GracefulHTTPServer(tornado.httpserver.HTTPServer):
    """An HTTPServer that knows which connections are mid-request, so it can drain them."""

    def initialize(self, *args, idle_grace: float = 1.0, **kwargs) -> None:
        super().initialize(*args, **kwargs)
        self.idle_grace = idle_grace
        self.draining = False
        self._states: dict[object, _ConnState] = {}

    # -- request tracking (tornado calls these) ---------------------------------------------------
    def start_request(self, server_conn, request_conn):
        state = self._states.get(server_conn)
        if state is None:
            state = self._states[server_conn] = _ConnState()
        state.request, state.busy, state.idle_since = request_conn, False, time.monotonic()
        return _Tracked(self, state, request_conn, super().start_request(server_conn, request_conn))

    def on_close(self, server_conn) -> None:
        self._states.pop(server_conn, None)
        super().on_close(server_conn)

    @staticmethod
    def close_after_response(request_conn) -> None:
        """Answer the current request with ``Connection: close`` and close once it is flushed."""
        # HTTP1Connection's own switch (set when a client asks to close): the response gets
        # "Connection: close" and the connection closes after the last byte is written.
        request_conn._disconnect_on_finish = True

    # -- shutdown ---------------------------------------------------------------------------------
    @property
    def open_connections(self) -> int:
        return len(self._connections)

    @property
    def busy_connections(self) -> int:
        return sum(s.busy for s in self._states.values())

    def stop_accepting(self) -> None:
        """Take the connections already in the listen backlog, then stop listening."""
        for sock in list(self._sockets.values()):
            while True:
                try:
                    conn, address = sock.accept()
                except (BlockingIOError, InterruptedError, OSError):
                    break
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._handle_connection(conn, address)
        self.stop()

    async def drain(self, timeout: float) -> bool:
        """Stop accepting and close every connection gracefully; True if none had to be cut."""
        self.draining = True  # from now on handlers call close_after_response before answering
        self.stop_accepting()
        deadline = time.monotonic() + timeout
        while self._connections and time.monotonic() < deadline:
            now = time.monotonic()
            for conn, state in list(self._states.items()):
                if not state.busy and now - state.idle_since >= self.idle_grace and not _has_input(conn.stream):
                    conn.stream.close()
            await asyncio.sleep(0.02)
        clean = not self._connections
        await self.close_all_connections()
        return clean


def _has_input(stream) -> bool:
    """Whether bytes wait on ``stream`` that tornado has not parsed yet: a request on its way."""
    # A busy event loop can leave a request unread for a while: its connection looks idle, but
    # closing it would reset the client that sent it.
    if getattr(stream, "_read_buffer_size", 0):
        return True
    sock = stream.socket
    if sock is None:
        return False
    try:
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return False


class _Tracked(tornado.httputil.HTTPMessageDelegate):
    """Passes a request through to the application, marking its connection busy meanwhile."""

    __slots__ = ("server", "state", "request_conn", "inner")

    def __init__(self, server: GracefulHTTPServer, state: _ConnState, request_conn, inner):
        self.server, self.state, self.request_conn, self.inner = server, state, request_conn, inner

    def headers_received(self, start_line, headers):
        self.state.busy = True
        if self.server.draining:
            self.server.close_after_response(self.request_conn)
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk):
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        self.inner.finish()

    def on_connection_close(self) -> None:
        self.inner.on_connection_close()
