"""Recorder: exact HDR histograms, merge, encode/decode, windows, thresholds adapter."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from harness.config import thresholds as T
from harness.exitcodes import ExitCode
from harness.record.recorder import (
    FLAG_CACHE_HIT,
    FLAG_FALLBACK,
    HIST_HIGHEST_US,
    Recorder,
    histogram_stats,
    value_at_percentile,
)

MS = 1_000_000  # ns


def reference(values_us):
    h = HdrHistogram(1, HIST_HIGHEST_US, 3)
    for v in values_us:
        h.record_value(int(v))
    return h


def feed(rec, n, *, seed=0, target="features", t0=0, rate_per_s=1000):
    """Deterministic synthetic requests; returns the (latency, service, lag) µs lists."""
    rng = np.random.default_rng(seed)
    lat, svc, lag = [], [], []
    step = 1_000_000_000 // rate_per_s
    for k in range(n):
        intended = t0 + k * step
        start = intended + int(rng.integers(0, 3_000_000))  # up to 3 ms late
        end = start + int(rng.lognormal(16, 1))  # ~ 9 ms median service time
        outcome = "ok" if k % 20 else "error"
        rec.record(target, outcome, intended, start, end, "ValueError" if outcome == "error" else None,
                   FLAG_CACHE_HIT if k % 4 == 0 else 0)
        lat.append((end - intended) // 1000)
        svc.append((end - start) // 1000)
        lag.append((start - intended) // 1000)
    return lat, svc, lag


def test_histograms_equal_record_value_reference():
    rec = Recorder(flush_every=1000)  # several flushes
    lat, svc, lag = feed(rec, 5000)
    for metric, values in (("latency", lat), ("service_time", svc), ("lag", lag)):
        h = rec.histogram(metric)
        ref = reference(values)
        assert h.equals(ref)
        assert h.get_min_value() == ref.get_min_value() and h.get_max_value() == ref.get_max_value()
        for p in (0, 50, 90, 95, 99, 99.9, 100):
            assert value_at_percentile(h, p) == ref.get_value_at_percentile(p)
        stats = histogram_stats(h)
        assert stats["count"] == 5000
        assert stats["mean"] == pytest.approx(ref.get_mean_value() / 1000)
        assert stats["p99"] == ref.get_value_at_percentile(99) / 1000


def test_latency_is_from_intended_start_and_dropped_have_no_service_time():
    rec = Recorder()
    # intended at 0, stalled 500 ms before starting, 2 ms service time
    rec.record("t", "ok", 0, 500 * MS, 502 * MS)
    rec.record("t", "dropped", 10 * MS, None, 700 * MS)
    s = rec.summary()["targets"]["t"]
    assert s["latency"]["max"] == pytest.approx(690, rel=1e-3)
    assert s["latency"]["min"] == pytest.approx(502, rel=1e-3)
    assert s["service_time"]["count"] == 1 and s["service_time"]["max"] == pytest.approx(2, rel=1e-3)
    assert s["lag"]["count"] == 1 and s["lag"]["max"] == pytest.approx(500, rel=1e-3)
    assert s["outcomes"] == {"ok": 1, "error": 0, "timeout": 0, "dropped": 1}
    assert s["dropped_rate"] == 0.5


def test_negative_lag_and_huge_values_are_clamped():
    rec = Recorder()
    rec.record("t", "ok", 1000 * MS, 999 * MS, 1001 * MS)  # started a hair early
    rec.record("t", "timeout", 0, 0, 2 * 3600 * 1000 * MS)  # 2 h
    assert rec.histogram("lag").get_min_value() == 0
    assert rec.clamped == 2  # latency and service time of the 2 h request
    assert rec.histogram("latency").get_max_value() >= HIST_HIGHEST_US


def test_error_types_are_bounded():
    rec = Recorder(max_error_types=3)
    for i in range(10):
        rec.record("t", "error", 0, 0, MS, error_type=f"E{i % 5}")
    assert rec.errors("t") == {"E0": 2, "E1": 2, "E2": 2, "other": 4}
    assert rec.summary()["targets"]["t"]["errors"]["other"] == 4


def test_flags_and_rates():
    rec = Recorder()
    for k in range(100):
        flags = (FLAG_CACHE_HIT if k < 30 else 0) | (FLAG_FALLBACK if k >= 95 else 0)
        rec.record("f", "ok", k * MS, k * MS, k * MS + MS, flags=flags)
    rec.record("f", "timeout", 0, 0, 1000 * MS)
    s = rec.summary()["targets"]["f"]
    assert s["cache_hit"] == 30 and s["cache_hit_rate"] == 0.30
    assert s["fallback"] == 5 and s["fallback_rate"] == 0.05
    assert s["timeout_rate"] == pytest.approx(1 / 101)


def test_merge_equals_union():
    a, b, union = Recorder(flush_every=700), Recorder(), Recorder()
    feed(a, 3000, seed=1)
    feed(b, 2000, seed=2, target="env-step", t0=7 * 10**9)
    feed(b, 1000, seed=3, t0=9 * 10**9)
    feed(union, 3000, seed=1)
    feed(union, 2000, seed=2, target="env-step", t0=7 * 10**9)
    feed(union, 1000, seed=3, t0=9 * 10**9)
    merged = Recorder().merge(a).merge(b)
    assert merged.summary() == union.summary()
    assert merged.windows() == union.windows()
    assert merged.windows("features") == union.windows("features")
    for metric in ("latency", "service_time", "lag"):
        assert merged.histogram(metric).equals(union.histogram(metric))
        for p in (50, 95, 99, 99.9):
            assert value_at_percentile(merged.histogram(metric), p) == value_at_percentile(union.histogram(metric), p)


def test_encode_decode_roundtrip_through_json():
    rec = Recorder()
    feed(rec, 3000, seed=5)
    rec.record("http", "dropped", 0, None, 3 * MS)
    data = json.loads(json.dumps(rec.encode()))
    assert data["unit"] == "us" and data["format"] == "harness.record.recorder/1"
    back = Recorder.decode(data)
    assert back.summary() == rec.summary()
    assert back.windows() == rec.windows()
    # decoded pieces merge exactly, e.g. results from two pods
    twice = Recorder.decode(data).merge(Recorder.decode(data))
    assert twice.counts()["ok"] == 2 * rec.counts()["ok"]
    assert value_at_percentile(twice.histogram("latency"), 99) == value_at_percentile(rec.histogram("latency"), 99)
    with pytest.raises(ValueError, match="not a recorder encoding"):
        Recorder.decode({"format": "other"})


def test_windows_by_end_time_with_a_stall_hole():
    rec = Recorder(origin_ns=10**12)
    o = rec.origin_ns
    for k in range(100):  # 100 rps for 1 s, 5 ms each
        rec.record("t", "ok", o + k * 10 * MS, o + k * 10 * MS, o + k * 10 * MS + 5 * MS)
    # requests intended during [1 s, 1.5 s) all complete at 2.6 s (a stall)
    for k in range(50):
        i = o + 1000 * MS + k * 10 * MS
        rec.record("t", "ok", i, i, o + 2600 * MS)
    w = rec.windows()
    assert [row["start_s"] for row in w] == [0, 1, 2]
    assert [row["completed"] for row in w] == [100, 0, 50]  # the stall: a hole at 1 s
    assert [row["intended"] for row in w] == [100, 50, 0]
    assert w[1]["p50_ms"] is None and w[1]["rate"] == 0
    assert w[0]["p99_ms"] == pytest.approx(5, rel=0.01)
    assert w[2]["p50_ms"] == pytest.approx(1350, rel=0.01) and w[2]["max_ms"] == pytest.approx(1600, rel=0.01)


def test_windows_stay_bounded_by_coarsening():
    rec = Recorder(max_windows=8)
    for s in range(40):
        rec.record("t", "ok", s * 10**9, s * 10**9, s * 10**9 + MS)
    rec.flush()
    w = rec.windows()
    assert len(w) <= 8
    assert rec.window_s == 8
    assert sum(row["ok"] for row in w) == 40
    assert w[0]["rate"] == 1.0


def test_merge_aligns_window_widths():
    fine, coarse = Recorder(), Recorder(max_windows=4)
    for s in range(12):
        for r in (fine, coarse):
            r.record("t", "ok", s * 10**9, s * 10**9, s * 10**9 + MS)
    merged = Recorder().merge(fine).merge(coarse)
    assert merged.window_s == coarse.window_s == 4
    assert [row["ok"] for row in merged.windows()] == [8, 8, 8]


def test_concurrent_record_from_threads_loses_nothing():
    rec = Recorder(flush_every=64)
    n_threads, per = 4, 5000

    def work(i):
        for k in range(per):
            rec.record(f"t{i % 2}", "ok" if k % 10 else "error", k, k, k + 1000 * (k % 50 + 1), "E" if k % 10 == 0 else None)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for _ in range(20):
        rec.summary()  # reads and flushes racing with the writers
    for t in threads:
        t.join()
    counts = rec.counts()
    assert counts["ok"] + counts["error"] == n_threads * per
    assert rec.histogram("latency").total_count == n_threads * per
    assert rec.errors() == {"E": n_threads * per // 10}


def test_locked_mode_records_the_same():
    a, b = Recorder(lock=True), Recorder()
    assert a.locked_record
    feed(a, 500)
    feed(b, 500)
    assert a.summary() == b.summary()


def test_bad_outcome_is_rejected():
    with pytest.raises(ValueError, match="unknown outcome 'fail'"):
        Recorder().record("t", "fail", 0, 0, 1)


def test_threshold_source():
    rec = Recorder()
    for k in range(1000):
        outcome = "error" if k < 5 else "ok"
        rec.record("features", outcome, k * MS, k * MS, k * MS + (k % 100 + 1) * MS,
                   flags=FLAG_CACHE_HIT if k % 2 else 0)
    rec.record("risk-var", "ok", 0, 0, 300 * MS)
    ths = T.parse_thresholds(
        {
            "latency": ["p(95)<100ms", "max<200ms", "count>=1001"],
            "latency{target:features}": ["p(99)<=100ms", "med<=51ms", "avg<60"],
            "latency{target:features,outcome:error}": ["max<10ms"],
            "error_rate": ["rate<0.01"],
            "error_rate{target:risk-var}": ["rate==0"],
            "cache_hit_rate{target:features}": ["rate>0.49"],
            "throughput": ["count==1001", "rate>900"],
            "timeout_rate": ["rate<0.01"],
            "latency{target:nope}": ["p(95)<1"],
        }
    )
    results = T.evaluate(ths, rec.threshold_source(duration_s=1.0))
    by = {(r.threshold.metric, r.threshold.expression): r for r in results}
    assert by[("latency", "p(95)<100ms")].ok
    assert not by[("latency", "max<200ms")].ok  # the 300 ms risk-var call
    assert by[("latency{target:features}", "p(99)<=100ms")].observed == pytest.approx(99, rel=1e-3)
    assert by[("latency{target:features,outcome:error}", "max<10ms")].ok
    assert by[("error_rate", "rate<0.01")].observed == pytest.approx(5 / 1001)
    assert by[("error_rate{target:risk-var}", "rate==0")].ok
    assert by[("cache_hit_rate{target:features}", "rate>0.49")].observed == pytest.approx(498 / 995)  # hits on ok calls only
    assert by[("throughput", "count==1001")].ok and by[("throughput", "rate>900")].observed == 1001
    r = by[("latency{target:nope}", "p(95)<1")]
    assert r.observed is None and not r.ok
    assert T.exit_code(results) == ExitCode.THRESHOLDS_FAILED


def test_windows_last_gives_the_tail_of_the_series():
    rec = Recorder(origin_ns=0)
    for i in range(10):
        t = i * 1_000_000_000 + 1000
        rec.record("a", "ok", t, t, t + 2_000_000)
    whole = rec.windows()
    assert len(whole) == 10
    assert rec.windows(last=3) == whole[-3:]
    assert rec.windows(last=50) == whole and Recorder(origin_ns=0).windows(last=3) == []
