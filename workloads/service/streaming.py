"""``/v1/stream``: a WebSocket market-data feed that streams features for subscribed symbols.

Protocol (text frames, JSON)::

    client → {"subscribe": "AAPL", "rate": 50, "count": 500}     # count optional: until unsubscribed
    server ← {"type": "subscribed", "symbol": "AAPL", "rate": 50.0, "count": 500, "start_ns": ...}
    server ← {"type": "tick", "symbol": "AAPL", "seq": 0, "due_ns": ..., "sent_ns": ..., "features": {...}}
    ...                                                            # seq 0, 1, 2 … every 1/rate s
    server ← {"type": "end", "symbol": "AAPL", "sent": 498, "dropped": 2}
    client → {"unsubscribe": "AAPL"}                               # ends a subscription early

``due_ns`` is when the server's fixed-rate schedule meant to send the message and
``sent_ns`` when it was handed to the socket (both ``time.time_ns()``, so a client on
the same clock can split latency into server lateness and transit). Sequence numbers are
per subscription and never skipped by the schedule: a missing number is a message the
server dropped (a slow consumer), so the client can count gaps.

Why it is cheap per message: the features are not extracted per message. Each symbol has
a seeded synthetic market-data series (:mod:`workloads.market_data`); one refresher task
per subscribed symbol advances it one bar every ``bar_seconds`` and runs the real
extractor (cache → model → fallback) on that bar's window, on a worker thread, then keeps
a compact digest (close, source, cache hit, the first feature values, the vector's norm)
as a ready JSON string. A message therefore costs one string format (sequence number and
two timestamps into the digest, about 250 bytes) and one WebSocket frame write; the model
runs once per bar per symbol, shared by every subscriber, whatever the message rate.

Bounds: ``max_connections`` streaming connections, ``max_subscriptions`` per connection,
``max_symbols`` distinct symbols at once (so the extractor runs at most ``max_symbols /
bar_seconds`` times a second for all streams together), ``rate`` ≤ ``max_rate``, client
frames ≤ ``max_frame_bytes``. Bad input gets an error
message naming the field (``{"type": "error", "status": 422, "field": "rate", ...}``) and
the connection closes with code ``4000 + status`` (4422 invalid input, 4429 a limit,
4503 not ready or full). Slow consumers cannot grow memory: each connection's outgoing
queue holds at most ``max_pending`` messages; a message due while it is full is dropped
(``lbh_stream_messages_dropped_total``, the client sees a sequence gap) and a connection
that has dropped for ``slow_consumer_seconds`` in a row is closed with 4008
(``lbh_stream_closed_total{reason="slow_consumer"}``).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
import zlib
from collections import deque
from dataclasses import dataclass
from typing import Any, Deque, Dict, Optional, Protocol, Tuple

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..market_data import WARMUP_BARS, MarketDataGenerator, compute_features

__all__ = ["StreamLimits", "StreamInputError", "SubscribeRequest", "parse_client_message", "StreamHub",
           "mount_streaming", "STREAM_PATH", "CLOSE_REASONS"]

STREAM_PATH = "/v1/stream"
CLOSE_REASONS = ("client", "invalid_input", "limit", "not_ready", "slow_consumer", "server_error")
_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9.\-]{0,11}$")
_WINDOW = 60      # timesteps of each bar's feature window (the extractor's default input)
_SERIES = 512     # bars per symbol before the series wraps (then the extractor's cache answers)


@dataclass(frozen=True)
class StreamLimits:
    """What one service instance allows its streaming clients."""

    max_connections: int = 256
    max_subscriptions: int = 8
    max_symbols: int = 64          # distinct symbols streamed at once (each costs one extraction per bar)
    max_rate: float = 1000.0
    max_count: int = 10_000_000
    max_pending: int = 256
    slow_consumer_seconds: float = 2.0
    max_frame_bytes: int = 4096
    bar_seconds: float = 1.0


class StreamInputError(ValueError):
    """A client frame the stream refuses; ``status`` 422 (bad field) or 429 (a limit)."""

    def __init__(self, field: str, message: str, status: int = 422) -> None:
        super().__init__(message if message.startswith(field) else f"{field}: {message}")
        self.field = field
        self.status = status


@dataclass(frozen=True)
class SubscribeRequest:
    """``{"subscribe": symbol, "rate": r, "count": n}`` (``count`` None: until unsubscribed),
    or ``{"unsubscribe": symbol}`` (``rate`` 0)."""

    action: str
    symbol: str
    rate: float = 0.0
    count: Optional[int] = None


def _symbol(raw: Any, field: str) -> str:
    if not isinstance(raw, str) or not _SYMBOL.match(raw.upper()):
        raise StreamInputError(field, f"expected a symbol of 1-12 letters, digits, '.' or '-', got {raw!r:.40}")
    return raw.upper()


def parse_client_message(text: Any, limits: StreamLimits) -> SubscribeRequest:
    """One client frame, validated; :class:`StreamInputError` names the field."""
    if not isinstance(text, str):
        raise StreamInputError("message", "expected a text frame with a JSON object, got a binary frame")
    if len(text) > limits.max_frame_bytes:
        raise StreamInputError("message", f"frame of {len(text)} bytes exceeds {limits.max_frame_bytes}", 413)
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise StreamInputError("message", f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise StreamInputError("message", f"expected a JSON object, got {type(obj).__name__}")
    if "unsubscribe" in obj:
        extra = sorted(set(obj) - {"unsubscribe"})
        if extra:
            raise StreamInputError(extra[0], "unknown field with unsubscribe")
        return SubscribeRequest("unsubscribe", _symbol(obj["unsubscribe"], "unsubscribe"))
    if "subscribe" not in obj:
        raise StreamInputError("subscribe", "missing: send {\"subscribe\": SYMBOL, \"rate\": MESSAGES_PER_S}")
    extra = sorted(set(obj) - {"subscribe", "rate", "count"})
    if extra:
        raise StreamInputError(extra[0], "unknown field (known: subscribe, rate, count)")
    symbol = _symbol(obj["subscribe"], "subscribe")
    rate = obj.get("rate")
    if (not isinstance(rate, (int, float)) or isinstance(rate, bool) or not math.isfinite(rate)
            or not 0 < rate <= limits.max_rate):
        raise StreamInputError("rate", f"expected messages per second in (0, {limits.max_rate:g}], got {rate!r:.40}")
    count = obj.get("count")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool)
                              or not 1 <= count <= limits.max_count):
        raise StreamInputError("count", f"expected a whole number of messages in [1, {limits.max_count}], "
                                        f"got {count!r:.40}")
    return SubscribeRequest("subscribe", symbol, float(rate), count)


class _StreamMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        kw: Dict[str, Any] = {"namespace": "lbh", "registry": registry}
        self.connections = Gauge("stream_connections", "Open streaming (WebSocket) connections.", **kw)
        self.subscriptions = Gauge("stream_subscriptions", "Active stream subscriptions.", **kw)
        self.sent = Counter("stream_messages_sent", "Stream messages written to a socket.", **kw)
        self.dropped = Counter("stream_messages_dropped", "Stream messages dropped: the connection's queue was "
                               "full (a slow consumer).", **kw)
        self.closed = Counter("stream_closed", "Streaming connections closed, by reason.", ["reason"], **kw)
        for reason in CLOSE_REASONS:
            self.closed.labels(reason)


class _Feed:
    """One symbol's bars and the digest of the latest bar's features (a JSON string)."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        gen = MarketDataGenerator(seed=zlib.crc32(symbol.encode()))
        self.series = compute_features(gen.frame(_SERIES + _WINDOW + WARMUP_BARS))[WARMUP_BARS:]
        self.bar = -1
        self.digest = "{}"
        self.refs = 0
        self.task: Optional[asyncio.Task] = None
        self.ready = asyncio.Event()  # set once the first bar's digest is there

    def window(self, bar: int) -> np.ndarray:
        i = bar % _SERIES
        return self.series[i:i + _WINDOW]


