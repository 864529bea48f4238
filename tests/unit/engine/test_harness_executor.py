"""The open-loop executors: latency from intended start, timeouts, drops, stop."""

from __future__ import annotations

import threading
import time

import pytest

from harness.config import profiles
from harness.engine.aio import AsyncExecutor
from harness.engine.base import LAG_BUCKET_NS, LAG_BUCKETS, lag_percentile
from harness.engine.threads import ThreadExecutor
from harness.record.recorder import Recorder
from harness.run.selfcheck import judge_generator
from tests.support.recorders import ListRecorder


def run_threads(profile, fn, *, threads, timeout_s=5.0, drop_after_s=None, sleep=time.sleep):
    rec = ListRecorder()
    ex = ThreadExecutor(profile.arrivals(), lambda k: ("t", fn, ()), rec, threads=threads,
                        timeout_s=timeout_s, drop_after_s=drop_after_s, sleep=sleep)
    t0 = time.perf_counter_ns() + 5_000_000
    ex.run(t0)
    return ex, rec.rows, t0


@pytest.mark.slow  # a real schedule of 1 s or more
def test_coordinated_omission_stall_shows_in_latency_not_service_time():
    rate, block_s, block_at = 100.0, 0.5, 0.5
    started = {}

    def target():
        now = time.perf_counter_ns()
        if not started:
            started["t"] = now
        if "blocked" not in started and now - started["t"] >= block_at * 1e9:
            started["blocked"] = now
            time.sleep(block_s)

    ex, rows, t0 = run_threads(profiles.constant(rate, 2.0), target, threads=1)
    assert len(rows) == 200 and all(r[1] == "ok" for r in rows)
    block_start = started["blocked"]
    block_end = block_start + int(block_s * 1e9)
    during = [r for r in rows if block_start < r[2] < block_end]
    assert len(during) >= 45  # ~50 requests were intended while the target was frozen
    for _, _, intended, start, end, _, _ in during:
        latency = end - intended
        assert latency >= (block_end - intended) - 2_000_000, "latency must include the rest of the stall"
        assert end - start < 150_000_000, "service time stays small (the stall is 500 ms)"
    # the blocked request itself: service time is the block
    blocked = [r for r in rows if r[4] - r[3] >= block_s * 1e9 * 0.95]
    assert len(blocked) == 1


@pytest.mark.slow  # a real schedule of 1 s or more
def test_timeout_is_recorded_at_the_deadline_and_the_run_does_not_wait():
    calls = []
    release, hung_returned = threading.Event(), threading.Event()

    def target():
        calls.append(1)
        if len(calls) == 3:
            release.wait(60)  # one call hangs far past the timeout, until the test lets it go
            hung_returned.set()

    try:
        ex, rows, t0 = run_threads(profiles.constant(20.0, 1.0), target, threads=2, timeout_s=0.2)
        assert not hung_returned.is_set()  # did not wait for the hung call (it still hangs)
    finally:
        release.set()
    outcomes = [r[1] for r in rows]
    assert outcomes.count("timeout") == 1
    assert outcomes.count("ok") == 19
    (to,) = [r for r in rows if r[1] == "timeout"]
    assert to[4] - to[3] == 200_000_000  # end = start + timeout exactly
    assert ex.abandoned == 1


@pytest.mark.slow  # a real schedule of 1 s or more
def test_requests_that_cannot_start_in_time_are_dropped_and_counted():
    # one worker, 50 ms per call, 100 requests/s: the backlog grows; past 0.2 s late a
    # request is dropped, never silently skipped
    ex, rows, t0 = run_threads(profiles.constant(100.0, 1.0), lambda: time.sleep(0.05), threads=1,
                               drop_after_s=0.2)
    assert len(rows) == 100  # every scheduled request is accounted for
    dropped = [r for r in rows if r[1] == "dropped"]
    ok = [r for r in rows if r[1] == "ok"]
    assert dropped and ok
    for r in dropped:
        assert r[3] is None and r[4] - r[2] > 200_000_000  # latency = the wait until dropped


@pytest.mark.slow  # a real schedule of 1 s or more
def test_errors_are_outcomes_with_their_type():
    n = {"k": 0}

    def target():
        n["k"] += 1
        if n["k"] % 4 == 0:
            raise KeyError("x")

    ex, rows, t0 = run_threads(profiles.constant(40.0, 1.0), target, threads=1)
    errors = [r for r in rows if r[1] == "error"]
    assert len(errors) == 10 and {r[5] for r in errors} == {"KeyError"}


