"""The scale test's baseline is the replica count *before* the run: an HPA that scaled
1 -> 3 within the first sampling interval is a scale-up, not "no scale-up"."""

from __future__ import annotations

from harness.studies import scale_test
from harness.studies.kube import DeploymentStatus, HpaStatus, MetricStatus

CFG = scale_test.ScaleTestConfig(hpa="feature-service", namespace="lbh", interval_s=5)


def sample(t, desired, ready, above=(), **kw):
    return {"t_s": t, "desired_replicas": desired, "current_replicas": ready, "ready_replicas": ready,
            "above_target": list(above), "p95_ms": None, "achieved_rps": None, "error": None, **kw}


# the HPA had already asked for 3 replicas when the first sample was taken
ALREADY_SCALED = [sample(0, 3, 1, above=["Resource/cpu"]), sample(5, 3, 2, above=["Resource/cpu"]), sample(10, 3, 3)]


def test_first_sample_baseline_misses_an_early_scale_up():
    v = scale_test.analyse(ALREADY_SCALED, CFG)  # no baseline: the old behaviour
    assert v["initial_replicas"] == 3 and v["scaled_up_at_s"] is None
    assert "no scale-up" in v["checks"][0]["message"]


def test_replicas_before_the_run_are_the_baseline():
    v = scale_test.analyse(ALREADY_SCALED, CFG, baseline=(1, 1))
    assert v["initial_replicas"] == 1 and v["initial_replicas_from"] == "before the run"
    assert v["scaled_up_at_s"] == 0 and v["scaled_up_to"] == 3
    up = v["checks"][0]
    assert up["name"] == "scale_up" and up["passed"] is True and "1 -> 3" in up["message"]
    assert v["ready_up_at_s"] == 5  # ready went 1 -> 2 at the second sample


class FakeKube:
    source = "fake"
    request_timeout_s = 1.0

    def __init__(self, hpa, dep):
        self.hpa, self.dep = hpa, dep

    def hpa_status(self, name, namespace):
        return self.hpa

    def deployment_status(self, name, namespace):
        return self.dep

    def list_pods(self, selector, namespace):
        return []


def test_preflight_reads_the_deployments_replicas_before_any_load():
    hpa = HpaStatus(namespace="lbh", name="feature-service", scale_target={"kind": "Deployment", "name": "fs"},
                    min_replicas=1, max_replicas=5, current_replicas=1, desired_replicas=3, last_scale_time=None,
                    metrics=[MetricStatus.__new__(MetricStatus)])
    dep = DeploymentStatus(namespace="lbh", name="fs", spec_replicas=1, replicas=1, ready=1, updated=1, available=1,
                           unavailable=0, selector="app=fs")
    pre = scale_test.preflight(FakeKube(hpa, dep), CFG)
    assert pre.baseline == (1, 1)  # spec.replicas before the load, not the HPA's new desire
    assert scale_test.Preflight(hpa=hpa, deployment="fs", selector=None).baseline is None
