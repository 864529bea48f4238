"""Broken runs never pass silently: every scheduled request ends as an outcome, whatever a
payload generator or a target raises (``SystemExit`` and ``KeyboardInterrupt`` included);
a failure of the executor's own machinery is listed in ``errors`` (the runner then calls
the run invalid) instead of killing workers in silence or hanging the loop; and a
generator far behind its schedule drops its backlog in bulk."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from harness.config import profiles
from harness.engine.aio import AsyncExecutor, Call
from harness.engine.base import UNKNOWN_LABEL, Cursor, accounting_problems
from harness.engine.threads import ThreadExecutor
from harness.engine.users import AsyncUsersExecutor, UsersExecutor
from harness.record.recorder import Recorder
from tests.support.recorders import ListRecorder

#: 120 requests in 0.3 s
PROFILE = (400.0, 0.3)
RAISES = [SystemExit(3), KeyboardInterrupt(), ValueError("bad"), GeneratorExit()]


def _noop():
    return None


async def _anoop():
    return None


def dispatch_failing_from(n, fn):
    """A payload generator that raises from request ``n`` on (as a module:function payload)."""

    def dispatch(k):
        if k >= n:
            raise ValueError(f"payload {k}")
        return "t", fn, ()

    return dispatch


def raising(exc):
    def fn():
        raise exc

    return fn


def araising(exc):
    async def fn():
        raise exc

    return fn


def run_in_thread(ex, limit_s=20.0):
    """``ex.run()`` with a bound: a hang fails the test instead of blocking the suite."""
    done = threading.Event()
    box = {}

    def go():
        try:
            ex.run()
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            box["error"] = exc
        done.set()

    threading.Thread(target=go, daemon=True).start()
    assert done.wait(limit_s), f"the executor did not end within {limit_s} s"
    assert "error" not in box, box.get("error")


# ----------------------------------------------------------------------------- threads


def test_threads_payload_raising_from_the_50th_request_is_an_error_outcome_for_each():
    rec = ListRecorder()
    ex = ThreadExecutor(profiles.constant(*PROFILE).arrival_batches(), dispatch_failing_from(50, _noop), rec,
                        threads=8, timeout_s=5.0, labels=("t",))
    run_in_thread(ex)
    assert len(rec.rows) == 120  # every scheduled request, none lost with a dead worker
    outcomes = [r[1] for r in rec.rows]
    assert outcomes.count("ok") == 50 and outcomes.count("error") == 70
    assert {r[5] for r in rec.rows if r[1] == "error"} == {"ValueError"}
    assert all(r[0] == "t" for r in rec.rows) and ex.errors == []


@pytest.mark.parametrize("exc", RAISES, ids=lambda e: type(e).__name__)
def test_threads_target_raising_anything_is_an_error_named_by_its_type(exc):
    rec = ListRecorder()
    ex = ThreadExecutor(profiles.constant(*PROFILE).arrivals(), lambda k: ("t", raising(exc), ()), rec,
                        threads=4, timeout_s=5.0)
    run_in_thread(ex)
    assert len(rec.rows) == 120
    assert {(r[1], r[5]) for r in rec.rows} == {("error", type(exc).__name__)}
    assert ex.errors == []


class BrokenRecorder(ListRecorder):
    """Raises from its ``after``-th record on: a bug in the harness's own machinery."""

    def __init__(self, after):
        super().__init__()
        self.after = after

    def record(self, *args, **kwargs):
        if len(self.rows) >= self.after:
            raise RuntimeError("recorder broke")
        super().record(*args, **kwargs)


def test_threads_a_worker_that_dies_is_listed_and_stops_the_run():
    rec = BrokenRecorder(after=10)
    ex = ThreadExecutor(profiles.constant(100.0, 30.0).arrivals(), lambda k: ("t", _noop, ()), rec,
                        threads=4, timeout_s=5.0)
    run_in_thread(ex)  # stops at once, not after the 30 s schedule
    assert ex.errors and all("RuntimeError: recorder broke" in e for e in ex.errors)
    assert "worker thread" in ex.errors[0]
    assert accounting_problems(ex.errors, 3000, len(rec.rows))  # the runner: invalid


