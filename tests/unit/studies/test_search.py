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
    assert [t.expression for t in st.parsed_thresholds] == ["p(95)<40ms", "rate<0.01"]
