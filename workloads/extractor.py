"""The feature-extractor family: config, results, input policy, model, fallback, cache, chain.

``build_extractor(config)`` returns the chain the service runs::

    validate + clean ─► cache ─hit─► result (source="cache")
                          │miss
                          ▼
                   circuit breaker ─open─► fallback (source="fallback", reason="circuit_open")
                          │closed / probe
                          ▼
                 model (+ injected faults) ─error─► fallback (reason="model_error")
                          │ok (slow calls count against the breaker)
                          ▼
                 result (source="model"), stored in the cache

Why a breaker for slowness: a model call cannot be pre-empted, so a call that overruns
the budget has already cost its latency by the time we know. What we *can* do is stop
sending calls to a model that keeps overrunning: after ``breaker_threshold`` consecutive
over-budget or failed calls every request goes to the fallback for
``breaker_cooldown_seconds``; then a single probe call goes to the model, and its outcome
closes or re-opens the breaker. Only model results are cached: a fallback answer must
not outlive the outage that caused it.

Input policy (``prepare_window``): a window is (T, n_features), min_timesteps <= T <=
max_timesteps, numeric. ±inf anywhere, or more than ``max_nan_fraction`` NaN, is
rejected with :class:`InvalidInputError`; otherwise NaNs are forward-filled along time
and any NaN with no earlier value (a leading run) becomes 0.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
from prometheus_client import CollectorRegistry

from instrumentation import instrument

from .cache import CacheStats, TTLCache, window_key
from .fallback import FALLBACK_FEATURE_NAMES, fallback_features
from .faults import ConfigError, FaultConfig, FaultInjector, parse_bool, parse_float
from .market_data import CLOSE_COLUMN, N_FEATURES, VOLUME_COLUMN
from .model import FeatureModel, ModelArchitecture, ModelOutput

__all__ = [
    "CircuitBreaker",
    "Extractor",
    "ExtractorConfig",
    "FallbackExtractor",
    "FeatureExtractor",
    "FeatureResult",
    "InvalidInputError",
    "ModelExtractor",
    "build_extractor",
    "prepare_window",
    "prepare_windows",
]

Source = Literal["model", "cache", "fallback"]


class InvalidInputError(ValueError):
    """The window breaks the input policy (shape, dtype, inf, too many NaN)."""


# --------------------------------------------------------------------------- config


def _parse_int(name: str, raw: object, *, low: int) -> int:
    if isinstance(raw, bool):
        raise ConfigError(name, f"expected an integer, got {raw!r}")
    if isinstance(raw, (int, np.integer)):
        value = int(raw)
    elif isinstance(raw, str) and raw.strip().lstrip("+-").isdigit():
        value = int(raw.strip())
    else:
        raise ConfigError(name, f"expected an integer, got {raw!r}")
    if value < low:
        raise ConfigError(name, f"must be >= {low}, got {value}")
    return value


# field -> (kind, lower bound); kinds: int, float, bool, optional int, optional str
_FIELD_KINDS: dict[str, tuple[str, float]] = {
    "fused_feature_dim": ("int", 1),
    "enable_caching": ("bool", 0),
    "cache_size": ("int", 1),
    "cache_ttl_seconds": ("float+", 0),
    "enable_fallback": ("bool", 0),
    "fallback_feature_dim": ("int", 1),
    "n_features": ("int", max(CLOSE_COLUMN, VOLUME_COLUMN) + 1),
    "min_timesteps": ("int", 2),
    "max_timesteps": ("int", 2),
    "max_nan_fraction": ("fraction", 0),
    "model_budget_seconds": ("float+", 0),
    "breaker_threshold": ("int", 1),
    "breaker_cooldown_seconds": ("float", 0),
    "torch_threads": ("int?", 1),
    "seed": ("int", 0),
    "weights_path": ("str?", 0),
}


_KIND_NAMES = {
    "int": "an integer",
    "int?": "an integer or None",
    "bool": "a bool",
    "float": "a number",
    "float+": "a positive number",
    "fraction": "a number in [0, 1]",
    "str?": "a path or None",
}


def _parse_field(name: str, raw: object, *, label: str | None = None) -> object:
    label = label or name
    kind, low = _FIELD_KINDS[name]
    if kind in ("int?", "str?") and (raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "none"))):
        return None
    if kind in ("int", "int?"):
        return _parse_int(label, raw, low=int(low))
    if kind == "bool":
        return parse_bool(label, raw)
    if kind == "str?":
        if not isinstance(raw, (str, os.PathLike)):
            raise ConfigError(label, f"expected a path, got {raw!r}")
        return os.fspath(raw)
    value = parse_float(label, raw, low=low, high=1.0 if kind == "fraction" else np.inf)
    if kind == "float+" and value <= 0:
        raise ConfigError(label, f"must be > 0, got {raw!r}")
    return value


@dataclass(frozen=True)
class ExtractorConfig:
    """Everything ``build_extractor`` needs. Invalid values raise :class:`ConfigError`
    naming the field; ``from_env``/``from_mapping`` also parse strings."""

    fused_feature_dim: int = 256
    enable_caching: bool = True
    cache_size: int = 1000
    cache_ttl_seconds: float = 60.0
    enable_fallback: bool = True
    fallback_feature_dim: int = len(FALLBACK_FEATURE_NAMES)
    n_features: int = N_FEATURES
    min_timesteps: int = 10
    max_timesteps: int = 1024
    max_nan_fraction: float = 0.5
    model_budget_seconds: float = 0.1
    breaker_threshold: int = 3
    breaker_cooldown_seconds: float = 5.0
    torch_threads: int | None = 1
    seed: int = 0
    weights_path: str | None = None
    faults: FaultConfig = field(default_factory=FaultConfig)

    def __post_init__(self) -> None:
        for name in _FIELD_KINDS:
            value = getattr(self, name)
            kind = _FIELD_KINDS[name][0]
            # Direct construction must use real types; only from_env/from_mapping parse strings.
            if isinstance(value, str) and kind != "str?":
                raise ConfigError(name, f"expected {_KIND_NAMES[kind]}, got the string {value!r}")
            if kind.startswith("float") or kind == "fraction":
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ConfigError(name, f"expected a number, got {value!r}")
            _parse_field(name, value)
        if self.max_timesteps < self.min_timesteps:
            raise ConfigError(
                "max_timesteps", f"must be >= min_timesteps ({self.min_timesteps}), got {self.max_timesteps}"
            )
        if not isinstance(self.faults, FaultConfig):
            raise ConfigError("faults", f"expected a FaultConfig, got {type(self.faults).__name__}")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> ExtractorConfig:
        """From a dict (e.g. YAML); ``faults`` may be a mapping or a FaultConfig."""
        unknown = sorted(set(mapping) - set(_FIELD_KINDS) - {"faults"})
        if unknown:
            raise ConfigError(unknown[0], f"unknown field (known: {', '.join([*_FIELD_KINDS, 'faults'])})")
        kwargs: dict[str, Any] = {k: _parse_field(k, v) for k, v in mapping.items() if k != "faults"}
        faults = mapping.get("faults")
        if isinstance(faults, Mapping):
            kwargs["faults"] = FaultConfig.from_mapping(faults)
        elif faults is not None:
            kwargs["faults"] = faults
        return cls(**kwargs)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ExtractorConfig:
        """Fields from ``LBH_EXTRACTOR_<FIELD>`` (e.g. ``LBH_EXTRACTOR_CACHE_SIZE``), faults from
        ``LBH_FAULT_*``; unset means the default, and errors name the variable."""
        env = os.environ if environ is None else environ
        kwargs: dict[str, Any] = {}
        for name in _FIELD_KINDS:
            var = f"LBH_EXTRACTOR_{name.upper()}"
            if var in env:
                kwargs[name] = _parse_field(name, env[var], label=var)
        return cls(**kwargs, faults=FaultConfig.from_env(env))

    def replace(self, **changes: Any) -> ExtractorConfig:
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, eq=False)  # eq on arrays would be ambiguous; compare fields explicitly
class FeatureResult:
    """One window's features. Arrays are read-only: results may be shared through the cache.

    ``features`` has ``fused_feature_dim`` values from the model, ``fallback_feature_dim``
    from the fallback. The fallback makes no prediction: ``probabilities`` and
    ``uncertainty`` are None then.
    """

    features: np.ndarray
    probabilities: np.ndarray | None
    uncertainty: float | None
    cache_hit: bool
    fallback_used: bool
    source: Source
    fallback_reason: str | None = None  # "model_error" | "circuit_open" when the chain fell back
    over_budget: bool = False  # the model answered, but slower than model_budget_seconds
    nan_filled: int = 0  # NaN values the input policy replaced

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (arrays as lists)."""
        return {
            "features": self.features.tolist(),
            "probabilities": None if self.probabilities is None else self.probabilities.tolist(),
            "uncertainty": self.uncertainty,
            "cache_hit": self.cache_hit,
            "fallback_used": self.fallback_used,
            "source": self.source,
            "fallback_reason": self.fallback_reason,
            "over_budget": self.over_budget,
            "nan_filled": self.nan_filled,
        }


