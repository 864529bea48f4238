"""Smoke run of benchmarks/http_vs_locust.py: it runs and prints its rows. No speed asserts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support import REPO_ROOT

ROOT = str(REPO_ROOT)
SCRIPT = os.path.join(ROOT, "benchmarks", "http_vs_locust.py")


def _run(args, env_extra=None, timeout=120):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


def test_co_truth_matches_the_formula():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        import http_vs_locust as b
    finally:
        sys.path.pop(0)
    t = b.co_truth(100.0, 20.0, 5.0, 1.0, 0.0)
    assert t["count"] == 2000
    assert t["p50"] == 0.0
    assert t["p95"] == pytest.approx(750.0, abs=10.0)
    assert t["p99"] == pytest.approx(950.0, abs=10.0)
    assert t["p95_formula"] == pytest.approx(750.0)


@pytest.mark.timeout(90)
def test_quick_run_prints_every_row():
    p = _run(["--quick"])
    out = p.stdout
    assert p.returncode == 0, out + p.stderr
    for row in ("locust FastHttpUser", "harness rate steps", "harness users u=", "wrk -t1 -c32 (ceiling)",
                "harness open loop (latency from intended)", "truth (schedule + freeze, analytic)"):
        assert row in out, f"missing {row!r}:\n{out}"
    assert "harness @ " in out or "(no step passed)" in out, out


@pytest.mark.timeout(60)
def test_missing_locust_and_wrk_are_rows_not_failures():
    p = _run(["--quick", "--skip", "throughput"], {"LBH_BENCH_LOCUST": "", "LBH_BENCH_WRK": ""})
    assert p.returncode == 0, p.stdout + p.stderr
    assert "(not installed)" in p.stdout
    assert "harness open loop (latency from intended)" in p.stdout
