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
from typing import Any, Callable, Dict, Hashable, List, Optional, Protocol, Sequence, Tuple

from harness.targets.base import NamedFailure

__all__ = ["Executor", "Dispatch", "Request", "LagCounts", "LAG_BUCKET_NS", "LAG_BUCKETS", "lag_percentile",
           "error_name", "run_loop"]

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


def error_name(exc: BaseException) -> str:
    """The outcome's error type: a :class:`NamedFailure`'s own name (``HTTP 503``, or the
    failure a callback target reported), else the exception's class name (a bounded set)."""
    return exc.error_name if isinstance(exc, NamedFailure) else type(exc).__name__


def run_loop(coro: Any) -> None:
    """uvloop when installed (more requests per generator CPU-second), else asyncio's loop."""
    try:
        import uvloop  # optional: a faster loop where the platform has it
    except ImportError:
        asyncio.run(coro)
        return
    uvloop.run(coro)
