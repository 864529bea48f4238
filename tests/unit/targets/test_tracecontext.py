"""Trace context: the sampler read from OTEL_*, well-formed headers, the ratio rule, spans
only for sampled requests, and a provider built here is never the global one."""

from __future__ import annotations

import random

import pytest

from harness.targets.tracecontext import (
    DEFAULT_RATIO,
    Sampler,
    TraceContext,
    TraceSettingsError,
    build_trace_context,
    parse_traceparent,
    sampler_from_env,
)


@pytest.mark.parametrize("env, name, ratio", [
    ({}, "parentbased_traceidratio", DEFAULT_RATIO),
    ({"OTEL_TRACES_SAMPLER": "always_on"}, "always_on", 1.0),
    ({"OTEL_TRACES_SAMPLER": "always_off"}, "always_off", 0.0),
    ({"OTEL_TRACES_SAMPLER": "parentbased_always_on"}, "parentbased_always_on", 1.0),
    ({"OTEL_TRACES_SAMPLER": "parentbased_always_off"}, "parentbased_always_off", 0.0),
    ({"OTEL_TRACES_SAMPLER": "traceidratio"}, "traceidratio", 1.0),  # the spec's default arg
    ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"}, "traceidratio", 0.25),
    ({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"},
     "parentbased_traceidratio", 0.5),
])
def test_sampler_from_env(env, name, ratio):
    s = sampler_from_env(env)
    assert (s.name, s.ratio) == (name, ratio)


@pytest.mark.parametrize("env, var", [
    ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER"),
    ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"}, "OTEL_TRACES_SAMPLER_ARG"),
    ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"}, "OTEL_TRACES_SAMPLER_ARG"),
    ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
])
def test_bad_settings_name_the_variable(env, var):
    with pytest.raises(TraceSettingsError, match=var):
        build_trace_context(env)


def test_headers_are_well_formed_and_sampled_by_the_trace_id_rule():
    tc = TraceContext(Sampler("traceidratio", 0.3), rng=random.Random(7))
    n, sampled = 20_000, 0
    ids = set()
    for _ in range(n):
        line, trace_id, span = tc.next()
        assert line.startswith(b"traceparent: ") and line.endswith(b"\r\n")
        parsed = parse_traceparent(line[len(b"traceparent: "):-2].decode())
        assert parsed is not None, line
        tid, _sid, flag = parsed
        assert flag == (trace_id is not None) and span is None
        assert flag == (int(tid[16:], 16) < 0.3 * 2**64)  # OpenTelemetry's TraceIdRatioBased rule
        if flag:
            assert trace_id == tid
        sampled += flag
        ids.add(tid)
    assert len(ids) == n
    assert abs(sampled / n - 0.3) < 0.02


@pytest.mark.parametrize("ratio, expected", [(0.0, 0), (1.0, 500)])
def test_always_on_and_off(ratio, expected):
    tc = TraceContext(Sampler("x", ratio))
    assert sum(tc.next()[1] is not None for _ in range(500)) == expected


def test_parse_traceparent_rejects_malformed_headers():
    good = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    assert parse_traceparent(good) == ("a" * 32, "b" * 16, True)
    for bad in ("", "01-" + good[3:], good[:-1], good.replace("a", "A", 1), "00-" + "0" * 32 + "-" + "b" * 16 + "-01"):
        assert parse_traceparent(bad) is None, bad


def test_sampled_requests_get_client_spans_from_the_given_provider_never_the_global():
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from harness.targets.tracecontext import end_span

    before = trace.get_tracer_provider()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tc = build_trace_context({"OTEL_TRACES_SAMPLER": "always_on"}, provider)
    line, trace_id, span = tc.next()
    end_span(span, method="GET", url="http://x/y", status=503, error="HTTP 503", label="GET /y")
    (s,) = exporter.get_finished_spans()
    assert s.kind.name == "CLIENT" and "%032x" % s.context.trace_id == trace_id
    assert line == b"traceparent: 00-%032x-%016x-%02x\r\n" % (s.context.trace_id, s.context.span_id,
                                                          s.context.trace_flags)
    assert s.context.trace_flags & 1
    assert s.attributes["http.response.status_code"] == 503 and s.status.status_code.name == "ERROR"
    assert trace.get_tracer_provider() is before


def test_no_exporter_asked_for_means_no_provider_and_no_spans():
    tc = build_trace_context({"OTEL_TRACES_SAMPLER": "always_on"})
    assert tc is not None and not tc.exporting
    _line, trace_id, span = tc.next()
    assert trace_id is not None and span is None
    assert build_trace_context({}, enabled=False) is None
    tc = build_trace_context({"OTEL_TRACES_SAMPLER": "always_on", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    try:
        assert tc.exporting
    finally:
        tc.close()
