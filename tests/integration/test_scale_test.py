"""``harness scale-test`` against a fake Kubernetes API server (tests/support/fake_kube_api.py),
through the official ``kubernetes`` client, with real load on a loopback Service.

No cluster runs here: the fake serves autoscaling/v2 HPA, apps/v1 Deployment and v1 Pod
objects in the API's JSON that change along a schedule, and the "Service" slows down
while too few replicas are ready, so every verdict has something real to measure.
"""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
try:
    import kubernetes  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    if IN_CI:
        pytest.fail("the official kubernetes client is not installed: pip install kubernetes", pytrace=False)
    pytest.skip("the official kubernetes client is not installed: pip install kubernetes", allow_module_level=True)

from tests.support.cli import run_subcommand  # noqa: E402
from tests.support.fake_kube_api import FakeKubeAPI, Keyframe, write_kubeconfig  # noqa: E402

from harness.studies import scale_test  # noqa: E402
from harness.cli import scale_test as scale_test_cli  # noqa: E402
from harness.studies.kube import Kube, KubeError, hpa_metrics, parse_quantity, selector_string  # noqa: E402

NS, HPA, DEP = "lbh", "feature-service", "feature-service"
HPA_PATH = f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers/{HPA}"
DEP_PATH = f"/apis/apps/v1/namespaces/{NS}/deployments/{DEP}"
PODS_PATH = f"/api/v1/namespaces/{NS}/pods"
SELECTOR = "app.kubernetes.io/name=feature-service"

# metric above target at 1.5 s, HPA 1 -> 3 at 3.5 s, ready 2 at 4.5 s, ready 3 at 5.5 s
SCHEDULE = (
    Keyframe(0.0, None, None, 1, 1),
    Keyframe(0.5, 35, "1500m", 1, 1),
    Keyframe(1.5, 92, "6", 1, 1),
    Keyframe(3.5, 95, "6500m", 3, 1),
    Keyframe(4.5, 80, "5", 3, 2),
    Keyframe(5.5, 55, "3", 3, 3),
)
CROSS_AT, SCALE_AT, READY3_AT = 1.5, 3.5, 5.5
SLOW_FROM, SLOW_S = 2.0, 0.15           # the Service is over budget from 2 s until 3 replicas are ready
UNAVAILABLE = (6.6, 7.4)                # the API server answers 500 here
INTERVAL = 0.5


# ----------------------------------------------------------------------------- helpers


def _run_cli(argv: List[str]) -> int:
    return run_subcommand(scale_test_cli, ["scale-test", *argv])


