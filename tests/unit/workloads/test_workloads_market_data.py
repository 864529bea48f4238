"""Synthetic market data: shapes, determinism, OHLC consistency and the edge-case windows."""

import numpy as np
import pytest

from workloads.fallback import log_returns
from workloads.market_data import (
    CRASH_SCENARIOS,
    FEATURE_NAMES,
    N_FEATURES,
    MarketDataGenerator,
    compute_features,
    crash_window,
    huge_window,
    nan_run_window,
    tiny_window,
)

COL = {name: i for i, name in enumerate(FEATURE_NAMES)}


def test_feature_names_cover_the_documented_columns():
    assert N_FEATURES == 15 and len(set(FEATURE_NAMES)) == 15
    for name in ("open", "high", "low", "close", "volume", "returns", "volatility", "rsi", "macd",
                 "macd_signal", "bollinger_position", "volume_ratio", "sma", "ema"):
        assert name in FEATURE_NAMES


def test_default_window_is_60_by_15_float32_and_finite():
    w = MarketDataGenerator(0).window()
    assert w.shape == (60, 15) and w.dtype == np.float32
    assert np.isfinite(w).all()


def test_same_seed_same_bytes_other_seed_differs():
    a = MarketDataGenerator(7).windows(3)
    b = MarketDataGenerator(7).windows(3)
    c = MarketDataGenerator(8).windows(3)
    assert a.shape == (3, 60, 15)
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c)


def test_ohlcv_is_consistent():
    f = MarketDataGenerator(3).frame(500)
    assert len(f) == 500
    assert (f.high >= np.maximum(f.open, f.close)).all()
    assert (f.low <= np.minimum(f.open, f.close)).all()
    assert (f.low > 0).all() and (f.volume > 0).all()
    np.testing.assert_array_equal(f.open[1:], f.close[:-1])


def test_indicator_columns_have_their_meaning():
    frame = MarketDataGenerator(5).frame(300)
    feats = compute_features(frame)
    np.testing.assert_allclose(feats[:, COL["returns"]], log_returns(frame.close), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(feats[-1, COL["sma"]], frame.close[-20:].mean(), rtol=1e-5)
    rsi = feats[:, COL["rsi"]]
    assert (rsi >= 0).all() and (rsi <= 100).all()
    assert (feats[:, COL["volatility"]] >= 0).all() and (feats[:, COL["atr"]] > 0).all()


def test_tiny_and_huge_windows():
    assert tiny_window(1).shape == (10, 5)
    huge = huge_window(1)
    assert huge.shape == (200, 50) and huge.dtype == np.float32 and np.isfinite(huge).all()


def test_nan_run_window_has_runs_and_is_deterministic():
    w = nan_run_window(4, n_runs=3, run_length=4)
    n_nan = int(np.isnan(w).sum())
    assert 4 <= n_nan <= 12
    assert np.array_equal(np.isnan(w), np.isnan(nan_run_window(4, n_runs=3, run_length=4)))


@pytest.mark.parametrize("drop, volume_multiplier", CRASH_SCENARIOS)
def test_crash_window_drops_the_price_on_heavy_volume(drop, volume_multiplier):
    bars = 3
    w = crash_window(2, drop=drop, volume_multiplier=volume_multiplier, crash_bars=bars)
    normal = MarketDataGenerator(2).window()
    close = w[:, COL["close"]]
    np.testing.assert_allclose(close[-1] / normal[-1, COL["close"]], 1 - drop, rtol=1e-5)
    np.testing.assert_allclose(w[-bars:, COL["volume"]] / normal[-bars:, COL["volume"]], volume_multiplier, rtol=1e-5)
    np.testing.assert_array_equal(w[:-bars, COL["close"]], normal[:-bars, COL["close"]])
    assert np.isfinite(w).all()
    assert w[-1, COL["rsi"]] < normal[-1, COL["rsi"]]


def test_bad_generator_arguments_are_rejected():
    with pytest.raises(ValueError):
        MarketDataGenerator(0, start_price=-1)
    with pytest.raises(ValueError):
        MarketDataGenerator(0).frame(0)
    with pytest.raises(ValueError):
        crash_window(0, drop=1.5)
