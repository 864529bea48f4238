"""uvicorn's httptools protocol with the bounds uvicorn itself lacks: a header read
deadline, a header size limit and a connection cap that idle connections cannot hold.

Why here and not in the ASGI app: until a request's headers are complete, the app never
sees the connection. Without these bounds a client that connects and sends nothing (or a
header a byte at a time, or 100 MB of one header) holds a file descriptor and memory
forever, and enough of them stop the server answering anyone, probes included.

* **Header deadline** (``header_read_timeout``): armed when a connection is made and when
  the first byte of a later request arrives on a kept-alive connection; cancelled when the
  headers are complete. When it fires the client gets 408 (or a plain close if it sent
  nothing) and the connection closes. Between requests uvicorn's keep-alive timeout rules.
* **Header size** (``max_header_bytes``): bytes received before the blank line that ends
  the headers are counted before the parser buffers them; past the limit: 431 and close.
* **Connection cap** (``max_connections``): at the cap, the connection idle longest with
  no request in progress (never sent one, is still sending headers, or is kept alive
  between requests) is closed to make room; if every connection has a request in
  progress the new one is closed at once. A flood of idle connections therefore cannot
  lock others out, and file descriptors stay bounded.

* **Shutdown without resets**: when the server closes, a connection that was accepted
  but whose request has not fully arrived yet is not cut (the client would see a reset
  for a request it already sent): its request is served, with ``Connection: close``, if
  its first byte arrives within :data:`SHUTDOWN_LINGER` seconds and its headers within the
  header deadline. Idle kept-alive connections close at once, as in uvicorn.

Bodies are bounded in the ASGI layer (:class:`~.overload.HTTPLayer`): read with a deadline
before any concurrency slot is taken.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["ConnectionLimits", "GuardedHttpToolsProtocol", "protocol_class", "REJECT_REASONS"]

#: ``lbh_http_connections_rejected_total`` reasons.
REJECT_REASONS = ("header_timeout", "header_too_large", "connection_limit", "evicted_idle")

_TERMINATORS = (b"\r\n\r\n", b"\n\n")

#: On shutdown, how long a just-accepted connection may take to send its first byte.
SHUTDOWN_LINGER = 0.5


@dataclass(frozen=True)
class ConnectionLimits:
    header_read_timeout: float
    max_header_bytes: int
    max_connections: int
    #: called with a REJECT_REASONS entry each time a connection is cut off
    on_reject: Callable[[str], None] = lambda reason: None


def _raw_response(status: int, phrase: str, error: str, message: str) -> bytes:
    body = json.dumps({"error": error, "message": message, "field": None}).encode()
    return (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode("latin-1") + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """One connection; see the module docstring. ``limits`` is set by :func:`protocol_class`."""

    limits: ConnectionLimits

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._awaiting_head = True  # the next bytes belong to a request line / headers
        self._head_bytes = 0  # bytes of the current head received so far
        self._tail = b""  # last bytes of the previous chunk (a terminator may straddle)
        self._last_active = 0.0
        self._cut = False  # answered 408/431 or evicted: ignore anything more
        self._requests = 0  # request heads completed on this connection
        self._shutting_down = False

    # the cap ----------------------------------------------------------------------

    def _idle(self) -> bool:
        """No request of this connection is with the app."""
        return self.cycle is None or self.cycle.response_complete

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        limits = self.limits
        conns = self.connections
        self._last_active = self.loop.time()
        if len(conns) >= limits.max_connections:
            victim = None
            for c in conns:
                if isinstance(c, GuardedHttpToolsProtocol) and not c._cut and c._idle():
                    if victim is None or c._last_active < victim._last_active:
                        victim = c
            if victim is None:
                self.transport = transport
                self._cut = True
                limits.on_reject("connection_limit")
                transport.abort()
                return
            victim._evict()
        super().connection_made(transport)
        self._arm_head_timer()

    def _evict(self) -> None:
        self._cut = True
        self._cancel_head_timer()
        self.connections.discard(self)  # the slot is free now, not when the loop gets to it
        self.limits.on_reject("evicted_idle")
        self.transport.abort()

    # the header deadline ----------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.header_read_timeout, self._head_timeout)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self._cut or not self._awaiting_head or self.transport.is_closing():
            return
        if not self._idle():
            return  # a request is with the app (pipelined head pending): the app's deadlines rule
        self.limits.on_reject("header_timeout")
        self._cut = True
        if self._head_bytes:
            self.transport.write(_raw_response(
                408, "Request Timeout", "request_timeout",
                f"headers: not complete within header_read_timeout={self.limits.header_read_timeout:g} s",
            ))
        self.transport.close()

    # bytes in -------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._cut:
            return
        self._last_active = self.loop.time()
        if self._awaiting_head:
            buf = self._tail + data
            ends = [i for i in (buf.find(t) for t in _TERMINATORS) if i >= 0]
            head_part = (min(ends) + 4 - len(self._tail)) if ends else len(data)
            self._head_bytes += max(head_part, 0)
            if self._head_bytes > self.limits.max_header_bytes:
                self._reject_head()
                return
            self._tail = buf[-3:]
            self._arm_head_timer()
        super().data_received(data)

    def _reject_head(self) -> None:
        self._cut = True
        self._cancel_head_timer()
        self.limits.on_reject("header_too_large")
        self.transport.write(_raw_response(
            431, "Request Header Fields Too Large", "headers_too_large",
            f"headers: larger than max_header_bytes={self.limits.max_header_bytes}",
        ))
        self.transport.close()

    # parser callbacks ---------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._requests += 1
        self._cancel_head_timer()
        super().on_headers_complete()
        if self._shutting_down and self.cycle is not None:
            self.cycle.keep_alive = False  # served, then closed

    # shutdown ------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Called by uvicorn when the server closes (after the listener closed)."""
        if self._cut or self.transport is None or self.transport.is_closing():
            return
        self._shutting_down = True
        if self._idle() and self._awaiting_head and (self._head_bytes > 0 or self._requests == 0):
            # a request is (probably) on its way on a connection we accepted: let it in
            if self._head_bytes == 0:
                self.loop.call_later(SHUTDOWN_LINGER, self._close_if_quiet)
            return
        super().shutdown()

    def _close_if_quiet(self) -> None:
        if self._idle() and self._head_bytes == 0 and not self.transport.is_closing():
            self.transport.close()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._awaiting_head = True
        self._head_bytes = 0
        self._tail = b""

    def on_response_complete(self) -> None:
        self._last_active = self.loop.time()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        if self.flow is None:  # refused in connection_made: nothing of uvicorn's to undo
            self.connections.discard(self)
            return
        super().connection_lost(exc)


def protocol_class(limits: ConnectionLimits) -> type[GuardedHttpToolsProtocol]:
    """A protocol class bound to ``limits`` (uvicorn instantiates it per connection)."""
    return type("LbhHttpProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})