class Service:
    """The Service under test: answers 200 at once, or after SLOW_S while the fake cluster
    has fewer than 3 ready replicas past SLOW_FROM (an overloaded single replica)."""

    def __init__(self, api: FakeKubeAPI | None = None) -> None:
        svc = self
        self.api = api
        self.count = 0

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                svc.count += 1
                a = svc.api
                if a is not None and a.elapsed() >= SLOW_FROM and a.state().ready < 3:
                    time.sleep(SLOW_S)
                # one write: no Nagle / delayed-ACK stall between headers and body
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: 11\r\n\r\n{\"ok\":true}")

            def log_message(self, *a: Any) -> None:
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.srv.daemon_threads = True
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.srv.server_port}/v1/features"

    def close(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()


# ----------------------------------------------------------------------------- the full run


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """One 8 s ramp (10 -> 60 rps) sampled every 0.5 s through a generated kubeconfig.

    The generator's lag bound is wide: this test judges the scale test, not the machine
    (shared, 2 cores) the load runs on."""
    tmp = tmp_path_factory.mktemp("scale")
    api = FakeKubeAPI(namespace=NS, hpa=HPA, deployment=DEP, schedule=SCHEDULE, unavailable=[UNAVAILABLE]).start()
    svc = Service(api)
    kubeconfig = write_kubeconfig(tmp / "kubeconfig", api.url, namespace=NS)
    out = tmp / "result.json"
    # the fake cluster's schedule starts with the load (when the sampler starts)
    original_start = scale_test.Sampler.start

    def start(self, run):
        api.start_clock()
        return original_start(self, run)

    scale_test.Sampler.start = start
    try:
        code = _run_cli(["--hpa", HPA, "--kubeconfig", kubeconfig, "--target", svc.url,
                         "--from-rate", "10", "--to-rate", "60", "--duration", "8s", "--interval", "0.5s",
                         "--lag-bound-ms", "1000", "--out", str(out), "--quiet"])
        result = json.loads(out.read_text())
    finally:
        scale_test.Sampler.start = original_start
        svc.close()
        api.stop()
    return {"code": code, "result": result, "api": api, "service": svc}


def test_full_run_passes_and_keeps_the_harness_result(full_run):
    assert full_run["code"] == 0
    r = full_run["result"]
    assert r["schema"] == "harness.result/1" and r["status"] == "completed"
    assert r["verdict"]["passed"] is True and r["verdict"]["scale_test_passed"] is True
    assert r["summary"]["all"]["outcomes"]["ok"] > 200          # ~280 requests in the ramp
    assert r["scenario"]["profile"]["type"] == "ramp"
    # no latency thresholds: only the failure checks every run is judged on
    assert {t["metric"] for t in r["thresholds"]} == {"failed_rate", "throughput{outcome:ok}"}
    st = r["scale_test"]
    assert st["schema"] == "harness.studies.scale_test/1"
    k = st["kubernetes"]
    assert (k["namespace"], k["hpa"], k["deployment"], k["selector"]) == (NS, HPA, DEP, SELECTOR)
    assert k["source"].startswith("kubeconfig ") and (k["min_replicas"], k["max_replicas"]) == (1, 5)
    assert {m["key"] for m in k["metrics"]} == {"Resource/cpu", "Pods/lbh_http_requests_in_flight"}


def test_timeline_joins_load_and_cluster(full_run):
    tl = full_run["result"]["scale_test"]["timeline"]
    assert 12 <= len(tl) <= 17                  # 0, 0.5, ... 7.5 and one after the load (a busy box may skip one)
    ts = [s["t_s"] for s in tl]
    # the sample after the load is taken as the 8 s load ends: its last arrivals are due a few
    # ms before 8 s (the schedule's midpoint rule) and t_s is rounded to 1 ms, so 7.999 is a
    # correct value; 50 ms of tolerance still puts it after the last slot under load (7.5 s)
    assert ts == sorted(ts) and ts[0] < 0.3 and tl[-1]["after_load"] is True and ts[-1] >= 8.0 - 0.05
    under = [s for s in tl if not s.get("after_load")]
    gaps = sorted(b - a for a, b in zip(ts, ts[1:-1]))
    assert gaps[0] > 0.3 and abs(gaps[len(gaps) // 2] - INTERVAL) < 0.1
    assert [s["ok_total"] for s in tl] == sorted(s["ok_total"] for s in tl)
    # offered follows the ramp; achieved tracks it; p95 comes from the recorder's windows
    for s in under:
        assert s["offered_rps"] == pytest.approx(10 + 50 * s["t_s"] / 8, abs=0.6)
        assert s["p95_window_s"] is None or s["p95_window_s"][1] <= s["t_s"] + 1e-6
    close = [s for s in under[2:] if abs(s["achieved_rps"] - s["offered_rps"]) <= max(10.0, 0.3 * s["offered_rps"])]
    assert len(close) >= 0.7 * len(under[2:])           # a busy machine may stall one interval, not most
    assert any(s["p95_ms"] is not None and s["p95_ms"] > 100 for s in tl)
    ok = [s for s in tl if s["error"] is None]
    first = ok[0]
    assert first["desired_replicas"] == 1 and first["ready_replicas"] == 1
    assert all(m["current"] is None for m in first["metrics"])        # metrics API not ready yet at t=0
    last = ok[-1]
    assert (last["desired_replicas"], last["current_replicas"], last["spec_replicas"], last["ready_replicas"],
            last["updated_replicas"], last["available_replicas"]) == (3, 3, 3, 3, 3, 3)
    assert last["pods"] == {"total": 3, "ready": 3, "pending": 0}
    mid = [s for s in ok if s["desired_replicas"] == 3 and s["ready_replicas"] == 1]
    assert mid and mid[0]["pods"] == {"total": 3, "ready": 1, "pending": 2}
    cpu = [next(m for m in s["metrics"] if m["name"] == "cpu") for s in ok]
    assert {c["target"] for c in cpu} == {70.0} and max(c["current"] or 0 for c in cpu) == 95.0
    over = [s for s in ok if s["above_target"]]
    assert over and set(over[0]["above_target"]) == {"Resource/cpu", "Pods/lbh_http_requests_in_flight"}
    assert over[0]["hpa_conditions"]["ScalingActive"] == "True/ValidMetricFound"
    assert first["hpa_conditions"]["ScalingActive"] == "False/FailedGetResourceMetric"
    # the API server's 500s are recorded as gaps, and the load went on
    errs = [s for s in tl if s["error"]]
    assert errs and all("HorizontalPodAutoscaler" in s["error"] and "500" in s["error"] for s in errs)
    assert all(s["achieved_rps"] is not None for s in errs)


def test_verdicts_match_the_schedule(full_run):
    v = full_run["result"]["scale_test"]["verdicts"]
    tol = INTERVAL + 0.5                       # sample resolution + clock offset of the fake + a loaded CI box
    assert v["passed"] is True and v["failed_samples"] >= 1
    assert v["initial_replicas"] == 1 and v["initial_ready_replicas"] == 1
    assert v["metric_crossed_at_s"] == pytest.approx(CROSS_AT, abs=tol)
    assert v["scaled_up_at_s"] == pytest.approx(SCALE_AT, abs=tol)
    assert v["time_to_scale_up_s"] == pytest.approx(SCALE_AT - CROSS_AT, abs=INTERVAL + 0.3)
    assert v["scaled_up_to"] == 3 and v["time_to_ready_s"] == pytest.approx(1.0, abs=tol)
    assert v["peak_replicas"] == 3 and v["peak_desired_replicas"] == 3 and v["peak_ready_replicas"] == 3
    # p95 over 100 ms while one replica struggled, back under once 3 were ready
    # (the first second may show the HTTP client's start-up as a short episode of its own)
    main = [e for e in v["p95_over_budget"] if e[0] >= SLOW_FROM]
    assert len(main) == 1 and SLOW_FROM <= main[0][0] <= SCALE_AT + tol
    assert v["p95_over_budget_at_s"] <= main[0][0]
    assert READY3_AT <= v["p95_back_under_budget_at_s"] == main[0][1] <= READY3_AT + 2.5
    assert v["time_to_p95_recovery_s"] == pytest.approx(v["p95_back_under_budget_at_s"] - v["p95_over_budget_at_s"])
    assert v["peak_p95_ms"] >= SLOW_S * 1000
    # throughput per replica: ~60 rps over 3 replicas at the end vs one replica's best early on
    tp = v["throughput_per_replica"]
    assert tp["end_ready_replicas"] == 3 and tp["baseline_replicas"] == 1
    assert tp["end_rps_per_replica"] == pytest.approx(18, abs=6)               # ~53 rps / 3
    assert tp["end_span_s"][0] >= READY3_AT - 0.1 and tp["baseline_span_s"][1] <= READY3_AT - 0.9
    assert 20 <= tp["baseline_rps_per_replica"] <= 45                           # ~33 rps / 1
    assert tp["efficiency"] == pytest.approx(tp["end_rps_per_replica"] / tp["baseline_rps_per_replica"], rel=1e-3)
    names = {c["name"]: c for c in v["checks"]}
    assert names["scale_up"]["gated"] and names["scale_up"]["passed"] and names["scale_up"]["limit"] == 300
    assert not names["p95_recovery"]["gated"] and not names["throughput_per_replica"]["gated"]


def test_the_official_client_asked_the_expected_paths(full_run):
    api = full_run["api"]
    reqs = api.requests
    assert {r["path"] for r in reqs} == {HPA_PATH, DEP_PATH, PODS_PATH}
    assert all(r["method"] == "GET" and r["accept"] == "application/json" for r in reqs)
    assert all(r["user_agent"].startswith("OpenAPI-Generator/") for r in reqs)   # the kubernetes package
    assert all(r["authorization"] is None for r in reqs)
    assert all(r["query"] == {"labelSelector": [SELECTOR]} for r in reqs if r["path"] == PODS_PATH)
    n_hpa = sum(r["path"] == HPA_PATH for r in reqs)
    samples = len(full_run["result"]["scale_test"]["timeline"])
    assert n_hpa == samples + 1                                    # the preflight, then one per sample
    assert full_run["service"].count == full_run["result"]["summary"]["all"]["count"]


def test_gates_change_the_verdict_not_the_timeline(full_run):
    tl = full_run["result"]["scale_test"]["timeline"]
    base = dict(hpa=HPA, namespace=NS, interval_s=INTERVAL)
    slow = scale_test.analyse(tl, scale_test.ScaleTestConfig(**base, max_scale_up_s=1.0))
    assert slow["passed"] is False and "> 1s" in slow["checks"][0]["message"]
    quick = scale_test.analyse(tl, scale_test.ScaleTestConfig(**base, max_recovery_s=0.5))
    assert quick["passed"] is False and next(c for c in quick["checks"] if c["name"] == "p95_recovery")["gated"]
    eff = scale_test.analyse(tl, scale_test.ScaleTestConfig(**base, min_efficiency=5.0))
    assert eff["passed"] is False
    assert scale_test.analyse(tl, scale_test.ScaleTestConfig(**base, min_efficiency=0.05))["passed"] is True


# ----------------------------------------------------------------------------- exit codes


def test_no_scale_up_exits_99(tmp_path):
    """The metric goes over its target but the HPA never scales: the scale verdict fails.
    (Also: an explicit --server instead of a kubeconfig, and a constant profile.)"""
    never = (Keyframe(0.0, 40, "2", 1, 1), Keyframe(0.5, 90, "6", 1, 1))
    with FakeKubeAPI(namespace=NS, schedule=never) as api:
        svc = Service()
        api.start_clock()
        url = api.url
        out = tmp_path / "r.json"
        try:
            scenario = tmp_path / "constant.yaml"
            scenario.write_text(f"name: steady\ntarget: {svc.url}\nduration: 2s\n"
                                "profile: {type: constant, rate: 10}\nthresholds: {error_rate: ['rate<0.01']}\n")
            code = _run_cli([str(scenario), "--hpa", HPA, "-n", NS, "--server", api.url, "--interval", "0.5s",
                             "--lag-bound-ms", "1000", "--out", str(out), "--quiet"])
        finally:
            svc.close()
    assert code == 99
    r = json.loads(out.read_text())
    assert r["verdict"]["thresholds_passed"] is True and r["verdict"]["scale_test_passed"] is False
    assert r["verdict"]["exit_code"] == 99 and r["verdict"]["passed"] is False
    check = r["scale_test"]["verdicts"]["checks"][0]
    assert check["name"] == "scale_up" and not check["passed"] and "no scale-up" in check["message"]
    assert r["scale_test"]["kubernetes"]["source"] == f"host {url}"
    assert r["scenario"]["name"] == "steady" and r["scenario"]["profile"]["type"] == "constant"
    assert [t["metric"] for t in r["thresholds"]] == ["error_rate", "failed_rate", "throughput{outcome:ok}"]
    assert r["scale_test"]["verdicts"]["initial_replicas_from"] == "before the run"


@pytest.mark.parametrize("argv, expect", [
    (["--hpa", "nope"], "HorizontalPodAutoscaler 'nope' in namespace 'lbh': not found"),
    (["--hpa", HPA, "-n", "other"], "HorizontalPodAutoscaler 'feature-service' in namespace 'other': not found"),
    (["--hpa", HPA, "--deployment", "gone"], "Deployment 'gone' in namespace 'lbh': not found"),
])
def test_missing_objects_are_usage_errors_before_any_load(tmp_path, capsys, argv, expect):
    with FakeKubeAPI(namespace=NS) as api:
        svc = Service()
        kc = write_kubeconfig(tmp_path / "kc", api.url, namespace=NS)
        try:
            code = _run_cli([*argv, "--kubeconfig", kc, "--target", svc.url, "--duration", "2s",
                             "--out", str(tmp_path / "r.json")])
        finally:
            svc.close()
    assert code == 2
    err = capsys.readouterr().err
    assert expect in err
    assert svc.count == 0 and not (tmp_path / "r.json").exists()


def test_forbidden_names_the_rbac_it_needs(tmp_path, capsys):
    with FakeKubeAPI(namespace=NS, forbidden=["pods"]) as api:
        svc = Service()
        try:
            code = _run_cli(["--hpa", HPA, "--server", api.url, "-n", NS, "--target", svc.url, "--duration", "2s"])
        finally:
            svc.close()
    assert code == 2
    err = capsys.readouterr().err
    assert "forbidden" in err and "'list' on pods in namespace 'lbh'" in err and svc.count == 0


def test_no_kubeconfig_and_bad_flags_are_usage_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    missing = tmp_path / "no-such-kubeconfig"
    assert _run_cli(["--hpa", HPA, "--kubeconfig", str(missing), "--target", "http://127.0.0.1:9/x"]) == 2
    assert f"no kubeconfig at {missing}" in capsys.readouterr().err
    assert _run_cli(["--hpa", HPA, "--server", "http://127.0.0.1:9", "--target", "features"]) == 2
    assert "drives the Service over HTTP" in capsys.readouterr().err
    assert _run_cli(["--hpa", HPA, "--server", "http://127.0.0.1:9", "--target", "http://x/", "--interval", "0"]) == 2
    assert "--interval" in capsys.readouterr().err
    assert _run_cli(["--hpa", HPA, "--in-cluster", "--target", "http://127.0.0.1:9/x"]) == 2
    assert "in-cluster configuration" in capsys.readouterr().err
    # an API server that does not answer: a usage error naming where it looked
    assert _run_cli(["--hpa", HPA, "--server", "http://127.0.0.1:9", "-n", NS, "--target", "http://127.0.0.1:9/x",
                     "--interval", "1s"]) == 2
    assert "cannot reach the Kubernetes API (host http://127.0.0.1:9)" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the wrapper


def test_kube_from_kubeconfig_reads_namespace_and_objects(tmp_path):
    with FakeKubeAPI(namespace=NS, schedule=SCHEDULE) as api:
        kc = write_kubeconfig(tmp_path / "kc", api.url, namespace=NS)
        kube = Kube.from_config(kc)
        assert kube.default_namespace == NS and kube.host == api.url
        hpa = kube.hpa_status(HPA)
        assert hpa.scale_target == {"apiVersion": "apps/v1", "kind": "Deployment", "name": DEP}
        assert [m.current for m in hpa.metrics] == [None, None]
        api.start_clock()
        api._t0 -= 4.0                                   # jump to 4 s: scaled to 3, one ready
        hpa = kube.hpa_status(HPA)
        assert (hpa.desired_replicas, hpa.current_replicas) == (3, 1)
        assert [(m.key, m.target_type, m.target, m.current) for m in hpa.metrics] == [
            ("Resource/cpu", "Utilization", 70.0, 95.0), ("Pods/lbh_http_requests_in_flight", "AverageValue", 4.0, 6.5)]
        assert all(m.above_target for m in hpa.metrics)
        dep = kube.deployment_status(DEP)
        assert (dep.spec_replicas, dep.replicas, dep.ready, dep.updated, dep.available, dep.unavailable) == \
            (3, 3, 1, 3, 1, 2)
        pods = kube.list_pods(dep.selector)
        assert [(p.phase, p.ready) for p in pods] == [("Running", True), ("Pending", False), ("Pending", False)]
        assert kube.list_pods("app=other") == []
        raw = kube.read_hpa(HPA)
        assert raw["apiVersion"] == "autoscaling/v2" and raw["kind"] == "HorizontalPodAutoscaler"
        assert raw["spec"]["behavior"]["scaleUp"]["policies"][0] == {"type": "Percent", "value": 100,
                                                                     "periodSeconds": 15}
        with pytest.raises(KubeError, match="Deployment 'x' in namespace 'lbh': not found"):
            kube.deployment_status("x")
        kube.close()


def test_quantities_selectors_and_metric_pairing():
    assert parse_quantity("250m") == 0.25 and parse_quantity("1.5k") == 1500 and parse_quantity("128Mi") == 2 ** 27
    assert parse_quantity(4) == 4.0 and parse_quantity("1e3") == 1000 and parse_quantity(None) is None
    with pytest.raises(ValueError):
        parse_quantity("lots")
    assert selector_string({"matchLabels": {"b": "2", "a": "1"},
                            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["x", "y"]},
                                                 {"key": "canary", "operator": "DoesNotExist"}]}) == \
        "a=1,b=2,tier in (x,y),!canary"
    spec = [{"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "Value", "value": "30"}}},
            {"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app", "target": {
                "type": "Utilization", "averageUtilization": 60}}},
            {"type": "Object", "object": {"metric": {"name": "rps"},
                                          "describedObject": {"kind": "Service", "name": "s"},
                                          "target": {"type": "AverageValue", "averageValue": "100"}}}]
    cur = [{"type": "External", "external": {"metric": {"name": "queue"}, "current": {"value": "45"}}},
           {"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app", "current": {
               "averageUtilization": 30, "averageValue": "150m"}}}]
    ms = hpa_metrics(spec, cur)
    assert [(m.key, m.target, m.current, m.above_target) for m in ms] == [
        ("External/queue", 30.0, 45.0, True), ("ContainerResource/cpu[app]", 60.0, 30.0, False),
        ("Object/rps", 100.0, None, False)]


