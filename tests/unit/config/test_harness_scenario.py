"""Scenario loading: precedence (CLI > env > file > default) and validation messages."""

from __future__ import annotations

import textwrap

import pytest

from harness.config import scenario as S
from harness.config.durations import format_duration, parse_duration
from harness.config.profiles import Profile, Users
from harness.config.scenario import ScenarioError, load_scenario, scenario_from_dict


def write(tmp_path, text):
    p = tmp_path / "scenario.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def problems(data, env=None, overrides=None):
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict(data, env=env or {}, overrides=overrides)
    return info.value.problems


def test_defaults_make_a_runnable_scenario():
    s = S.default_scenario()
    assert s.target == "features" and s.target_kind == "short"
    assert isinstance(s.profile, Profile) and s.profile.duration == s.duration == 30
    assert s.timeout == 5
    assert [(t.metric, t.expression) for t in s.parsed_thresholds] == [
        ("latency", "p(95)<100ms"), ("latency", "p(99)<200ms"), ("failed_rate", "rate<0.01"),
        ("throughput{outcome:ok}", "count>0")]
    assert s.failures == {"threshold": "rate<0.01", "source": "default", "judged": ["rate<0.01"]}
    assert s.to_dict()["profile"]["type"] == "constant"
    assert all(v == "default" for v in s.sources.values())


def test_yaml_file_full(tmp_path):
    p = write(
        tmp_path,
        """
        name: features-budget
        target: mypkg.service:predict
        payload: mypkg.payloads:random_window
        duration: 1m
        seed: 7
        profile:
          type: stages
          start_rate: 5
          stages:
            - {duration: 20s, target: 50}
            - {duration: 40s, target: 50}
        executor: {type: processes, workers: 2, threads: 8, max_in_flight: 64}
        timeout: 500ms
        thresholds:
          latency: ["p(95)<100ms", "p(99)<200ms"]
          "latency{target:features}": [{threshold: "p(99)<150", abortOnFail: true, delayAbortEval: 10s}]
          error_rate: rate<0.01
        faults: {latency_spike: {probability: 0.01, delay: 300ms}}
        """,
    )
    s = load_scenario(p, env={})
    assert s.name == "features-budget" and s.target_kind == "function"
    assert s.payload == "mypkg.payloads:random_window"
    assert s.duration == 60 and s.timeout == 0.5 and s.seed == 7
    assert s.profile.expected_count() == pytest.approx((5 + 50) / 2 * 20 + 50 * 40)
    assert s.executor == S.ExecutorSettings("processes", 2, 8, 64)
    assert len(s.parsed_thresholds) == 6 and s.parsed_thresholds[2].abort_on_fail  # + failed_rate, success guard
    assert s.faults == {"latency_spike": {"probability": 0.01, "delay": "300ms"}}
    assert s.sources["duration"] == str(p)
    assert s.sources["executor.threads"] == str(p)


def test_precedence_cli_over_env_over_file_over_default(tmp_path):
    p = write(
        tmp_path,
        """
        duration: 10s
        timeout: 2s
        profile: {type: constant, rate: 10}
        executor: {threads: 4}
        """,
    )
    env = {"HARNESS_PROFILE_RATE": "20", "HARNESS_TIMEOUT": "3s", "HARNESS_EXECUTOR_MAX_IN_FLIGHT": "99"}
    s = load_scenario(p, env=env, overrides={"profile.rate": 30, "executor.workers": None, "seed": 5})
    assert s.profile.rate_at(0) == 30  # CLI
    assert s.timeout == 3  # env beats file
    assert s.duration == 10  # file beats default
    assert s.executor.threads == 4 and s.executor.max_in_flight == 99 and s.executor.workers == 1
    assert s.seed == 5
    assert s.sources["profile.rate"] == "cli"
    assert s.sources["timeout"] == "env HARNESS_TIMEOUT"
    assert s.sources["duration"] == str(p)
    assert s.sources["executor.workers"] == "default"


