"""Risk calls: historical VaR/CVaR, Monte-Carlo VaR on correlated scenarios, limit checks.

Conventions: VaR and CVaR are reported as positive losses, in the units of
``returns × weights`` (pass weights as fractions for a fraction of the portfolio, as
notionals for currency). ``confidence`` is e.g. 0.99; the tail probability is
``1 - confidence``. Multi-day horizons: Monte-Carlo scales the mean by h and the
covariance by h; historical figures use the square-root-of-time rule (i.i.d. returns).

Why the Monte-Carlo engine keeps workspaces: 10,000 × 50 float64 scenarios are 4 MB,
and a fresh 4 MB array is often a fresh mmap whose page faults (taken by every BLAS
thread that writes it) cost milliseconds, depending on the allocator's state. Each thread
reuses its own buffers per (n_scenarios, n_assets), normals are drawn straight into
them (``out=``), and the portfolio tail is found with ``np.partition`` (O(n)) rather
than a sort, so the cost is steady. Drawing the 500,000 normals is then most of the time.
Per-thread buffers (not a lock) so concurrent risk calls do not serialise.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from instrumentation import instrument

__all__ = [
    "LimitBreach",
    "LimitCheckResult",
    "MonteCarloResult",
    "MonteCarloVaR",
    "RiskEngine",
    "RiskLimits",
    "check_limits",
    "historical_cvar",
    "historical_var",
    "monte_carlo_var",
    "parametric_var",
]


def _alpha(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return 1.0 - confidence


def _portfolio_returns(returns: Any, weights: Any | None) -> np.ndarray:
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim not in (1, 2) or r.shape[0] < 2:
        raise ValueError(f"returns must be (n_obs,) or (n_obs, n_assets) with n_obs >= 2, got {r.shape}")
    if not np.isfinite(r).all():
        raise ValueError("returns contain NaN or inf")
    if weights is None:
        return r
    w = np.asarray(weights, dtype=np.float64)
    if r.ndim != 2 or w.shape != (r.shape[1],):
        raise ValueError(f"weights must be (n_assets,) for returns (n_obs, n_assets); got {w.shape} for {r.shape}")
    return r @ w


def historical_var(
    returns: Any, confidence: float = 0.99, *, weights: Any | None = None, horizon_days: float = 1.0
) -> float | np.ndarray:
    """Historical VaR: minus the (1 − confidence) quantile of returns.

    ``returns`` (n_obs,) gives a float; (n_obs, n_assets) gives one VaR per column, or the
    portfolio's VaR when ``weights`` is given.
    """
    r = _portfolio_returns(returns, weights)
    var = -np.quantile(r, _alpha(confidence), axis=0) * np.sqrt(horizon_days)
    return float(var) if np.ndim(var) == 0 else var


def historical_cvar(
    returns: Any, confidence: float = 0.99, *, weights: Any | None = None, horizon_days: float = 1.0
) -> float | np.ndarray:
    """Historical CVaR (expected shortfall): minus the mean of returns at or below the VaR quantile."""
    r = _portfolio_returns(returns, weights)
    q = np.quantile(r, _alpha(confidence), axis=0)
    tail = r <= q
    cvar = -(np.where(tail, r, 0.0).sum(axis=0) / tail.sum(axis=0)) * np.sqrt(horizon_days)
    return float(cvar) if np.ndim(cvar) == 0 else cvar


def parametric_var(mean: Any, cov: Any, weights: Any, confidence: float = 0.99, *, horizon_days: float = 1.0) -> float:
    """Analytic VaR of normal returns: z·σ_p·√h − μ_p·h (the reference Monte-Carlo must match)."""
    from statistics import NormalDist

    mu, sigma, w = _check_moments(mean, cov, weights)
    z = NormalDist().inv_cdf(confidence)
    sigma_p = float(np.sqrt(w @ sigma @ w))
    return z * sigma_p * np.sqrt(horizon_days) - float(mu @ w) * horizon_days


def _check_moments(mean: Any, cov: Any, weights: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mu = np.asarray(mean, dtype=np.float64)
    sigma = np.asarray(cov, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    d = w.shape[0] if w.ndim == 1 else -1
    if w.ndim != 1 or mu.shape != (d,) or sigma.shape != (d, d):
        raise ValueError(f"need mean (d,), cov (d, d), weights (d,); got {mu.shape}, {sigma.shape}, {w.shape}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all() and np.isfinite(w).all()):
        raise ValueError("mean, cov and weights must be finite")
    return mu, sigma, w


@dataclass(frozen=True)
class MonteCarloResult:
    var: float
    cvar: float
    confidence: float
    n_scenarios: int
    horizon_days: float


class _Workspace:
    __slots__ = ("normals", "scenarios", "pnl")

    def __init__(self, n: int, d: int) -> None:
        self.normals = np.empty((n, d))
        self.scenarios = np.empty((n, d))
        self.pnl = np.empty(n)


class MonteCarloVaR:
    """Monte-Carlo VaR/CVaR from ``n_scenarios`` correlated normal scenarios (Cholesky of cov).

    Thread-safe: each thread has its own workspaces (at most ``max_workspaces`` shapes)
    and its own random stream, spawned from ``seed``. ``run(..., seed=s)`` is reproducible
    regardless of thread.
    """

    def __init__(self, n_scenarios: int = 10_000, *, seed: int | None = None, max_workspaces: int = 4) -> None:
        if n_scenarios < 100:
            raise ValueError(f"n_scenarios must be >= 100, got {n_scenarios}")
        self.n_scenarios = int(n_scenarios)
        self._seeds = np.random.SeedSequence(seed)
        self._seeds_lock = threading.Lock()
        self._local = threading.local()
        self._max_workspaces = max_workspaces

    def _thread_state(self) -> tuple[np.random.Generator, OrderedDict[tuple[int, int], _Workspace]]:
        local = self._local
        if not hasattr(local, "rng"):
            with self._seeds_lock:
                child = self._seeds.spawn(1)[0]
            local.rng = np.random.default_rng(child)
            local.workspaces = OrderedDict()
        return local.rng, local.workspaces

    def _workspace(self, n: int, d: int) -> tuple[np.random.Generator, _Workspace]:
        rng, spaces = self._thread_state()
        ws = spaces.get((n, d))
        if ws is None:
            ws = spaces[(n, d)] = _Workspace(n, d)
            if len(spaces) > self._max_workspaces:
                spaces.popitem(last=False)
        else:
            spaces.move_to_end((n, d))
        return rng, ws

    def run(
        self,
        mean: Any,
        cov: Any,
        weights: Any,
        confidence: float = 0.99,
        *,
        horizon_days: float = 1.0,
        seed: int | None = None,
    ) -> MonteCarloResult:
        mu, sigma, w = _check_moments(mean, cov, weights)
        alpha = _alpha(confidence)
        try:
            chol = np.linalg.cholesky(sigma)
        except np.linalg.LinAlgError:
            raise ValueError("cov is not positive definite (Cholesky failed)") from None
        n, d = self.n_scenarios, w.shape[0]
        rng, ws = self._workspace(n, d)
        if seed is not None:
            rng = np.random.default_rng(seed)
        rng.standard_normal(out=ws.normals)
        # Asset shocks Z (L√h)ᵀ; the drift μh is added to the portfolio P&L, not to all
        # n × d scenario cells (same numbers, one 4 MB pass fewer).
        np.matmul(ws.normals, (chol * np.sqrt(horizon_days)).T, out=ws.scenarios)
        pnl = np.matmul(ws.scenarios, w, out=ws.pnl)
        pnl += float(mu @ w) * horizon_days
        # The alpha-quantile as np.quantile's default (linear) computes it, in O(n).
        pos = alpha * (n - 1)
        k = int(np.floor(pos))
        pnl.partition([k, k + 1])
        q = pnl[k] + (pos - k) * (pnl[k + 1] - pnl[k])
        cvar = -float(pnl[: k + 1].mean())
        return MonteCarloResult(-float(q), cvar, confidence, n, horizon_days)


_default_engine = MonteCarloVaR()


def monte_carlo_var(
    mean: Any,
    cov: Any,
    weights: Any,
    confidence: float = 0.99,
    *,
    horizon_days: float = 1.0,
    seed: int | None = None,
) -> MonteCarloResult:
    """:meth:`MonteCarloVaR.run` on a shared module-level engine of 10,000 scenarios."""
    return _default_engine.run(mean, cov, weights, confidence, horizon_days=horizon_days, seed=seed)


# --------------------------------------------------------------------------- limits


@dataclass(frozen=True)
class RiskLimits:
    """Limits in currency; None disables a limit. ``max_position`` may be per asset."""

    max_position: float | Sequence[float] | None = None  # |position × price| per asset
    max_gross_exposure: float | None = None  # Σ |notional|
    max_net_exposure: float | None = None  # |Σ notional|
    max_var: float | None = None


@dataclass(frozen=True)
class LimitBreach:
    limit: str  # "position" | "gross_exposure" | "net_exposure" | "var"
    value: float
    threshold: float
    asset: str | int | None = None


@dataclass(frozen=True)
class LimitCheckResult:
    breaches: tuple[LimitBreach, ...]
    gross_exposure: float
    net_exposure: float
    var: float | None

    @property
    def ok(self) -> bool:
        return not self.breaches


def check_limits(
    positions: Any,
    prices: Any,
    limits: RiskLimits,
    *,
    var: float | None = None,
    asset_names: Sequence[str] | None = None,
) -> LimitCheckResult:
    """Every breached limit, one entry per asset for position limits (vectorised)."""
    qty = np.asarray(positions, dtype=np.float64)
    px = np.asarray(prices, dtype=np.float64)
    if qty.ndim != 1 or px.shape != qty.shape:
        raise ValueError(f"positions and prices must be equal-length 1-D arrays, got {qty.shape} and {px.shape}")
    if asset_names is not None and len(asset_names) != qty.shape[0]:
        raise ValueError(f"asset_names has {len(asset_names)} names for {qty.shape[0]} assets")
    notional = qty * px
    gross = float(np.abs(notional).sum())
    net = float(notional.sum())
    breaches: list[LimitBreach] = []
    if limits.max_position is not None:
        cap = np.broadcast_to(np.asarray(limits.max_position, dtype=np.float64), notional.shape)
        for i in np.flatnonzero(np.abs(notional) > cap):
            name = asset_names[i] if asset_names is not None else int(i)
            breaches.append(LimitBreach("position", float(abs(notional[i])), float(cap[i]), name))
    if limits.max_gross_exposure is not None and gross > limits.max_gross_exposure:
        breaches.append(LimitBreach("gross_exposure", gross, float(limits.max_gross_exposure)))
    if limits.max_net_exposure is not None and abs(net) > limits.max_net_exposure:
        breaches.append(LimitBreach("net_exposure", abs(net), float(limits.max_net_exposure)))
    if limits.max_var is not None and var is not None and var > limits.max_var:
        breaches.append(LimitBreach("var", float(var), float(limits.max_var)))
    return LimitCheckResult(tuple(breaches), gross, net, var)


# --------------------------------------------------------------------------- instrumented facade


class RiskEngine:
    """The risk calls as instrumented operations (``risk_var``, ``risk_cvar``, ``risk_mc_var``,
    ``risk_limits``) in the given registry. The module functions stay uninstrumented so
    importing this module registers nothing globally."""

    def __init__(
        self,
        *,
        n_scenarios: int = 10_000,
        seed: int | None = None,
        registry: CollectorRegistry | None = None,
        tracer_provider: Any = None,
    ) -> None:
        self.monte_carlo = MonteCarloVaR(n_scenarios, seed=seed)
        traced: dict[str, Any] = {"registry": registry, "tracer_provider": tracer_provider}
        self._var = instrument("risk_var", **traced)(historical_var)
        self._cvar = instrument("risk_cvar", **traced)(historical_cvar)
        self._mc_var = instrument("risk_mc_var", **traced)(self.monte_carlo.run)
        self._limits = instrument("risk_limits", annotate=_annotate_limits, **traced)(check_limits)

    def var(self, returns: Any, confidence: float = 0.99, **kwargs: Any) -> float | np.ndarray:
        """:func:`historical_var` as ``risk_var``."""
        return self._var(returns, confidence, **kwargs)

    def cvar(self, returns: Any, confidence: float = 0.99, **kwargs: Any) -> float | np.ndarray:
        """:func:`historical_cvar` as ``risk_cvar``."""
        return self._cvar(returns, confidence, **kwargs)

    def mc_var(self, mean: Any, cov: Any, weights: Any, confidence: float = 0.99, **kwargs: Any) -> MonteCarloResult:
        """:meth:`MonteCarloVaR.run` as ``risk_mc_var``."""
        return self._mc_var(mean, cov, weights, confidence, **kwargs)

    def check_limits(self, positions: Any, prices: Any, limits: RiskLimits, **kwargs: Any) -> LimitCheckResult:
        """:func:`check_limits` as ``risk_limits`` (flag ``breached`` counts calls with a breach)."""
        return self._limits(positions, prices, limits, **kwargs)


def _annotate_limits(result: LimitCheckResult) -> dict[str, bool | int]:
    return {"breached": not result.ok, "breaches": len(result.breaches)}
