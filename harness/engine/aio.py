"""asyncio executor for ``async def`` and HTTP targets: one event loop, the same open-loop rules.

One scheduler coroutine sleeps until each request's intended time and starts it there.
``max_in_flight`` bounds the calls in flight; a request that waited for a free slot longer
than ``drop_after`` is dropped, as in the thread executor. Timeouts cancel the call for
real and are recorded at the deadline.

Two ways to start a call:

- a coroutine target (``dispatch``) runs as a task per request, bounded by a semaphore,
  under ``asyncio.wait_for``;
- a callback target (``astart``/``acancel``, the HTTP target) is started by a plain call
  and reports its end through ``Call.done``: no task, future or timer per request. Slots
  are counted, waiting requests queue in a deque, and one sweeper timer (every
  ``timeout / 20``, at most 10 ms) cancels calls past their deadline, oldest first.

Requests already more than ``drop_after`` late when the scheduler reaches them (a rate the
loop cannot keep) are dropped at once, the whole backlog in bulk. Every request ends as an
outcome: a payload generator or target raising anything (``SystemExit`` and
``KeyboardInterrupt`` included) is an ``error`` with its type. A failure of the executor's
own machinery (a task that dies, a recorder that raises inside a target's callback) is
listed in ``errors`` and ends the run at once (the runner reports it invalid), instead of
leaving the loop waiting for a call that will never be counted.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from typing import Any, Awaitable, Callable, Deque, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from harness.engine.base import (
    LAG_BUCKET_NS, LAG_BUCKETS, Cursor, Dispatch, Drops, LagCounts, error_name, error_detail, run_loop,
)
from harness.record.recorder import Recorder

__all__ = ["AsyncExecutor", "Call", "sleep_until", "run_measured", "cancelled_by_loop", "run_guarded", "guarded",
           "TargetRaised"]

_TIMEOUT = object()  # Call.done's marker for "the sweeper ended it at its deadline"
#: starts in a row without a sleep before the scheduler lets the loop run the calls it started
_YIELD_EVERY = 64


class TargetRaised(Exception):
    """A target's ``SystemExit`` or ``KeyboardInterrupt``, carried as an ordinary exception:
    raised inside a task, asyncio would also re-raise it out of the event loop and end the
    whole run."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(f"{type(exc).__name__}: {exc}")
        self.exc = exc


async def guarded(awaitable: Awaitable[Any]) -> Any:
    """``await awaitable``, with a ``SystemExit``/``KeyboardInterrupt`` it raises wrapped in
    :class:`TargetRaised` (read the outcome's name with ``error_name(exc.exc)``)."""
    try:
        return await awaitable
    except (SystemExit, KeyboardInterrupt) as exc:
        raise TargetRaised(exc) from None


