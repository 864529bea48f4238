"""Native histograms scraped by the real Prometheus 2.42 (``--enable-feature=native-histograms``,
so it asks for the protobuf exposition): on a run at ~150 ms the native
``histogram_quantile`` p95/p99 are within 2.5 % of HDR's, the classic ``_bucket`` series
(what the alert rules read) are still ingested beside them, and a histogram that has both
parts under one name loses its classic part (why the native ones have names of their own)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric

from harness.record.native import from_counts
from instrumentation import serve_metrics
from tests.support import REPO_ROOT
from tests.support.prometheus import PrometheusProcess, free_port

ENV = {**os.environ, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
JOB = "native-test"


def Prometheus(folder: Path, target: str) -> PrometheusProcess:
    """The real Prometheus with native histograms on, scraping ``target`` every second."""
    return PrometheusProcess(
        folder,
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        f"scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: ['{target}']\n",
        ["--enable-feature=native-histograms,exemplar-storage"])


def test_run_at_150ms_native_quantiles_within_2_5_percent_of_hdr(tmp_path):
    """``harness run --stack external``: the run's own cross-check asks Prometheus after
    the last scrape (the /metrics server is still up), native and classic side by side."""
    port = free_port()
    out = tmp_path / "result.json"
    with Prometheus(tmp_path, f"127.0.0.1:{port}") as prom:
        proc = subprocess.run(
            [sys.executable, "-m", "harness.cli.main", "run", "--progress", "off",
             "--target", "tests.support.targets_for_tests:sleep_ms",
             "--payload", "tests.support.latency_spread:around_150ms",
             "--duration", "6s", "--rate", "50", "--threads", "32", "--lag-bound-ms", "100",
             "--threshold", "latency=p(95)<5s", "--set", "name=native",
             "--metrics-port", str(port), "--stack", "external", "--prometheus-url", prom.url,
             "--prometheus-job", JOB, "--out", str(out)],
            cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
        result = json.loads(out.read_text())
        # the classic series the alert rules read were ingested beside the native ones
        classic = prom.query(f'count(count_over_time(lbh_harness_latency_seconds_bucket{{job="{JOB}"}}[5m]))')
        assert classic and float(classic[0]["value"][1]) > 10
    stack = result["stack"]
    assert "error" not in stack, stack
    hdr = result["summary"]["targets"]["sleep_ms"]["latency"]
    assert 140 < hdr["p50"] < 160, hdr  # the run is at ~150 ms
    rows = {r["quantile"]: r for r in stack["quantiles"] if r["target"] == "sleep_ms"}
    assert set(rows) == {0.95, 0.99}, stack["quantiles"]
    for q, row in rows.items():
        print(f"p{q * 100:g}: hdr {row['hdr_ms']} ms, native {row['native_ms']} ms "
              f"({row['native_error_pct']} %), classic {row['prometheus_ms']} ms")
        assert row["native_error_pct"] <= 2.5 and row["native_within_goal"], row


def test_prometheus_2_42_ingests_only_the_native_part_of_a_mixed_histogram(tmp_path):
    """The reason for distinct names: a family with classic buckets and native ones is
    ingested as native only (2.42 has no ``scrape_classic_histograms``)."""

    class Mixed:
        def collect(self):
            m = Metric("lbh_test_mixed_seconds", "both parts", "histogram")
            m.add_sample("lbh_test_mixed_seconds_bucket", {"le": "0.1"}, 3)
            m.add_sample("lbh_test_mixed_seconds_bucket", {"le": "+Inf"}, 5)
            m.add_sample("lbh_test_mixed_seconds_count", {}, 5)
            m.add_sample("lbh_test_mixed_seconds_sum", {}, 0.75)
            m.add_sample("lbh_test_mixed_seconds", {}, None,
                         native_histogram=from_counts([0.05, 0.3], [3, 2], sum_s=0.75))
            yield m
            z = Metric("lbh_test_zero_seconds", "zeros and one value", "histogram")
            z.add_sample("lbh_test_zero_seconds", {}, None,
                         native_histogram=from_counts([0.2], [1], zero_count=9, sum_s=0.2))
            yield z
            e = Metric("lbh_test_empty_seconds", "nothing observed yet", "histogram")
            e.add_sample("lbh_test_empty_seconds", {}, None, native_histogram=from_counts([], []))
            yield e

    reg = CollectorRegistry()
    reg.register(Mixed())
    with serve_metrics(registry=reg) as srv, Prometheus(tmp_path, f"127.0.0.1:{srv.port}") as prom:
        prom.wait_for("lbh_test_empty_seconds")
        names = {r["metric"]["__name__"] for r in prom.query('{__name__=~"lbh_test_.*"}')}
        assert names == {"lbh_test_mixed_seconds", "lbh_test_zero_seconds", "lbh_test_empty_seconds"}, names
        assert float(prom.query("histogram_count(lbh_test_mixed_seconds)")[0]["value"][1]) == 5
        # the zero bucket (HDR's 0) answers 0, and a histogram still empty is native too
        assert float(prom.query("histogram_quantile(0.5, lbh_test_zero_seconds)")[0]["value"][1]) < 1e-30
        assert float(prom.query("histogram_count(lbh_test_empty_seconds)")[0]["value"][1]) == 0
