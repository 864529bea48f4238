"""Spans from instrument(): names, error status, exemplars that carry the span's trace id,
parent-based sampling kept on the fast path, and setup_tracing() from OTEL_* variables."""

from __future__ import annotations

import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, StatusCode, TraceFlags
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest as om_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse

from instrumentation import TracingConfigError, instrument, serve_metrics, setup_tracing


def provider(sampler=ALWAYS_ON):
    exporter = InMemorySpanExporter()
    tp = TracerProvider(sampler=sampler)
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    return tp, exporter


def exemplars(registry, outcome="ok"):
    out = []
    for fam in om_parse(om_latest(registry).decode()):
        for s in fam.samples:
            if s.name.endswith("_bucket") and s.labels.get("outcome") == outcome and s.exemplar:
                out.append(s.exemplar)
    return out


def test_span_named_for_operation_and_exemplar_carries_its_trace_id():
    tp, exp = provider()
    reg = CollectorRegistry()
    f = instrument("feature_extraction", registry=reg, tracer_provider=tp,
                   annotate=lambda r: {"cache_hit": True, "fallback": False})(lambda: 42)
    assert f() == 42
    (span,) = exp.get_finished_spans()
    assert span.name == "feature_extraction"
    assert span.attributes["cache_hit"] is True and span.attributes["fallback"] is False
    (ex,) = exemplars(reg)
    assert ex.labels["trace_id"] == format(span.context.trace_id, "032x")
    assert ex.labels["span_id"] == format(span.context.span_id, "016x")


def test_error_span_records_exception_sets_status_and_ends():
    tp, exp = provider()
    reg = CollectorRegistry()

    @instrument("risk_var", registry=reg, tracer_provider=tp)
    def bad():
        raise ZeroDivisionError("no variance")

    with pytest.raises(ZeroDivisionError):
        bad()
    (span,) = exp.get_finished_spans()
    assert span.end_time is not None
    assert span.status.status_code is StatusCode.ERROR
    assert "ZeroDivisionError" in span.status.description
    events = [e for e in span.events if e.name == "exception"]
    assert len(events) == 1 and events[0].attributes["exception.type"] == "ZeroDivisionError"
    (ex,) = exemplars(reg, outcome="error")
    assert ex.labels["trace_id"] == format(span.context.trace_id, "032x")


def test_nested_calls_are_children_of_the_outer_span():
    tp, exp = provider()
    reg = CollectorRegistry()
    inner = instrument("feature_extraction", registry=reg, tracer_provider=tp)(lambda: 1)
    outer = instrument("env_step", registry=reg, tracer_provider=tp)(lambda: inner())
    outer()
    spans = {s.name: s for s in exp.get_finished_spans()}
    assert spans["feature_extraction"].parent.span_id == spans["env_step"].context.span_id
    assert spans["feature_extraction"].context.trace_id == spans["env_step"].context.trace_id


def test_dropped_root_drops_its_children_and_leaves_no_exemplar():
    tp, exp = provider(ParentBased(TraceIdRatioBased(0.0)))
    reg = CollectorRegistry()
    seen = []
    inner = instrument("inner", registry=reg, tracer_provider=tp)(
        lambda: seen.append(trace.get_current_span().get_span_context()))
    outer = instrument("outer", registry=reg, tracer_provider=tp)(lambda: inner())
    for _ in range(50):
        outer()
    assert exp.get_finished_spans() == ()
    assert exemplars(reg) == []
    # children saw a valid, non-sampled parent context: parent-based semantics kept
    assert all(c.is_valid and not c.trace_flags.sampled for c in seen)
    assert len({c.trace_id for c in seen}) == 50


def test_sampled_remote_parent_is_followed_even_at_ratio_zero():
    tp, exp = provider(ParentBased(TraceIdRatioBased(0.0)))
    f = instrument("op", registry=CollectorRegistry(), tracer_provider=tp)(lambda: 1)
    parent = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    with trace.use_span(NonRecordingSpan(parent)):
        f()
    (span,) = exp.get_finished_spans()
    assert span.context.trace_id == 0xABC and span.parent.span_id == 0xDEF


def test_ratio_sampler_samples_the_configured_share():
    tp, exp = provider(ParentBased(TraceIdRatioBased(0.25)))
    f = instrument("op", registry=CollectorRegistry(), tracer_provider=tp)(lambda: 1)
    n = 4000
    for _ in range(n):
        f()
    k = len(exp.get_finished_spans())
    sigma = (n * 0.25 * 0.75) ** 0.5
    assert abs(k - n * 0.25) < 5 * sigma, k


