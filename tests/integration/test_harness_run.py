"""``harness run`` end to end: verdicts and exit codes, the result file, live metrics,
interruption, and --workers giving the same counts as one process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.cli.main import main
from harness.run.runner import Run, RunOptions
from harness.config.scenario import load_scenario
from tests.support import REPO_ROOT

ROOT = REPO_ROOT
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def run_cli(tmp_path, *args, timeout=120):
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, "-m", "harness.cli.main", "run", "--progress", "plain", "--out", str(out), *args],
                          cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=timeout)
    result = json.loads(out.read_text()) if out.exists() else None
    return proc, result


def test_default_scenario_passes_and_writes_the_result(tmp_path):
    proc, result = run_cli(tmp_path, "--duration", "3s")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert result["schema"] == "harness.result/1" and result["status"] == "completed"
    feats = result["summary"]["targets"]["features"]
    assert feats["count"] == 60 and feats["outcomes"]["ok"] == 60
    for metric in ("latency", "service_time", "lag"):
        assert feats[metric]["p95"] is not None
    assert {t["expression"] for t in result["thresholds"]} >= {"p(95)<100ms", "p(99)<200ms", "rate<0.01"}
    assert result["verdict"] == {**result["verdict"], "passed": True, "exit_code": 0}
    assert result["histograms"]["format"].startswith("harness.record.recorder")
    assert len(result["timeseries"]) >= 3 and result["resources"]["samples"]
    assert "verdict: PASSED" in proc.stdout and "latency*" in proc.stdout
    # progress fell back to plain lines (stderr is not a terminal here)
    assert "[default]" in proc.stderr


def test_failed_threshold_exits_99(tmp_path):
    proc, result = run_cli(tmp_path, "--target", "tests.support.targets_for_tests:sleep_ms", "--payload",
                           "tests.support.targets_for_tests:ordinal_payload", "--duration", "1s", "--rate", "20",
                           "--threshold", "latency=p(95)<1ms", "--set", "name=slow")
    # sleep_ms(k) sleeps k ms: request 19 takes 19 ms, so p95 is far above 1 ms
    assert proc.returncode == 99, proc.stderr
    assert result["verdict"]["thresholds_passed"] is False
    assert "FAIL  latency: p(95)<1ms" in proc.stdout


def test_bad_scenario_is_a_usage_error_naming_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nprofile: {type: constant, rate: -5}\ndurration: 10s\n")
    proc = subprocess.run([sys.executable, "-m", "harness.cli.main", "run", str(bad)], cwd=tmp_path, env=ENV,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "profile.rate" in proc.stderr and "durration" in proc.stderr and "did you mean" in proc.stderr


def test_unknown_target_is_a_usage_error(tmp_path):
    proc, result = run_cli(tmp_path, "--target", "no_such_module:fn", "--duration", "1s")
    assert proc.returncode == 2 and "no_such_module" in proc.stderr and result is None


def _live_count(port: int) -> int | None:
    """Requests the run's live /metrics has counted so far (every outcome); None before it serves."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    return int(sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == "lbh_harness_requests_total"))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signal_writes_a_partial_result_marked_interrupted(tmp_path, sig):
    out = tmp_path / "partial.json"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli.main", "run",
                             "--target", "tests.support.targets_for_tests:noop", "--metrics-port", str(port),
                             "--duration", "60s", "--rate", "50", "--out", str(out), "--progress", "off"],
                            cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Ctrl-C once 30 requests ran (read from the run's own live metrics), not after a fixed
    # sleep that a busy machine may spend starting the interpreter.
    deadline = time.monotonic() + 120
    while (before_sigint := _live_count(port) or 0) < 30:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the run did not reach 30 requests (rc {proc.poll()}):\n{proc.communicate()[1]}")
        time.sleep(0.05)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 105, stderr
    assert "Traceback" not in stderr
    result = json.loads(out.read_text())
    assert result["status"] == "interrupted"
    n = result["summary"]["all"]["count"]
    # what ran before the signal is all there, and it ended the run (170 more at 50/s: ~3 s)
    assert 30 <= before_sigint <= n <= before_sigint + 170
    assert "INTERRUPTED" in stdout


def test_live_metrics_expose_harness_and_workload_series(tmp_path):
    scenario = load_scenario(None, {"duration": "4s", "profile.rate": 20}, env={})
    scraped = {}

    def scrape(run):
        def later():
            # mid-run: once 20 requests were answered (not after a fixed sleep a busy machine may miss)
            while run.recorder.counts()["ok"] < 20 and not run.finished:
                time.sleep(0.02)
            with urllib.request.urlopen(run.metrics_url, timeout=5) as resp:
                scraped["text"] = resp.read().decode()
        threading.Thread(target=later, daemon=True).start()

    opts = RunOptions(progress="off")
    opts.events.started.add_listener(lambda event: scrape(event.run))
    result = Run(scenario, opts).execute()
    assert result["verdict"]["exit_code"] == 0
    fams = {f.name: f for f in text_string_to_metric_families(scraped["text"])}
    assert "lbh_harness_latency_seconds" in fams and "lbh_harness_service_time_seconds" in fams
    assert "lbh_harness_schedule_lag_seconds" in fams and "lbh_harness_generator_lag_seconds" in fams
    info = fams["lbh_harness_run_info"].samples[0].labels
    assert info["scenario"] == "default" and info["target"] == "features"
    assert fams["lbh_harness_intended_rate"].samples[0].value == pytest.approx(20.0)
    ok_count = [s.value for s in fams["lbh_harness_latency_seconds"].samples
                if s.name.endswith("_count") and s.labels["outcome"] == "ok"]
    assert ok_count and 20 <= ok_count[0] <= 60
    # the in-process workloads report on the same endpoint
    assert "lbh_operation_duration_seconds" in fams
    assert "process_resident_memory_bytes" in fams


def test_workers_2_gives_the_same_counts_as_one_process(tmp_path):
    base = ["--target", "tests.support.targets_for_tests:noop", "--duration", "2s", "--rate", "100", "--no-metrics"]
    p1, r1 = run_cli(tmp_path, *base)
    (tmp_path / "w2").mkdir()
    p2, r2 = run_cli(tmp_path / "w2", *base, "--workers", "2")
    assert p1.returncode == 0 and p2.returncode == 0, p2.stderr
    assert r1["summary"]["all"]["outcomes"] == r2["summary"]["all"]["outcomes"] == {
        "ok": 200, "error": 0, "timeout": 0, "dropped": 0}
    assert r2["generator"]["worker_processes"] == 2
    # per-second intended counts agree too (each worker took every other ordinal)
    assert [w["intended"] for w in r1["timeseries"]] == [w["intended"] for w in r2["timeseries"]]


def test_closed_loop_users(tmp_path):
    proc, result = run_cli(tmp_path, "--target", "tests.support.targets_for_tests:noop", "--profile", "users",
                           "--vus", "3", "--set", "profile.think_time=0.1", "--duration", "1s", "--no-metrics")
    assert proc.returncode == 0, proc.stderr
    n = result["summary"]["all"]["count"]
    assert 15 <= n <= 33  # 3 users x ~10 iterations
    assert result["generator"]["closed_loop"] is True
    assert "coordinated omission applies" in proc.stdout


def test_async_target_runs_on_the_event_loop(tmp_path):
    proc, result = run_cli(tmp_path, "--target", "tests.support.targets_for_tests:async_sleep_ms", "--duration", "1s",
                           "--rate", "50", "--no-metrics")
    assert proc.returncode in (0, 98), proc.stderr  # 98: a loaded test machine made the generator late
    outcomes = result["summary"]["all"]["outcomes"]
    assert sum(outcomes.values()) == 50 and outcomes["ok"] >= 45, outcomes


def test_main_without_command_is_usage():
    assert main([]) == 2


@pytest.mark.parametrize("command", ["run", "report", "compare", "search", "soak", "scenarios", "merge", "stack",
                                     "scale-test", "validate", "dashboards"])
def test_every_subcommand_help_renders(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert "usage: harness" in capsys.readouterr().out


def test_closed_loop_users_drive_async_targets(tmp_path):
    # 2 users, each: ~2 ms call, no think time, 5 iterations -> exactly 10 calls
    proc, result = run_cli(tmp_path, "--target", "tests.support.targets_for_tests:async_sleep_ms", "--profile", "users",
                           "--vus", "2", "--set", "profile.iterations=5", "--duration", "2s", "--no-metrics")
    assert proc.returncode in (0, 98), proc.stderr + proc.stdout
    (t,) = result["summary"]["targets"].values()
    # each call awaited a 2 ms sleep; the event loop's timers have 1 ms granularity (libuv
    # rounds against its cached clock), so a call may take as little as ~1 ms, never ~0
    assert t["outcomes"]["ok"] == 10 and t["service_time"]["min"] >= 0.9


def test_warm_up_calls_every_workload_of_a_mix():
    from harness.run.prepare import warm_up
    from harness.targets import Target

    calls = []
    slots = ["a"] * 700 + ["b"] * 200 + ["c"] * 100  # a mix's fixed slot order: b and c come late
    target = Target("mixed", ("a", "b", "c"), lambda k: (slots[k % 1000], calls.append, (slots[k % 1000],)))
    sc = load_scenario(None, {"target": "noop"}, env={})
    warm_up(target, sc, 2)
    assert sorted(calls) == ["a", "a", "b", "b", "c", "c"]
