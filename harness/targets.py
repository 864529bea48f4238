"""What the harness calls: the embedded workloads by short name, or any ``module:function``.

A target turns a request ordinal into ``(label, callable, args)``; the label names the
histogram the request lands in (``mixed`` spreads requests over several labels). Work
that is not the measured call (building payloads, importing modules, loading the model)
happens here, before the clock starts.
"""

from __future__ import annotations

import importlib
import inspect
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from harness.recorder import FLAG_CACHE_HIT, FLAG_FALLBACK

__all__ = ["Target", "TargetError", "build_target", "flags_of", "DEFAULT_MIX"]

DEFAULT_MIX: Mapping[str, float] = {"features": 0.7, "env-step": 0.2, "risk-var": 0.1}


class TargetError(ValueError):
    """The target or payload cannot be used; the message names the field."""


@dataclass
class Target:
    """A resolved target: ``dispatch(ordinal) -> (label, fn, args)``."""

    name: str
    labels: Tuple[str, ...]
    dispatch: Callable[[int], Tuple[str, Callable[..., Any], Sequence[Any]]]
    is_async: bool = False
    close: Callable[[], None] = field(default=lambda: None)
    #: async setup / teardown run inside the executor's event loop (an HTTP client session)
    aopen: Optional[Callable[[], Any]] = None
    aclose: Optional[Callable[[], Any]] = None
    #: callback face (one label): ``astart(ordinal, call)`` begins a request that later calls
    #: ``call.done(error_name_or_None, flags)``; ``acancel(call)`` abandons it at its deadline.
    #: The asyncio executor prefers it to ``dispatch`` (no task per request).
    astart: Optional[Callable[[int, Any], None]] = None
    acancel: Optional[Callable[[Any], None]] = None


def _noop() -> None:
    return None


def flags_of(result: Any) -> int:
    """Cache-hit / fallback bits from a workload result (attributes or mapping keys)."""
    if result is None:
        return 0
    if isinstance(result, Mapping):
        hit, fb = result.get("cache_hit"), result.get("fallback_used", result.get("fallback"))
    else:
        hit, fb = getattr(result, "cache_hit", None), getattr(result, "fallback_used", None)
    return (FLAG_CACHE_HIT if hit is True else 0) | (FLAG_FALLBACK if fb is True else 0)


