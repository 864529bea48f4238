"""The asyncio executor's callback mode (the HTTP target's path): the same open-loop rules as
the task-per-request mode, with counted slots, a FIFO wait, the drop rule and a sweeper
that ends calls at their deadline."""

from __future__ import annotations

import asyncio
import time

import pytest

from harness.config import profiles
from harness.engine.aio import AsyncExecutor, Call
from tests.support.recorders import ListRecorder


class FakeTarget:
    """Ends each call after ``service_s`` (None: never), from the event loop's timer."""

    def __init__(self, service_s=0.002, fail_every=0, raise_on=None):
        self.service_s, self.fail_every, self.raise_on = service_s, fail_every, raise_on
        self.started, self.cancelled, self.in_flight, self.peak = 0, [], 0, 0

    def astart(self, k: int, call: Call) -> None:
        if self.raise_on is not None and k == self.raise_on:
            raise KeyError("payload")
        self.started += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        call.handle = k
        if self.service_s is not None:
            err = "HTTP 503" if self.fail_every and k % self.fail_every == 0 else None
            asyncio.get_running_loop().call_later(self.service_s, self._end, call, err)

    def _end(self, call: Call, err) -> None:
        self.in_flight -= 1
        call.done(err, 0 if err else 1)
        call.done("late duplicate", 0)  # a second report is ignored

    def acancel(self, call: Call) -> None:
        self.in_flight -= 1
        self.cancelled.append(call.handle)


def run(profile, target, *, max_in_flight=16, timeout_s=1.0, drop_after_s=None):
    rec = ListRecorder()
    ex = AsyncExecutor(profile.arrivals(), lambda k: ("x", None, ()), rec, max_in_flight=max_in_flight,
                       timeout_s=timeout_s, drop_after_s=drop_after_s, astart=target.astart,
                       acancel=target.acancel, label="cb")
    ex.run()
    return ex, rec.rows


def test_every_call_is_recorded_once_with_its_three_times_and_flags():
    target = FakeTarget(service_s=0.003, fail_every=10)
    ex, rows = run(profiles.constant(200.0, 0.5), target)
    assert len(rows) == 100 == target.started
    ok = [r for r in rows if r[1] == "ok"]
    err = [r for r in rows if r[1] == "error"]
    assert len(err) == 10 and all(r[5] == "HTTP 503" for r in err)
    assert all(r[0] == "cb" and r[6] == 1 for r in ok)
    for _label, _o, intended, start, end, _e, _f in rows:
        # never started early (open loop); the service time is the fake's 3 ms (libuv timers: 1 ms grain)
        assert start >= intended and end - start >= 1_500_000
    assert ex.lag.samples() == 100 and ex.in_flight() == 0


def test_slots_bound_concurrency_and_late_requests_are_dropped():
    # 10 ms of service, one slot, 200/s: the queue grows 8 ms per request, so most wait
    # longer than drop_after (20 ms) and are dropped, never sent
    target = FakeTarget(service_s=0.01)
    _ex, rows = run(profiles.constant(200.0, 0.5), target, max_in_flight=1, drop_after_s=0.02)
    outcomes = [r[1] for r in rows]
    assert target.peak == 1
    assert outcomes.count("ok") == target.started and len(rows) == 100
    assert outcomes.count("dropped") > 40
    assert all(r[3] is None for r in rows if r[1] == "dropped")
    assert not _ex.errors


@pytest.mark.parametrize("mode", ["callbacks", "tasks"])
def test_a_scheduler_far_behind_drops_its_backlog_in_bulk_and_counts_every_request(mode):
    # the first call blocks the event loop 150 ms: the scheduler itself is then behind by
    # more than drop_after (20 ms), so the overdue requests are dropped in one bulk record
    # (Recorder.record_dropped), not one by one; every scheduled request still has an outcome
    target = FakeTarget(service_s=0.001)
    blocked = []

    def astart(k: int, call: Call) -> None:
        if not blocked:
            blocked.append(k)
            time.sleep(0.15)
        target.astart(k, call)

    async def acall():
        if not blocked:
            blocked.append(0)
            time.sleep(0.15)
        await asyncio.sleep(0.001)

    rec = ListRecorder()
    if mode == "callbacks":
        ex = AsyncExecutor(profiles.constant(200.0, 0.5).arrivals(), lambda k: ("x", None, ()), rec,
                           max_in_flight=16, timeout_s=1.0, drop_after_s=0.02, astart=astart,
                           acancel=target.acancel, label="cb")
    else:
        ex = AsyncExecutor(profiles.constant(200.0, 0.5).arrivals(), lambda k: ("cb", acall, ()), rec,
                           max_in_flight=16, timeout_s=1.0, drop_after_s=0.02, label="cb")
    ex.run()
    outcomes = [r[1] for r in rec.rows]
    assert not ex.errors
    assert len(rec.rows) == 100
    # at 200/s a 150 ms stall leaves ~30 requests overdue, all but the last ~4 beyond 20 ms
    assert outcomes.count("dropped") >= 15
    assert all(r[3] is None and r[4] >= r[2] for r in rec.rows if r[1] == "dropped")


def test_a_call_past_its_deadline_is_cancelled_and_recorded_at_the_deadline():
    target = FakeTarget(service_s=None)  # never answers
    t = time.monotonic()
    _ex, rows = run(profiles.constant(20.0, 0.5), target, timeout_s=0.1)
    # the run returns at all (nothing answers: only the deadline ends a call); a 0.6 s run
    # given 20 s, so that a busy machine cannot make it miss the bound
    assert time.monotonic() - t < 20.0
    assert [r[1] for r in rows] == ["timeout"] * 10
    assert all(r[4] - r[3] == 100_000_000 for r in rows)
    assert sorted(target.cancelled) == list(range(10))


def test_a_target_that_raises_before_sending_is_an_error_outcome():
    target = FakeTarget(raise_on=3)
    _ex, rows = run(profiles.constant(100.0, 0.1), target)
    assert [r[5] for r in rows if r[1] == "error"] == ["KeyError"]
    assert sum(r[1] == "ok" for r in rows) == 9


def test_stop_ends_the_schedule_and_waits_for_calls_in_flight():
    target = FakeTarget(service_s=0.05)
    rec = ListRecorder()
    stop_at = 50  # stop() once 50 calls started (not after a wall-clock delay a busy machine may stretch)

    def astart(k: int, call: Call) -> None:
        target.astart(k, call)
        if target.started == stop_at:
            ex.stop()

    ex = AsyncExecutor(profiles.constant(100.0, 30.0).arrivals(), lambda k: ("x", None, ()), rec,
                       max_in_flight=64, timeout_s=5.0, astart=astart, acancel=target.acancel, label="cb")
    ex.run()
    # stopped at once (of the 30 s schedule's 3000 calls), every started one waited for
    assert stop_at <= len(rec.rows) <= stop_at + 20 and all(r[1] == "ok" for r in rec.rows)
    assert len(rec.rows) == target.started and target.in_flight == 0


@pytest.mark.slow  # calls of 1 s
def test_an_answer_after_the_deadline_is_a_timeout_whatever_the_sweeper_phase():
    # 1 s timeout -> sweeps every 10 ms; the fake answers 1.004 s after the start, usually
    # before the sweep that would cancel it: still a timeout, recorded at the deadline
    target = FakeTarget(service_s=1.004)
    _ex, rows = run(profiles.constant(10.0, 0.3), target, timeout_s=1.0)
    assert [r[1] for r in rows] == ["timeout"] * 3
    assert all(r[4] - r[3] == 1_000_000_000 for r in rows)