def _digest(bar: int, window: np.ndarray, result: Any, error: Optional[str]) -> str:
    close = round(float(window[-1, 3]), 4)
    if result is None:
        return json.dumps({"bar": bar, "close": close, "source": "unavailable", "error": error},
                          separators=(",", ":"))
    feats = np.asarray(result.features, dtype=np.float64)
    return json.dumps({"bar": bar, "close": close, "source": result.source, "cache_hit": bool(result.cache_hit),
                       "dim": int(feats.size), "head": [round(float(x), 5) for x in feats[:4]],
                       "norm": round(float(np.linalg.norm(feats)), 5)}, separators=(",", ":"))


class StreamState(Protocol):
    """What the stream needs of the service (``app.ServiceState`` is one)."""

    extractor: Optional[Any]
    draining: bool

    def is_ready(self) -> bool:
        ...  # pragma: no cover - a protocol


class StreamHub:
    """The streams of one app: connections count, per-symbol feeds, metrics."""

    def __init__(self, state: "StreamState", limits: StreamLimits, registry: CollectorRegistry) -> None:
        self.state = state
        self.limits = limits
        self.metrics = _StreamMetrics(registry)
        self.connections = 0
        self.feeds: Dict[str, _Feed] = {}

    async def _refresh(self, feed: _Feed) -> None:
        """Advance one bar and extract its features (on a worker thread)."""
        feed.bar += 1
        window = feed.window(feed.bar)
        extractor = self.state.extractor
        result, error = None, None
        if extractor is None:
            error = "extractor not loaded"
        else:
            try:
                result = await asyncio.get_running_loop().run_in_executor(None, extractor.extract, window)
            except Exception as exc:  # the feed goes on; the digest says why it has no features
                error = f"{type(exc).__name__}: {exc}"[:200]
        feed.digest = _digest(feed.bar, window, result, error)

    async def _tick_bars(self, feed: _Feed) -> None:
        while True:
            await asyncio.sleep(self.limits.bar_seconds)
            await self._refresh(feed)

    async def acquire(self, symbol: str) -> _Feed:
        feed = self.feeds.get(symbol)
        if feed is None:
            if len(self.feeds) >= self.limits.max_symbols:
                raise StreamInputError("subscribe", f"at most {self.limits.max_symbols} symbols are streamed "
                                                    "at once; subscribe to one already streamed or retry later", 429)
            feed = self.feeds[symbol] = _Feed(symbol)
            feed.refs += 1
            try:
                await self._refresh(feed)
            except BaseException:  # the connection went away meanwhile
                self.release(feed)
                raise
            finally:
                feed.ready.set()
        else:
            feed.refs += 1
            try:
                await feed.ready.wait()  # another subscriber is computing the first bar
            except BaseException:
                self.release(feed)
                raise
        if feed.task is None and feed.refs > 0:
            feed.task = asyncio.ensure_future(self._tick_bars(feed))
        return feed

    def release(self, feed: _Feed) -> None:
        feed.refs -= 1
        if feed.refs <= 0:
            if feed.task is not None:
                feed.task.cancel()
            if self.feeds.get(feed.symbol) is feed:
                del self.feeds[feed.symbol]


