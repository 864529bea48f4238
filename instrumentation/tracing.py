"""OpenTelemetry: provider setup from ``OTEL_*`` variables, and a cheap span starter.

``setup_tracing`` is for applications (the CLI, the service); library code never calls
it. ``SpanStarter`` is what ``instrument`` uses per call: it makes the sampling decision
itself for the samplers it understands, so a call whose span will be dropped costs a few
hundred nanoseconds instead of a full SDK ``start_span`` (several microseconds), while
keeping parent-based semantics: a dropped root still puts a non-sampled span context in
place, so nested calls are dropped too, exactly as the SDK would do.
"""

from __future__ import annotations

import copy
import logging
import os
from typing import Any, Mapping, Optional, Tuple

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

__all__ = ["setup_tracing", "SpanStarter", "TracingConfigError"]

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
    ``BatchSpanProcessor`` with a bounded queue, so a slow collector drops spans instead
    of blocking a call. With no exporter configured and no endpoint set, returns ``None``:
    spans nobody receives would only cost time (and give exemplars pointing nowhere).
    ``exporter`` overrides the exporter (tests pass an in-memory one).
    """
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    sampler = _sampler_from_env(env)

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
            exporter = _otlp_exporter(protocol, env)

    attrs = {}
    if not env.get("OTEL_SERVICE_NAME") and "service.name=" not in env.get("OTEL_RESOURCE_ATTRIBUTES", ""):
        attrs["service.name"] = service_name
    resource = Resource.create(attrs)
    if environ is not None and env.get("OTEL_SERVICE_NAME"):
        resource = resource.merge(Resource({"service.name": env["OTEL_SERVICE_NAME"]}))
    provider = TracerProvider(sampler=sampler, resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    if set_global:
        trace.set_tracer_provider(provider)
    return provider


def _otlp_exporter(protocol: str, env: Mapping[str, str]):
    traces_ep = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    base_ep = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if protocol == "grpc":
        try:  # grpcio is an extra: OTLP over HTTP needs none of it
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise TracingConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs the gRPC exporter ({exc}): "
                             "pip install 'latency-budget-harness[otlp-grpc]', or use http/protobuf") from None

        return OTLPSpanExporter(endpoint=traces_ep or base_ep or "localhost:4317")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    if traces_ep:
        url = traces_ep
    else:
        url = (base_ep or "http://localhost:4318").rstrip("/") + "/v1/traces"
    return OTLPSpanExporter(endpoint=url)


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
