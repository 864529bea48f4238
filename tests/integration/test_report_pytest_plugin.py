"""The pytest plugin: a team's own test with a load scenario and thresholds passes when they
hold and fails (with the thresholds named) when they do not."""

from __future__ import annotations

import textwrap

import pytest

import harness.config.library  # noqa: F401  (imported before pytester snapshots sys.modules: numpy
import harness.result.html  # noqa: F401   cannot be imported twice in one process)
import harness.run.runner  # noqa: F401
import harness.result.summary  # noqa: F401
from tests.support import REPO_ROOT
from tests.support import targets_capacity  # noqa: F401
from harness.pytest_plugin import LoadThresholdsFailed, run_load_scenario

pytest_plugins = ["pytester"]



def _plugin_args() -> list:
    """``-p harness.pytest_plugin`` unless the installed package already registers it
    (entry point ``pytest11``): registering the same module twice is an error."""
    from importlib.metadata import entry_points

    if any(ep.value == "harness.pytest_plugin" for ep in entry_points(group="pytest11")):
        return []
    return ["-p", "harness.pytest_plugin"]


def test_plugin_marker_and_fixture(pytester):
    pytester.makepyfile(test_team=textwrap.dedent("""
        import pytest

        T = "tests.support.targets_capacity"
        FAST = dict(target=f"{T}:flagged", payload=f"{T}:ordinal", rate=40, duration="1s")

        # allow_invalid: a busy machine may void a run (the generator late), which says nothing
        # about the thresholds under test
        @pytest.mark.load_scenario(**FAST, thresholds={"latency": ["p(95)<100ms"], "fallback_rate": ["rate>0.1"]},
                                   allow_invalid=True)
        def test_meets_budget(load_result):
            assert load_result.thresholds_passed
            assert load_result.summary["count"] == 40
            assert load_result.percentile(95) < 100

        @pytest.mark.load_scenario(**{**FAST, "rate": 100}, thresholds={"error_rate": ["rate<0.01"]})
        def test_breaches_error_budget(load_result):
            pass  # every 50th call fails: 2 of 100 > 1 %, so the fixture fails this test

        def test_fixture(run_load):
            r = run_load(target=f"{T}:flagged", payload=f"{T}:ordinal", rate=30,
                         duration="1s", thresholds={"error_rate": ["rate<0.5"]}, allow_invalid=True)
            assert r.thresholds_passed and (r.passed or not r.valid)  # a loaded box may only void the run
            with pytest.raises(AssertionError, match="latency p\\\\(50\\\\)<0.001ms"):
                run_load(target=f"{T}:flagged", payload=f"{T}:ordinal", rate=30,
                         duration="1s", thresholds={"latency": ["p(50)<0.001ms"]})
    """))
    report_dir = pytester.path / "reports"
    res = pytester.inline_run(*_plugin_args(), "-p", "no:cacheprovider", f"--rootdir={pytester.path}",
                              "--harness-report-dir", str(report_dir), "-o", f"pythonpath={REPO_ROOT}")
    res.assertoutcome(passed=2, failed=1)
    failed = res.getreports("pytest_runtest_logreport")
    msg = next(str(r.longrepr) for r in failed if r.failed)
    assert "error_rate rate<0.01" in msg and "observed 0.02)" in msg
    assert (report_dir / "test_meets_budget.html").exists() and (report_dir / "test_meets_budget.json").exists()


def test_run_load_scenario_helper():
    r = run_load_scenario("warm-cache", smoke=True, duration="1s")
    assert r.summary["count"] == 10 and r.summary["cache_hit_rate"] == 1.0
    with pytest.raises(LoadThresholdsFailed, match="slow-model-no-fallback"):
        run_load_scenario("slow-model-no-fallback", smoke=True, duration="1s", check=True)


def test_failed_threshold_is_a_junit_failure_not_a_setup_error(pytester):
    """Under ``--junitxml`` a marked test whose threshold failed is a ``<failure>`` of the
    test (call phase), with the threshold and the observed value; a passing one has neither."""
    import xml.etree.ElementTree as ET

    pytester.makepyfile(test_ci=textwrap.dedent("""
        import pytest

        T = "tests.support.targets_capacity"
        FAST = dict(target=f"{T}:flagged", payload=f"{T}:ordinal", rate=20, duration="1s")

        @pytest.mark.load_scenario(**FAST, thresholds={"latency": ["p(50)<0.001ms"]}, allow_invalid=True)
        def test_too_strict(load_result):
            raise RuntimeError("the body must not run when the thresholds failed")

        @pytest.mark.load_scenario(**FAST, thresholds={"latency": ["p(95)<10s"]}, allow_invalid=True,
                                   overrides={"failures.threshold": "off"})
        def test_holds(load_result):
            assert load_result.thresholds_passed
    """))
    xml = pytester.path / "junit.xml"
    res = pytester.inline_run(*_plugin_args(), "-p", "no:cacheprovider", f"--rootdir={pytester.path}",
                              f"--junitxml={xml}", "-o", f"pythonpath={REPO_ROOT}")
    res.assertoutcome(passed=1, failed=1)
    reports = [r for r in res.getreports("pytest_runtest_logreport") if r.failed]
    assert [r.when for r in reports] == ["call"]  # not "setup"
    suite = ET.parse(xml).getroot().find("testsuite")
    assert suite.get("failures") == "1" and suite.get("errors") == "0" and suite.get("tests") == "2"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    failure = cases["test_too_strict"].find("failure")
    assert failure is not None and cases["test_too_strict"].find("error") is None
    assert "latency p(50)<0.001ms (observed" in failure.get("message")
    assert "RuntimeError" not in (failure.text or "") + failure.get("message")
    assert cases["test_holds"].find("failure") is None and cases["test_holds"].find("error") is None
