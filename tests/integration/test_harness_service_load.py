"""The harness against the real reference service over HTTP: the budget holds at a modest
rate, and an overloaded service sheds with 503 that the harness counts, not hides."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from harness.run.runner import Run, RunOptions
from harness.config.scenario import load_scenario

from workloads.service.config import ServiceConfig  # noqa: E402
from workloads.service.server import ServiceThread  # noqa: E402


def run(url, **overrides):
    # only the error rate is judged here: latency on a shared 2-core test machine is noise
    sc = load_scenario(None, {"target": url, "payload": "feature_window",
                              "thresholds": {"error_rate": ["rate<0.01"]}, **overrides}, env={})
    return Run(sc, RunOptions(metrics_port=None, progress="off", install_signal_handlers=False),
               registry=CollectorRegistry()).execute()


def test_features_endpoint_serves_every_request_at_20_rps():
    with ServiceThread(ServiceConfig(), registry=CollectorRegistry()) as svc:
        r = run(svc.url + "/v1/features", duration="3s", **{"profile.rate": 20})
    t = r["summary"]["targets"]["POST /v1/features"]
    assert t["outcomes"]["ok"] == 60, t
    assert r["verdict"]["thresholds_passed"] is True
    assert t["cache_hit_rate"] is not None  # the service's result flags reach the recorder


def test_overloaded_service_sheds_and_the_harness_records_it(monkeypatch):
    monkeypatch.setenv("LBH_FAULT_EXTRA_LATENCY_MS", "200")
    monkeypatch.setenv("LBH_EXTRACTOR_ENABLE_FALLBACK", "false")  # no breaker to route around the slow model
    cfg = ServiceConfig.from_env().replace(max_concurrency=1)
    with ServiceThread(cfg, registry=CollectorRegistry()) as svc:
        r = run(svc.url + "/v1/features", duration="2s", **{"profile.rate": 20})
    t = r["summary"]["targets"]["POST /v1/features"]
    # one slot, 200 ms per call, 20 calls/s: about four in five are shed
    assert t["errors"].get("HTTP 503", 0) >= 20, t["errors"]
    assert t["outcomes"]["ok"] >= 1
    assert r["verdict"]["thresholds_passed"] is False
