"""Push the run's live series to a Prometheus remote-write 1.0 receiver.

Why: a CI job or a short Kubernetes Job may end before any Prometheus scrapes it; with
``harness run --remote-write URL`` the series arrive anyway (like k6's
``-o experimental-prometheus-rw``), native histograms included.

How: a collector thread reads the run's ``CollectorRegistry`` every ``interval_s``
(what a scrape would read), turns it into a snappy-compressed ``prometheus.WriteRequest``
(:mod:`harness.observe.prompb`) with ``job``/``instance`` labels and puts it in a bounded
queue (full: the oldest batch is dropped and counted). A sender thread posts the batches
in order, retrying connection errors, 5xx and 429 with exponential backoff (other 4xx
are final: the receiver refused the data itself). Neither thread ever waits for the run,
and the run never waits for them, except :meth:`RemoteWriter.close`: one last collection
and a flush bounded by a deadline.
"""

from __future__ import annotations

import base64
import collections
import random
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import cramjam
import numpy as np

from harness.observe import prompb

__all__ = ["RemoteWriteConfig", "RemoteWriter", "RemoteWriteError", "encode_write_request", "parse_header",
           "validate_url", "redact_url", "compress", "decompress", "build_write_request", "summary_line",
           "REMOTE_WRITE_HEADERS"]

#: What remote write 1.0 senders send (the spec's MUSTs), before the user's own headers.
REMOTE_WRITE_HEADERS: Mapping[str, str] = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
    "User-Agent": "latency-budget-harness",
}


class RemoteWriteError(ValueError):
    """A bad ``--remote-write`` URL or header (the message names the problem)."""


def validate_url(url: str) -> str:
    """``url`` when it is an http(s) URL with a host; :class:`RemoteWriteError` otherwise."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise RemoteWriteError(f"expected an http:// or https:// URL, got {url!r}")
    try:
        host, port = parts.hostname, parts.port  # .port raises on a non-numeric or out-of-range port
    except ValueError as exc:
        raise RemoteWriteError(f"bad port in {url!r}: {exc}") from None
    if not host:
        raise RemoteWriteError(f"no host in {url!r}")
    del port
    return url.strip()


def redact_url(url: str) -> str:
    """The URL without its user:password (what results and logs may show)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def parse_header(text: str) -> Tuple[str, str]:
    """``'Name: value'`` -> (name, value); :class:`RemoteWriteError` when it is not one."""
    name, sep, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not sep or not name or any(c.isspace() for c in name) or not name.isascii():
        raise RemoteWriteError(f"expected 'Name: value', got {text!r}")
    if "\n" in value or "\r" in value:
        raise RemoteWriteError(f"header {name!r}: a value may not contain a line break")
    return name, value


def compress(data: bytes) -> bytes:
    """Snappy *block* format (what remote write uses; not the framed stream format)."""
    return bytes(cramjam.snappy.compress_raw(data))


def decompress(data: bytes) -> bytes:
    return bytes(cramjam.snappy.decompress_raw(data))


@dataclass
class RemoteWriteConfig:
    """Where and how to send. ``headers``: the user's (auth), sent on every request."""

    url: str
    headers: Dict[str, str] = field(default_factory=dict)
    job: str = "harness"
    instance: Optional[str] = None         # None: this host's name
    interval_s: float = 1.0
    max_queue: int = 300                   # batches (5 minutes at 1/s) before the oldest is dropped
    timeout_s: float = 5.0                 # per request
    max_attempts: int = 10                 # per batch, with backoff between them (~15 s in all)
    backoff_min_s: float = 0.1
    backoff_max_s: float = 3.0
    flush_timeout_s: float = 5.0           # close(): the final flush's deadline


# -- encoding -----------------------------------------------------------------------------

_Key = Tuple[Tuple[str, str], ...]


def _labels(name: str, labels: Mapping[str, str], extra: Mapping[str, str]) -> _Key:
    """Sorted, unique, non-empty labels; a metric's own job/instance become exported_* (as
    a Prometheus scrape with honor_labels: false does)."""
    out: Dict[str, str] = {}
    for k, v in labels.items():
        if k in extra:
            k = "exported_" + k
        out[k] = str(v)
    out.update(extra)
    out["__name__"] = name
    return tuple(sorted((k, v) for k, v in out.items() if v != ""))


def _ms(ts: Any, default_ms: int) -> int:
    if ts is None:
        return default_ms
    return int(round(float(ts) * 1000))


