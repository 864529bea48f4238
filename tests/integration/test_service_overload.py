"""Overload is handled the documented way: with every slot busy the service answers 503 +
Retry-After at once and counts it; a request past its timeout gets 504 while its
computation keeps the slot; probes keep answering."""

from __future__ import annotations

import statistics
import threading
import time

import pytest

from tests.support.service import require_service, sample, slow_env

httpx = require_service()

from prometheus_client import CollectorRegistry  # noqa: E402

from workloads import ExtractorConfig, FaultConfig, MarketDataGenerator  # noqa: E402
from workloads.service import ServiceConfig, ServiceProcess, ServiceThread  # noqa: E402

WINDOW = MarketDataGenerator(3).window(30).astype(float).tolist()
# Slow calls are not "over budget" here, so the circuit breaker does not route them to the
# (fast) fallback: every admitted request really takes the injected latency.
SLOW_ENV = slow_env(500)


def fire(url: str, n: int, path: str = "/v1/features", body=None) -> list[tuple[int, dict, float]]:
    """``n`` concurrent POSTs, each on its own connection: (status, headers, seconds)."""
    results: list[tuple[int, dict, float]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(n)

    def one() -> None:
        with httpx.Client(base_url=url, timeout=30) as c:
            c.get("/healthz")  # connect before the barrier: the POSTs leave together
            barrier.wait()
            t0 = time.perf_counter()
            r = c.post(path, json=body if body is not None else {"window": WINDOW})
            with lock:
                results.append((r.status_code, dict(r.headers), time.perf_counter() - t0))

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_overloaded_server_sheds_with_503_and_retry_after_and_counts_it():
    args = ["--max-concurrency", "1", "--retry-after", "2", "--log-level", "warning"]
    with ServiceProcess(args, env=SLOW_ENV) as svc, httpx.Client(base_url=svc.url, timeout=30) as c:
        probe: dict[str, int] = {}

        def probe_while_saturated() -> None:
            time.sleep(0.1)
            probe["readyz"] = c.get("/readyz").status_code
            probe["metrics"] = c.get("/metrics").status_code

        prober = threading.Thread(target=probe_while_saturated)
        prober.start()
        results = fire(svc.url, 8)
        prober.join()

        ok = [r for r in results if r[0] == 200]
        shed = [r for r in results if r[0] == 503]
        assert len(ok) + len(shed) == 8, [r[0] for r in results]
        assert len(ok) >= 1 and len(shed) >= 4  # they leave together; one 500 ms call holds the slot
        assert all(h["retry-after"] == "2" for _, h, _ in shed)
        assert all(r.get("content-type") == "application/json" for _, r, _ in shed)
        assert min(s for _, _, s in ok) >= 0.5  # the admitted request really computed
        # sheds do not wait for the 0.5 s slot: answered before the admitted request was
        assert statistics.median(s for _, _, s in shed) < min(s for _, _, s in ok)
        assert probe == {"readyz": 200, "metrics": 200}  # probes need no slot

        text = c.get("/metrics").text
        assert sample(text, "lbh_http_shed_total", reason="concurrency") == len(shed)
        assert sample(text, "lbh_http_request_duration_seconds_count", route="/v1/features", status="503") == len(shed)
        assert sample(text, "lbh_http_request_duration_seconds_count", route="/v1/features", status="200") == len(ok)
        assert sample(text, "lbh_service_slots_limit") == 1 and sample(text, "lbh_service_slots_busy") == 0
        # The injected fault is visible beside its effect.
        assert sample(text, "lbh_fault_setting", fault="extra_latency_seconds") == pytest.approx(0.5)
        assert sample(text, "lbh_faults_injected_total", operation="model_inference", fault="latency") >= len(ok)

        late = c.post("/v1/features", json={"window": WINDOW})  # capacity is back
        assert late.status_code == 200


def test_a_timed_out_request_gets_504_and_its_computation_keeps_the_slot():
    # the model call outlasts the 0.2 s timeout by seconds, so that a busy machine cannot
    # blur "answered at the deadline" and "answered after the model call"
    model_s = 3.0
    config = ServiceConfig(
        max_concurrency=1,
        request_timeout_seconds=0.2,
        warmup_inferences=1,
        extractor=ExtractorConfig(enable_caching=False, model_budget_seconds=10,
                                  faults=FaultConfig(extra_latency_seconds=model_s)),
    )
    registry = CollectorRegistry()
    with ServiceThread(config, registry=registry) as svc, httpx.Client(base_url=svc.url, timeout=30) as c:
        t0 = time.perf_counter()
        first = c.post("/v1/features", json={"window": WINDOW})
        took = time.perf_counter() - t0
        assert first.status_code == 504 and first.json()["error"] == "timeout"
        assert 0.2 <= took < model_s  # answered at its deadline, not after the model call
        # The model call is still running and still holds the only slot.
        assert svc.state.pool.busy == 1
        second = c.post("/v1/features", json={"window": WINDOW})
        assert second.status_code == 503 and second.json()["error"] == "overloaded"
        deadline = time.monotonic() + model_s + 5
        while svc.state.pool.busy:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        third = c.post("/v1/features", json={"window": WINDOW})
        assert third.status_code == 504  # admitted again, and slow again
        text = c.get("/metrics").text
        assert sample(text, "lbh_http_request_duration_seconds_count", route="/v1/features", status="504") == 2
        assert sample(text, "lbh_http_shed_total", reason="concurrency") == 1


def test_concurrent_steps_on_one_session_are_409():
    config = ServiceConfig(
        max_concurrency=4,
        warmup_inferences=1,
        extractor=ExtractorConfig(enable_caching=False, model_budget_seconds=10,
                                  faults=FaultConfig(extra_latency_seconds=0.3)),
    )
    with ServiceThread(config, registry=CollectorRegistry()) as svc, httpx.Client(base_url=svc.url, timeout=30) as c:
        sid = c.post("/v1/env/reset", json={"seed": 1, "n_steps": 10}).json()["session_id"]
        statuses = sorted(r[0] for r in fire(svc.url, 2, f"/v1/env/{sid}/step", {"action": 1}))
        assert statuses == [200, 409]
        assert c.post(f"/v1/env/{sid}/step", json={"action": 1}).status_code == 200  # the lock was released
