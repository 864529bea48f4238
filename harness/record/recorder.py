"""Recorder: exact latency / service-time / lag histograms per target and outcome.

Why these three numbers: every request has an *intended* start (from the open-loop
schedule), an *actual* start and an end.

* ``latency = end − intended`` — what a user would have seen; a stall in the target or in
  the generator shows up here (no coordinated omission);
* ``service_time = end − actual start`` — what the target itself took;
* ``lag = actual start − intended`` — how late the generator was (its self-check).

Histograms are HdrHistograms (``hdrhistogram``), **microseconds**, range 1 µs – 1 h,
3 significant digits, so percentiles are exact to 0.1 % and merge exactly across worker
processes and pods (:meth:`Recorder.merge`, :meth:`Recorder.encode`/:meth:`decode`).
Values below 1 µs record as 0; values above 1 h are clamped to 1 h and counted in
``clamped``.  Negative lag (a send a hair early) records as 0.

Outcomes: ``ok``, ``error`` (with the error type, at most ``max_error_types`` distinct
names per target, the rest counted as ``"other"``), ``timeout`` (the runner records it at
the deadline), ``dropped`` (never started: pass ``start_ns=None``; only its latency — the
time from intended start until it was given up — is recorded, so it cannot hide, and it
does not pollute service time or the generator's lag).  ``flags`` is a bitmask of
:data:`FLAG_CACHE_HIT` and :data:`FLAG_FALLBACK` from the workloads' results.

Hot path: :meth:`Recorder.record` only appends four ints to a per-(target, outcome)
``array('q')`` buffer (plus one ``list.append`` when there is an error type).  Buffers are
folded into the histograms with numpy, vectorised (the HdrHistogram bucket index is
computed for the whole batch and added with ``bincount``), every ``flush_every`` records
per key — on one flusher thread, so the recording threads' malloc arenas do not each grow
to the fold's high-water mark — and before any read.  The result is bit-for-bit the same as calling
``HdrHistogram.record_value`` for every value (tested), at a fraction of the cost.

Thread-safety model: a thread pool may share one Recorder.  ``record`` takes no lock under
the GIL — its shared writes are single atomic C calls (``array.extend`` of a 4-tuple,
``list.append``) and the flush consumes ``buf[:n]`` then ``del buf[:n]`` so concurrent
appends are never lost; everything else (flush, merge, reads) runs under one re-entrant
lock, so a flush never blocks the recording threads.  On a free-threaded build (no GIL)
``record`` takes the lock too (``lock=True`` forces that anywhere, at the cost of one lock per record).
Across processes or pods: one Recorder each, ``encode()`` it, ``merge()`` the decoded
results — exact.

Time series: per-target windows of ``window_s`` seconds (default 1) keyed by the **end**
time of each request relative to ``origin_ns`` (the run start on the same clock as the
recorded times; set it before the first record), like k6 and Prometheus: counts by
outcome, cache hits, fallbacks, and a compact latency histogram (HdrHistogram bucketing at
2 significant digits, ≤ 0.8 % error, stored as a dense array spanning only the buckets
actually used, int32).  Each window also counts the requests *intended* in it, so intended vs
achieved rate can be plotted.  Memory is bounded: at most ``max_windows`` windows (900:
15 minutes at 1 s, then coarser; a few MiB per target at most); when a
run outlasts ``max_windows × window_s`` the windows merge pairwise and ``window_s``
doubles (exactly, histograms add), so the series always covers the whole run at a
resolution that coarsens.
"""

from __future__ import annotations

import base64
import sys
import threading
import weakref
import zlib
from array import array
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Tuple

import numpy as np
from hdrh.histogram import HdrHistogram

__all__ = [
    "counts_view",
    "index_values",
    "histogram_mean",
    "OUTCOMES",
    "METRICS",
    "FLAG_CACHE_HIT",
    "FLAG_FALLBACK",
    "HIST_LOWEST_US",
    "HIST_HIGHEST_US",
    "HIST_SIGNIFICANT_FIGURES",
    "SUMMARY_PERCENTILES",
    "ENCODING_FORMAT",
    "Recorder",
    "histogram_stats",
    "value_at_percentile",
    "window_latency",
    "ERROR_SAMPLES",
    "ERROR_SAMPLE_CHARS",
    "detail_of",
]

OUTCOMES: tuple[str, ...] = ("ok", "error", "timeout", "dropped")
METRICS: tuple[str, ...] = ("latency", "service_time", "lag")
FLAG_CACHE_HIT = 1
FLAG_FALLBACK = 2
HIST_LOWEST_US = 1
HIST_HIGHEST_US = 3_600_000_000  # 1 h in µs
HIST_SIGNIFICANT_FIGURES = 3
SUMMARY_PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 50.0),
    ("p90", 90.0),
    ("p95", 95.0),
    ("p99", 99.0),
    ("p99.9", 99.9),
)
ENCODING_FORMAT = "harness.record.recorder/1"
#: error details kept per (target, error type): the first few samples, each this long at most
ERROR_SAMPLES = 3
ERROR_SAMPLE_CHARS = 300

_NO_START = -(2**63)
_OUTCOME_INDEX = {o: i for i, o in enumerate(OUTCOMES)}
# window counter slots: one per outcome, then these
_W_INTENDED, _W_CACHE_HIT, _W_FALLBACK = 4, 5, 6
_W_SLOTS = 7
_WIN_HALF_MAG = 7  # coarse window histograms: 256 sub-buckets = 2 significant digits
_WIN_HALF = 1 << _WIN_HALF_MAG
_WIN_MASK = (1 << (_WIN_HALF_MAG + 1)) - 1


def _flush_loop(ref: "weakref.ReferenceType[Recorder]", wake: threading.Event) -> None:
    """The recorder's flusher thread: folds when woken (a buffer is full) and once a
    second; ends once the recorder is garbage (it holds only a weak reference)."""
    while True:
        wake.wait(1.0)
        wake.clear()
        rec = ref()
        if rec is None:
            return
        try:
            rec.flush()
        finally:
            del rec


def detail_of(value: Any) -> str:
    """One error sample as text, at most :data:`ERROR_SAMPLE_CHARS` characters: an exception as
    ``Type: message``, a response body (bytes) decoded leniently, anything else ``str()``."""
    if isinstance(value, BaseException):
        msg = str(value)
        text = f"{type(value).__name__}: {msg}" if msg else type(value).__name__
    elif isinstance(value, (bytes, bytearray, memoryview)):
        text = bytes(value[: 4 * ERROR_SAMPLE_CHARS]).decode("utf-8", "replace")
    else:
        text = str(value)
    text = text.strip()
    return text if len(text) <= ERROR_SAMPLE_CHARS else text[: ERROR_SAMPLE_CHARS - 1] + "\u2026"