def _s(t, desired, ready, above=(), p95=None, achieved=None, **kw) -> Dict[str, Any]:
    return {"t_s": t, "desired_replicas": desired, "current_replicas": ready, "ready_replicas": ready,
            "above_target": list(above), "p95_ms": p95, "achieved_rps": achieved, "error": None, **kw}


def test_analyse_edge_cases():
    cfg = scale_test.ScaleTestConfig(hpa=HPA, namespace=NS, interval_s=5)
    never = scale_test.analyse([_s(0, 1, 1, ok_total=0), _s(5, 1, 1, ok_total=50)], cfg)
    assert never["passed"] is False and "did not test scaling" in never["checks"][0]["message"]
    assert never["throughput_per_replica"]["efficiency"] is None
    assert "no change of ready replicas" in next(c for c in never["checks"]
                                                 if c["name"] == "throughput_per_replica")["message"]
    none = scale_test.analyse([{"t_s": 0, "error": "boom"}], cfg)
    assert none["passed"] is False and none["failed_samples"] == 1
    early = scale_test.analyse([_s(0, 1, 1), _s(5, 2, 1), _s(10, 2, 2, above=["Resource/cpu"])], cfg)
    assert early["passed"] is True and early["time_to_scale_up_s"] == 0.0 and "before" in early["checks"][0]["message"]
    stuck = scale_test.analyse([_s(0, 1, 1, p95=50), _s(5, 1, 1, above=["x"], p95=300), _s(10, 2, 2, p95=250)],
                               scale_test.ScaleTestConfig(hpa=HPA, namespace=NS, interval_s=5, max_recovery_s=60))
    rec = next(c for c in stuck["checks"] if c["name"] == "p95_recovery")
    assert rec["gated"] and not rec["passed"] and "to the end" in rec["message"] and stuck["passed"] is False
    # minReplicas 2: per-replica figures divide by the replicas actually ready
    two = scale_test.analyse([_s(0, 2, 2, achieved=40, ok_total=0), _s(5, 2, 2, above=["x"], achieved=80, ok_total=400),
                              _s(10, 4, 2, achieved=80, ok_total=800), _s(15, 4, 4, achieved=120, ok_total=1400),
                              _s(20, 4, 4, achieved=120, ok_total=2000),
                              _s(25, 4, 4, achieved=0, ok_total=2000, after_load=True)], cfg)
    tp = two["throughput_per_replica"]
    assert (tp["baseline_rps_per_replica"], tp["end_rps_per_replica"], tp["efficiency"]) == (40.0, 30.0, 0.75)
    assert (tp["baseline_span_s"], tp["end_span_s"]) == ([0, 10], [15, 20])
    assert two["time_to_scale_up_s"] == 5 and two["peak_replicas"] == 4


