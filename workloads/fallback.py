"""Technical indicators in plain numpy, and the fallback feature vector built from them.

Two users: ``market_data`` computes indicator *columns* for whole price series, and the
extractor's fallback path summarises one window into 15 numbers when the neural model
fails or is too slow. The fallback reads only the close and volume columns, so it keeps
working on any window the input policy accepts, and it costs a fraction of a millisecond
(``benchmarks/workloads.py`` prints the figure measured on your machine).

Rolling statistics use cumulative sums (O(n), no Python loop). Only the EMA is a loop,
because it is a recursion; on a 60-row window that is a few dozen float operations.
Warm-up rows, where a rolling window is not yet full, use the rows available so far
rather than NaN: the output of every function here is finite for finite input.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "FALLBACK_FEATURE_NAMES",
    "atr",
    "bollinger_position",
    "ema",
    "fallback_features",
    "log_returns",
    "macd",
    "rolling_mean",
    "rolling_std",
    "rsi",
]

#: Names of the 15 numbers :func:`fallback_features` returns, in order.
FALLBACK_FEATURE_NAMES: tuple[str, ...] = (
    "last_return",
    "mean_return",
    "volatility",
    "rsi",
    "macd",
    "macd_signal",
    "macd_histogram",
    "bollinger_position",
    "volume_ratio",
    "sma_gap",
    "ema_gap",
    "momentum",
    "max_drawdown",
    "price_zscore",
    "volume_trend",
)

_EPS = 1e-12


def log_returns(close: np.ndarray) -> np.ndarray:
    """Log returns with a leading 0, so the output lines up with ``close``."""
    close = np.asarray(close, dtype=np.float64)
    out = np.zeros_like(close)
    if close.size > 1:
        # Guard log(0): prices from the generator are positive, cleaned windows may not be.
        safe = np.maximum(close, _EPS)
        np.subtract(np.log(safe[1:]), np.log(safe[:-1]), out=out[1:])
    return out


def rolling_mean(x: np.ndarray, n: int) -> np.ndarray:
    """Trailing mean over ``n`` rows (fewer during warm-up)."""
    x = np.asarray(x, dtype=np.float64)
    c = np.cumsum(x)
    out = c.copy()
    out[n:] = c[n:] - c[:-n]
    counts = np.minimum(np.arange(1, x.size + 1), n)
    return out / counts


def rolling_std(x: np.ndarray, n: int) -> np.ndarray:
    """Trailing population standard deviation over ``n`` rows (fewer during warm-up).

    Computed from rolling sums of x and x²; centring on the series mean first keeps the
    subtraction well-conditioned, leaving an absolute error near 1e-7 × the series' spread.
    """
    x = np.asarray(x, dtype=np.float64)
    centred = x - (x.mean() if x.size else 0.0)
    mean = rolling_mean(centred, n)
    mean_sq = rolling_mean(centred * centred, n)
    return np.sqrt(np.maximum(mean_sq - mean * mean, 0.0))


def ema(x: np.ndarray, span: int) -> np.ndarray:
    """Exponential moving average with ``alpha = 2 / (span + 1)``, seeded by the first value."""
    values = np.asarray(x, dtype=np.float64).tolist()
    if not values:
        return np.empty(0, dtype=np.float64)
    alpha = 2.0 / (span + 1.0)
    keep = 1.0 - alpha
    out = [0.0] * len(values)
    acc = values[0]
    for i, v in enumerate(values):
        acc = alpha * v + keep * acc
        out[i] = acc
    return np.asarray(out, dtype=np.float64)


def rsi(close: np.ndarray, n: int = 14) -> np.ndarray:
    """Relative strength index in [0, 100] (Cutler's variant: simple means of gains/losses).

    Cutler's form is a rolling mean rather than Wilder's recursion, so it vectorises and
    does not depend on where the series starts. A flat stretch reads 50.
    """
    close = np.asarray(close, dtype=np.float64)
    delta = np.zeros_like(close)
    if close.size > 1:
        delta[1:] = np.diff(close)
    gain = rolling_mean(np.maximum(delta, 0.0), n)
    loss = rolling_mean(np.maximum(-delta, 0.0), n)
    total = gain + loss
    return np.where(total > _EPS, 100.0 * gain / np.maximum(total, _EPS), 50.0)


def macd(close: np.ndarray, fast: int = 12, slow: int = 26, signal: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """MACD line (fast EMA − slow EMA) and its signal line (EMA of the MACD line)."""
    line = ema(close, fast) - ema(close, slow)
    return line, ema(line, signal)


def bollinger_position(close: np.ndarray, n: int = 20, k: float = 2.0) -> np.ndarray:
    """Where the close sits in its Bollinger band: 0 at the lower band, 1 at the upper, 0.5 flat."""
    close = np.asarray(close, dtype=np.float64)
    mid = rolling_mean(close, n)
    width = 2.0 * k * rolling_std(close, n)
    return np.where(width > _EPS, (close - (mid - width / 2.0)) / np.maximum(width, _EPS), 0.5)


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int = 14) -> np.ndarray:
    """Average true range: the trailing mean of max(high−low, |high−prev close|, |low−prev close|)."""
    high = np.asarray(high, dtype=np.float64)
    low = np.asarray(low, dtype=np.float64)
    close = np.asarray(close, dtype=np.float64)
    prev = np.concatenate((close[:1], close[:-1]))
    true_range = np.maximum.reduce([high - low, np.abs(high - prev), np.abs(low - prev)])
    return rolling_mean(true_range, n)


def fallback_features(close: np.ndarray, volume: np.ndarray) -> np.ndarray:
    """Summarise one window's close and volume series into 15 float32 features.

    Every feature is scale-free (a return, a ratio, a bounded oscillator), so the vector
    means the same thing for a $5 stock and a $5,000 one. Names: ``FALLBACK_FEATURE_NAMES``.
    """
    close = np.asarray(close, dtype=np.float64)
    volume = np.asarray(volume, dtype=np.float64)
    if close.ndim != 1 or close.shape != volume.shape or close.size == 0:
        raise ValueError(f"close and volume must be equal-length 1-D series, got {close.shape} and {volume.shape}")
    last = close[-1]
    scale = max(abs(last), _EPS)
    rets = log_returns(close)[1:] if close.size > 1 else np.zeros(1)
    line, signal = macd(close)
    sma20 = rolling_mean(close, 20)[-1]
    ema20 = ema(close, 20)[-1]
    lookback = min(10, close.size - 1)
    running_peak = np.maximum.accumulate(close)
    drawdown = (running_peak - close) / np.maximum(running_peak, _EPS)
    std_close = close.std()
    mean_volume = volume.mean()
    recent_volume = volume[-5:].mean()
    out = np.array(
        [
            rets[-1],
            rets.mean(),
            rets.std(),
            rsi(close)[-1] / 100.0,
            line[-1] / scale,
            signal[-1] / scale,
            (line[-1] - signal[-1]) / scale,
            bollinger_position(close)[-1],
            volume[-1] / mean_volume if mean_volume > _EPS else 1.0,
            last / sma20 - 1.0 if abs(sma20) > _EPS else 0.0,
            last / ema20 - 1.0 if abs(ema20) > _EPS else 0.0,
            last / close[-1 - lookback] - 1.0 if abs(close[-1 - lookback]) > _EPS else 0.0,
            drawdown.max(),
            (last - close.mean()) / std_close if std_close > _EPS else 0.0,
            np.log(recent_volume / mean_volume) if recent_volume > _EPS and mean_volume > _EPS else 0.0,
        ],
        dtype=np.float64,
    )
    return out.astype(np.float32)
