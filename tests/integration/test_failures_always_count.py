"""Failures always count: a run whose every call timed out or failed never passes on a
latency threshold alone, ``--threshold`` replaces only its own metric, and turning the
failure threshold off is echoed (summary and result)."""

from __future__ import annotations

import json

import pytest

from harness.cli.main import main

TARGETS = '''
import time


def always_fails():
    raise RuntimeError("down")


def too_slow():
    time.sleep(0.3)
'''


@pytest.fixture()
def targets(tmp_path):
    path = tmp_path / "failing_targets.py"
    path.write_text(TARGETS)
    return path


def run(tmp_path, *args):
    out = tmp_path / "result.json"
    code = main(["run", "--progress", "off", "--no-metrics", "--out", str(out), "--duration", "1s", "--rate", "10",
                 "--set", "thresholds={}", *args])
    return code, json.loads(out.read_text())


@pytest.mark.parametrize("target, timeout, threshold", [
    ("too_slow", "100ms", "latency=p(95)<10s"),     # every call times out
    ("always_fails", "5s", "latency=p(95)<100ms"),  # every call fails at once
])
def test_every_call_failed_with_only_a_latency_threshold_exits_99(tmp_path, targets, capsys, target, timeout,
                                                                   threshold):
    code, result = run(tmp_path, "--target", f"{targets}:{target}", "--timeout", timeout, "--threshold", threshold)
    assert code == 99, capsys.readouterr().out
    outcomes = result["summary"]["all"]["outcomes"]
    assert outcomes["ok"] == 0 and result["summary"]["all"]["failed_rate"] == 1.0
    by_metric = {t["metric"]: t for t in result["thresholds"]}
    assert by_metric["latency"]["ok"] is True and by_metric["latency"]["covers"] == "all outcomes"
    assert by_metric["failed_rate"]["ok"] is False and by_metric["failed_rate"]["observed"] == 1.0
    out = capsys.readouterr().out
    assert "FAIL  failed_rate: rate<0.01  (observed 100 %)" in out
    assert "(all outcomes)" not in out and "; all outcomes)" in out  # latency says what it covered
    assert "failures: judged, failed_rate rate<0.01" in out


def test_failure_threshold_off_is_echoed_and_an_all_failed_run_still_fails(tmp_path, targets, capsys):
    code, result = run(tmp_path, "--target", f"{targets}:always_fails", "--threshold", "latency=p(95)<100ms",
                       "--failure-threshold", "off")
    assert code == 99
    assert result["scenario"]["failures"]["threshold"] == "off"
    assert result["scenario"]["failures"]["source"] == "cli"
    assert result["verdict"]["failure_threshold"] == "off"
    failed = [f"{t['metric']} {t['expression']}" for t in result["thresholds"] if not t["ok"]]
    assert failed == ["throughput{outcome:ok} count>0"]  # no successful request: never a pass
    assert "failed_rate" not in {t["metric"] for t in result["thresholds"]}
    assert "failures: NOT JUDGED (failures.threshold: off, set by cli)" in capsys.readouterr().out


def test_failure_threshold_off_lets_some_failures_pass(tmp_path):
    args = ("--target", "tests.support.targets_for_tests:fail_every_tenth", "--payload",
            "tests.support.targets_for_tests:ordinal_payload", "--threshold", "latency=p(95)<1s")
    code, result = run(tmp_path, *args)
    assert code == 99 and result["summary"]["all"]["failed_rate"] == pytest.approx(0.1)
    code, result = run(tmp_path, *args, "--failure-threshold", "off")
    assert code == 0, result["thresholds"]
    code, result = run(tmp_path, *args, "--failure-threshold", "rate<=15%")
    assert code == 0 and result["scenario"]["failures"]["judged"] == ["rate<=15%"]