def test_scale_down_verdict_from_the_samples_after_the_load():
    cfg = scale_test.ScaleTestConfig(hpa=HPA, namespace=NS, interval_s=5)
    up = [_s(0, 1, 1), _s(5, 3, 1, above=["x"]), _s(10, 3, 3), _s(15, 3, 3, after_load=True)]
    check = lambda v: next(c for c in v["checks"] if c["name"] == "scale_down")  # noqa: E731
    unwatched = scale_test.analyse(up, cfg)
    assert not check(unwatched)["gated"] and "not watched" in check(unwatched)["message"]
    assert unwatched["time_to_scale_down_s"] is None
    cool = up + [_s(20, 3, 3, after_load=True, cooldown=True), _s(25, 1, 3, after_load=True, cooldown=True),
                 _s(30, 1, 1, after_load=True, cooldown=True)]
    v = scale_test.analyse(cool, cfg)
    assert (v["load_ended_at_s"], v["time_to_scale_down_s"], v["time_to_ready_down_s"]) == (15, 10, 15)
    assert check(v)["passed"] and "back to 1 10.0s after" in check(v)["message"]
    strict = scale_test.analyse(cool, scale_test.ScaleTestConfig(hpa=HPA, namespace=NS, interval_s=5,
                                                                 max_scale_down_s=5))
    assert strict["passed"] is False and check(strict)["gated"] and "> 5s" in check(strict)["message"]
    stuck = scale_test.analyse(up + [_s(20, 3, 3, after_load=True, cooldown=True)],
                               scale_test.ScaleTestConfig(hpa=HPA, namespace=NS, interval_s=5, max_scale_down_s=60))
    assert stuck["passed"] is False and "still 3 desired replicas" in check(stuck)["message"]


