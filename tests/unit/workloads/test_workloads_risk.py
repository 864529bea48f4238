"""Risk: historical VaR/CVaR, Monte-Carlo VaR against the analytic normal VaR, limits."""

import threading
from statistics import NormalDist

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from workloads.risk import (
    MonteCarloVaR,
    RiskEngine,
    RiskLimits,
    check_limits,
    historical_cvar,
    historical_var,
    parametric_var,
)


def portfolio(d: int = 50, seed: int = 0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d))
    cov = (a @ a.T) / d * 1e-4 + np.eye(d) * 1e-5
    mean = rng.normal(2e-4, 1e-4, d)
    weights = rng.dirichlet(np.ones(d))
    return mean, cov, weights


def test_historical_var_and_cvar_match_their_definitions():
    r = np.random.default_rng(1).standard_t(4, size=5000) * 0.01
    var = historical_var(r, 0.99)
    assert var == pytest.approx(-np.quantile(r, 0.01))
    cvar = historical_cvar(r, 0.99)
    assert cvar == pytest.approx(-r[r <= np.quantile(r, 0.01)].mean())
    assert cvar >= var > 0
    assert historical_var(r, 0.99, horizon_days=4) == pytest.approx(2 * var)


def test_historical_is_vectorised_over_columns_and_weights():
    r = np.random.default_rng(2).normal(0, 0.01, size=(1000, 4))
    per_col = historical_var(r, 0.95)
    assert per_col.shape == (4,)
    np.testing.assert_allclose(per_col, [historical_var(r[:, i], 0.95) for i in range(4)])
    np.testing.assert_allclose(historical_cvar(r, 0.95), [historical_cvar(r[:, i], 0.95) for i in range(4)])
    w = np.array([0.1, 0.2, 0.3, 0.4])
    assert historical_var(r, 0.95, weights=w) == pytest.approx(historical_var(r @ w, 0.95))
    with pytest.raises(ValueError):
        historical_var(r, 1.0)
    with pytest.raises(ValueError):
        historical_var([0.1, np.nan, 0.2])


@pytest.mark.parametrize("confidence, horizon", [(0.99, 1.0), (0.95, 10.0)])
def test_monte_carlo_var_agrees_with_the_analytic_normal_var(confidence, horizon):
    mean, cov, w = portfolio()
    n = 10_000
    result = MonteCarloVaR(n, seed=42).run(mean, cov, w, confidence, horizon_days=horizon)
    analytic = parametric_var(mean, cov, w, confidence, horizon_days=horizon)
    # Standard error of a sample α-quantile: sqrt(α(1−α)/n) / f(q_α), with f the normal
    # density of portfolio returns at the quantile: φ(z)/σ.
    alpha = 1 - confidence
    sigma = np.sqrt(w @ cov @ w * horizon)
    density = NormalDist().pdf(NormalDist().inv_cdf(alpha)) / sigma
    se = np.sqrt(alpha * (1 - alpha) / n) / density
    assert abs(result.var - analytic) < 4 * se, (result.var, analytic, se)
    assert result.cvar > result.var and result.n_scenarios == n


def test_monte_carlo_is_reproducible_across_threads_and_reuses_buffers():
    mean, cov, w = portfolio(d=10)
    engine = MonteCarloVaR(2000)
    results: list[float] = []

    def work() -> None:
        results.append(engine.run(mean, cov, w, seed=7).var)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.append(engine.run(mean, cov, w, seed=7).var)
    assert len(set(results)) == 1
    engine.run(mean, cov, w)
    buffers = engine._local.workspaces[(2000, 10)].normals
    engine.run(mean, cov, w)
    assert engine._local.workspaces[(2000, 10)].normals is buffers
    assert engine.run(mean, cov, w).var != engine.run(mean, cov, w).var  # unseeded: a stream


def test_monte_carlo_rejects_bad_inputs():
    mean, cov, w = portfolio(d=3)
    with pytest.raises(ValueError, match="positive definite"):
        MonteCarloVaR(1000).run(mean, -cov, w)
    with pytest.raises(ValueError):
        MonteCarloVaR(1000).run(mean[:2], cov, w)
    with pytest.raises(ValueError):
        MonteCarloVaR(10)


def test_limit_checks_list_every_breach():
    positions = np.array([10.0, -20.0, 5.0])
    prices = np.array([100.0, 50.0, 10.0])
    limits = RiskLimits(max_position=[2000, 900, 100], max_gross_exposure=1500, max_net_exposure=10, max_var=0.01)
    result = check_limits(positions, prices, limits, var=0.02, asset_names=["AAA", "BBB", "CCC"])
    assert not result.ok
    found = {(b.limit, b.asset) for b in result.breaches}
    assert found == {("position", "BBB"), ("gross_exposure", None), ("net_exposure", None), ("var", None)}
    assert result.gross_exposure == 2050 and result.net_exposure == 50  # 1000 - 1000 + 50
    assert check_limits(positions, prices, RiskLimits(max_position=5000, max_gross_exposure=1e6)).ok
    with pytest.raises(ValueError):
        check_limits(positions, prices[:2], limits)


def test_risk_engine_instruments_all_four_operations():
    registry = CollectorRegistry()
    engine = RiskEngine(n_scenarios=1000, seed=1, registry=registry)
    mean, cov, w = portfolio(d=5)
    r = np.random.default_rng(0).normal(0, 0.01, 500)
    engine.var(r)
    engine.cvar(r)
    mc = engine.mc_var(mean, cov, w)
    engine.check_limits([1.0], [1.0], RiskLimits(max_var=0.0), var=mc.var)
    for op in ("risk_var", "risk_cvar", "risk_mc_var", "risk_limits"):
        assert registry.get_sample_value("lbh_operation_duration_seconds_count", {"operation": op, "outcome": "ok"}) == 1
    assert registry.get_sample_value("lbh_operation_flags_total", {"operation": "risk_limits", "flag": "breached"}) == 1
