"""HTTP targets: the same open-loop schedule and three-time recording, over a keep-alive pool.

A status outside 2xx is an ``error`` outcome with type ``HTTP <status>`` (so a shedding
server's 503s are counted, not hidden; redirects are not followed, so a 3xx shows too);
connection failures are errors named by their exception type (``ConnectionRefusedError``,
``ServerDisconnected`` …); the per-call timeout aborts the request's connection and
records ``timeout``. The pool holds at most ``max_in_flight`` connections, so it never
queues silently: waiting for a free slot happens in the executor, where it shows as lag.

The executor drives the target through callbacks (``astart``/``acancel``, see
``harness.engine.aio``); ``dispatch`` gives the same request as a coroutine for callers
that want one.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
from typing import Any, Callable, Dict, Mapping, NamedTuple, Optional
from urllib.parse import urlsplit

from harness import __version__
from harness.targets.http_client import ConnectionPool
from harness.record.recorder import FLAG_CACHE_HIT, FLAG_FALLBACK
from harness.targets.base import JsonBody, NamedFailure, Target, TargetError

__all__ = ["build_http_target", "HttpError", "CallFailed", "HttpAnswer", "METHODS", "flags_of_body"]

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 header name
_CACHE_HIT = re.compile(rb'"cache_hit"\s*:\s*true')
_FALLBACK = re.compile(rb'"fallback(?:_used)?"\s*:\s*true')


class HttpError(NamedFailure):
    """A non-2xx answer; its outcome's error type is ``HTTP <status>``."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class CallFailed(NamedFailure, ConnectionError):
    """The exchange failed (``ConnectionRefusedError``, ``ServerDisconnected`` …); the outcome's
    error type is that name, as on the callback path."""


class HttpAnswer(NamedTuple):
    """A 2xx answer as the coroutine face returns it (``targets.flags_of`` reads the flags)."""

    flags: int

    @property
    def cache_hit(self) -> bool:
        return bool(self.flags & FLAG_CACHE_HIT)

    @property
    def fallback_used(self) -> bool:
        return bool(self.flags & FLAG_FALLBACK)


def flags_of_body(body: bytes) -> int:
    """Cache-hit / fallback bits from a JSON answer, without parsing all of it (the reference
    service's feature answers carry 256 floats; a full parse per answer would cost more than
    the request)."""
    if b'"cache_hit"' not in body and b'"fallback' not in body:
        return 0
    return (FLAG_CACHE_HIT if _CACHE_HIT.search(body) else 0) | (FLAG_FALLBACK if _FALLBACK.search(body) else 0)


def _headers(settings: Mapping[str, Any]) -> Dict[str, str]:
    raw = settings.get("headers") or {}
    if not isinstance(raw, Mapping):
        raise TargetError(f"http.headers: expected a mapping of name -> value, got {raw!r}")
    out: Dict[str, str] = {}
    for k, v in raw.items():
        name, value = str(k), str(v)
        if not _TOKEN.match(name):
            raise TargetError(f"http.headers.{name}: not a valid header name")
        if "\r" in value or "\n" in value:
            raise TargetError(f"http.headers.{name}: a header value cannot contain a line break")
        if name.lower() in ("content-length", "transfer-encoding", "connection", "host"):
            raise TargetError(f"http.headers.{name}: set by the harness (keep-alive connection, exact length)")
        out[name] = value
    return out


class _Request:
    """Bytes on the wire for one target: the head is built once, the body per request."""

    def __init__(self, method: str, url: str, headers: Mapping[str, str]) -> None:
        parts = urlsplit(url)
        host = parts.hostname or ""
        try:
            port = parts.port
        except ValueError as exc:
            raise TargetError(f"target: bad port in {url!r}: {exc}") from None
        self.host = host
        self.port = port or (443 if parts.scheme == "https" else 80)
        host_header = f"[{host}]" if ":" in host else host
        if port is not None:
            host_header += f":{port}"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host_header}", f"User-Agent: lbh-harness/{__version__}",
                 "Accept: */*"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.user_ctype = any(k.lower() == "content-type" for k in headers)
        self.head = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        self.bare = self.head + (b"Content-Length: 0\r\n\r\n" if method in ("POST", "PUT", "PATCH") else b"\r\n")
        self.head_only = method == "HEAD"
        self.idempotent = method in ("GET", "HEAD", "PUT", "DELETE")  # RFC 9110 9.2.2: safe to send again

    def encode(self, body: Any) -> bytes:
        if body is None:
            return self.bare
        if isinstance(body, JsonBody):
            data, ctype = body, b"" if self.user_ctype else b"Content-Type: application/json\r\n"
        elif isinstance(body, (bytes, bytearray, memoryview)):
            data, ctype = bytes(body), b""
        elif isinstance(body, str):
            data, ctype = body.encode(), b""
        else:
            data = json.dumps(body, separators=(",", ":")).encode()
            ctype = b"" if self.user_ctype else b"Content-Type: application/json\r\n"
        return b"%s%sContent-Length: %d\r\n\r\n%s" % (self.head, ctype, len(data), data)


