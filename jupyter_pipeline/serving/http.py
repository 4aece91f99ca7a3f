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
3. closes keep-alive connections that stay idle for ``idle_grace`` seconds, idle meaning nothing
   unread on them and nothing of the last response unacknowledged (a client under load sends its
   next request sooner and gets step 2; an idle pooled connection goes quietly);
4. returns once every connection is closed, or at the deadline (then it closes the rest).

Two more duties sit at this level because they are cheaper here than in the application:

* a *shortcut* (:class:`Shortcut`) may answer a request from its bytes alone, without the
  tornado application (the model server answers prediction-cache hits this way); whatever it
  declines is handed to the application unchanged;
* ``body_timeout``: a body that stops short of its ``Content-Length`` closes the connection after
  that many seconds (one timer per request, where tornado's own option wraps every read).
"""

from __future__ import annotations

import asyncio
import fcntl
import socket
import struct
import termios
import time
from typing import Any, Protocol

import tornado.httpserver
import tornado.httputil


class Shortcut(Protocol):
    """Answers some requests without the application."""

    def wants(self, start_line, headers) -> Any:
        """A token if this request may be answerable from its bytes (read the body), else None."""

    def answer(self, token: Any, start_line, headers, body: bytes, request_conn) -> bool:
        """Write the whole response to ``request_conn`` and return True, or return False to decline."""


class _ConnState:
    __slots__ = ("request", "busy", "idle_since")

    def __init__(self):
        self.request = None  # the HTTP1Connection of the request being read or answered
        self.busy = False  # headers of a request have arrived; its response is not flushed yet
        self.idle_since = time.monotonic()


class GracefulHTTPServer(tornado.httpserver.HTTPServer):
    """An HTTPServer that knows which connections are mid-request, so it can drain them."""

    def initialize(self, *args, idle_grace: float = 2.0, body_timeout: float | None = None,
                   shortcut: Shortcut | None = None, **kwargs) -> None:
        super().initialize(*args, **kwargs)
        self.idle_grace = idle_grace
        self.body_timeout = body_timeout
        self.shortcut = shortcut
        self.draining = False
        self._states: dict[object, _ConnState] = {}

    # -- request tracking (tornado calls these) ---------------------------------------------------
    def start_request(self, server_conn, request_conn):
        state = self._states.get(server_conn)
        if state is None:
            state = self._states[server_conn] = _ConnState()
        state.request, state.busy, state.idle_since = request_conn, False, time.monotonic()
        return _Tracked(self, state, request_conn, super().start_request(server_conn, request_conn),
                        server_conn.stream)

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
                if state.busy:
                    continue
                if _has_input(conn.stream) or _has_unsent_output(conn.stream):
                    state.idle_since = now  # a request is arriving, or a response is still leaving
                elif now - state.idle_since >= self.idle_grace:
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


def _has_unsent_output(stream) -> bool:
    """Whether the kernel still holds response bytes the client has not acknowledged."""
    sock = stream.socket
    if sock is None:
        return False
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0] > 0
    except OSError:
        return False


class _Tracked(tornado.httputil.HTTPMessageDelegate):
    """Passes a request through to the application (or the shortcut), marking its connection busy
    meanwhile and timing its body."""

    __slots__ = ("server", "state", "request_conn", "inner", "stream", "timer", "held", "started")

    def __init__(self, server: GracefulHTTPServer, state: _ConnState, request_conn, inner, stream):
        self.server, self.state, self.request_conn, self.inner, self.stream = server, state, request_conn, inner, stream
        self.timer = None
        self.held = None  # [token, start line, headers, chunks] while the shortcut may answer
        self.started = False  # the application has seen the headers

    def headers_received(self, start_line, headers):
        self.state.busy = True
        if self.server.draining:
            self.server.close_after_response(self.request_conn)
        if self.server.body_timeout and ("Content-Length" in headers or "Transfer-Encoding" in headers):
            self.timer = asyncio.get_running_loop().call_later(self.server.body_timeout, self.stream.close)
        shortcut = self.server.shortcut
        if shortcut is not None:
            token = shortcut.wants(start_line, headers)
            if token is not None:
                self.held = [token, start_line, headers, []]
                return None
        self.started = True
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk):
        if self.held is not None:
            self.held[3].append(chunk)
            return None
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.held is not None:
            token, start_line, headers, chunks = self.held
            self.held = None
            body = b"".join(chunks)
            if not self.server.shortcut.answer(token, start_line, headers, body, self.request_conn):
                asyncio.ensure_future(self._hand_over(start_line, headers, body))
            return
        self.inner.finish()

    async def _hand_over(self, start_line, headers, body: bytes) -> None:
        """Give a request the shortcut declined to the application, as tornado would have."""
        if self.stream.closed():
            return
        self.started = True
        waiting = self.inner.headers_received(start_line, headers)
        if waiting is not None:
            await waiting
        if body:
            waiting = self.inner.data_received(body)
            if waiting is not None:
                await waiting
        self.inner.finish()

    def on_connection_close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.started:
            self.inner.on_connection_close()
