"""Overload control and HTTP server metrics: the ASGI layer every request passes first.

Policy (docs/service.md, "Overload"):

* **Time and size are bounded before anything is committed.** The layer reads the whole
  body first, within ``body_read_timeout`` (and, on work routes, within the request
  deadline); a client too slow gets 408 and the connection closes. Only then does the
  app parse and validate it (bodies over :data:`INLINE_PARSE_BYTES` on a one-thread parse
  pool, so a large body never stalls the event loop for others), and only a valid
  request asks for a slot. A slow or large body therefore never holds a concurrency
  slot. The request deadline (``request_timeout``, from the end of the headers) covers
  read, parse and compute: 504 when it passes after the body arrived. Header size, header
  read time and connections are bounded in :mod:`.protocol`; header count here (431).
* **Bounded concurrency, no queue.** Work routes (the ``/v1`` routes that compute) need one of
  ``max_concurrency`` slots. With none free the answer is immediately 503 with
  ``Retry-After`` and ``lbh_http_shed_total{reason="concurrency"}`` counts it. A queue
  in front of a CPU-bound model only converts overload into latency that every queued
  request pays; shedding keeps the admitted requests inside the budget and tells the
  client (or the load balancer) to go elsewhere. Probes, ``/metrics`` and the OpenAPI
  document need no slot, so a saturated server still reports itself.
* **Slots cover computations, not just requests.** Blocking work runs on a dedicated
  pool of exactly ``max_concurrency`` threads. A request that times out gets 504 at its
  deadline, but torch cannot be pre-empted, so its computation keeps the slot until it
  really ends: the server never runs more than ``max_concurrency`` computations, and a
  timeout storm turns into shedding instead of CPU oversubscription.
* **Body size.** A ``Content-Length`` above ``max_body_bytes`` is answered 413 before
  the body is read; a chunked body is counted while it streams and cut off with 413.
  A work route's body must be ``application/json`` (else 415).
* **Not ready.** Until the model is loaded and warmed up, work routes answer 503
  (``reason="not_ready"``).

Metrics, in the registry given to ``create_app``:
``lbh_http_request_duration_seconds{route, method, status}`` (the budget buckets; route is
the route template or ``unmatched``, never the raw path; exemplar = the server span's
trace id when tracing is on), ``lbh_http_requests_in_flight``, ``lbh_http_shed_total{reason}``.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from time import perf_counter
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.exceptions import HTTPException
from starlette.routing import Match

from instrumentation import DEFAULT_BUCKETS

__all__ = [
    "BodyParser",
    "BodyTooLarge",
    "INLINE_PARSE_BYTES",
    "Overloaded",
    "HTTPLayer",
    "HttpMetrics",
    "RequestTimedOut",
    "SHED_REASONS",
    "Slot",
    "WorkPool",
    "http_metrics",
    "json_error",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: ``lbh_http_shed_total`` reasons (children exist from the start so rate() sees zeros).
SHED_REASONS = ("concurrency", "not_ready", "sessions")
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
UNMATCHED = "unmatched"


# --------------------------------------------------------------------------- errors


class RequestTimedOut(Exception):
    """The request's deadline passed before its computation ended (answered 504)."""


class Overloaded(Exception):
    """No free concurrency slot (answered 503 + Retry-After, counted as a concurrency shed)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"all {limit} concurrency slots are busy (max_concurrency); retry later")


class BodyTooLarge(HTTPException):
    """Raised from the body stream once it passes ``max_body_bytes`` (answered 413).

    An ``HTTPException`` so FastAPI's body reader re-raises it as is."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"body: larger than max_body_bytes={limit}")


