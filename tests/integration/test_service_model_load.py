"""The model's load time at service start: ``/readyz`` answers it beside its budget, and
``lbh_model_load_seconds`` / ``lbh_model_load_budget_seconds`` publish it (absent until the
model loaded: no 0 s figure before it)."""

from __future__ import annotations

import threading
import time

import pytest

from tests.support.service import require_service

httpx = require_service()

from prometheus_client import CollectorRegistry  # noqa: E402

from workloads import ExtractorConfig, build_extractor  # noqa: E402
from workloads.model import MODEL_LOAD_BUDGET_SECONDS  # noqa: E402
from workloads.service import ServiceConfig, ServiceThread, create_app  # noqa: E402
from workloads.service import app as app_module  # noqa: E402

HOLD_S = 0.3  # the factory's own wait: the load time measured must include it


def _metric(text: str, name: str):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def _wait_ready(c, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        r = c.get("/readyz")
        if r.status_code == 200:
            return r
        assert time.monotonic() < deadline, r.json()
        time.sleep(0.01)


def _service(factory):
    registry = CollectorRegistry()
    app = create_app(ServiceConfig(warmup_inferences=2), registry=registry,
                     extractor_factory=None if factory is None else (lambda: factory(registry)))
    return ServiceThread(app=app).start(wait_ready=False)


def test_readyz_and_metric_report_the_load_time_beside_its_budget():
    gate = threading.Event()

    def slow(registry):
        gate.wait(30)
        time.sleep(HOLD_S)
        return build_extractor(ExtractorConfig(), registry=registry)

    svc = _service(slow)
    try:
        with httpx.Client(base_url=svc.url, timeout=10) as c:
            r = c.get("/readyz")
            assert r.status_code == 503 and r.json()["status"] == "starting"
            assert r.json()["model_load_s"] is None and r.json()["model_load_within_budget"] is None
            assert r.json()["model_load_budget_s"] == MODEL_LOAD_BUDGET_SECONDS == 5.0
            assert _metric(c.get("/metrics").text, "lbh_model_load_seconds") is None  # not loaded: no figure
            gate.set()
            body = _wait_ready(c).json()
            assert body["status"] == "ready"
            load = body["model_load_s"]
            assert HOLD_S <= load < HOLD_S + 60  # the factory's wait is inside the measured load
            assert body["model_warmup_s"] is not None and body["model_warmup_s"] >= 0
            assert body["model_load_within_budget"] is (load < MODEL_LOAD_BUDGET_SECONDS)
            text = c.get("/metrics").text
            assert _metric(text, "lbh_model_load_seconds") == pytest.approx(load, abs=1e-5)
            assert _metric(text, "lbh_model_load_budget_seconds") == MODEL_LOAD_BUDGET_SECONDS
            assert _metric(text, "lbh_model_warmup_seconds") == pytest.approx(body["model_warmup_s"], abs=1e-5)
            svc.state.begin_drain()
            r = c.get("/readyz")  # still says how long the load took
            assert r.status_code == 503 and r.json()["status"] == "draining" and r.json()["model_load_s"] == load
            doc = c.get("/openapi.json").json()
            assert "model_load_s" in doc["components"]["schemas"]["ReadyResponse"]["properties"]
    finally:
        gate.set()
        svc.stop()


def test_a_load_over_budget_says_so(monkeypatch):
    monkeypatch.setattr(app_module, "MODEL_LOAD_BUDGET_SECONDS", 0.1)

    def slow(registry):
        time.sleep(0.25)
        return build_extractor(ExtractorConfig(), registry=registry)

    svc = _service(slow)
    try:
        with httpx.Client(base_url=svc.url, timeout=10) as c:
            body = _wait_ready(c).json()
            assert body["model_load_budget_s"] == 0.1
            assert body["model_load_s"] >= 0.25 and body["model_load_within_budget"] is False
    finally:
        svc.stop()


def test_the_default_service_measures_its_real_model_load():
    svc = _service(None)  # build_extractor from the config: the real load
    try:
        with httpx.Client(base_url=svc.url, timeout=10) as c:
            body = _wait_ready(c).json()
            assert body["model_load_s"] > 0
            assert _metric(c.get("/metrics").text, "lbh_model_load_seconds") == pytest.approx(body["model_load_s"],
                                                                                              abs=1e-5)
    finally:
        svc.stop()
