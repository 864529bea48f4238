"""A keep-alive HTTP/1.1 connection pool on asyncio protocols, for the harness's hot path.

Why not aiohttp here: a load generator pays the client's Python cost on every request,
and aiohttp's (request object, response object, stream reader, a task per call) capped
one process at ~5,000 requests/s on this machine's class of core. This pool does one
``transport.write`` per request and parses answers with ``httptools`` (llhttp, the parser
uvicorn uses) in callbacks: no task, no future, no per-request object of its own.

The pool is generic over *calls*: any object with ``handle`` (the pool stores the
connection carrying it there) and ``finished`` (a call finished elsewhere, e.g. timed out
while waiting for a connection, is skipped). Answers and failures go to the two callbacks
given at construction. One request per connection at a time (no pipelining); a pool never
opens more than ``limit`` connections, and calls beyond that wait in FIFO order.

A server may close an idle keep-alive connection just as a request goes out on it (its
idle timeout racing the next request). An idempotent request that got no byte of answer on
a reused connection is therefore sent once more on another connection, as Go's net/http
and urllib3 do; anything else is reported.
"""

from __future__ import annotations

import asyncio
import socket
import ssl as _ssl
from collections import deque
from typing import Any, Callable, Deque, List, Optional, Set, Tuple

import httptools

__all__ = ["ConnectionPool", "SERVER_DISCONNECTED", "BAD_RESPONSE"]

#: error names for the two failures that have no exception type of their own
SERVER_DISCONNECTED = "ServerDisconnected"
BAD_RESPONSE = "BadHttpResponse"

OnResponse = Callable[[Any, int, bytes], None]
OnError = Callable[[Any, str], None]


class _Connection(asyncio.Protocol):
    """One keep-alive connection; ``httptools`` calls the ``on_*`` methods while parsing."""

    __slots__ = ("pool", "transport", "parser", "call", "body", "head_only", "done_in_headers", "data",
                 "retry", "served", "answered")

    def __init__(self, pool: "ConnectionPool") -> None:
        self.pool = pool
        self.transport: Optional[asyncio.Transport] = None
        self.parser = httptools.HttpResponseParser(self)
        self.call: Any = None
        self.body: List[bytes] = []
        self.head_only = False  # a HEAD answer has a Content-Length but no body
        self.done_in_headers = False
        self.data = b""         # the request in flight (sent again if the server closed an idle connection)
        self.retry = False      # may it be sent again (idempotent)?
        self.served = 0         # answers completed on this connection
        self.answered = False   # any byte of the current answer yet?

    # -- asyncio.Protocol ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def data_received(self, data: bytes) -> None:
        if self.call is None:
            # bytes nobody asked for (a server that answers twice): the connection is unusable
            self.transport.abort()
            return
        self.answered = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail(BAD_RESPONSE)
            return
        if self.done_in_headers:  # HEAD: the parser still expects Content-Length bytes
            self.done_in_headers = False
            self._complete(self.parser.should_keep_alive(), fresh_parser=True)

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.pool._lost(self)
        if self.call is not None:
            call, self.call = self.call, None
            if self.retry and self.served and not self.answered and not self.pool._closed:
                self.pool.send(call, self.data, self.head_only, False)  # the idle-close race: once more
                return
            self.pool.on_error(call, type(exc).__name__ if exc is not None else SERVER_DISCONNECTED)

    # -- httptools callbacks --------------------------------------------------------
    def on_headers_complete(self) -> None:
        if self.head_only:
            self.done_in_headers = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self._complete(self.parser.should_keep_alive())

    # -- the pool's side ------------------------------------------------------------
    def send(self, call: Any, data: bytes, head_only: bool, retry: bool) -> None:
        self.call = call
        self.head_only = head_only
        self.data = data
        self.retry = retry
        self.answered = False
        call.handle = self
        self.transport.write(data)

    def _complete(self, keep_alive: bool, fresh_parser: bool = False) -> None:
        call, self.call = self.call, None
        if call is None:
            return
        status = self.parser.get_status_code()
        self.served += 1
        if fresh_parser:
            self.parser = httptools.HttpResponseParser(self)
        body = b"".join(self.body) if self.body else b""
        self.body.clear()
        # free the connection first: the answer's callback may send the next request at once
        if keep_alive:
            self.pool._release(self)
        else:
            self.transport.close()
        self.pool.on_response(call, status, body)

    def _fail(self, name: str) -> None:
        call, self.call = self.call, None
        self.body.clear()
        self.transport.abort()
        if call is not None:
            self.pool.on_error(call, name)


