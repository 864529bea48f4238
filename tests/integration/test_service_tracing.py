"""The service traced the way `workloads serve` traces it: a *global* SDK provider (as
setup_tracing() installs). Each request gives one SERVER span (HTTPLayer's) with the
workload spans under it; FastAPI's own native telemetry, which switches itself on when a
global provider exists, stays off (it doubled the spans and cost about 1 ms CPU a request
at 100 % sampling: issue 15, item 8)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.ci import require_module as _require

_require("httpx")
_require("fastapi")
_require("uvicorn")

CODE = r"""
import json, httpx
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from workloads import MarketDataGenerator
from workloads.service import ServiceConfig, ServiceThread

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)  # global, as setup_tracing() does for `workloads serve`
window = MarketDataGenerator(3).window(30).astype(float).tolist()
with ServiceThread(ServiceConfig(warmup_inferences=1), registry=CollectorRegistry()) as svc:
    exporter.clear()  # startup spans (warm-up) are not the request's
    r = httpx.post(svc.url + "/v1/features", json={"window": window}, timeout=30)
    assert r.status_code == 200, r.text
spans = [{"name": s.name, "kind": s.kind.name, "trace": s.context.trace_id,
          "parent": s.parent.span_id if s.parent else None, "id": s.context.span_id}
         for s in exporter.get_finished_spans()]
print(json.dumps(spans))
"""


def test_a_request_gives_one_server_span_and_no_framework_spans():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    spans = json.loads(out.stdout.strip().splitlines()[-1])
    names = [s["name"] for s in spans]
    assert not [n for n in names if n.startswith("fastapi.")], names
    servers = [s for s in spans if s["kind"] == "SERVER"]
    assert len(servers) == 1, names
    (server,) = servers
    assert server["name"] == "POST /v1/features" and server["parent"] is None
    work = [s for s in spans if s["name"] == "feature_extraction"]
    assert work and all(s["trace"] == server["trace"] for s in spans), names
