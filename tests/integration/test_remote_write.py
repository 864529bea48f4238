"""``harness run --remote-write``: the live series pushed to the real Prometheus 2.42
(``--web.enable-remote-write-receiver --enable-feature=native-histograms``), native
histogram quantiles within 2.5 % of HDR, a Prometheus restart mid-run that neither loses
the series nor touches the run; and a Run against a fake receiver (no Prometheus)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.config.scenario import load_scenario
from harness.lifecycle import spawn
from harness.observe.remote_write import RemoteWriteConfig
from harness.run.runner import Run, RunOptions
from tests.support import REPO_ROOT
from tests.support.prometheus import PrometheusProcess
from tests.support.remote_write_receiver import FakeReceiver

ENV = {**os.environ, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
JOB = "rw-test"
DURATION_S, RATE = 12, 20


def Prometheus(folder: Path) -> PrometheusProcess:
    """The real Prometheus as a remote-write receiver with native histograms on (it scrapes
    nothing), restartable on the same storage."""
    return PrometheusProcess(folder, "global:\n  scrape_interval: 15s\n",
                             ["--web.enable-remote-write-receiver", "--enable-feature=native-histograms"])


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
        prom.close()


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
