"""Thread executor: open-loop dispatch where each worker claims the next intended start.

Why claim-based workers instead of a scheduler thread feeding a queue: a hand-off costs a
lock, a wake-up and a GIL switch per request, which is most of the budget at 20,000 rps.
Here ``threads`` workers share one schedule; a free worker claims the next unclaimed
request, sleeps until its intended time, and calls the target itself. The schedule never
waits for replies, and ``threads`` is the maximum in flight.

Documented rule for requests that cannot start on time (all workers busy): the request
keeps its intended start, so its latency grows while it waits. When a worker finally
claims it, it runs if it is less than ``drop_after`` late; otherwise it is recorded as
``dropped`` with latency = the wait so far, and never sent (a load generator that keeps
sending hopelessly late work only measures its own backlog).

Timeouts: a watchdog records a call still running at ``start + timeout`` as ``timeout``
at the deadline and starts a replacement worker, so the concurrency stays what was asked
for; the stuck call's late result is discarded and the run never waits for it.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterator, List, Optional, Tuple

from harness.engine.base import LAG_BUCKET_NS, LAG_BUCKETS, Dispatch, LagCounts, Request
from harness.record.recorder import Recorder

__all__ = ["ThreadExecutor"]


class _Slot:
    """What one worker is doing now, for the watchdog."""

    __slots__ = ("label", "intended", "start", "active", "timed_out", "lock")

    def __init__(self) -> None:
        self.active = False
        self.timed_out = False
        self.lock = threading.Lock()
        self.label = ""
        self.intended = self.start = 0


class ThreadExecutor:
    """Runs a schedule of ``(ordinal, intended_ns)`` on ``threads`` worker threads, all
    recording into one :class:`Recorder` (its ``record`` takes no lock under the GIL)."""

    def __init__(
        self,
        schedule: Iterator[Request],
        dispatch: Dispatch,
        recorder: Recorder,
        *,
        threads: int,
        timeout_s: float,
        drop_after_s: Optional[float] = None,
        flags_of: Optional[Callable[[Any], int]] = None,
        clock: Callable[[], int] = time.perf_counter_ns,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if threads < 1:
            raise ValueError(f"executor.threads: must be >= 1, got {threads}")
        if timeout_s <= 0:
            raise ValueError(f"timeout: must be > 0, got {timeout_s}")
        self._schedule = schedule
        self._claim_lock = threading.Lock()
        self._dispatch = dispatch
        self._rec = recorder
        self.threads = threads
        self.timeout_ns = int(timeout_s * 1e9)
        self.drop_after_ns = int((timeout_s if drop_after_s is None else drop_after_s) * 1e9)
        self._flags_of = flags_of
        self._clock = clock
        self._sleep = sleep
        self._rec_lock = threading.Lock()
        self._slots: List[_Slot] = []
        self.lag = LagCounts()
        self._workers: List[Tuple[threading.Thread, _Slot]] = []
        self._stop = threading.Event()
        self._exhausted = False
        self.t0_ns = 0
        self.abandoned = 0  # calls still stuck when the run ended
        self.errors: List[str] = []
        self.loop_cpu_fraction: Optional[float] = None
        self._done = False

    # -- public ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming new requests; calls in flight finish (or time out)."""
        self._stop.set()

    def run(self, t0_ns: Optional[int] = None) -> None:
        """Run to the end of the schedule (or ``stop()``)."""
        self.t0_ns = self._clock() if t0_ns is None else t0_ns
        self._done = False
        for _ in range(self.threads):
            self._spawn()
        watchdog = threading.Thread(target=self._watch, name="lbh-watchdog", daemon=True)
        watchdog.start()
        while True:
            with self._rec_lock:
                alive = [(w, s) for w, s in self._workers if w.is_alive()]
                live_slots = [s for s in self._slots if s.active and not s.timed_out]
            if not live_slots and (self._exhausted or self._stop.is_set()) and not any(
                not s.timed_out for _w, s in alive
            ):
                break
            if not alive:
                break
            time.sleep(0.05)
        self._done = True
        watchdog.join(timeout=1)
        with self._rec_lock:
            self.abandoned = sum(1 for s in self._slots if s.active and s.timed_out)

    def in_flight(self) -> int:
        """Calls running now (stuck calls past their timeout excluded)."""
        return sum(1 for s in list(self._slots) if s.active and not s.timed_out)

    # -- internals ------------------------------------------------------------------------

    def _spawn(self) -> None:
        slot = _Slot()
        t = threading.Thread(target=self._work, args=(slot, self._rec), name=f"lbh-worker-{len(self._workers)}",
                             daemon=True)
        with self._rec_lock:
            self._slots.append(slot)
            self._workers.append((t, slot))
        t.start()

    def _claim(self) -> Optional[Request]:
        with self._claim_lock:
            if self._exhausted:
                return None
            try:
                return next(self._schedule)
            except StopIteration:
                self._exhausted = True
                return None

    def _work(self, slot: _Slot, rec: Recorder) -> None:
        clock = self._clock
        sleep = self._sleep
        dispatch = self._dispatch
        record = rec.record
        flags_of = self._flags_of
        t0 = self.t0_ns
        drop_after = self.drop_after_ns
        timeout_ns = self.timeout_ns
        stop = self._stop
        claim = self._claim
        lag_counts = self.lag.new_list()
        while not stop.is_set():
            req = claim()
            if req is None:
                return
            ordinal, offset = req
            intended = t0 + offset
            claimed = clock()
            wait = intended - claimed
            if wait > 0:
                if wait > 50_000_000:
                    if stop.wait(wait / 1e9):  # a long gap: stay interruptible
                        return
                else:
                    sleep(wait / 1e9)
            else:
                late = -wait
                if late > drop_after:
                    label = dispatch(ordinal)[0]
                    record(label, "dropped", intended, None, claimed)
                    continue
            label, fn, args = dispatch(ordinal)
            slot.label = label
            slot.intended = intended
            start = clock()
            if wait > 0:  # a free worker waited for this start: any lateness is ours
                lag_counts[min((start - intended) // LAG_BUCKET_NS, LAG_BUCKETS)] += 1
            slot.start = start
            slot.active = True
            error_type = result = None
            try:
                result = fn(*args)
                outcome = "ok"
            except Exception as exc:  # the target's failure is data, not ours
                outcome = "error"
                error_type = type(exc).__name__
            end = clock()
            with slot.lock:
                slot.active = False
                if slot.timed_out:
                    return  # the watchdog already counted it and replaced this worker
            if end - start > timeout_ns:  # finished late, before the watchdog looked
                record(label, "timeout", intended, start, start + timeout_ns)
            elif outcome == "ok":
                record(label, "ok", intended, start, end, None, flags_of(result) if flags_of else 0)
            else:
                record(label, "error", intended, start, end, error_type)

    def _watch(self) -> None:
        # Detection delay only decides when the replacement worker starts: the timeout
        # itself is recorded at start + timeout exactly.
        period = min(0.05, self.timeout_ns / 1e9 / 4)
        while not self._done:
            now = self._clock()
            with self._rec_lock:
                slots = list(self._slots)
            for slot in slots:
                if slot.active and not slot.timed_out and now - slot.start > self.timeout_ns:
                    with slot.lock:
                        if not slot.active or slot.timed_out:
                            continue
                        slot.timed_out = True
                    self._rec.record(slot.label, "timeout", slot.intended, slot.start,
                                           slot.start + self.timeout_ns)
                    if not (self._stop.is_set() or self._exhausted):
                        self._spawn()
            time.sleep(period)