def test_threads_a_backlog_is_dropped_in_bulk_and_every_request_counted():
    # the whole 3 s schedule at 1e6/s lies 10 s in the past: 3,000,000 requests overdue
    rec = Recorder()
    ex = ThreadExecutor(profiles.constant(1e6, 3.0).arrival_batches(), lambda k: ("t", _noop, ()), rec,
                        threads=4, timeout_s=1.0, labels=("t",))
    ex.run(time.perf_counter_ns() - 10_000_000_000)
    counts = rec.counts()
    assert counts["dropped"] == 3_000_000 and sum(counts.values()) == 3_000_000
    lat = rec.summary()["targets"]["t"]["latency"]
    assert lat["min"] >= 7_000 - 1  # each dropped request's latency: from its intended start (≥ 7 s ago)


def test_a_mix_backlog_keeps_each_request_label():
    rec = ListRecorder()
    labels = ("a", "b")
    ex = ThreadExecutor(profiles.constant(1000.0, 0.5).arrival_batches(), lambda k: (labels[k % 2], _noop, ()),
                        rec, threads=2, timeout_s=1.0, labels=labels)
    ex.run(time.perf_counter_ns() - 5_000_000_000)
    assert len(rec.rows) == 500 and {r[1] for r in rec.rows} == {"dropped"}
    assert sum(r[0] == "a" for r in rec.rows) == 250 == sum(r[0] == "b" for r in rec.rows)


# ----------------------------------------------------------------------------- asyncio


def test_asyncio_payload_raising_from_the_50th_request_is_an_error_outcome_for_each():
    rec = ListRecorder()
    ex = AsyncExecutor(profiles.constant(*PROFILE).arrival_batches(), dispatch_failing_from(50, _anoop), rec,
                       max_in_flight=16, timeout_s=5.0, labels=("t",))
    run_in_thread(ex)
    outcomes = [r[1] for r in rec.rows]
    assert len(rec.rows) == 120 and outcomes.count("ok") == 50 and outcomes.count("error") == 70
    assert {r[5] for r in rec.rows if r[1] == "error"} == {"ValueError"} and ex.errors == []


@pytest.mark.parametrize("exc", RAISES, ids=lambda e: type(e).__name__)
def test_asyncio_target_raising_anything_is_an_error_named_by_its_type(exc):
    rec = ListRecorder()
    ex = AsyncExecutor(profiles.constant(*PROFILE).arrivals(), lambda k: ("t", araising(exc), ()), rec,
                       max_in_flight=16, timeout_s=5.0)
    run_in_thread(ex)  # SystemExit/KeyboardInterrupt inside a task would end the loop: not here
    assert len(rec.rows) == 120
    assert {(r[1], r[5]) for r in rec.rows} == {("error", type(exc).__name__)}
    assert ex.errors == []


def test_asyncio_a_backlog_is_dropped_in_bulk():
    rec = Recorder()
    ex = AsyncExecutor(profiles.constant(1e6, 3.0).arrival_batches(), lambda k: ("t", _anoop, ()), rec,
                       max_in_flight=16, timeout_s=1.0, labels=("t",))
    ex.run(time.perf_counter_ns() - 10_000_000_000)
    assert rec.counts()["dropped"] == 3_000_000 == sum(rec.counts().values())


class CallbackTarget:
    """Ends each call 1 ms after it starts, from the loop's timer (like the HTTP target)."""

    def astart(self, k: int, call: Call) -> None:
        asyncio.get_running_loop().call_later(0.001, call.done, None, 0)

    def acancel(self, call: Call) -> None:
        pass


def test_asyncio_a_recorder_raising_inside_a_callback_fails_loudly_instead_of_hanging():
    rec = BrokenRecorder(after=5)
    target = CallbackTarget()
    ex = AsyncExecutor(profiles.constant(100.0, 30.0).arrivals(), lambda k: ("cb", None, ()), rec,
                       max_in_flight=4, timeout_s=2.0, astart=target.astart, acancel=target.acancel, label="cb")
    run_in_thread(ex, limit_s=10.0)  # before: the loop waited for ever for the call it never counted
    assert ex.errors and "recording a call's end failed: RuntimeError: recorder broke" in ex.errors[0]


