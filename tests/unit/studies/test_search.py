"""Knee search: on a target of known capacity it finds the queueing-theory knee (within
10 %), keeps each step's evidence, and stops — saying so — when the generator is the limit."""

from __future__ import annotations

import pytest

from tests.support import targets_capacity
from harness.run.runner import RunOptions
from harness.config.scenario import scenario_from_dict
from harness.studies.search import SearchError, SearchSettings, format_search, search, step_scenario


def capacity_scenario(**extra):
    return scenario_from_dict({"name": "capacity", "target": "tests.support.targets_capacity:k_servers",
                               "thresholds": {"latency": ["p(95)<40ms"], "error_rate": ["rate<0.01"]}, **extra},
                              env={})


@pytest.mark.slow  # a real knee search: ~20 s of load
def test_knee_of_k_servers_matches_queueing_theory():
    """K=4 servers each holding a call 20 ms (deterministic service): capacity K/S = 200 rps.
    Below it an arrival waits for nothing (D/D/k), above it the queue grows without bound,
    so the knee of "p95 < 2 S" is the capacity."""
    expected = targets_capacity.capacity_rps()
    assert expected == pytest.approx(200.0)
    # This 2-core machine is shared: the generator's lag bound is relaxed from 5 to 20 ms
    # (still half the 40 ms threshold); steps it judges invalid would stop the search.
    opts = RunOptions(metrics_port=None, progress="off", install_signal_handlers=False, lag_bound_ms=20.0)
    r = search(capacity_scenario(executor={"threads": 8}),
               SearchSettings(start_rate=50, precision=0.04, step_duration_s=2.0),
               run_options=opts)
    assert r["status"] == "found", format_search(r)
    assert abs(r["knee_rps"] - expected) / expected <= 0.10, format_search(r)
    lo, hi = r["bracket"]
    assert lo < hi and (hi - lo) / lo <= 0.04
    # evidence: every step is kept, exponential first, then binary, each with its figures
    phases = [s["phase"] for s in r["steps"]]
    assert phases[0] == "exponential" and "binary" in phases and phases.index("binary") > phases.index("exponential")
    for st in r["steps"]:
        assert st["run_id"] and st["p95_ms"] is not None and st["achieved_rps"] is not None
        assert st["passed"] == (st["rate"] <= lo)
    failing = [s for s in r["steps"] if not s["passed"]]
    assert failing and all(s["failed"] for s in failing)


@pytest.mark.slow  # two real 1 s steps
def test_stops_when_the_generator_is_the_limit():
    # an impossible lag bound makes every step invalid: the search must stop, not guess
    opts = RunOptions(metrics_port=None, progress="off", install_signal_handlers=False, lag_bound_ms=1e-6)
    sc = scenario_from_dict({"name": "noop", "target": "noop", "thresholds": {"error_rate": ["rate<0.01"]}}, env={})
    r = search(sc, SearchSettings(start_rate=200, step_duration_s=1.0), run_options=opts)
    assert r["status"] == "generator-limited"
    assert r["knee_rps"] is None and len(r["steps"]) == 2  # the step and its one re-measurement
    assert r["steps"][1]["phase"] == "exponential (retry)"
    assert "generator, not the target" in r["message"] and "no knee" in r["message"].lower()
    assert r["steps"][0]["generator_reasons"]


def fake_runner(capacity: float, generator_limit: float = float("inf")):
    """Results as a target of ``capacity`` rps would give (for the search's own logic)."""
    def run(sc):
        rate = sc.profile.to_dict()["rate"]
        ok = rate <= capacity
        valid = rate <= generator_limit
        n = int(rate * sc.duration)
        return {"run_id": f"fake-{rate}", "scenario": sc.to_dict(),
                "summary": {"all": {"count": n, "outcomes": {"dropped": 0}, "error_rate": 0.0,
                                    "latency": {"p50": 5.0, "p95": 10.0 if ok else 500.0, "p99": 20.0}}},
                "thresholds": [{"metric": "latency", "expression": "p(95)<100ms", "observed": 10.0 if ok else 500.0,
                                "ok": ok}],
                "generator": {"valid": valid, "reasons": [] if valid else ["schedule lag p99 9 ms > 5 ms"]},
                "verdict": {"exit_code": 0 if ok and valid else (98 if not valid else 99)}}
    return run


@pytest.mark.parametrize("capacity", [3.0, 137.0, 999.0])
def test_search_logic_brackets_any_capacity(capacity):
    r = search(capacity_scenario(), SearchSettings(start_rate=10, precision=0.02, step_duration_s=10.0),
               run_step=fake_runner(capacity))
    assert r["status"] == "found"
    lo, hi = r["bracket"]
    assert lo <= capacity < hi and (hi - lo) / lo <= 0.02


def test_generator_limit_after_valid_steps_reports_a_lower_bound():
    r = search(capacity_scenario(), SearchSettings(start_rate=10, step_duration_s=1.0),
               run_step=fake_runner(1000.0, generator_limit=100.0))
    assert [st["rate"] for st in r["steps"]] == [10, 20, 40, 80, 160, 160]
    assert r["status"] == "generator-limited" and r["knee_rps"] is None and r["at_least_rps"] == 80.0
    assert "at least 80 rps" in r["message"]