def test_global_provider_set_after_decoration_is_used():
    # decorated first (as at import time), provider resolved per call
    tp, exp = provider()
    f = instrument("late", registry=CollectorRegistry())(lambda: 1)
    f()  # whatever the global provider is now, this must not fail
    g = instrument("late2", registry=CollectorRegistry(), tracer_provider=tp)(lambda: 1)
    g()
    assert [s.name for s in exp.get_finished_spans()] == ["late2"]


def test_setup_tracing_disabled_and_bad_values():
    assert setup_tracing(environ={"OTEL_SDK_DISABLED": "true"}, set_global=False) is None
    assert setup_tracing(environ={}, set_global=False) is None  # no exporter, no endpoint
    with pytest.raises(TracingConfigError, match="OTEL_TRACES_SAMPLER"):
        setup_tracing(environ={"OTEL_TRACES_SAMPLER": "sometimes"}, set_global=False)
    with pytest.raises(TracingConfigError, match="OTEL_TRACES_SAMPLER_ARG"):
        setup_tracing(environ={"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
                      set_global=False)
    with pytest.raises(TracingConfigError, match="OTEL_EXPORTER_OTLP_PROTOCOL"):
        setup_tracing(environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1",
                               "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"}, set_global=False)


def test_setup_tracing_sampler_from_env():
    exp = InMemorySpanExporter()
    tp = setup_tracing(environ={"OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                                "OTEL_TRACES_SAMPLER_ARG": "0.5", "OTEL_SERVICE_NAME": "svc-x"},
                       exporter=exp, set_global=False)
    assert "0.5" in tp.sampler.get_description()
    assert tp.resource.attributes["service.name"] == "svc-x"
    tp.shutdown()


class _OTLPReceiver(BaseHTTPRequestHandler):
    bodies: list = []

    def do_POST(self):  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).bodies.append((self.path, self.headers.get("Content-Type"), body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.mark.slow  # an HTTP server on loopback
def test_otlp_http_export_reaches_a_protocol_level_receiver():
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    _OTLPReceiver.bodies = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _OTLPReceiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        tp = setup_tracing(environ={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{srv.server_port}",
                                    "OTEL_SERVICE_NAME": "feature-svc"}, set_global=False)
        f = instrument("feature_extraction", registry=CollectorRegistry(), tracer_provider=tp)(lambda: 1)
        for _ in range(3):
            f()
        assert tp.force_flush(10_000)
        tp.shutdown()
    finally:
        srv.shutdown()
        srv.server_close()
    assert _OTLPReceiver.bodies, "no OTLP request received"
    path, ctype, body = _OTLPReceiver.bodies[0]
    assert path == "/v1/traces" and ctype == "application/x-protobuf"
    req = ExportTraceServiceRequest.FromString(body)
    rs = req.resource_spans[0]
    attrs = {a.key: a.value.string_value for a in rs.resource.attributes}
    assert attrs["service.name"] == "feature-svc"
    names = [s.name for ss in rs.scope_spans for s in ss.spans]
    assert names.count("feature_extraction") == 3


@pytest.mark.slow  # an HTTP server on loopback
def test_metrics_server_negotiates_openmetrics_with_exemplars():
    tp, exp = provider()
    reg = CollectorRegistry()
    instrument("op", registry=reg, tracer_provider=tp)(lambda: 1)()
    with serve_metrics(registry=reg) as srv:
        req = urllib.request.Request(srv.url, headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
            om = resp.read().decode()
        with urllib.request.urlopen(srv.url, timeout=5) as resp:
            assert resp.headers["Content-Type"].startswith("text/plain")
            text = resp.read().decode()
    (span,) = exp.get_finished_spans()
    assert f'trace_id="{span.context.trace_id:032x}"' in om
    assert "trace_id" not in text  # the text format carries no exemplars
    assert om.rstrip().endswith("# EOF")


def test_metrics_server_rejects_bad_port():
    with pytest.raises(ValueError, match="port"):
        serve_metrics(port=70000, registry=CollectorRegistry())


@pytest.mark.slow  # a fresh interpreter
def test_a_global_provider_set_after_decoration_is_used():
    # in a fresh interpreter: the global provider can be set once per process
    import subprocess
    import sys

    code = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from instrumentation import instrument

f = instrument("op", registry=CollectorRegistry())(lambda: 1)
f()  # no global provider yet: no span
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
f()
print(len(exporter.get_finished_spans()))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"
