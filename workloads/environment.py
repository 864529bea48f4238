"""A gymnasium trading environment whose observation comes from the feature extractor.

Each ``step`` asks the extractor about the last ``lookback`` rows, which is exactly the
call pattern of an RL agent in production, so ``env_step`` latency includes a real
extraction (cache, model or fallback) rather than a mock.

* actions: ``Discrete(3)``: 0 = sell (go short), 1 = hold (keep the position), 2 = buy (go long);
* position ∈ {−1, 0, +1}; reward = position × next log return − cost × |position change|;
* observation, clipped to ±``OBS_BOUND``: ``fused_feature_dim`` extractor features
  (the 15 fallback features zero-padded) + [position, cumulative log P&L, 1.0 if the
  features came from the model or its cache else 0.0];
* the episode terminates when the frame has no next bar (``n_steps`` steps for a
  generated frame; a finite market, so ``terminated`` rather than ``truncated``).

Indicator columns for the whole frame are computed once per ``reset``; a step only
slices them, so the step's cost is the extraction plus a few array operations.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from prometheus_client import CollectorRegistry

from instrumentation import instrument

from .extractor import ExtractorConfig, FeatureExtractor, FeatureResult, build_extractor
from .market_data import (
    CLOSE_COLUMN,
    DEFAULT_TIMESTEPS,
    WARMUP_BARS,
    MarketDataGenerator,
    MarketFrame,
    compute_features,
)

__all__ = ["ACTIONS", "OBS_BOUND", "TradingEnv", "pad_features"]

ACTIONS: tuple[str, ...] = ("sell", "hold", "buy")
_EXTRA = 3  # position, cumulative log P&L, model-features flag
#: Observations are clipped to ±OBS_BOUND. Every feature is scale-free (model output is
#: tanh-bounded, fallback features are returns/ratios), so only garbage data reaches it;
#: a finite box keeps the space honest for agents that normalise by its bounds.
OBS_BOUND = 1e4


def pad_features(features: np.ndarray, dim: int) -> np.ndarray:
    """``features`` zero-padded or truncated to ``dim`` (float32)."""
    out = np.zeros(dim, dtype=np.float32)
    n = min(dim, features.shape[0])
    out[:n] = features[:n]
    return out


class TradingEnv(gym.Env[np.ndarray, np.int64]):
    """Single-asset trading over a synthetic (or given) market frame."""

    metadata = {"render_modes": []}

    def __init__(
        self,
        extractor: FeatureExtractor | None = None,
        *,
        config: ExtractorConfig | None = None,
        n_steps: int = 256,
        lookback: int = DEFAULT_TIMESTEPS,
        transaction_cost: float = 1e-3,
        frame: MarketFrame | None = None,
        registry: CollectorRegistry | None = None,
        tracer_provider: Any = None,
    ) -> None:
        super().__init__()
        if n_steps < 1 or lookback < 2 or transaction_cost < 0:
            raise ValueError("n_steps >= 1, lookback >= 2 and transaction_cost >= 0 are required")
        if frame is not None and len(frame) < lookback + 1:
            raise ValueError(f"frame has {len(frame)} bars; needs at least lookback + 1 = {lookback + 1}")
        self.extractor = extractor or build_extractor(config, registry, tracer_provider)
        policy = self.extractor.config
        if not policy.min_timesteps <= lookback <= policy.max_timesteps:
            raise ValueError(
                f"lookback={lookback} is outside the extractor's {policy.min_timesteps}..{policy.max_timesteps} timesteps"
            )
        self.feature_dim = self.extractor.config.fused_feature_dim
        self.n_steps = n_steps
        self.lookback = lookback
        self.transaction_cost = transaction_cost
        self._fixed_frame = frame
        self.action_space = spaces.Discrete(len(ACTIONS))
        self.observation_space = spaces.Box(-OBS_BOUND, OBS_BOUND, shape=(self.feature_dim + _EXTRA,), dtype=np.float32)
        self._features: np.ndarray | None = None
        self._log_close = np.empty(0)
        self._t = 0
        self._position = 0
        self._pnl = 0.0
        self.last_result: FeatureResult | None = None  # the extraction behind the latest observation
        traced = {"registry": registry, "tracer_provider": tracer_provider}
        self._reset = instrument("env_reset", **traced)(self._reset_impl)
        self._step = instrument("env_step", annotate=self._annotate_step, **traced)(self._step_impl)

    # gymnasium API ------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """New episode. ``options={"frame": MarketFrame}`` replays a given frame (e.g. a crash)."""
        super().reset(seed=seed)
        return self._reset(options or {})

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        return self._step(action)

    # implementation -------------------------------------------------------------------

    def _reset_impl(self, options: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        frame = options.get("frame", self._fixed_frame)
        if frame is None:
            # Extra leading bars let the indicators warm up; they are dropped below.
            generator = MarketDataGenerator(int(self.np_random.integers(2**63)))
            frame = generator.frame(WARMUP_BARS + self.lookback + self.n_steps)
            self._features = compute_features(frame)[WARMUP_BARS:]
        elif len(frame) < self.lookback + 1:
            raise ValueError(f"frame has {len(frame)} bars; needs at least lookback + 1 = {self.lookback + 1}")
        else:
            self._features = compute_features(frame)
        self._log_close = np.log(self._features[:, CLOSE_COLUMN].astype(np.float64))
        self._t = self.lookback  # the first observation sees rows [0, lookback)
        self._position = 0
        self._pnl = 0.0
        obs, result = self._observe()
        return obs, self._info(result)

    def _step_impl(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._features is None:
            raise RuntimeError("call reset() before step()")
        if self._t >= len(self._features):
            raise RuntimeError("the episode has terminated; call reset() to start another")
        if not self.action_space.contains(action):
            choices = ", ".join(f"{i}={name}" for i, name in enumerate(ACTIONS))
            raise ValueError(f"action must be one of {choices}; got {action!r}")
        target = {0: -1, 1: self._position, 2: 1}[int(action)]
        cost = self.transaction_cost * abs(target - self._position)
        self._position = target
        # The decision at t is made on rows [t-lookback, t); it earns the return from bar t-1 to t.
        ret = float(self._log_close[self._t] - self._log_close[self._t - 1])
        reward = self._position * ret - cost
        self._pnl += reward
        self._t += 1
        terminated = self._t >= len(self._features)
        obs, result = self._observe()
        return obs, float(reward), terminated, False, self._info(result)

    def _observe(self) -> tuple[np.ndarray, FeatureResult]:
        assert self._features is not None
        result = self.last_result = self.extractor.extract(self._features[self._t - self.lookback : self._t])
        obs = np.empty(self.feature_dim + _EXTRA, dtype=np.float32)
        obs[: self.feature_dim] = pad_features(result.features, self.feature_dim)
        obs[self.feature_dim :] = (self._position, self._pnl, 0.0 if result.fallback_used else 1.0)
        np.clip(obs, -OBS_BOUND, OBS_BOUND, out=obs)
        return obs, result

    def _info(self, result: FeatureResult) -> dict[str, Any]:
        # No cache_hit/source here: a replayed episode must give equal infos (check_env
        # tests that), and the second replay hits the cache. See ``last_result`` instead.
        return {"t": self._t, "position": self._position, "pnl": self._pnl, "fallback_used": result.fallback_used}

    def _annotate_step(self, _: Any) -> dict[str, bool | str]:
        r = self.last_result
        if r is None:
            return {}
        return {"cache_hit": r.cache_hit, "fallback": r.fallback_used, "source": r.source}