def _is_int(x: float) -> bool:
    return float(x).is_integer() and x >= 0


def _histogram(nh: Any, ts_ms: int) -> Any:
    """A prometheus_client ``NativeHistogram`` as a ``prometheus.Histogram``: integer counts
    (delta-encoded buckets) when every count is whole, else absolute float counts."""
    h = prompb.Histogram(sum=float(nh.sum_value), schema=int(nh.schema), zero_threshold=float(nh.zero_threshold),
                         timestamp=ts_ms)
    pos_d = np.asarray(nh.pos_deltas or (), dtype=np.float64)
    neg_d = np.asarray(nh.neg_deltas or (), dtype=np.float64)
    integral = (_is_int(nh.count_value) and _is_int(nh.zero_count)
                and bool(np.all(pos_d == np.round(pos_d))) and bool(np.all(neg_d == np.round(neg_d))))
    for spans, deltas, out_spans, out_deltas, out_counts in (
            (nh.pos_spans, pos_d, h.positive_spans, h.positive_deltas, h.positive_counts),
            (nh.neg_spans, neg_d, h.negative_spans, h.negative_deltas, h.negative_counts)):
        for s in spans or ():
            out_spans.add(offset=int(s.offset), length=int(s.length))
        if integral:
            out_deltas.extend(deltas.astype(np.int64).tolist())
        else:  # a float histogram carries absolute counts
            out_counts.extend(np.cumsum(deltas).tolist())
    if integral:
        h.count_int = int(nh.count_value)
        h.zero_count_int = int(nh.zero_count)
    else:
        h.count_float = float(nh.count_value)
        h.zero_count_float = float(nh.zero_count)
    return h


def _exemplar(ex: Any, default_ms: int) -> Any:
    e = prompb.Exemplar(value=float(ex.value), timestamp=_ms(ex.timestamp, default_ms))
    for k, v in sorted(ex.labels.items()):
        e.labels.add(name=k, value=str(v))
    return e


class _Encoder:
    """Registry -> WriteRequest, remembering the exemplars already sent (a receiver stores
    each once; re-sending the same one every second is an out-of-order error there)."""

    #: series label sets remembered (beyond it the cache starts again: a run's series are few)
    MAX_TEMPLATES = 50_000

    def __init__(self, extra_labels: Mapping[str, str]) -> None:
        self.extra = dict(extra_labels)
        self._sent_exemplars: Dict[_Key, Tuple[float, int]] = {}
        # (name, labels as collected) -> (sorted labels, the TimeSeries holding just them, serialized):
        # the same series come back every second, and one C-level merge beats a Label.add per label
        self._templates: Dict[Tuple[str, Tuple[Tuple[str, str], ...]], Tuple[_Key, bytes]] = {}

    def _series_labels(self, name: str, labels: Mapping[str, str]) -> Tuple[_Key, bytes]:
        ck = (name, tuple(labels.items()))
        hit = self._templates.get(ck)
        if hit is None:
            key = _labels(name, labels, self.extra)
            tmpl = prompb.TimeSeries(labels=[prompb.Label(name=k, value=v) for k, v in key]).SerializeToString()
            if len(self._templates) >= self.MAX_TEMPLATES:
                self._templates.clear()
            hit = self._templates[ck] = (key, tmpl)
        return hit

    def build(self, families: Iterable[Any], now_ms: int) -> Tuple[Any, int, int]:
        """(WriteRequest, float samples, histogram samples)."""
        req = prompb.WriteRequest()
        n_samples = n_hist = 0
        for family in families:
            for s in family.samples:
                key, template = self._series_labels(s.name, s.labels)
                ts_ms = _ms(s.timestamp, now_ms)
                series = req.timeseries.add()
                series.MergeFromString(template)
                nh = s.native_histogram
                if nh is not None:
                    series.histograms.append(_histogram(nh, ts_ms))
                    n_hist += 1
                    exemplars: Sequence[Any] = list(nh.nh_exemplars or ())
                else:
                    series.samples.add(value=float(s.value), timestamp=ts_ms)
                    n_samples += 1
                    exemplars = [s.exemplar] if s.exemplar is not None else []
                for ex in exemplars:
                    e = _exemplar(ex, ts_ms)
                    ident = (e.value, e.timestamp)
                    ex_key = key + tuple(sorted(ex.labels.items()))
                    if self._sent_exemplars.get(ex_key) == ident:
                        continue
                    self._sent_exemplars[ex_key] = ident
                    series.exemplars.append(e)
        return req, n_samples, n_hist


