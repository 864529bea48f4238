"""HDR histogram → Prometheus native (sparse exponential) histogram.

Prometheus' native histograms (``--enable-feature=native-histograms``, scraped over the
protobuf exposition or sent by remote write) have buckets on a fixed exponential grid:
for schema ``s`` the growth factor is ``base = 2^(2^-s)`` and bucket index ``i`` covers
``(base^(i-1), base^i]`` (upper bound inclusive, ``1`` is always a boundary: bucket 0 is
``(1/base, 1]``), plus a zero bucket for observations ``|v| <= zero_threshold``. The
counts travel as spans (runs of consecutive buckets: the first span's offset is the
index of its first bucket, every later offset is the gap after the previous span) and
deltas (each bucket's count minus the previous one's, the first against 0). The bucket
index of a value is computed as the Go client does (``frexp`` and a table of
``2^(j/2^s - 1)`` bounds), so a value exactly on a boundary lands where Prometheus' own
clients put it.

**Schema 5** (``base = 2^(1/32)``, buckets 2.19 % wide). ``histogram_quantile`` finds the
bucket holding the quantile's rank and interpolates inside it (linearly in Prometheus
2.42, exponentially from 2.51 on); nothing places the estimate nearer than the bucket
edges, so the worst case is one whole bucket width, not half of it. Schema 4's buckets
(4.4 %) could therefore be off by 4.4 %; schema 5 keeps every quantile within
``2^(1/32) - 1 = 2.19 %`` of HDR's value (the goal is 2.5 %), for any distribution.
It costs twice schema 4's buckets: ~32 per doubling of latency actually observed
(a run between 1 ms and 1 s: at most ~320 buckets, a few bytes each in protobuf).

Conversion: each non-empty HDR bin (3 significant digits, ≤ 0.1 % wide — well inside
one native bucket, or 1 µs wide below 2 ms) goes whole into the native bucket holding
the bin's *highest equivalent value*, the value HDR itself reports for a percentile that
falls in that bin. So the HDR percentile always lies in the native bucket Prometheus
interpolates in, which is what bounds the error above. Counts and the total are exact.
Values are converted from µs to **seconds**. HDR records sub-µs values as 0; those go to
the zero bucket, whose ``zero_threshold`` is 2^-128 (the Go client's default: zero in
effect, so ``histogram_quantile`` reports 0 as HDR does, and no native bucket overlaps it,
the smallest positive value being 1 µs). It is not exactly 0 because Prometheus 2.42 tells a
native histogram from a classic one by a positive zero threshold, zero count or
deltas: with a threshold of 0, a histogram still empty would be ingested as a classic
one. An empty histogram also carries one no-op span ``(0, 0)``, the marker the exposition
format defines for later readers.
"""

from __future__ import annotations

import math
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
from prometheus_client.samples import BucketSpan, Exemplar, NativeHistogram

from harness.record.recorder import counts_view, histogram_mean, index_values
from instrumentation.native_histogram import spans_and_deltas

__all__ = [
    "NATIVE_SCHEMA",
    "ZERO_THRESHOLD",
    "bucket_index",
    "bucket_bounds",
    "from_hdr",
    "from_counts",
    "native_buckets",
    "native_quantile",
]

#: the schema the harness uses (see the module docstring for why 5)
NATIVE_SCHEMA = 5
#: observations ≤ this (seconds) count in the zero bucket: HDR's 0 (below 1 µs)
ZERO_THRESHOLD = 2.0 ** -128


def _bounds(schema: int) -> np.ndarray:
    n = 1 << schema
    return np.exp2(np.arange(n, dtype=np.float64) / n - 1.0)


_BOUNDS = {s: _bounds(s) for s in range(0, 9)}


def bucket_index(values: Any, schema: int = NATIVE_SCHEMA) -> np.ndarray:
    """Native bucket index of each positive value (seconds), the Go client's way:
    ``v = frac·2^exp`` with ``frac`` in [0.5, 1); for schema > 0 the index is
    ``searchsorted(bounds, frac) + (exp-1)·2^schema``; for schema ≤ 0 ``exp`` (minus one on an
    exact power of two) shifted right by ``-schema`` (rounding up)."""
    if not -4 <= schema <= 8:
        raise ValueError(f"schema: must be within -4..8, got {schema}")
    v = np.asarray(values, dtype=np.float64)
    if np.any(~(v > 0)):
        raise ValueError("values: native buckets hold positive values only (0 goes to the zero bucket)")
    frac, exp = np.frexp(v)
    exp = exp.astype(np.int64)
    if schema > 0:
        bounds = _BOUNDS[schema]
        return np.searchsorted(bounds, frac, side="left").astype(np.int64) + (exp - 1) * bounds.size
    key = exp - (frac == 0.5)
    if schema < 0:
        offset = (1 << -schema) - 1
        key = (key + offset) >> -schema
    return key


