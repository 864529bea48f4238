"""The scenario's ``service`` block is checked like every other field."""

from __future__ import annotations

import pytest

from harness.config.scenario import ScenarioError, scenario_from_dict

SERVICE = {"command": ["{python}", "-m", "workloads.cli", "serve", "--port", "{port}"],
           "ready": "http://127.0.0.1:{port}/readyz"}


def problems(data):
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict(data, env={})
    return info.value.problems


def test_service_is_normalised_and_round_trips():
    sc = scenario_from_dict({"target": "http://127.0.0.1:{port}/v1/features", "service": SERVICE}, env={})
    assert sc.service == {**SERVICE, "start_timeout": 60.0}
    assert scenario_from_dict(sc.to_dict(), env={}).service == sc.service
    assert scenario_from_dict({}, env={}).service is None


@pytest.mark.parametrize("data, problem", [
    ({"target": "http://127.0.0.1:{port}/x"}, "target: '{port}' is the port of a started service"),
    ({"service": {"command": []}}, "service.command: must be a non-empty list"),
    ({"service": {**SERVICE, "ready": "localhost/readyz"}}, "service.ready: must be an http(s) URL"),
    ({"service": {**SERVICE, "comand": "x"}}, "service.comand: unknown key (did you mean 'command'?)"),
    ({"service": {**SERVICE, "start_timeout": "soon"}}, "service.start_timeout:"),
    ({"service": "workloads serve"}, "service: must be a mapping"),
])
def test_bad_service_settings_name_the_field(data, problem):
    got = problems(data)
    assert any(p.startswith(problem) for p in got), got