def build_write_request(families: Iterable[Any], now_ms: int, extra_labels: Mapping[str, str]) -> Any:
    """The ``prometheus.WriteRequest`` for these metric families (``registry.collect()``)."""
    return _Encoder(extra_labels).build(families, now_ms)[0]


def encode_write_request(req: Any) -> bytes:
    """What goes in the POST body: the serialized request, snappy block-compressed."""
    return compress(req.SerializeToString())


# -- sending ------------------------------------------------------------------------------

@dataclass
class _Batch:
    body: bytes
    samples: int
    histograms: int
    collected_at: float


class _SendError(Exception):
    def __init__(self, message: str, retryable: bool, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class RemoteWriter:
    """The two threads and the queue between them. ``start()``, then ``close()`` once:
    it returns :meth:`stats` (also readable at any time)."""

    def __init__(self, config: RemoteWriteConfig, registry: Any) -> None:
        self.config = config
        self._url = validate_url(config.url)
        self._registry = registry
        headers = dict(REMOTE_WRITE_HEADERS)
        parts = urllib.parse.urlsplit(self._url)
        if parts.username is not None:  # user:password@ in the URL: basic auth (never logged)
            cred = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
            headers["Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
            self._url = redact_url(self._url)
        headers.update(config.headers)
        self._headers = headers
        instance = config.instance or socket.gethostname()
        self._encoder = _Encoder({"job": config.job, "instance": instance})
        self._last_ms = 0  # the last batch's sample time (ms): each batch's is later
        self._queue: Deque[_Batch] = collections.deque()
        self._cond = threading.Condition()
        self._stop_collect = threading.Event()
        self._closing = threading.Event()       # the sender drains, then ends
        self._deadline: Optional[float] = None  # monotonic; past it the sender gives up
        self._stats_lock = threading.Lock()
        self._stats: Dict[str, Any] = {
            "url": redact_url(config.url), "job": config.job, "instance": instance, "interval_s": config.interval_s,
            "batches_collected": 0, "batches_sent": 0, "batches_failed": 0, "batches_dropped": 0,
            "batches_unsent": 0, "samples_sent": 0, "histograms_sent": 0, "bytes_sent": 0, "retries": 0,
            "collect_errors": 0, "last_error": None, "final_flush": None,
        }
        self._threads: List[threading.Thread] = []
        self._last_ok = True  # the latest batch's fate (the final flush's, once closed)
        self._closed: Optional[Dict[str, Any]] = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> "RemoteWriter":
        for target, name in ((self._collect_loop, "lbh-rw-collect"), (self._send_loop, "lbh-rw-send")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def close(self, timeout_s: Optional[float] = None) -> Dict[str, Any]:
        """Stop collecting, collect once more, send what is queued until the deadline
        (``timeout_s``, default the config's ``flush_timeout_s``); what is left is counted
        as ``batches_unsent``. Idempotent."""
        if self._closed is not None:
            return self._closed
        timeout = self.config.flush_timeout_s if timeout_s is None else timeout_s
        started = time.monotonic()
        self._deadline = started + max(0.0, timeout)
        self._stop_collect.set()
        collector = self._threads[0] if self._threads else None
        if collector is not None:
            collector.join(max(0.0, self._deadline - time.monotonic()))
        self._collect_once()  # the final state of the run
        with self._cond:
            self._closing.set()
            self._cond.notify_all()
        if len(self._threads) > 1:
            self._threads[1].join(max(0.0, self._deadline - time.monotonic()))
        with self._cond:
            unsent = len(self._queue)
            self._queue.clear()
        with self._stats_lock:
            self._stats["batches_unsent"] += unsent
            self._stats["final_flush"] = (
                "ok" if self._last_ok else "failed") if unsent == 0 and self._sender_idle() else "timed out"
            self._stats["flush_s"] = round(time.monotonic() - started, 3)
        self._closed = self.stats()
        return self._closed

    def _sender_idle(self) -> bool:
        return len(self._threads) < 2 or not self._threads[1].is_alive()

    def stats(self) -> Dict[str, Any]:
        with self._stats_lock:
            return dict(self._stats)

    # -- collecting -----------------------------------------------------------------------

    def _collect_loop(self) -> None:
        interval = max(0.05, self.config.interval_s)
        next_at = time.monotonic()
        while True:
            next_at += interval
            if self._stop_collect.wait(max(0.0, next_at - time.monotonic())):
                return
            self._collect_once()
            now = time.monotonic()
            if now > next_at + interval:  # fell behind (a paused process): no burst to catch up
                next_at = now

    def _collect_once(self) -> None:
        try:
            now = time.time()
            # strictly increasing sample times: a final flush in the same millisecond as the
            # last periodic batch would be a duplicate sample Prometheus rejects
            now_ms = self._last_ms = max(int(round(now * 1000)), self._last_ms + 1)
            req, n_samples, n_hist = self._encoder.build(self._registry.collect(), now_ms)
            if not req.timeseries:
                return
            batch = _Batch(encode_write_request(req), n_samples, n_hist, now)
        except Exception as exc:  # a collector that failed: the run goes on, the stats say so
            self._note(collect_errors=1, last_error=f"collect: {type(exc).__name__}: {exc}")
            return
        dropped = 0
        with self._cond:
            self._queue.append(batch)
            while len(self._queue) > max(1, self.config.max_queue):
                self._queue.popleft()
                dropped += 1
            self._cond.notify_all()
        self._note(batches_collected=1, batches_dropped=dropped)

    def _note(self, **changes: Any) -> None:
        with self._stats_lock:
            for k, v in changes.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):  # counters add up
                    self._stats[k] += v
                else:
                    self._stats[k] = v

    # -- sending --------------------------------------------------------------------------

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _send_loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing.is_set():
                    self._cond.wait(0.5)
                if not self._queue:
                    return  # closing, all sent
                if self._closing.is_set() and self._past_deadline():
                    return
                batch = self._queue.popleft()
            self._send_with_retries(batch)

    def _send_with_retries(self, batch: _Batch) -> None:
        cfg = self.config
        attempt = 0
        while True:
            attempt += 1
            try:
                self._post(batch.body)
            except _SendError as exc:
                self._note(last_error=str(exc))
                if not exc.retryable or attempt >= cfg.max_attempts or self._past_deadline():
                    self._note(batches_failed=1)
                    self._last_ok = False
                    return
                self._note(retries=1)
                delay = min(cfg.backoff_max_s, cfg.backoff_min_s * 2 ** (attempt - 1))
                delay *= random.uniform(0.8, 1.2)  # several pods restarting together do not retry in step
                if self._deadline is not None:
                    delay = min(delay, max(0.0, self._deadline - time.monotonic()))
                time.sleep(delay)
                continue
            self._note(batches_sent=1, samples_sent=batch.samples, histograms_sent=batch.histograms,
                       bytes_sent=len(batch.body))
            self._last_ok = True
            return

    def _post(self, body: bytes) -> None:
        timeout = self.config.timeout_s
        if self._deadline is not None:
            timeout = max(0.1, min(timeout, self._deadline - time.monotonic()))
        req = urllib.request.Request(self._url, data=body, headers=self._headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                resp.read()
        except urllib.error.HTTPError as exc:
            detail = ""
            try:
                detail = exc.read(300).decode("utf-8", "replace").strip()
            except Exception:
                pass
            retryable = exc.code >= 500 or exc.code == 429
            raise _SendError(f"HTTP {exc.code}" + (f": {detail}" if detail else ""), retryable, exc.code) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:  # refused, reset, timed out, DNS
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise _SendError(f"{type(reason).__name__}: {reason}", True) from None


def summary_line(stats: Mapping[str, Any]) -> str:
    """One line for the run's summary."""
    line = (f"remote write to {stats.get('url')}: {stats.get('batches_sent', 0)} batches sent "
            f"({stats.get('samples_sent', 0)} samples, {stats.get('histograms_sent', 0)} native histograms), "
            f"{stats.get('batches_failed', 0)} failed, {stats.get('batches_dropped', 0)} dropped")
    if stats.get("batches_unsent"):
        line += f", {stats['batches_unsent']} unsent at the end"
    if stats.get("retries"):
        line += f", {stats['retries']} retries"
    if stats.get("final_flush") and stats.get("final_flush") != "ok":
        line += f"; final flush {stats['final_flush']}"
    if stats.get("last_error") and (stats.get("batches_failed") or stats.get("batches_unsent")
                                    or stats.get("collect_errors")):
        line += f"; last error: {stats['last_error']}"
    return line
