"""``harness suite``: the suite file's strict schema (every bad field named, exit 2), the
plan (files relative to the suite, smoke variants, per-entry overrides, service
placeholders, baselines), the worst-code order and the packaged seeds-ci suite."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from harness.cli.main import main
from harness.exitcodes import ExitCode
from harness.studies.suite import (SEVERITY, SUITES_DIR, SuiteError, load_suite, parse_suite, plan_suite,
                                   suite_junit, suite_markdown, suite_names, worst_exit_code)

ROOT = Path(__file__).resolve().parents[3]

FAST = {"name": "fast", "target": "tests.support.targets_for_tests:noop", "duration": "30s",
        "profile": {"type": "constant", "rate": 50}, "thresholds": {"latency": ["p(95)<100ms"]},
        "smoke": {"duration": "1s", "profile.rate": 20}}


def _problems(data, path=None):
    with pytest.raises(SuiteError) as exc:
        parse_suite(data, path=path)
    return exc.value.problems


def _write(folder: Path, name: str, data) -> Path:
    p = folder / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


# ------------------------------------------------------------------------------ schema


def test_a_minimal_suite_gets_defaults():
    s = parse_suite({"scenarios": ["cold-start"]}, path=Path("/x/nightly.yaml"))
    assert s.name == "nightly" and s.stack == "none" and not s.smoke and not s.fail_fast
    assert s.results == Path("results/nightly") and s.baseline is None
    assert [e.scenario for e in s.entries] == ["cold-start"]


def test_unknown_keys_are_named_with_a_suggestion():
    probs = _problems({"scenarios": [{"scenario": "cold-start", "durration": "5s"}], "smoek": True,
                       "services": [{"name": "a", "command": ["x"], "readdy": "http://h/"}],
                       "wait_for": [{"url": "http://h/", "timout": "5s"}]})
    assert "smoek: unknown key (did you mean 'smoke'?)" in probs
    assert "scenarios[0].durration: unknown key (did you mean 'duration'?)" in probs
    assert "services[0].readdy: unknown key (did you mean 'ready'?)" in probs
    assert "wait_for[0].timout: unknown key (did you mean 'timeout'?)" in probs


@pytest.mark.parametrize("data, expected", [
    ({"smoke": "yes"}, "smoke: must be true or false, got 'yes'"),
    ({"fail_fast": 1}, "fail_fast: must be true or false, got 1"),
    ({"stack": "locale"}, "stack: must be one of none, local, auto, got 'locale' (did you mean 'local'?)"),
    ({"prometheus": "prom:9090"}, "prometheus: must be an http(s) URL of an existing Prometheus, got 'prom:9090'"),
    ({"results": 3}, "results: must be a non-empty string, got 3"),
    ({"scenarios": "cold-start"}, "scenarios: must be a list, got 'cold-start'"),
    ({"scenarios": []}, "scenarios: must list at least one scenario"),
    ({"scenarios": [{"scenario": "cold-start", "rate": "fast"}]}, "scenarios[0].rate: must be a number, got 'fast'"),
    ({"scenarios": [{"scenario": "cold-start", "rate": 0}]}, "scenarios[0].rate: must be > 0, got 0"),
    ({"scenarios": [{"scenario": "cold-start", "duration": "soon"}]}, "scenarios[0].duration:"),
    ({"scenarios": [{"scenario": "cold-start", "vus": 0}]}, "scenarios[0].vus: must be >= 1, got 0"),
    ({"scenarios": [{"scenario": "cold-start", "smoke": "no"}]}, "scenarios[0].smoke: must be true or false, got 'no'"),
    ({"scenarios": [{"scenario": "cold-start", "set": ["timeout=2s"]}]}, "scenarios[0].set: must map scenario fields"),
    ({"scenarios": [{"scenario": "cold-start", "service": True}]}, "scenarios[0].service: only `false`"),
    ({"scenarios": [{"scenario": "cold-start", "name": "a b"}]}, "scenarios[0].name: letters, digits"),
    ({"scenarios": [{"name": "x"}]}, "scenarios[0].scenario: required"),
    ({"scenarios": [7]}, "scenarios[0]: must be a scenario name, a file, or a mapping"),
    ({"services": [{"name": "a", "command": "serve"}]}, "services[0].command: must be a non-empty list"),
    ({"services": [{"command": ["x"]}]}, "services[0].name: required"),
    ({"services": [{"name": "a", "command": ["x"], "port": 70000}]}, "services[0].port: must be at most 65535"),
    ({"services": [{"name": "a", "command": ["x"], "start_timeout": "-1s"}]}, "services[0].start_timeout:"),
    ({"services": [{"name": "a", "command": ["x"]}, {"name": "a", "command": ["y"]}]},
     "services[1].name: 'a' is already the name of another service"),
    ({"wait_for": [{"url": "localhost:8000/readyz"}]}, "wait_for[0].url: must be an http(s) URL"),
    ({"wait_for": [{"url": "http://h/", "timeout": "never"}]}, "wait_for[0].timeout:"),
])
def test_wrong_types_are_named(data, expected):
    probs = _problems({"scenarios": ["cold-start"], **data})
    assert any(p.startswith(expected) for p in probs), probs


def test_a_placeholder_must_name_a_service():
    probs = _problems({"services": [{"name": "reference", "command": ["x"]}],
                       "wait_for": ["{refrence.url}/readyz"],
                       "scenarios": [{"scenario": "cold-start", "target": "http://127.0.0.1:{api.port}/v1"}]})
    assert any(p.startswith("wait_for[0].url: '{refrence.url}' names no service of this suite (did you mean "
                            "'reference'?)") for p in probs), probs
    assert any(p.startswith("scenarios[0].target: '{api.port}' names no service") for p in probs), probs


def test_an_external_prometheus_excludes_a_local_stack():
    probs = _problems({"scenarios": ["cold-start"], "stack": "local", "prometheus": "http://prom:9090"})
    assert any(p.startswith("prometheus: an external Prometheus and `stack: local` exclude each other") for p in probs)
    s = parse_suite({"scenarios": ["cold-start"], "prometheus": "http://prom:9090"})
    assert s.stack == "external" and s.prometheus_url == "http://prom:9090"


def test_every_problem_is_reported_at_once():
    probs = _problems({"smoke": 1, "stack": 2, "scenarios": [{"scenario": "a", "rate": "x"}, {"bogus": 1}]})
    assert len(probs) >= 4, probs


# ------------------------------------------------------------------------------ the plan


def test_the_plan_resolves_files_next_to_the_suite_and_applies_smoke_and_overrides(tmp_path):
    _write(tmp_path, "scenarios/fast.yaml", FAST)
    path = _write(tmp_path, "suite.yaml", {
        "smoke": True, "results": str(tmp_path / "out"),
        "services": [{"name": "web", "command": ["{python}", "-m", "http.server", "{port}"], "port": 45678}],
        "scenarios": ["scenarios/fast.yaml",
                      {"scenario": "scenarios/fast.yaml", "name": "fast-http", "rate": 7, "smoke": False,
                       "duration": "3s", "target": "{web.url}/x", "set": {"timeout": "2s"}},
                      "resource-exhaustion"]})
    suite, planned, ports = plan_suite(load_suite(str(path)))
    assert ports == {"web": 45678}
    assert [p.name for p in planned] == ["fast", "fast-http", "resource-exhaustion"]
    fast, http, meant = (p.scenario for p in planned)
    assert fast.duration == 1.0 and fast.profile.params["rate"] == 20  # its smoke block
    assert http.duration == 3.0 and http.profile.params["rate"] == 7 and http.timeout == 2.0 and http.name == "fast-http"
    assert http.target == "http://127.0.0.1:45678/x"
    assert meant.duration == 2.0  # the packaged smoke variant
    assert planned[1].result_path == tmp_path / "out" / "fast-http.json"
    assert planned[1].report_path == tmp_path / "out" / "fast-http.html"


def test_cli_flags_override_the_file(tmp_path):
    _write(tmp_path, "fast.yaml", FAST)
    path = _write(tmp_path, "suite.yaml", {"results": "a", "scenarios": ["fast.yaml"]})
    suite, planned, _ = plan_suite(load_suite(str(path)), smoke=True, results=tmp_path / "b")
    assert suite.smoke and planned[0].scenario.duration == 1.0 and planned[0].result_path == tmp_path / "b/fast.json"


def test_scenario_problems_are_reported_before_anything_starts(tmp_path):
    _write(tmp_path, "fast.yaml", FAST)
    path = _write(tmp_path, "suite.yaml", {"scenarios": [
        {"scenario": "fast.yaml", "set": {"profile.rte": 3}}, "cold-strat", "fast.yaml", "fast.yaml"]})
    with pytest.raises(SuiteError) as exc:
        plan_suite(load_suite(str(path)))
    text = "\n".join(exc.value.problems)
    assert "scenarios[0] (fast.yaml): profile.rte: unknown key" in text
    assert "scenarios[1] (cold-strat): scenario: 'cold-strat' is neither a file nor a packaged scenario" in text
    assert "scenarios[3] (fast.yaml): name 'fast' is also scenarios[2]'s" in text


def test_smoke_needs_a_smoke_block(tmp_path):
    _write(tmp_path, "long.yaml", {k: v for k, v in FAST.items() if k != "smoke"})
    path = _write(tmp_path, "suite.yaml", {"smoke": True, "scenarios": ["long.yaml"]})
    with pytest.raises(SuiteError, match=r"scenarios\[0\] \(long.yaml\): smoke: this scenario has no smoke: block"):
        plan_suite(load_suite(str(path)))
    path = _write(tmp_path, "suite.yaml", {"smoke": True, "scenarios": [{"scenario": "long.yaml", "smoke": False}]})
    assert plan_suite(load_suite(str(path)))[1][0].scenario.duration == 30.0


def test_service_false_drops_the_scenarios_own_service(tmp_path):
    base = {"services": [{"name": "reference", "command": ["x"]}]}
    path = _write(tmp_path, "a.yaml", {**base, "scenarios": [
        {"scenario": "max-throughput", "service": False, "target": "{reference.url}/v1/features"}]})
    sc = plan_suite(load_suite(str(path)))[1][0].scenario
    assert sc.service is None and sc.target.startswith("http://127.0.0.1:") and "{" not in sc.target
    path = _write(tmp_path, "b.yaml", {**base, "scenarios": [{"scenario": "max-throughput", "service": False}]})
    with pytest.raises(SuiteError, match="is the port of the scenario's own service"):
        plan_suite(load_suite(str(path)))
    path = _write(tmp_path, "c.yaml", {"scenarios": ["max-throughput"]})
    assert plan_suite(load_suite(str(path)))[1][0].scenario.service is not None  # its own, per scenario


def test_baselines_are_found_by_name_and_read_first(tmp_path):
    _write(tmp_path, "fast.yaml", FAST)
    (tmp_path / "base").mkdir()
    path = _write(tmp_path, "suite.yaml", {"baseline": str(tmp_path / "base"),
                                            "scenarios": ["fast.yaml", {"scenario": "fast.yaml", "name": "other"}]})
    (tmp_path / "base" / "other.json").write_text("{not json")
    with pytest.raises(SuiteError, match=r"scenarios\[1\] \(fast.yaml\): baseline .*other.json"):
        plan_suite(load_suite(str(path)))
    (tmp_path / "base" / "other.json").unlink()
    _, planned, _ = plan_suite(load_suite(str(path)))
    assert [p.baseline_path for p in planned] == [None, None]  # no file: not gated
    (tmp_path / "base.txt").write_text("x")
    with pytest.raises(SuiteError, match="is not a folder"):
        plan_suite(load_suite(str(path)), baseline=tmp_path / "base.txt")


# ------------------------------------------------------------------------------ verdicts and outputs


def test_worst_exit_code_order():
    order = [ExitCode.OK, ExitCode.REGRESSED, ExitCode.THRESHOLDS_FAILED, ExitCode.INVALID_RUN, ExitCode.USAGE,
             ExitCode.ERROR, ExitCode.INTERRUPTED]
    for i, better in enumerate(order):
        for worse in order[i:]:
            assert worst_exit_code([better, worse]) == worse
            assert worst_exit_code([worse, better]) == worse
    assert worst_exit_code([]) == ExitCode.OK
    assert worst_exit_code([0, 99, 0]) == 99
    assert worst_exit_code([99, 3]) == 3  # an unknown code ranks with ERROR, above a known failure
    assert set(SEVERITY) == {int(c) for c in ExitCode}


def test_outputs_of_scenarios_without_a_result():
    summary = {"name": "s", "status": "interrupted", "exit_code": 105, "verdict": "INTERRUPTED", "wall_s": 1.0,
               "counts": {"passed": 0, "failed": 1, "not_run": 1, "scenarios": 2},
               "scenarios": [{"name": "a", "exit_code": 1, "verdict": "ERROR", "error": "service died", "wall_s": 0.5},
                             {"name": "b", "exit_code": None, "verdict": "not run"}]}
    xml = suite_junit(summary, {}, {})
    assert xml.count("<testsuite ") == 2 and 'errors="1"' in xml and 'skipped="1"' in xml and "service died" in xml
    md = suite_markdown(summary, {}, {})
    assert "Suite s: INTERRUPTED (exit 105)" in md and "| b | not run | - |" in md


# ------------------------------------------------------------------------------ packaged suites and the CLI


def test_seeds_ci_is_packaged_and_valid():
    assert "seeds-ci" in suite_names()
    suite, planned, ports = plan_suite(load_suite("seeds-ci"), smoke=True)
    assert suite.services and suite.wait_for and suite.baseline is not None and suite.results
    assert [p.name for p in planned][:1] == ["features-http"]
    assert planned[0].scenario.target == f"http://127.0.0.1:{ports['reference']}/v1/features"
    assert all(p.scenario.duration <= 5 for p in planned)


def test_pyproject_ships_the_suites():
    text = (ROOT / "pyproject.toml").read_text()  # (tomllib is 3.11+; the project supports 3.10)
    section = text[text.index("[tool.setuptools.package-data]"):]
    globs = ast.literal_eval(re.search(r"^harness\s*=\s*(\[.*?\])\s*$", section, re.M).group(1))
    shipped = {p for g in globs for p in (ROOT / "harness").glob(g)}
    assert set(SUITES_DIR.glob("*.yaml")) <= shipped


def test_cli_bad_suite_exits_2_naming_the_field(tmp_path, capsys):
    path = _write(tmp_path, "suite.yaml", {"scenarios": [{"scenario": "cold-start", "rate": "fast"}], "smoek": 1})
    assert main(["suite", str(path)]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "scenarios[0].rate: must be a number, got 'fast'" in err and "smoek: unknown key" in err
    assert "Traceback" not in err
    assert main(["suite", "seeds-cj"]) == ExitCode.USAGE
    assert "did you mean 'seeds-ci'?" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("scenarios: [a\n")
    assert main(["suite", str(tmp_path / "bad.yaml")]) == ExitCode.USAGE
    assert "is not valid YAML" in capsys.readouterr().err


def test_cli_check_and_list(capsys):
    assert main(["suite", "seeds-ci", "--check", "--smoke"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "suite seeds-ci: valid" in out and "features-http: http://127.0.0.1:" in out
    assert main(["suite", "--list"]) == ExitCode.OK
    assert "seeds-ci" in capsys.readouterr().out
    assert main(["suite", "seeds-ci", "--check", "--update-baselines", "--baseline", "x"]) == ExitCode.OK


def test_the_readme_example_is_a_valid_suite():
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## The seeds' CI flow in one command"):]
    block = section[section.index("```yaml\n") + 8:]
    s = parse_suite(yaml.safe_load(block[:block.index("```")]), path=Path("perf/nightly.yaml"))
    assert s.name == "nightly" and s.stack == "local" and [sv.name for sv in s.services] == ["reference"]
    assert [e.scenario for e in s.entries] == ["cold-start", "scenarios/checkout.yaml", "max-throughput"]
    assert s.entries[2].own_service is False


def test_cli_results_folder_that_cannot_be_made_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    _write(tmp_path, "fast.yaml", FAST)
    path = _write(tmp_path, "suite.yaml", {"scenarios": ["fast.yaml"], "results": str(tmp_path / "file" / "out")})
    assert main(["suite", str(path)]) == ExitCode.USAGE
    assert "results: cannot create" in capsys.readouterr().err
