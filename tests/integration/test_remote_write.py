"""``harness run --remote-write``: the live series pushed to the real Prometheus 2.42
(``--web.enable-remote-write-receiver --enable-feature=native-histograms``), native
histogram quantiles within 2.5 % of HDR, a Prometheus restart mid-run that neither loses
the series nor touches the run; and a Run against a fake receiver (no Prometheus)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Dict, List

import pytest

from harness.config.scenario import load_scenario
from harness.lifecycle import spawn
from harness.observe.remote_write import RemoteWriteConfig
from harness.run.runner import Run, RunOptions
from tests.support import REPO_ROOT
from tests.support.ci import require_binary
from tests.support.remote_write_receiver import FakeReceiver

ENV = {**os.environ, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
JOB = "rw-test"
DURATION_S, RATE = 12, 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    """The real Prometheus on a free loopback port, its own storage, restartable."""

    def __init__(self, folder: Path) -> None:
        self.binary = require_binary("prometheus", "prometheus")
        self.folder = folder
        (folder / "prometheus.yml").write_text("global:\n  scrape_interval: 15s\n")
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: Any = None
        self.log = open(folder / "prometheus.log", "ab")

    def start(self) -> "Prometheus":
        self.proc = spawn([self.binary, f"--config.file={self.folder / 'prometheus.yml'}",
                           f"--storage.tsdb.path={self.folder / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
                           "--web.enable-remote-write-receiver", "--enable-feature=native-histograms"],
                          stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            assert self.proc.poll() is None, (self.folder / "prometheus.log").read_text()[-2000:]
            time.sleep(0.1)
        raise AssertionError("Prometheus did not become ready")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def query(self, expr: str) -> List[Dict[str, Any]]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def value(self, expr: str) -> float:
        res = self.query(expr)
        assert len(res) == 1, (expr, res)
        return float(res[0]["value"][1])


@pytest.fixture(scope="module")
def restarted_run(tmp_path_factory):
    """One run of 12 s at 20/s (~150 ms each) pushing to Prometheus, which is stopped at
    ~4 s and started again on the same storage; what the run and Prometheus saw."""
    folder = tmp_path_factory.mktemp("rw")
    prom = Prometheus(folder).start()
    out = folder / "result.json"
    try:
        run = spawn([sys.executable, "-m", "harness.cli.main", "run", "--progress", "off", "--no-metrics",
                     "--target", "tests.support.targets_for_tests:sleep_ms",
                     "--payload", "tests.support.latency_spread:around_150ms",
                     "--duration", f"{DURATION_S}s", "--rate", str(RATE), "--threads", "16",
                     "--threshold", "latency=p(95)<5s", "--threshold", "latency=p(99)<5s", "--set", "name=rw",
                     "--lag-bound-ms", "100",  # this test is about remote write, not the generator's timing
                     "--out", str(out), "--remote-write", f"{prom.url}/api/v1/write",
                     "--remote-write-header", "X-Test: restart", "--prometheus-job", JOB],
                    cwd=folder, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(4.5)
        prom.stop()
        stopped_at = time.time()
        time.sleep(1.0)  # the harness keeps collecting while nobody listens
        prom.start()
        restarted_at = time.time()
        stdout, stderr = run.communicate(timeout=120)
        result = json.loads(out.read_text()) if out.exists() else None
        yield {"prom": prom, "rc": run.returncode, "stdout": stdout, "stderr": stderr, "result": result,
               "stopped_at": stopped_at, "restarted_at": restarted_at}
    finally:
        prom.stop()
        prom.log.close()


def test_run_is_unaffected_by_the_restart(restarted_run):
    r = restarted_run
    assert r["rc"] == 0, r["stderr"][-3000:] + r["stdout"][-3000:]
    res = r["result"]
    assert res["status"] == "completed"
    assert res["summary"]["targets"]["sleep_ms"]["outcomes"]["ok"] == DURATION_S * RATE
    rw = res["remote_write"]
    assert rw["batches_failed"] == 0 and rw["batches_dropped"] == 0 and rw["batches_unsent"] == 0, rw
    assert rw["final_flush"] == "ok" and rw["retries"] >= 1, rw  # it saw Prometheus gone, and waited
    assert rw["batches_sent"] >= DURATION_S - 1 and rw["histograms_sent"] > 0, rw
    assert "remote write to " in r["stdout"] and "0 failed, 0 dropped" in r["stdout"]


def test_series_resume_after_the_restart_without_a_gap(restarted_run):
    prom, res = restarted_run["prom"], restarted_run["result"]
    sel = f'lbh_harness_requests_total{{job="{JOB}",outcome="ok"}}'
    (series,) = prom.query(f"{sel}[5m]")
    stamps = [float(t) for t, _ in series["values"]]
    values = [float(v) for _, v in series["values"]]
    assert values == sorted(values), "a counter pushed in order"
    assert any(t > restarted_run["restarted_at"] for t in stamps), "series resumed after the restart"
    assert any(restarted_run["stopped_at"] - 1 < t < restarted_run["restarted_at"] for t in stamps), \
        "what was collected while Prometheus was down arrived afterwards"
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert max(gaps) < 2.5, gaps
    # the final flush: Prometheus holds the run's final count
    assert prom.value(sel) == res["summary"]["targets"]["sleep_ms"]["outcomes"]["ok"]
    assert series["metric"]["instance"] == res["remote_write"]["instance"]


def test_native_histogram_quantiles_match_hdr(restarted_run):
    prom, res = restarted_run["prom"], restarted_run["result"]
    hdr = res["summary"]["targets"]["sleep_ms"]["latency"]
    assert 140 < hdr["p50"] < 160, hdr  # the run is at ~150 ms
    native = f'lbh_harness_latency_native_seconds{{job="{JOB}",outcome="ok",target="sleep_ms"}}'
    assert prom.value(f"histogram_count({native})") == hdr["count"]
    for q, key in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
        got_ms = prom.value(f"histogram_quantile({q}, {native})") * 1000
        assert abs(got_ms - hdr[key]) <= 0.025 * hdr[key], (key, got_ms, hdr[key])
    # the classic series are there too, for dashboards without native histograms
    classic = f'lbh_harness_latency_seconds_count{{job="{JOB}",outcome="ok",target="sleep_ms"}}'
    assert prom.value(classic) == hdr["count"]


def test_run_pushes_its_final_state_to_a_fake_receiver():
    """No Prometheus needed: a Run with remote write and no /metrics; the last batch holds
    the final counts, the result has the stats, the user's header rides along."""
    scenario = load_scenario(None, {"target": "tests.support.targets_for_tests:noop", "duration": "2s",
                                    "profile.rate": 25}, env={})
    with FakeReceiver(statuses=[503]) as rx:
        cfg = RemoteWriteConfig(rx.url, headers={"Authorization": "Bearer x"}, job="j", instance="i")
        result = Run(scenario, RunOptions(metrics_port=None, progress="off", remote_write=cfg,
                                          install_signal_handlers=False)).execute()
        got = rx.requests()
    assert result["metrics_url"] is None
    rw = result["remote_write"]
    assert rw["retries"] == 1 and rw["batches_sent"] >= 2 and rw["final_flush"] == "ok", rw
    assert all(r.headers["authorization"] == "Bearer x" for r in got)
    last = {tuple((lb.name, lb.value) for lb in ts.labels): ts for ts in got[-1].request.timeseries}
    key = (("__name__", "lbh_harness_requests_total"), ("instance", "i"), ("job", "j"), ("outcome", "ok"),
           ("target", "noop"))
    assert last[key].samples[0].value == result["summary"]["targets"]["noop"]["outcomes"]["ok"] == 50
