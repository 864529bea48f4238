"""numpy indicators against straightforward reference loops, and the fallback vector."""

import numpy as np
import pytest

from workloads.fallback import (
    FALLBACK_FEATURE_NAMES,
    atr,
    bollinger_position,
    ema,
    fallback_features,
    macd,
    rolling_mean,
    rolling_std,
    rsi,
)
from workloads.market_data import MarketDataGenerator

X = np.random.default_rng(0).normal(100, 5, 80)


def test_rolling_mean_and_std_match_loops():
    for n in (1, 5, 20):
        ref_mean = [X[max(0, i - n + 1): i + 1].mean() for i in range(X.size)]
        ref_std = [X[max(0, i - n + 1): i + 1].std() for i in range(X.size)]
        np.testing.assert_allclose(rolling_mean(X, n), ref_mean, rtol=1e-10)
        # sums of squares lose ~sqrt(machine eps) x scale; 1e-6 is far below any signal
        np.testing.assert_allclose(rolling_std(X, n), ref_std, rtol=1e-6, atol=1e-6)


def test_ema_matches_its_recursion():
    alpha = 2 / 11
    ref = [X[0]]
    for v in X[1:]:
        ref.append(alpha * v + (1 - alpha) * ref[-1])
    np.testing.assert_allclose(ema(X, 10), ref, rtol=1e-12)
    line, signal = macd(X)
    np.testing.assert_allclose(line, ema(X, 12) - ema(X, 26))
    np.testing.assert_allclose(signal, ema(line, 9))


def test_oscillators_on_flat_and_trending_series():
    flat = np.full(40, 50.0)
    assert np.allclose(rsi(flat), 50.0) and np.allclose(bollinger_position(flat), 0.5)
    up = np.linspace(10, 20, 40)
    assert rsi(up)[-1] == pytest.approx(100.0)
    assert atr(flat + 1, flat - 1, flat)[-1] == pytest.approx(2.0)


def test_fallback_vector_is_15_finite_float32_and_scale_free():
    w = MarketDataGenerator(1).window()
    close, volume = w[:, 3], w[:, 4]
    f = fallback_features(close, volume)
    assert f.shape == (15,) == (len(FALLBACK_FEATURE_NAMES),) and f.dtype == np.float32
    assert np.isfinite(f).all()
    np.testing.assert_allclose(fallback_features(close * 37.0, volume * 0.01), f, rtol=1e-4, atol=1e-6)


def test_fallback_handles_short_and_degenerate_series():
    assert np.isfinite(fallback_features(np.array([100.0]), np.array([0.0]))).all()
    assert np.isfinite(fallback_features(np.zeros(12), np.zeros(12))).all()
    with pytest.raises(ValueError):
        fallback_features(np.ones(5), np.ones(6))