def test_asyncio_callback_target_raising_system_exit_before_sending_is_an_error():
    rec = ListRecorder()

    def astart(k, call):
        raise SystemExit(1)

    ex = AsyncExecutor(profiles.constant(*PROFILE).arrivals(), lambda k: ("cb", None, ()), rec,
                       max_in_flight=4, timeout_s=2.0, astart=astart, acancel=lambda c: None, label="cb")
    run_in_thread(ex)
    assert len(rec.rows) == 120 and {(r[1], r[5]) for r in rec.rows} == {("error", "SystemExit")}


# ----------------------------------------------------------------------------- closed loop


def _users():
    return profiles.users(3, 0.3, think_time=0.01)


@pytest.mark.parametrize("exc", [SystemExit(2), KeyboardInterrupt()], ids=lambda e: type(e).__name__)
def test_users_target_raising_system_exit_is_an_error(exc):
    rec = ListRecorder()
    ex = UsersExecutor(_users(), lambda k: ("u", raising(exc), ()), rec, duration_s=0.3, timeout_s=1.0)
    run_in_thread(ex)
    assert rec.rows and {(r[1], r[5]) for r in rec.rows} == {("error", type(exc).__name__)}
    assert ex.errors == []


@pytest.mark.parametrize("exc", [SystemExit(2), KeyboardInterrupt()], ids=lambda e: type(e).__name__)
def test_async_users_target_raising_system_exit_is_an_error(exc):
    rec = ListRecorder()
    ex = AsyncUsersExecutor(_users(), lambda k: ("u", araising(exc), ()), rec, duration_s=0.3, timeout_s=1.0)
    run_in_thread(ex)
    assert rec.rows and {(r[1], r[5]) for r in rec.rows} == {("error", type(exc).__name__)}
    assert ex.errors == []


def test_users_payload_raising_is_an_error_under_the_target_label():
    rec = ListRecorder()
    ex = UsersExecutor(_users(), dispatch_failing_from(0, _noop), rec, duration_s=0.3, timeout_s=1.0,
                       labels=("u",))
    run_in_thread(ex)
    assert rec.rows and {(r[0], r[1], r[5]) for r in rec.rows} == {("u", "error", "ValueError")}


def test_users_a_user_that_dies_is_listed():
    rec = BrokenRecorder(after=0)
    ex = UsersExecutor(_users(), lambda k: ("u", _noop, ()), rec, duration_s=0.3, timeout_s=1.0)
    run_in_thread(ex)
    assert len(ex.errors) >= 1 and "virtual user" in ex.errors[0]


# ----------------------------------------------------------------------------- the pieces


def test_cursor_reads_batches_one_by_one_or_a_backlog_at_once():
    batches = [(np.arange(0, 4, dtype=np.int64), np.array([10, 20, 30, 40], dtype=np.int64)),
               (np.arange(4, 8, dtype=np.int64), np.array([50, 60, 70, 80], dtype=np.int64))]
    c = Cursor(iter(batches))
    assert c.next() == (0, 10)
    ks, ts = c.overdue(65)  # across the batch boundary
    assert ks.tolist() == [1, 2, 3, 4, 5] and ts.tolist() == [20, 30, 40, 50, 60]
    assert c.overdue(65)[0].size == 0
    assert [c.next(), c.next(), c.next()] == [(6, 70), (7, 80), None]
    assert c.exhausted and c.overdue(10**9)[0].size == 0


def test_cursor_takes_plain_tuples_too():
    c = Cursor(iter([(0, 5), (1, 6), (2, 100)]))
    ks, ts = c.overdue(50)
    assert ks.tolist() == [0, 1] and ts.tolist() == [5, 6]
    assert c.next() == (2, 100) and c.next() is None


def test_accounting_problems_name_failures_and_missing_outcomes():
    assert accounting_problems([], 120, 120) == []
    assert accounting_problems([], None, 5) == []  # interrupted or closed loop: nothing to compare
    reasons = accounting_problems(["worker thread x died: RuntimeError: y"], 120, 50)
    assert "worker thread x died" in reasons[0] and "50 outcomes recorded for 120" in reasons[1]
    assert UNKNOWN_LABEL == "unknown"
