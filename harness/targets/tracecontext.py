"""W3C trace context for the harness's HTTP requests, and client spans for the sampled ones.

Why: a slow point on the client side should lead to the server's trace. Every request
carries ``traceparent: 00-<trace id>-<span id>-<flags>``; the *sampled* flag follows the
standard ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``. A sampled request also gets a
CLIENT span (exported per ``OTEL_*`` through a ``BatchSpanProcessor``, off the event loop)
and its trace id becomes the latency observation's exemplar.

Samplers (the harness's requests are roots: ``parentbased_X`` behaves as ``X``):
``always_on``, ``always_off``, ``traceidratio`` (arg: ratio, default 1.0),
``parentbased_always_on``, ``parentbased_always_off``, ``parentbased_traceidratio``.
**Default when ``OTEL_TRACES_SAMPLER`` is unset: ``parentbased_traceidratio`` at 0.01** (1 %),
not the SDK's ``parentbased_always_on``: a load test sampling every request would load the
service's tracing pipeline and measure that instead (set ``OTEL_TRACES_SAMPLER=always_on``
to trace all). The ratio decision is OpenTelemetry's (``TraceIdRatioBased``): the trace id's
low 64 bits below ``ratio * 2**64``, so a downstream ratio sampler agrees.

Export: spans leave only when asked for: ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console`` or
``none``) or, when that is unset, an ``OTEL_EXPORTER_OTLP_ENDPOINT`` /
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (OTLP over HTTP/protobuf; the exporter reads its own
``OTEL_EXPORTER_OTLP_*`` settings; ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``
name the resource, default service ``lbh-harness``). Without an exporter, sampled requests
still carry the sampled flag and give exemplars. ``OTEL_SDK_DISABLED=true``: no spans.
A tracer provider handed in by the caller (``TargetContext.tracer_provider``) is used as is
(never made global); one built here is shut down (flushed) when the target closes.

Cost: an unsampled request pays a slice of a prebuilt buffer of header lines (made 4,096 at a
time with numpy: random bytes, hex digits, the sampling decision) and one splice (the request head
is prebuilt; the header line is spliced in), see ``benchmarks/http_tracing.py``.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Tuple

import numpy as np

__all__ = ["Sampler", "TraceContext", "TraceSettingsError", "sampler_from_env", "build_trace_context", "end_span",
           "parse_traceparent", "DEFAULT_SAMPLER", "DEFAULT_RATIO"]

DEFAULT_SAMPLER = "parentbased_traceidratio"
DEFAULT_RATIO = 0.01
_SAMPLERS = ("always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off",
             "parentbased_traceidratio")
_TEMPLATE = np.frombuffer(b"traceparent: 00-" + b"0" * 32 + b"-" + b"0" * 16 + b"-00\r\n", dtype=np.uint8)
_LINE_LEN = int(_TEMPLATE.size)  # 70
_TID, _SID, _FLAG = 16, 49, 67   # offsets of the trace id, the span id and the flags' last digit
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


class TraceSettingsError(ValueError):
    """An ``OTEL_*`` setting the harness cannot use; the message names the variable."""


@dataclass(frozen=True)
class Sampler:
    """A head sampler for root requests: ``ratio`` 1.0 samples all, 0.0 none."""

    name: str
    ratio: float

    @property
    def bound(self) -> int:
        """Trace ids whose low 64 bits are below this are sampled (OpenTelemetry's rule)."""
        return min(int(round(self.ratio * (1 << 64))), 1 << 64)

    def describe(self) -> str:
        return f"{self.name} ({self.ratio:g})" if "ratio" in self.name else self.name


def sampler_from_env(env: Mapping[str, str]) -> Sampler:
    """The sampler ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` ask for (see the module doc)."""
    raw = env.get("OTEL_TRACES_SAMPLER")
    name = (raw or DEFAULT_SAMPLER).strip().lower()
    if name not in _SAMPLERS:
        raise TraceSettingsError(f"OTEL_TRACES_SAMPLER: expected one of {', '.join(_SAMPLERS)}, got {raw!r}")
    if name.endswith("always_on"):
        return Sampler(name, 1.0)
    if name.endswith("always_off"):
        return Sampler(name, 0.0)
    arg = env.get("OTEL_TRACES_SAMPLER_ARG")
    if arg is None or not arg.strip():
        ratio = DEFAULT_RATIO if raw is None else 1.0  # the spec's default arg is 1.0
    else:
        try:
            ratio = float(arg)
        except ValueError:
            raise TraceSettingsError(f"OTEL_TRACES_SAMPLER_ARG: expected a ratio in [0, 1], got {arg!r}") from None
        if not 0.0 <= ratio <= 1.0:
            raise TraceSettingsError(f"OTEL_TRACES_SAMPLER_ARG: expected a ratio in [0, 1], got {arg!r}")
    return Sampler(name, ratio)


def parse_traceparent(value: str) -> Optional[Tuple[str, str, bool]]:
    """``(trace id, parent span id, sampled)`` of a well-formed version-00 header, else None."""
    parts = value.strip().split("-")
    if len(parts) != 4 or parts[0] != "00":
        return None
    _v, trace_id, span_id, flags = parts
    hexdigits = set("0123456789abcdef")
    if (len(trace_id) != 32 or len(span_id) != 16 or len(flags) != 2
            or not set(trace_id + span_id + flags) <= hexdigits
            or trace_id == "0" * 32 or span_id == "0" * 16):
        return None
    return trace_id, span_id, bool(int(flags, 16) & 1)


def _export_wanted(env: Mapping[str, str]) -> Optional[str]:
    exporter = (env.get("OTEL_TRACES_EXPORTER") or "").strip().lower()
    if exporter:
        first = exporter.split(",")[0].strip()
        if first not in ("otlp", "console", "none"):
            raise TraceSettingsError(f"OTEL_TRACES_EXPORTER: expected otlp, console or none, got {exporter!r}")
        return None if first == "none" else first
    if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return "otlp"
    return None


def _provider_from_env(env: Mapping[str, str]) -> Any:
    """An SDK tracer provider exporting per ``OTEL_*`` (not made global), or None when no
    exporter is asked for."""
    if (env.get("OTEL_SDK_DISABLED") or "").strip().lower() == "true":
        return None
    kind = _export_wanted(env)
    if kind is None:
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    if kind == "otlp":
        protocol = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                    or "http/protobuf").strip().lower()
        if protocol != "http/protobuf":
            raise TraceSettingsError(f"OTEL_EXPORTER_OTLP_PROTOCOL: the harness exports OTLP over http/protobuf, "
                                     f"got {protocol!r}")
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        # read from ``env`` (not only os.environ, which the exporter would read by itself)
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or None
        if endpoint is None and env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            endpoint = env["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + "/v1/traces"
        raw_headers = env.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or env.get("OTEL_EXPORTER_OTLP_HEADERS")
        headers = None
        if raw_headers:
            headers = {}
            for item in raw_headers.split(","):
                k, sep, v = item.partition("=")
                if not sep or not k.strip():
                    raise TraceSettingsError(f"OTEL_EXPORTER_OTLP_HEADERS: expected key=value,key2=value2, "
                                             f"got {item!r}")
                headers[k.strip()] = v.strip()
        exporter: Any = OTLPSpanExporter(endpoint=endpoint, headers=headers)
    else:
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter
        exporter = ConsoleSpanExporter()
    attrs: dict = {}
    for item in (env.get("OTEL_RESOURCE_ATTRIBUTES") or "").split(","):
        k, sep, v = item.partition("=")
        if sep and k.strip():
            attrs[k.strip()] = v.strip()
    attrs["service.name"] = env.get("OTEL_SERVICE_NAME") or attrs.get("service.name") or "lbh-harness"
    # the head decision is ours (made before the span exists): the provider records what it gets
    provider = TracerProvider(resource=Resource.create(attrs), sampler=ALWAYS_ON)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


class TraceContext:
    """Makes each request's ``traceparent`` header line and, for sampled ones, its span.

    ``next()`` returns ``(header line bytes, trace id hex or None, span or None)``: the trace
    id only for a sampled request (it becomes the exemplar)."""

    def __init__(self, sampler: Sampler, tracer_provider: Any = None, *, owns_provider: bool = False,
                 span_name: str = "HTTP", rng: Optional[random.Random] = None, batch: int = 4096) -> None:
        self.sampler = sampler
        self.provider = tracer_provider
        self._owns = owns_provider
        self._tracer = tracer_provider.get_tracer("lbh-harness") if tracer_provider is not None else None
        self._bound = sampler.bound
        self._randbytes = (rng or random.Random()).randbytes
        self.span_name = span_name
        self._n = max(1, int(batch))
        self._i = self._n
        self._buf = b""
        self._smp: bytes = b""

    @property
    def exporting(self) -> bool:
        return self._tracer is not None

    def _refill(self) -> None:
        """The next ``batch`` header lines and sampling decisions, made with numpy at once:
        per request only a slice of a prebuilt buffer remains (~0.1 µs, not ~0.5 µs for an
        int's hex formatting)."""
        n = self._n
        raw = np.frombuffer(self._randbytes(24 * n), dtype=np.uint8).reshape(n, 24).copy()
        raw[(raw[:, :16] == 0).all(axis=1), 15] = 1  # all-zero ids are invalid (W3C); 2**-128 odds
        raw[(raw[:, 16:] == 0).all(axis=1), 23] = 1
        lines = np.empty((n, _LINE_LEN), dtype=np.uint8)
        lines[:] = _TEMPLATE
        hexd = np.empty((n, 48), dtype=np.uint8)
        hexd[:, 0::2] = _HEX[raw >> 4]
        hexd[:, 1::2] = _HEX[raw & 15]
        lines[:, _TID:_TID + 32] = hexd[:, :32]
        lines[:, _SID:_SID + 16] = hexd[:, 32:]
        low64 = raw[:, 8:16].copy().view(">u8").ravel()  # the trace id's low 64 bits
        bound = self._bound
        sampled = np.ones(n, dtype=bool) if bound >= 1 << 64 else low64 < np.uint64(bound)
        lines[sampled, _FLAG] = ord("1")
        self._buf = lines.tobytes()
        self._smp = sampled.astype(np.uint8).tobytes()
        self._i = 0

    def next(self, name: Optional[str] = None) -> Tuple[bytes, Optional[str], Any]:
        """One request's header line (``traceparent: …\\r\\n``), sampled trace id, span
        (named ``name``: the endpoint's label). One thread only (the HTTP target's loop)."""
        i = self._i
        if i >= self._n:
            self._refill()
            i = 0
        self._i = i + 1
        o = i * _LINE_LEN
        line = self._buf[o:o + _LINE_LEN]
        if not self._smp[i]:
            return line, None, None
        return self._sampled(line, name)

    def _sampled(self, line: bytes, name: Optional[str]) -> Tuple[bytes, Optional[str], Any]:
        if self._tracer is None:
            return line, line[_TID:_TID + 32].decode("ascii"), None
        from opentelemetry.trace import SpanKind
        span = self._tracer.start_span(name or self.span_name, kind=SpanKind.CLIENT)
        ctx = span.get_span_context()
        sampled = bool(ctx.trace_flags & 1)
        line = b"traceparent: 00-%032x-%016x-%02x\r\n" % (ctx.trace_id, ctx.span_id, int(ctx.trace_flags) & 0xFF)
        return line, ("%032x" % ctx.trace_id) if sampled else None, span

    def close(self) -> None:
        """Flush and shut down a provider built here (spans still queued are exported)."""
        if self._owns and self.provider is not None:
            try:
                self.provider.shutdown()
            except Exception:  # an unreachable collector must not fail the run's teardown
                pass


def end_span(span: Any, *, method: str, url: str, status: Optional[int], error: Optional[str],
             label: str) -> None:
    """End a client span with the request's HTTP attributes and outcome."""
    try:
        from opentelemetry.trace import Status, StatusCode
        span.set_attribute("http.request.method", method)
        span.set_attribute("url.full", url)
        span.set_attribute("lbh.target", label)
        if status is not None:
            span.set_attribute("http.response.status_code", status)
        if error is not None:
            span.set_attribute("error.type", error)
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()
    except Exception:  # a broken exporter or provider never fails a request
        pass


def build_trace_context(env: Optional[Mapping[str, str]] = None, tracer_provider: Any = None,
                        *, enabled: bool = True) -> Optional[TraceContext]:
    """The run's trace context from ``env`` (default ``os.environ``); None when turned off
    (``http.traceparent: false``)."""
    if not enabled:
        return None
    env = os.environ if env is None else env
    sampler = sampler_from_env(env)
    if (env.get("OTEL_SDK_DISABLED") or "").strip().lower() == "true":
        return TraceContext(sampler, None)
    if tracer_provider is not None:
        return TraceContext(sampler, tracer_provider)
    provider = _provider_from_env(env) if sampler.ratio > 0 else None
    return TraceContext(sampler, provider, owns_provider=provider is not None)

