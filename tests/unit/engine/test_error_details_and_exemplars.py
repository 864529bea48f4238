"""The executors hand the recorder what an error looked like (an exception's message, a
callback target's detail) for the first few of each type only, and a sampled callback
call's trace id as its latency's exemplar; ok calls carry nothing extra."""

from __future__ import annotations

import asyncio

from harness.config import profiles
from harness.engine.aio import AsyncExecutor, Call
from harness.engine.threads import ThreadExecutor
from harness.record.recorder import ERROR_SAMPLES, Recorder


def fail_every_tenth(k: int) -> int:
    if k % 10 == 0:
        raise ValueError(f"row {k} is malformed")
    return k


def test_thread_executor_samples_the_first_exceptions():
    rec = Recorder()
    ex = ThreadExecutor(profiles.constant(500.0, 0.2).arrival_batches(), lambda k: ("t", fail_every_tenth, (k,)),
                        rec, threads=2, timeout_s=5.0, labels=("t",))
    ex.run()
    (d,) = rec.error_details()
    assert d["type"] == "ValueError" and d["count"] == 10
    assert len(d["samples"]) == ERROR_SAMPLES
    assert all(s.startswith("ValueError: row ") and s.endswith(" is malformed") for s in d["samples"])


def test_async_executor_samples_coroutine_failures():
    async def call(k):
        if k % 10 == 0:
            raise KeyError(f"key {k}")
        return k

    rec = Recorder()
    ex = AsyncExecutor(profiles.constant(500.0, 0.2).arrivals(), lambda k: ("t", call, (k,)), rec,
                       max_in_flight=8, timeout_s=5.0, labels=("t",))
    ex.run()
    (d,) = rec.error_details()
    assert d["count"] == 10 and d["samples"][0].startswith("KeyError: ")


class Target:
    """Ends every call on the next loop turn: every 4th with an error and a body, every 5th
    sampled (a trace id), each labelled by its endpoint."""

    def astart(self, k: int, call: Call) -> None:
        call.label = "a" if k % 2 else "b"
        if k % 5 == 0:
            call.trace = f"{k:032x}"
        err = ("HTTP 422", b'{"detail":"bad"}') if k % 4 == 0 else (None, None)
        asyncio.get_running_loop().call_soon(lambda: call.done(err[0], 0, err[1]))

    def acancel(self, call: Call) -> None:
        pass


def test_callback_calls_give_details_labels_and_exemplars():
    rec = Recorder()
    t = Target()
    ex = AsyncExecutor(profiles.constant(400.0, 0.25).arrivals(), lambda k: ("a" if k % 2 else "b", None, ()), rec,
                       max_in_flight=8, timeout_s=5.0, astart=t.astart, acancel=t.acancel, label="a",
                       labels=("a", "b"))
    ex.run()
    assert rec.counts("a")["ok"] == 50 and rec.counts("b")["ok"] + rec.counts("b")["error"] == 50
    (d,) = rec.error_details()
    assert (d["target"], d["type"], d["count"]) == ("b", "HTTP 422", 25)
    assert d["samples"] == ['{"detail":"bad"}'] * ERROR_SAMPLES
    ex_a, ex_b = rec.exemplar("a"), rec.exemplar("b")
    assert ex_a is not None and int(ex_a[0], 16) % 10 == 5  # odd ordinals, multiples of 5
    assert ex_b is not None and int(ex_b[0], 16) % 4 != 0  # never an errored call's
    assert 0 <= ex_a[1] < 5 and ex_a[2] > 1e9
