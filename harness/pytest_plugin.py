"""pytest integration: put a load scenario with thresholds into your own test suite.

Enable it with ``-p harness.pytest_plugin`` (or ``pytest_plugins = ["harness.pytest_plugin"]``
in your top-level ``conftest.py``; installed with the package it is registered as the
``harness`` plugin).  Two ways to write a test:

A marker — the test gets the finished run, and fails when a threshold failed (a test
*failure*, ``<failure>`` under ``--junitxml``, raised in the call phase before the body runs;
a run that could not start at all is a setup error)::

    @pytest.mark.load_scenario("cold-start", smoke=True)          # a packaged name or a file
    def test_cold_path_holds_the_budget(load_result):
        assert load_result.summary["latency"]["p95"] < 100

    @pytest.mark.load_scenario(target="mypkg.features:extract", payload="mypkg.features:make_window",
                               rate=50, duration="30s", thresholds={"latency": ["p(95)<100ms"]})
    def test_my_extractor(load_result): ...

A fixture you call (several runs in one test, or parameters computed in the test)::

    def test_under_load(run_load):
        r = run_load("constant-50", overrides={"profile.rate": 20}, duration="10s")
        assert r.passed, r.failures

Every run is the harness's own open-loop ``Run`` in-process (latency from the intended
start, HDR percentiles, the generator's self-check).  A run the generator could not carry
(invalid, exit 98) fails the test as *invalid*, not as a pass — unless
``allow_invalid=True``.  ``--harness-smoke`` runs every marked scenario with its ``smoke``
overrides; ``--harness-report-dir DIR`` writes each run's JSON and HTML report there.

The plug-in is registered as a ``pytest11`` entry point, so pytest loads it into *every*
session of every project where the package is installed: the harness itself (numpy,
hdrhistogram, prometheus_client, which reads ``PROMETHEUS_MULTIPROC_DIR`` once, at import)
is imported inside the functions, only when a load test runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

import pytest

from harness.exitcodes import ExitCode

__all__ = ["LoadResult", "run_load_scenario", "LoadThresholdsFailed"]


class LoadThresholdsFailed(AssertionError):
    """A load run missed its thresholds (or was invalid); the message lists them."""


@dataclass
class LoadResult:
    """A finished run: ``result`` is the full ``harness.result/1`` document."""

    result: Dict[str, Any]
    report_paths: List[Path] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.result["verdict"]["passed"])

    @property
    def thresholds_passed(self) -> bool:
        return bool(self.result["verdict"]["thresholds_passed"])

    @property
    def valid(self) -> bool:
        return bool(self.result["verdict"]["valid"])

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode(int(self.result["verdict"]["exit_code"]))

    @property
    def summary(self) -> Dict[str, Any]:
        """The ``all`` block of the summary (count, rates, latency/service_time/lag in ms)."""
        return self.result["summary"]["all"]

    @property
    def failures(self) -> List[str]:
        out = [f"{t['metric']} {t['expression']} (observed {'no data' if t['observed'] is None else round(t['observed'], 4)})"
               for t in self.result["thresholds"] if not t["ok"]]
        out += [f"invalid run: {r}" for r in self.result["generator"].get("reasons", [])]
        return out

    def percentile(self, p: float, metric: str = "latency") -> Optional[float]:
        """ms; the summary's p50/p90/p95/p99/p99.9, or computed from the histograms."""
        key = f"p{p:g}"
        s = self.summary.get(metric) or {}
        if key in s:
            return s[key]
        # lazy: this module is a pytest11 plug-in, loaded into every pytest session (module docstring)
        from harness.record.recorder import Recorder, value_at_percentile

        h = Recorder.decode(self.result["histograms"]).histogram(metric)
        return value_at_percentile(h, p) / 1000.0 if h.total_count else None

    def text(self) -> str:
        # lazy: this module is a pytest11 plug-in, loaded into every pytest session (module docstring)
        from harness.result.summary import format_summary

        return format_summary(self.result)


def _overrides(rate: Any = None, duration: Any = None, thresholds: Any = None, target: Any = None,
               payload: Any = None, overrides: Optional[Mapping[str, Any]] = None, **fields: Any) -> Dict[str, Any]:
    ov: Dict[str, Any] = {}
    for k, v in fields.items():
        ov[k] = v
    if target is not None:
        ov["target"] = target
    if payload is not None:
        ov["payload"] = payload
    if rate is not None:
        ov["profile.rate"] = rate
    if duration is not None:
        ov["duration"] = duration
    if thresholds is not None:
        ov["thresholds"] = thresholds
    ov.update(overrides or {})
    return ov


