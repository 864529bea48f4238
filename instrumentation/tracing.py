"""OpenTelemetry: provider setup from ``OTEL_*`` variables, and a cheap span starter.

``setup_tracing`` is for applications (the CLI, the service); library code never calls
it. ``SpanStarter`` is what ``instrument`` uses per call: it makes the sampling decision
itself for the samplers it understands, so a call whose span will be dropped costs a few
hundred nanoseconds instead of a full SDK ``start_span`` (several microseconds), while
keeping parent-based semantics: a dropped root still puts a non-sampled span context in
place, so nested calls are dropped too, exactly as the SDK would do.

Why export is shaped the way it is (issue 15, item 8): the per-call cost of a span is a
few microseconds, but the export runs on the processor's thread in the same process and
mostly under the GIL: encoding to OTLP protobuf is pure Python (about 20 µs a span) and
each HTTP request costs about 0.6 ms of Python in ``requests``. With the SDK's 512-span
batches one export held the GIL for about 10 ms in a row, and the event loop and the
request threads wait through such a slice (the interpreter takes the GIL back only every
5 ms), so requests that overlapped an export paid it in the p99. A dead collector was
worse: every batch was still encoded, then retried for the exporter's 10 s while the
queue overflowed, logging one "Queue full" warning per span on the request path; and
shutdown joined the processor thread for the SDK's fixed 30 s. So: 64-span batches (a
slice of about 1.5 ms), an exporter that stops encoding and retrying while the collector
is down (it drops batches for a pause that doubles, and counts them), the queue-full
warning rate-limited, and flush/shutdown bounded by ``OTEL_BSP_EXPORT_TIMEOUT`` (5 s by
default here, well inside a Kubernetes grace period).
"""

from __future__ import annotations

import copy
import logging
import os
import threading
import time
from typing import Any, Callable, Mapping, Optional, Sequence, Tuple

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

__all__ = [
    "setup_tracing", "SpanStarter", "TracingConfigError", "BoundedBatchSpanProcessor", "FailFastExporter",
    "DEFAULT_EXPORT_TIMEOUT_MS", "DEFAULT_MAX_EXPORT_BATCH_SIZE",
]

#: flush/shutdown bound and per-export timeout unless ``OTEL_BSP_EXPORT_TIMEOUT`` says
#: otherwise (the SDK's own default, 30 s, is most of a Kubernetes grace period)
DEFAULT_EXPORT_TIMEOUT_MS = 5000
#: spans per export unless ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` says otherwise: encoding a
#: batch holds the GIL, 64 spans is about 1.5 ms of it (the SDK's 512: about 11 ms)
DEFAULT_MAX_EXPORT_BATCH_SIZE = 64

# trace.get_tracer_provider() looks up OTEL_PYTHON_TRACER_PROVIDER in os.environ on every
# call while no global provider is set (~1.5 µs, more than the rest of an unsampled
# call); the API's own globals say the same in one attribute read. The env variable is
# read once, as the API would the first time it found it.
_FAST_GLOBALS = hasattr(trace, "_TRACER_PROVIDER") and hasattr(trace, "_PROXY_TRACER_PROVIDER")
_PROVIDER_FROM_ENV = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ


def _global_provider() -> Any:
    if _FAST_GLOBALS and not _PROVIDER_FROM_ENV:
        provider = trace._TRACER_PROVIDER  # type: ignore[attr-defined]
        return trace._PROXY_TRACER_PROVIDER if provider is None else provider  # type: ignore[attr-defined]
    return trace.get_tracer_provider()

log = logging.getLogger(__name__)

_SAMPLERS = (
    "always_on", "always_off", "traceidratio",
    "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio",
)
_PROTOCOLS = ("http/protobuf", "grpc")
_EXPORTERS = ("otlp", "console", "none")


class TracingConfigError(ValueError):
    """An ``OTEL_*`` variable holds a value we cannot use; the message names it."""


