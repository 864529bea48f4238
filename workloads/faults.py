"""Fault injection for the extractor: model errors, extra model latency, cache outage.

Everything is off by default. When a fault is configured it is *visible*: the settings
are exported as ``lbh_fault_setting{fault}`` and every injected fault increments
``lbh_faults_injected_total{operation, fault}``, both in the registry the extractor was
given, so a dashboard never shows a latency spike without showing that it was injected.

Injected errors raise :class:`InjectedFault`, a distinct type, so they appear under their
own ``error_type`` label and the extractor's fallback treats them like any model failure.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

__all__ = [
    "ConfigError",
    "FaultConfig",
    "FaultInjector",
    "InjectedFault",
    "parse_bool",
    "parse_float",
]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


class ConfigError(ValueError):
    """A configuration value is invalid; ``field`` names the field or variable at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class InjectedFault(RuntimeError):
    """An error raised on purpose by the fault injector."""


def parse_bool(name: str, raw: object) -> bool:
    """``raw`` as a bool (bool, or 1/0/true/false/yes/no/on/off); errors name ``name``."""
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise ConfigError(name, f"expected a boolean (1/0, true/false, yes/no, on/off), got {raw!r}")


def parse_float(name: str, raw: object, *, low: float = -np.inf, high: float = np.inf) -> float:
    """``raw`` as a finite float in [low, high]; errors name ``name``."""
    if isinstance(raw, bool):
        raise ConfigError(name, f"expected a number, got {raw!r}")
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(name, f"expected a number, got {raw!r}") from None
    if not np.isfinite(value) or not low <= value <= high:
        raise ConfigError(name, f"must be in [{low:g}, {high:g}], got {raw!r}")
    return value


@dataclass(frozen=True)
class FaultConfig:
    """What to inject. ``latency_rate`` is the probability that a call gets the extra latency."""

    error_rate: float = 0.0
    extra_latency_seconds: float = 0.0
    latency_rate: float = 1.0
    cache_outage: bool = False

    def __post_init__(self) -> None:
        for name in ("error_rate", "extra_latency_seconds", "latency_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(name, f"expected a number, got {value!r} (from_env/from_mapping parse strings)")
        parse_float("error_rate", self.error_rate, low=0.0, high=1.0)
        parse_float("extra_latency_seconds", self.extra_latency_seconds, low=0.0)
        parse_float("latency_rate", self.latency_rate, low=0.0, high=1.0)
        if not isinstance(self.cache_outage, bool):
            raise ConfigError("cache_outage", f"expected a bool, got {self.cache_outage!r}")

    @property
    def enabled(self) -> bool:
        return self.error_rate > 0 or (self.extra_latency_seconds > 0 and self.latency_rate > 0) or self.cache_outage

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FaultConfig:
        """Read ``LBH_FAULT_ERROR_RATE``, ``LBH_FAULT_EXTRA_LATENCY_MS``, ``LBH_FAULT_LATENCY_RATE``
        and ``LBH_FAULT_CACHE_OUTAGE``; unset means the default. Errors name the variable."""
        env = os.environ if environ is None else environ
        kwargs: dict[str, float | bool] = {}
        if (raw := env.get("LBH_FAULT_ERROR_RATE")) is not None:
            kwargs["error_rate"] = parse_float("LBH_FAULT_ERROR_RATE", raw, low=0.0, high=1.0)
        if (raw := env.get("LBH_FAULT_EXTRA_LATENCY_MS")) is not None:
            kwargs["extra_latency_seconds"] = parse_float("LBH_FAULT_EXTRA_LATENCY_MS", raw, low=0.0) / 1000.0
        if (raw := env.get("LBH_FAULT_LATENCY_RATE")) is not None:
            kwargs["latency_rate"] = parse_float("LBH_FAULT_LATENCY_RATE", raw, low=0.0, high=1.0)
        if (raw := env.get("LBH_FAULT_CACHE_OUTAGE")) is not None:
            kwargs["cache_outage"] = parse_bool("LBH_FAULT_CACHE_OUTAGE", raw)
        return cls(**kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, object], *, prefix: str = "faults.") -> FaultConfig:
        """Build from a mapping of field names (strings are parsed); errors name ``prefix + field``."""
        known = {"error_rate", "extra_latency_seconds", "latency_rate", "cache_outage"}
        unknown = sorted(set(mapping) - known)
        if unknown:
            raise ConfigError(prefix + unknown[0], f"unknown field (known: {', '.join(sorted(known))})")
        kwargs: dict[str, float | bool] = {}
        for key, raw in mapping.items():
            if key == "cache_outage":
                kwargs[key] = parse_bool(prefix + key, raw)
            else:
                high = np.inf if key == "extra_latency_seconds" else 1.0
                kwargs[key] = parse_float(prefix + key, raw, low=0.0, high=high)
        return cls(**kwargs)  # type: ignore[arg-type]


class _FaultMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.injected = Counter(
            "faults_injected",
            "Faults injected on purpose, by operation and fault (error|latency|cache_outage).",
            ["operation", "fault"],
            namespace="lbh",
            registry=registry,
        )
        self.setting = Gauge(
            "fault_setting",
            "Configured fault injection: probabilities, seconds, or 0/1 for cache_outage.",
            ["fault"],
            namespace="lbh",
            registry=registry,
        )


_metrics: weakref.WeakKeyDictionary[CollectorRegistry, _FaultMetrics] = weakref.WeakKeyDictionary()
_metrics_lock = threading.Lock()


def _fault_metrics(registry: CollectorRegistry | None) -> _FaultMetrics:
    registry = REGISTRY if registry is None else registry
    with _metrics_lock:
        fam = _metrics.get(registry)
        if fam is None:
            fam = _metrics[registry] = _FaultMetrics(registry)
        return fam


class FaultInjector:
    """Draws faults from a seeded RNG (behind a lock: numpy Generators are not thread-safe).

    Metrics are registered only when ``config.enabled``, so a production registry carries
    no fault series unless someone turned faults on.
    """

    def __init__(
        self,
        config: FaultConfig = FaultConfig(),
        *,
        seed: int = 0,
        registry: CollectorRegistry | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._sleep = sleep
        self._metrics = _fault_metrics(registry) if config.enabled else None
        if self._metrics is not None:
            setting = self._metrics.setting
            setting.labels("error_rate").set(config.error_rate)
            setting.labels("extra_latency_seconds").set(config.extra_latency_seconds)
            setting.labels("latency_rate").set(config.latency_rate)
            setting.labels("cache_outage").set(1.0 if config.cache_outage else 0.0)

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def _draw(self) -> tuple[float, float]:
        with self._lock:
            a, b = self._rng.random(2)
        return float(a), float(b)

    def _count(self, operation: str, fault: str) -> None:
        if self._metrics is not None:
            self._metrics.injected.labels(operation, fault).inc()

    def before_call(self, operation: str) -> None:
        """Maybe sleep, then maybe raise :class:`InjectedFault`; call it inside the timed call."""
        cfg = self.config
        if not cfg.enabled:
            return
        latency_draw, error_draw = self._draw()
        if cfg.extra_latency_seconds > 0 and latency_draw < cfg.latency_rate:
            self._count(operation, "latency")
            self._sleep(cfg.extra_latency_seconds)
        if error_draw < cfg.error_rate:
            self._count(operation, "error")
            raise InjectedFault(f"injected {operation} error (error_rate={cfg.error_rate:g})")

    def cache_down(self, operation: str = "cache") -> bool:
        """True while a cache outage is injected (counted once per call that wanted the cache)."""
        if self.config.cache_outage:
            self._count(operation, "cache_outage")
            return True
        return False
