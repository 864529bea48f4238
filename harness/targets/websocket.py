"""``ws://`` / ``wss://`` targets: subscriptions opened on the open-loop schedule, every
streamed message recorded against the time it was meant to arrive.

Design (why each scheduled request is one subscription): a streaming server decides
when messages go out, so the load generator cannot intend each message's send the way it
intends an HTTP request. What it can intend is the subscription. Each request of the
schedule opens one WebSocket at its intended time, subscribes to one symbol
(``{"subscribe": SYMBOL, "rate": r, "count": n}``, symbols in turn) and is done, as
far as the executor is concerned, when the server acknowledges it: that outcome
(``ws subscribe``: ok, ``WS 4422`` …, timeout, dropped) is the request the scenario
scheduled, so the executor's accounting, lag and timeouts work unchanged. The stream then
runs on, and message ``seq`` of a subscription intended at ``T`` is *intended* at
``T + seq / r``: a subscription the generator opened late, a slow handshake, a server
that falls behind or a stall in the network all show as latency from the intended time,
never hidden (no coordinated omission). Each message is one observation of the label
``ws SYMBOL`` in the run's recorder (so ``latency{target:ws AAPL}: p(95)<50ms``,
``failed_rate`` and the live metrics read it like any target):

- ``latency`` = receive − intended (what a subscriber sees);
- ``service_time`` = receive − server send (the message's ``sent_ns``; the server's and
  the client's wall clocks must agree, exact on one host, NTP-close otherwise);
- ``lag`` = server send − intended (handshake plus the server's own lateness).

Gaps and drops: sequence numbers are consecutive per subscription; every number skipped
is a message the server dropped and is recorded ``dropped`` at its intended time (one
*gap* per jump, counted in :class:`StreamStats`); messages still missing when the
connection closes early are ``error`` (``WS <close code>``), and those not there
``timeout`` after their intended time are ``timeout``. So every expected message of every
acknowledged subscription ends as exactly one outcome: ``subscriptions × count``.

A stop (Ctrl-C/SIGTERM, or the executor ending the run on a failure) cuts every open
stream at once instead of letting it run to ``hold`` + ``timeout``. At the cut, a message
already *due* (intended at or before the cut) that has not arrived is counted as an early
end is (``error``, ``cancelled``; :attr:`StreamStats.cut_short`); a message not yet
due is given no outcome at all (it was never meant to have happened yet; counted only in
:attr:`StreamStats.not_due`). So an interrupted run has no phantom losses, and its
outcomes are ``subscriptions × count − not_due``.

The message observations are outside the one-outcome-per-scheduled-request accounting:
the target lists their labels in ``Target.observation_labels`` and gets the run's
recorder through ``Target.bind_recorder``. Streams outlive the schedule by at most their
length (``count / rate``) plus ``timeout``: the target's ``aclose`` waits for them.

Settings ride on the URL's query (removed before connecting): ``symbols`` (comma list,
default ``AAPL``), ``rate`` (messages/s per subscription, default 10), ``messages`` (per
subscription) or ``hold`` (seconds, default 5: ``messages = rate × hold``) and
``timeout`` (per message, default 5 s). ``http.headers`` and ``http.verify`` apply as for
HTTP targets. Per-message cost on the client: one ``json.loads`` of ~300 bytes and one
recorder append.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import ssl
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Set, Tuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from harness.targets.base import Target, TargetError

__all__ = ["build_ws_target", "StreamMessage", "parse_message", "StreamAccount", "StreamStats", "WsSettings",
           "parse_ws_url", "SUBSCRIBE_LABEL"]

SUBSCRIBE_LABEL = "ws subscribe"
_SYMBOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,11}$")
_SETTINGS = ("symbols", "rate", "messages", "hold", "timeout")


@dataclass(frozen=True)
class StreamMessage:
    """One server frame: ``kind`` tick | subscribed | end | error; the rest as sent."""

    kind: str
    symbol: Optional[str] = None
    seq: int = -1
    sent_ns: int = 0
    status: int = 0
    field: Optional[str] = None
    message: str = ""


def parse_message(raw: Any) -> StreamMessage:
    """A server frame; ``ValueError`` for anything that is not one (the stream's failure)."""
    if isinstance(raw, (bytes, bytearray)):
        raise ValueError("expected a text frame, got a binary one")
    try:
        obj = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise ValueError("expected a JSON object with a 'type'")
    kind = obj["type"]
    if kind == "tick":
        seq, sent = obj.get("seq"), obj.get("sent_ns")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ValueError(f"tick: seq must be a whole number >= 0, got {seq!r:.40}")
        if not isinstance(sent, int) or isinstance(sent, bool):
            raise ValueError(f"tick: sent_ns must be an integer (ns), got {sent!r:.40}")
        return StreamMessage("tick", obj.get("symbol"), seq, sent)
    if kind == "error":
        status = obj.get("status")
        return StreamMessage("error", None, status=status if isinstance(status, int) else 0,
                             field=obj.get("field"), message=str(obj.get("message", ""))[:300])
    if kind in ("subscribed", "end"):
        return StreamMessage(kind, obj.get("symbol"))
    raise ValueError(f"unknown message type {kind!r:.40}")


@dataclass
class StreamStats:
    """Counts over every subscription of one target (the recorder has the outcomes)."""

    subscriptions: int = 0
    messages: int = 0
    gaps: int = 0           # sequence jumps
    dropped: int = 0        # messages skipped by those jumps
    duplicates: int = 0     # a sequence number at or below one already seen
    cut_short: int = 0      # messages lost to a connection that ended early
    timed_out: int = 0      # messages not there ``timeout`` after their intended time
    server_dropped: int = 0  # what the servers' ``end`` messages reported
    not_due: int = 0        # messages not yet due when a stop cut the stream (no outcome)


Record = Callable[..., None]


class StreamAccount:
    """One subscription's expected messages and how each one ended.

    Times: ``intended_ns`` and ``recv_perf_ns`` on the recorder's clock
    (``time.perf_counter_ns``); ``sent_ns`` and ``recv_wall_ns`` on the wall clock."""

    def __init__(self, label: str, intended_ns: int, rate: float, count: int, timeout_ns: int,
                 record: Record, stats: StreamStats) -> None:
        self.label = label
        self.t0 = intended_ns
        self.period = 1e9 / rate
        self.count = count
        self.timeout_ns = timeout_ns
        self.record = record
        self.stats = stats
        self.next = 0  # the lowest sequence number not yet accounted for

    def intended(self, seq: int) -> int:
        return self.t0 + int(seq * self.period)

    @property
    def complete(self) -> bool:
        return self.next >= self.count

    def deadline_ns(self) -> int:
        """When the next expected message is late enough to be a timeout."""
        return self.intended(self.next) + self.timeout_ns

    def tick(self, seq: int, sent_ns: int, recv_wall_ns: int, recv_perf_ns: int) -> None:
        st = self.stats
        if seq < self.next or seq >= self.count:
            st.duplicates += 1
            self.record(self.label, "error", self.intended(min(seq, self.count - 1)), recv_perf_ns, recv_perf_ns,
                        "duplicate" if seq < self.next else "beyond_count")
            return
        if seq > self.next:
            st.gaps += 1
            st.dropped += seq - self.next
            for m in range(self.next, seq):
                self.record(self.label, "dropped", self.intended(m), None, recv_perf_ns)
        transit = max(0, recv_wall_ns - sent_ns)
        start = max(recv_perf_ns - transit, -(2 ** 62))
        self.record(self.label, "ok", self.intended(seq), start, recv_perf_ns)
        st.messages += 1
        self.next = seq + 1

    def _rest(self, outcome: str, now_perf_ns: int, error: Optional[str]) -> int:
        n = self.count - self.next
        for m in range(self.next, self.count):
            t = self.intended(m)
            if outcome == "timeout":
                self.record(self.label, "timeout", t, t, t + self.timeout_ns)
            elif outcome == "dropped":
                self.record(self.label, "dropped", t, None, max(now_perf_ns, t))
            else:
                self.record(self.label, "error", t, now_perf_ns, max(now_perf_ns, t), error)
        self.next = self.count
        return n

    def ended(self, now_perf_ns: int) -> None:
        """The server said the subscription is over: anything still missing was dropped."""
        n = self._rest("dropped", now_perf_ns, None)
        if n:
            self.stats.gaps += 1
            self.stats.dropped += n

    def failed(self, error: str, now_perf_ns: int) -> None:
        """The connection ended early: the rest are errors named ``error``."""
        self.stats.cut_short += self._rest("error", now_perf_ns, error)

    def cut(self, cut_ns: int, now_perf_ns: int) -> None:
        """A stop cut the stream at ``cut_ns``: messages due by then are early ends
        (``cancelled``), those not yet due get no outcome (see the module docstring)."""
        due = self.next
        while due < self.count and self.intended(due) <= cut_ns:
            due += 1
        count, self.count = self.count, due
        self.stats.cut_short += self._rest("error", now_perf_ns, "cancelled")
        self.stats.not_due += count - due
        self.count = count
        self.next = count

    def expired(self, now_perf_ns: int) -> None:
        """Nothing came by the deadline: the rest are timeouts."""
        self.stats.timed_out += self._rest("timeout", now_perf_ns, None)


@dataclass(frozen=True)
class WsSettings:
    url: str                 # what is connected to (harness settings removed)
    symbols: Tuple[str, ...]
    rate: float
    messages: int
    timeout_s: float
    headers: Dict[str, str] = field(default_factory=dict)
    verify: bool = True


def _seconds(name: str, raw: str) -> float:
    text = raw.strip().lower()
    scale = 1.0
    for suffix, s in (("ms", 1e-3), ("s", 1.0), ("m", 60.0)):
        if text.endswith(suffix):
            text, scale = text[: -len(suffix)], s
            break
    try:
        value = float(text) * scale
    except ValueError:
        raise TargetError(f"target: {name}={raw!r}: expected seconds like 5, 5s or 500ms") from None
    if not math.isfinite(value) or value <= 0:
        raise TargetError(f"target: {name}={raw!r}: must be > 0")
    return value


def parse_ws_url(url: str, http: Optional[Mapping[str, Any]] = None) -> WsSettings:
    """The target URL and its query settings, validated (:class:`TargetError` names the field)."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise TargetError(f"target: not a ws(s):// URL: {url!r}")
    try:
        parts.port
    except ValueError as exc:
        raise TargetError(f"target: bad port in {url!r}: {exc}") from None
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k in _SETTINGS}
    rest = [(k, v) for k, v in query if k not in _SETTINGS]
    symbols = tuple(s.strip().upper() for s in ours.get("symbols", "AAPL").split(",") if s.strip())
    if not symbols:
        raise TargetError("target: symbols= is empty; expected a comma list like AAPL,MSFT")
    bad = [s for s in symbols if not _SYMBOL.match(s)]
    if bad:
        raise TargetError(f"target: symbols: {bad[0]!r} is not a symbol (1-12 letters, digits, '.', '-')")
    try:
        rate = float(ours.get("rate", "10"))
    except ValueError:
        raise TargetError(f"target: rate={ours['rate']!r}: expected messages per second") from None
    if not math.isfinite(rate) or rate <= 0:
        raise TargetError(f"target: rate={ours.get('rate')!r}: must be > 0")
    if "messages" in ours and "hold" in ours:
        raise TargetError("target: give messages= or hold=, not both")
    if "messages" in ours:
        try:
            messages = int(ours["messages"])
        except ValueError:
            raise TargetError(f"target: messages={ours['messages']!r}: expected a whole number") from None
    else:
        messages = int(round(rate * _seconds("hold", ours.get("hold", "5s"))))
    if messages < 1:
        raise TargetError(f"target: messages per subscription must be >= 1, got {messages}")
    timeout = _seconds("timeout", ours.get("timeout", "5s"))
    settings = dict(http or {})
    unknown = sorted(set(settings) - {"headers", "verify"})
    if unknown:
        raise TargetError(f"http.{unknown[0]}: not for a ws:// target (known: headers, verify)")
    headers = settings.get("headers") or {}
    if not isinstance(headers, Mapping):
        raise TargetError(f"http.headers: expected a mapping of name -> value, got {headers!r}")
    verify = settings.get("verify", True)
    if not isinstance(verify, bool):
        raise TargetError(f"http.verify: expected true or false, got {verify!r}")
    clean = urlunsplit((parts.scheme, parts.netloc, parts.path or "/", urlencode(rest), ""))
    return WsSettings(clean, symbols, rate, messages, timeout, {str(k): str(v) for k, v in headers.items()}, verify)


def _websockets_connect() -> Any:
    try:
        from websockets.asyncio.client import connect
    except ImportError:  # pragma: no cover - a core dependency; a broken install says so
        raise TargetError("target: a ws:// target needs the 'websockets' package (>= 13): "
                          "pip install 'websockets>=13'") from None
    return connect


def _close_name(exc: BaseException) -> str:
    """``WS <close code>`` for a connection the server closed with a code, else the type."""
    from websockets.exceptions import ConnectionClosed  # loaded with the client (lazily)

    if isinstance(exc, ConnectionClosed) and exc.rcvd is not None:
        return f"WS {exc.rcvd.code}"
    return type(exc).__name__


def _failed(call: Any, name: str, detail: str) -> None:
    """End a subscription as an error, with a sample of why."""
    call.done(name, 0, detail)


async def _close(ws: Any) -> None:
    try:
        await asyncio.wait_for(ws.close(), 2.0)
    except Exception:  # closing is best effort: the outcomes are already recorded
        _abort(ws)


def _abort(ws: Any) -> None:
    if ws.transport is not None:
        ws.transport.abort()


def build_ws_target(url: str, *, http: Optional[Mapping[str, Any]] = None) -> Target:
    """A streaming target (see the module docstring); its :class:`StreamStats` are the target's
    counters (``stream:<count>`` under the subscribe label), so they reach the result."""
    s = parse_ws_url(url, http)
    connect = _websockets_connect()
    labels = {sym: f"ws {sym}" for sym in s.symbols}
    stats = StreamStats()
    tls: Optional[ssl.SSLContext] = None
    if s.url.startswith("wss:"):
        tls = ssl.create_default_context()
        if not s.verify:
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE
    state: Dict[str, Any] = {"recorder": None, "call": None, "cut_ns": None}
    streams: Set["asyncio.Task[None]"] = set()
    timeout_ns = int(s.timeout_s * 1e9)

    def bind_recorder(recorder: Any) -> None:
        state["recorder"] = recorder

    def record(*args: Any) -> None:
        state["recorder"].record(*args)

    async def stream(k: int, call: Any) -> None:
        symbol = s.symbols[k % len(s.symbols)]
        subscribe = json.dumps({"subscribe": symbol, "rate": s.rate, "count": s.messages})
        ws = None
        try:
            ws = await connect(s.url, ssl=tls, compression=None, additional_headers=s.headers or None,
                               open_timeout=None, close_timeout=1, max_size=1 << 20)
            await ws.send(subscribe)
            while True:
                msg = parse_message(await ws.recv())
                if msg.kind == "subscribed":
                    break
                if msg.kind == "error":  # the server's message names the field: the error's sample
                    _failed(call, f"WS {4000 + msg.status}" if msg.status else "WS error", msg.message)
                    await _close(ws)
                    return
                raise ValueError(f"expected the subscription's acknowledgement, got {msg.kind!r}")
        except asyncio.CancelledError:  # the executor's deadline for the handshake
            if ws is not None:
                _abort(ws)
            raise
        except Exception as exc:
            _failed(call, _close_name(exc), f"{type(exc).__name__}: {exc}")
            if ws is not None:
                _abort(ws)
            return
        if call.finished:  # timed out just as the acknowledgement came
            await _close(ws)
            return
        call.done(None)
        stats.subscriptions += 1
        acc = StreamAccount(labels[symbol], call.intended, s.rate, s.messages, timeout_ns, record, stats)
        clock = time.perf_counter_ns
        try:
            while not acc.complete:
                if state["cut_ns"] is not None:  # a cancel that wait_for swallowed (a message came with it)
                    raise asyncio.CancelledError
                wait = (acc.deadline_ns() - clock()) / 1e9
                try:
                    raw = await asyncio.wait_for(ws.recv(), max(wait, 0.0))
                except asyncio.TimeoutError:
                    acc.expired(clock())
                    break
                recv_wall, recv_perf = time.time_ns(), clock()
                msg = parse_message(raw)
                if msg.kind == "tick":
                    acc.tick(msg.seq, msg.sent_ns, recv_wall, recv_perf)
                elif msg.kind == "end":
                    acc.ended(recv_perf)
                elif msg.kind == "error":
                    acc.failed(f"WS {4000 + msg.status}" if msg.status else "WS error", recv_perf)
        except asyncio.CancelledError:
            if state["cut_ns"] is not None:  # the run stopped: due messages lost, the rest never were
                acc.cut(state["cut_ns"], clock())
                _abort(ws)
                raise
            acc.failed("cancelled", clock())
            raise
        except Exception as exc:
            acc.failed(_close_name(exc), clock())
        finally:
            if state["cut_ns"] is None:
                await _close(ws)

    def astart(k: int, call: Any) -> None:
        task = asyncio.get_running_loop().create_task(stream(k, call))
        streams.add(task)
        task.add_done_callback(streams.discard)
        call.handle = task
        state["call"] = call  # whose ``stopping`` aclose watches

    def acancel(call: Any) -> None:
        handle = call.handle
        if isinstance(handle, asyncio.Task):
            handle.cancel()

    async def aclose() -> None:
        """Every stream ends by its last message's deadline; wait for them, unless the run
        is stopped (now or while waiting): then cut them all at once."""
        while streams:
            call = state["call"]
            if call is not None and call.stopping:
                if state["cut_ns"] is None:
                    state["cut_ns"] = time.perf_counter_ns()
                for task in list(streams):
                    task.cancel()
                await asyncio.gather(*list(streams), return_exceptions=True)
                continue
            await asyncio.wait(list(streams), timeout=0.05)

    async def subscribe_once(k: int) -> None:
        raise TargetError("a ws:// target runs on the open-loop asyncio executor (no closed-loop users)")

    def dispatch(k: int) -> Tuple[str, Callable[..., Any], List[Any]]:
        return SUBSCRIBE_LABEL, subscribe_once, [k]

    def counters() -> Mapping[str, Mapping[str, int]]:
        return {SUBSCRIBE_LABEL: {f"stream:{k}": int(v) for k, v in asdict(stats).items()}}

    return Target(SUBSCRIBE_LABEL, (SUBSCRIBE_LABEL,), dispatch, is_async=True, aclose=aclose, astart=astart,
                  acancel=acancel, observation_labels=tuple(labels.values()), bind_recorder=bind_recorder,
                  counters=counters)