def cancelled_by_loop() -> bool:
    """Is the running task being cancelled (as opposed to a target raising CancelledError
    itself, which is its failure)? Before Python 3.11 there is no way to tell: assume so."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return task is None or cancelling is None or bool(cancelling())


def run_guarded(coro: Any, errors: List[str]) -> None:
    """Run ``coro`` on a fresh loop; a failure of the loop or of the executor's own code is
    listed in ``errors`` (the run is then invalid) instead of escaping from the executor's
    thread. A KeyboardInterrupt on the main thread is a real Ctrl-C: it propagates."""
    try:
        run_loop(coro)
    except KeyboardInterrupt:
        if threading.current_thread() is threading.main_thread():
            raise
        errors.append("the event loop failed: KeyboardInterrupt")
    except BaseException as exc:
        errors.append(f"the event loop failed: {type(exc).__name__}: {exc}")


async def sleep_until(clock: Callable[[], int], t_ns: int, stopped: Callable[[], bool]) -> bool:
    """Sleep on the running loop until ``clock() >= t_ns``; False when ``stopped()`` came first.

    Plain sleeps (a ``wait_for`` per request costs a task and a timer handle); long gaps are
    cut into 50 ms slices so a stop is seen promptly. Whole milliseconds, rounded up:
    event-loop timers have 1 ms resolution and libuv's rounds down, which would spin; this
    bounds the lag added at 1 ms.
    """
    wait = t_ns - clock()
    while wait > 0 and not stopped():
        await asyncio.sleep(min(-(-wait // 1_000_000), 50) / 1e3)
        wait = t_ns - clock()
    return not stopped()


async def run_measured(body: Callable[[], Awaitable[None]], aopen: Optional[Callable[[], Any]],
                       aclose: Optional[Callable[[], Any]], report: Callable[[Optional[float]], None]) -> None:
    """``aopen()``, ``body()``, ``aclose()``, then ``report(cpu)``: the loop thread's CPU share
    over the run (None under a second). Near 100 % means the generator itself, not the
    target, decided how fast requests went out (the self-check reads it)."""
    cpu0, wall0 = time.thread_time(), time.perf_counter()
    try:
        if aopen is not None:
            await aopen()
        try:
            await body()
        finally:
            if aclose is not None:
                await aclose()
    finally:
        wall = time.perf_counter() - wall0
        report((time.thread_time() - cpu0) / wall if wall > 1.0 else None)


class Call:
    """One in-flight callback call. The target ends it with ``done(error, flags, detail)``
    (``detail``: a sample of what went wrong, text or a response body); a call that already
    ended (timed out, or the target reports twice) ignores later reports. ``handle`` and
    ``extra`` belong to the target (the HTTP pool keeps the connection in ``handle``);
    ``label`` is where the call is recorded (a target with several endpoints sets it);
    ``trace``: the trace id of a sampled call, which becomes its latency's exemplar."""

    __slots__ = ("_ex", "intended", "start", "finished", "handle", "label", "trace", "extra")

    def __init__(self, ex: "AsyncExecutor", intended: int, start: int, label: str) -> None:
        self._ex = ex
        self.intended = intended
        self.start = start
        self.finished = False
        self.handle: Any = None
        self.label = label
        self.trace: Optional[str] = None
        self.extra: Any = None

    @property
    def stopping(self) -> bool:
        """Whether the run was told to stop (a signal, a failure): a target whose work outlives
        its calls (a stream) ends that work now instead of at its natural end."""
        return self._ex._stopping

    def done(self, error: Optional[str] = None, flags: int = 0, detail: Any = None) -> None:
        if not self.finished:
            self.finished = True
            self._ex._finish(self, error, flags, detail)