def run_load_scenario(scenario: Optional[str] = None, *, smoke: bool = False, env: Optional[Mapping[str, str]] = None,
                      report_dir: Optional[Path] = None, report_name: str = "load", check: bool = False,
                      allow_invalid: bool = False, run_options: Any = None, **kw: Any) -> LoadResult:
    """Run ``scenario`` (packaged name, file, or None for the defaults + ``kw``) in-process.

    ``kw``: ``rate``, ``duration``, ``thresholds``, ``target``, ``payload``, ``overrides``
    (dotted paths) or any top-level scenario field.  ``check``: raise
    :class:`LoadThresholdsFailed` when a threshold failed or the run was invalid."""
    # lazy: this module is a pytest11 plug-in, loaded into every pytest session (module docstring)
    from harness.config import library
    from harness.config.scenario import scenario_from_dict
    from harness.result.html import write_report
    from harness.result.schema import write_result
    from harness.run.runner import Run, RunOptions
    from harness.run.service import served

    ov = _overrides(**kw)
    if scenario is None:
        name = ov.pop("name", report_name)
        sc = scenario_from_dict({"name": name}, overrides=ov, env={} if env is None else env, source="pytest")
    else:
        sc = library.load(scenario, ov, {} if env is None else env, smoke=smoke)
    opts = run_options or RunOptions(metrics_port=None, progress="off", install_signal_handlers=False)
    with served(sc) as (aimed, _service):  # a scenario's service: started for this run
        res = LoadResult(Run(aimed, opts).execute())
    if report_dir is not None:
        report_dir = Path(report_dir)
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", report_name)[:120]
        res.report_paths = [write_result(res.result, report_dir / f"{stem}.json"),
                            write_report(res.result, report_dir / f"{stem}.html")]
    if check:
        _check(res, allow_invalid)
    return res


def _check(res: LoadResult, allow_invalid: bool) -> None:
    bad = [f for f in res.failures if allow_invalid is False or not f.startswith("invalid run")]
    if res.result["verdict"].get("aborted_by"):
        bad.append("aborted by " + ", ".join(res.result["verdict"]["aborted_by"]))
    if bad:
        sc = res.result["scenario"]
        where = f" (reports: {', '.join(map(str, res.report_paths))})" if res.report_paths else ""
        raise LoadThresholdsFailed(f"load scenario {sc['name']!r} -> {sc['target']}: " + "; ".join(bad) + where)


# ----------------------------------------------------------------------------- pytest hooks


def pytest_addoption(parser: Any) -> None:
    g = parser.getgroup("harness", "latency-budget load scenarios")
    g.addoption("--harness-smoke", action="store_true", default=False,
                help="run every @pytest.mark.load_scenario with its smoke (shortened) overrides")
    g.addoption("--harness-report-dir", default=None, help="write each load run's JSON and HTML report here")


def pytest_configure(config: Any) -> None:
    config.addinivalue_line(
        "markers",
        "load_scenario(scenario=None, *, smoke=False, rate=None, duration=None, thresholds=None, target=None, "
        "payload=None, overrides=None, allow_invalid=False): run a harness load scenario for this test "
        "(the load_result fixture); the test fails when its thresholds fail")


def _report_dir(config: Any) -> Optional[Path]:
    d = config.getoption("--harness-report-dir", default=None)
    return Path(d) if d else None


@pytest.fixture
def run_load(request: Any) -> Callable[..., LoadResult]:
    """``run_load(scenario=None, *, check=True, **overrides) -> LoadResult``."""
    count = [0]

    def run(scenario: Optional[str] = None, *, check: bool = True, **kw: Any) -> LoadResult:
        count[0] += 1
        kw.setdefault("smoke", bool(request.config.getoption("--harness-smoke", default=False)))
        return run_load_scenario(scenario, check=check, report_dir=_report_dir(request.config),
                                 report_name=f"{request.node.name}-{count[0]}", **kw)

    return run


@pytest.fixture
def load_result(request: Any) -> LoadResult:
    """The run of this test's ``@pytest.mark.load_scenario``; fails the test when it failed."""
    marker = request.node.get_closest_marker("load_scenario")
    if marker is None:
        raise pytest.UsageError("the load_result fixture needs @pytest.mark.load_scenario(...) on the test")
    kw = dict(marker.kwargs)
    scenario = marker.args[0] if marker.args else kw.pop("scenario", None)
    allow_invalid = bool(kw.pop("allow_invalid", False))
    if request.config.getoption("--harness-smoke", default=False):
        kw["smoke"] = True
    res = run_load_scenario(scenario, report_dir=_report_dir(request.config), report_name=request.node.name, **kw)
    request.node.stash[_JUDGE] = (res, allow_invalid)  # judged in the call phase: pytest_runtest_call
    return res


#: the marker's run, judged when the test is called (a fixture's exception is a setup *error*)
_JUDGE: "pytest.StashKey[tuple]" = pytest.StashKey()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: Any) -> None:
    """A marked test whose run missed its thresholds (or was invalid) *fails*, before its
    body runs: raised here, in the call phase, it is a test failure (JUnit ``<failure>``),
    where the same check in the ``load_result`` fixture was an error "failed on setup"."""
    judged = item.stash.get(_JUDGE, None)
    if judged is None:
        return
    try:
        _check(*judged)
    except LoadThresholdsFailed as exc:
        pytest.fail(str(exc), pytrace=False)
