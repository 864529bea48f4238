"""Seeded synthetic market data: OHLCV frames and the (timesteps, 15) feature windows.

The generator is a geometric random walk, so nothing here needs a network or a data
vendor, and the same seed gives byte-identical windows on every machine (numpy's PCG64
stream is stable across platforms). Indicator columns are computed on a longer history
than the window (``warmup``), so the first rows of a window carry real MACD/RSI values
instead of start-up artefacts.

Edge cases the load scenarios need live here too: tiny and huge windows, NaN runs, and
market crashes (−20/−30/−50 % moves on 5–20× volume).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fallback import atr, bollinger_position, ema, log_returns, macd, rolling_mean, rolling_std, rsi

__all__ = [
    "CRASH_SCENARIOS",
    "DEFAULT_TIMESTEPS",
    "FEATURE_NAMES",
    "MarketDataGenerator",
    "MarketFrame",
    "N_FEATURES",
    "compute_features",
    "crash_window",
    "huge_window",
    "nan_run_window",
    "tiny_window",
    "WARMUP_BARS",
]

#: Column order of every feature window. ``atr`` (average true range) is the fifteenth.
FEATURE_NAMES: tuple[str, ...] = (
    "open",
    "high",
    "low",
    "close",
    "volume",
    "returns",
    "volatility",
    "rsi",
    "macd",
    "macd_signal",
    "bollinger_position",
    "volume_ratio",
    "sma",
    "ema",
    "atr",
)
N_FEATURES = len(FEATURE_NAMES)
DEFAULT_TIMESTEPS = 60
CLOSE_COLUMN = FEATURE_NAMES.index("close")
VOLUME_COLUMN = FEATURE_NAMES.index("volume")

#: (drop, volume multiplier) pairs the stress scenarios use.
CRASH_SCENARIOS: tuple[tuple[float, float], ...] = ((0.20, 5.0), (0.30, 10.0), (0.50, 20.0))

#: Bars of history generated before a window so its indicators are warmed up (26+9 MACD chain).
WARMUP_BARS = 40


@dataclass(frozen=True, eq=False)
class MarketFrame:
    """An OHLCV series; each field is a float64 array of the same length."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return int(self.close.shape[0])

    def tail(self, n: int) -> MarketFrame:
        """The last ``n`` rows."""
        return MarketFrame(*(a[-n:] for a in (self.open, self.high, self.low, self.close, self.volume)))


def compute_features(frame: MarketFrame) -> np.ndarray:
    """All 15 feature columns for every row of ``frame``, as a (len, 15) float32 array."""
    close = frame.close
    rets = log_returns(close)
    macd_line, macd_signal = macd(close)
    columns = (
        frame.open,
        frame.high,
        frame.low,
        close,
        frame.volume,
        rets,
        rolling_std(rets, 20),
        rsi(close, 14),
        macd_line,
        macd_signal,
        bollinger_position(close, 20),
        frame.volume / np.maximum(rolling_mean(frame.volume, 20), 1e-12),
        rolling_mean(close, 20),
        ema(close, 20),
        atr(frame.high, frame.low, close, 14),
    )
    return np.stack(columns, axis=1).astype(np.float32)