def test_above_max_rate_and_refusals():
    r = search(capacity_scenario(), SearchSettings(start_rate=10, max_rate=40, step_duration_s=1.0),
               run_step=fake_runner(1000.0))
    assert r["status"] == "above-max-rate" and r["knee_rps"] == 40
    users = scenario_from_dict({"name": "u", "profile": {"type": "users", "vus": 2}, "duration": "2s"}, env={})
    with pytest.raises(SearchError, match="closed-loop"):
        search(users, run_step=fake_runner(1.0))
    with pytest.raises(SearchError, match="factor"):
        search(capacity_scenario(), SearchSettings(factor=1.0), run_step=fake_runner(1.0))
    st = step_scenario(capacity_scenario(seed=3), 42.0, 1.5)
    assert st.profile.to_dict()["rate"] == 42.0 and st.duration == 1.5 and st.seed == 3
    # + the failure checks every scenario is judged on (failed_rate, at least one success)
    assert [t.expression for t in st.parsed_thresholds] == ["p(95)<40ms", "rate<0.01", "rate<0.01", "count>0"]


# -- rate-dependent thresholds, what limited the knee, the min-knee exit code ---------------


def test_throughput_thresholds_follow_the_steps_rate():
    base = scenario_from_dict({"name": "mt", "target": "noop", "profile": {"type": "constant", "rate": 80},
                               "thresholds": {"throughput": ["rate>=76", {"threshold": "count>2000"}],
                                              "throughput{outcome:ok}": ["rate>=72"],
                                              "latency": ["p(95)<100ms"]}}, env={})
    st = step_scenario(base, 10.0, 2.0)
    got = {(t.metric, t.expression) for t in st.parsed_thresholds}
    # 76 of 80 rps is 95 %: at 10 rps that is 9.5; counts scale the same way
    assert {("throughput", "rate>=9.5"), ("throughput", "count>250"), ("throughput{outcome:ok}", "rate>=9"),
            ("latency", "p(95)<100ms"), ("throughput{outcome:ok}", "count>0")} <= got
    assert ("throughput", "rate>=76") not in got
    assert {(t.metric, t.expression) for t in step_scenario(base, 80.0, 2.0).parsed_thresholds} >= {
        ("throughput", "rate>=76")}


def test_the_packaged_scenario_passes_its_own_throughput_floor_at_every_rate():
    """The documented search used to fail every step below 76 rps (exit 99)."""
    from harness.config import library

    base = library.load("max-throughput", env={})
    for rate in (10.0, 20.0, 640.0):
        st = step_scenario(base, rate, 2.0)
        (floor,) = [t for t in st.parsed_thresholds if t.name == "throughput" and t.aggregation.kind == "rate"]
        assert floor.value == pytest.approx(0.95 * rate)


def failing_step(**over):
    st = {"rate": 400.0, "valid": True, "passed": False, "failed_metrics": [], "throughput_short": False,
          "errors": {}, "outcomes": {"ok": 10, "error": 0, "timeout": 0, "dropped": 0}, "failed_rate": 0.0,
          "p95_ms": 20.0, "achieved_rps": 400.0, "cpu_percent_mean": 20.0, "cpu_count": 2,
          "target_cpu_cores": None, "generator_reasons": []}
    st.update(over)
    return st


def test_classify_limit_names_generator_errors_latency_throughput_and_target_cpu():
    from harness.studies.search import classify_limit

    gen = classify_limit(failing_step(valid=False, generator_reasons=["schedule lag p99 9 ms > 5 ms"]))
    assert gen["kind"] == "generator" and "schedule lag" in gen["detail"]
    err = classify_limit(failing_step(failed_metrics=["failed_rate"], failed_rate=0.067, errors={"HTTP 503": 107}))
    assert err["kind"] == "errors" and "6.7% of requests failed" in err["detail"] and "HTTP 503 x107" in err["detail"]
    lat = classify_limit(failing_step(failed_metrics=["latency"], p95_ms=230.0))
    assert lat["kind"] == "latency" and "p95 230.0 ms" in lat["detail"]
    thr = classify_limit(failing_step(throughput_short=True, achieved_rps=300.0))
    assert thr["kind"] == "throughput" and "achieved 300.0 of 400 rps" in thr["detail"]
    # the target in its own process used 1.75 of the 1.8 cores the generator left: CPU-bound
    cpu = classify_limit(failing_step(failed_metrics=["latency"], p95_ms=230.0, target_cpu_cores=1.75))
    assert cpu["kind"] == "target-cpu" and "symptom: latency" in cpu["detail"]
    idle = classify_limit(failing_step(failed_metrics=["latency"], target_cpu_cores=0.3))
    assert idle["kind"] == "latency" and "not CPU-saturated" in idle["detail"]
    # one Python process near one busy core (its GIL-bound ceiling) though a second core was free
    gil = classify_limit(failing_step(failed_metrics=["failed_rate"], failed_rate=0.06, target_cpu_cores=0.9))
    assert gil["kind"] == "target-cpu" and "near the one core" in gil["detail"] and "symptom: errors" in gil["detail"]


def test_search_reports_its_limit_and_min_knee_exit_codes():
    from harness.exitcodes import ExitCode
    from harness.studies.search import search_exit_code

    r = search(capacity_scenario(), SearchSettings(start_rate=10, precision=0.05, step_duration_s=10.0),
               run_step=fake_runner(137.0))
    assert r["status"] == "found" and r["limit"]["kind"] == "latency"
    assert "Limited by: latency" in r["message"] and r["limit"]["rate"] == r["bracket"][1]
    assert search_exit_code(r, min_knee=80) == ExitCode.OK
    assert search_exit_code(r, min_knee=200) == ExitCode.THRESHOLDS_FAILED
    g = search(capacity_scenario(), SearchSettings(start_rate=10, step_duration_s=1.0),
               run_step=fake_runner(1e9, generator_limit=700.0))
    assert g["status"] == "generator-limited" and g["at_least_rps"] == 640 and g["limit"]["kind"] == "generator"
    # the generator stopped the search, but valid steps already proved the knee >= 80
    assert search_exit_code(g, min_knee=80) == ExitCode.OK
    assert search_exit_code(g, min_knee=1000) == search_exit_code(g) == ExitCode.INVALID_RUN