def _annotate(result: FeatureResult) -> dict[str, bool | int | str]:
    return {
        "cache_hit": result.cache_hit,
        "fallback": result.fallback_used,
        "source": result.source,
        "over_budget": result.over_budget,
        "circuit_open": result.fallback_reason == "circuit_open",
        "model_error": result.fallback_reason == "model_error",
        "nan_cleaned": result.nan_filled > 0,
    }


def _annotate_batch(results: list[FeatureResult]) -> dict[str, int]:
    return {
        "batch_size": len(results),
        "cache_hits": sum(r.cache_hit for r in results),
        "fallbacks": sum(r.fallback_used for r in results),
    }


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


# --------------------------------------------------------------------------- input policy


def _numeric(data: Any, label: str) -> np.ndarray:
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError) as exc:  # ragged nested lists
        raise InvalidInputError(f"{label}: not a rectangular numeric array ({exc})") from None
    if arr.dtype.kind not in "fiub":
        raise InvalidInputError(f"{label}: expected a numeric array, got dtype {arr.dtype}")
    return arr


def _clean(arr: np.ndarray, max_nan_fraction: float, name: Callable[[int], str]) -> tuple[np.ndarray, np.ndarray]:
    """Apply the NaN/inf policy to a shape-checked (B, T, F) batch."""
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    finite = np.isfinite(arr)
    if finite.all():  # the common case costs one pass
        return arr, np.zeros(arr.shape[0], dtype=np.int64)
    inf = np.isinf(arr).any(axis=(1, 2))
    if inf.any():
        raise InvalidInputError(f"{name(int(np.flatnonzero(inf)[0]))}: contains ±inf; only NaN gaps are repaired")
    nan = ~finite
    per_window = nan.sum(axis=(1, 2))
    size = arr.shape[1] * arr.shape[2]
    too_many = np.flatnonzero(per_window > max_nan_fraction * size)
    if too_many.size:
        i = int(too_many[0])
        raise InvalidInputError(
            f"{name(i)}: {per_window[i]} of {size} values are NaN, more than max_nan_fraction={max_nan_fraction:g}"
        )
    # Forward-fill along time: the index of the last non-NaN row at or before each row.
    steps = np.arange(arr.shape[1])[None, :, None]
    last_valid = np.maximum.accumulate(np.where(nan, 0, steps), axis=1)
    arr = np.take_along_axis(arr, last_valid, axis=1)
    np.nan_to_num(arr, copy=False, nan=0.0)  # a leading run has no earlier value: 0
    return arr, per_window.astype(np.int64)