class _ErrorDetail:
    """First/last time (ns, the recorder's clock) and the first samples of one (target, error
    type), each sample with its time, so merged recorders keep the earliest."""

    __slots__ = ("first_ns", "last_ns", "samples")

    def __init__(self, first_ns: int, last_ns: int, samples: list[tuple[int, str]] | None = None) -> None:
        self.first_ns, self.last_ns, self.samples = first_ns, last_ns, samples or []

    def note(self, t_ns: int, sample: str | None) -> None:
        if t_ns < self.first_ns:
            self.first_ns = t_ns
        if t_ns > self.last_ns:
            self.last_ns = t_ns
        if sample is not None and (len(self.samples) < ERROR_SAMPLES or t_ns < self.samples[-1][0]):
            self.samples.append((t_ns, sample))
            self.samples.sort(key=lambda x: x[0])
            del self.samples[ERROR_SAMPLES:]


def _new_hist() -> HdrHistogram:
    return HdrHistogram(HIST_LOWEST_US, HIST_HIGHEST_US, HIST_SIGNIFICANT_FIGURES)


# ----------------------------------------------------------------------------- HDR, vectorised


def _bucket_index(v: np.ndarray, unit_mag: int, half_mag: int, mask: int) -> np.ndarray:
    """HdrHistogram counts-array index of each value (same formula as ``hdrh``)."""
    x = v | mask
    bit_length = np.frexp(x.astype(np.float64))[1].astype(np.int64)  # exact below 2**53
    bucket = bit_length - unit_mag - (half_mag + 1)
    sub = v >> (bucket + unit_mag)
    return ((bucket + 1) << half_mag) + sub - (1 << half_mag)


def counts_view(h: HdrHistogram) -> np.ndarray:
    """numpy view of the histogram's ctypes counts (cached: numpy builds it from the ctypes array type each time)."""
    view = getattr(h, "_harness_counts", None)
    if view is None:
        view = np.ctypeslib.as_array(h.counts)
        h._harness_counts = view  # type: ignore[attr-defined]
    return view


def _hist_record_array(h: HdrHistogram, values: np.ndarray) -> None:
    """``for v in values: h.record_value(v)`` — same resulting state, vectorised.

    ``values`` must be int64 in ``[0, highest_trackable]``.
    """
    if values.size == 0:
        return
    idx = _bucket_index(values, h.unit_magnitude, h.sub_bucket_half_count_magnitude, h.sub_bucket_mask)
    counts = counts_view(h)
    if idx.size < 4096:  # small batch: sort beats a pass over all 23,552 counters
        nz, add = np.unique(idx, return_counts=True)
        counts[nz] += add.astype(np.uint64)
    else:
        add = np.bincount(idx, minlength=h.counts_len)
        nz = np.flatnonzero(add)
        counts[nz] += add[nz].astype(np.uint64)
    h.total_count += int(values.size)
    h.min_value = min(h.min_value, int(values.min()))
    h.max_value = max(h.max_value, int(values.max()))


def _hist_add(dst: HdrHistogram, src: HdrHistogram) -> None:
    """Exact ``dst += src``.  (``HdrHistogram.add`` resets the min to 0 when ``dst`` is
    empty, so the raw min/max are tracked here.)"""
    if src.total_count == 0:
        return
    if (dst.counts_len, dst.unit_magnitude, dst.sub_bucket_half_count_magnitude) == (
        src.counts_len,
        src.unit_magnitude,
        src.sub_bucket_half_count_magnitude,
    ):
        d = counts_view(dst)
        d += counts_view(src).astype(np.uint64, copy=False)
        dst.total_count += src.total_count
        dst.min_value = min(dst.min_value, src.min_value)
        dst.max_value = max(dst.max_value, src.max_value)
    else:  # pragma: no cover - only for foreign histograms with another layout
        mn = dst.min_value
        dst.add(src)
        dst.min_value = min(mn, src.min_value)


def index_values(h: HdrHistogram, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lowest value, size of the equivalent range) of each counts index (the ``hdrh``
    layout: sub-buckets of ``2^(bucket + unit_magnitude)``; the first bucket holds both halves)."""
    half_mag = h.sub_bucket_half_count_magnitude
    half = 1 << half_mag
    bucket = (idx >> half_mag) - 1
    sub = (idx & (half - 1)) + half
    low = bucket < 0
    sub = np.where(low, sub - half, sub)
    bucket = np.where(low, 0, bucket)
    return sub << (bucket + h.unit_magnitude), np.left_shift(1, bucket + h.unit_magnitude)


def value_at_percentile(h: HdrHistogram, percentile: float) -> int:
    """``h.get_value_at_percentile(percentile)`` in numpy (same result, no Python loop)."""
    if h.total_count == 0:
        return 0
    target = h.get_target_count_at_percentile(percentile)
    cum = np.cumsum(counts_view(h), dtype=np.uint64)
    i = int(np.searchsorted(cum, np.uint64(target), side="left"))
    if i >= h.counts_len:
        return 0
    value = h.get_value_from_index(i)
    return h.get_highest_equivalent_value(value) if percentile else h.get_lowest_equivalent_value(value)


def histogram_mean(h: HdrHistogram) -> float:
    """``h.get_mean_value()`` (bucket medians) in numpy."""
    if h.total_count == 0:
        return 0.0
    counts = counts_view(h)
    nz = np.flatnonzero(counts)
    low, size = index_values(h, nz.astype(np.int64))
    med = (low + (size >> 1)).astype(np.float64)
    # one float64 dot (relative error ~1e-12) instead of exact Python ints: a live scrape
    # reads dozens of histograms, and the loop cost ~2 ms each on a 100k-request run
    # (benchmarks/recorder_reads.py prints it beside hdrhistogram's own loop)
    return float(np.dot(counts[nz].astype(np.float64), med)) / h.total_count


def histogram_stats(h: HdrHistogram) -> dict[str, float | int | None]:
    """count, min, mean, p50, p90, p95, p99, p99.9, max — in **milliseconds**."""
    n = int(h.total_count)
    out: dict[str, float | int | None] = {"count": n}
    if n == 0:
        out.update({k: None for k in ("min", "mean", *(name for name, _ in SUMMARY_PERCENTILES), "max")})
        return out
    out["min"] = h.get_min_value() / 1000.0
    out["mean"] = histogram_mean(h) / 1000.0
    for name, p in SUMMARY_PERCENTILES:
        out[name] = value_at_percentile(h, p) / 1000.0
    out["max"] = h.get_max_value() / 1000.0
    return out


# ----------------------------------------------------------------------------- windows


def _win_index(v: np.ndarray) -> np.ndarray:
    return _bucket_index(v, 0, _WIN_HALF_MAG, _WIN_MASK)


def _win_highest(idx: int) -> int:
    bucket = (idx >> _WIN_HALF_MAG) - 1
    sub = (idx & (_WIN_HALF - 1)) + _WIN_HALF
    if bucket < 0:
        sub -= _WIN_HALF
        bucket = 0
    return (sub << bucket) + (1 << bucket) - 1


def window_latency(encoded: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """One encoded window's coarse latency histogram (an entry of ``encode()["targets"][t]["windows"]``)
    as ``(bucket highest values in µs, counts)``, for readers of a result's windows (the regression
    gate's bootstrap); two empty arrays when the window recorded no latency."""
    w = _Window.decode(encoded)
    if w.lat is None:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    idx = np.arange(w.lo, w.lo + w.lat.size, dtype=np.int64)
    bucket = (idx >> _WIN_HALF_MAG) - 1
    sub = (idx & (_WIN_HALF - 1)) + _WIN_HALF
    low = bucket < 0
    sub, bucket = np.where(low, sub - _WIN_HALF, sub), np.where(low, 0, bucket)
    return (sub << bucket) + (1 << bucket) - 1, w.lat


