"""The reference workloads as harness targets (``lbh.targets`` entry points).

``features``, ``env-step``, ``risk-var``, ``agent-action`` and ``trading-loop`` share one
extractor (and one agent) per run (built from the
scenario's ``faults`` and ``workload`` settings, in the run's registry and tracer
provider), so a ``mixed`` run loads one model. The ``features-*`` targets serve the
packaged input scenarios (sizes, extreme data, crash, warm cache, cached mix).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Mapping

import numpy as np
from prometheus_client import CollectorRegistry

from harness.targets import Target, TargetContext, TargetError
from workloads.agent import PolicyArchitecture, TradingAgent
from workloads.environment import TradingEnv
from workloads.extractor import ExtractorConfig, build_extractor
from workloads.faults import ConfigError, FaultConfig
from workloads.plugin.library import library
from workloads.plugin.payloads import pool_index, window_pool
from workloads.risk import RiskEngine, RiskLimits

__all__ = ["features", "env_step", "risk_var", "risk_limits", "agent_action", "trading_loop", "features_sizes", "features_extreme", "features_crash",
           "features_warm", "features_mixed_cache"]


class _Workloads:
    """One extractor per run, in the harness's registry."""

    def __init__(self, faults: Mapping[str, Any], seed: int, registry: Any, tracer_provider: Any,
                 workload: Mapping[str, Any]) -> None:
        self.seed = seed
        settings = dict(workload)
        for key in ("faults", "seed"):
            if key in settings:
                raise TargetError(f"workload.{key}: set it at the top level of the scenario, not under workload")
        try:
            fault_cfg = FaultConfig.from_mapping(dict(faults), prefix="faults.")
            self.config = ExtractorConfig.from_mapping(settings).replace(faults=fault_cfg, seed=seed)
        except ConfigError as exc:
            msg = str(exc)  # fault errors already name "faults.<field>"; extractor ones name the bare field
            raise TargetError(msg if msg.startswith("faults.") else f"workload.{msg}") from None
        self.registry = registry
        self.tracer_provider = tracer_provider
        self.extractor = build_extractor(self.config, registry, tracer_provider)
        self.local = threading.local()
        self._agent: TradingAgent | None = None
        self._lock = threading.Lock()

    def agent(self) -> TradingAgent:
        """The run's agent (seeded with the run's seed, in the run's registry), built once."""
        with self._lock:
            if self._agent is None:
                self._agent = TradingAgent(PolicyArchitecture(feature_dim=self.config.fused_feature_dim),
                                           seed=self.seed, threads=self.config.torch_threads,
                                           registry=self.registry, tracer_provider=self.tracer_provider)
            return self._agent


def _shared(ctx: TargetContext) -> _Workloads:
    w = ctx.shared.get("workloads")
    if w is None:
        w = ctx.shared["workloads"] = _Workloads(ctx.faults, ctx.seed, ctx.registry, ctx.tracer_provider,
                                                 ctx.workload)
    return w


def features(ctx: TargetContext) -> Target:
    """``FeatureExtractor.extract`` on a seeded walk through 2,048 windows."""
    w = _shared(ctx)
    pool = window_pool(w.seed)
    extract = w.extractor.extract
    n = len(pool)
    return Target("features", ("features",), lambda k: ("features", extract, (pool[pool_index(k, n)],)))


def env_step(ctx: TargetContext) -> Target:
    """``TradingEnv.step`` (one environment per worker thread, reset when an episode ends)."""
    w = _shared(ctx)
    local, seed = w.local, w.seed

    def step(k: int):
        env = local.__dict__.get("env")
        if env is None:
            env = local.env = TradingEnv(w.extractor, registry=w.registry, tracer_provider=w.tracer_provider)
            env.reset(seed=seed + threading.get_ident() % 1000)
        obs, reward, terminated, truncated, info = env.step(k % 3)
        if terminated or truncated:
            env.reset()
        return env.last_result

    return Target("env-step", ("env-step",), lambda k: ("env-step", step, (k,)))


def risk_var(ctx: TargetContext) -> Target:
    """A 10,000-scenario Monte-Carlo VaR of a 50-asset portfolio per call."""
    w = _shared(ctx)
    rng = np.random.default_rng(w.seed)
    d = 50
    a = rng.normal(0, 0.01, (d, d))
    cov = a @ a.T + np.eye(d) * 1e-4
    mean = np.zeros(d)
    weights = np.full(d, 1.0 / d)
    engine = RiskEngine(n_scenarios=10_000, seed=w.seed, registry=w.registry, tracer_provider=w.tracer_provider)
    return Target("risk-var", ("risk-var",), lambda k: ("risk-var", engine.mc_var, (mean, cov, weights)))