def bucket_bounds(index: int, schema: int = NATIVE_SCHEMA) -> Tuple[float, float]:
    """(lower, upper] of native bucket ``index``: ``(base^(index-1), base^index]``."""
    return (2.0 ** ((index - 1) * 2.0 ** -schema), 2.0 ** (index * 2.0 ** -schema))


def native_buckets(indices: Sequence[int], counts: Sequence[int]) -> Tuple[List[BucketSpan], List[int]]:
    """Spans and delta-encoded counts of buckets ``indices`` (strictly increasing) holding
    ``counts`` (all > 0), as the exposition formats and remote write carry them (one
    encoder: :func:`instrumentation.native_histogram.spans_and_deltas`)."""
    return spans_and_deltas({int(i): int(c) for i, c in zip(indices, counts)})


def from_counts(values_s: Any, counts: Any, *, zero_count: int = 0, sum_s: float = 0.0,
                schema: int = NATIVE_SCHEMA, exemplars: Optional[Sequence[Exemplar]] = None) -> NativeHistogram:
    """A native histogram of positive ``values_s`` (seconds) observed ``counts`` times each,
    plus ``zero_count`` observations of 0."""
    v = np.asarray(values_s, dtype=np.float64)
    c = np.asarray(counts, dtype=np.int64)
    keep = c > 0
    v, c = v[keep], c[keep]
    if v.size:
        idx = bucket_index(v, schema)
        order = np.argsort(idx, kind="stable")
        uniq, first = np.unique(idx[order], return_index=True)
        sums = np.add.reduceat(c[order], first) if first.size else np.zeros(0, dtype=np.int64)
        spans, deltas = native_buckets(uniq.tolist(), sums.tolist())
    else:
        spans, deltas = [BucketSpan(0, 0)], []
    total = int(c.sum()) + int(zero_count)
    return NativeHistogram(
        count_value=float(total),
        sum_value=float(sum_s),
        schema=schema,
        zero_threshold=ZERO_THRESHOLD,
        zero_count=float(zero_count),
        pos_spans=spans,
        pos_deltas=deltas,
        nh_exemplars=list(exemplars) if exemplars else None,
    )


def from_hdr(h: Any, *, schema: int = NATIVE_SCHEMA, exemplars: Optional[Sequence[Exemplar]] = None) -> NativeHistogram:
    """The recorder's HdrHistogram (µs) as a native histogram in seconds (see the module
    docstring): each HDR bin counts in the bucket of its highest equivalent value; the
    sum is HDR's mean (bin medians) times the count, as the classic ``_sum`` reports it."""
    counts = counts_view(h)[: h.counts_len]
    nz = np.flatnonzero(counts)
    n = int(h.total_count)
    if nz.size == 0:
        return from_counts([], [], schema=schema, exemplars=exemplars)
    low, size = index_values(h, nz.astype(np.int64))
    highest = low + size - 1  # HDR's highest equivalent value of each bin
    c = counts[nz].astype(np.int64)
    zero = highest <= 0
    zero_count = int(c[zero].sum())
    return from_counts(highest[~zero] / 1e6, c[~zero], zero_count=zero_count,
                       sum_s=histogram_mean(h) * n / 1e6, schema=schema, exemplars=exemplars)


def _expand(nh: NativeHistogram) -> List[Tuple[int, int]]:
    """(bucket index, count) of every positive bucket, spans and deltas decoded."""
    out: List[Tuple[int, int]] = []
    deltas = iter(nh.pos_deltas or ())
    idx = 0
    count = 0
    first = True
    for span in nh.pos_spans or ():
        idx = span.offset if first else idx + span.offset
        first = False
        for _ in range(span.length):
            count += next(deltas)
            out.append((idx, count))
            idx += 1
    return out


def native_quantile(q: float, nh: NativeHistogram) -> float:
    """Prometheus 2.42's ``histogram_quantile`` on one native histogram (positive buckets
    and zero bucket; linear interpolation inside the bucket holding rank ``q·count``).
    NaN for an empty histogram, ±Inf outside [0, 1], as PromQL returns."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    total = float(nh.count_value)
    if total == 0:
        return math.nan
    rank = q * total
    buckets: List[Tuple[float, float, float]] = []
    if nh.zero_count > 0:
        buckets.append((0.0, float(nh.zero_threshold), float(nh.zero_count)))  # no negative buckets: lower 0
    for idx, c in _expand(nh):
        lo, hi = bucket_bounds(idx, nh.schema)
        buckets.append((lo, hi, float(c)))
    count = 0.0
    lo = hi = c = 0.0
    for lo, hi, c in buckets:
        count += c
        if count >= rank:
            break
    count = min(count, total)
    if count < rank:
        return hi
    rank -= count - c
    return lo + (hi - lo) * (rank / c)