_WIN_INT32_LIMIT = 2**31 - 1


class _Window:
    """One time window of one target: counters and a dense span of coarse buckets.

    The span is stored as int32 (half the memory of int64: a run keeps up to
    ``max_windows`` of these per target) and promoted to int64 before a bucket could pass
    2**31 (only coarse windows of very long, very fast runs get there)."""

    __slots__ = ("counts", "lo", "lat")

    def __init__(self) -> None:
        self.counts = [0] * _W_SLOTS
        self.lo = 0
        self.lat: np.ndarray | None = None

    def add_latency(self, idx: np.ndarray) -> None:
        lo, hi = int(idx.min()), int(idx.max())
        self._cover(lo, hi)
        assert self.lat is not None
        add = np.bincount(idx - self.lo, minlength=self.lat.size)
        self._room(int(idx.size))
        self.lat += add[: self.lat.size]

    def _cover(self, lo: int, hi: int) -> None:
        if self.lat is None:
            self.lo = lo
            self.lat = np.zeros(hi - lo + 1, dtype=np.int32)
            return
        cur_hi = self.lo + self.lat.size - 1
        if lo >= self.lo and hi <= cur_hi:
            return
        new_lo, new_hi = min(lo, self.lo), max(hi, cur_hi)
        grown = np.zeros(new_hi - new_lo + 1, dtype=self.lat.dtype)
        grown[self.lo - new_lo : self.lo - new_lo + self.lat.size] = self.lat
        self.lo, self.lat = new_lo, grown

    def merge(self, other: "_Window") -> None:
        for i, c in enumerate(other.counts):
            self.counts[i] += c
        if other.lat is not None:
            self._cover(other.lo, other.lo + other.lat.size - 1)
            assert self.lat is not None
            self._room(int(other.lat.max()) if other.lat.size else 0)
            self.lat[other.lo - self.lo : other.lo - self.lo + other.lat.size] += other.lat

    def _room(self, adding: int) -> None:
        """Promote the span to int64 if ``adding`` more to one bucket could overflow int32."""
        if self.lat is not None and self.lat.dtype == np.int32 and self.lat.size and \
                int(self.lat.max()) + adding > _WIN_INT32_LIMIT:
            self.lat = self.lat.astype(np.int64)

    def nbytes(self) -> int:
        """Bytes this window holds (its span and counters), for the memory bound's test."""
        return (self.lat.nbytes if self.lat is not None else 0) + 8 * len(self.counts)

    def percentiles(self, ps: Sequence[float]) -> list[int | None]:
        if self.lat is None:
            return [None] * len(ps)
        total = int(self.lat.sum())
        if total == 0:
            return [None] * len(ps)
        cum = np.cumsum(self.lat)
        out: list[int | None] = []
        for p in ps:
            target = max(int(min(p, 100.0) * total / 100 + 0.5), 1)
            i = int(np.searchsorted(cum, target, side="left"))
            out.append(_win_highest(self.lo + i))
        return out

    def encode(self, index: int) -> dict[str, Any]:
        out: dict[str, Any] = {"index": index, "counts": list(self.counts)}
        if self.lat is not None:
            out["lo"] = self.lo
            out["lat"] = base64.b64encode(zlib.compress(self.lat.astype("<i8").tobytes())).decode("ascii")
        return out

    @classmethod
    def decode(cls, d: Mapping[str, Any]) -> "_Window":
        w = cls()
        w.counts = [int(c) for c in d["counts"]]
        if "lat" in d:
            w.lo = int(d["lo"])
            lat = np.frombuffer(zlib.decompress(base64.b64decode(d["lat"])), dtype="<i8")
            w.lat = lat.astype(np.int32 if not lat.size or int(lat.max()) <= _WIN_INT32_LIMIT else np.int64)
        return w


# ----------------------------------------------------------------------------- recorder


class _Key:
    """Per-(target, outcome) state: the pending buffer, histograms and flag totals."""

    __slots__ = ("target", "outcome", "buf", "hists", "count", "cache_hit", "fallback")

    def __init__(self, target: str, outcome: str) -> None:
        self.target = target
        self.outcome = outcome
        self.buf = array("q")  # interleaved (intended, start, end, flags)
        self.hists: dict[str, HdrHistogram] = {}
        self.count = 0
        self.cache_hit = 0
        self.fallback = 0

    def hist(self, metric: str) -> HdrHistogram:
        h = self.hists.get(metric)
        if h is None:
            h = self.hists[metric] = _new_hist()
        return h