def build_http_target(url: str, *, payload: Optional[Callable[[int], Any]], settings: Mapping[str, Any],
                      max_in_flight: int) -> Target:
    """``settings``: ``method`` (GET unless a payload is given, then POST), ``headers``, and
    ``verify`` (check the server's TLS certificate; default true)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise TargetError(f"target: not an http(s) URL: {url!r}")
    unknown = sorted(set(settings) - {"method", "headers", "verify"})
    if unknown:
        raise TargetError(f"http.{unknown[0]}: unknown setting (known: method, headers, verify)")
    method = str(settings.get("method") or ("POST" if payload else "GET")).upper()
    if method not in METHODS:
        raise TargetError(f"http.method: expected one of {', '.join(METHODS)}, got {method!r}")
    verify = settings.get("verify", True)
    if not isinstance(verify, bool):
        raise TargetError(f"http.verify: expected true or false, got {verify!r}")
    request = _Request(method, url, _headers(settings))
    make_body = payload
    if make_body is not None:
        request.encode(make_body(0))  # a generator that builds a pool on first use does it now, not on the clock
    label = f"{method} {parts.path or '/'}"
    tls: Optional[ssl.SSLContext] = None
    if parts.scheme == "https":
        tls = ssl.create_default_context()
        if not verify:
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE
    state: Dict[str, Any] = {}

    def on_response(call: Any, status: int, body: bytes) -> None:
        if 200 <= status < 300:
            call.done(None, flags_of_body(body) if body else 0)
        else:
            call.done(f"HTTP {status}", 0)

    def on_error(call: Any, name: str) -> None:
        call.done(name, 0)

    async def open_() -> None:
        state["pool"] = ConnectionPool(request.host, request.port, limit=max_in_flight, ssl=tls,
                                       on_response=on_response, on_error=on_error)

    async def close_() -> None:
        pool = state.pop("pool", None)
        if pool is not None:
            await pool.close()

    encode, head_only, retry = request.encode, request.head_only, request.idempotent
    if make_body is None:
        bare = request.bare

        def astart(k: int, call: Any) -> None:
            state["pool"].send(call, bare, head_only, retry)
    else:
        def astart(k: int, call: Any) -> None:
            state["pool"].send(call, encode(make_body(k)), head_only, retry)

    def acancel(call: Any) -> None:
        pool = state.get("pool")
        if pool is not None:
            pool.cancel(call)

    async def call_once(k: int) -> HttpAnswer:
        """One request as a coroutine (closed-loop users call it); raises ``HttpError`` for a
        non-2xx answer and ``CallFailed`` when the exchange failed. Cancelling it aborts the
        request's connection."""
        fut = asyncio.get_running_loop().create_future()
        box = _FutureCall(fut)
        try:
            astart(k, box)
            return await fut
        except BaseException:
            box.finished = True
            acancel(box)
            raise

    def dispatch(k: int):
        return label, call_once, (k,)

    return Target(label, (label,), dispatch, is_async=True, aopen=open_, aclose=close_,
                  astart=astart, acancel=acancel)


class _FutureCall:
    """A call whose end resolves a future (the coroutine face of the callback target)."""

    __slots__ = ("fut", "handle", "finished")

    def __init__(self, fut: "asyncio.Future[HttpAnswer]") -> None:
        self.fut, self.handle, self.finished = fut, None, False

    def done(self, error: Optional[str], flags: int) -> None:
        if self.finished or self.fut.done():
            return
        self.finished = True
        if error is None:
            self.fut.set_result(HttpAnswer(flags))
        elif error.startswith("HTTP "):
            self.fut.set_exception(HttpError(int(error[5:])))
        else:
            self.fut.set_exception(CallFailed(error))