def test_stop_ends_the_run_early_and_keeps_what_was_recorded():
    rec = Recorder()
    calls = []
    stop_at = 25  # stop() on the 25th call (not after a wall-clock delay a busy machine may stretch)

    def target():
        calls.append(1)
        if len(calls) == stop_at:
            ex.stop()

    ex = ThreadExecutor(profiles.constant(50.0, 30.0).arrivals(), lambda k: ("t", target, ()),
                        rec, threads=4, timeout_s=1.0)
    ex.run()
    n = sum(rec.counts().values())
    # of the 30 s schedule's 1500 calls: the ones made until stop(), and at most what the
    # other workers had already claimed
    assert stop_at <= n <= 40


@pytest.mark.slow  # a real schedule of 1 s or more
def test_schedule_lag_counts_generator_lateness_only():
    # a sleep that oversleeps by 8 ms makes the generator late: p99 must exceed 5 ms
    def late_sleep(s):
        time.sleep(s + 0.008)

    ex, rows, t0 = run_threads(profiles.constant(50.0, 1.0), lambda: None, threads=4, sleep=late_sleep)
    p99 = ex.lag.percentile(99)
    assert p99 is not None and p99 > 5.0
    health = judge_generator(ex.lag.percentile, cpu_percent_mean=1.0, cpu_count=2)
    assert not health.valid and "schedule lag" in health.reasons[0]
    # a busy target (all workers occupied) is not the generator's fault
    ex2, rows2, _ = run_threads(profiles.constant(100.0, 1.0), lambda: time.sleep(0.03), threads=1)
    assert ex2.lag.samples() < len(rows2) / 2


def test_lag_percentile_uses_bucket_upper_edges():
    counts = [0] * 10
    counts[0], counts[9] = 99, 1
    assert lag_percentile(counts, 50) == pytest.approx(0.05)
    assert lag_percentile(counts, 99.5) == pytest.approx(0.5)
    assert lag_percentile([0, 0], 99) is None


@pytest.mark.slow  # a real schedule of 1 s or more
def test_async_executor_open_loop_and_timeouts():
    import asyncio

    rec = ListRecorder()
    state = {"n": 0}

    async def target():
        state["n"] += 1
        slow = state["n"] == 5
        await asyncio.sleep(1.0 if slow else 0.002)
        if slow:
            state["slow_call_returned"] = True
        return {"cache_hit": True}

    from harness.targets import flags_of

    ex = AsyncExecutor(profiles.constant(50.0, 1.0).arrivals(), lambda k: ("a", target, ()), rec,
                       max_in_flight=16, timeout_s=0.1, flags_of=flags_of)
    ex.run()
    assert "slow_call_returned" not in state  # cancelled at its 0.1 s deadline: the run did not wait 1 s for it
    outcomes = [r[1] for r in rec.rows]
    assert outcomes.count("timeout") == 1 and outcomes.count("ok") == 49
    assert all(r[6] == 1 for r in rec.rows if r[1] == "ok")


def test_a_saturated_event_loop_makes_the_run_invalid():
    health = judge_generator(lambda p: 0.1, cpu_percent_mean=50.0, cpu_count=2, loop_cpu_fraction=0.97)
    assert not health.valid and "event loop" in health.reasons[0]
    assert judge_generator(lambda p: 0.1, cpu_percent_mean=50.0, cpu_count=2, loop_cpu_fraction=0.3).valid


def test_one_late_start_in_a_short_run_is_not_enough_to_void_it():
    def counts(late_ms):
        c = [0] * (LAG_BUCKETS + 1)
        c[1] = 60 - len(late_ms)
        for ms in late_ms:
            c[int(ms * 1e6 // LAG_BUCKET_NS)] += 1
        return c

    for late, valid in (([7.0], True), ([7.0, 9.0], False), ([5.01], True), ([4.9, 4.9], True)):
        c = counts(late)
        health = judge_generator(lambda p, c=c: lag_percentile(c, p), cpu_percent_mean=1.0, cpu_count=2,
                                 lag_counts=c)
        assert health.valid is valid, (late, health.reasons)
