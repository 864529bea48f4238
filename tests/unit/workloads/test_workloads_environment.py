"""The gymnasium trading environment: the checker, rewards, fallback observations, metrics."""

import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from prometheus_client import CollectorRegistry

from workloads.environment import OBS_BOUND, TradingEnv
from workloads.extractor import ExtractorConfig, build_extractor
from workloads.faults import FaultConfig
from workloads.market_data import MarketDataGenerator
from workloads.model import FeatureModel

SELL, HOLD, BUY = 0, 1, 2


@pytest.fixture(scope="module")
def model() -> FeatureModel:
    return FeatureModel(seed=0)


def make_env(model, registry=None, config=None, **kwargs) -> TradingEnv:
    registry = registry if registry is not None else CollectorRegistry()
    extractor = build_extractor(config or ExtractorConfig(), registry=registry, model=model)
    return TradingEnv(extractor, registry=registry, **kwargs)


def test_passes_the_gymnasium_checker_without_warnings(model):
    env = make_env(model, n_steps=30)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, skip_render_check=True)


def test_observation_layout_and_episode_length(model):
    env = make_env(model, n_steps=25)
    obs, info = env.reset(seed=3)
    assert obs.shape == (256 + 3,) and obs.dtype == np.float32 and env.observation_space.contains(obs)
    assert info["t"] == 60 and obs[-1] == 1.0  # features from the model
    steps, terminated = 0, False
    while not terminated:
        obs, reward, terminated, truncated, info = env.step(HOLD)
        assert not truncated and env.observation_space.contains(obs)
        steps += 1
    assert steps == 25
    with pytest.raises(RuntimeError, match="terminated"):
        env.step(HOLD)
    env.reset()
    with pytest.raises(ValueError):
        env.step(7)


def test_rewards_follow_position_times_return_minus_cost(model):
    frame = MarketDataGenerator(8).frame(100)
    env = make_env(model, frame=frame, transaction_cost=0.001, lookback=60)
    env.reset(seed=0)
    _, r_flat, *_ = env.step(HOLD)
    assert r_flat == 0.0
    log_close = np.log(frame.close.astype(np.float32).astype(np.float64))
    _, r_long, *_ = env.step(BUY)  # decision at t=61 earns bar 60 -> 61
    assert r_long == pytest.approx(log_close[61] - log_close[60] - 0.001, abs=1e-6)
    _, r_short, _, _, info = env.step(SELL)  # flip long -> short: two units of cost
    assert r_short == pytest.approx(-(log_close[62] - log_close[61]) - 0.002, abs=1e-6)
    assert info["position"] == -1 and info["pnl"] == pytest.approx(r_flat + r_long + r_short)


def test_same_seed_same_episode(model):
    def run(seed: int) -> list[float]:
        env = make_env(model, n_steps=10)
        obs, _ = env.reset(seed=seed)
        rewards = [float(obs.sum())]
        for a in [BUY, HOLD, SELL, BUY, HOLD]:
            rewards.append(env.step(a)[1])
        return rewards

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_fallback_observations_keep_their_shape(model):
    config = ExtractorConfig(faults=FaultConfig(error_rate=1.0))
    env = make_env(model, config=config, n_steps=5)
    obs, _ = env.reset(seed=1)
    assert obs.shape == (259,) and obs[-1] == 0.0 and (obs[15:256] == 0).all()
    obs, _, _, _, info = env.step(BUY)
    assert info["fallback_used"] and env.last_result.source == "fallback"
    assert np.abs(obs).max() <= OBS_BOUND


def test_steps_and_resets_are_instrumented(model):
    registry = CollectorRegistry()
    env = make_env(model, registry=registry, n_steps=4)
    env.reset(seed=2)
    for _ in range(4):
        env.step(HOLD)
    env.reset(seed=2)
    env.step(HOLD)  # the same window again: a cache hit, flagged on env_step too

    def value(name, **labels):
        return registry.get_sample_value(name, labels) or 0.0

    assert value("lbh_operation_duration_seconds_count", operation="env_reset", outcome="ok") == 2
    assert value("lbh_operation_duration_seconds_count", operation="env_step", outcome="ok") == 5
    assert value("lbh_operation_flags_total", operation="env_step", flag="cache_hit") == 1


def test_misuse_is_reported(model):
    env = make_env(model)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(HOLD)
    with pytest.raises(ValueError):
        TradingEnv(env.extractor, frame=MarketDataGenerator(0).frame(30), registry=CollectorRegistry())
