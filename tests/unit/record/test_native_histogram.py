"""HDR → Prometheus native histogram: bucket boundaries, span/delta encoding, and the
quantile bound (Prometheus' interpolation within 2.5 % of HDR's value)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.samples import BucketSpan

from harness.record.native import (
    NATIVE_SCHEMA,
    bucket_bounds,
    bucket_index,
    from_counts,
    from_hdr,
    native_buckets,
    native_quantile,
)
from harness.record.recorder import HIST_HIGHEST_US, HIST_LOWEST_US, HIST_SIGNIFICANT_FIGURES, value_at_percentile


def _hist(values_us):
    h = HdrHistogram(HIST_LOWEST_US, HIST_HIGHEST_US, HIST_SIGNIFICANT_FIGURES)
    for v in values_us:
        h.record_value(int(v))
    return h


def test_schema_5_buckets_are_narrow_enough_for_the_2_5_percent_goal():
    lo, hi = bucket_bounds(100)
    assert hi / lo - 1 == pytest.approx(2 ** (1 / 32) - 1)
    assert hi / lo - 1 < 0.025 < 2 ** (1 / 16) - 1  # schema 4 would not do


@pytest.mark.parametrize("value, schema, index", [
    (1.0, 5, 0),           # 1 is the upper bound of bucket 0: (2^(-1/32), 1]
    (2.0, 5, 32),          # powers of two are boundaries, upper bound inclusive
    (0.5, 5, -32),
    (1.0000001, 5, 1),
    (0.15, 5, -87),        # 2^(-88/32) = 0.1487 < 0.15 <= 2^(-87/32) = 0.1520
    (1.0, 0, 0), (2.0, 0, 1), (3.0, 0, 2), (4.0, 0, 2), (4.0001, 0, 3),
    (4.0, -1, 1), (5.0, -1, 2), (16.0, -1, 2), (1.0, -1, 0),
    (1.5, 1, 2), (1.4142, 1, 1),
])
def test_bucket_index_known_values(value, schema, index):
    assert int(bucket_index([value], schema)[0]) == index


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=1e-9, max_value=1e6, allow_nan=False, allow_infinity=False),
       st.integers(min_value=-4, max_value=8))
def test_bucket_index_holds_the_value_in_lower_exclusive_upper_inclusive(value, schema):
    i = int(bucket_index([value], schema)[0])
    lo, hi = bucket_bounds(i, schema)
    # 1e-12 relative: the bounds here are computed with pow, the index with the Go client's table
    assert lo * (1 - 1e-12) < value <= hi * (1 + 1e-12)


def test_bucket_index_rejects_zero_and_negative():
    with pytest.raises(ValueError, match="positive"):
        bucket_index([0.0])
    with pytest.raises(ValueError, match="schema"):
        bucket_index([1.0], 9)


def test_spans_and_deltas():
    spans, deltas = native_buckets([-3, -2, 0, 5, 6, 7], [1, 3, 2, 1, 1, 4])
    assert spans == [BucketSpan(-3, 2), BucketSpan(1, 1), BucketSpan(4, 3)]
    assert deltas == [1, 2, -1, -1, 0, 3]
    assert native_buckets([], []) == ([], [])


def test_empty_histogram_has_a_no_op_span():
    nh = from_hdr(_hist([]))
    assert nh.count_value == 0 and nh.zero_count == 0
    assert nh.pos_spans == [BucketSpan(0, 0)] and nh.pos_deltas == []
    assert math.isnan(native_quantile(0.5, nh))


def test_known_histogram():
    # 100 × 150 ms, 10 × 0 (sub-µs), 1 × 1 s
    h = _hist([150_000] * 100 + [0] * 10 + [1_000_000])
    nh = from_hdr(h)
    assert nh.schema == NATIVE_SCHEMA == 5
    assert nh.count_value == 111 and nh.zero_count == 10 and 0 < nh.zero_threshold < 1e-30
    # each HDR bin goes to the bucket of its highest equivalent value (what HDR reports)
    i150 = int(bucket_index([h.get_highest_equivalent_value(150_000) / 1e6], 5)[0])
    i1s = int(bucket_index([h.get_highest_equivalent_value(1_000_000) / 1e6], 5)[0])
    assert i150 == -87 and i1s == 1  # 1 000 447 µs: just above 1 s
    assert nh.pos_spans == [BucketSpan(i150, 1), BucketSpan(i1s - i150 - 1, 1)]
    assert nh.pos_deltas == [100, -99]
    assert nh.sum_value == pytest.approx(100 * 0.15 + 1.0, rel=1e-3)
    assert native_quantile(0.05, nh) < 1e-30
    lo, hi = bucket_bounds(i150)
    assert lo < native_quantile(0.5, nh) < hi
    assert native_quantile(1.0, nh) == bucket_bounds(i1s)[1]


def test_from_counts_merges_values_of_one_bucket():
    nh = from_counts([1.0, 0.99, 1.5], [2, 3, 0], zero_count=1)
    assert nh.count_value == 6
    assert nh.pos_spans == [BucketSpan(0, 1)] and nh.pos_deltas == [5]


def test_exemplars_are_carried():
    from prometheus_client.samples import Exemplar
    ex = Exemplar({"trace_id": "ab" * 16}, 0.15, 1700000000.0)
    nh = from_hdr(_hist([150_000]), exemplars=[ex])
    assert nh.nh_exemplars == [ex]


def _check_bound(values, k):
    h = _hist(values)
    n = len(values)
    nh = from_hdr(h)
    assert nh.count_value == n
    q = k / n
    hdr = value_at_percentile(h, 100.0 * k / n) / 1e6
    prom = native_quantile(q, nh)
    if hdr == 0:
        assert prom < 1e-30  # in the zero bucket
    else:
        assert abs(prom - hdr) / hdr <= 0.025, (q, hdr, prom)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.just(0), st.integers(min_value=1, max_value=HIST_HIGHEST_US)), min_size=1, max_size=60),
       st.data())
def test_quantile_within_2_5_percent_of_hdr(values, data):
    """At every rank k of n (q = k/n, where HDR's and PromQL's rank definitions agree),
    Prometheus' linear interpolation in the native bucket stays within 2.5 % of HDR's value."""
    k = data.draw(st.integers(min_value=1, max_value=len(values)))
    _check_bound(values, k)


@settings(max_examples=40, deadline=None)
@given(st.floats(min_value=50.0, max_value=5e6), st.floats(min_value=0.01, max_value=1.5),
       st.integers(min_value=0, max_value=2**31))
def test_p95_p99_of_lognormal_runs(median_us, sigma, seed):
    rng = np.random.default_rng(seed)
    values = np.minimum(rng.lognormal(math.log(median_us), sigma, 2000), HIST_HIGHEST_US).astype(np.int64)
    for k in (1900, 1980, 2000, 1000):
        _check_bound(values.tolist(), k)
