"""Inputs bounded up front: rates, durations, request counts and thread counts beyond what a
run can schedule are refused with the field and the limit; scenario files that are not
UTF-8 YAML (or nest too deeply) are a ScenarioError naming the file, never a traceback."""

from __future__ import annotations

import pytest

from harness.config import profiles
from harness.config.durations import MAX_DURATION_S, parse_duration
from harness.config.profiles import MAX_RATE, MAX_REQUESTS, MAX_SPIKE_PERIODS, MAX_VUS, ProfileError
from harness.config.scenario import (MAX_IN_FLIGHT, MAX_THREADS, MAX_WORKERS, ScenarioError, load_scenario,
                                     read_scenario_file)


def problems(**overrides):
    with pytest.raises(ScenarioError) as info:
        load_scenario(None, overrides, env={})
    return info.value.problems


@pytest.mark.parametrize("value", ["100000000h", 1e300, "31d", "1e300", -1e300])
def test_durations_beyond_30_days_are_refused(value):
    with pytest.raises(ValueError, match="at most 30d"):
        parse_duration(value)


def test_30_days_is_accepted():
    assert parse_duration("30d") == MAX_DURATION_S == parse_duration("720h")


@pytest.mark.parametrize("field", ["duration", "timeout"])
def test_a_scenario_names_the_duration_field_over_the_limit(field):
    (problem,) = problems(**{field: "100000000h"})
    assert problem.startswith(f"{field}: must be at most 30d")


@pytest.mark.parametrize("spec, field", [
    ({"type": "constant", "rate": 1e9, "duration": "3s"}, "rate"),
    ({"type": "constant", "rate": 1e300, "duration": "3s"}, "rate"),
    ({"type": "ramp", "from_rate": 0, "to_rate": 2e6, "ramp_duration": "1s"}, "to_rate"),
    ({"type": "spike", "base_rate": 1, "spike_rate": 5e6, "spike_duration": "1s", "period": "2s",
      "duration": "4s"}, "spike_rate"),
    ({"type": "step", "rates": [1, 2e6], "duration": "2s"}, "rates[1]"),
    ({"type": "step", "target_rate": 9e5, "steps": [1, 2], "duration": "2s"}, "steps"),
    ({"type": "stages", "stages": [{"duration": "1s", "target": 3e6}]}, "stages[0].target"),
])
def test_rates_beyond_the_limit_are_refused_naming_the_field(spec, field):
    with pytest.raises(ProfileError) as info:
        profiles.from_spec(spec)
    assert any(p.startswith(f"{field}: ") and f"{MAX_RATE:g}" in p for p in info.value.problems), info.value.problems


def test_the_highest_rate_is_accepted():
    assert profiles.constant(MAX_RATE, 1.0).count() == 1_000_000


def test_a_schedule_of_more_requests_than_the_limit_is_refused():
    with pytest.raises(ProfileError, match="more than the 1e\\+10"):
        profiles.constant(MAX_RATE, "30d")
    assert profiles.constant(MAX_REQUESTS / 86400 / 30, "30d")  # at the limit: fine
    (problem,) = problems(**{"duration": "30d", "profile.rate": 1e6})
    assert problem.startswith("profile.duration: ") and "requests" in problem


def test_users_and_spike_periods_are_bounded():
    with pytest.raises(ProfileError, match=f"vus: must be at most {MAX_VUS}"):
        profiles.users(MAX_VUS + 1, 10.0)
    with pytest.raises(ProfileError, match="period: "):
        profiles.spike(1, 2, "1ms", "2ms", "30d")
    assert MAX_SPIKE_PERIODS >= 1000


@pytest.mark.parametrize("key, most", [("workers", MAX_WORKERS), ("threads", MAX_THREADS),
                                       ("max_in_flight", MAX_IN_FLIGHT)])
def test_executor_counts_are_bounded(key, most):
    over = {"executor.workers": 1, f"executor.{key}": most + 1}
    if key == "workers":
        over["executor.max_in_flight"] = most + 1
    found = problems(**over)
    assert any(p.startswith(f"executor.{key}: must be at most {most:,}") for p in found), found


def test_a_deep_yaml_file_is_a_scenario_error_naming_it(tmp_path):
    f = tmp_path / "deep.yaml"
    f.write_text("target: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ScenarioError, match="deep.yaml: invalid YAML: nested too deeply"):
        read_scenario_file(f)


def test_a_non_utf8_file_is_a_scenario_error_naming_it(tmp_path):
    f = tmp_path / "latin1.yaml"
    f.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ScenarioError, match="latin1.yaml: not UTF-8"):
        read_scenario_file(f)


def test_a_date_yaml_cannot_build_is_a_scenario_error(tmp_path):
    f = tmp_path / "date.yaml"
    f.write_text("name: 2024-13-45\n")
    with pytest.raises(ScenarioError, match="date.yaml: invalid YAML"):
        read_scenario_file(f)


def test_a_deep_environment_value_names_its_variable():
    with pytest.raises(ScenarioError) as info:
        load_scenario(None, env={"HARNESS_NAME": "[" * 5000})
    assert any("HARNESS_NAME" in p and "nested too deeply" in p for p in info.value.problems)
