"""Closed-loop virtual users (the origin documents' model): call, wait, think, repeat.

Closed-loop load hides stalls (a slow reply delays the next request, so fewer requests see
the stall: coordinated omission). It is kept because teams ask for it, and the result
says so: here a request's intended start *is* its actual start, so latency equals service
time and lag is zero. Use an arrival-rate profile to measure latency honestly.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from typing import Any, Callable, List, Optional

from harness.engine.aio import run_measured, sleep_until
from harness.engine.base import Dispatch, LagCounts, error_name, run_loop
from harness.record.recorder import Recorder

__all__ = ["UsersExecutor", "AsyncUsersExecutor"]


class UsersExecutor:
    """One thread per virtual user; ``users`` is a ``profiles.Users``."""

    def __init__(
        self,
        users: Any,
        dispatch: Dispatch,
        recorder: Recorder,
        *,
        duration_s: float,
        timeout_s: float,
        flags_of: Optional[Callable[[Any], int]] = None,
        seed: Optional[int] = None,
        clock: Callable[[], int] = time.perf_counter_ns,
    ) -> None:
        self._users = users
        self._dispatch = dispatch
        self._rec = recorder
        self.lag = LagCounts()  # stays empty: closed loop has no schedule to be late for
        self.errors: List[str] = []
        self.loop_cpu_fraction: Optional[float] = None
        self.duration_ns = int(duration_s * 1e9)
        self.timeout_ns = int(timeout_s * 1e9)
        self._flags_of = flags_of
        self._seed = seed
        self._clock = clock
        self._stop = threading.Event()
        self._active = 0
        self._ordinal = 0
        self._lock = threading.Lock()
        self.abandoned = 0
        self.t0_ns = 0

    def stop(self) -> None:
        self._stop.set()

    def in_flight(self) -> int:
        return self._active

    def _begin(self) -> int:
        """The next call's ordinal; counts the user busy (threads update it together: locked)."""
        with self._lock:
            k = self._ordinal
            self._ordinal += 1
            self._active += 1
            return k

    def _end(self) -> None:
        with self._lock:
            self._active -= 1

    def _more(self, done: int, end_at: int) -> bool:
        """Does this user make another call? (not stopped, time left, iterations left)"""
        its = self._users.iterations
        return not self._stop.is_set() and self._clock() < end_at and (its is None or done < its)

    def _user(self, uid: int) -> None:
        clock, rec, users = self._clock, self._rec, self._users
        rng = random.Random(None if self._seed is None else self._seed * 100_003 + uid)
        end_at = self.t0_ns + self.duration_ns
        start_at = self.t0_ns + users.start_offset_ns(uid)
        if self._stop.wait(max(0, start_at - clock()) / 1e9):
            return
        done = 0
        while self._more(done, end_at):
            label, fn, args = self._dispatch(self._begin())
            start = clock()
            try:
                result = fn(*args)
                end = clock()
                if end - start > self.timeout_ns:
                    rec.record(label, "timeout", start, start, start + self.timeout_ns)
                else:
                    rec.record(label, "ok", start, start, end, None, self._flags_of(result) if self._flags_of else 0)
            except Exception as exc:
                end = clock()
                if end - start > self.timeout_ns:  # past its deadline, a failure is a timeout too
                    rec.record(label, "timeout", start, start, start + self.timeout_ns)
                else:
                    rec.record(label, "error", start, start, end, type(exc).__name__)
            finally:
                self._end()
            done += 1
            think = users.think_ns(rng)
            if think and self._stop.wait(think / 1e9):
                return

    def run(self, t0_ns: Optional[int] = None) -> None:
        self.t0_ns = self._clock() if t0_ns is None else t0_ns
        threads = [threading.Thread(target=self._user, args=(uid,), name=f"lbh-vu-{uid}", daemon=True)
                   for uid in self._users.user_ids]
        for t in threads:
            t.start()
        deadline = time.monotonic() + self.duration_ns / 1e9 + self.timeout_ns / 1e9 + 5
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self.abandoned = sum(1 for t in threads if t.is_alive())


class AsyncUsersExecutor(UsersExecutor):
    """Virtual users as coroutines on one event loop, for ``async def`` and HTTP targets.

    Unlike the threads, a call past its timeout is cancelled (for HTTP: its connection
    aborted) and recorded at the deadline; the user then goes on.
    """

    def __init__(self, *args: Any, aopen: Optional[Callable[[], Any]] = None,
                 aclose: Optional[Callable[[], Any]] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._aopen, self._aclose = aopen, aclose

    async def _sleep_until(self, t_ns: int) -> bool:
        return await sleep_until(self._clock, t_ns, self._stop.is_set)

    async def _auser(self, uid: int) -> None:
        clock, rec, users, timeout_s = self._clock, self._rec, self._users, self.timeout_ns / 1e9
        rng = random.Random(None if self._seed is None else self._seed * 100_003 + uid)
        end_at = self.t0_ns + self.duration_ns
        if not await self._sleep_until(self.t0_ns + users.start_offset_ns(uid)):
            return
        done = 0
        while self._more(done, end_at):
            label, fn, args = self._dispatch(self._begin())
            start = clock()
            try:
                result = await asyncio.wait_for(fn(*args), timeout_s)
                rec.record(label, "ok", start, start, clock(), None, self._flags_of(result) if self._flags_of else 0)
            except asyncio.TimeoutError:
                rec.record(label, "timeout", start, start, start + self.timeout_ns)
            except Exception as exc:
                rec.record(label, "error", start, start, clock(), error_name(exc))
            finally:
                self._end()
            done += 1
            think = users.think_ns(rng)
            if think and not await self._sleep_until(clock() + think):
                return

    async def _main(self) -> None:
        async def users() -> None:
            await asyncio.gather(*(self._auser(uid) for uid in self._users.user_ids))

        await run_measured(users, self._aopen, self._aclose, self._report_cpu)

    def _report_cpu(self, fraction: Optional[float]) -> None:
        self.loop_cpu_fraction = fraction

    def run(self, t0_ns: Optional[int] = None) -> None:
        self.t0_ns = self._clock() if t0_ns is None else t0_ns
        run_loop(self._main())
