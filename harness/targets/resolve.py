"""What the harness calls: a registered target by short name, ``module:function``, a
``file.py:function``, an ``http(s)://`` URL, ``noop`` or a ``mixed`` spread of registered
targets. The reference workloads are one plug-in among others (``lbh.targets``)."""

from __future__ import annotations

import inspect
from dataclasses import replace
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple

from harness.targets.base import Target, TargetContext, TargetError
from harness.targets.http import build_http_target
from harness.targets.imports import import_object
from harness.targets.websocket import build_ws_target
from harness.targets.registry import load_payload, load_target_factory, target_names

__all__ = ["build_target", "resolve_payload", "DEFAULT_MIX"]

#: ``mixed`` without a ``mix``: the reference system's share of calls (names, not imports)
DEFAULT_MIX: Mapping[str, float] = {"features": 0.7, "env-step": 0.2, "risk-var": 0.1}


def _noop() -> None:
    return None


def resolve_payload(spec: str) -> Callable[[int], Any]:
    """A payload generator: a registered name, ``module:function`` or ``file.py:function``."""
    if ":" in spec:
        return import_object(spec, "payload")
    return load_payload(spec)


def _as_args(value: Any) -> Tuple[Sequence[Any], Optional[Mapping[str, Any]]]:
    if value is None:
        return (), None
    if isinstance(value, tuple):
        return value, None
    if isinstance(value, Mapping):
        return (), value
    return (value,), None


def _function_target(spec: str, payload: Optional[str]) -> Target:
    fn = import_object(spec, "target")
    is_async = inspect.iscoroutinefunction(fn)
    label = spec.rsplit(":", 1)[-1].rsplit(".", 1)[-1]
    if payload is None:
        empty: Tuple[Any, ...] = ()
        return Target(label, (label,), lambda k: (label, fn, empty), is_async)
    gen = resolve_payload(payload)
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


def _registered(name: str, ctx: TargetContext) -> Target:
    try:
        factory = load_target_factory(name)
    except KeyError:
        known = ", ".join(target_names())
        hint = (f"registered: {known}" if known else
                "no targets are registered: the reference workloads come with "
                "pip install 'latency-budget-harness[workloads]'")
        raise TargetError(f"target: unknown {name!r}; expected a registered name ({hint}), mixed, noop, "
                          "module:function, path/to/file.py:function or an http(s):// URL") from None
    target = factory(ctx)
    if not isinstance(target, Target):
        raise TargetError(f"target: the factory registered as {name!r} returned {type(target).__name__}, "
                          "not a harness Target")
    return target


def _mixed(mix: Optional[Mapping[str, float]], ctx: TargetContext) -> Target:
    weights = dict(mix or DEFAULT_MIX)
    for key, value in weights.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise TargetError(f"mix.{key}: expected a weight >= 0, got {value!r}")
    known = set(target_names())
    unknown = sorted(k for k in weights if k not in known)
    if unknown:
        raise TargetError(f"mix.{unknown[0]}: unknown target; registered: {', '.join(sorted(known)) or 'none'}")
    parts = [(k, _registered(k, replace(ctx, name=k)))
             for k, v in weights.items() if v > 0]
    if not parts:
        raise TargetError("mix: all weights are zero")
    if any(t.is_async for _, t in parts):
        raise TargetError("mix: only synchronous targets can be mixed")
    # A fixed, evenly spread sequence of 1000 slots: every run with the same mix sends the
    # same share to each target (a random choice would make short runs disagree).
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
    closers = [t.close for _, t in parts]
    labels = tuple(k for k, _ in parts)

    def close() -> None:
        for c in closers:
            c()

    return Target("mixed", labels, lambda k: dispatchers[slots[k % 1000]](k), close=close)


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
    """Resolve a scenario's target."""
    faults = faults or {}
    workload = workload or {}
    if name.startswith(("http://", "https://")):
        if faults or workload:
            raise TargetError(f"{'faults' if faults else 'workload'}: an HTTP target is configured on its server "
                              "(e.g. LBH_FAULT_* for `workloads serve`), not in the scenario")
        return build_http_target(name, payload=resolve_payload(payload) if payload else None,
                                 settings=http or {}, max_in_flight=max_in_flight, tracer_provider=tracer_provider,
                                 resolve_payload=resolve_payload)
    if name.startswith(("ws://", "wss://")):
        if faults or workload or payload:
            field = "faults" if faults else "workload" if workload else "payload"
            raise TargetError(f"{field}: a ws:// target subscribes with the settings in its URL "
                              "(?symbols=AAPL&rate=50&hold=5s), not with " + field)
        return build_ws_target(name, http=http)
    if ":" in name:
        if faults or workload:
            raise TargetError(f"{'faults' if faults else 'workload'}: only registered targets take it; "
                              f"target {name!r} is your own function")
        return _function_target(name, payload)
    if name == "noop":  # measures the generator itself (like pointing wrk at nothing)
        return Target("noop", ("noop",), lambda k: ("noop", _noop, ()))
    ctx = TargetContext(name, faults, workload, 0 if seed is None else int(seed), registry, tracer_provider)
    if name == "mixed":
        return _mixed(mix, ctx)
    if payload:
        raise TargetError(f"payload: target {name!r} builds its own inputs; a payload goes with "
                          "module:function or an http(s):// target")
    return _registered(name, ctx)
