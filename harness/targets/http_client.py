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

Failures are named in words a reader acts on (``DNS: cannot resolve host 'x'``,
``connection refused``, ``TLS: certificate verify failed`` …), not exception class names
(``gaierror``); :func:`describe_failure` makes the name and a longer sample. While
``on_response`` runs, ``pool.answer_bytes`` holds the answer's bytes on the wire and
``pool.answer_headers`` the headers asked for (``want_headers``); while ``on_error`` runs,
``pool.error_detail`` holds the failure's sample text.
"""

from __future__ import annotations

import asyncio
import errno as _errno
import socket
import ssl as _ssl
from collections import deque
from typing import Any, Callable, Deque, Dict, FrozenSet, List, Optional, Set, Tuple

import httptools

__all__ = ["ConnectionPool", "SERVER_DISCONNECTED", "BAD_RESPONSE", "describe_failure"]

#: error names for the two failures that have no exception of their own
SERVER_DISCONNECTED = "server closed the connection"
BAD_RESPONSE = "bad HTTP response"

_ERRNO_WORDS = {
    _errno.ECONNREFUSED: "connection refused",
    _errno.ECONNRESET: "connection reset by peer",
    _errno.ECONNABORTED: "connection aborted",
    _errno.ENETUNREACH: "network unreachable",
    _errno.EHOSTUNREACH: "host unreachable",
    _errno.ETIMEDOUT: "connect timed out",
    _errno.EPIPE: "connection closed while sending (broken pipe)",
    _errno.EADDRNOTAVAIL: "cannot assign the local address (ports exhausted?)",
    _errno.EMFILE: "too many open files",
}


def describe_failure(exc: Optional[BaseException], host: str, port: int) -> Tuple[str, str]:
    """``(error type, sample)`` for a failed connection or exchange, in words: the type is
    a bounded name (it becomes an error type in the result), the sample says more."""
    where = f"{host}:{port}"
    if exc is None:
        return SERVER_DISCONNECTED, f"{where} closed the connection before answering"
    if isinstance(exc, socket.gaierror):
        return f"DNS: cannot resolve host {host!r}", f"DNS lookup of {host!r} failed: {exc.strerror or exc}"
    if isinstance(exc, _ssl.SSLCertVerificationError):
        why = exc.verify_message or exc.reason or str(exc)
        return "TLS: certificate verify failed", f"TLS with {where}: certificate verify failed: {why}"
    if isinstance(exc, _ssl.SSLError):
        reason = (exc.reason or "handshake failed").replace("_", " ").lower()
        return f"TLS: {reason}", f"TLS with {where}: {exc}"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)) and not getattr(exc, "errno", None):
        return "connect timed out", f"connecting to {where} timed out"
    if isinstance(exc, OSError) and exc.errno in _ERRNO_WORDS:
        words = _ERRNO_WORDS[exc.errno]
        return words, f"{words}: {where} ({exc.strerror or exc})"
    if isinstance(exc, OSError) and exc.errno:
        words = (exc.strerror or type(exc).__name__).lower()
        return f"connection failed: {words}", f"connection to {where} failed: {exc}"
    return type(exc).__name__, f"{where}: {type(exc).__name__}: {exc}"

OnResponse = Callable[[Any, int, bytes], None]
OnError = Callable[[Any, str], None]


class _Connection(asyncio.Protocol):
    """One keep-alive connection; ``httptools`` calls the ``on_*`` methods while parsing."""

    __slots__ = ("pool", "transport", "parser", "call", "body", "head_only", "done_in_headers", "data",
                 "retry", "served", "answered", "rx", "headers", "_want")

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
        self.rx = 0             # bytes of the current answer on the wire
        self.headers: Optional[Dict[str, str]] = None  # the headers asked for, of the current answer
        self._want = pool.want_headers

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
        self.rx += len(data)
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
            self.pool._error(call, exc)

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
        self.rx = 0
        call.handle = self
        self.pool.bytes_sent += len(data)
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
        rx, headers = self.rx, self.headers
        self.headers = None
        pool = self.pool
        pool.bytes_received += rx
        # free the connection first: the answer's callback may send the next request at once
        if keep_alive:
            pool._release(self)
        else:
            self.transport.close()
        pool.answer_bytes, pool.answer_headers = rx, headers
        pool.on_response(call, status, body)

    def _fail(self, name: str) -> None:
        call, self.call = self.call, None
        self.body.clear()
        self.transport.abort()
        if call is not None:
            self.pool.error_detail = f"{name} from {self.pool.host}:{self.pool.port}"
            self.pool.on_error(call, name)


class _HeaderConnection(_Connection):
    """A connection that also keeps some answer headers (gzip, redirects ask for them): a
    separate class, because httptools calls ``on_header`` for every header of every answer
    once the method exists, and the plain hot path should not pay for it."""

    __slots__ = ()

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        if key in self._want:
            if self.headers is None:
                self.headers = {}
            self.headers[key] = value.decode("latin-1")


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
        want_headers: FrozenSet[str] = frozenset(),
        server_hostname: Optional[str] = None,
    ) -> None:
        """``want_headers``: lower-case names of answer headers to keep (``pool.answer_headers``);
        ``server_hostname``: the TLS name to check (default ``host``)."""
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
        self.want_headers = frozenset(h.lower() for h in want_headers)
        self._conn_class = _HeaderConnection if self.want_headers else _Connection
        self.server_hostname = server_hostname or host
        self.bytes_sent = 0      # request bytes written, over the pool's life
        self.bytes_received = 0  # answer bytes read (complete answers)
        #: valid while on_response / on_error run (see the module docstring)
        self.answer_bytes = 0
        self.answer_headers: Optional[Dict[str, str]] = None
        self.error_detail = ""

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
                self.error_detail = "the run ended before a connection was free"
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
            cls = self._conn_class
            _t, conn = await loop.create_connection(
                lambda: cls(self), self.host, self.port, ssl=self.ssl,
                server_hostname=self.server_hostname if self.ssl is not None else None)
        except (OSError, _ssl.SSLError, asyncio.TimeoutError) as exc:
            self._opening -= 1
            self._connect_failed(exc)
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

    def _connect_failed(self, exc: BaseException) -> None:
        # the oldest live waiting call takes the failure (as a client with one connection
        # per request would report it); the others keep waiting for another try
        while self._waiting:
            call = self._waiting.popleft()[0]
            if not call.finished:
                self._error(call, exc)
                break
        self._reopen_for_waiting()

    def _error(self, call: Any, exc: Optional[BaseException]) -> None:
        name, self.error_detail = describe_failure(exc, self.host, self.port)
        self.on_error(call, name)

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
