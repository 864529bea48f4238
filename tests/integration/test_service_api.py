"""The HTTP service on a real uvicorn server (a thread on a free loopback port): every
endpoint's contract, every kind of bad input answered 4xx naming the field, metrics,
traces, readiness."""

from __future__ import annotations

import json
import re
import threading
import time

import numpy as np
import pytest


from tests.support.service import require_service  # noqa: E402


httpx = require_service()

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from workloads import ExtractorConfig, MarketDataGenerator, build_extractor, parametric_var  # noqa: E402
from workloads.service import ServiceConfig, ServiceThread  # noqa: E402

MAX_BODY = 256 * 1024
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


@pytest.fixture(scope="module")
def spans():
    return InMemorySpanExporter()


@pytest.fixture(scope="module")
def service(spans):
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    registry = CollectorRegistry()
    config = ServiceConfig(max_sessions=4, max_body_bytes=MAX_BODY, max_assets=8, warmup_inferences=1)
    with ServiceThread(config, registry=registry, tracer_provider=provider) as svc:
        svc.registry = registry
        yield svc


@pytest.fixture(scope="module")
def client(service):
    with httpx.Client(base_url=service.url, timeout=30) as c:
        yield c


def window(seed: int = 1, t: int = 60) -> list[list[float]]:
    return MarketDataGenerator(seed).window(t).astype(float).tolist()


def metrics_text(client, openmetrics: bool = False) -> str:
    r = client.get("/metrics", headers={"accept": OPENMETRICS} if openmetrics else {})
    assert r.status_code == 200
    return r.text