class MarketDataGenerator:
    """Geometric random walk with intrabar ranges and volume that rises with |return|.

    Not thread-safe (one numpy Generator inside); give each thread its own instance.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        start_price: float = 100.0,
        drift: float = 0.0,
        volatility: float = 0.01,
        base_volume: float = 1_000_000.0,
    ) -> None:
        if start_price <= 0 or volatility < 0 or base_volume <= 0:
            raise ValueError("start_price and base_volume must be > 0 and volatility >= 0")
        self.rng = np.random.default_rng(seed)
        self.start_price = float(start_price)
        self.drift = float(drift)
        self.volatility = float(volatility)
        self.base_volume = float(base_volume)

    def frame(self, n_steps: int) -> MarketFrame:
        """``n_steps`` bars of OHLCV."""
        if n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {n_steps}")
        rng, vol = self.rng, self.volatility
        rets = rng.normal(self.drift, vol, n_steps)
        close = self.start_price * np.exp(np.cumsum(rets))
        open_ = np.concatenate(([self.start_price], close[:-1]))
        wick = np.abs(rng.normal(0.0, vol / 2.0, (2, n_steps)))
        high = np.maximum(open_, close) * np.exp(wick[0])
        low = np.minimum(open_, close) * np.exp(-wick[1])
        activity = 1.0 + np.abs(rets) / max(vol, 1e-12)
        volume = self.base_volume * activity * rng.lognormal(0.0, 0.3, n_steps)
        return MarketFrame(open_, high, low, close, volume)

    def window(self, timesteps: int = DEFAULT_TIMESTEPS) -> np.ndarray:
        """One (timesteps, 15) float32 feature window."""
        return compute_features(self.frame(timesteps + WARMUP_BARS))[-timesteps:]

    def windows(self, n: int, timesteps: int = DEFAULT_TIMESTEPS) -> np.ndarray:
        """``n`` independent windows stacked as (n, timesteps, 15)."""
        return np.stack([self.window(timesteps) for _ in range(n)])


def tiny_window(seed: int = 0) -> np.ndarray:
    """A (10, 5) OHLCV-only window: too few columns for the default extractor."""
    return MarketDataGenerator(seed).window(10)[:, :5].copy()


def huge_window(seed: int = 0, timesteps: int = 200, n_features: int = 50) -> np.ndarray:
    """A (200, 50) window: the 15 standard columns, then lagged returns as extra columns."""
    if n_features < N_FEATURES:
        raise ValueError(f"n_features must be >= {N_FEATURES}, got {n_features}")
    gen = MarketDataGenerator(seed)
    base = compute_features(gen.frame(timesteps + WARMUP_BARS + n_features))
    rets = base[:, FEATURE_NAMES.index("returns")]
    extra = [np.roll(rets, lag) for lag in range(1, n_features - N_FEATURES + 1)]
    full = np.column_stack([base, *extra]) if extra else base
    return np.ascontiguousarray(full[-timesteps:], dtype=np.float32)


def nan_run_window(
    seed: int = 0,
    *,
    timesteps: int = DEFAULT_TIMESTEPS,
    n_runs: int = 3,
    run_length: int = 4,
) -> np.ndarray:
    """A standard window with ``n_runs`` NaN runs of ``run_length`` rows in random columns."""
    window = MarketDataGenerator(seed).window(timesteps)
    rng = np.random.default_rng([seed, 1])  # independent of the price stream
    for _ in range(n_runs):
        col = int(rng.integers(N_FEATURES))
        start = int(rng.integers(0, max(timesteps - run_length, 0) + 1))
        window[start : start + run_length, col] = np.nan
    return window


def crash_window(
    seed: int = 0,
    *,
    drop: float = 0.30,
    volume_multiplier: float = 10.0,
    crash_bars: int = 3,
    timesteps: int = DEFAULT_TIMESTEPS,
) -> np.ndarray:
    """A window whose last ``crash_bars`` bars lose ``drop`` of the price on heavy volume.

    The crash sits at the end of the window because the end is what a live extractor is
    asked about; indicators are recomputed over it so RSI, MACD and ATR react as they would.
    """
    if not 0.0 < drop < 1.0:
        raise ValueError(f"drop must be in (0, 1), got {drop}")
    if volume_multiplier <= 0 or not 1 <= crash_bars < timesteps:
        raise ValueError("volume_multiplier must be > 0 and 1 <= crash_bars < timesteps")
    frame = MarketDataGenerator(seed).frame(timesteps + WARMUP_BARS)
    n = len(frame)
    per_bar = (1.0 - drop) ** (1.0 / crash_bars)
    factor = np.ones(n)
    factor[n - crash_bars :] = per_bar ** np.arange(1, crash_bars + 1)
    # Prices after the crash start are scaled; each crash bar opens at the previous close.
    open_factor = np.concatenate(([1.0], factor[:-1]))
    volume = frame.volume.copy()
    volume[n - crash_bars :] *= volume_multiplier
    crashed = MarketFrame(
        open=frame.open * open_factor,
        high=frame.high * open_factor,  # still >= open and close: both are scaled by <= this
        low=frame.low * factor,  # still <= open and close: both are scaled by >= this
        close=frame.close * factor,
        volume=volume,
    )
    return compute_features(crashed)[-timesteps:]
