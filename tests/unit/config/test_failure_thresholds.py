"""Failures always count (scenario side): the failure threshold is added to every scenario,
``--threshold`` replaces only its own metric, and turning failures off is explicit and echoed."""

from __future__ import annotations

import pytest

from harness.cli.args import scenario_overrides
from harness.config.scenario import ScenarioError, scenario_from_dict


def load(data=None, env=None, **ov):
    return scenario_from_dict(data or {}, overrides=ov or None, env=env or {})


def judged(sc):
    return [(t.metric, t.expression) for t in sc.parsed_thresholds]


FILE = {"thresholds": {"latency": ["p(95)<100ms"], "error_rate": "rate<0.05", "throughput": ["rate>=76"]}}


def test_failure_threshold_is_added_to_a_scenario_that_does_not_state_one():
    sc = load(FILE)
    assert ("failed_rate", "rate<0.01") in judged(sc)
    assert ("throughput{outcome:ok}", "count>0") in judged(sc)
    assert sc.to_dict()["failures"] == {"threshold": "rate<0.01", "source": "default", "judged": ["rate<0.01"]}


def test_a_stated_failed_rate_replaces_the_default_one():
    sc = load({"thresholds": {"failed_rate": ["rate<0.05"]}})
    assert [e for m, e in judged(sc) if m == "failed_rate"] == ["rate<0.05"]
    assert load({"failures": {"threshold": "rate<2%"}}).failures["judged"] == ["rate<2%"]


def test_cli_threshold_replaces_only_its_own_metric():
    ov = scenario_overrides({}, thresholds=[("latency", "p(95)<10s"), ("latency", "p(99)<20s")])
    sc = scenario_from_dict(FILE, overrides=ov, env={})
    got = judged(sc)
    assert ("latency", "p(95)<10s") in got and ("latency", "p(99)<20s") in got
    assert ("latency", "p(95)<100ms") not in got                     # same metric: replaced
    assert ("error_rate", "rate<0.05") in got and ("throughput", "rate>=76") in got  # others kept
    assert ("failed_rate", "rate<0.01") in got
    assert sc.sources["thresholds"] == "cli"


def test_cli_threshold_matches_tagged_metrics_by_meaning_and_off_removes():
    data = {"thresholds": {"latency{target:a}": "p(95)<1s", "latency": "p(95)<1s"}}
    sc = load(data, thresholds={"latency{ target: a }": "p(95)<2s", "latency": False})
    assert judged(sc)[:1] == [("latency{ target: a }", "p(95)<2s")]
    assert not [m for m, _ in judged(sc) if m == "latency"]


def test_env_thresholds_still_replace_the_files_whole():
    sc = load(FILE, env={"HARNESS_THRESHOLDS": '{"latency": ["p(95)<80ms"]}'})
    assert {m for m, _ in judged(sc)} == {"latency", "failed_rate", "throughput{outcome:ok}"}


@pytest.mark.parametrize("off", [False, "off", "none"])
def test_failure_threshold_off_is_explicit_and_echoed(off):
    sc = load({"thresholds": {"failed_rate": "rate<0.05", "latency": "p(95)<1s"}}, **{"failures.threshold": off})
    assert not sc.failure_threshold_on
    assert "failed_rate" not in {m for m, _ in judged(sc)}           # off: not judged, even when listed
    assert ("throughput{outcome:ok}", "count>0") in judged(sc)         # an all-failed run still fails
    assert sc.to_dict()["failures"] == {"threshold": "off", "source": "cli", "judged": []}


def test_failures_round_trip_through_the_result():
    for data in ({}, {"failures": {"threshold": "off"}}, {"thresholds": {"failed_rate": "rate<0.2"}}):
        sc = load(data)
        again = scenario_from_dict(sc.to_dict(), env={})
        assert judged(again) == judged(sc) and again.failures["threshold"] == sc.failures["threshold"]


@pytest.mark.parametrize("failures, problem", [
    ({"threshold": "p(95)<1s"}, "failures.threshold: 'p(95)<1s': aggregation 'p(N)' does not apply"),
    ({"threshold": "rate<2"}, "failures.threshold: 'rate<2': a rate is a fraction"),
    ({"treshold": "off"}, "failures.treshold: unknown key (did you mean 'threshold'?)"),
    ("off", "failures: must be a mapping"),
])
def test_bad_failures_settings_name_the_field(failures, problem):
    with pytest.raises(ScenarioError) as info:
        load({"failures": failures})
    assert any(p.startswith(problem) for p in info.value.problems), info.value.problems


def test_cli_failed_rate_off_turns_the_failure_threshold_off():
    sc = load({"thresholds": {"failed_rate": "rate<0.05"}}, thresholds={"failed_rate": False})
    assert not sc.failure_threshold_on and sc.failures["source"] == "cli"
    assert "failed_rate" not in {m for m, _ in judged(sc)}
