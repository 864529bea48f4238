"""Soak: the RSS trend (slope ± its standard error) gives a leak verdict; the harness's own
memory stays bounded on long runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.support import targets_capacity
from harness.record.recorder import Recorder
from harness.run.resources import ResourceSampler
from harness.run.runner import Run, RunOptions
from harness.config.scenario import scenario_from_dict
from harness.cli.soak import handle as cmd_soak
from harness.studies.soak import MIB, analyze, fit_trend, latency_stability, leak_verdict
from harness.result.schema import write_result


def synthetic(slope_bytes_per_s: float, n: int = 600, noise: float = 2 * MIB, seed: int = 0, rps: float = 20.0,
              p95_slope_ms_per_s: float = 0.0) -> dict:
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)
    rss = 300 * MIB + slope_bytes_per_s * t + rng.normal(0, noise, n)
    return {"scenario": {"duration": float(n)},
            "summary": {"all": {"count": int(rps * n)}},
            "resources": {"samples": [{"t_s": float(a), "process_rss_bytes": int(b)} for a, b in zip(t, rss)]},
            "timeseries": [{"start_s": int(a), "end_s": int(a) + 1, "p95_ms": 30 + p95_slope_ms_per_s * a +
                            float(rng.normal(0, 1))} for a in t]}


def test_fit_trend_recovers_slope_and_error():
    rng = np.random.default_rng(1)
    t = np.arange(200.0)
    tr = fit_trend(t, 5.0 + 0.5 * t + rng.normal(0, 1.0, t.size))
    assert tr["slope"] == pytest.approx(0.5, abs=3 * tr["stderr"])
    # OLS standard error of the slope for white noise: sigma / sqrt(Sxx)
    assert tr["stderr"] == pytest.approx(1.0 / np.sqrt(((t - t.mean()) ** 2).sum()), rel=0.35)
    assert fit_trend([1, 2], [3, 4]) is None


def test_leak_flat_inconclusive_insufficient():
    flat = leak_verdict(synthetic(0.0))
    assert flat["verdict"] == "flat", flat["reason"]
    assert abs(flat["slope_mib_per_hour"]) < 50
    leak = leak_verdict(synthetic(200 * 1024))            # 200 KiB/s = 703 MiB/h
    assert leak["verdict"] == "leak", leak["reason"]
    assert leak["slope_bytes_per_s"] == pytest.approx(200 * 1024, rel=0.05)
    # 14 KiB/s is right at the 50 MiB/h tolerance: the interval straddles it
    edge = leak_verdict(synthetic(50 * MIB / 3600, n=120, noise=8 * MIB))
    assert edge["verdict"] == "inconclusive", edge["reason"]
    short = leak_verdict(synthetic(1e6, n=8))
    assert short["verdict"] == "insufficient data"


def test_per_request_budget_catches_a_leak_the_hourly_line_allows():
    # 20 KiB/s at 0.1 rps is 200 KiB per request: over the 1 GB / 10,000 budget (~98 KiB)
    r = leak_verdict(synthetic(20 * 1024, rps=0.1, noise=0.2 * MIB), tolerance_bytes_per_hour=1024 * MIB)
    assert r["by_time"] == "flat" and r["by_request"] == "leak" and r["verdict"] == "leak"


def test_autocorrelated_noise_widens_the_interval():
    rng = np.random.default_rng(3)
    walk = np.cumsum(rng.normal(0, 0.5 * MIB, 600))          # a random walk: no trend, heavy autocorrelation
    res = {"scenario": {"duration": 600.0}, "summary": {"all": {"count": 0}},
           "resources": {"samples": [{"t_s": float(i), "process_rss_bytes": 300 * MIB + float(v)}
                                     for i, v in enumerate(walk)]}}
    v = leak_verdict(res)
    assert v["autocorrelation"] > 0.8
    # the plain least-squares error on the same (post-warm-up) points: white noise assumed
    t = np.arange(600, dtype=float)[120:]
    y = 300 * MIB + walk[120:]
    coef = np.polyfit(t, y, 1)
    resid = y - np.polyval(coef, t)
    plain_se = np.sqrt(resid @ resid / (len(t) - 2) / ((t - t.mean()) @ (t - t.mean())))
    assert v["slope_bytes_per_s"] == pytest.approx(coef[0], rel=1e-6)
    assert v["stderr_bytes_per_s"] >= 2 * plain_se  # (1 + rho) / (1 - rho) widens it


def test_latency_stability():
    assert latency_stability(synthetic(0.0))["verdict"] == "stable"
    assert latency_stability(synthetic(0.0, p95_slope_ms_per_s=0.1))["verdict"] == "drifting"   # 6 ms/min


@pytest.mark.slow  # a real 7 s run
def test_real_leaky_target_is_found(tmp_path, capsys):
    """256 KiB kept per call at 25 rps: RSS must grow ~6.25 MiB/s, and the verdict say leak."""
    targets_capacity.leak_reset()
    sc = scenario_from_dict({"name": "leaky", "target": "tests.support.targets_capacity:leaky", "duration": "7s",
                             "profile": {"type": "constant", "rate": 25}, "thresholds": {}}, env={})
    try:
        result = Run(sc, RunOptions(metrics_port=None, progress="off", install_signal_handlers=False)).execute()
    finally:
        targets_capacity.leak_reset()
    v = leak_verdict(result, min_samples=4)
    assert v["verdict"] == "leak", v
    assert v["slope_bytes_per_s"] == pytest.approx(25 * 256 * 1024, rel=0.35)
    path = write_result(json.loads(json.dumps(result)), tmp_path / "leaky.json")
    args = type("A", (), dict(result=str(path), tolerance_mib_per_hour=50.0, warmup_fraction=0.2, min_samples=4,
                             strict=False))()
    assert cmd_soak(args) == 99
    assert "memory: LEAK" in capsys.readouterr().out
    assert analyze(result, min_samples=4)["memory"]["verdict"] == "leak"


def test_harness_memory_is_bounded_on_long_runs():
    # an hour of 1 s windows into a recorder bounded at 64 windows: it coarsens, never grows
    rec = Recorder(max_windows=64)
    for s in range(3600):
        t = s * 1_000_000_000
        rec.record("x", "ok", t, t, t + 5_000_000)
    wins = rec.windows()
    assert len(wins) <= 64 and wins[-1]["end_s"] >= 3600 and sum(w["ok"] for w in wins) == 3600
    sampler = ResourceSampler(max_samples=50)
    for _ in range(400):
        sampler.sample()
    assert len(sampler.samples) <= 50
    assert sampler.samples[0]["t_s"] <= sampler.samples[-1]["t_s"]