class _Closing(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _Subscription:
    __slots__ = ("symbol", "rate", "count", "feed", "task", "dropped", "queued")

    def __init__(self, req: SubscribeRequest, feed: _Feed) -> None:
        self.symbol, self.rate, self.count, self.feed = req.symbol, req.rate, req.count, feed
        self.task: Optional[asyncio.Task] = None
        self.dropped = 0
        self.queued = 0


class _Connection:
    """One client: a reader (subscribe / unsubscribe), one producer task per subscription
    and one sender draining a bounded queue to the socket."""

    def __init__(self, ws: WebSocket, hub: StreamHub) -> None:
        self.ws = ws
        self.hub = hub
        self.subs: Dict[str, _Subscription] = {}
        # items: ("tick", sub, seq, due_ns) | ("ctl", text); ticks bounded by max_pending
        self.queue: Deque[Tuple[Any, ...]] = deque()
        self.ticks_queued = 0
        self.wake = asyncio.Event()
        self.dropping_since: Optional[float] = None
        #: resolved with a _Closing when the connection must end (a sender blocked on a full
        #: socket never looks at the queue again, so the handler waits on this too)
        self.kill: asyncio.Future = asyncio.get_running_loop().create_future()

    def control(self, obj: Dict[str, Any]) -> None:
        self.queue.append(("ctl", json.dumps(obj, separators=(",", ":"))))
        self.wake.set()

    def offer(self, sub: _Subscription, seq: int, due_ns: int) -> None:
        lim = self.hub.limits
        if self.ticks_queued >= lim.max_pending:
            sub.dropped += 1
            self.hub.metrics.dropped.inc()
            now = time.monotonic()
            if self.dropping_since is None:
                self.dropping_since = now
            elif now - self.dropping_since > lim.slow_consumer_seconds and not self.kill.done():
                self.kill.set_result(_Closing(4008, "slow_consumer"))
            return
        self.dropping_since = None
        self.ticks_queued += 1
        self.queue.append(("tick", sub, seq, due_ns))
        self.wake.set()

    async def send_loop(self) -> None:
        ws, queue, sent = self.ws, self.queue, self.hub.metrics.sent
        while True:
            if not queue:
                self.wake.clear()
                await self.wake.wait()
                continue
            item = queue.popleft()
            if item[0] == "tick":
                self.ticks_queued -= 1
                sub, seq, due = item[1], item[2], item[3]
                text = (f'{{"type":"tick","symbol":"{sub.symbol}","seq":{seq},"due_ns":{due},'
                        f'"sent_ns":{time.time_ns()},"features":{sub.feed.digest}}}')
            else:
                text = item[1]
            await ws.send_text(text)
            if item[0] == "tick":
                sent.inc()

    async def produce(self, sub: _Subscription) -> None:
        """Messages ``0, 1, …`` due at ``start + seq / rate`` (a fixed schedule on the
        monotonic clock: a late wake-up sends every message already due, no drift)."""
        period = 1e9 / sub.rate
        start = time.perf_counter_ns()
        wall0 = time.time_ns()
        self.control({"type": "subscribed", "symbol": sub.symbol, "rate": sub.rate, "count": sub.count,
                      "start_ns": wall0})
        seq, count = 0, sub.count
        try:
            while count is None or seq < count:
                wait = start + seq * period - time.perf_counter_ns()
                if wait > 0:
                    await asyncio.sleep(wait / 1e9)
                due_until = int((time.perf_counter_ns() - start) // period) + 1
                if count is not None:
                    due_until = min(due_until, count)
                while seq < due_until:
                    self.offer(sub, seq, wall0 + int(seq * period))
                    seq += 1
            self.control({"type": "end", "symbol": sub.symbol, "sent": seq - sub.dropped, "dropped": sub.dropped})
        finally:
            if self.subs.get(sub.symbol) is sub:
                self.remove(sub.symbol)

    def remove(self, symbol: str) -> None:
        sub = self.subs.pop(symbol, None)
        if sub is not None:
            self.hub.metrics.subscriptions.dec()
            self.hub.release(sub.feed)

    async def handle(self, req: SubscribeRequest) -> None:
        if req.action == "unsubscribe":
            sub = self.subs.get(req.symbol)
            if sub is None:
                raise StreamInputError("unsubscribe", f"not subscribed to {req.symbol}")
            self.remove(req.symbol)
            if sub.task is not None:
                sub.task.cancel()
            self.control({"type": "end", "symbol": req.symbol, "sent": None, "dropped": sub.dropped,
                          "reason": "unsubscribed"})
            return
        if req.symbol in self.subs:
            raise StreamInputError("subscribe", f"already subscribed to {req.symbol} on this connection")
        if len(self.subs) >= self.hub.limits.max_subscriptions:
            raise StreamInputError("subscribe", f"at most {self.hub.limits.max_subscriptions} subscriptions "
                                                "per connection", 429)
        feed = await self.hub.acquire(req.symbol)
        sub = self.subs[req.symbol] = _Subscription(req, feed)
        self.hub.metrics.subscriptions.inc()
        sub.task = asyncio.ensure_future(self.produce(sub))

    async def read_loop(self) -> None:
        while True:
            msg = await self.ws.receive()
            if msg["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(msg.get("code", 1000))
            text = msg.get("text")
            await self.handle(parse_client_message(text if text is not None else msg.get("bytes"),
                                                   self.hub.limits))

    def close_all(self) -> None:
        for symbol, sub in list(self.subs.items()):
            if sub.task is not None:
                sub.task.cancel()
            self.remove(symbol)


async def _refuse(ws: WebSocket, hub: StreamHub, status: int, field: Optional[str], message: str,
                  reason: str) -> None:
    hub.metrics.closed.labels(reason).inc()
    try:
        await asyncio.wait_for(ws.send_text(json.dumps({"type": "error", "status": status, "field": field,
                                                        "message": message})), 1.0)
        await asyncio.wait_for(ws.close(code=4000 + status, reason=message.encode()[:120].decode(errors="ignore")), 1.0)
    except Exception:
        pass  # the client went away first


def mount_streaming(app: Any, state: "StreamState", registry: CollectorRegistry,
                    limits: Optional[StreamLimits] = None) -> StreamHub:
    """Add ``/v1/stream`` to ``app``; ``state`` gives ``is_ready()``, ``draining`` and ``extractor``."""
    hub = StreamHub(state, limits or StreamLimits(), registry)

    async def stream(websocket: WebSocket) -> None:
        await websocket.accept()
        if not state.is_ready() or state.draining:
            await _refuse(websocket, hub, 503, None, "not ready: the model is loading or the service is draining",
                          "not_ready")
            return
        if hub.connections >= hub.limits.max_connections:
            await _refuse(websocket, hub, 503, None, f"at most {hub.limits.max_connections} streaming connections",
                          "limit")
            return
        hub.connections += 1
        hub.metrics.connections.inc()
        conn = _Connection(websocket, hub)
        sender = asyncio.ensure_future(conn.send_loop())
        reader = asyncio.ensure_future(conn.read_loop())
        try:
            await asyncio.wait({sender, reader, conn.kill}, return_when=asyncio.FIRST_COMPLETED)
            exc = (conn.kill.result() if conn.kill.done() else None) \
                or (reader.exception() if reader.done() and not reader.cancelled() else None) \
                or (sender.exception() if sender.done() and not sender.cancelled() else None)
            sender.cancel()
            reader.cancel()
            conn.close_all()
            if isinstance(exc, StreamInputError):
                await _refuse(websocket, hub, exc.status, exc.field, str(exc),
                              "limit" if exc.status == 429 else "invalid_input")
            elif isinstance(exc, _Closing):
                hub.metrics.closed.labels(exc.reason).inc()
                try:  # a consumer that reads nothing may never take the close frame either
                    await asyncio.wait_for(websocket.close(code=exc.code, reason=exc.reason), 1.0)
                except Exception:
                    pass
            elif isinstance(exc, WebSocketDisconnect) or exc is None:
                hub.metrics.closed.labels("client").inc()
            else:
                hub.metrics.closed.labels("server_error" if not isinstance(exc, OSError) else "client").inc()
        finally:
            sender.cancel()
            reader.cancel()
            conn.close_all()
            hub.connections -= 1
            hub.metrics.connections.dec()

    app.add_api_websocket_route(STREAM_PATH, stream)
    return hub