def sample(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head = line.split(" #", 1)[0]
        metric, value = head.rsplit(" ", 1)
        if all(f'{k}="{v}"' in metric for k, v in labels.items()):
            total += float(value)
    return total


# --------------------------------------------------------------------------- probes


def test_probes_and_openapi(client):
    assert client.get("/healthz").json() == {"status": "ok", "detail": None}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready"
    doc = client.get("/openapi.json").json()
    for path in ("/v1/features", "/v1/features/batch", "/v1/env/reset", "/v1/env/{session_id}/step",
                 "/v1/env/{session_id}", "/v1/risk/var", "/v1/risk/mc-var", "/v1/risk/limits",
                 "/healthz", "/readyz", "/metrics"):
        assert path in doc["paths"], path
    # The bounds of this configuration are in the contract.
    req = doc["components"]["schemas"]["FeaturesRequest"]["properties"]["window"]
    assert (req["minItems"], req["maxItems"]) == (10, 1024)
    assert req["items"]["minItems"] == req["items"]["maxItems"] == 15


# --------------------------------------------------------------------------- features


def test_features_contract_model_then_cache(client):
    w = window(seed=11)
    first = client.post("/v1/features", json={"window": w})
    assert first.status_code == 200, first.text
    body = first.json()
    assert set(body) == {"features", "probabilities", "uncertainty", "cache_hit", "fallback_used", "source",
                         "fallback_reason", "over_budget", "nan_filled"}
    assert len(body["features"]) == 256 and len(body["probabilities"]) == 3
    assert abs(sum(body["probabilities"]) - 1) < 1e-4 and body["uncertainty"] > 0
    assert (body["source"], body["cache_hit"], body["fallback_used"], body["nan_filled"]) == ("model", False, False, 0)
    second = client.post("/v1/features", json={"window": w}).json()
    assert (second["source"], second["cache_hit"]) == ("cache", True)
    assert np.allclose(second["features"], body["features"])


def test_features_match_the_in_process_extractor(client):
    w = window(seed=12, t=30)
    served = client.post("/v1/features", json={"window": w}).json()
    local = build_extractor(ExtractorConfig(enable_caching=False), registry=CollectorRegistry())
    direct = local.extract(np.array(w, dtype=np.float32))
    assert np.allclose(served["features"], direct.features, atol=1e-6)


def test_null_is_a_missing_value_forward_filled(client):
    w = window(seed=13)
    w[5][3] = None
    w[6][3] = None
    w[0][0] = None  # leading: becomes 0
    body = client.post("/v1/features", json={"window": w}).json()
    assert body["nan_filled"] == 3 and body["source"] == "model"


def test_batch_of_windows_of_different_lengths(client):
    r = client.post("/v1/features/batch", json={"windows": [window(21, 20), window(22, 40), window(23, 20)]})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 3 and all(len(x["features"]) == 256 for x in results)


# --------------------------------------------------------------------------- environment


def test_env_reset_step_delete(client):
    r = client.post("/v1/env/reset", json={"seed": 3, "n_steps": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    sid = body["session_id"]
    assert len(body["observation"]) == 259 and body["info"]["t"] == 60 and body["idle_timeout_seconds"] == 300
    steps = []
    for action in (2, 1, 0):
        s = client.post(f"/v1/env/{sid}/step", json={"action": action})
        assert s.status_code == 200, s.text
        steps.append(s.json())
    assert [s["info"]["position"] for s in steps] == [1, 1, -1]
    assert all(len(s["observation"]) == 259 and not s["terminated"] and s["truncated"] is False for s in steps)
    assert client.delete(f"/v1/env/{sid}").status_code == 204
    gone = client.post(f"/v1/env/{sid}/step", json={"action": 1})
    assert gone.status_code == 404 and gone.json()["field"] == "session_id"
    assert client.delete(f"/v1/env/{sid}").status_code == 404


def test_env_same_seed_same_episode_and_empty_body(client):
    a = client.post("/v1/env/reset", json={"seed": 9, "n_steps": 3}).json()
    b = client.post("/v1/env/reset", json={"seed": 9, "n_steps": 3}).json()
    c = client.post("/v1/env/reset")  # no body: every field has a default
    assert c.status_code == 200, c.text
    assert a["observation"] == b["observation"] and a["session_id"] != b["session_id"]
    for s in (a, b, c.json()):
        client.delete(f"/v1/env/{s['session_id']}")


def test_env_episode_end_is_409(client):
    sid = client.post("/v1/env/reset", json={"seed": 4, "n_steps": 2}).json()["session_id"]
    assert client.post(f"/v1/env/{sid}/step", json={"action": 2}).json()["terminated"] is False
    assert client.post(f"/v1/env/{sid}/step", json={"action": 2}).json()["terminated"] is True
    after = client.post(f"/v1/env/{sid}/step", json={"action": 2})
    assert after.status_code == 409 and after.json()["error"] == "episode_terminated"
    assert after.json()["message"].startswith("session_id:")
    client.delete(f"/v1/env/{sid}")


def test_sessions_are_bounded(client, service):
    ids = [client.post("/v1/env/reset", json={"n_steps": 2}).json()["session_id"] for _ in range(4)]
    before = sample(metrics_text(client), "lbh_http_shed_total", reason="sessions")
    full = client.post("/v1/env/reset", json={"n_steps": 2})
    assert full.status_code == 503 and int(full.headers["retry-after"]) >= 1
    assert full.json()["error"] == "sessions_full" and full.json()["field"] == "session_id"
    assert sample(metrics_text(client), "lbh_http_shed_total", reason="sessions") == before + 1
    assert sample(metrics_text(client), "lbh_env_sessions") == 4
    client.delete(f"/v1/env/{ids.pop()}")
    ids.append(client.post("/v1/env/reset", json={"n_steps": 2}).json()["session_id"])
    for sid in ids:
        assert client.delete(f"/v1/env/{sid}").status_code == 204


# --------------------------------------------------------------------------- risk


def test_var_one_series_columns_and_portfolio(client):
    rng = np.random.default_rng(0)
    r = rng.normal(0, 0.01, (500, 3))
    one = client.post("/v1/risk/var", json={"returns": r[:, 0].tolist(), "include_cvar": True}).json()
    assert one["var"] > 0 and one["cvar"] >= one["var"] and one["confidence"] == 0.99
    cols = client.post("/v1/risk/var", json={"returns": r.tolist(), "confidence": 0.95}).json()
    assert isinstance(cols["var"], list) and len(cols["var"]) == 3 and cols["cvar"] is None
    port = client.post("/v1/risk/var", json={"returns": r.tolist(), "weights": [0.5, 0.3, 0.2],
                                             "horizon_days": 4}).json()
    expected = -np.quantile(r @ np.array([0.5, 0.3, 0.2]), 0.01) * 2
    assert port["var"] == pytest.approx(expected)


def test_mc_var_matches_the_analytic_normal(client):
    mean, cov, w = [0.0, 0.0], [[1e-4, 2e-5], [2e-5, 4e-4]], [0.6, 0.4]
    r = client.post("/v1/risk/mc-var", json={"mean": mean, "cov": cov, "weights": w, "seed": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["n_scenarios"] == 10_000 and body["cvar"] > body["var"]
    assert body["var"] == pytest.approx(parametric_var(mean, cov, w, 0.99), rel=0.1)
    again = client.post("/v1/risk/mc-var", json={"mean": mean, "cov": cov, "weights": w, "seed": 7}).json()
    assert again["var"] == body["var"]


def test_limits_report_every_breach(client):
    r = client.post("/v1/risk/limits", json={
        "positions": [10, -5, 1], "prices": [100, 50, 10], "asset_names": ["A", "B", "C"],
        "limits": {"max_position": [500, 1000, 1000], "max_gross_exposure": 1000, "max_var": 0.01},
        "var": 0.02,
    })
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ok"] is False and body["gross_exposure"] == 1260 and body["net_exposure"] == 760
    assert {(b["limit"], b["asset"]) for b in body["breaches"]} == {("position", "A"), ("gross_exposure", None),
                                                                     ("var", None)}
    ok = client.post("/v1/risk/limits", json={"positions": [1], "prices": [1], "limits": {}}).json()
    assert ok["ok"] is True and ok["breaches"] == []


# --------------------------------------------------------------------------- bad input

W = window(seed=5, t=12)


def _with(rows, i, j, value):
    out = [r[:] for r in rows]
    out[i][j] = value
    return out


BAD_JSON = [
    # (id, path, body, expected status, expected field)
    ("window-too-short", "/v1/features", {"window": W[:9]}, 422, "window"),
    ("window-too-long", "/v1/features", {"window": [[1.0] * 15] * 1025}, 422, "window"),
    ("row-too-short", "/v1/features", {"window": W[:3] + [W[3][:5]] + W[4:]}, 422, "window[3]"),
    ("row-too-long", "/v1/features", {"window": W[:2] + [W[2] + [1.0]] + W[3:]}, 422, "window[2]"),
    ("value-is-string", "/v1/features", {"window": _with(W, 0, 1, "1.5")}, 422, "window[0][1]"),
    ("value-is-bool", "/v1/features", {"window": _with(W, 4, 0, True)}, 422, "window[4][0]"),
    ("value-too-large", "/v1/features", {"window": _with(W, 1, 2, 1e16)}, 422, "window[1][2]"),
    ("window-not-a-list", "/v1/features", {"window": "abc"}, 422, "window"),
    ("window-missing", "/v1/features", {}, 422, "window"),
    ("unknown-field", "/v1/features", {"window": W, "extra": 1}, 422, "extra"),
    ("body-not-an-object", "/v1/features", [1, 2], 422, "body"),
    ("too-many-nulls", "/v1/features", {"window": [[None] * 15] * 12}, 422, "window"),
    ("batch-empty", "/v1/features/batch", {"windows": []}, 422, "windows"),
    ("batch-bad-row", "/v1/features/batch", {"windows": [W, W[:4] + [W[4][:3]] + W[5:]]}, 422, "windows[1][4]"),
    ("reset-n-steps-zero", "/v1/env/reset", {"n_steps": 0}, 422, "n_steps"),
    ("reset-seed-string", "/v1/env/reset", {"seed": "abc"}, 422, "seed"),
    ("reset-seed-negative", "/v1/env/reset", {"seed": -1}, 422, "seed"),
    ("reset-lookback-small", "/v1/env/reset", {"lookback": 5}, 422, "lookback"),
    ("reset-unknown", "/v1/env/reset", {"foo": 1}, 422, "foo"),
    ("var-one-return", "/v1/risk/var", {"returns": [0.1]}, 422, "returns"),
    ("var-ragged", "/v1/risk/var", {"returns": [[0.1, 0.2], [0.3], [0.1, 0.1]]}, 422, "returns[1]"),
    ("var-weights-1d", "/v1/risk/var", {"returns": [0.1, 0.2], "weights": [1.0]}, 422, "weights"),
    ("var-weights-length", "/v1/risk/var", {"returns": [[0.1, 0.2], [0.3, 0.1]], "weights": [1.0]}, 422, "weights"),
    ("var-confidence-1", "/v1/risk/var", {"returns": [0.1, 0.2], "confidence": 1.0}, 422, "confidence"),
    ("var-confidence-str", "/v1/risk/var", {"returns": [0.1, 0.2], "confidence": "0.9"}, 422, "confidence"),
    ("var-return-null", "/v1/risk/var", {"returns": [0.1, None]}, 422, "returns[1]"),
    ("mc-mean-length", "/v1/risk/mc-var", {"mean": [0], "cov": [[1, 0], [0, 1]], "weights": [1, 1]}, 422, "mean"),
    ("mc-cov-ragged", "/v1/risk/mc-var", {"mean": [0, 0], "cov": [[1, 0], [0]], "weights": [1, 1]}, 422, "cov[1]"),
    ("mc-cov-not-pd", "/v1/risk/mc-var", {"mean": [0, 0], "cov": [[1, 2], [2, 1]], "weights": [1, 1]}, 422, "cov"),
    ("mc-too-many-assets", "/v1/risk/mc-var", {"mean": [0] * 9, "cov": [[1] * 9] * 9, "weights": [1] * 9}, 422,
     "mean"),
    ("limits-missing", "/v1/risk/limits", {"positions": [1], "prices": [1]}, 422, "limits"),
    ("limits-prices-length", "/v1/risk/limits", {"positions": [1, 2], "prices": [1], "limits": {}}, 422, "prices"),
    ("limits-cap-length", "/v1/risk/limits",
     {"positions": [1, 2], "prices": [1, 1], "limits": {"max_position": [1, 2, 3]}}, 422, "limits.max_position"),
    ("limits-negative", "/v1/risk/limits",
     {"positions": [1], "prices": [1], "limits": {"max_gross_exposure": -1}}, 422, "limits.max_gross_exposure"),
    ("limits-unknown-nested", "/v1/risk/limits",
     {"positions": [1], "prices": [1], "limits": {"max_leverage": 2}}, 422, "limits.max_leverage"),
    ("step-action-3", "/v1/env/abc/step", {"action": 3}, 422, "action"),
    ("step-action-name", "/v1/env/abc/step", {"action": "buy"}, 422, "action"),
    ("step-action-bool", "/v1/env/abc/step", {"action": True}, 422, "action"),
    ("step-unknown-session", "/v1/env/abc/step", {"action": 1}, 404, "session_id"),
    ("step-bad-session-id", "/v1/env/bad%20id!/step", {"action": 1}, 422, "session_id"),
]


def _check_error(r, status: int, field: str | None) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) >= {"error", "message", "field"}
    if field is not None:
        assert body["field"] == field, body
        assert body["message"].startswith(field), body


@pytest.mark.parametrize("path, body, status, field", [c[1:] for c in BAD_JSON], ids=[c[0] for c in BAD_JSON])
def test_bad_json_input_is_4xx_naming_the_field(client, path, body, status, field):
    _check_error(client.post(path, json=body), status, field)


RAW_W = json.dumps(W)


def _raw_with(token: str, i: int = 0, j: int = 0) -> str:
    """The window as JSON text with ``token`` (verbatim) at [i][j]."""
    return '{"window": ' + json.dumps(_with(W, i, j, 12345.5)).replace("12345.5", token, 1) + "}"


BAD_RAW = [
    # (id, content, content-type, status, field)
    ("infinity-token", _raw_with("Infinity", 0, 0), "application/json", 422, "window[0][0]"),
    ("minus-infinity-token", _raw_with("-Infinity", 3, 7), "application/json", 422, "window[3][7]"),
    ("1e400", _raw_with("1e400", 1, 1), "application/json", 422, "window[1][1]"),
    ("huge-integer", _raw_with("9" * 4000, 2, 2), "application/json", 422, None),
    ("invalid-json", '{"window": [[1, 2,', "application/json", 400, "body"),
    ("empty-body", "", "application/json", 422, "body"),
    ("not-json-content-type", '{"window": ' + RAW_W + "}", "text/plain", 415, "body"),
    ("no-content-type", '{"window": ' + RAW_W + "}", None, 415, "body"),
    ("deep-nesting", "[" * 100_000 + "]" * 100_000, "application/json", 400, "body"),
]


@pytest.mark.parametrize("content, ctype, status, field", [c[1:] for c in BAD_RAW], ids=[c[0] for c in BAD_RAW])
def test_bad_raw_bodies_are_4xx(client, content, ctype, status, field):
    headers = {"content-type": ctype} if ctype else {}
    r = client.post("/v1/features", content=content.encode(), headers=headers)
    assert r.status_code == status, r.text
    if field is not None:
        _check_error(r, status, field)


def test_nan_token_tells_the_client_to_send_null(client):
    r = client.post("/v1/features", content=_raw_with("NaN", 2, 3), headers={"content-type": "application/json"})
    _check_error(r, 422, "window[2][3]")
    assert "null" in r.json()["message"]


def test_oversized_bodies_are_413(client, service):
    row = b"[" + b"1.0," * 14 + b"1.0]"
    big = b'{"window": [' + b",".join([row] * 5000) + b"]}"
    assert len(big) > MAX_BODY
    r = client.post("/v1/features", content=big, headers={"content-type": "application/json"})
    _check_error(r, 413, "body")

    def chunks():  # no Content-Length: counted while it streams
        for i in range(0, len(big), 16384):
            yield big[i : i + 16384]

    with httpx.Client(base_url=service.url, timeout=10) as fresh:
        r = fresh.post("/v1/features", content=chunks(), headers={"content-type": "application/json"})
    _check_error(r, 413, "body")


def test_bad_input_never_a_500_and_the_worker_survives(client):
    for _id, path, body, _status, _field in BAD_JSON:  # sent here too: no other test has to run first
        client.post(path, json=body)
    assert client.post("/v1/features", json={"window": window(seed=31)}).status_code == 200
    text = metrics_text(client)
    assert sample(text, "lbh_http_request_duration_seconds_count", status="500") == 0
    assert sample(text, "lbh_http_request_duration_seconds_count", status="422") >= len(BAD_JSON) - 5


def test_unknown_routes_and_methods(client):
    r = client.get("/nope/123")
    _check_error(r, 404, None)
    r = client.get("/v1/features")
    _check_error(r, 405, None)
    text = metrics_text(client)
    assert sample(text, "lbh_http_request_duration_seconds_count", route="unmatched", status="404") >= 1
    assert "/nope/123" not in text


# --------------------------------------------------------------------------- metrics and traces


def test_metrics_routes_are_templates_with_budget_buckets(client):
    # the series looked at below come from this test's own requests, whatever ran before it:
    # features (the repeats are cache hits, well under 0.1 s), Monte-Carlo VaR, an env step
    w = window(seed=61)
    for _ in range(5):
        assert client.post("/v1/features", json={"window": w}).status_code == 200
    assert client.post("/v1/risk/mc-var", json={"mean": [0.0, 0.0], "cov": [[1e-4, 0.0], [0.0, 1e-4]],
                                                "weights": [0.5, 0.5]}).status_code == 200
    sid = client.post("/v1/env/reset", json={"n_steps": 3}).json()["session_id"]
    client.post(f"/v1/env/{sid}/step", json={"action": 1})
    client.delete(f"/v1/env/{sid}")
    text = metrics_text(client)
    assert sid not in text
    assert sample(text, "lbh_http_request_duration_seconds_count", route="/v1/env/{session_id}/step",
                  method="POST", status="200") >= 1
    for le in ("0.1", "0.2", "10.0"):
        assert sample(text, "lbh_http_request_duration_seconds_bucket", route="/v1/features", status="200", le=le) >= 1
    for name in ("lbh_http_requests_in_flight", "lbh_http_shed_total", "lbh_service_ready 1.0",
                 "process_cpu_seconds_total", "process_resident_memory_bytes",
                 'lbh_operation_duration_seconds_count{operation="feature_extraction"',
                 'lbh_operation_duration_seconds_count{operation="env_step"',
                 'lbh_operation_duration_seconds_count{operation="risk_mc_var"'):
        assert name in text, name
    assert sample(text, "lbh_http_requests_in_flight") >= 1  # this scrape


def test_openmetrics_has_exemplars_only_when_asked(client):
    client.post("/v1/features", json={"window": window(seed=41)})
    om = client.get("/metrics", headers={"accept": OPENMETRICS})
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.rstrip().endswith("# EOF")
    exemplar = re.compile(r'^lbh_(http_request|operation)_duration_seconds_bucket\{.*\} \S+ # \{span_id="[0-9a-f]{16}",'
                          r'trace_id="[0-9a-f]{32}"\}', re.M)
    found = {m.group(1) for m in exemplar.finditer(om.text)}
    assert found == {"http_request", "operation"}, om.text[:2000]
    plain = client.get("/metrics")
    assert plain.headers["content-type"].startswith("text/plain") and "trace_id" not in plain.text


def test_traceparent_continues_the_trace_into_the_workload_spans(client, spans):
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    spans.clear()
    r = client.post("/v1/features", json={"window": window(seed=51)},
                    headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    assert r.status_code == 200
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        done = {s.name: s for s in spans.get_finished_spans() if format(s.context.trace_id, "032x") == trace_id}
        if {"POST /v1/features", "feature_extraction", "model_inference"} <= set(done):
            break
        time.sleep(0.01)
    server = done["POST /v1/features"]
    assert server.attributes["http.route"] == "/v1/features" and server.attributes["http.response.status_code"] == 200
    assert done["feature_extraction"].parent.span_id == server.context.span_id


# --------------------------------------------------------------------------- readiness


def test_readyz_waits_for_warm_up_and_flips_on_drain():
    gate = threading.Event()
    registry = CollectorRegistry()

    def slow_factory():
        gate.wait(30)
        return build_extractor(ExtractorConfig(), registry=registry)

    from workloads.service import create_app

    app = create_app(ServiceConfig(warmup_inferences=1), registry=registry, extractor_factory=slow_factory)
    svc = ServiceThread(app=app).start(wait_ready=False)
    try:
        with httpx.Client(base_url=svc.url, timeout=10) as c:
            assert c.get("/healthz").status_code == 200
            r = c.get("/readyz")
            assert r.status_code == 503 and r.json()["status"] == "starting"
            early = c.post("/v1/features", json={"window": W})
            assert early.status_code == 503 and early.json()["error"] == "not_ready" and "retry-after" in early.headers
            assert sample(metrics_text(c), "lbh_http_shed_total", reason="not_ready") == 1
            assert sample(metrics_text(c), "lbh_service_ready") == 0
            gate.set()
            deadline = time.monotonic() + 30
            while c.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            assert c.post("/v1/features", json={"window": W}).status_code == 200
            svc.state.begin_drain()  # what SIGTERM does first
            r = c.get("/readyz")
            assert r.status_code == 503 and r.json()["status"] == "draining"
            assert c.post("/v1/features", json={"window": W}).status_code == 200  # accepted work still served
    finally:
        gate.set()
        svc.stop()


def test_startup_failure_is_reported_by_both_probes():
    def broken():
        raise FileNotFoundError("weights.pt")

    from workloads.service import create_app

    app = create_app(ServiceConfig(), registry=CollectorRegistry(), extractor_factory=broken)
    svc = ServiceThread(app=app).start(wait_ready=False)
    try:
        with httpx.Client(base_url=svc.url, timeout=10) as c:
            deadline = time.monotonic() + 10
            while svc.state.startup_error is None:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            for probe in ("/healthz", "/readyz"):
                r = c.get(probe)
                assert r.status_code == 503 and r.json()["status"] == "failed" and "weights.pt" in r.json()["detail"]
    finally:
        svc.stop()
