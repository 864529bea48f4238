"""The live stack with the real binaries: injected faults make the real rules fire in a
real Prometheus, and Alertmanager's notification reaches the harness's webhook."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import datetime

import pytest
from prometheus_client import CollectorRegistry

from tests.support import REPO_ROOT
from tests.support.ci import require_binary
from harness.run.runner import Run, RunOptions
from harness.config.scenario import load_scenario

ROOT = REPO_ROOT


@pytest.fixture(autouse=True)
def _binaries():
    require_binary("prometheus", "prometheus")
    require_binary("prometheus-alertmanager", "prometheus-alertmanager")


def run_with_stack(overrides):
    sc = load_scenario(None, overrides, env={})
    return Run(sc, RunOptions(stack="local", progress="off", install_signal_handlers=False),
               registry=CollectorRegistry()).execute()


def fired(result, name, severity=None):
    return [a for a in result["stack"]["alerts_fired"]
            if a["alertname"] == name and (severity is None or a["severity"] == severity)]


def test_injected_latency_pages_and_the_notification_arrives():
    t_start = time.time()
    result = run_with_stack({
        "duration": "25s", "profile.rate": 20,
        "faults": {"extra_latency_seconds": 0.15}, "workload": {"enable_fallback": False},
        "thresholds": {"latency": ["p(95)<100ms"], "alerts{severity:page}": ["count==0"]},
    })
    stack = result["stack"]
    assert "error" not in stack, stack.get("error")
    page = fired(result, "LatencyP95OverBudget", "page")
    assert page and page[0]["labels"]["operation"] == "feature_extraction"
    # notified within the run: the alert's `for: 10s`, 1 s evaluation, 1 s group_wait, so the
    # page reaches the webhook while the 25 s load still runs (judged against the run's own
    # end, not a wall-clock budget that a slow start of the stack would use up)
    notes = [n for n in stack["notifications"]
             if any(a["alertname"] == "LatencyP95OverBudget" and a["status"] == "firing" for a in n["alerts"])]
    assert notes, stack["notifications"]
    load_ended = datetime.fromisoformat(result["finished_at"]).timestamp()
    assert t_start <= notes[0]["received_at"] <= load_ended, (notes[0]["received_at"] - t_start, load_ended - t_start)
    # both verdicts agree: the HDR threshold fails and "no page" fails
    by_expr = {(t["metric"], t["expression"]): t for t in result["thresholds"]}
    assert by_expr[("latency", "p(95)<100ms")]["ok"] is False
    assert by_expr[("alerts{severity:page}", "count==0")]["ok"] is False
    # 99, or 98 when a loaded machine also made the generator late: never a pass
    assert result["verdict"]["exit_code"] in (98, 99)
    # Prometheus's p95 lands in the bucket holding the exact p95
    rows = [r for r in stack["quantiles"] if r["target"] == "features"]
    assert rows and all(r["within_bucket"] for r in rows), rows
    assert fired(result, "FaultInjectionActive")


def test_healthy_run_fires_no_page():
    result = run_with_stack({"duration": "15s", "profile.rate": 20,
                             "thresholds": {"alerts{severity:page}": ["count==0"], "latency": ["p(95)<100ms"]}})
    assert "error" not in result["stack"]
    assert [a for a in result["stack"]["alerts_fired"] if a["severity"] in ("page", "critical")] == []
    assert result["verdict"]["thresholds_passed"] is True
    rows = result["stack"]["quantiles"]
    assert rows and all(r["within_bucket"] for r in rows), rows


def test_injected_errors_fire_the_error_ratio_alert():
    result = run_with_stack({
        "duration": "20s", "profile.rate": 20,
        "faults": {"error_rate": 0.2}, "workload": {"enable_fallback": False},
        "thresholds": {"error_rate": ["rate<0.01"]},
    })
    assert fired(result, "ErrorRatioOverBudget", "page")
    assert result["verdict"]["exit_code"] in (98, 99)
    errs = result["summary"]["targets"]["features"]["errors"]
    assert errs.get("InjectedFault", 0) > 0


def test_missing_binaries_is_a_usage_error_with_the_install_line(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "harness.cli.main", "run", "--stack", "local", "--duration", "1s"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "apt-get install" in proc.stderr and "prometheus-alertmanager" in proc.stderr
    # a plain run still works without them (98 only if a loaded machine made the generator late)
    proc = subprocess.run([sys.executable, "-m", "harness.cli.main", "run", "--target", "noop", "--duration", "1s",
                           "--out", str(tmp_path / "r.json")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode in (0, 98), proc.stderr
    assert (tmp_path / "r.json").exists()


def test_stack_up_prints_urls_and_cleans_up_on_ctrl_c(tmp_path):
    # its own TMPDIR: other stacks on this machine (other test runs) come and go in /tmp
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli.main", "stack", "up", "--scrape", "svc=127.0.0.1:9"],
                            cwd=tmp_path, env={**os.environ, "TMPDIR": str(tmp)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and len(lines) < 3:
        lines.append(proc.stdout.readline())
    text = "".join(lines)
    prom = re.search(r"prometheus:\s+(\S+)", text).group(1)
    with urllib.request.urlopen(prom + "/-/ready", timeout=5) as resp:
        assert resp.status == 200
    tmpdirs = set(tmp.glob("lbh-stack-*"))
    assert tmpdirs
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 105  # interrupted, like every command stopped by a signal
    assert not (tmpdirs & set(tmp.glob("lbh-stack-*")))
    with pytest.raises(OSError):
        urllib.request.urlopen(prom + "/-/ready", timeout=2)
