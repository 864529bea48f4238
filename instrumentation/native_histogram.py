"""Opt-in Prometheus native histograms for ``instrument(..., native=True)``.

prometheus_client (0.2x) has no native histogram of its own; this is one, kept minimal
for the per-call path: an observation is one list append, folded into buckets in batches
(the Go client's bucket-index method — ``frexp`` and a 32-entry bounds table — schema 5:
buckets 2.19 % wide, so ``histogram_quantile`` lands within 2.2 % of the true value;
see ``harness.record.native`` for the same choice on the harness side). The family is
``<ns>_operation_duration_native_seconds{operation, outcome}``, a name of its own beside
the classic ``<ns>_operation_duration_seconds`` (Prometheus 2.42 would drop the classic
buckets of a histogram that also has native ones, and the alert rules read those). It is
served over the protobuf exposition (:mod:`instrumentation.server`) and left out of the
text formats. Its cost per call is measured by ``benchmarks/native_histogram_overhead.py``.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from math import frexp
from typing import Dict, Iterator, List, Tuple

import numpy as np
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import BucketSpan, NativeHistogram

__all__ = ["SCHEMA", "ZERO_THRESHOLD", "FOLD_EVERY", "NativeHistogramFamily", "NativeChild", "bucket_key",
           "spans_and_deltas"]

SCHEMA = 5
#: |v| at or below this counts in the zero bucket (the Go client's default, 2^-128)
ZERO_THRESHOLD = 2.0 ** -128
_N = 1 << SCHEMA
_BOUNDS: Tuple[float, ...] = tuple(2.0 ** (j / _N - 1.0) for j in range(_N))
_BOUNDS_NP = np.array(_BOUNDS)
#: observations buffered before the observing thread folds them into the buckets
FOLD_EVERY = 1024


def bucket_key(value: float) -> int:
    """Schema-5 bucket index of ``value`` > 0: bucket i holds ``(2^((i-1)/32), 2^(i/32)]``."""
    frac, exp = frexp(value)
    return bisect_left(_BOUNDS, frac) + (exp - 1) * _N


def spans_and_deltas(buckets: Dict[int, int]) -> Tuple[List[BucketSpan], List[int]]:
    """Spans (first offset absolute, later ones the gap) and delta-encoded counts."""
    spans: List[BucketSpan] = []
    deltas: List[int] = []
    prev_key = None
    prev_count = 0
    offset = length = 0
    for key in sorted(buckets):
        count = buckets[key]
        if prev_key is None:
            offset, length = key, 1
        elif key == prev_key + 1:
            length += 1
        else:
            spans.append(BucketSpan(offset, length))
            offset, length = key - prev_key - 1, 1
        deltas.append(count - prev_count)
        prev_key, prev_count = key, count
    if prev_key is not None:
        spans.append(BucketSpan(offset, length))
    return spans, deltas


class NativeChild:
    """One label set's native histogram.

    ``observe`` only appends the value to a list (one atomic C call, no lock); the values
    are folded into the buckets, vectorised (numpy: ``frexp`` and ``searchsorted`` on the
    whole batch), every :data:`FOLD_EVERY` observations by the observing thread and before
    every read, under a lock that only folds take. Appends racing a fold are kept (it takes
    ``buf[:n]`` then deletes exactly those)."""

    __slots__ = ("_lock", "_buf", "_buckets", "_zero", "_sum", "_count", "observe")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buf: List[float] = []
        self._buckets: Dict[int, int] = {}
        self._zero = 0
        self._sum = 0.0
        self._count = 0
        append, buf, fold = self._buf.append, self._buf, self._fold

        def observe(value: float) -> None:
            append(value)
            if len(buf) >= FOLD_EVERY:
                fold()
        self.observe = observe

    def _fold(self) -> None:
        with self._lock:
            n = len(self._buf)
            if not n:
                return
            values = np.asarray(self._buf[:n], dtype=np.float64)
            del self._buf[:n]
            positive = values > ZERO_THRESHOLD
            frac, exp = np.frexp(values[positive])
            keys = np.searchsorted(_BOUNDS_NP, frac, side="left") + (exp.astype(np.int64) - 1) * _N
            uniq, counts = np.unique(keys, return_counts=True)
            b = self._buckets
            for k, c in zip(uniq.tolist(), counts.tolist()):
                b[k] = b.get(k, 0) + c
            self._zero += int(n - int(positive.sum()))
            self._sum += float(values[positive].sum())
            self._count += n

    def snapshot(self) -> NativeHistogram:
        self._fold()
        with self._lock:
            buckets = dict(self._buckets)
            zero, total, count = self._zero, self._sum, self._count
        spans, deltas = spans_and_deltas(buckets)
        return NativeHistogram(count_value=float(count), sum_value=total, schema=SCHEMA,
                               zero_threshold=ZERO_THRESHOLD, zero_count=float(zero),
                               pos_spans=spans or [BucketSpan(0, 0)], pos_deltas=deltas)


class NativeHistogramFamily(Collector):
    """A native histogram family with fixed label names; children made on first use."""

    def __init__(self, name: str, documentation: str, labelnames: Tuple[str, ...]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self._children: Dict[Tuple[str, ...], NativeChild] = {}
        self._lock = threading.Lock()

    def labels(self, *values: str) -> NativeChild:
        if len(values) != len(self.labelnames):
            raise ValueError(f"labels: expected {len(self.labelnames)} values ({', '.join(self.labelnames)}), "
                             f"got {len(values)}")
        with self._lock:
            child = self._children.get(values)
            if child is None:
                child = self._children[values] = NativeChild()
            return child

    def collect(self) -> Iterator[Metric]:
        m = Metric(self.name, self.documentation, "histogram")
        with self._lock:
            items = list(self._children.items())
        if not items:
            return
        for values, child in items:
            m.add_sample(self.name, dict(zip(self.labelnames, values)), None,  # type: ignore[arg-type]
                         native_histogram=child.snapshot())
        yield m

    def describe(self) -> Iterator[Metric]:
        yield Metric(self.name, self.documentation, "histogram")
