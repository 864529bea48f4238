"""alerts/ with the real tools: promtool check/test rules, amtool check-config and routes,
and a real Alertmanager proving inhibition and the harness webhook.

Under CI=true a missing binary fails; elsewhere it skips with the install line.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support import REPO_ROOT
from tests.support.ci import IN_CI, require_binary  # noqa: F401

pytestmark = pytest.mark.binaries

ROOT = REPO_ROOT
ALERTS = ROOT / "alerts"
AM_CONFIG = ALERTS / "alertmanager.yml"
PLACEHOLDER = "http://127.0.0.1:9099/alertmanager"


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------------------ promtool


def test_promtool_check_rules_is_clean():
    promtool = require_binary("promtool", "prometheus")
    res = run(promtool, "check", "rules", "alerts/recording_rules.yml", "alerts/alert_rules.yml")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("SUCCESS") == 2, res.stdout
    assert "WARNING" not in res.stdout + res.stderr


def test_promtool_unit_tests_pass():
    promtool = require_binary("promtool", "prometheus")
    files = sorted(str(p.relative_to(ROOT)) for p in (ALERTS / "tests").glob("*.yml"))
    assert len(files) >= 3
    res = run(promtool, "test", "rules", *files, timeout=240)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]
    assert res.stdout.count("SUCCESS") == len(files), res.stdout


# ------------------------------------------------------------------------------ amtool


def test_amtool_check_config_is_clean():
    amtool = require_binary("amtool", "prometheus-alertmanager")
    res = run(amtool, "check-config", str(AM_CONFIG))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout and "3 inhibit rules" in res.stdout and "4 receivers" in res.stdout


def test_commented_notifier_examples_are_valid_config(tmp_path):
    """Un-comment every BEGIN/END EXAMPLE block: Slack, PagerDuty and e-mail must load."""
    amtool = require_binary("amtool", "prometheus-alertmanager")
    out, inside, blocks = [], False, 0
    for line in AM_CONFIG.read_text().splitlines():
        if re.match(r"\s*# BEGIN EXAMPLE", line):
            inside, blocks = True, blocks + 1
            continue
        if re.match(r"\s*# END EXAMPLE", line):
            inside = False
            continue
        out.append(re.sub(r"^(\s*)# ", r"\1", line, count=1) if inside else line)
    assert blocks >= 4
    cfg = tmp_path / "alertmanager-examples.yml"
    cfg.write_text("\n".join(out) + "\n")
    res = run(amtool, "check-config", str(cfg))
    assert res.returncode == 0, res.stdout + res.stderr
    for field in ("api_url_file:", "routing_key_file:", "smtp_auth_password_file:", "email_configs:"):
        assert field in cfg.read_text()


@pytest.mark.parametrize(
    "labels, receiver",
    [
        (["severity=page"], "pager"),
        (["severity=critical"], "pager"),
        (["alertname=LatencyP95OverBudget", "job=lbh", "operation=feature_extraction", "severity=page"], "pager"),
        (["alertname=ErrorBudgetBurn", "job=lbh", "operation=risk_var", "severity=warning", "window=3d"], "chat"),
        (["severity=warning"], "chat"),
        (["alertname=FaultInjectionActive", "severity=info"], "info"),
        (["alertname=Watchdog"], "harness"),
    ],
)
def test_amtool_routes_by_severity(labels, receiver):
    amtool = require_binary("amtool", "prometheus-alertmanager")
    res = run(amtool, "config", "routes", "test", f"--config.file={AM_CONFIG}", f"--verify.receivers={receiver}", *labels)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.split() == [receiver]


# ------------------------------------------------------------------------------ live Alertmanager


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Webhook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 (http.server API)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):  # quiet
        pass


def _api(base: str, path: str, payload=None):
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"},
                                 method="POST" if data else "GET")
    with urllib.request.urlopen(req, timeout=5) as resp:
        body = resp.read()
    return json.loads(body) if body else None


def test_live_alertmanager_inhibits_and_notifies_the_harness_webhook(tmp_path):
    """The real binary with a copy of alertmanager.yml whose webhook URL is replaced, as the
    harness does: escalations inhibit the lower severity, and the page receiver posts only
    the critical alert to the webhook."""
    binary = require_binary("prometheus-alertmanager", "prometheus-alertmanager")

    class Hook(_Webhook):
        received: list = []

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook_url = f"http://127.0.0.1:{server.server_address[1]}/alertmanager"
    cfg = tmp_path / "alertmanager.yml"
    cfg.write_text(AM_CONFIG.read_text().replace(PLACEHOLDER, hook_url))

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path / "am.log").open("w")
    proc = subprocess.Popen(
        [binary, f"--config.file={cfg}", f"--storage.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                _api(base, "/api/v2/status")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("alertmanager did not start:\n" + (tmp_path / "am.log").read_text())
                time.sleep(0.1)

        common = {"job": "lbh", "operation": "feature_extraction"}
        alerts = [
            {"alertname": "LatencyP95OverBudget", "severity": "page"},
            {"alertname": "LatencyP95OverBudget", "severity": "critical"},
            {"alertname": "LatencyP99OverBudget", "severity": "warning"},
            {"alertname": "ErrorBudgetBurn", "severity": "page", "window": "1h"},
            {"alertname": "ErrorBudgetBurn", "severity": "warning", "window": "1d"},
            {"alertname": "ErrorRatioOverBudget", "severity": "page", "operation": "risk_var"},
        ]
        _api(base, "/api/v2/alerts", [
            {"labels": {**common, **a}, "annotations": {"summary": a["alertname"]}} for a in alerts])

        def key(a):
            lab = a["labels"]
            return lab["alertname"], lab["severity"], lab["operation"]

        deadline = time.monotonic() + 10
        while True:
            state = {key(a): a["status"]["state"] for a in _api(base, "/api/v2/alerts")}
            if len(state) == len(alerts) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert state == {
            ("LatencyP95OverBudget", "page", "feature_extraction"): "suppressed",  # by its critical
            ("LatencyP95OverBudget", "critical", "feature_extraction"): "active",
            ("LatencyP99OverBudget", "warning", "feature_extraction"): "suppressed",  # p95 pages
            ("ErrorBudgetBurn", "page", "feature_extraction"): "active",
            ("ErrorBudgetBurn", "warning", "feature_extraction"): "suppressed",  # fast burn pages
            ("ErrorRatioOverBudget", "page", "risk_var"): "active",  # other operation: not inhibited
        }

        # group_wait is 5 s: the three active alerts arrive as three groups on "pager".
        deadline = time.monotonic() + 20
        while len(Hook.received) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        got = sorted((n["receiver"], n["groupLabels"]["alertname"], tuple(sorted(a["labels"]["severity"] for a in n["alerts"])))
                     for n in Hook.received)
        assert got == [
            ("pager", "ErrorBudgetBurn", ("page",)),
            ("pager", "ErrorRatioOverBudget", ("page",)),
            ("pager", "LatencyP95OverBudget", ("critical",)),
        ], Hook.received
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        server.shutdown()
        server.server_close()
