"""``instrument(..., native=True)``: the opt-in native histogram beside the classic one."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from harness.record.native import bucket_index, native_quantile
from instrumentation import instrument
from instrumentation.native_histogram import bucket_key, spans_and_deltas
from instrumentation.proto_exposition import decode_delimited, encode_delimited
from instrumentation.server import ClassicOnly


def _clock(durations):
    """A clock whose successive (start, end) pairs are ``durations`` apart."""
    ticks = []
    t = 100.0
    for d in durations:
        ticks += [t, t + d]
        t += d + 1.0
    it = iter(ticks)
    return lambda: next(it)


def _native(reg, name="lbh_operation_duration_native_seconds"):
    return {s.labels["outcome"]: s.native_histogram
            for fam in reg.collect() for s in fam.samples if s.name == name and s.native_histogram is not None}


def test_native_is_off_by_default():
    reg = CollectorRegistry()
    f = instrument("op", registry=reg, clock=_clock([0.1]))(lambda: None)
    f()
    assert _native(reg) == {}
    assert "native" not in generate_latest(reg).decode()


def test_native_histogram_counts_every_call_beside_the_classic_one():
    durations = [0.150] * 90 + [0.300] * 10 + [0.0]
    reg = CollectorRegistry()
    f = instrument("op", registry=reg, clock=_clock(durations + [0.5]), native=True)(lambda: None)
    for _ in durations:
        f()

    @instrument("op", registry=reg, clock=_clock([0.5]), native=True)
    def boom():
        raise ValueError("x")
    with pytest.raises(ValueError):
        boom()
    nat = _native(reg)
    ok, err = nat["ok"], nat["error"]
    assert ok.count_value == 101 and ok.zero_count == 1 and ok.schema == 5
    assert ok.sum_value == pytest.approx(0.15 * 90 + 0.3 * 10)
    assert err.count_value == 1
    assert abs(native_quantile(0.5, ok) - 0.15) / 0.15 < 0.025
    assert abs(native_quantile(0.95, ok) - 0.3) / 0.3 < 0.025
    # the classic family is unchanged; the text formats leave the native one out
    text = generate_latest(ClassicOnly(reg)).decode()
    assert 'lbh_operation_duration_seconds_count{operation="op",outcome="ok"} 101.0' in text
    assert "native" not in text.replace("native histogram", "")
    fams = {f.name: f for f in decode_delimited(encode_delimited(reg))}
    [m] = [m for m in fams["lbh_operation_duration_native_seconds"].metric
           if ("outcome", "ok") in {(lp.name, lp.value) for lp in m.label}]
    assert m.histogram.schema == 5 and m.histogram.sample_count == 101 and m.histogram.zero_count == 1


def test_context_manager_and_sampled_spans_record_native_too():
    from opentelemetry.sdk.trace import TracerProvider
    reg = CollectorRegistry()
    inst = instrument("cm", registry=reg, clock=_clock([0.2, 0.2]), native=True, tracer_provider=TracerProvider())
    with inst:
        pass
    with inst:
        pass
    assert _native(reg, "lbh_operation_duration_native_seconds")["ok"].count_value == 2


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=1e-9, max_value=1e5, allow_nan=False))
def test_bucket_key_agrees_with_the_harness_conversion(value):
    assert bucket_key(value) == int(bucket_index([value], 5)[0])


def test_spans_and_deltas():
    spans, deltas = spans_and_deltas({5: 2, 6: 1, 9: 4})
    assert [tuple(s) for s in spans] == [(5, 2), (2, 1)] and deltas == [2, -1, 3]


def test_concurrent_observations_are_all_counted():
    import threading
    reg = CollectorRegistry()
    clock = itertools.count(0.0, 0.001).__next__
    inst = instrument("t", registry=reg, clock=lambda: float(clock()), native=True)
    f = inst(lambda: None)

    def work():
        for _ in range(2000):
            f()
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    nh = _native(reg)["ok"]
    assert nh.count_value == 8000
    counts = np.cumsum(nh.pos_deltas)
    assert counts.sum() + nh.zero_count == 8000
