"""The executor contract, and the pieces every executor shares.

An executor sends the schedule's requests at their intended times and records each one
in the run's one :class:`~harness.record.recorder.Recorder`. Several implementations
(threads, asyncio, closed-loop users, worker processes) answer the same questions, so
the runner and the live view never probe which one they hold.

Scheduler lag (actual start − intended start, counted only where a free worker waited
for the start: the generator's own lateness, not time spent queued behind a busy
target) is kept in :class:`LagCounts`: fixed 50 µs buckets, one list per thread so the
hot path takes no lock, summed when read.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable, Dict, Hashable, Iterable, List, Optional, Protocol, Sequence, Tuple

import numpy as np

from harness.record.recorder import Recorder, detail_of
from harness.targets.base import NamedFailure

__all__ = ["Executor", "Dispatch", "Request", "LagCounts", "LAG_BUCKET_NS", "LAG_BUCKETS", "lag_percentile",
           "error_name", "error_detail", "run_loop", "Cursor", "Drops", "accounting_problems", "UNKNOWN_LABEL"]

#: ``dispatch(ordinal) -> (target label, callable, args)``
Dispatch = Callable[[int], Tuple[str, Callable[..., Any], Sequence[Any]]]
Request = Tuple[int, int]  # (ordinal, intended ns from run start)

LAG_BUCKET_NS = 50_000  # scheduler-lag resolution: 50 us ...
LAG_BUCKETS = 2000      # ... up to 100 ms; later starts share the last bucket


def lag_percentile(counts: Sequence[int], p: float) -> Optional[float]:
    """Percentile ``p`` (ms) of bucketed lag counts: the bucket's upper edge, never flattering."""
    n = sum(counts)
    if n == 0:
        return None
    rank = max(1, int(-(-p * n // 100)))  # ceil(p % of n)
    acc = 0
    for i, c in enumerate(counts):
        acc += c
        if acc >= rank:
            return (i + 1) * LAG_BUCKET_NS / 1e6
    return None


class LagCounts:
    """Scheduler-lag counts of one executor: lists written by one thread each (lock-free),
    or parts replaced whole (a worker process's latest snapshot), summed on read."""

    def __init__(self) -> None:
        self._lists: List[List[int]] = []
        self._parts: Dict[Hashable, List[int]] = {}
        self._lock = threading.Lock()

    def new_list(self) -> List[int]:
        """A list for one writer: ``lst[min(lag_ns // LAG_BUCKET_NS, LAG_BUCKETS)] += 1``."""
        counts = [0] * (LAG_BUCKETS + 1)
        with self._lock:
            self._lists.append(counts)
        return counts

    def set_part(self, key: Hashable, counts: Sequence[int]) -> None:
        with self._lock:
            self._parts[key] = list(counts)

    def counts(self) -> List[int]:
        with self._lock:
            lists = self._lists + list(self._parts.values())
        return [sum(col) for col in zip(*lists)] if lists else [0] * (LAG_BUCKETS + 1)

    def percentile(self, p: float) -> Optional[float]:
        return lag_percentile(self.counts(), p)

    def samples(self) -> int:
        return sum(self.counts())


class Executor(Protocol):
    """What the runner, the live view and the self-check read of any executor."""

    lag: LagCounts
    #: calls still running past their deadline when the run ended
    abandoned: int
    #: failures of the machinery (a worker process that died), never the target's
    errors: List[str]
    #: the event loop's own CPU share, for executors that run one (else None)
    loop_cpu_fraction: Optional[float]

    def run(self, t0_ns: Optional[int] = None) -> None:
        """Send the schedule from ``t0_ns`` (perf_counter_ns) until it ends or ``stop()``."""

    def stop(self) -> None:
        """Stop starting requests; calls in flight finish or time out."""

    def in_flight(self) -> int:
        """Calls running now."""


#: the label of a request whose dispatch (its payload generator) failed, when the target
#: has several labels and the failing dispatch could not say which one it was for
UNKNOWN_LABEL = "unknown"


class Cursor:
    """The schedule, read one request at a time or, when the generator is far behind,
    every request intended before a cutoff at once (a slice of the current numpy batch:
    the backlog is skipped per 4,096-request batch, never walked request by request).

    ``schedule``: ``(ordinals, intended_ns)`` int64 array pairs (``Profile.arrival_batches``)
    or plain ``(ordinal, intended_ns)`` tuples. Not thread-safe: callers hold their lock.
    """

    __slots__ = ("_src", "_ks", "_ts", "_kl", "_tl", "_i", "exhausted")

    def __init__(self, schedule: Iterable[Any]) -> None:
        self._src = iter(schedule)
        self._ks = self._ts = np.empty(0, dtype=np.int64)
        self._kl: List[int] = []
        self._tl: List[int] = []
        self._i = 0
        self.exhausted = False

    def _fill(self) -> bool:
        while self._i >= len(self._tl):
            if self.exhausted:
                return False
            try:
                a, b = next(self._src)
            except StopIteration:
                self.exhausted = True
                return False
            if isinstance(a, np.ndarray):
                self._ks, self._ts = a.astype(np.int64, copy=False), np.asarray(b, dtype=np.int64)
                self._kl, self._tl = self._ks.tolist(), self._ts.tolist()
            else:
                self._kl, self._tl = [int(a)], [int(b)]
                self._ks, self._ts = np.array(self._kl, dtype=np.int64), np.array(self._tl, dtype=np.int64)
            self._i = 0
        return True

    def next(self) -> Optional[Request]:
        """The next request, or None at the end of the schedule."""
        if self._i >= len(self._tl) and not self._fill():
            return None
        i = self._i
        self._i = i + 1
        return self._kl[i], self._tl[i]

    def overdue(self, cutoff_ns: int) -> Tuple[np.ndarray, np.ndarray]:
        """``(ordinals, intended_ns)`` of every next request intended before ``cutoff_ns``
        (the schedule is non-decreasing), taken off the schedule."""
        ks: List[np.ndarray] = []
        ts: List[np.ndarray] = []
        while self._fill():
            i, tl = self._i, self._tl
            if tl[i] >= cutoff_ns:
                break
            j = len(tl) if tl[-1] < cutoff_ns else int(np.searchsorted(self._ts, cutoff_ns, side="left"))
            ks.append(self._ks[i:j])
            ts.append(self._ts[i:j])
            self._i = j
            if j < len(tl):
                break
        if not ks:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        if len(ks) == 1:
            return ks[0], ts[0]
        return np.concatenate(ks), np.concatenate(ts)


class Drops:
    """Records requests given up before they started (``dropped``), one or many at once.

    With one label (every target but a mix) a backlog is recorded in one call
    (:meth:`Recorder.record_dropped`); a mix asks ``dispatch`` for each ordinal's label.
    """

    def __init__(self, recorder: Recorder, dispatch: Dispatch, labels: Sequence[str]) -> None:
        self._rec = recorder
        self._dispatch = dispatch
        self.labels = tuple(labels)
        #: where a request whose dispatch failed is recorded
        self.error_label = self.labels[0] if len(self.labels) == 1 else UNKNOWN_LABEL

    def label_of(self, ordinal: int) -> str:
        if len(self.labels) == 1:
            return self.labels[0]
        try:
            return self._dispatch(ordinal)[0]
        except BaseException:  # its own failure is counted when (if) the request is sent
            return self.error_label

    def record(self, ordinals: np.ndarray, intended_ns: np.ndarray, end_ns: int) -> None:
        """Drop every request of ``ordinals`` (intended at ``intended_ns``, absolute), at ``end_ns``."""
        if not len(intended_ns):
            return
        if len(self.labels) == 1:
            self._rec.record_dropped(self.labels[0], intended_ns, end_ns)
            return
        record = self._rec.record
        for k, t in zip(ordinals.tolist(), intended_ns.tolist()):
            record(self.label_of(k), "dropped", t, None, end_ns)


def accounting_problems(errors: Sequence[str], scheduled: Optional[int], recorded: int) -> List[str]:
    """Why a run's numbers cannot be trusted because of the harness's own machinery: a
    worker (thread, task, process) that failed, or scheduled requests without an outcome
    (``scheduled``: None when the run was cut short or has no fixed schedule)."""
    reasons = [f"the generator failed: {e}" for e in errors]
    if scheduled is not None and recorded != scheduled:
        reasons.append(f"{recorded} outcomes recorded for {scheduled} scheduled requests: every scheduled "
                       "request must end as ok, error, timeout or dropped (a worker stopped early)")
    return reasons


def error_name(exc: BaseException) -> str:
    """The outcome's error type: a :class:`NamedFailure`'s own name (``HTTP 503``, or the
    failure a callback target reported), else the exception's class name (a bounded set)."""
    return exc.error_name if isinstance(exc, NamedFailure) else type(exc).__name__


def error_detail(exc: BaseException) -> str:
    """A sample of what went wrong, for the result's error details: a :class:`NamedFailure`'s
    own message (``HTTP 422``'s body), else ``Type: message``."""
    return detail_of(str(exc) or exc.error_name) if isinstance(exc, NamedFailure) else detail_of(exc)


def run_loop(coro: Any) -> None:
    """uvloop when installed (more requests per generator CPU-second), else asyncio's loop."""
    try:
        import uvloop  # optional: a faster loop where the platform has it
    except ImportError:
        asyncio.run(coro)
        return
    uvloop.run(coro)