def _import(spec: str, what: str) -> Callable[..., Any]:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise TargetError(f"{what}: expected 'module:function', got {spec!r}")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise TargetError(f"{what}: cannot import module {module_name!r}: {exc}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TargetError(f"{what}: module {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise TargetError(f"{what}: {spec!r} is not callable")
    return obj


def _as_args(value: Any) -> Tuple[Sequence[Any], Optional[Mapping[str, Any]]]:
    if value is None:
        return (), None
    if isinstance(value, tuple):
        return value, None
    if isinstance(value, Mapping):
        return (), value
    return (value,), None


def _function_target(spec: str, payload: Optional[str]) -> Target:
    fn = _import(spec, "target")
    is_async = inspect.iscoroutinefunction(fn)
    label = spec.rsplit(":", 1)[-1].rsplit(".", 1)[-1]
    if payload is None:
        empty: Tuple[Any, ...] = ()
        return Target(label, (label,), lambda k: (label, fn, empty), is_async)
    gen = _import(payload, "payload")
    gen(0)  # a generator that builds a pool on first use does it now, not on the clock

    def dispatch(k: int):
        args, kwargs = _as_args(gen(k))
        if kwargs is not None:
            return label, (lambda: fn(**kwargs)) if not is_async else _bind_async(fn, kwargs), ()
        return label, fn, args

    return Target(label, (label,), dispatch, is_async)


def _bind_async(fn: Callable[..., Any], kwargs: Mapping[str, Any]) -> Callable[[], Any]:
    async def call():
        return await fn(**kwargs)
    return call


# -- the embedded workloads -------------------------------------------------------------


class _Workloads:
    """Builds the reference workloads once, in the harness's registry."""

    def __init__(self, faults: Mapping[str, Any], seed: Optional[int], registry: Any, tracer_provider: Any,
                 workload: Optional[Mapping[str, Any]] = None) -> None:
        from workloads.extractor import ExtractorConfig, build_extractor
        from workloads.faults import ConfigError, FaultConfig

        self.seed = 0 if seed is None else int(seed)
        settings = dict(workload or {})
        for key in ("faults", "seed"):
            if key in settings:
                raise TargetError(f"workload.{key}: set it at the top level of the scenario, not under workload")
        try:
            fault_cfg = FaultConfig.from_mapping(dict(faults), prefix="faults.")
            self.config = ExtractorConfig.from_mapping({**settings}).replace(faults=fault_cfg, seed=self.seed)
        except ConfigError as exc:
            msg = str(exc)  # fault errors already name "faults.<field>"; extractor ones name the bare field
            raise TargetError(msg if msg.startswith("faults.") else f"workload.{msg}") from None
        self.registry = registry
        self.tracer_provider = tracer_provider
        self.extractor = build_extractor(self.config, registry, tracer_provider)
        self._local = threading.local()

    def features(self) -> Target:
        from harness.payloads import pool_index, window_pool

        pool = window_pool(self.seed)
        extract = self.extractor.extract
        n = len(pool)
        return Target("features", ("features",), lambda k: ("features", extract, (pool[pool_index(k, n)],)))

    def env_step(self) -> Target:
        from workloads.environment import TradingEnv

        local = self._local
        extractor = self.extractor
        seed = self.seed

        def step(k: int):
            env = getattr(local, "env", None)
            if env is None:
                env = local.env = TradingEnv(extractor, registry=self.registry, tracer_provider=self.tracer_provider)
                env.reset(seed=seed + threading.get_ident() % 1000)
            obs, reward, terminated, truncated, info = env.step(k % 3)
            if terminated or truncated:
                env.reset()
            return env.last_result

        return Target("env-step", ("env-step",), lambda k: ("env-step", step, (k,)))

    def risk_var(self) -> Target:
        from workloads.risk import RiskEngine

        rng = np.random.default_rng(self.seed)
        d = 50  # assets: a 10,000 x 50 Monte-Carlo VaR per call
        a = rng.normal(0, 0.01, (d, d))
        cov = a @ a.T + np.eye(d) * 1e-4
        mean = np.zeros(d)
        weights = np.full(d, 1.0 / d)
        engine = RiskEngine(n_scenarios=10_000, seed=self.seed, registry=self.registry,
                            tracer_provider=self.tracer_provider)
        return Target("risk-var", ("risk-var",), lambda k: ("risk-var", engine.mc_var, (mean, cov, weights)))


def build_target(
    name: str,
    *,
    payload: Optional[str] = None,
    mix: Optional[Mapping[str, float]] = None,
    faults: Optional[Mapping[str, Any]] = None,
    workload: Optional[Mapping[str, Any]] = None,
    http: Optional[Mapping[str, Any]] = None,
    max_in_flight: int = 256,
    seed: Optional[int] = None,
    registry: Any = None,
    tracer_provider: Any = None,
) -> Target:
    """Resolve a scenario's target (short name or ``module:function``)."""
    faults = faults or {}
    if ":" in name and not name.startswith(("http://", "https://")):
        if faults or workload:
            raise TargetError(f"{'faults' if faults else 'workload'}: only the embedded workloads take it; "
                              f"target {name!r} is your own function")
        return _function_target(name, payload)
    if name == "noop":  # measures the generator itself (like pointing wrk at nothing)
        return Target("noop", ("noop",), lambda k: ("noop", _noop, ()))
    if name.startswith(("http://", "https://")):
        from harness.http_target import build_http_target

        if faults or workload:
            raise TargetError(f"{'faults' if faults else 'workload'}: an HTTP target is configured on its server "
                              "(e.g. LBH_FAULT_* for `workloads serve`), not in the scenario")
        return build_http_target(name, payload=payload, settings=http or {}, max_in_flight=max_in_flight)
    w = _Workloads(faults, seed, registry, tracer_provider, workload)
    makers = {"features": w.features, "env-step": w.env_step, "risk-var": w.risk_var}
    if name in makers:
        return makers[name]()
    if name != "mixed":
        raise TargetError(f"target: unknown {name!r}; expected one of features, env-step, risk-var, mixed, "
                          "noop, or module:function")
    weights = dict(mix or DEFAULT_MIX)
    unknown = sorted(set(weights) - set(makers))
    if unknown:
        raise TargetError(f"mix.{unknown[0]}: unknown workload; expected {', '.join(makers)}")
    parts = [(k, makers[k]()) for k, v in weights.items() if v > 0]
    if not parts:
        raise TargetError("mix: all weights are zero")
    # A fixed, evenly spread sequence of 1000 slots: every run with the same mix sends the
    # same share to each workload (a random choice would make short runs disagree).
    total = sum(weights[k] for k, _ in parts)
    slots: List[int] = []
    acc = [0.0] * len(parts)
    for _ in range(1000):
        for i, (k, _t) in enumerate(parts):
            acc[i] += weights[k] / total
        j = max(range(len(parts)), key=lambda i: acc[i])
        acc[j] -= 1.0
        slots.append(j)
    dispatchers = [t.dispatch for _, t in parts]
    labels = tuple(k for k, _ in parts)
    return Target("mixed", labels, lambda k: dispatchers[slots[k % 1000]](k))
