"""Fault config from the environment, the injector's draws, and its metrics."""

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from workloads.faults import ConfigError, FaultConfig, FaultInjector, InjectedFault


def test_off_by_default():
    cfg = FaultConfig()
    assert not cfg.enabled
    assert FaultConfig.from_env({}) == cfg
    assert FaultConfig(extra_latency_seconds=0.1, latency_rate=0.0).enabled is False


def test_from_env_reads_all_four_variables():
    cfg = FaultConfig.from_env({
        "LBH_FAULT_ERROR_RATE": "0.25",
        "LBH_FAULT_EXTRA_LATENCY_MS": "150",
        "LBH_FAULT_LATENCY_RATE": "0.5",
        "LBH_FAULT_CACHE_OUTAGE": "yes",
    })
    assert cfg == FaultConfig(error_rate=0.25, extra_latency_seconds=0.15, latency_rate=0.5, cache_outage=True)
    assert cfg.enabled


@pytest.mark.parametrize("var, value", [
    ("LBH_FAULT_ERROR_RATE", "lots"),
    ("LBH_FAULT_ERROR_RATE", "1.5"),
    ("LBH_FAULT_EXTRA_LATENCY_MS", "-3"),
    ("LBH_FAULT_EXTRA_LATENCY_MS", "nan"),
    ("LBH_FAULT_LATENCY_RATE", "2"),
    ("LBH_FAULT_CACHE_OUTAGE", "maybe"),
])
def test_from_env_errors_name_the_variable(var, value):
    with pytest.raises(ConfigError) as info:
        FaultConfig.from_env({var: value})
    assert info.value.field == var and var in str(info.value) and repr(value) in str(info.value)


def test_direct_construction_is_validated():
    with pytest.raises(ConfigError, match="error_rate"):
        FaultConfig(error_rate=-0.1)
    with pytest.raises(ConfigError, match="latency_rate"):
        FaultConfig(latency_rate="0.5")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="cache_outage"):
        FaultConfig(cache_outage="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="faults.bogus"):
        FaultConfig.from_mapping({"bogus": 1})


def test_error_rate_extremes_and_a_seeded_middle():
    always = FaultInjector(FaultConfig(error_rate=1.0), registry=CollectorRegistry())
    for _ in range(20):
        with pytest.raises(InjectedFault):
            always.before_call("model_inference")
    never = FaultInjector(FaultConfig(), registry=CollectorRegistry())
    for _ in range(20):
        never.before_call("model_inference")

    def count(seed: int) -> int:
        inj = FaultInjector(FaultConfig(error_rate=0.3), seed=seed, registry=CollectorRegistry())
        n = 0
        for _ in range(2000):
            try:
                inj.before_call("op")
            except InjectedFault:
                n += 1
        return n

    n = count(1)
    assert n == count(1)  # seeded
    # binomial(2000, 0.3): sd ≈ 20.5; 5 sd
    assert abs(n - 600) < 5 * 20.5


def test_latency_uses_the_injected_sleep_and_rate():
    slept: list[float] = []
    inj = FaultInjector(FaultConfig(extra_latency_seconds=0.2, latency_rate=1.0), registry=CollectorRegistry(), sleep=slept.append)
    inj.before_call("model_inference")
    assert slept == [0.2]
    none: list[float] = []
    FaultInjector(FaultConfig(extra_latency_seconds=0.2, latency_rate=0.0), registry=CollectorRegistry(), sleep=none.append).before_call("x")
    assert none == []


def test_metrics_appear_only_when_faults_are_on():
    quiet = CollectorRegistry()
    FaultInjector(FaultConfig(), registry=quiet).before_call("model_inference")
    assert b"lbh_fault" not in generate_latest(quiet)

    reg = CollectorRegistry()
    inj = FaultInjector(
        FaultConfig(error_rate=1.0, extra_latency_seconds=0.05, cache_outage=True), registry=reg, sleep=lambda s: None
    )
    with pytest.raises(InjectedFault):
        inj.before_call("model_inference")
    assert inj.cache_down("feature_extraction")
    text = generate_latest(reg).decode()
    assert 'lbh_fault_setting{fault="error_rate"} 1.0' in text
    assert 'lbh_fault_setting{fault="extra_latency_seconds"} 0.05' in text
    assert 'lbh_fault_setting{fault="cache_outage"} 1.0' in text
    assert 'lbh_faults_injected_total{fault="error",operation="model_inference"} 1.0' in text
    assert 'lbh_faults_injected_total{fault="latency",operation="model_inference"} 1.0' in text
    assert 'lbh_faults_injected_total{fault="cache_outage",operation="feature_extraction"} 1.0' in text


def test_two_injectors_share_one_registry():
    reg = CollectorRegistry()
    FaultInjector(FaultConfig(error_rate=0.1), registry=reg)
    FaultInjector(FaultConfig(error_rate=0.2), registry=reg)  # no duplicate-registration error
    assert 'lbh_fault_setting{fault="error_rate"} 0.2' in generate_latest(reg).decode()
