"""The metric families ``instrument`` writes, one set per (registry, namespace).

Families are created once per registry and shared by every instrumented operation; the
per-call work is then one cached child's ``observe`` plus two deque operations for the
in-flight gauge (a prometheus ``Gauge`` takes a lock twice per call, which is most of
the budget we allow ourselves on top of a bare histogram).
"""

from __future__ import annotations

import threading
import time
import weakref
from bisect import bisect_left
from collections import deque
from typing import Any, Callable, Deque, Dict, Iterator, Sequence, Tuple

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar

from .buckets import DEFAULT_BUCKETS, validate_buckets

__all__ = ["OperationMetrics", "operation_metrics", "exemplar_observer", "DEFAULT_NAMESPACE"]

DEFAULT_NAMESPACE = "lbh"


class _InFlight(Collector):
    """In-flight calls per operation, counted with deque append/pop (atomic in CPython)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._ops: Dict[str, Deque[None]] = {}
        self._lock = threading.Lock()

    def tracker(self, operation: str) -> Deque[None]:
        with self._lock:
            d = self._ops.get(operation)
            if d is None:
                d = self._ops[operation] = deque()
            return d

    def collect(self) -> Iterator[GaugeMetricFamily]:
        g = GaugeMetricFamily(self._name, "Calls currently executing.", labels=["operation"])
        with self._lock:
            items = list(self._ops.items())
        for op, d in items:
            g.add_metric([op], len(d))
        yield g

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(self._name, "Calls currently executing.", labels=["operation"])


class OperationMetrics:
    """Histogram, error and flag counters and the in-flight gauge in one registry."""

    def __init__(self, registry: CollectorRegistry, namespace: str, buckets: Sequence[float]) -> None:
        self.namespace = namespace
        self.buckets = validate_buckets(buckets)
        self.duration = Histogram(
            "operation_duration_seconds",
            "Duration of instrumented calls, by operation and outcome (ok|error).",
            ["operation", "outcome"],
            namespace=namespace,
            buckets=self.buckets,
            registry=registry,
        )
        self.errors = Counter(
            "operation_errors",
            "Failed calls by exception type (bounded label set; overflow is 'other').",
            ["operation", "error_type"],
            namespace=namespace,
            registry=registry,
        )
        self.flags = Counter(
            "operation_flags",
            "Calls whose result reported a flag (e.g. cache_hit, fallback).",
            ["operation", "flag"],
            namespace=namespace,
            registry=registry,
        )
        self.in_flight = _InFlight(f"{namespace}_operation_in_flight" if namespace else "operation_in_flight")
        registry.register(self.in_flight)
        self._registry = registry
        self._native: Any = None

    def native_duration(self) -> Any:
        """The opt-in native histogram family (``instrument(..., native=True)``), registered
        on first use: ``<ns>_operation_duration_native_seconds{operation, outcome}``."""
        with _families_lock:
            if self._native is None:
                from .native_histogram import NativeHistogramFamily

                name = "operation_duration_native_seconds"
                self._native = NativeHistogramFamily(
                    f"{self.namespace}_{name}" if self.namespace else name,
                    "Duration of instrumented calls as a native histogram (schema 5), by operation and outcome.",
                    ("operation", "outcome"))
                self._registry.register(self._native)
            return self._native


_families: "weakref.WeakKeyDictionary[CollectorRegistry, Dict[Tuple[str, Tuple[float, ...]], OperationMetrics]]" = (
    weakref.WeakKeyDictionary()
)
_families_lock = threading.Lock()


def operation_metrics(
    registry: CollectorRegistry | None = None,
    namespace: str = DEFAULT_NAMESPACE,
    buckets: Sequence[float] | None = None,
) -> OperationMetrics:
    """The families for ``registry`` (default: prometheus_client's global one), made once.

    Two layouts in one registry under one namespace would collide on metric names, so
    asking for different buckets there is an error rather than a silent second family.
    """
    registry = REGISTRY if registry is None else registry
    wanted = validate_buckets(DEFAULT_BUCKETS if buckets is None else buckets)
    with _families_lock:
        per_reg = _families.setdefault(registry, {})
        for (ns, layout), fam in per_reg.items():
            if ns == namespace:
                if buckets is not None and layout != wanted:
                    raise ValueError(
                        f"buckets: namespace {namespace!r} in this registry already uses {list(layout)}"
                    )
                return fam
        fam = OperationMetrics(registry, namespace, wanted)
        per_reg[(namespace, wanted)] = fam
        return fam


def exemplar_observer(child: Any) -> Callable[[float, int, int], None]:
    """``observe(amount, trace_id, span_id)`` for one histogram child, exemplar attached.

    prometheus_client validates exemplar labels on every observation (about half the
    cost of the call); ours are fixed-width hex ids known to be valid, so when the
    child has the layout we know we set the exemplar on the bucket directly. Any other
    layout falls back to the public ``observe(amount, exemplar)``.
    """
    bounds = getattr(child, "_upper_bounds", None)
    buckets = getattr(child, "_buckets", None)
    if (
        not isinstance(bounds, list) or not isinstance(buckets, list) or len(bounds) != len(buckets)
        or not all(hasattr(b, "set_exemplar") for b in buckets) or bounds[-1] != float("inf")
    ):
        def public(amount: float, trace_id: int, span_id: int) -> None:
            child.observe(amount, {"trace_id": "%032x" % trace_id, "span_id": "%016x" % span_id})
        return public

    observe = child.observe
    now = time.time

    def direct(amount: float, trace_id: int, span_id: int) -> None:
        observe(amount)
        buckets[bisect_left(bounds, amount)].set_exemplar(
            Exemplar({"trace_id": "%032x" % trace_id, "span_id": "%016x" % span_id}, amount, now())
        )
    return direct