def test_watch_scale_down_samples_until_the_replicas_are_back(tmp_path):
    """A 3 s constant load; the fake HPA scales 1 -> 3 at 1 s and back to 1 at 4.5 s (ready
    at 5 s): the watch ends once they are back, well before its 20 s limit."""
    sched = (Keyframe(0.0, 50, "2", 1, 1), Keyframe(0.5, 90, "6", 1, 1), Keyframe(1.0, 90, "6", 3, 3),
             Keyframe(4.5, 20, "1", 1, 3), Keyframe(5.0, 20, "1", 1, 1))
    with FakeKubeAPI(namespace=NS, schedule=sched) as api:
        svc = Service()
        original_start = scale_test.Sampler.start

        def start(self, run):
            api.start_clock()
            return original_start(self, run)

        scale_test.Sampler.start = start
        out = tmp_path / "r.json"
        t0 = time.monotonic()
        try:
            code = _run_cli(["--hpa", HPA, "--server", api.url, "-n", NS, "--target", svc.url, "--profile", "constant",
                             "--rate", "20", "--duration", "3s", "--interval", "0.5s", "--lag-bound-ms", "1000",
                             "--watch-scale-down", "20s", "--max-scale-down-seconds", "10", "--out", str(out),
                             "--quiet"])
        finally:
            scale_test.Sampler.start = original_start
            svc.close()
        took = time.monotonic() - t0
    r = json.loads(out.read_text())
    v = r["scale_test"]["verdicts"]
    # ended by the replicas coming back ("scaled_down"), not by its 20 s limit ("timeout"); the
    # wall clock only has to show that the 3 s load plus the watch never overran that limit
    assert code == 0 and v["scale_down_watch"] == "scaled_down" and took < 3 + 20
    assert v["time_to_scale_down_s"] == pytest.approx(1.5, abs=0.8)
    assert v["time_to_ready_down_s"] == pytest.approx(2.0, abs=0.8)
    cooldown = [s for s in r["scale_test"]["timeline"] if s.get("cooldown")]
    assert cooldown and cooldown[-1]["desired_replicas"] == 1 and cooldown[-1]["achieved_rps"] == 0


def test_scale_down_flags_are_checked(tmp_path, capsys):
    code = _run_cli(["--hpa", HPA, "--server", "http://127.0.0.1:1", "--target", "http://x/", "--watch-scale-down",
                     "1m", "--max-scale-down-seconds", "120"])
    assert code == 2 and "--max-scale-down-seconds: needs --watch-scale-down" in capsys.readouterr().err
    code = _run_cli(["--hpa", HPA, "--server", "http://127.0.0.1:1", "--target", "http://x/", "--watch-scale-down",
                     "soon"])
    assert code == 2 and "--watch-scale-down" in capsys.readouterr().err
