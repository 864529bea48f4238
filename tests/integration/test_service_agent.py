"""POST /v1/agent/act on the real service (uvicorn in a thread): 200 with the policy's
action for a window and a position state, 422 naming the field for bad input, and the
``agent_action`` operation in the service's /metrics."""

from __future__ import annotations

import pytest

from tests.support.service import require_service

httpx = require_service()

from prometheus_client import CollectorRegistry  # noqa: E402

from workloads import MarketDataGenerator  # noqa: E402
from workloads.service import ServiceConfig, ServiceThread  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with ServiceThread(ServiceConfig(warmup_inferences=1), registry=CollectorRegistry()) as svc, \
            httpx.Client(base_url=svc.url, timeout=30) as c:
        yield c


def window(seed: int = 1, t: int = 60) -> list[list[float]]:
    return MarketDataGenerator(seed).window(t).astype(float).tolist()


def test_act_answers_the_policys_action_deterministically(client):
    assert "/v1/agent/act" in client.get("/openapi.json").json()["paths"]
    r = client.post("/v1/agent/act", json={"window": window(3), "position": 1, "pnl": 0.01})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["action"] in (0, 1, 2) and body["action_name"] == ("sell", "hold", "buy")[body["action"]]
    assert len(body["probabilities"]) == 3 and abs(sum(body["probabilities"]) - 1) < 1e-5
    assert body["source"] == "model" and body["fallback_used"] is False
    again = client.post("/v1/agent/act", json={"window": window(3), "position": 1, "pnl": 0.01}).json()
    assert again["probabilities"] == body["probabilities"] and again["cache_hit"] is True
    flat = client.post("/v1/agent/act", json={"window": window(3)})  # position and pnl default to 0
    assert flat.status_code == 200 and flat.json()["probabilities"] != body["probabilities"]
    metrics = client.get("/metrics").text
    assert 'lbh_operation_duration_seconds_count{operation="agent_action",outcome="ok"} 3.0' in metrics


@pytest.mark.parametrize("payload, field", [
    ({"window": window(1)[:5]}, "window"),                      # too few rows
    ({"window": window(1), "position": 2}, "position"),         # not -1, 0, +1
    ({"window": window(1), "pnl": "0.1"}, "pnl"),               # strict: a string is not a number
    ({"window": window(1), "action": 1}, "action"),             # unknown field
    ({"position": 0}, "window"),                                # missing
    ({"window": [[None] * 15] * 60}, "window"),                 # every value missing: the input policy
])
def test_bad_input_is_422_naming_the_field(client, payload, field):
    r = client.post("/v1/agent/act", json=payload)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "invalid_input", body
    assert body["field"].startswith(field), body