class Recorder:
    """Per-target, per-outcome HdrHistograms plus per-window time series.

    See the module docstring for units, the thread-safety model and memory bounds.
    """

    def __init__(
        self,
        *,
        origin_ns: int = 0,
        window_s: int = 1,
        max_windows: int = 900,
        max_error_types: int = 32,
        flush_every: int = 8192,
        lock: bool | None = None,
        background_flush: bool = True,
    ) -> None:
        if window_s < 1 or int(window_s) != window_s:
            raise ValueError(f"window_s must be a whole number of seconds >= 1, got {window_s!r}")
        if max_windows < 2:
            raise ValueError(f"max_windows must be >= 2, got {max_windows!r}")
        self.origin_ns = int(origin_ns)
        self.window_s = int(window_s)
        self.max_windows = int(max_windows)
        self.max_error_types = int(max_error_types)
        self._flush_len = 4 * max(1, int(flush_every))
        # Folding happens on one thread (see _flush_due); recording threads fold inline
        # only if it falls this far behind.
        self._hard_len = 8 * self._flush_len
        self.background_flush = bool(background_flush)
        self._flusher: threading.Thread | None = None
        self._flush_wake = threading.Event()
        # Guards everything but the appends in record(); re-entrant because reads nest.
        self._lock = threading.RLock()
        self._bufs: dict[str, dict[str, array]] = {}
        self._keys: dict[tuple[str, str], _Key] = {}
        self._pending_errors: list[tuple[str, str]] = []
        self._errors: dict[str, dict[str, int]] = {}
        self._details: dict[tuple[str, str], _ErrorDetail] = {}
        self._asked: dict[tuple[str, str], int] = {}  # wants_detail's answers so far (approximate, racy)
        self._counters: dict[str, dict[str, int]] = {}  # per target: status:<code>, bytes_sent, ...
        self._counter_sources: list[Callable[[], Mapping[str, Mapping[str, int]]]] = []
        self._exemplars: dict[str, tuple[str, float, float]] = {}
        self._windows: dict[str, dict[int, _Window]] = {}
        self._wspan: tuple[int, int] | None = None  # lowest and highest window index in use
        self.clamped = 0
        self._t_first: int | None = None  # earliest intended start, ns
        self._t_last: int | None = None  # latest end, ns
        if lock is None:
            gil = getattr(sys, "_is_gil_enabled", lambda: True)()
            lock = not gil
        self.locked_record = bool(lock)
        if lock:
            self.record = self._record_locked  # type: ignore[method-assign]

    # -- hot path --------------------------------------------------------------------
    def record(
        self,
        target: str,
        outcome: str,
        intended_ns: int,
        start_ns: int | None,
        end_ns: int,
        error_type: str | None = None,
        flags: int = 0,
        detail: Any = None,
    ) -> None:
        """Record one request.  Times are int ns on one monotonic clock; ``start_ns=None``
        means the request never started (dropped).  ``flags``: FLAG_CACHE_HIT | FLAG_FALLBACK.
        ``detail``: for an error, a sample of what went wrong (text, or a response body as
        bytes; see :func:`detail_of`); pass it only when :meth:`wants_detail` said so.

        Lock-free under the GIL: the only shared writes are one ``array.extend`` of a
        4-tuple of ints and one ``list.append``, each a single atomic C call; the flush
        takes ``buf[:n]`` then ``del buf[:n]``, so appends racing with it are kept.
        """
        try:
            buf = self._bufs[target][outcome]
        except KeyError:
            buf = self._new_key(target, outcome).buf
        buf.extend((intended_ns, _NO_START if start_ns is None else start_ns, end_ns, flags))
        if error_type is not None:
            self._pending_errors.append((target, error_type, end_ns, detail))
        if len(buf) >= self._flush_len:
            self._flush_due(buf)

    def _flush_due(self, buf: array) -> None:
        """A buffer is full: wake the flusher thread (started on first need), or fold
        inline when there is none or it fell ``_hard_len`` behind.

        Why one thread: glibc gives each thread that allocates its own malloc arena, and
        folding allocates numpy temporaries of ~100 kB–1 MB.  Folded by whichever of 32
        workers filled the buffer, every worker's arena grows to that high-water mark
        and keeps it: the harness's RSS rose ~10 MiB over the first minutes of a no-op
        run at 2,000 rps, read as a leak.  On one thread it is one arena."""
        if not self.background_flush or len(buf) >= self._hard_len:
            self.flush()
            return
        flusher = self._flusher
        if flusher is None or not flusher.is_alive():  # first need, or after a fork
            with self._lock:
                if self._flusher is None or not self._flusher.is_alive():
                    self._flusher = threading.Thread(target=_flush_loop, args=(weakref.ref(self), self._flush_wake),
                                                     name="lbh-recorder-flush", daemon=True)
                    self._flusher.start()
        if not self._flush_wake.is_set():
            self._flush_wake.set()

    def memory_bytes(self) -> int:
        """Bytes held in windows, histograms' counters and pending buffers (numpy/array
        payloads; Python object overhead excluded): what the memory bound is about."""
        with self._lock:
            n = sum(w.nbytes() for wins in self._windows.values() for w in wins.values())
            for key in self._keys.values():
                n += key.buf.buffer_info()[1] * key.buf.itemsize
                n += sum(counts_view(h).nbytes for h in key.hists.values())
            return n

    def _record_locked(
        self,
        target: str,
        outcome: str,
        intended_ns: int,
        start_ns: int | None,
        end_ns: int,
        error_type: str | None = None,
        flags: int = 0,
        detail: Any = None,
    ) -> None:
        """``record`` for free-threaded Python (no GIL to make the appends atomic)."""
        with self._lock:
            Recorder.record(self, target, outcome, intended_ns, start_ns, end_ns, error_type, flags, detail)

    # -- error details, counters, exemplars (off the hot path of ok calls) ----------------
    def wants_detail(self, target: str, error_type: str) -> bool:
        """Should the caller build a sample for this error?  True for about the first
        :data:`ERROR_SAMPLES` of each (target, type), so a flood of errors costs a dict
        lookup each, not a message each.  (Unlocked: a race may ask for one or two more;
        the recorder keeps :data:`ERROR_SAMPLES` at most.)"""
        key = (target, error_type)
        n = self._asked.get(key, 0)
        if n >= ERROR_SAMPLES:
            return False
        self._asked[key] = n + 1
        return True

    def count(self, target: str, name: str, n: int = 1) -> None:
        """Add ``n`` to a named per-target counter (``status:<code>``, ``bytes_sent``,
        ``bytes_received``); counters add on merge."""
        with self._lock:
            c = self._counters.setdefault(target, {})
            c[name] = c.get(name, 0) + int(n)

    def add_counter_source(self, source: Callable[[], Mapping[str, Mapping[str, int]]]) -> None:
        """A callable giving *cumulative* ``{target: {counter: n}}`` totals, read at every
        read of the counters: a target that counts in its own hot path (the HTTP client's
        status codes and bytes) hands the totals over without a call per request."""
        with self._lock:
            self._counter_sources.append(source)

    def counters(self, target: str | None = None) -> dict[str, int]:
        """Named counters of ``target`` (all targets added when None), sources included."""
        with self._lock:
            tables: list[Mapping[str, Mapping[str, int]]] = [self._counters]
            tables += [src() for src in self._counter_sources]
        out: dict[str, int] = {}
        for table in tables:
            for t, cs in table.items():
                if target is None or t == target:
                    for k, v in cs.items():
                        out[k] = out.get(k, 0) + int(v)
        return out

    def _all_counters(self) -> dict[str, dict[str, int]]:
        with self._lock:
            tables: list[Mapping[str, Mapping[str, int]]] = [self._counters]
            tables += [src() for src in self._counter_sources]
        out: dict[str, dict[str, int]] = {}
        for table in tables:
            for t, cs in table.items():
                mine = out.setdefault(t, {})
                for k, v in cs.items():
                    mine[k] = mine.get(k, 0) + int(v)
        return out

    def set_exemplar(self, target: str, trace_id: str, latency_s: float, unix_time: float) -> None:
        """Note ``target``'s latest sampled request (one dict store: called per sampled request)."""
        self._exemplars[target] = (trace_id, latency_s, unix_time)

    def exemplar(self, target: str) -> Optional[Tuple[str, float, float]]:
        """(trace id hex, latency s, unix time) of ``target``'s latest sampled request, or None:
        the live latency histogram's exemplar, so a slow point leads to the server's trace."""
        return self._exemplars.get(target)

    def error_details(self) -> list[dict[str, Any]]:
        """Per (target, error type): count, first/last time (s since ``origin_ns``) and the
        first samples (the result's top-level ``error_details``), most frequent first."""
        with self._lock:
            self._flush_all_locked()
            out = []
            for (target, etype), d in self._details.items():
                out.append({
                    "target": target,
                    "type": etype,
                    "count": int(self._errors.get(target, {}).get(etype, 0)),
                    "first_s": round((d.first_ns - self.origin_ns) / 1e9, 6),
                    "last_s": round((d.last_ns - self.origin_ns) / 1e9, 6),
                    "samples": [text for _t, text in d.samples],
                })
        out.sort(key=lambda e: (-e["count"], e["target"], e["type"]))
        return out

    def record_dropped(self, target: str, intended_ns: Any, end_ns: int) -> None:
        """Record many requests given up at ``end_ns`` at once (``intended_ns``: an int64
        array): what :meth:`record` with ``start_ns=None`` does for each, in one C call, so
        a generator far behind its schedule accounts its backlog in bulk, not one by one."""
        intended = np.asarray(intended_ns, dtype=np.int64)
        if not intended.size:
            return
        rows = np.empty((intended.size, 4), dtype=np.int64)
        rows[:, 0] = intended
        rows[:, 1] = _NO_START
        rows[:, 2] = end_ns
        rows[:, 3] = 0
        try:
            buf = self._bufs[target]["dropped"]
        except KeyError:
            buf = self._new_key(target, "dropped").buf
        if self.locked_record:
            with self._lock:
                buf.frombytes(rows.tobytes())
        else:
            buf.frombytes(rows.tobytes())  # one atomic C call under the GIL, like record()'s extend
        if len(buf) >= self._flush_len:
            self.flush()

    def _new_key(self, target: str, outcome: str) -> _Key:
        if outcome not in _OUTCOME_INDEX:
            raise ValueError(f"unknown outcome {outcome!r}; expected one of {', '.join(OUTCOMES)}")
        if not isinstance(target, str):
            raise TypeError(f"target must be a string, got {target!r}")
        with self._lock:
            key = self._keys.get((target, outcome))
            if key is None:
                key = _Key(target, outcome)
                self._errors.setdefault(target, {})
                self._windows.setdefault(target, {})
                self._keys[(target, outcome)] = key
                # published last: record() finds the buffer only once the key is complete
                self._bufs.setdefault(target, {})[outcome] = key.buf
            return key

    def _note_error(self, target: str, error_type: str, n: int = 1) -> str:
        """Count ``n`` errors; returns the name they were counted under (``other`` past the cap)."""
        errs = self._errors.setdefault(target, {})
        if error_type in errs:
            errs[error_type] += n
        elif len(errs) < self.max_error_types:
            errs[error_type] = n
        else:
            error_type = "other"
            errs["other"] = errs.get("other", 0) + n
        return error_type

    def _note_detail(self, target: str, error_type: str, first_ns: int, last_ns: int,
                     samples: Sequence[tuple[int, str]]) -> None:
        key = (target, error_type)
        d = self._details.get(key)
        if d is None:
            d = self._details[key] = _ErrorDetail(first_ns, last_ns)
        else:
            d.note(first_ns, None)
            d.note(last_ns, None)
        for t_ns, text in samples:
            d.note(t_ns, text)

    # -- folding buffers into histograms ---------------------------------------------
    def flush(self) -> None:
        """Fold every pending record into the histograms and windows (reads do this)."""
        with self._lock:
            self._flush_all_locked()

    def _flush_all_locked(self) -> None:
        n = len(self._pending_errors)
        if n:
            pending = self._pending_errors[:n]
            del self._pending_errors[:n]
            for target, error_type, t_ns, detail in pending:
                name = self._note_error(target, error_type)
                d = self._details.get((target, name))
                if d is None:
                    d = self._details[(target, name)] = _ErrorDetail(t_ns, t_ns)
                d.note(t_ns, detail_of(detail) if detail is not None and len(d.samples) < ERROR_SAMPLES else None)
        for key in list(self._keys.values()):
            if len(key.buf):
                self._flush_key(key)

    def _flush_key(self, key: _Key) -> None:
        buf = key.buf
        n = len(buf)
        n -= n % 4  # always a multiple of 4 (record() extends by 4 atomically); belt and braces
        chunk = buf[:n]
        del buf[:n]
        raw = np.frombuffer(chunk, dtype=np.int64).reshape(-1, 4)
        intended, start, end, flags = raw[:, 0], raw[:, 1], raw[:, 2], raw[:, 3]
        n = int(intended.size)
        key.count += n
        lat = self._to_us(end - intended)
        _hist_record_array(key.hist("latency"), lat)
        started = start != _NO_START
        if started.any():
            if not started.all():
                s, e, i = start[started], end[started], intended[started]
            else:
                s, e, i = start, end, intended
            _hist_record_array(key.hist("service_time"), self._to_us(e - s))
            _hist_record_array(key.hist("lag"), self._to_us(s - i))
        hit = (flags & FLAG_CACHE_HIT) != 0
        fb = (flags & FLAG_FALLBACK) != 0
        key.cache_hit += int(np.count_nonzero(hit))
        key.fallback += int(np.count_nonzero(fb))
        t_first, t_last = int(intended.min()), int(end.max())
        self._t_first = t_first if self._t_first is None else min(self._t_first, t_first)
        self._t_last = t_last if self._t_last is None else max(self._t_last, t_last)
        self._window_add(key, intended, end, lat, hit, fb)

    def _to_us(self, ns: np.ndarray) -> np.ndarray:
        us = ns // 1000
        np.maximum(us, 0, out=us)
        over = us > HIST_HIGHEST_US
        if over.any():
            self.clamped += int(np.count_nonzero(over))
            np.minimum(us, HIST_HIGHEST_US, out=us)
        return us

    def _window_add(
        self, key: _Key, intended: np.ndarray, end: np.ndarray, lat: np.ndarray, hit: np.ndarray, fb: np.ndarray
    ) -> None:
        wins = self._windows.setdefault(key.target, {})
        width = self.window_s * 1_000_000_000
        w_end = (end - self.origin_ns) // width
        w_int = (intended - self.origin_ns) // width
        slot = _OUTCOME_INDEX[key.outcome]
        cidx = _win_index(lat)

        def win(i: int) -> _Window:
            w = wins.get(i)
            if w is None:
                w = wins[i] = _Window()
                self._note_window(i)
            return w

        lo, hi = int(w_end.min()), int(w_end.max())
        if lo == hi:  # the common case: the whole batch ended in one window
            w = win(lo)
            w.counts[slot] += int(w_end.size)
            w.counts[_W_CACHE_HIT] += int(np.count_nonzero(hit))
            w.counts[_W_FALLBACK] += int(np.count_nonzero(fb))
            w.add_latency(cidx)
        else:
            if hi - lo < 64:  # a few windows: cheap masks, no sort
                rel = w_end - lo
                per = np.bincount(rel)
                hits = np.bincount(rel, weights=hit)
                fbs = np.bincount(rel, weights=fb)
                present = np.flatnonzero(per)
                groups = ((lo + int(j), int(j), cidx[rel == j]) for j in present)
            else:
                uniq, inverse = np.unique(w_end, return_inverse=True)
                per = np.bincount(inverse)
                hits = np.bincount(inverse, weights=hit)
                fbs = np.bincount(inverse, weights=fb)
                order = np.argsort(inverse, kind="stable")
                bounds = np.concatenate(([0], np.cumsum(per)))
                groups = (
                    (i, j, cidx[order[bounds[j] : bounds[j + 1]]]) for j, i in enumerate(uniq.tolist())
                )
            for i, j, sel in groups:
                w = win(i)
                w.counts[slot] += int(per[j])
                w.counts[_W_CACHE_HIT] += int(hits[j])
                w.counts[_W_FALLBACK] += int(fbs[j])
                w.add_latency(sel)
        lo, hi = int(w_int.min()), int(w_int.max())
        if lo == hi:
            win(lo).counts[_W_INTENDED] += int(w_int.size)
        else:
            u_int, c_int = np.unique(w_int, return_counts=True)
            for i, c in zip(u_int.tolist(), c_int.tolist()):
                win(i).counts[_W_INTENDED] += c
        self._bound_windows()

    def _note_window(self, i: int) -> None:
        span = self._wspan
        if span is None:
            self._wspan = (i, i)
        elif i < span[0] or i > span[1]:
            self._wspan = (min(i, span[0]), max(i, span[1]))

    def _bound_windows(self) -> None:
        while self._wspan is not None and self._wspan[1] - self._wspan[0] + 1 > self.max_windows:
            self._coarsen(2)

    def _coarsen(self, factor: int) -> None:
        for target, wins in self._windows.items():
            merged: dict[int, _Window] = {}
            for i in sorted(wins):
                j = i // factor
                if j in merged:
                    merged[j].merge(wins[i])
                else:
                    merged[j] = wins[i]
            self._windows[target] = merged
        self.window_s *= factor
        if self._wspan is not None:
            self._wspan = (self._wspan[0] // factor, self._wspan[1] // factor)

    # -- merging and transport -------------------------------------------------------
    def merge(self, other: "Recorder") -> "Recorder":
        """Add ``other`` into this recorder, exactly (histograms add, counters add, windows
        align on the coarser width).  Returns ``self``."""
        if other is self:
            raise ValueError("cannot merge a recorder into itself")
        other.flush()
        with self._lock:
            self._flush_all_locked()
            for (target, outcome), okey in other._keys.items():
                key = self._new_key(target, outcome)
                for metric, h in okey.hists.items():
                    _hist_add(key.hist(metric), h)
                key.count += okey.count
                key.cache_hit += okey.cache_hit
                key.fallback += okey.fallback
            for target, errs in other._errors.items():
                for etype, n in errs.items():
                    self._note_error(target, etype, n)
            for (target, etype), d in other._details.items():
                name = etype if etype in self._errors.get(target, {}) else "other"
                self._note_detail(target, name, d.first_ns, d.last_ns, d.samples)
            for target, cs in other._all_counters().items():
                mine = self._counters.setdefault(target, {})
                for k, v in cs.items():
                    mine[k] = mine.get(k, 0) + v
            for target, ex in other._exemplars.items():
                if target not in self._exemplars or ex[2] >= self._exemplars[target][2]:
                    self._exemplars[target] = ex
            self._merge_windows(other._windows, other.window_s)
            self.clamped += other.clamped
            for attr, pick in (("_t_first", min), ("_t_last", max)):
                mine_t, theirs = getattr(self, attr), getattr(other, attr)
                if theirs is not None:
                    setattr(self, attr, theirs if mine_t is None else pick(mine_t, theirs))
        return self

    def _merge_windows(self, windows: Mapping[str, Mapping[int, _Window]], width: int) -> None:
        hi, lo = max(width, self.window_s), min(width, self.window_s)
        if hi % lo or (hi // lo) & (hi // lo - 1):
            raise ValueError(f"cannot align windows of {self.window_s}s and {width}s")
        if width > self.window_s:
            self._coarsen(width // self.window_s)
        factor = self.window_s // width
        for target, wins in windows.items():
            mine = self._windows.setdefault(target, {})
            for i, w in wins.items():
                j = i // factor
                copy = _Window()
                copy.merge(w)
                if j in mine:
                    mine[j].merge(copy)
                else:
                    mine[j] = copy
                    self._note_window(j)
        self._bound_windows()

    def encode(self) -> dict[str, Any]:
        """A JSON-serialisable dict with base64 HdrHistograms (``HdrHistogram.encode``), so
        results from several processes or pods can be merged later (:meth:`decode`)."""
        with self._lock:
            self._flush_all_locked()
            targets: dict[str, Any] = {}
            for (target, outcome), key in sorted(self._keys.items()):
                t = targets.setdefault(target, {"outcomes": {}, "errors": {}, "windows": []})
                t["outcomes"][outcome] = {
                    "count": key.count,
                    "cache_hit": key.cache_hit,
                    "fallback": key.fallback,
                    "histograms": {
                        m: h.encode().decode("ascii") for m, h in key.hists.items() if h.total_count
                    },
                }
            for target, errs in self._errors.items():
                targets.setdefault(target, {"outcomes": {}, "errors": {}, "windows": []})["errors"] = dict(errs)
            for target, wins in self._windows.items():
                targets.setdefault(target, {"outcomes": {}, "errors": {}, "windows": []})["windows"] = [
                    wins[i].encode(i) for i in sorted(wins)
                ]
            for (target, etype), d in self._details.items():
                t = targets.setdefault(target, {"outcomes": {}, "errors": {}, "windows": []})
                t.setdefault("error_details", {})[etype] = {"first_ns": d.first_ns, "last_ns": d.last_ns,
                                                            "samples": [[t_ns, text] for t_ns, text in d.samples]}
            for target, cs in self._all_counters().items():
                if cs:
                    targets.setdefault(target, {"outcomes": {}, "errors": {}, "windows": []})["counters"] = dict(cs)
            for target, (trace_id, lat, unix) in self._exemplars.items():
                targets.setdefault(target, {"outcomes": {}, "errors": {}, "windows": []})["exemplar"] = [
                    trace_id, lat, unix]
            return {
                "format": ENCODING_FORMAT,
                "unit": "us",
                "hdr": {
                    "lowest": HIST_LOWEST_US,
                    "highest": HIST_HIGHEST_US,
                    "significant_figures": HIST_SIGNIFICANT_FIGURES,
                },
                "origin_ns": self.origin_ns,
                "window_s": self.window_s,
                "max_windows": self.max_windows,
                "max_error_types": self.max_error_types,
                "clamped": self.clamped,
                "t_first_ns": self._t_first,
                "t_last_ns": self._t_last,
                "targets": targets,
            }

    @classmethod
    def decode(cls, data: Mapping[str, Any], *, lock: bool | None = None) -> "Recorder":
        """Rebuild a Recorder from :meth:`encode`'s dict (after a JSON round trip too)."""
        if data.get("format") != ENCODING_FORMAT:
            raise ValueError(f"not a recorder encoding (format {data.get('format')!r}, expected {ENCODING_FORMAT!r})")
        rec = cls(
            origin_ns=int(data.get("origin_ns", 0)),
            window_s=int(data.get("window_s", 1)),
            max_windows=int(data.get("max_windows", 3600)),
            max_error_types=int(data.get("max_error_types", 32)),
            lock=lock,
        )
        rec.clamped = int(data.get("clamped", 0))
        rec._t_first = data.get("t_first_ns")
        rec._t_last = data.get("t_last_ns")
        for target, t in data.get("targets", {}).items():
            rec._errors.setdefault(target, {}).update({k: int(v) for k, v in t.get("errors", {}).items()})
            for etype, d in t.get("error_details", {}).items():
                rec._details[(target, etype)] = _ErrorDetail(
                    int(d["first_ns"]), int(d["last_ns"]),
                    [(int(x[0]), str(x[1])) for x in d.get("samples", [])][:ERROR_SAMPLES])
            if t.get("counters"):
                rec._counters[target] = {str(k): int(v) for k, v in t["counters"].items()}
            if t.get("exemplar"):
                trace_id, lat, unix = t["exemplar"]
                rec._exemplars[target] = (str(trace_id), float(lat), float(unix))
            for outcome, o in t.get("outcomes", {}).items():
                key = rec._new_key(target, outcome)
                key.count = int(o["count"])
                key.cache_hit = int(o.get("cache_hit", 0))
                key.fallback = int(o.get("fallback", 0))
                for metric, b64 in o.get("histograms", {}).items():
                    if metric not in METRICS:
                        raise ValueError(f"unknown histogram {metric!r} in encoding")
                    src = HdrHistogram.decode(b64.encode("ascii") if isinstance(b64, str) else b64)
                    _hist_add(key.hist(metric), src)
            rec._windows[target] = {int(w["index"]): _Window.decode(w) for w in t.get("windows", [])}
            for i in rec._windows[target]:
                rec._note_window(i)
        return rec

    # -- reads -------------------------------------------------------------------------
    def targets(self) -> list[str]:
        with self._lock:
            return sorted({t for t, _ in self._keys})

    def counts(self, target: str | None = None) -> dict[str, int]:
        """Records per outcome (all targets when ``target`` is None)."""
        with self._lock:
            out = dict.fromkeys(OUTCOMES, 0)
            for (t, o), key in self._keys.items():
                if target is None or t == target:
                    out[o] += key.count + len(key.buf) // 4
            return out

    def errors(self, target: str | None = None) -> dict[str, int]:
        with self._lock:
            self._flush_all_locked()
            out: dict[str, int] = {}
            for t, errs in self._errors.items():
                if target is None or t == target:
                    for k, v in errs.items():
                        out[k] = out.get(k, 0) + v
            return out

    def histogram(
        self, metric: str, target: str | None = None, outcomes: Iterable[str] | None = None
    ) -> HdrHistogram:
        """A new HdrHistogram (µs): ``metric`` merged over the chosen target(s)/outcomes."""
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
        wanted = set(OUTCOMES if outcomes is None else outcomes)
        out = _new_hist()
        with self._lock:
            self._flush_all_locked()
            for (t, o), key in self._keys.items():
                if (target is None or t == target) and o in wanted and metric in key.hists:
                    _hist_add(out, key.hists[metric])
        return out

    def _flags(self, target: str | None, outcome: str | None = None) -> tuple[int, int]:
        hits = fbs = 0
        for (t, o), key in self._keys.items():
            if (target is None or t == target) and (outcome is None or o == outcome):
                hits += key.cache_hit
                fbs += key.fallback
        return hits, fbs

    def _target_summary(self, target: str | None) -> dict[str, Any]:
        counts = self.counts(target)
        total = sum(counts.values())
        hits, fbs = self._flags(target)
        ok_hits, ok_fbs = self._flags(target, "ok")
        ok = counts["ok"]

        def ratio(a: int, b: int) -> float | None:
            return a / b if b else None

        out: dict[str, Any] = {
            "count": total,
            "outcomes": counts,
            "errors": self.errors(target),
            "failed_rate": ratio(total - ok, total),
            "error_rate": ratio(counts["error"], total),
            "timeout_rate": ratio(counts["timeout"], total),
            "dropped_rate": ratio(counts["dropped"], total),
            "cache_hit": hits,
            "fallback": fbs,
            "cache_hit_rate": ratio(ok_hits, ok),
            "fallback_rate": ratio(ok_fbs, ok),
        }
        if target is not None:
            cs = self.counters(target)
            codes = {k[len("status:"):]: v for k, v in cs.items() if k.startswith("status:")}
            if codes:
                out["status_codes"] = dict(sorted(codes.items()))
            for k in ("bytes_sent", "bytes_received"):
                if k in cs:
                    out[k] = cs[k]
            stream = {k[len("stream:"):]: v for k, v in cs.items() if k.startswith("stream:")}
            if stream:  # a streaming target's own counts (subscriptions, gaps, cut_short, not_due …)
                out["stream"] = stream
        for metric in METRICS:
            out[metric] = histogram_stats(self.histogram(metric, target))
        out["by_outcome"] = {
            o: {m: histogram_stats(self.histogram(m, target, (o,))) for m in METRICS} for o in OUTCOMES if counts[o]
        }
        return out

    def summary(self) -> dict[str, Any]:
        """Per target (and ``"all"``): count, outcome counts, error types, rates, and for
        latency / service_time / lag: count, min, mean, p50, p90, p95, p99, p99.9, max in
        **ms** (over all outcomes; ``by_outcome`` splits them).  Rates: error/timeout/dropped
        over all records; cache_hit/fallback rates are the share of ``ok`` records flagged
        (``cache_hit``/``fallback`` counts flags on any outcome)."""
        with self._lock:
            self._flush_all_locked()
            return {
                "unit": "ms",
                "targets": {t: self._target_summary(t) for t in self.targets()},
                "all": self._target_summary(None),
                "clamped": self.clamped,
                "window_s": self.window_s,
            }

    def windows(self, target: str | None = None, last: int | None = None) -> list[dict[str, Any]]:
        """The time series: one dict per window from the first to the last (gaps filled
        with zeros, so a stall shows as a hole), with ``start_s``/``end_s`` relative to
        ``origin_ns``, counts per outcome, ``intended``, ``completed``, ``rate``
        (completions/s), ``cache_hit``, ``fallback`` and latency ``p50_ms``, ``p95_ms``,
        ``p99_ms``, ``max_ms`` (≤ 0.8 % bucket error). ``last``: only the last n windows
        (the progress line asks every second; the whole series of a long run costs ms)."""
        with self._lock:
            self._flush_all_locked()
            series = [wins for t, wins in self._windows.items() if target is None or t == target]
            lo = None
            if last is not None:
                top = max((max(wins) for wins in series if wins), default=None)
                if top is None:
                    return []
                lo = top - last + 1
            merged: dict[int, _Window] = {}
            for wins in series:
                for i, w in wins.items():
                    if lo is not None and i < lo:
                        continue
                    m = merged.get(i)
                    if m is None:
                        m = merged[i] = _Window()
                    m.merge(w)
            width = self.window_s
        if not merged:
            return []
        out = []
        empty = _Window()
        for i in range(min(merged), max(merged) + 1):
            w = merged.get(i, empty)
            p50, p95, p99, p100 = w.percentiles((50.0, 95.0, 99.0, 100.0))
            completed = sum(w.counts[: len(OUTCOMES)]) - w.counts[_OUTCOME_INDEX["dropped"]]
            row: dict[str, Any] = {"start_s": i * width, "end_s": (i + 1) * width}
            row.update({o: w.counts[_OUTCOME_INDEX[o]] for o in OUTCOMES})
            row.update(
                {
                    "intended": w.counts[_W_INTENDED],
                    "completed": completed,
                    "rate": completed / width,
                    "cache_hit": w.counts[_W_CACHE_HIT],
                    "fallback": w.counts[_W_FALLBACK],
                    "p50_ms": None if p50 is None else p50 / 1000.0,
                    "p95_ms": None if p95 is None else p95 / 1000.0,
                    "p99_ms": None if p99 is None else p99 / 1000.0,
                    "max_ms": None if p100 is None else p100 / 1000.0,
                }
            )
            out.append(row)
        return out

    @property
    def span_s(self) -> float | None:
        """Seconds from the earliest intended start to the latest end recorded."""
        with self._lock:
            self._flush_all_locked()
            if self._t_first is None or self._t_last is None:
                return None
            return (self._t_last - self._t_first) / 1e9

    # -- thresholds ----------------------------------------------------------------------
    def value(
        self, metric: str, tags: Mapping[str, str], aggregation: Any, *, duration_s: float | None = None
    ) -> float | None:
        """The ``harness.config.thresholds`` ValueSource: ``None`` when there is no data.

        Trend metrics (latency, service_time, lag) are in ms over all outcomes unless
        ``tags`` has ``outcome``; ``throughput`` counts requests that ran (not dropped)
        unless ``outcome`` (or an HTTP ``status``) is given, and its ``rate`` divides by ``duration_s`` (default:
        the recorded span). ``failed_rate`` = (error + timeout + dropped) / all records.
        """
        target = tags.get("target")
        kind = getattr(aggregation, "kind", str(aggregation))
        pct = getattr(aggregation, "percentile", None)
        if metric in METRICS:
            outcomes = (tags["outcome"],) if "outcome" in tags else None
            h = self.histogram(metric, target, outcomes)
            if h.total_count == 0:
                return None
            if kind == "count":
                return float(h.total_count)
            if kind == "avg":
                return histogram_mean(h) / 1000.0
            if kind == "min":
                return h.get_min_value() / 1000.0
            if kind == "max":
                return h.get_max_value() / 1000.0
            if kind == "med":
                return value_at_percentile(h, 50.0) / 1000.0
            if kind == "p" and pct is not None:
                return value_at_percentile(h, float(pct)) / 1000.0
            raise ValueError(f"aggregation {aggregation} does not apply to {metric}")
        with self._lock:
            self._flush_all_locked()
            counts = self.counts(target)
            total = sum(counts.values())
            hits, fbs = self._flags(target, "ok")
        if metric in ("error_rate", "timeout_rate", "dropped_rate"):
            return counts[metric[: -len("_rate")]] / total if total else None
        if metric == "failed_rate":  # k6's http_req_failed: every request that did not succeed
            return (total - counts["ok"]) / total if total else None
        if metric in ("cache_hit_rate", "fallback_rate"):
            num = hits if metric == "cache_hit_rate" else fbs
            return num / counts["ok"] if counts["ok"] else None
        if metric in ("throughput", "rps"):
            if "status" in tags:  # answers by HTTP status (HTTP targets count them)
                n = self.counters(target).get(f"status:{tags['status']}", 0)
            else:
                n = counts[tags["outcome"]] if "outcome" in tags else total - counts["dropped"]
            if kind == "count":
                return float(n) if total else None
            if kind == "rate":
                d = duration_s if duration_s is not None else self.span_s
                return n / d if d else None
            raise ValueError(f"aggregation {aggregation} does not apply to {metric}")
        raise ValueError(f"unknown metric {metric!r}")

    def threshold_source(self, duration_s: float | None = None) -> Callable[[str, Mapping[str, str], Any], float | None]:
        """``value`` bound to a run duration, ready for ``thresholds.evaluate``."""

        def source(metric: str, tags: Mapping[str, str], aggregation: Any) -> float | None:
            return self.value(metric, tags, aggregation, duration_s=duration_s)

        return source

    def __repr__(self) -> str:
        c = self.counts()
        return f"<Recorder {sum(c.values())} records, targets={self.targets()}, window={self.window_s}s>"