def test_env_and_overrides_as_nested_mappings_and_profile_type_change():
    s = scenario_from_dict(
        {"profile": {"type": "constant", "rate": 5}, "duration": "20s"},
        env={"HARNESS_THRESHOLDS": '{"latency": ["p(95)<80ms"]}'},
        overrides={"profile": {"type": "ramp", "from_rate": 1, "to_rate": 9, "ramp_duration": "10s"}},
    )
    assert s.profile.kind == "ramp" and s.profile.duration == 20  # the old 'rate' is dropped, not an error
    # replaced whole, not merged with the defaults (the failure checks are always added)
    assert s.thresholds == {"latency": ["p(95)<80ms"], "failed_rate": ["rate<0.01"],
                            "throughput{outcome:ok}": ["count>0"]}


def test_stages_duration_comes_from_stages_unless_explicitly_conflicting():
    s = scenario_from_dict({"profile": {"type": "stages", "stages": [{"duration": "45s", "target": 5}]}}, env={})
    assert s.duration == 45
    assert problems({"duration": "1m", "profile": {"type": "stages", "stages": [{"duration": "45s", "target": 5}]}}) == [
        "duration: 1m conflicts with the profile: the stages add up to 45s"
    ]


def test_every_problem_reported_once_with_field_paths():
    got = problems(
        {
            "nme": "x",
            "target": "featurs",
            "payload": "not a function",
            "duration": "2x",
            "timeout": 0,
            "profile": {"type": "constant", "rate": -5},
            "executor": {"workers": 0, "max_inflight": 3, "type": "thread"},
            "thresholds": {"latency": ["p95<100"], "latncy": "avg<3"},
            "faults": ["x"],
            "seed": -1,
        }
    )
    assert got == [
        "nme: unknown key (did you mean 'name'?)",
        "target: 'featurs' is not a registered name, mixed, noop, module:function, path/to/file.py:function or an http(s) URL (did you mean 'features'?)",
        "payload: must be a registered payload generator (env_step, feature_window, feature_window_hot, mc_var), module:function or path/to/file.py:function, got 'not a function'",
        "duration: expected a duration like '30s', '2m', '500ms', '1h' or a number of seconds, got '2x'",
        "timeout: must be > 0, got 0",
        "profile.rate: must be > 0, got -5",
        "executor.max_inflight: unknown key (did you mean 'max_in_flight'?)",
        "executor.type: must be one of threads, processes, asyncio, got 'thread' (did you mean 'threads'?)",
        "executor.workers: must be >= 1, got 0",
        "thresholds.latency: 'p95<100': unknown aggregation 'p95' (did you mean 'p(95)'?)",
        "thresholds.latncy: unknown metric 'latncy' (did you mean 'latency'?)",
        "faults: must be a mapping of fault name -> settings, got ['x']",
        "seed: must be a non-negative integer, got -1",
    ]


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"profile": {"type": "constant", "rate": -5}}, "profile.rate: must be > 0, got -5"),
        ({"profile": {"type": "constant", "rate": 0}}, "profile.rate: must be > 0, got 0"),
        (
            {"duration": "1m", "profile": {"type": "ramp", "from_rate": 1, "to_rate": 5, "ramp_duration": "2m"}},
            "profile.ramp_duration: must be within duration (1m), got 2m",
        ),
        ({"profile": {"type": "constant", "rte": 5}}, "profile.rte: unknown key for a constant profile (did you mean 'rate'?)"),
        ({"profile": {"type": "spiky"}}, "profile.type: unknown profile type 'spiky' (did you mean 'spike'?)"),
        ({"duration": "-3s"}, "duration: must be > 0, got '-3s'"),
        ({"executor": {"workers": 4, "max_in_flight": 2}}, "executor.max_in_flight: must be >= executor.workers (4) so every worker can send, got 2"),
        ({"executor": {"threads": True}}, "executor.threads: must be an integer >= 1, got True"),
        ({"mix": {"features": 1}}, "mix: only applies to target 'mixed', not 'features'"),
        ({"target": "mixed", "mix": {"featres": 1}}, "mix.featres: unknown target (did you mean 'features'?)"),
        ({"target": "mixed", "mix": {"features": 0}}, "mix.features: weight must be a number > 0, got 0"),
        ({"target": ""}, "target: must be a registered name"),
        ({"name": ""}, "name: must be a non-empty string, got ''"),
    ],
)
def test_single_problem_messages(data, expected):
    got = problems(data)
    assert len(got) == 1 and got[0].startswith(expected), got