def risk_limits(ctx: TargetContext) -> Target:
    """``RiskEngine.check_limits`` (instrumented as ``risk_limits``, budget p95 < 10 ms) on a
    seeded pool of 256 books of 50 assets, sized so some calls breach a limit (the breach
    path builds its entries, so both paths are timed). No model: it takes no settings."""
    ctx.refuse_settings()
    rng = np.random.default_rng(ctx.seed)
    d, n = 50, 256
    positions = rng.normal(0.0, 300.0, (n, d))
    prices = rng.uniform(10.0, 200.0, (n, d))
    var = rng.uniform(0.0, 2e5, n)
    limits = RiskLimits(max_position=2e5, max_gross_exposure=5e6, max_net_exposure=1e6, max_var=1.5e5)
    engine = RiskEngine(n_scenarios=100, seed=ctx.seed, registry=ctx.registry, tracer_provider=ctx.tracer_provider)
    check = engine.check_limits

    def one(k: int):
        i = pool_index(k, n)
        return check(positions[i], prices[i], limits, var=float(var[i]))

    return Target("risk-limits", ("risk-limits",), lambda k: ("risk-limits", one, (k,)))


def agent_action(ctx: TargetContext) -> Target:
    """``TradingAgent.act`` alone on a pool of 256 real observations (budget p95 < 50 ms).

    The observations come from seeded episodes of the environment run before the clock
    starts, through an extractor in a private registry, so the run's series hold only
    ``agent_action`` calls."""
    w = _shared(ctx)
    agent = w.agent()
    env = TradingEnv(config=w.config, n_steps=255, registry=CollectorRegistry())
    obs, _ = env.reset(seed=w.seed)
    pool = [obs]
    while len(pool) < 256:
        obs, _, terminated, _, _ = env.step(len(pool) % 3)
        pool.append(obs)
        if terminated:
            obs, _ = env.reset()
    agent.probabilities(np.stack(pool))  # torch's one-time set-up outside the run
    n = len(pool)
    act = agent.act
    return Target("agent-action", ("agent-action",), lambda k: ("agent-action", act, (pool[pool_index(k, n)],)))


def trading_loop(ctx: TargetContext) -> Target:
    """One trading decision per call: the agent acts on the latest observation and the
    environment steps (which extracts the next observation): observe → act → step, end to end.
    One environment per worker thread, reset when an episode ends."""
    w = _shared(ctx)
    agent = w.agent()
    local, seed = w.local, w.seed

    def decide(k: int):
        env = local.__dict__.get("loop_env")
        if env is None:
            env = local.loop_env = TradingEnv(w.extractor, registry=w.registry, tracer_provider=w.tracer_provider)
            local.obs, _ = env.reset(seed=seed + threading.get_ident() % 1000)
        decision = agent.act(local.obs)
        local.obs, _reward, terminated, truncated, _info = env.step(decision.action)
        result = env.last_result  # the decision's extraction: its cache / fallback flags count
        if terminated or truncated:
            local.obs, _ = env.reset()
        return result

    return Target("trading-loop", ("trading-loop",), lambda k: ("trading-loop", decide, (k,)))


def _library_target(name: str, pick: Callable[[Any], Callable[[int], Any]]) -> Callable[[TargetContext], Target]:
    def factory(ctx: TargetContext) -> Target:
        ctx.refuse_settings()
        fn = pick(library())
        return Target(name, (name,), lambda k: (name, fn, (k,)))

    factory.__name__ = name.replace("-", "_")
    factory.__doc__ = f"The packaged ``{name}`` input set (see :mod:`workloads.plugin.library`)."
    return factory


features_sizes = _library_target("features-sizes", lambda lib: lib.extract_sizes)
features_extreme = _library_target("features-extreme", lambda lib: lib.extract_extreme)
features_crash = _library_target("features-crash", lambda lib: lib.extract_crash)
features_warm = _library_target("features-warm", lambda lib: lib.extract_warm)
features_mixed_cache = _library_target("features-mixed-cache", lambda lib: lib.extract_mixed)