def json_error(
    status: int, error: str, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """(status, raw headers, body) of the service's error format."""
    body = json.dumps({"error": error, "message": message, "field": field}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    for k, v in (headers or {}).items():
        raw.append((k.lower().encode("latin-1"), v.encode("latin-1")))
    return status, raw, body


# --------------------------------------------------------------------------- metrics


class HttpMetrics:
    """The service's own families (one set per registry: see :func:`http_metrics`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.duration = Histogram(
            "http_request_duration_seconds",
            "HTTP requests by route template, method and status, from first byte in to last byte out.",
            ["route", "method", "status"],
            namespace="lbh",
            buckets=DEFAULT_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "http_requests_in_flight", "HTTP requests being handled.", namespace="lbh", registry=registry
        )
        self.shed = Counter(
            "http_shed",
            "Requests refused with 503 before any work: concurrency (no free slot), "
            "not_ready (model still warming up), sessions (session table full).",
            ["reason"],
            namespace="lbh",
            registry=registry,
        )
        for reason in SHED_REASONS:
            self.shed.labels(reason)
        self.ready = Gauge(
            "service_ready", "1 once the model is loaded and warmed up, 0 before and while draining.",
            namespace="lbh", registry=registry,
        )
        self.slots_busy = Gauge(
            "service_slots_busy", "Concurrency slots held (running or timed-out computations).",
            namespace="lbh", registry=registry,
        )
        self.slots_limit = Gauge(
            "service_slots_limit", "max_concurrency.", namespace="lbh", registry=registry
        )
        self.sessions = Gauge("env_sessions", "Open environment sessions.", namespace="lbh", registry=registry)
        self.connections_rejected = Counter(
            "http_connections_rejected",
            "Connections cut off before a request reached the app: header_timeout (408 or close), "
            "header_too_large (431), connection_limit (refused at max_connections), evicted_idle "
            "(closed to admit a new connection at max_connections).",
            ["reason"], namespace="lbh", registry=registry,
        )
        self.body_read_timeouts = Counter(
            "http_body_read_timeouts",
            "Requests answered 408 because their body did not arrive within body_read_timeout.",
            namespace="lbh", registry=registry,
        )
        self.sessions_closed = Counter(
            "env_sessions_closed", "Environment sessions closed, by reason (deleted|idle).",
            ["reason"], namespace="lbh", registry=registry,
        )
        self._children: dict[tuple[str, str, str], Any] = {}
        self._lock = threading.Lock()

    def duration_child(self, route: str, method: str, status: int) -> Any:
        key = (route, method, str(status))
        child = self._children.get(key)
        if child is None:
            with self._lock:
                child = self._children.get(key)
                if child is None:
                    child = self._children[key] = self.duration.labels(*key)
        return child


_registry_metrics: weakref.WeakKeyDictionary[CollectorRegistry, HttpMetrics] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


def http_metrics(registry: CollectorRegistry) -> HttpMetrics:
    """The service families in ``registry``, created once (two apps on one registry share them)."""
    with _registry_lock:
        fam = _registry_metrics.get(registry)
        if fam is None:
            fam = _registry_metrics[registry] = HttpMetrics(registry)
        return fam


# --------------------------------------------------------------------------- concurrency


class Slot:
    """One admitted request's claim on the pool; released when the request *and* every
    computation it started have ended (reference counted, thread-safe)."""

    __slots__ = ("_pool", "_refs")

    def __init__(self, pool: WorkPool) -> None:
        self._pool = pool
        self._refs = 1

    def retain(self) -> None:
        with self._pool._lock:
            self._refs += 1

    def release(self) -> None:
        pool = self._pool
        with pool._lock:
            self._refs -= 1
            if self._refs == 0:
                pool._busy -= 1


class WorkPool:
    """``max_concurrency`` slots and a thread pool of the same size, so an admitted
    computation never waits for a thread."""

    def __init__(self, max_concurrency: int) -> None:
        self.limit = max_concurrency
        self._busy = 0
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="lbh-work")

    @property
    def busy(self) -> int:
        return self._busy

    def try_acquire(self) -> Slot | None:
        with self._lock:
            if self._busy >= self.limit:
                return None
            self._busy += 1
        return Slot(self)

    async def run(
        self,
        slot: Slot,
        deadline: float,
        fn: Callable[..., T],
        *args: Any,
        on_not_started: Callable[[], None] | None = None,
    ) -> T:
        """``fn(*args)`` on the pool (with the caller's context: trace parent), answered by
        ``deadline`` (event-loop time) or :class:`RequestTimedOut`; the computation keeps
        ``slot`` until it ends either way. ``fn`` is always submitted (it may own cleanup,
        like a session lock); ``on_not_started`` runs if submitting fails (pool shut down)."""
        loop = asyncio.get_running_loop()
        remaining = deadline - loop.time()
        if remaining <= 0:  # reading and parsing took the whole budget: do not start work for nobody
            if on_not_started is not None:
                on_not_started()
            raise RequestTimedOut("the request timeout passed before the computation could start")
        ctx = contextvars.copy_context()
        slot.retain()
        try:
            cfut = self._executor.submit(ctx.run, fn, *args)
        except BaseException:
            slot.release()
            if on_not_started is not None:
                on_not_started()
            raise
        cfut.add_done_callback(lambda _f: slot.release())
        fut = asyncio.wrap_future(cfut, loop=loop)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), remaining)
        except asyncio.TimeoutError:
            fut.add_done_callback(_retrieve)  # its outcome no longer has a reader
            raise RequestTimedOut(
                f"the computation did not finish within the request timeout ({remaining:.3g} s left at start)"
            ) from None

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no slot is held (or ``timeout``); True when idle."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while self._busy > 0:
            if loop.time() >= end:
                return False
            await asyncio.sleep(0.01)
        return True

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


#: Bodies at least this large are parsed and validated on the parse pool, not the event loop.
INLINE_PARSE_BYTES = 64 * 1024


class _Expired(Exception):
    """A queued parse whose request was already answered 504."""


class BodyParser:
    """Parses and validates large bodies on a small dedicated pool (one thread by default).

    JSON decoding and pydantic validation are C/Rust calls that hold the GIL, so more threads
    would not parse faster; one thread makes large bodies take turns, and after each one the
    thread rests ``rest`` (2) times as long as it parsed, so parsing holds the interpreter at
    most ``1 / (1 + rest)`` of the time however many large bodies arrive. A parse
    waits at most until its request's deadline (then 504); one still queued at its deadline
    is skipped rather than run for nobody.
    """

    def __init__(self, threads: int = 1, *, rest: float = 2.0) -> None:
        self._rest = rest
        self._resume_at = 0.0  # monotonic time before which the next parse waits
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="lbh-parse")

    async def parse(self, fn: Callable[[bytes], T], body: bytes, deadline: float) -> T:
        """``fn(body)`` on the pool, by ``deadline`` (event-loop time) or :class:`RequestTimedOut`."""
        loop = asyncio.get_running_loop()
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise RequestTimedOut("the request timeout passed while the body was read")
        end = time.monotonic() + remaining

        def job() -> T:
            # the previous parse held the GIL all along: rest before this one, so the event
            # loop and the computations have the interpreter most of the time whatever the queue
            pause = self._resume_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            if time.monotonic() > end:
                raise _Expired()
            t = time.monotonic()
            try:
                return fn(body)
            finally:
                now = time.monotonic()
                self._resume_at = now + (now - t) * self._rest

        fut = asyncio.wrap_future(self._executor.submit(job), loop=loop)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), remaining)
        except asyncio.TimeoutError:
            fut.add_done_callback(_retrieve)
            raise RequestTimedOut(
                f"the body ({len(body)} bytes) was not parsed within the request timeout"
            ) from None

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.debug("a timed-out computation ended with %r", fut.exception())


# --------------------------------------------------------------------------- the ASGI layer


Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class _Disconnected(Exception):
    """The client went away while its body was being read."""


class _ReadTimeout(Exception):
    """The body did not arrive by its read deadline."""


class HTTPLayer:
    """Outermost ASGI middleware: route template, limits, body read, metrics, span.

    ``routes`` are the app's Starlette routes (matched here once to learn the template;
    templates of parameter-free paths are cached). Requests to ``work_routes`` (templates)
    may run only when ``is_ready()``; they take a concurrency slot later, in the endpoint,
    once their body is read and valid (:class:`Overloaded` when none is free). The body of
    every POST/PUT/PATCH is read here in full, by ``body_read_timeout`` (work routes: also
    by the request deadline, ``request_timeout`` from now), and replayed to the app; the
    deadline goes to the app as ``scope["lbh.deadline"]`` (event-loop time).
    While ``is_draining()`` every response carries ``Connection: close``. ``tracer`` (an
    OpenTelemetry SDK tracer, or None) starts one SERVER span per request, continuing a
    W3C ``traceparent`` if the client sent one; the workload spans become its children.
    """

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        *,
        routes: Iterable[Any],
        metrics: HttpMetrics,
        pool: WorkPool,
        is_ready: Callable[[], bool],
        max_body_bytes: int,
        request_timeout: float,
        retry_after: int,
        body_read_timeout: float = 2.0,
        max_headers: int = 100,
        is_draining: Callable[[], bool] = lambda: False,
        work_routes: Iterable[str] = (),
        tracer: Any = None,
    ) -> None:
        self.app = app
        self._routes = list(routes)
        self._metrics = metrics
        self._pool = pool
        self._is_ready = is_ready
        self._is_draining = is_draining
        self._max_body = max_body_bytes
        self._max_headers = max_headers
        self._timeout = request_timeout
        self._body_timeout = body_read_timeout
        self._retry_after = retry_after
        self._tracer = tracer
        self._work_routes = frozenset(work_routes)
        self._static: dict[tuple[str, str], tuple[str, bool]] = {}
        self.requests_served = 0  # responses completed for work routes (drain accounting)

    # routing ----------------------------------------------------------------------

    def _route(self, scope: Scope) -> tuple[str, bool]:
        key = (scope["method"], scope["path"])
        hit = self._static.get(key)
        if hit is not None:
            return hit
        partial = None
        for route in self._routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                template = route.path
                result = (template, template in self._work_routes)
                if not getattr(route, "param_convertors", None) and len(self._static) < 4096:
                    self._static[key] = result
                return result
            if match == Match.PARTIAL and partial is None:
                partial = route.path
        if partial is not None:
            return partial, False  # wrong method: 405, no work
        return UNMATCHED, False

    # helpers ----------------------------------------------------------------------

    async def _send_error(self, send: Send, status: int, error: str, message: str, field: str | None,
                          headers: dict[str, str] | None = None) -> None:
        status, raw, body = json_error(status, error, message, field, headers)
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _body_headers(scope: Scope) -> tuple[int | None, bool, bytes | None]:
        """(Content-Length or None, chunked?, Content-Type or None)."""
        length, chunked, ctype = None, False, None
        for k, v in scope["headers"]:
            if k == b"content-length":
                try:
                    length = int(v)
                except ValueError:
                    length = None
            elif k == b"transfer-encoding":
                chunked = b"chunked" in v.lower()
            elif k == b"content-type":
                ctype = v
        return length, chunked, ctype

    @staticmethod
    def _is_json(ctype: bytes | None) -> bool:
        if ctype is None:
            return False
        media = ctype.split(b";", 1)[0].strip().lower()
        return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))

    def _start_span(self, scope: Scope, method: str, route: str) -> tuple[Any, Any]:
        from opentelemetry import context as otel_context
        from opentelemetry import propagate, trace
        from opentelemetry.trace import SpanKind

        carrier = {}
        for k, v in scope["headers"]:
            if k in (b"traceparent", b"tracestate", b"baggage"):
                carrier[k.decode("latin-1")] = v.decode("latin-1")
        parent = propagate.extract(carrier) if carrier else None
        span = self._tracer.start_span(
            f"{method} {route}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "http.route": route, "url.path": scope["path"]},
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        return span, token

    async def _read_body(self, receive: Receive, deadline: float) -> bytes:
        """The whole body by ``deadline`` (loop time), at most ``max_body_bytes``."""
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout_at(deadline):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _Disconnected()
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self._max_body:
                        raise BodyTooLarge(self._max_body)
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            raise _ReadTimeout() from None

    @staticmethod
    def _replay(body: bytes, receive: Receive) -> Receive:
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # waits for the disconnect, as the app expects

        return replay

    # the request ----------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = perf_counter()
        loop_t0 = asyncio.get_running_loop().time()
        metrics = self._metrics
        route, is_work = self._route(scope)
        method = scope["method"]
        status = 500
        span = token = None
        draining = self._is_draining

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.get("headers", [])
                if draining() and not any(k.lower() == b"connection" for k, _ in headers):
                    # keep-alive clients reconnect, to a replica that is not going away
                    message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        metrics.in_flight.inc()
        try:
            if self._tracer is not None:
                span, token = self._start_span(scope, method, route)
            if len(scope["headers"]) > self._max_headers:
                await self._send_error(
                    send_wrapper, 431, "too_many_headers",
                    f"headers: {len(scope['headers'])} fields, more than max_headers={self._max_headers}", None,
                    {"connection": "close"},
                )
                return
            length, chunked, ctype = self._body_headers(scope)
            if length is not None and length > self._max_body:
                await self._send_error(
                    send_wrapper, 413, "body_too_large",
                    f"body: {length} bytes is larger than max_body_bytes={self._max_body}", "body",
                    {"connection": "close"},
                )
                return
            if is_work and (chunked or (length or 0) > 0) and not self._is_json(ctype):
                got = "none" if ctype is None else ctype.decode("latin-1")[:100]
                await self._send_error(
                    send_wrapper, 415, "unsupported_media_type",
                    f"body: Content-Type must be application/json, got {got}", "body",
                )
                return
            if is_work and not self._is_ready():
                metrics.shed.labels("not_ready").inc()
                await self._send_error(
                    send_wrapper, 503, "not_ready", "the model is still loading or warming up; see /readyz",
                    None, {"retry-after": str(self._retry_after)},
                )
                return
            deadline = loop_t0 + self._timeout
            scope["lbh.deadline"] = deadline
            app_receive = receive
            if method in ("POST", "PUT", "PATCH"):
                read_by = loop_t0 + self._body_timeout
                try:
                    body = await self._read_body(receive, min(read_by, deadline) if is_work else read_by)
                except _ReadTimeout:
                    metrics.body_read_timeouts.inc()
                    limit = min(self._body_timeout, self._timeout) if is_work else self._body_timeout
                    await self._send_error(
                        send_wrapper, 408, "request_timeout",
                        f"body: not received within {limit:g} s of the headers "
                        "(body_read_timeout, request_timeout)", "body", {"connection": "close"},
                    )
                    return
                except BodyTooLarge:
                    await self._send_error(
                        send_wrapper, 413, "body_too_large", f"body: larger than max_body_bytes={self._max_body}",
                        "body", {"connection": "close"},
                    )
                    return
                except _Disconnected:
                    status = 499  # nobody to answer; recorded as nginx does
                    return
                app_receive = self._replay(body, receive)
            await self.app(scope, app_receive, send_wrapper)
            if is_work:
                self.requests_served += 1
        finally:
            elapsed = perf_counter() - t0
            child = metrics.duration_child(route, method if method in _METHODS else "other", status)
            if span is not None:
                self._end_span(span, token, status, child, elapsed)
            else:
                child.observe(elapsed)
            metrics.in_flight.dec()

    def _end_span(self, span: Any, token: Any, status: int, child: Any, elapsed: float) -> None:
        from opentelemetry import context as otel_context
        from opentelemetry.trace import Status, StatusCode

        try:
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
            ctx = span.get_span_context()
            if ctx.trace_flags.sampled:
                child.observe(elapsed, {"trace_id": "%032x" % ctx.trace_id, "span_id": "%016x" % ctx.span_id})
            else:
                child.observe(elapsed)
        finally:
            span.end()
            otel_context.detach(token)
