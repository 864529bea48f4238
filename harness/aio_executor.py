"""asyncio executor for ``async def`` targets: one event loop, the same open-loop rules.

Each request is a task created at its intended time (``loop.call_at``-style sleeps in one
scheduler coroutine); ``max_in_flight`` is a semaphore, and a request that waited for it
longer than ``drop_after`` is dropped, as in the thread executor. Timeouts cancel the
call for real (``asyncio.wait_for``) and are recorded at the deadline.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Iterator, List, Optional

from harness.executor import LAG_BUCKET_NS, LAG_BUCKETS, Dispatch, Request, lag_percentile

__all__ = ["AsyncExecutor"]


def _run_loop(coro: Any) -> None:
    """uvloop when installed (more requests per generator CPU-second), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return
    uvloop.run(coro)


def _error_name(exc: BaseException) -> str:
    """``HTTP 503`` for HTTP answers, else the exception type (a bounded label set)."""
    status = getattr(exc, "status", None)
    if type(exc).__name__ == "HttpError" and isinstance(status, int):
        return f"HTTP {status}"
    return type(exc).__name__


class AsyncExecutor:
    """Runs a schedule of async calls; same public surface as ``ThreadExecutor``."""

    def __init__(
        self,
        schedule: Iterator[Request],
        dispatch: Dispatch,
        new_recorder: Callable[[], Any],
        *,
        max_in_flight: int,
        timeout_s: float,
        drop_after_s: Optional[float] = None,
        flags_of: Optional[Callable[[Any], int]] = None,
        clock: Callable[[], int] = time.perf_counter_ns,
        aopen: Optional[Callable[[], Any]] = None,
        aclose: Optional[Callable[[], Any]] = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"executor.max_in_flight: must be >= 1, got {max_in_flight}")
        self._schedule = schedule
        self._dispatch = dispatch
        self._rec = new_recorder()
        self.recorders: List[Any] = [self._rec]
        self.max_in_flight = max_in_flight
        self.timeout_s = timeout_s
        self.drop_after_ns = int((timeout_s if drop_after_s is None else drop_after_s) * 1e9)
        self._flags_of = flags_of
        self._clock = clock
        self._lag = [0] * (LAG_BUCKETS + 1)
        self._in_flight = 0
        self._stopping = False
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stop_event: Optional[asyncio.Event] = None
        self.abandoned = 0
        self.t0_ns = 0
        self._aopen = aopen
        self._aclose = aclose
        self.loop_cpu_fraction: Optional[float] = None

    def stop(self) -> None:
        self._stopping = True
        loop, ev = self._loop, self._stop_event
        if loop is not None and ev is not None:
            try:
                loop.call_soon_threadsafe(ev.set)
            except RuntimeError:
                pass  # loop already closed

    def in_flight(self) -> int:
        return self._in_flight

    def lag_counts(self) -> List[int]:
        return list(self._lag)

    def schedule_lag_percentile(self, p: float) -> Optional[float]:
        return lag_percentile(self._lag, p)

    def schedule_lag_samples(self) -> int:
        return sum(self._lag)

    def run(self, t0_ns: Optional[int] = None) -> List[Any]:
        self.t0_ns = self._clock() if t0_ns is None else t0_ns
        _run_loop(self._main())
        return self.recorders

    async def _one(self, sem: asyncio.Semaphore, ordinal: int, intended: int) -> None:
        clock = self._clock
        async with sem:
            start = clock()
            label, fn, args = self._dispatch(ordinal)
            if start - intended > self.drop_after_ns:
                self._rec.record(label, "dropped", intended, None, start)
                return
            self._in_flight += 1
            try:
                result = await asyncio.wait_for(fn(*args), self.timeout_s)
            except asyncio.TimeoutError:
                self._rec.record(label, "timeout", intended, start, start + int(self.timeout_s * 1e9))
                return
            except Exception as exc:
                self._rec.record(label, "error", intended, start, clock(), _error_name(exc))
                return
            finally:
                self._in_flight -= 1
            end = clock()
            self._rec.record(label, "ok", intended, start, end, None, self._flags_of(result) if self._flags_of else 0)

    async def _main(self) -> None:
        # CPU of the loop's thread over the run: near 100 % means the generator itself, not
        # the target, decided how fast requests went out (the self-check reads it).
        cpu0, wall0 = time.thread_time(), time.perf_counter()
        try:
            await self._open_and_schedule()
        finally:
            wall = time.perf_counter() - wall0
            self.loop_cpu_fraction = (time.thread_time() - cpu0) / wall if wall > 1.0 else None

    async def _open_and_schedule(self) -> None:
        if self._aopen is not None:
            await self._aopen()
        try:
            await self._schedule_all()
        finally:
            if self._aclose is not None:
                await self._aclose()

    async def _schedule_all(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        sem = asyncio.Semaphore(self.max_in_flight)
        tasks = set()
        clock = self._clock
        for ordinal, offset in self._schedule:
            if self._stopping:
                break
            intended = self.t0_ns + offset
            wait = intended - clock()
            if wait > 0:
                # plain sleeps (a wait_for per request costs a task and a timer handle);
                # long gaps are cut into 50 ms slices so stop() is seen promptly
                while wait > 0 and not self._stopping:
                    # whole milliseconds, rounded up: event-loop timers have 1 ms resolution and
                    # libuv's rounds down, which would spin; this bounds the lag added at 1 ms
                    await asyncio.sleep(min(-(-wait // 1_000_000), 50) / 1e3)
                    wait = intended - clock()
                if self._stopping:
                    break
                if not sem.locked():
                    self._lag[min((clock() - intended) // LAG_BUCKET_NS, LAG_BUCKETS)] += 1
            t = asyncio.ensure_future(self._one(sem, ordinal, intended))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
        if tasks:
            # wait_for inside each task bounds this by the timeout (+ queueing for the semaphore,
            # which the drop rule bounds)
            await asyncio.gather(*tasks, return_exceptions=True)
