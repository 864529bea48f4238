"""The RL agent: shapes, determinism under a seed, weights round trip, the ``agent_action``
metrics, the observation layout shared with the environment, and the two harness targets."""

import numpy as np
import pytest
import torch
from prometheus_client import CollectorRegistry

from harness.targets import TargetContext
from workloads.agent import AGENT_BUDGET_SECONDS, PolicyArchitecture, TradingAgent, build_observation
from workloads.environment import ACTIONS, TradingEnv
from workloads.extractor import ExtractorConfig, build_extractor
from workloads.faults import FaultConfig
from workloads.market_data import MarketDataGenerator
from workloads.model import FeatureModel
from workloads.plugin import targets as T


@pytest.fixture(scope="module")
def model() -> FeatureModel:
    return FeatureModel(seed=0)


@pytest.fixture(scope="module")
def observations(model) -> np.ndarray:
    extractor = build_extractor(ExtractorConfig(), registry=CollectorRegistry(), model=model)
    env = TradingEnv(extractor, n_steps=20, registry=CollectorRegistry())
    obs, _ = env.reset(seed=5)
    out = [obs]
    for k in range(19):
        obs, *_ = env.step(k % 3)
        out.append(obs)
    return np.stack(out)


def _count(registry: CollectorRegistry, outcome: str = "ok") -> float:
    value = registry.get_sample_value("lbh_operation_duration_seconds_count",
                                      {"operation": "agent_action", "outcome": outcome})
    return value or 0.0


def test_action_shape_range_and_probabilities(observations):
    agent = TradingAgent(registry=CollectorRegistry())
    assert agent.obs_dim == observations.shape[1] == 256 + 3
    seen = set()
    for obs in observations:
        d = agent.act(obs)
        assert isinstance(d.action, int) and 0 <= d.action < len(ACTIONS) and d.name == ACTIONS[d.action]
        assert d.probabilities.shape == (3,) and d.probabilities.dtype == np.float32
        assert np.all(d.probabilities >= 0) and d.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
        assert d.action == int(np.argmax(d.probabilities))  # greedy by default
        seen.add(d.action)
        assert d.to_dict()["action_name"] == d.name
    batch = agent.probabilities(observations)
    assert batch.shape == (len(observations), 3)
    np.testing.assert_allclose(batch[0], agent.act(observations[0]).probabilities, rtol=1e-5, atol=1e-6)
    assert AGENT_BUDGET_SECONDS == 0.05


def test_same_seed_same_policy_other_seed_other_policy_and_no_global_rng_disturbed(observations):
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a, b = TradingAgent(seed=7, registry=CollectorRegistry()), TradingAgent(seed=7, registry=CollectorRegistry())
    assert torch.equal(torch.rand(3), before)  # building agents moved nobody's torch stream
    c = TradingAgent(seed=8, registry=CollectorRegistry())
    pa, pb, pc = (x.probabilities(observations) for x in (a, b, c))
    np.testing.assert_array_equal(pa, pb)
    assert not np.allclose(pa, pc)
    # sampling (greedy=False) is reproducible too: the agent's own seeded generator
    s1 = TradingAgent(seed=3, greedy=False, registry=CollectorRegistry())
    s2 = TradingAgent(seed=3, greedy=False, registry=CollectorRegistry())
    assert [s1.act(o).action for o in observations] == [s2.act(o).action for o in observations]


def test_weights_save_load_round_trip(tmp_path, observations):
    agent = TradingAgent(PolicyArchitecture(hidden=(32, 16)), seed=11, registry=CollectorRegistry())
    path = tmp_path / "agent.pt"
    agent.save(path)
    loaded = TradingAgent.load(path, registry=CollectorRegistry())
    assert loaded.arch == agent.arch
    np.testing.assert_array_equal(loaded.probabilities(observations), agent.probabilities(observations))
    other = TradingAgent(PolicyArchitecture(hidden=(32, 16)), seed=99, registry=CollectorRegistry())
    other.load_weights(path)
    np.testing.assert_array_equal(other.probabilities(observations), agent.probabilities(observations))
    with pytest.raises(ValueError, match="weights are for"):
        TradingAgent(seed=0, registry=CollectorRegistry()).load_weights(path)  # (64, 64) != (32, 16)
    FeatureModel(seed=0).save(tmp_path / "model.pt")
    with pytest.raises(ValueError, match="not a TradingAgent weights file"):
        TradingAgent.load(tmp_path / "model.pt")


def test_act_is_instrumented_and_bad_observations_are_errors_naming_obs(observations):
    registry = CollectorRegistry()
    agent = TradingAgent(registry=registry)
    for obs in observations[:5]:
        agent.act(obs)
    assert _count(registry) == 5
    bad = observations[0].copy()
    bad[3] = np.nan
    for obs, match in ((bad, "finite"), (observations[0][:10], r"shape \(259,\)"), (observations[:2], "shape"),
                       ("abc", "obs")):
        with pytest.raises(ValueError, match=match):
            agent.act(obs)
    assert _count(registry, "error") == 4
    # budget-edged buckets: 50 ms is an exact edge, so "p95 < 50 ms" is decided on it
    assert registry.get_sample_value("lbh_operation_duration_seconds_bucket",
                                     {"operation": "agent_action", "outcome": "ok", "le": "0.05"}) == 5


def test_build_observation_is_the_environments_layout(model):
    registry = CollectorRegistry()
    extractor = build_extractor(ExtractorConfig(), registry=registry, model=model)
    env = TradingEnv(extractor, n_steps=5, registry=registry)
    obs, _ = env.reset(seed=2)
    env.step(2)
    obs, _, _, _, info = env.step(1)
    again = build_observation(env.last_result, 256, position=info["position"], pnl=info["pnl"])
    np.testing.assert_array_equal(obs, again)
    fb = build_extractor(ExtractorConfig(faults=FaultConfig(error_rate=1.0)), registry=CollectorRegistry(),
                         model=model).extract(MarketDataGenerator(1).window())
    o = build_observation(fb, 256, position=-1, pnl=0.5)
    assert o.shape == (259,) and o[-3:].tolist() == [-1.0, 0.5, 0.0] and np.all(o[15:256] == 0)


@pytest.mark.parametrize("factory, label", [(T.agent_action, "agent-action"), (T.trading_loop, "trading-loop")])
def test_targets_call_the_agent_in_the_runs_registry(factory, label):
    registry = CollectorRegistry()
    ctx = TargetContext(name=label, seed=3, registry=registry)
    target = factory(ctx)
    assert target.name == label and target.labels == (label,)
    assert _count(registry) == 0  # building the pool (agent-action) is not traffic
    for k in range(6):
        name, fn, args = target.dispatch(k)
        assert name == label
        fn(*args)
    assert _count(registry) == 6
    steps = registry.get_sample_value("lbh_operation_duration_seconds_count", {"operation": "env_step", "outcome": "ok"})
    assert (steps or 0) == (6 if label == "trading-loop" else 0)  # one decision = act + step