def _sampler_from_env(env: Mapping[str, str]):
    from opentelemetry.sdk.trace import sampling

    name = env.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    if name not in _SAMPLERS:
        raise TracingConfigError(f"OTEL_TRACES_SAMPLER: unknown sampler {name!r}; expected one of {', '.join(_SAMPLERS)}")
    ratio = 1.0
    if name.endswith("traceidratio"):
        raw = env.get("OTEL_TRACES_SAMPLER_ARG", "1.0")
        try:
            ratio = float(raw)
        except ValueError:
            raise TracingConfigError(f"OTEL_TRACES_SAMPLER_ARG: expected a number in [0, 1], got {raw!r}") from None
        if not 0.0 <= ratio <= 1.0:
            raise TracingConfigError(f"OTEL_TRACES_SAMPLER_ARG: must be within [0, 1], got {ratio}")
    root = {
        "always_on": sampling.ALWAYS_ON,
        "always_off": sampling.ALWAYS_OFF,
        "traceidratio": sampling.TraceIdRatioBased(ratio),
    }[name.replace("parentbased_", "")]
    return sampling.ParentBased(root) if name.startswith("parentbased_") else root


def setup_tracing(
    service_name: str = "latency-budget",
    *,
    environ: Optional[Mapping[str, str]] = None,
    exporter: Any = None,
    set_global: bool = True,
):
    """Build a ``TracerProvider`` from the standard ``OTEL_*`` variables.

    Honoured: ``OTEL_SDK_DISABLED``, ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES``
    (over ``service_name``), ``OTEL_TRACES_SAMPLER`` / ``_ARG``, ``OTEL_TRACES_EXPORTER``
    (otlp|console|none), ``OTEL_EXPORTER_OTLP[_TRACES]_ENDPOINT`` and ``_PROTOCOL``
    (http/protobuf by default, or grpc), ``OTEL_BSP_*``. Spans leave through a
    ``BoundedBatchSpanProcessor`` (a ``BatchSpanProcessor``) with a bounded queue and
    64-span batches, so a slow collector drops spans instead of blocking a call, through
    a ``FailFastExporter``, so a dead one costs no encoding or retries; flush and
    shutdown return within ``OTEL_BSP_EXPORT_TIMEOUT`` ms (default 5000). With no
    exporter configured and no endpoint set, returns ``None``: spans nobody receives would only cost time (and give exemplars pointing nowhere).
    ``exporter`` overrides the exporter (tests pass an in-memory one). ``set_global``
    also switches on whatever looks for a global provider: recent FastAPI then traces
    every request itself (the service turns that off: it has its own server span).
    """
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    sampler = _sampler_from_env(env)
    bsp = _bsp_from_env(env)

    if exporter is None:
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        kind = env.get("OTEL_TRACES_EXPORTER", "otlp" if endpoint else "none").strip().lower()
        if kind not in _EXPORTERS:
            raise TracingConfigError(f"OTEL_TRACES_EXPORTER: unsupported {kind!r}; expected one of {', '.join(_EXPORTERS)}")
        if kind == "none":
            return None
        if kind == "console":
            exporter = ConsoleSpanExporter()
        else:
            protocol = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf").strip()
            if protocol not in _PROTOCOLS:
                raise TracingConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL: unsupported {protocol!r}; expected one of {', '.join(_PROTOCOLS)}")
            exporter = _otlp_exporter(protocol, env, bsp["OTEL_BSP_EXPORT_TIMEOUT"] / 1000.0)

    attrs = {}
    if not env.get("OTEL_SERVICE_NAME") and "service.name=" not in env.get("OTEL_RESOURCE_ATTRIBUTES", ""):
        attrs["service.name"] = service_name
    resource = Resource.create(attrs)
    if environ is not None and env.get("OTEL_SERVICE_NAME"):
        resource = resource.merge(Resource({"service.name": env["OTEL_SERVICE_NAME"]}))
    provider = TracerProvider(sampler=sampler, resource=resource)
    try:
        processor = _processor_class()(
            FailFastExporter(exporter),
            export_timeout_millis=bsp["OTEL_BSP_EXPORT_TIMEOUT"],
            max_queue_size=bsp.get("OTEL_BSP_MAX_QUEUE_SIZE"),
            schedule_delay_millis=bsp.get("OTEL_BSP_SCHEDULE_DELAY"),
            max_export_batch_size=bsp["OTEL_BSP_MAX_EXPORT_BATCH_SIZE"],
        )
    except ValueError as exc:  # the SDK's own check (batch size over the queue size, ...)
        raise TracingConfigError(f"OTEL_BSP_*: {exc}") from None
    provider.add_span_processor(processor)
    _rate_limit_queue_full_warnings()
    if set_global:
        trace.set_tracer_provider(provider)
    return provider


