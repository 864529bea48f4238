"""Closed-loop virtual users (the origin documents' model): call, wait, think, repeat.

Closed-loop load hides stalls (a slow reply delays the next request, so fewer requests see
the stall: coordinated omission). It is kept because teams ask for it, and the result
says so: here a request's intended start *is* its actual start, so latency equals service
time and lag is zero. Use an arrival-rate profile to measure latency honestly.

As in the open-loop executors, a payload generator or target that raises anything
(``SystemExit`` and ``KeyboardInterrupt`` included) is an ``error`` outcome with its type;
a user that dies anyway is listed in ``errors`` (the run is then invalid).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from typing import Any, Callable, List, Optional, Sequence

from harness.engine.aio import TargetRaised, cancelled_by_loop, guarded, run_guarded, run_measured, sleep_until
from harness.engine.base import UNKNOWN_LABEL, Dispatch, LagCounts, error_name, error_detail
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
        labels: Sequence[str] = (),
    ) -> None:
        self._users = users
        self._error_label = labels[0] if len(labels) == 1 else UNKNOWN_LABEL
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
        try:
            self._user_loop(uid)
        except BaseException as exc:  # never a silent death: the run would pass on what is left
            self.errors.append(f"virtual user {uid} died: {type(exc).__name__}: {exc}")
            self._stop.set()

    def _user_loop(self, uid: int) -> None:
        clock, rec, users = self._clock, self._rec, self._users
        rng = random.Random(None if self._seed is None else self._seed * 100_003 + uid)
        end_at = self.t0_ns + self.duration_ns
        start_at = self.t0_ns + users.start_offset_ns(uid)
        if self._stop.wait(max(0, start_at - clock()) / 1e9):
            return
        done = 0
        while self._more(done, end_at):
            label = self._error_label
            start = clock()
            try:
                label, fn, args = self._dispatch(self._begin())
                start = clock()
                result = fn(*args)
                flags = self._flags_of(result) if self._flags_of else 0
                end = clock()
                if end - start > self.timeout_ns:
                    rec.record(label, "timeout", start, start, start + self.timeout_ns)
                else:
                    rec.record(label, "ok", start, start, end, None, flags)
            except BaseException as exc:  # the target's failure (SystemExit too) is data, not ours
                end = clock()
                if end - start > self.timeout_ns:  # past its deadline, a failure is a timeout too
                    rec.record(label, "timeout", start, start, start + self.timeout_ns)
                else:
                    name = error_name(exc)
                    rec.record(label, "error", start, start, end, name, 0,
                               error_detail(exc) if rec.wants_detail(label, name) else None)
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
        try:
            await self._auser_loop(uid)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.errors.append(f"virtual user {uid} died: {type(exc).__name__}: {exc}")
            self._stop.set()

    async def _auser_loop(self, uid: int) -> None:
        clock, rec, users, timeout_s = self._clock, self._rec, self._users, self.timeout_ns / 1e9
        rng = random.Random(None if self._seed is None else self._seed * 100_003 + uid)
        end_at = self.t0_ns + self.duration_ns
        if not await self._sleep_until(self.t0_ns + users.start_offset_ns(uid)):
            return
        done = 0
        while self._more(done, end_at):
            label = self._error_label
            start = clock()
            try:
                label, fn, args = self._dispatch(self._begin())
                start = clock()
                result = await asyncio.wait_for(guarded(fn(*args)), timeout_s)
                flags = self._flags_of(result) if self._flags_of else 0
                rec.record(label, "ok", start, start, clock(), None, flags)
            except asyncio.TimeoutError:
                rec.record(label, "timeout", start, start, start + self.timeout_ns)
            except asyncio.CancelledError as exc:
                if cancelled_by_loop():
                    raise
                rec.record(label, "error", start, start, clock(), error_name(exc))
            except BaseException as exc:  # SystemExit, KeyboardInterrupt from the target: its failure
                raised = exc.exc if isinstance(exc, TargetRaised) else exc
                name = error_name(raised)
                rec.record(label, "error", start, start, clock(), name, 0,
                           error_detail(raised) if rec.wants_detail(label, name) else None)
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
        run_guarded(self._main(), self.errors)
