"""The gate's statistics on synthetic windows: equal distributions never regress (over many
seeds), a +20 % shift is caught, autocorrelated windows get longer blocks and wider
intervals.  (Its cost is printed by benchmarks/gate_calibration.py, not asserted here.)"""

from __future__ import annotations

import numpy as np
import pytest

from harness.result.compare import compare

from tests.unit.result.test_compare import row, synthetic

GATED = ("latency mean", "latency p50", "latency p90", "latency p95", "latency p99", "error rate", "failed rate",
         "throughput (rps)")


@pytest.fixture(scope="module")
def runs() -> dict:
    """20 independent 1,000-request, 20 s runs of one distribution, and the same +20 % slower."""
    return {"a": [synthetic(n=1000, duration=20.0, seed=100 + s) for s in range(20)],
            "b": [synthetic(n=1000, duration=20.0, seed=200 + s) for s in range(20)],
            "slow": [synthetic(n=1000, duration=20.0, seed=300 + s, scale=1.2) for s in range(20)]}


def test_equal_distributions_never_regress(runs):
    statuses = []
    for a, b in zip(runs["a"], runs["b"]):
        c = compare(a, b)
        assert c["gate"]["passed"], c["gate"]["reason"]
        statuses += [row(c, m)["status"] for m in GATED]
    assert "regressed" not in statuses
    assert set(statuses) <= {"unchanged", "inconclusive", "improved"}
    # "improved" on equal distributions is the interval's own error rate (≤ 5 % one-sided)
    assert statuses.count("improved") <= 0.05 * len(statuses)
    assert statuses.count("unchanged") >= 0.8 * len(statuses)


def test_a_twenty_percent_slowdown_is_caught(runs):
    caught = 0
    for a, slow in zip(runs["a"], runs["slow"]):
        c = compare(a, slow)
        caught += not c["gate"]["passed"]
        assert row(c, "latency p50")["status"] in ("regressed", "inconclusive")
        assert row(c, "throughput (rps)")["status"] == "unchanged"
    assert caught >= 19, caught


def test_autocorrelated_windows_get_longer_blocks_and_wider_intervals():
    rng = np.random.default_rng(7)
    n_win = 60
    level = np.empty(n_win)
    x = 0.0
    for i in range(n_win):   # AR(1), phi = 0.9: slow drifts lasting many seconds
        x = 0.9 * x + rng.normal(0, 0.05)
        level[i] = np.exp(x)
    drift = synthetic(n=6000, duration=60.0, seed=5, levels=level)
    iid = synthetic(n=6000, duration=60.0, seed=5)
    other = synthetic(n=6000, duration=60.0, seed=6)
    c_drift, c_iid = compare(other, drift), compare(other, iid)
    lb_drift = c_drift["bootstrap"]["all"]["block_length"][1]
    lb_iid = c_iid["bootstrap"]["all"]["block_length"][1]
    assert lb_iid == 4            # ceil(60 ** (1/3)): no correlation to cover
    assert lb_drift > lb_iid
    w = {k: np.diff(row(c, "latency mean")["interval_percent"])[0] for k, c in (("drift", c_drift), ("iid", c_iid))}
    assert w["drift"] > 1.5 * w["iid"], w



def test_run_noise_widens_latency_intervals_only():
    # two runs of one distribution whose levels differ by 15 % (a busy neighbour during B)
    a, b = synthetic(n=6000, duration=60.0, seed=1), synthetic(n=6000, duration=60.0, seed=2, scale=1.15)
    plain, noisy = compare(a, b), compare(a, b, run_noise=0.10)
    assert row(plain, "latency p50")["status"] == "regressed"
    assert row(noisy, "latency p50")["status"] == "inconclusive" and noisy["gate"]["passed"]
    for m in ("latency mean", "service time p95"):
        (lo0, hi0), (lo1, hi1) = row(plain, m)["interval_percent"], row(noisy, m)["interval_percent"]
        assert lo1 < lo0 and hi1 > hi0
    assert row(plain, "throughput (rps)")["interval_percent"] == row(noisy, "throughput (rps)")["interval_percent"]
    with pytest.raises(ValueError):
        compare(a, b, run_noise=-0.1)


def test_pooled_repeats_count_the_spread_between_runs():
    from harness.result.compare import pool_results

    steady = pool_results([synthetic(n=1000, duration=10.0, seed=s) for s in (1, 2, 3)])
    shaky = pool_results([synthetic(n=1000, duration=10.0, seed=s, scale=k)
                          for s, k in ((1, 0.85), (2, 1.0), (3, 1.15))])
    other = pool_results([synthetic(n=1000, duration=10.0, seed=s) for s in (4, 5, 6)])
    c_steady, c_shaky = compare(other, steady), compare(other, shaky)
    assert c_shaky["bootstrap"]["all"]["repeats"] == [3, 3]
    w = {k: np.diff(row(c, "latency mean")["interval_percent"])[0] for k, c in (("steady", c_steady),
                                                                                ("shaky", c_shaky))}
    assert w["shaky"] > 2 * w["steady"], w