def _otlp_exporter(protocol: str, env: Mapping[str, str], bound_s: float):
    traces_ep = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    base_ep = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    # One export (retries included) within the flush bound, unless the user set the
    # exporter's own timeout; shutdown is bounded by the processor either way.
    timeout = None
    if not (env.get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") or env.get("OTEL_EXPORTER_OTLP_TIMEOUT")):
        timeout = min(bound_s, 10.0)
    if protocol == "grpc":
        try:  # grpcio is an extra: OTLP over HTTP needs none of it
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise TracingConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs the gRPC exporter ({exc}): "
                             "pip install 'latency-budget-harness[otlp-grpc]', or use http/protobuf") from None

        return OTLPSpanExporter(endpoint=traces_ep or base_ep or "localhost:4317", timeout=timeout)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    if traces_ep:
        url = traces_ep
    else:
        url = (base_ep or "http://localhost:4318").rstrip("/") + "/v1/traces"
    return OTLPSpanExporter(endpoint=url, timeout=timeout)


# --- bounded, fail-fast export --------------------------------------------------------

_BSP_INT_VARS = ("OTEL_BSP_EXPORT_TIMEOUT", "OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_SCHEDULE_DELAY",
                 "OTEL_BSP_MAX_EXPORT_BATCH_SIZE")


def _bsp_from_env(env: Mapping[str, str]) -> dict:
    """The ``OTEL_BSP_*`` values that are set (validated), with our defaults for the
    export timeout and the batch size."""
    out: dict = {"OTEL_BSP_EXPORT_TIMEOUT": DEFAULT_EXPORT_TIMEOUT_MS,
                 "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": DEFAULT_MAX_EXPORT_BATCH_SIZE}
    for name in _BSP_INT_VARS:
        raw = env.get(name, "").strip()
        if not raw:
            continue
        try:
            value = float(raw)
        except ValueError:
            raise TracingConfigError(f"{name}: expected a positive number of "
                                     f"{'spans' if 'SIZE' in name else 'milliseconds'}, got {raw!r}") from None
        if not value > 0 or value != value or value == float("inf"):
            raise TracingConfigError(f"{name}: must be a positive finite number, got {raw!r}")
        out[name] = int(value) if "SIZE" in name else value
    queue = out.get("OTEL_BSP_MAX_QUEUE_SIZE")
    if queue is not None and out["OTEL_BSP_MAX_EXPORT_BATCH_SIZE"] > queue:
        if env.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "").strip():
            raise TracingConfigError(f"OTEL_BSP_MAX_EXPORT_BATCH_SIZE: must not exceed OTEL_BSP_MAX_QUEUE_SIZE "
                                     f"({out['OTEL_BSP_MAX_EXPORT_BATCH_SIZE']} > {queue})")
        out["OTEL_BSP_MAX_EXPORT_BATCH_SIZE"] = queue  # our default batch, a smaller queue
    return out


def _run_bounded(fn: Callable[[], Any], timeout_s: float, name: str) -> Tuple[bool, Any]:
    """``fn()`` on a daemon thread, waited for at most ``timeout_s``: ``(finished, result)``.
    A daemon thread never holds up the interpreter's exit, whatever ``fn`` is stuck on."""
    box: list = []

    def target() -> None:
        try:
            box.append(fn())
        except Exception:  # noqa: BLE001 - reported, never raised into shutdown
            log.exception("%s failed", name)
            box.append(None)

    t = threading.Thread(target=target, name=name, daemon=True)
    t.start()
    t.join(max(timeout_s, 0.0))
    return (not t.is_alive(), box[0] if box else None)


