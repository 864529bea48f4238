"""``harness suite`` end to end, as a CI job runs it (a subprocess with its own TMPDIR):
three smoke scenarios (one meant to fail) exit 99 with three results, reports, the CI
files and suite.json, and leave no process or stack folder; a signal mid-suite stops the
running scenario softly, starts no further one, tears the services down and writes what
completed (exit 105); a health URL that never answers is exit 1 with everything stopped."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from pathlib import Path
from typing import Dict

import psutil
import pytest
import yaml

from tests.support.ci import require_binary
from tests.support.processes import HarnessProcess, all_gone

FAST = {"name": "fast", "target": "tests.support.targets_for_tests:noop", "duration": "30s",
        "profile": {"type": "constant", "rate": 50}, "thresholds": {"latency": ["p(95)<100ms"]},
        "smoke": {"duration": "1s", "profile.rate": 20}}
#: a cheap service with a health URL: the suite starts it, waits for it, stops it
WEB = {"name": "web", "command": ["{python}", "-m", "http.server", "--bind", "127.0.0.1", "{port}"],
       "ready": "http://127.0.0.1:{port}/", "start_timeout": "30s"}


class Suite(HarnessProcess):
    """``harness suite ARGS`` in ``tmp_path``, every descendant seen while it runs collected
    (the services, worker and stack processes are short-lived: they must all be gone at the end)."""

    finish_timeout = 120.0

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.seen: Dict[int, psutil.Process] = {}
        self.cmdlines: Dict[int, str] = {}
        # a generous lag bound: other work on a shared CI machine must not make a run invalid (98)
        super().__init__(tmp_path, ["suite", *args, "--lag-bound-ms", "500"])
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        while self.proc.poll() is None:
            for p in self.descendants():
                self.seen.setdefault(p.pid, p)
                # read again each time: a child first seen while its start-up wrapper was
                # still exec'ing the real program shows the wrapper's command line
                try:
                    cmdline = " ".join(p.cmdline())
                except psutil.Error:
                    continue
                if cmdline:
                    self.cmdlines[p.pid] = cmdline
            time.sleep(0.05)

    def assert_clean(self, timeout: float = 15.0) -> None:
        """No process the suite started is left, and no stack folder."""
        alive = all_gone(self.seen.values(), timeout)
        assert alive == [], f"processes alive after the suite exited: {alive}\n{self.text()}"
        assert self.stack_folders() == [], self.text()


@pytest.fixture(autouse=True)
def _nothing_left_behind():
    yield
    HarnessProcess.kill_started()


def _suite(tmp_path: Path, **data) -> Path:
    (tmp_path / "scenarios").mkdir(exist_ok=True)
    (tmp_path / "scenarios" / "fast.yaml").write_text(yaml.safe_dump(FAST))
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({"name": "trial", "results": "out", **data}, sort_keys=False))
    return path


def test_three_smoke_scenarios_one_meant_to_fail(tmp_path):
    path = _suite(tmp_path, smoke=True, services=[WEB], wait_for=[{"url": "{web.url}/", "timeout": "30s"}],
                  scenarios=["scenarios/fast.yaml", {"scenario": "scenarios/fast.yaml", "name": "fast-2", "rate": 30},
                             "resource-exhaustion"])
    h = Suite(tmp_path, str(path), "--junit", "out/junit.xml", "--summary-md", "out/summary.md")
    rc = h.finish()
    assert rc == 99, h.text()
    out = tmp_path / "out"
    summary = json.loads((out / "suite.json").read_text())
    assert summary["status"] == "completed" and summary["exit_code"] == 99
    assert [(s["name"], s["exit_code"]) for s in summary["scenarios"]] == [
        ("fast", 0), ("fast-2", 0), ("resource-exhaustion", 99)]
    for s in summary["scenarios"]:
        result = json.loads(Path(tmp_path, s["result"]).read_text())
        assert result["scenario"]["name"] == s["name"] and result["verdict"]["exit_code"] == s["exit_code"]
        assert Path(tmp_path, s["report"]).read_text().lstrip().lower().startswith("<!doctype html")
        assert s["wall_s"] > 0 and s["started_at"] and s["finished_at"]
    assert sorted(p.name for p in out.glob("*.json")) == ["fast-2.json", "fast.json", "resource-exhaustion.json",
                                                          "suite.json"]
    assert len(list(out.glob("*.html"))) == 3
    junit = (out / "junit.xml").read_text()
    assert junit.count("<testsuite ") == 3 and 'name="harness: resource-exhaustion"' in junit
    assert "Suite trial: THRESHOLDS FAILED (exit 99)" in (out / "summary.md").read_text()
    (svc,) = summary["services"]
    assert not psutil.pid_exists(svc["pid"]) or psutil.Process(svc["pid"]).status() == psutil.STATUS_ZOMBIE
    assert re.search(r"\[3/3\] resource-exhaustion: THRESHOLDS FAILED \(exit 99\)", h.text())
    assert "Traceback" not in h.text()
    h.assert_clean()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_a_signal_mid_suite_stops_writes_what_completed_and_tears_down(tmp_path, sig):
    path = _suite(tmp_path, smoke=True, services=[WEB], wait_for=["{web.url}/"], scenarios=[
        "scenarios/fast.yaml",
        {"scenario": "scenarios/fast.yaml", "name": "long", "smoke": False, "duration": "30s", "rate": 20},
        {"scenario": "scenarios/fast.yaml", "name": "after"}])
    h = Suite(tmp_path, str(path), "--progress", "plain", "--junit", "out/junit.xml")
    at = h.wait_line(r"\[2/3\] long:")
    h.wait_line(r"done [1-9]", after=at + 1)  # the long run's own progress: requests ran
    h.proc.send_signal(sig)
    rc = h.finish(60)
    assert rc == 105, h.text()
    summary = json.loads((tmp_path / "out" / "suite.json").read_text())
    assert summary["status"] == "interrupted" and summary["interrupted_by"] == sig.name
    assert [(s["name"], s["exit_code"]) for s in summary["scenarios"]] == [("fast", 0), ("long", 105), ("after", None)]
    long = json.loads((tmp_path / "out" / "long.json").read_text())
    assert long["status"] == "interrupted" and 0 < long["summary"]["all"]["count"] < 600
    assert (tmp_path / "out" / "long.html").exists() and not (tmp_path / "out" / "after.json").exists()
    assert summary["scenarios"][2]["verdict"] == "not run"
    assert "skipped" in (tmp_path / "out" / "junit.xml").read_text()
    assert "stopping services: web" in h.text() and "Traceback" not in h.text()
    h.assert_clean()


def test_a_signal_while_a_service_starts_stops_it(tmp_path):
    slow = {"name": "slow", "command": ["{python}", "-c", "import time; time.sleep(60)"],
            "ready": "http://127.0.0.1:{port}/", "start_timeout": "60s"}
    path = _suite(tmp_path, smoke=True, services=[slow], scenarios=["scenarios/fast.yaml"])
    h = Suite(tmp_path, str(path))
    h.wait_line("starting service slow")
    deadline = time.monotonic() + 30
    while not any("time.sleep(60)" in " ".join(p.cmdline()) for p in h.descendants() if p.is_running()):
        assert time.monotonic() < deadline, h.text()
        time.sleep(0.05)
    h.proc.send_signal(signal.SIGTERM)
    assert h.finish(30) == 105, h.text()
    summary = json.loads((tmp_path / "out" / "suite.json").read_text())
    assert summary["status"] == "interrupted" and summary["counts"]["not_run"] == 1
    h.assert_clean()


def test_a_health_url_that_never_answers_is_an_error_with_everything_stopped(tmp_path):
    path = _suite(tmp_path, services=[WEB], wait_for=[{"url": "{web.url}/nothing-here", "timeout": "1s"}],
                  scenarios=["scenarios/fast.yaml"])
    h = Suite(tmp_path, str(path))
    assert h.finish() == 1, h.text()
    summary = json.loads((tmp_path / "out" / "suite.json").read_text())
    assert summary["status"] == "setup-failed" and "did not answer 2xx within 1s (last: HTTP 404)" in \
        summary["setup_error"]
    assert summary["scenarios"][0]["verdict"] == "not run"
    h.assert_clean()


def test_a_local_stack_per_scenario_is_torn_down(tmp_path):
    require_binary("prometheus", "prometheus")
    require_binary("prometheus-alertmanager", "prometheus-alertmanager")
    path = _suite(tmp_path, smoke=True, stack="local", scenarios=["scenarios/fast.yaml"])
    h = Suite(tmp_path, str(path))
    assert h.finish() == 0, h.text()
    result = json.loads((tmp_path / "out" / "fast.json").read_text())
    assert result["stack"] and result["stack"]["prometheus_url"].startswith("http://127.0.0.1:")
    assert any("alertmanager" in c for c in h.cmdlines.values()), h.cmdlines
    h.assert_clean()