class AsyncExecutor:
    """Runs a schedule of async calls; same public surface as ``ThreadExecutor``."""

    def __init__(
        self,
        schedule: Iterable[Any],
        dispatch: Dispatch,
        recorder: Recorder,
        *,
        max_in_flight: int,
        timeout_s: float,
        drop_after_s: Optional[float] = None,
        flags_of: Optional[Callable[[Any], int]] = None,
        clock: Callable[[], int] = time.perf_counter_ns,
        aopen: Optional[Callable[[], Any]] = None,
        aclose: Optional[Callable[[], Any]] = None,
        astart: Optional[Callable[[int, Call], None]] = None,
        acancel: Optional[Callable[[Call], None]] = None,
        label: str = "",
        labels: Sequence[str] = (),
    ) -> None:
        """``schedule``: ``(ordinal, intended_ns)`` tuples or ``Profile.arrival_batches()``;
        ``labels``: the target's labels (one label lets a backlog be dropped in bulk);
        ``label``: the callback target's one label."""
        if max_in_flight < 1:
            raise ValueError(f"executor.max_in_flight: must be >= 1, got {max_in_flight}")
        self._cursor = Cursor(schedule)
        self._drops = Drops(recorder, dispatch, labels or ((label,) if label else ()))
        self._dispatch = dispatch
        self._rec = recorder
        self.max_in_flight = max_in_flight
        self.timeout_s = timeout_s
        self.drop_after_ns = int((timeout_s if drop_after_s is None else drop_after_s) * 1e9)
        self._flags_of = flags_of
        self._clock = clock
        self.lag = LagCounts()
        self._lag = self.lag.new_list()  # one writer: the loop thread
        self.errors: List[str] = []
        self._in_flight = 0
        self._stopping = False
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stop_event: Optional[asyncio.Event] = None
        self.abandoned = 0
        self.t0_ns = 0
        self._aopen = aopen
        self._aclose = aclose
        self.loop_cpu_fraction: Optional[float] = None
        # callback mode (astart): counted slots, a FIFO of requests waiting for one, the live
        # calls in start order (deadline order too: one timeout for all) for the sweeper
        self._astart = astart
        self._acancel = acancel
        self._label = label
        self.timeout_ns = int(timeout_s * 1e9)
        self._waiting: Deque[Tuple[int, int]] = deque()
        self._live: Deque[Call] = deque()
        self._draining = False
        self._idle: Optional[asyncio.Future] = None

    def stop(self) -> None:
        self._stopping = True
        loop, ev = self._loop, self._stop_event
        if loop is not None and ev is not None:
            try:
                loop.call_soon_threadsafe(ev.set)
            except RuntimeError:
                pass  # loop already closed

    # -- callback mode ----------------------------------------------------------------
    def _launch(self, ordinal: int, intended: int, start: int) -> None:
        if start - intended > self.drop_after_ns:
            self._rec.record(self._drops.label_of(ordinal), "dropped", intended, None, start)
            return
        call = Call(self, intended, start, self._label)
        self._in_flight += 1
        self._live.append(call)
        try:
            self._astart(ordinal, call)  # type: ignore[misc]
        except BaseException as exc:  # a payload generator or the target failed before sending
            call.done(error_name(exc))

    def _fail(self, what: str, exc: BaseException) -> None:
        """The executor's own machinery failed (not a call): list it, end the run now."""
        self.errors.append(f"{what}: {type(exc).__name__}: {exc}")
        self._stopping = True
        self._waiting.clear()
        if self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    def _finish(self, call: Call, error: Any, flags: int, detail: Any = None) -> None:
        # Called from the target's callbacks: an exception here would end in the loop's
        # exception handler and leave the run waiting for this call for ever.
        try:
            self._finish_call(call, error, flags, detail)
        except BaseException as exc:
            self._fail("recording a call's end failed", exc)

    def _finish_call(self, call: Call, error: Any, flags: int, detail: Any) -> None:
        self._in_flight -= 1
        end = self._clock()
        rec = self._rec
        if error is _TIMEOUT or end - call.start > self.timeout_ns:
            # an answer after the deadline but before the next sweep is a timeout too (as in
            # the thread executor): the outcome does not depend on the sweeper's phase
            rec.record(call.label, "timeout", call.intended, call.start, call.start + self.timeout_ns)
        elif error is None:
            rec.record(call.label, "ok", call.intended, call.start, end, None, flags)
            if call.trace is not None:  # a sampled call: its latency's exemplar
                rec.set_exemplar(call.label, call.trace, (end - call.intended) / 1e9, time.time())
        else:
            rec.record(call.label, "error", call.intended, call.start, end, error, 0,
                       detail if detail is not None and rec.wants_detail(call.label, error) else None)
        if self._waiting and not self._draining:
            self._draining = True  # calls that end inside _launch do not recurse into here
            try:
                while self._waiting and self._in_flight < self.max_in_flight:
                    ordinal, intended = self._waiting.popleft()
                    self._launch(ordinal, intended, self._clock())
            finally:
                self._draining = False
        if self._in_flight == 0 and self._idle is not None and not self._idle.done() and not self._waiting:
            self._idle.set_result(None)

    def _sweep(self) -> None:
        try:
            self._sweep_calls()
        except BaseException as exc:  # a dead sweeper would leave stuck calls holding the run
            self._fail("the timeout sweeper failed", exc)
            return
        if self._idle is None or not self._idle.done():
            self._loop.call_later(self._sweep_s, self._sweep)  # type: ignore[union-attr]

    def _sweep_calls(self) -> None:
        live, now, timeout = self._live, self._clock(), self.timeout_ns
        while live and (live[0].finished or now - live[0].start >= timeout):
            call = live.popleft()
            if not call.finished:
                call.finished = True
                try:
                    self._acancel(call)  # type: ignore[misc]
                except Exception:
                    pass  # the call is over for the run either way; the sweeper must keep going
                self._finish(call, _TIMEOUT, 0)

    def in_flight(self) -> int:
        return self._in_flight

    def run(self, t0_ns: Optional[int] = None) -> None:
        self.t0_ns = self._clock() if t0_ns is None else t0_ns
        run_guarded(self._main(), self.errors)

    def _report_cpu(self, fraction: Optional[float]) -> None:
        self.loop_cpu_fraction = fraction

    async def _one(self, sem: asyncio.Semaphore, ordinal: int, intended: int) -> None:
        try:
            await self._call(sem, ordinal, intended)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the executor's own failure: never a silently lost task
            self._fail("a request's task died", exc)

    async def _call(self, sem: asyncio.Semaphore, ordinal: int, intended: int) -> None:
        clock = self._clock
        async with sem:
            start = clock()
            if start - intended > self.drop_after_ns:
                self._rec.record(self._drops.label_of(ordinal), "dropped", intended, None, start)
                return
            try:
                label, fn, args = self._dispatch(ordinal)
            except BaseException as exc:  # the payload generator failed: this request's outcome
                now = clock()
                self._rec.record(self._drops.error_label, "error", intended, now, now, error_name(exc))
                return
            self._in_flight += 1
            flags = 0
            try:
                result = await asyncio.wait_for(guarded(fn(*args)), self.timeout_s)
                if self._flags_of is not None:
                    flags = self._flags_of(result)
            except asyncio.TimeoutError:
                self._rec.record(label, "timeout", intended, start, start + self.timeout_ns)
                return
            except asyncio.CancelledError as exc:
                if cancelled_by_loop():
                    raise
                self._rec.record(label, "error", intended, start, clock(), error_name(exc))
                return
            except BaseException as exc:  # SystemExit, KeyboardInterrupt from the target: its failure
                raised = exc.exc if isinstance(exc, TargetRaised) else exc
                name = error_name(raised)
                self._rec.record(label, "error", intended, start, clock(), name, 0,
                                 error_detail(raised) if self._rec.wants_detail(label, name) else None)
                return
            finally:
                self._in_flight -= 1
            end = clock()
            self._rec.record(label, "ok", intended, start, end, None, flags)

    def _drop_backlog(self, ordinal: int, intended: int, now: int) -> None:
        """Drop this request and every later one already past ``drop_after`` (in bulk)."""
        ks, ts = self._cursor.overdue(now - self.t0_ns - self.drop_after_ns)
        self._drops.record(np.concatenate(([ordinal], ks)), np.concatenate(([intended], ts + self.t0_ns)), now)

    async def _main(self) -> None:
        await run_measured(self._schedule_all, self._aopen, self._aclose, self._report_cpu)

    async def _schedule_all(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        if self._astart is not None:
            await self._schedule_callbacks()
            return
        sem = asyncio.Semaphore(self.max_in_flight)
        tasks = set()
        clock, cursor, drop_after = self._clock, self._cursor, self.drop_after_ns
        unslept = 0
        while not self._stopping:
            req = cursor.next()
            if req is None:
                break
            ordinal, offset = req
            intended = self.t0_ns + offset
            if intended > clock():
                if not await self._wait_until(intended):
                    break
                unslept = 0
            else:
                now = clock()
                if now - intended > drop_after:
                    self._drop_backlog(ordinal, intended, now)
                    continue
                unslept += 1
                if unslept >= _YIELD_EVERY:  # behind schedule: let the started calls run too
                    unslept = 0
                    await asyncio.sleep(0)
            if not sem.locked():  # a start the generator itself made late counts, waiting for a slot does not
                self._lag[min((clock() - intended) // LAG_BUCKET_NS, LAG_BUCKETS)] += 1
            t = asyncio.ensure_future(self._one(sem, ordinal, intended))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
        if tasks:
            # wait_for inside each task bounds this by the timeout (+ queueing for the semaphore,
            # which the drop rule bounds)
            for r in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError):
                    self.errors.append(f"a request's task died: {type(r).__name__}: {r}")

    async def _wait_until(self, intended: int) -> bool:
        """Sleep to ``intended``; False when stop() came first."""
        return await sleep_until(self._clock, intended, self._is_stopping)

    def _is_stopping(self) -> bool:
        return self._stopping

    async def _schedule_callbacks(self) -> None:
        assert self._loop is not None
        self._sweep_s = max(0.001, min(self.timeout_s / 20, 0.01))  # a 1 ns timeout must not spin
        self._loop.call_later(self._sweep_s, self._sweep)
        clock, t0, lag, waiting = self._clock, self.t0_ns, self._lag, self._waiting
        cursor, drop_after = self._cursor, self.drop_after_ns
        unslept = 0
        while not self._stopping:
            req = cursor.next()
            if req is None:
                break
            ordinal, offset = req
            intended = t0 + offset
            if intended > clock():
                if not await self._wait_until(intended):
                    break
                unslept = 0
            else:
                now = clock()
                if now - intended > drop_after:
                    self._drop_backlog(ordinal, intended, now)
                    continue
                unslept += 1
                if unslept >= _YIELD_EVERY:  # behind schedule: let the replies in
                    unslept = 0
                    await asyncio.sleep(0)
                    if self._stopping:
                        break
            if self._in_flight < self.max_in_flight and not waiting:
                now = clock()
                lag[min((now - intended) // LAG_BUCKET_NS, LAG_BUCKETS)] += 1
                self._launch(ordinal, intended, now)
            else:
                waiting.append((ordinal, intended))
        # every call ends by its deadline (the sweeper), so this wait is bounded by the timeout
        # plus the queue ahead of the last request (which the drop rule bounds)
        self._idle = self._loop.create_future()
        if (self._in_flight == 0 and not waiting) or self.errors:
            self._idle.set_result(None)
        await self._idle