def test_problem_says_where_env_and_cli_values_came_from():
    got = problems({}, env={"HARNESS_PROFILE_RATE": "-7"}, overrides={"executor.threads": "abc"})
    assert got == [
        "profile.rate: must be > 0, got -7 (set by HARNESS_PROFILE_RATE)",
        "executor.threads: must be an integer >= 1, got 'abc' (set by the command line)",
    ]
    assert problems({}, env={"HARNESS_FAULTS": "{unclosed"})[0].startswith(
        "faults: environment variable HARNESS_FAULTS is not valid YAML"
    )


def test_targets_accepted():
    for target in ("features", "env-step", "risk-var", "pkg.mod:func", "http://localhost:8000/features"):
        assert scenario_from_dict({"target": target}, env={}).target == target
    s = scenario_from_dict({"target": "mixed", "mix": {"features": 3, "env-step": 1}}, env={})
    assert s.mix == {"features": 3.0, "env-step": 1.0}
    assert scenario_from_dict({"target": "https://svc/x"}, env={}).target_kind == "http"


def test_users_profile_and_poisson_seed_from_scenario():
    s = scenario_from_dict({"profile": {"type": "users", "vus": 5, "think_time": "100ms"}, "duration": "20s"}, env={})
    assert isinstance(s.profile, Users) and s.closed_loop and s.profile.duration == 20
    s = scenario_from_dict({"seed": 11, "profile": {"type": "constant", "rate": 50, "arrival": "poisson"}}, env={})
    assert s.profile.seed == 11


def test_file_errors(tmp_path):
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario(tmp_path / "missing.yaml", env={})
    with pytest.raises(ScenarioError, match="invalid YAML"):
        load_scenario(write(tmp_path, "name: [unclosed\n"), env={})
    with pytest.raises(ScenarioError, match="must be a YAML mapping"):
        load_scenario(write(tmp_path, "- a\n- b\n"), env={})
    assert load_scenario(write(tmp_path, ""), env={}).name == "default"


def test_error_message_lists_each_problem_on_its_own_line():
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict({"timeout": 0, "seed": "x"}, env={})
    assert str(info.value) == (
        "invalid scenario:\n  - timeout: must be > 0, got 0\n  - seed: must be a non-negative integer, got 'x'"
    )


def test_env_var_table_is_unambiguous_and_covers_profile_params():
    assert S.ENV_VARS["HARNESS_PROFILE_RATE"] == "profile.rate"
    assert S.ENV_VARS["HARNESS_EXECUTOR_MAX_IN_FLIGHT"] == "executor.max_in_flight"
    assert S.ENV_VARS["HARNESS_PROFILE_SPIKE_DURATION"] == "profile.spike_duration"
    assert len(set(S.ENV_VARS.values())) == len(S.ENV_VARS)


@pytest.mark.parametrize(
    "text, seconds",
    [("30s", 30), ("2m", 120), ("500ms", 0.5), ("1h", 3600), ("1m30s", 90), (45, 45), ("2.5", 2.5), ("250us", 0.00025), ("1µs", 1e-6)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "abc", "10 parsecs", "5x", True, None, [1], "inf"])
def test_parse_duration_rejects(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_format_duration():
    assert [format_duration(x) for x in (90, 0.25, 3600, 0, 1.5, 3661)] == ["1m30s", "250ms", "1h", "0s", "1.5s", "1h1m1s"]