class FailFastExporter:
    """Wraps a span exporter: after a failed export it drops batches, without encoding
    or sending them, for a pause that doubles per failure (1 s up to 30 s), then tries
    again. A collector that is down costs a counter increment per batch instead of an
    encode plus seconds of retries per batch (and a full queue warning per span).

    ``dropped`` counts the spans dropped that way; ``abort()`` makes every later export
    a drop (the processor calls it when its shutdown bound is reached)."""

    def __init__(self, inner: Any, *, initial_pause_s: float = 1.0, max_pause_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self.dropped = 0
        self._initial = initial_pause_s
        self._max = max_pause_s
        self._clock = clock
        self._pause = 0.0
        self._resume_at = float("-inf")
        self._aborted = False
        self._closed = False
        self._lock = threading.Lock()

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        if self._aborted or self._clock() < self._resume_at:
            self.dropped += len(spans)
            return SpanExportResult.FAILURE
        try:
            result = self.inner.export(spans)
        except Exception:  # noqa: BLE001 - an exporter bug must not kill the processor thread
            log.exception("span export raised")
            result = SpanExportResult.FAILURE
        if result == SpanExportResult.SUCCESS:
            if self._pause:
                log.info("span export works again after a pause of %.0f s; %d spans dropped so far",
                         self._pause, self.dropped)
            self._pause = 0.0
            return result
        self.dropped += len(spans)
        self._pause = min(max(self._pause * 2, self._initial), self._max)
        self._resume_at = self._clock() + self._pause
        log.warning("span export failed; dropping spans for %.0f s (%d dropped so far)", self._pause, self.dropped)
        return result

    def abort(self) -> None:
        self._aborted = True
        self.shutdown()

    def shutdown(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.inner.shutdown()  # the OTLP exporters stop a retry loop in progress here

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        flush = getattr(self.inner, "force_flush", None)
        return True if flush is None else bool(flush(timeout_millis))


def _bounded_processor_class() -> type:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    class BoundedBatchSpanProcessor(BatchSpanProcessor):
        """A ``BatchSpanProcessor`` whose ``force_flush`` and ``shutdown`` return within
        ``export_timeout_millis`` whatever the collector does (the SDK's own join the
        export thread for up to 30 s, or without a bound for a flush). When the bound
        is reached the exporter is aborted: what is left in the queue is dropped."""

        def __init__(self, exporter: Any, *, export_timeout_millis: float = DEFAULT_EXPORT_TIMEOUT_MS,
                     **kwargs: Any) -> None:
            kwargs = {k: v for k, v in kwargs.items() if v is not None}
            super().__init__(exporter, export_timeout_millis=export_timeout_millis, **kwargs)
            self.exporter = exporter
            self.export_timeout_s = export_timeout_millis / 1000.0

        def force_flush(self, timeout_millis: Optional[int] = None) -> bool:
            bound = self.export_timeout_s
            if timeout_millis is not None:
                bound = min(bound, timeout_millis / 1000.0)
            finished, ok = _run_bounded(lambda: BatchSpanProcessor.force_flush(self), bound, "otel-flush")
            return bool(finished and ok)

        def shutdown(self) -> None:
            finished, _ = _run_bounded(lambda: BatchSpanProcessor.shutdown(self), self.export_timeout_s,
                                       "otel-shutdown")
            if not finished:
                abort = getattr(self.exporter, "abort", None)
                if abort is not None:
                    abort()
                log.warning("span export did not finish within %.1f s (OTEL_BSP_EXPORT_TIMEOUT); "
                            "unexported spans are dropped", self.export_timeout_s)
            dropped = getattr(self.exporter, "dropped", 0)
            if dropped:
                log.warning("%d spans were dropped while the collector was unreachable", dropped)

    BoundedBatchSpanProcessor.__module__ = __name__
    BoundedBatchSpanProcessor.__qualname__ = "BoundedBatchSpanProcessor"
    return BoundedBatchSpanProcessor


_LAZY: dict = {}


def _processor_class() -> type:
    # The class derives from the SDK's, imported on first use (importing this module
    # stays cheap for the many callers that never set tracing up).
    if "processor" not in _LAZY:
        _LAZY["processor"] = _bounded_processor_class()
    return _LAZY["processor"]


def __getattr__(name: str) -> Any:
    if name == "BoundedBatchSpanProcessor":
        return _processor_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _RateLimit(logging.Filter):
    """Lets one "Queue full" record through per ``every_s`` seconds (the SDK logs one per
    dropped span, on the thread that ended the span: the request path)."""

    def __init__(self, every_s: float = 10.0) -> None:
        super().__init__()
        self.every_s = every_s
        self._next = 0.0
        self._suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Queue full"):
            return True
        now = time.monotonic()
        if now < self._next:
            self._suppressed += 1
            return False
        if self._suppressed:
            record.msg = f"{record.msg} ({self._suppressed} more suppressed)"
        self._next, self._suppressed = now + self.every_s, 0
        return True


def _rate_limit_queue_full_warnings() -> None:
    for name in ("opentelemetry.sdk._shared_internal", "opentelemetry.sdk.trace.export"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RateLimit) for f in logger.filters):
            logger.addFilter(_RateLimit())


# --- per-call span starting -------------------------------------------------------

_MODE_NONE = 0      # no SDK provider: no spans at all
_MODE_FAST = 1      # sampler understood: decide here, SDK only for sampled spans
_MODE_GENERIC = 2   # unknown sampler or tracer: let the SDK decide every time

_TRACE_ID_LIMIT = (1 << 64) - 1
_UNSAMPLED = TraceFlags(TraceFlags.DEFAULT)


class SpanStarter:
    """Starts (or decides not to start) the span for one instrumented call.

    ``start()`` returns ``(span, token)``: ``span`` is a recording span or ``None``;
    ``token`` is a context token to detach afterwards or ``None``.
    """

    __slots__ = ("_name", "_provider_arg", "_provider", "_mode", "_tracer", "_sampled_tracer",
                 "_bound", "_follow_parent", "_new_trace_id", "_new_span_id")

    def __init__(self, name: str, tracer_provider: Any = None) -> None:
        self._name = name
        self._provider_arg = tracer_provider
        self._provider = object()  # forces resolution on first use
        self._mode = _MODE_NONE

    def _resolve(self, provider: Any) -> None:
        self._provider = provider
        self._mode = _MODE_NONE
        try:
            from opentelemetry.sdk.trace import Tracer as SdkTracer
            from opentelemetry.sdk.trace import TracerProvider as SdkProvider
            from opentelemetry.sdk.trace import sampling
        except ImportError:  # API-only install: the global provider is a no-op
            return
        if not isinstance(provider, SdkProvider):
            return
        tracer = provider.get_tracer("instrumentation")
        self._tracer = tracer
        self._mode = _MODE_GENERIC
        if not isinstance(tracer, SdkTracer) or not hasattr(tracer, "sampler"):
            return
        sampler = tracer.sampler
        follow_parent = False
        if isinstance(sampler, sampling.ParentBased):
            children = tuple(getattr(sampler, a, None) for a in (
                "_remote_parent_sampled", "_local_parent_sampled",
                "_remote_parent_not_sampled", "_local_parent_not_sampled"))
            defaults_ok = children == (sampling.ALWAYS_ON, sampling.ALWAYS_ON,
                                       sampling.ALWAYS_OFF, sampling.ALWAYS_OFF)
            if not defaults_ok:
                return
            follow_parent = True
            root = getattr(sampler, "_root", None)
        else:
            root = sampler
        if root is sampling.ALWAYS_ON:
            bound = _TRACE_ID_LIMIT + 1
        elif root is sampling.ALWAYS_OFF:
            bound = 0
        elif type(root) is sampling.TraceIdRatioBased:
            bound = root.bound
        else:
            return
        if bound > _TRACE_ID_LIMIT:
            return  # always sampled: the SDK path is the right one, nothing to save
        # A tracer that samples everything, used only once we have decided to sample.
        sampled_tracer = copy.copy(tracer)
        sampled_tracer.sampler = sampling.ALWAYS_ON
        self._sampled_tracer = sampled_tracer
        self._bound = bound
        self._follow_parent = follow_parent
        self._new_trace_id = tracer.id_generator.generate_trace_id
        self._new_span_id = tracer.id_generator.generate_span_id
        self._mode = _MODE_FAST

    def start(self) -> Tuple[Any, Any]:
        provider = self._provider_arg
        if provider is None:
            provider = _global_provider()
        if provider is not self._provider:
            self._resolve(provider)
        mode = self._mode
        if mode == _MODE_NONE:
            return None, None
        if mode == _MODE_FAST:
            parent = trace.get_current_span().get_span_context()
            if parent.is_valid:
                if self._follow_parent:
                    if not parent.trace_flags.sampled:
                        return None, None  # children of a dropped span stay dropped
                    span = self._sampled_tracer.start_span(self._name)
                    return span, otel_context.attach(trace.set_span_in_context(span))
                trace_id = parent.trace_id
            else:
                trace_id = self._new_trace_id()
            if trace_id & _TRACE_ID_LIMIT >= self._bound:
                dropped = NonRecordingSpan(SpanContext(trace_id, self._new_span_id(), False, _UNSAMPLED))
                return None, otel_context.attach(trace.set_span_in_context(dropped))
            span = self._sampled_tracer.start_span(self._name)
        else:
            span = self._tracer.start_span(self._name)
            if not span.is_recording():
                return None, otel_context.attach(trace.set_span_in_context(span))
        return span, otel_context.attach(trace.set_span_in_context(span))