def prepare_windows(
    windows: Any,
    *,
    n_features: int = N_FEATURES,
    min_timesteps: int = 10,
    max_timesteps: int = 1024,
    max_nan_fraction: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Validate and clean a (B, T, F) batch; returns (float32 batch, NaNs filled per window).

    Raises :class:`InvalidInputError` naming the window index, the shape expected and got.
    """
    arr = _numeric(windows, "windows")
    ok = arr.ndim == 3 and arr.shape[0] >= 1 and arr.shape[2] == n_features
    if not ok or not min_timesteps <= arr.shape[1] <= max_timesteps:
        raise InvalidInputError(
            f"windows: expected shape (B, T, {n_features}) with B >= 1 and "
            f"{min_timesteps} <= T <= {max_timesteps}, got {arr.shape}"
        )
    return _clean(arr, max_nan_fraction, lambda i: f"windows[{i}]")


def prepare_window(
    window: Any,
    *,
    n_features: int = N_FEATURES,
    min_timesteps: int = 10,
    max_timesteps: int = 1024,
    max_nan_fraction: float = 0.5,
) -> tuple[np.ndarray, int]:
    """Validate and clean one (T, F) window; returns (float32 window, NaNs filled)."""
    arr = _numeric(window, "window")
    if arr.ndim != 2 or arr.shape[1] != n_features or not min_timesteps <= arr.shape[0] <= max_timesteps:
        raise InvalidInputError(
            f"window: expected shape (T, {n_features}) with {min_timesteps} <= T <= {max_timesteps}, got {arr.shape}"
        )
    batch, filled = _clean(arr[None], max_nan_fraction, lambda i: "window")
    return batch[0], int(filled[0])


def _policy(config: ExtractorConfig) -> dict[str, Any]:
    return {
        "n_features": config.n_features,
        "min_timesteps": config.min_timesteps,
        "max_timesteps": config.max_timesteps,
        "max_nan_fraction": config.max_nan_fraction,
    }


def _as_batch(windows: Any, config: ExtractorConfig) -> tuple[list[np.ndarray], list[int]]:
    """A batch as an ndarray (B, T, F) or a sequence of (T, F) windows of any lengths."""
    if isinstance(windows, np.ndarray) and windows.ndim == 3:
        batch, filled = prepare_windows(windows, **_policy(config))
        return list(batch), filled.tolist()
    if isinstance(windows, np.ndarray) or not isinstance(windows, Sequence) or len(windows) == 0:
        shape = getattr(windows, "shape", None)
        got = shape or type(windows).__name__
        raise InvalidInputError(
            f"windows: expected (B, T, {config.n_features}) or a non-empty sequence of windows, got {got}"
        )
    cleaned, filled = [], []
    for i, w in enumerate(windows):
        try:
            c, f = prepare_window(w, **_policy(config))
        except InvalidInputError as exc:
            raise InvalidInputError(f"windows[{i}]: {str(exc).removeprefix('window: ')}") from None
        cleaned.append(c)
        filled.append(f)
    return cleaned, filled


# --------------------------------------------------------------------------- extractors


class Extractor(Protocol):
    """What every member of the family offers."""

    def extract(self, window: Any) -> FeatureResult: ...

    def extract_batch(self, windows: Any) -> list[FeatureResult]: ...


class ModelExtractor:
    """The CNN+LSTM alone: errors propagate. Its calls are the ``model_inference`` operation,
    with injected faults (if any) inside the timed call."""

    def __init__(
        self,
        config: ExtractorConfig,
        *,
        model: FeatureModel | None = None,
        injector: FaultInjector | None = None,
        registry: CollectorRegistry | None = None,
        tracer_provider: Any = None,
    ) -> None:
        self.config = config
        arch = ModelArchitecture(n_features=config.n_features, fused_dim=config.fused_feature_dim)
        if model is None:
            model = FeatureModel(arch, seed=config.seed, threads=config.torch_threads, weights_path=config.weights_path)
        elif (model.arch.n_features, model.arch.fused_dim) != (arch.n_features, arch.fused_dim):
            bad = "n_features" if model.arch.n_features != arch.n_features else "fused_feature_dim"
            raise ConfigError(
                bad,
                f"the given model maps {model.arch.n_features} features -> {model.arch.fused_dim}, "
                f"the config wants {arch.n_features} -> {arch.fused_dim}",
            )
        self.model = model
        self._injector = injector
        self._timed_infer = instrument(
            "model_inference",
            registry=registry,
            tracer_provider=tracer_provider,
            annotate=lambda out: {"batch_size": int(out.features.shape[0])},
        )(self._infer)

    def infer(self, batch: np.ndarray) -> ModelOutput:
        """One forward pass over a cleaned (B, T, F) batch: the ``model_inference`` operation."""
        return self._timed_infer(batch)

    def _infer(self, batch: np.ndarray) -> ModelOutput:
        if self._injector is not None:
            self._injector.before_call("model_inference")
        return self.model.predict(batch)

    def results(self, batch: np.ndarray, filled: Sequence[int]) -> list[FeatureResult]:
        """Run a cleaned (B, T, F) batch and wrap each row as a model result."""
        t0 = time.perf_counter()
        out = self.infer(batch)
        return _model_results(out, filled, time.perf_counter() - t0 > self.config.model_budget_seconds)

    def extract(self, window: Any) -> FeatureResult:
        clean, filled = prepare_window(window, **_policy(self.config))
        return self.results(clean[None], [filled])[0]

    def extract_batch(self, windows: Any) -> list[FeatureResult]:
        cleaned, filled = _as_batch(windows, self.config)
        results: list[FeatureResult | None] = [None] * len(cleaned)
        for group, idx in _group_by_shape(cleaned):
            for i, r in zip(idx, self.results(group, [filled[i] for i in idx])):
                results[i] = r
        return results  # type: ignore[return-value]


class FallbackExtractor:
    """Technical indicators from the close and volume columns (the ``fallback_extraction``
    operation); output padded with zeros or truncated to ``fallback_feature_dim``."""

    def __init__(
        self, config: ExtractorConfig, *, registry: CollectorRegistry | None = None, tracer_provider: Any = None
    ) -> None:
        self.config = config
        self._timed_compute = instrument(
            "fallback_extraction", registry=registry, tracer_provider=tracer_provider
        )(self._compute)

    def compute(self, clean: np.ndarray) -> np.ndarray:
        """Fallback features of one cleaned window: the ``fallback_extraction`` operation."""
        return self._timed_compute(clean)

    def _compute(self, clean: np.ndarray) -> np.ndarray:
        raw = fallback_features(clean[:, CLOSE_COLUMN], clean[:, VOLUME_COLUMN])
        dim = self.config.fallback_feature_dim
        out = np.zeros(dim, dtype=np.float32)
        out[: min(dim, raw.size)] = raw[:dim]
        return _readonly(out)

    def result(self, clean: np.ndarray, filled: int, reason: str | None = None) -> FeatureResult:
        return FeatureResult(self.compute(clean), None, None, False, True, "fallback", reason, False, filled)

    def extract(self, window: Any) -> FeatureResult:
        clean, filled = prepare_window(window, **_policy(self.config))
        return self.result(clean, filled)

    def extract_batch(self, windows: Any) -> list[FeatureResult]:
        cleaned, filled = _as_batch(windows, self.config)
        return [self.result(c, f) for c, f in zip(cleaned, filled)]


def _group_by_shape(windows: Sequence[np.ndarray]) -> list[tuple[np.ndarray, list[int]]]:
    """Stack windows of equal shape (one model call per shape), remembering their positions."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, w in enumerate(windows):
        groups.setdefault(w.shape, []).append(i)
    return [(np.stack([windows[i] for i in idx]), idx) for idx in groups.values()]


class CircuitBreaker:
    """closed ─(threshold consecutive failures)─► open ─(cooldown)─► half-open ─probe ok─► closed.

    In half-open exactly one caller gets to probe; the others keep using the fallback
    until the probe reports. A failed probe re-opens the breaker for another cooldown.
    """

    def __init__(
        self, threshold: int = 3, cooldown_seconds: float = 5.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self.times_opened = 0

    @property
    def state(self) -> Literal["closed", "open", "half_open"]:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            if self._probing or self._clock() - self._opened_at >= self.cooldown_seconds:
                return "half_open"
            return "open"

    def allow(self) -> bool:
        """May this call go to the model? Every True must be followed by ``record``."""
        with self._lock:
            if self._opened_at is None:
                return True
            if self._probing or self._clock() - self._opened_at < self.cooldown_seconds:
                return False
            self._probing = True
            return True

    def record(self, ok: bool) -> None:
        with self._lock:
            if ok:
                self._failures = 0
                self._opened_at = None
            else:
                self._failures += 1
                if self._probing or (self._opened_at is None and self._failures >= self.threshold):
                    self._opened_at = self._clock()
                    self.times_opened += 1
            self._probing = False


class FeatureExtractor:
    """The chain of the module docstring. Thread-safe; ``extract`` is the
    ``feature_extraction`` operation, ``extract_batch`` is ``feature_extraction_batch``
    (kept apart so batch timings never mix into the per-request budget histogram)."""

    def __init__(
        self,
        config: ExtractorConfig,
        model: ModelExtractor,
        fallback: FallbackExtractor | None,
        *,
        cache: TTLCache[FeatureResult] | None = None,
        injector: FaultInjector | None = None,
        registry: CollectorRegistry | None = None,
        tracer_provider: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.model = model
        self.fallback = fallback
        self.cache = cache
        self.injector = injector or FaultInjector(FaultConfig())
        self.breaker = CircuitBreaker(config.breaker_threshold, config.breaker_cooldown_seconds, clock=clock)
        self._clock = clock
        traced: dict[str, Any] = {"registry": registry, "tracer_provider": tracer_provider}
        self._timed_extract = instrument("feature_extraction", annotate=_annotate, **traced)(self._extract)
        self._timed_extract_batch = instrument("feature_extraction_batch", annotate=_annotate_batch, **traced)(
            self._extract_batch
        )

    def extract(self, window: Any) -> FeatureResult:
        """Features for one (T, F) window through the whole chain (``feature_extraction``)."""
        return self._timed_extract(window)

    def extract_batch(self, windows: Any) -> list[FeatureResult]:
        """Features for a (B, T, F) array or a sequence of windows (``feature_extraction_batch``);
        cache misses share one model call per distinct window shape."""
        return self._timed_extract_batch(windows)

    def cache_stats(self) -> CacheStats | None:
        return None if self.cache is None else self.cache.stats()

    def _usable_cache(self) -> TTLCache[FeatureResult] | None:
        if self.cache is None or self.injector.cache_down("feature_extraction"):
            return None
        return self.cache

    def _extract(self, window: Any) -> FeatureResult:
        clean, filled = prepare_window(window, **_policy(self.config))
        return self._run([clean], [filled])[0]

    def _extract_batch(self, windows: Any) -> list[FeatureResult]:
        cleaned, filled = _as_batch(windows, self.config)
        return self._run(cleaned, filled)

    def _run(self, cleaned: list[np.ndarray], filled: list[int]) -> list[FeatureResult]:
        cache = self._usable_cache()
        results: list[FeatureResult | None] = [None] * len(cleaned)
        keys: list[bytes] = []
        if cache is not None:
            keys = [window_key(c) for c in cleaned]
            for i, key in enumerate(keys):
                hit = cache.get(key)
                if hit is not None:
                    results[i] = dataclasses.replace(
                        hit, cache_hit=True, source="cache", over_budget=False, nan_filled=filled[i]
                    )
        misses = [i for i, r in enumerate(results) if r is None]
        for group, pos in _group_by_shape([cleaned[i] for i in misses]):
            idx = [misses[p] for p in pos]
            for i, res in zip(idx, self._compute(group, [filled[i] for i in idx])):
                results[i] = res
                if cache is not None and res.source == "model":
                    cache.put(keys[i], res)
        return results  # type: ignore[return-value]

    def _compute(self, batch: np.ndarray, filled: list[int]) -> list[FeatureResult]:
        if self.fallback is None:  # nothing to route to: the breaker has no job
            t0 = self._clock()
            out = self.model.infer(batch)
            return _model_results(out, filled, self._clock() - t0 > self.config.model_budget_seconds)
        if not self.breaker.allow():
            return [self.fallback.result(c, f, "circuit_open") for c, f in zip(batch, filled)]
        ok = False
        try:
            t0 = self._clock()
            try:
                out = self.model.infer(batch)
            except Exception:
                return [self.fallback.result(c, f, "model_error") for c, f in zip(batch, filled)]
            over = self._clock() - t0 > self.config.model_budget_seconds
            ok = not over
        finally:
            self.breaker.record(ok)  # always: a probe that never reports would wedge half-open
        return _model_results(out, filled, over)


def _model_results(out: ModelOutput, filled: Sequence[int], over_budget: bool) -> list[FeatureResult]:
    features, probs = _readonly(out.features), _readonly(out.probabilities)
    return [
        FeatureResult(
            features[i], probs[i], float(out.uncertainty[i]), False, False, "model", None, over_budget, int(filled[i])
        )
        for i in range(features.shape[0])
    ]


def build_extractor(
    config: ExtractorConfig | None = None,
    registry: CollectorRegistry | None = None,
    tracer_provider: Any = None,
    *,
    model: FeatureModel | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> FeatureExtractor:
    """The configured chain. ``model`` reuses an already-built FeatureModel (tests, several
    extractors in one process); ``clock``/``sleep`` drive the cache, breaker and injected
    latency, so tests can use a fake clock."""
    config = config or ExtractorConfig()
    injector = FaultInjector(config.faults, seed=config.seed, registry=registry, sleep=sleep)
    traced: dict[str, Any] = {"registry": registry, "tracer_provider": tracer_provider}
    model_extractor = ModelExtractor(config, model=model, injector=injector, **traced)
    fallback = FallbackExtractor(config, **traced) if config.enable_fallback else None
    cache = None
    if config.enable_caching:
        cache = TTLCache[FeatureResult](config.cache_size, config.cache_ttl_seconds, clock=clock)
    return FeatureExtractor(config, model_extractor, fallback, cache=cache, injector=injector, clock=clock, **traced)
