"""Instrument any function with a budget-edged Prometheus histogram, error counts and an
OpenTelemetry span whose trace id becomes the histogram's exemplar.

    from instrumentation import instrument

    @instrument("feature_extraction")
    def extract(window): ...
"""

from .buckets import BUDGET_EDGES, DEFAULT_BUCKETS, validate_buckets
from .instrument import MAX_ERROR_TYPES, MAX_FLAGS, Call, Instrument, instrument
from .metrics import DEFAULT_NAMESPACE, OperationMetrics, operation_metrics
from .server import MetricsServer, serve_metrics
from .tracing import SpanStarter, TracingConfigError, setup_tracing

__all__ = [
    "instrument", "Instrument", "Call",
    "DEFAULT_BUCKETS", "BUDGET_EDGES", "validate_buckets",
    "DEFAULT_NAMESPACE", "OperationMetrics", "operation_metrics",
    "MetricsServer", "serve_metrics",
    "setup_tracing", "SpanStarter", "TracingConfigError",
    "MAX_ERROR_TYPES", "MAX_FLAGS",
]