class ConnectionPool:
    """At most ``limit`` keep-alive connections to one ``host:port`` (TLS when ``ssl``)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        limit: int,
        on_response: OnResponse,
        on_error: OnError,
        ssl: Optional[_ssl.SSLContext] = None,
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit: must be >= 1, got {limit}")
        self.host, self.port, self.limit, self.ssl = host, port, limit, ssl
        self.on_response = on_response
        self.on_error = on_error
        self._idle: List[_Connection] = []  # a stack: hot connections reused, cold ones idle out
        self._all: Set[_Connection] = set()
        self._opening = 0
        self._waiting: Deque[Tuple[Any, bytes, bool, bool]] = deque()
        self._closed = False
        self._connecting: Set["asyncio.Task[None]"] = set()  # referenced until done (the loop holds tasks weakly)
        self.connects = 0  # connections opened over the pool's life (reuse shows as few)

    def send(self, call: Any, data: bytes, head_only: bool = False, retry: bool = False) -> None:
        """Write ``data`` (a whole request) on a free connection, opening one if allowed.
        ``retry``: the request is idempotent, so the idle-close race may send it again."""
        if self._idle:
            self._idle.pop().send(call, data, head_only, retry)
            return
        call.handle = None
        self._waiting.append((call, data, head_only, retry))
        if len(self._all) + self._opening < self.limit:
            self._open()

    def cancel(self, call: Any) -> None:
        """Abandon ``call`` (its deadline passed): abort its connection, or forget it if it
        was still waiting for one (the ``finished`` flag makes ``_release`` skip it)."""
        conn = call.handle
        if isinstance(conn, _Connection) and conn.call is call:
            conn.call = None
            conn.body.clear()
            conn.transport.abort()

    async def close(self) -> None:
        self._closed = True
        for conn in list(self._all):
            if conn.transport is not None:
                conn.transport.close()
        self._idle.clear()
        while self._waiting:
            call = self._waiting.popleft()[0]
            if not call.finished:
                self.on_error(call, SERVER_DISCONNECTED)
        await asyncio.sleep(0)  # let the transports' connection_lost run

    # -- internals ------------------------------------------------------------------
    def _open(self) -> None:
        self._opening += 1
        task = asyncio.get_running_loop().create_task(self._connect())
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _t, conn = await loop.create_connection(
                lambda: _Connection(self), self.host, self.port, ssl=self.ssl,
                server_hostname=self.host if self.ssl is not None else None)
        except (OSError, _ssl.SSLError, asyncio.TimeoutError) as exc:
            self._opening -= 1
            self._connect_failed(type(exc).__name__)
            return
        except asyncio.CancelledError:
            self._opening -= 1
            raise
        self._opening -= 1
        self.connects += 1
        self._all.add(conn)
        if self._closed:
            conn.transport.close()
            return
        self._release(conn)

    def _connect_failed(self, name: str) -> None:
        # the oldest live waiting call takes the failure (as a client with one connection
        # per request would report it); the others keep waiting for another try
        while self._waiting:
            call = self._waiting.popleft()[0]
            if not call.finished:
                self.on_error(call, name)
                break
        self._reopen_for_waiting()

    def _reopen_for_waiting(self) -> None:
        live = sum(1 for w in self._waiting if not w[0].finished)
        while live > self._opening and len(self._all) + self._opening < self.limit and not self._closed:
            self._open()

    def _release(self, conn: _Connection) -> None:
        waiting = self._waiting
        while waiting:
            call, data, head_only, retry = waiting.popleft()
            if not call.finished:
                conn.send(call, data, head_only, retry)
                return
        self._idle.append(conn)

    def _lost(self, conn: _Connection) -> None:
        self._all.discard(conn)
        try:
            self._idle.remove(conn)
        except ValueError:
            pass
        if self._waiting and not self._closed:
            self._reopen_for_waiting()
