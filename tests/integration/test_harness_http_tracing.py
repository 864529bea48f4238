"""Trace context on the harness's HTTP requests: every request carries a well-formed W3C
``traceparent``, sampled per ``OTEL_TRACES_SAMPLER*``; sampled ones export a client span per
``OTEL_*`` (to a protocol-level OTLP receiver here) and give the latency's exemplar; against
the reference service, the service's server span is in the harness's trace, under its span."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import CollectorRegistry

from harness.config.scenario import load_scenario
from harness.run.runner import Run, RunOptions
from harness.targets.tracecontext import parse_traceparent
from tests.support.http_recording_server import RecordingServer

OK = (200, {}, b'{"ok":true}')


def run(overrides):
    sc = load_scenario(None, {"thresholds": {}, "failures": {"threshold": "off"}, **overrides}, env={})
    r = Run(sc, RunOptions(metrics_port=None, progress="off", install_signal_handlers=False),
            registry=CollectorRegistry())
    return r, r.execute()


def _clear_otel(monkeypatch):
    for k in ("OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
              "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED", "OTEL_SERVICE_NAME"):
        monkeypatch.delenv(k, raising=False)


def test_every_request_carries_a_traceparent_sampled_per_the_ratio(monkeypatch):
    _clear_otel(monkeypatch)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    with RecordingServer({"/t": OK}) as srv:
        handle, r = run({"target": srv.url + "/t", "duration": "2s", "profile.rate": 300})
    assert r["summary"]["targets"]["GET /t"]["outcomes"]["ok"] == 600 == len(srv.seen)
    parsed = [parse_traceparent(s.headers.get("traceparent", "")) for s in srv.seen]
    assert all(parsed), [s.headers.get("traceparent") for s in srv.seen if not parse_traceparent(
        s.headers.get("traceparent", ""))][:3]
    assert len({p[0] for p in parsed}) == 600  # one trace per request
    sampled = [p for p in parsed if p[2]]
    assert all((int(p[0][16:], 16) < 0.25 * 2**64) == p[2] for p in parsed)  # the trace-id ratio rule
    assert 0.18 < len(sampled) / 600 < 0.32
    ex = handle.recorder.exemplar("GET /t")
    assert ex is not None and ex[0] in {p[0] for p in sampled} and 0 < ex[1] < 5


@pytest.mark.parametrize("sampler, share", [("always_off", 0.0), ("parentbased_always_on", 1.0)])
def test_always_on_and_off(monkeypatch, sampler, share):
    _clear_otel(monkeypatch)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", sampler)
    with RecordingServer({"/t": OK}) as srv:
        handle, _r = run({"target": srv.url + "/t", "duration": "1s", "profile.rate": 50})
    parsed = [parse_traceparent(s.headers["traceparent"]) for s in srv.seen]
    assert len(parsed) == 50 and sum(p[2] for p in parsed) == share * 50
    assert (handle.recorder.exemplar("GET /t") is None) == (share == 0)


def test_traceparent_false_sends_none(monkeypatch):
    _clear_otel(monkeypatch)
    with RecordingServer({"/t": OK}) as srv:
        run({"target": srv.url + "/t", "duration": "1s", "profile.rate": 10, "http": {"traceparent": False}})
    assert len(srv.seen) == 10 and not any("traceparent" in s.headers for s in srv.seen)


class _OTLPReceiver(BaseHTTPRequestHandler):
    bodies: list = []

    def do_POST(self):  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).bodies.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_sampled_requests_export_client_spans_per_otel_env(monkeypatch):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    _clear_otel(monkeypatch)
    _OTLPReceiver.bodies = []
    otlp = ThreadingHTTPServer(("127.0.0.1", 0), _OTLPReceiver)
    threading.Thread(target=otlp.serve_forever, daemon=True).start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{otlp.server_port}")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "lbh-test-client")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    try:
        with RecordingServer({"/t": OK, "/e": (503, {}, b"busy")}) as srv:
            run({"target": srv.url, "duration": "1s", "profile.rate": 20,
                 "http": {"endpoints": [{"url": "/t"}, {"url": "/e"}]}})
    finally:
        otlp.shutdown()
        otlp.server_close()
    sent = {parse_traceparent(s.headers["traceparent"])[:2] for s in srv.seen}
    spans = []
    for path, body in _OTLPReceiver.bodies:
        assert path == "/v1/traces"
        for rs in ExportTraceServiceRequest.FromString(body).resource_spans:
            attrs = {a.key: a.value.string_value for a in rs.resource.attributes}
            assert attrs["service.name"] == "lbh-test-client"
            spans += [s for ss in rs.scope_spans for s in ss.spans]
    assert len(spans) == 20
    assert {(s.trace_id.hex(), s.span_id.hex()) for s in spans} == sent  # the header is the span
    assert all(s.kind == s.SPAN_KIND_CLIENT for s in spans)
    errors = [s for s in spans if s.name == "GET /e"]
    assert len(errors) == 10 and all(s.status.code == s.status.STATUS_CODE_ERROR for s in errors)


SERVICE = r"""
import json
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from workloads.service import ServiceConfig, ServiceThread
from harness.config.scenario import load_scenario
from harness.run.runner import Run, RunOptions

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)  # the service's, as `workloads serve` sets it up
with ServiceThread(ServiceConfig(warmup_inferences=1), registry=CollectorRegistry()) as svc:
    exporter.clear()
    sc = load_scenario(None, {"target": svc.url + "/v1/features", "payload": "feature_window_hot",
                              "duration": "1s", "profile.rate": 10, "thresholds": {},
                              "failures": {"threshold": "off"}}, env={})
    run = Run(sc, RunOptions(metrics_port=None, progress="off", install_signal_handlers=False),
              registry=CollectorRegistry())
    result = run.execute()
    exemplar = run.recorder.exemplar("POST /v1/features")
servers = [{"trace": "%032x" % s.context.trace_id, "parent": "%016x" % s.parent.span_id if s.parent else None}
           for s in exporter.get_finished_spans() if s.kind.name == "SERVER"]
print(json.dumps({"ok": result["summary"]["targets"]["POST /v1/features"]["outcomes"]["ok"],
                  "servers": servers, "exemplar": exemplar}))
"""


def test_the_services_server_span_is_in_the_harness_trace():
    from tests.support.ci import require_module

    require_module("fastapi")
    require_module("uvicorn")
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("OTEL_")}
    env["OTEL_TRACES_SAMPLER"] = "always_on"  # the harness samples every request: each is traced
    out = subprocess.run([sys.executable, "-c", SERVICE], capture_output=True, text=True, timeout=240, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    data = json.loads(out.stdout.strip().splitlines()[-1])
    assert data["ok"] == 10
    servers = data["servers"]
    assert len(servers) == 10
    # the server span continues the harness's trace, under the span id the header named
    assert all(s["parent"] is not None for s in servers)
    assert data["exemplar"] is not None and data["exemplar"][0] in {s["trace"] for s in servers}
