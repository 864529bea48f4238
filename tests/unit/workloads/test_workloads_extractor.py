"""The extractor chain with the real torch model: cache, fallback, breaker, input policy,
config parsing and the metrics each call leaves behind. Every test has its own registry."""

import threading

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from workloads.extractor import (
    CircuitBreaker,
    ExtractorConfig,
    FallbackExtractor,
    InvalidInputError,
    ModelExtractor,
    build_extractor,
    prepare_window,
)
from workloads.faults import ConfigError, FaultConfig, InjectedFault
from workloads.market_data import MarketDataGenerator, huge_window, nan_run_window, tiny_window
from workloads.model import FeatureModel


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def model() -> FeatureModel:
    return FeatureModel(seed=0)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture(scope="module")
def windows() -> np.ndarray:
    return MarketDataGenerator(21).windows(6)


def metrics(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


# ---------------------------------------------------------------- results and cache


def test_model_result_shapes_and_flags(model, registry, windows):
    ex = build_extractor(registry=registry, model=model)
    r = ex.extract(windows[0])
    assert r.source == "model" and not r.cache_hit and not r.fallback_used
    assert r.features.shape == (256,) and r.features.dtype == np.float32
    assert r.probabilities.shape == (3,) and r.probabilities.sum() == pytest.approx(1.0, rel=1e-5)
    assert r.uncertainty > 0
    assert not r.features.flags.writeable  # shared through the cache: read-only
    assert set(r.to_dict()) >= {"features", "probabilities", "uncertainty", "cache_hit", "fallback_used", "source"}


def test_same_seed_same_features_from_separately_built_extractors(windows):
    a = build_extractor(ExtractorConfig(seed=4), registry=CollectorRegistry()).extract(windows[1])
    b = build_extractor(ExtractorConfig(seed=4), registry=CollectorRegistry()).extract(windows[1])
    np.testing.assert_array_equal(a.features, b.features)
    np.testing.assert_array_equal(a.probabilities, b.probabilities)


def test_second_call_hits_the_cache_and_is_counted(model, registry, windows):
    ex = build_extractor(registry=registry, model=model)
    first = ex.extract(windows[0])
    second = ex.extract(windows[0].copy())
    assert second.cache_hit and second.source == "cache" and not second.fallback_used
    np.testing.assert_array_equal(second.features, first.features)
    assert ex.cache_stats().hits == 1
    assert sample(registry, "lbh_operation_flags_total", operation="feature_extraction", flag="cache_hit") == 1
    assert sample(registry, "lbh_operation_duration_seconds_count", operation="feature_extraction", outcome="ok") == 2
    assert sample(registry, "lbh_operation_duration_seconds_count", operation="model_inference", outcome="ok") == 1


def test_cache_entries_expire_on_the_fake_clock(model, registry, windows):
    clock = FakeClock()
    ex = build_extractor(ExtractorConfig(cache_ttl_seconds=60), registry=registry, model=model, clock=clock)
    ex.extract(windows[0])
    clock.now += 59.9
    assert ex.extract(windows[0]).cache_hit
    clock.now += 0.2
    assert ex.extract(windows[0]).source == "model"
    assert ex.cache_stats().expirations == 1


def test_caching_disabled(model, registry, windows):
    ex = build_extractor(ExtractorConfig(enable_caching=False), registry=registry, model=model)
    ex.extract(windows[0])
    assert ex.extract(windows[0]).source == "model" and ex.cache_stats() is None


def test_cache_outage_fault_bypasses_the_cache(model, registry, windows):
    ex = build_extractor(ExtractorConfig(faults=FaultConfig(cache_outage=True)), registry=registry, model=model)
    ex.extract(windows[0])
    assert ex.extract(windows[0]).source == "model"
    assert sample(registry, "lbh_faults_injected_total", operation="feature_extraction", fault="cache_outage") == 2


# ---------------------------------------------------------------- fallback and breaker


def test_model_errors_fall_back_and_show_in_metrics(model, registry, windows):
    cfg = ExtractorConfig(faults=FaultConfig(error_rate=1.0), breaker_threshold=1000)
    ex = build_extractor(cfg, registry=registry, model=model)
    for w in windows[:3]:
        r = ex.extract(w)
        assert r.fallback_used and r.source == "fallback" and r.fallback_reason == "model_error"
        assert r.features.shape == (15,) and r.probabilities is None and r.uncertainty is None
    # fallback answers are not cached: the next call tries the model again
    assert ex.extract(windows[0]).source == "fallback" and ex.cache_stats().size == 0
    text = metrics(registry)
    assert 'lbh_operation_errors_total{error_type="InjectedFault",operation="model_inference"} 4.0' in text
    assert sample(registry, "lbh_operation_flags_total", operation="feature_extraction", flag="fallback") == 4
    assert sample(registry, "lbh_operation_duration_seconds_count", operation="fallback_extraction", outcome="ok") == 4
    assert sample(registry, "lbh_operation_duration_seconds_count", operation="feature_extraction", outcome="error") == 0
    assert 'lbh_faults_injected_total{fault="error",operation="model_inference"} 4.0' in text
    assert 'lbh_fault_setting{fault="error_rate"} 1.0' in text


def test_without_fallback_the_model_error_propagates(model, registry, windows):
    cfg = ExtractorConfig(enable_fallback=False, faults=FaultConfig(error_rate=1.0))
    ex = build_extractor(cfg, registry=registry, model=model)
    with pytest.raises(InjectedFault):
        ex.extract(windows[0])
    assert sample(registry, "lbh_operation_errors_total", operation="feature_extraction", error_type="InjectedFault") == 1


def test_over_budget_calls_open_the_breaker_then_a_probe_runs(model, registry, windows):
    clock = FakeClock()
    cfg = ExtractorConfig(
        enable_caching=False,
        model_budget_seconds=0.1,
        breaker_threshold=2,
        breaker_cooldown_seconds=5.0,
        faults=FaultConfig(extra_latency_seconds=0.25),
    )
    ex = build_extractor(cfg, registry=registry, model=model, clock=clock, sleep=clock.sleep)
    first, second = ex.extract(windows[0]), ex.extract(windows[1])
    # slow answers are still answers: a call cannot be pre-empted
    assert (first.source, first.over_budget) == ("model", True) and second.over_budget
    assert ex.breaker.state == "open"
    routed = ex.extract(windows[2])
    assert routed.fallback_used and routed.fallback_reason == "circuit_open"
    clock.now += 5.0
    probe = ex.extract(windows[3])  # still slow: the probe re-opens the breaker
    assert probe.source == "model" and probe.over_budget and ex.breaker.state == "open"
    assert ex.breaker.times_opened == 2
    assert sample(registry, "lbh_operation_flags_total", operation="feature_extraction", flag="circuit_open") == 1
    assert sample(registry, "lbh_operation_flags_total", operation="feature_extraction", flag="over_budget") == 3
    assert sample(registry, "lbh_faults_injected_total", operation="model_inference", fault="latency") == 3


def test_real_latency_injection_routes_to_fallback(model, registry, windows):
    # The same path with the real clock and a real sleep (kept short).
    cfg = ExtractorConfig(
        enable_caching=False, model_budget_seconds=0.01, breaker_threshold=1, faults=FaultConfig(extra_latency_seconds=0.02)
    )
    ex = build_extractor(cfg, registry=registry, model=model)
    assert ex.extract(windows[0]).over_budget
    assert ex.extract(windows[1]).fallback_reason == "circuit_open"


def test_breaker_state_machine():
    clock = FakeClock()
    b = CircuitBreaker(threshold=2, cooldown_seconds=1.0, clock=clock)
    assert b.allow()
    b.record(False)
    assert b.state == "closed" and b.allow()
    b.record(True)  # success resets the count
    for _ in range(2):
        assert b.allow()
        b.record(False)
    assert b.state == "open" and not b.allow()
    clock.now += 1.0
    assert b.state == "half_open"
    assert b.allow()  # the probe
    assert not b.allow()  # everyone else waits for it
    b.record(True)
    assert b.state == "closed" and b.allow()


# ---------------------------------------------------------------- input policy


def test_nan_runs_are_forward_filled_then_zeroed(model, registry):
    w = nan_run_window(3)
    n_nan = int(np.isnan(w).sum())
    ex = build_extractor(registry=registry, model=model)
    r = ex.extract(w)
    assert r.source == "model" and r.nan_filled == n_nan and np.isfinite(r.features).all()
    assert sample(registry, "lbh_operation_flags_total", operation="feature_extraction", flag="nan_cleaned") == 1

    leading = MarketDataGenerator(0).window()
    leading[:3, 4] = np.nan
    leading[10:12, 3] = np.nan
    clean, filled = prepare_window(leading)
    assert filled == 5
    assert (clean[:3, 4] == 0).all()
    np.testing.assert_array_equal(clean[10:12, 3], leading[9, 3])


def test_mostly_nan_and_inf_windows_are_rejected(model, registry):
    ex = build_extractor(registry=registry, model=model)
    w = MarketDataGenerator(0).window()
    mostly = w.copy()
    mostly[:40] = np.nan
    with pytest.raises(InvalidInputError, match="max_nan_fraction"):
        ex.extract(mostly)
    inf = w.copy()
    inf[5, 2] = np.inf
    with pytest.raises(InvalidInputError, match="inf"):
        ex.extract(inf)
    assert sample(registry, "lbh_operation_errors_total", operation="feature_extraction", error_type="InvalidInputError") == 2


@pytest.mark.parametrize("bad, got", [
    (tiny_window(), "(10, 5)"),
    (huge_window(), "(200, 50)"),
    (np.zeros((5, 15)), "(5, 15)"),
    (np.zeros((2000, 15)), "(2000, 15)"),
    (np.zeros(15), "(15,)"),
    (np.zeros((2, 60, 15)), "(2, 60, 15)"),
])
def test_wrong_shapes_name_expected_and_got(model, registry, bad, got):
    ex = build_extractor(registry=registry, model=model)
    with pytest.raises(InvalidInputError) as info:
        ex.extract(bad)
    msg = str(info.value)
    assert "(T, 15)" in msg and got in msg and "10 <= T <= 1024" in msg
    assert isinstance(info.value, ValueError)


def test_non_numeric_and_ragged_input(model, registry):
    ex = build_extractor(registry=registry, model=model)
    with pytest.raises(InvalidInputError, match="numeric"):
        ex.extract(np.full((60, 15), "x"))
    with pytest.raises(InvalidInputError):
        ex.extract([[1.0, 2.0], [3.0]])


def test_longer_windows_within_range_are_accepted(model, registry):
    ex = build_extractor(registry=registry, model=model)
    assert ex.extract(MarketDataGenerator(1).window(200)).features.shape == (256,)
    assert ex.extract(MarketDataGenerator(1).window(10)).source == "model"


# ---------------------------------------------------------------- batches


def test_batch_matches_single_calls_and_uses_the_cache(model, registry, windows):
    ex = build_extractor(registry=registry, model=model)
    single = build_extractor(registry=CollectorRegistry(), model=model)
    results = ex.extract_batch(windows)
    assert [r.source for r in results] == ["model"] * len(windows)
    for w, r in zip(windows, results):
        np.testing.assert_allclose(r.features, single.extract(w).features, atol=1e-5)
    again = ex.extract_batch(list(windows[:2]) + [MarketDataGenerator(99).window(80)])
    assert [r.source for r in again] == ["cache", "cache", "model"]
    assert sample(registry, "lbh_operation_duration_seconds_count", operation="feature_extraction_batch", outcome="ok") == 2
    assert sample(registry, "lbh_operation_duration_seconds_count", operation="feature_extraction", outcome="ok") == 0


def test_batch_errors_name_the_window(model, registry, windows):
    ex = build_extractor(registry=registry, model=model)
    bad = list(windows[:3])
    bad[2] = tiny_window()
    with pytest.raises(InvalidInputError, match=r"windows\[2\].*\(10, 5\)"):
        ex.extract_batch(bad)
    arr = windows.copy()
    arr[1, 0, 0] = np.inf
    with pytest.raises(InvalidInputError, match=r"windows\[1\]"):
        ex.extract_batch(arr)
    with pytest.raises(InvalidInputError):
        ex.extract_batch([])


def test_batch_falls_back_window_by_window(model, registry, windows):
    cfg = ExtractorConfig(faults=FaultConfig(error_rate=1.0))
    results = build_extractor(cfg, registry=registry, model=model).extract_batch(windows[:4])
    assert all(r.fallback_reason == "model_error" and r.features.shape == (15,) for r in results)


def test_standalone_members_of_the_family(model, registry, windows):
    cfg = ExtractorConfig()
    m = ModelExtractor(cfg, model=model, registry=registry)
    f = FallbackExtractor(cfg.replace(fallback_feature_dim=20), registry=registry)
    assert m.extract(windows[0]).source == "model"
    mixed = [windows[0], MarketDataGenerator(5).window(30), windows[1]]
    for w, r in zip(mixed, m.extract_batch(mixed)):  # grouped by shape, returned in input order
        np.testing.assert_allclose(r.features, m.extract(w).features, atol=1e-5)
    fb = f.extract(windows[0])
    assert fb.features.shape == (20,) and (fb.features[15:] == 0).all()
    assert len(f.extract_batch(windows[:2])) == 2
    with pytest.raises(ConfigError, match="fused_feature_dim"):
        ModelExtractor(cfg.replace(fused_feature_dim=128), model=model, registry=registry)


def test_concurrent_calls_agree_with_serial_ones(model, registry, windows):
    ex = build_extractor(ExtractorConfig(enable_caching=False), registry=registry, model=model)
    expected = [ex.extract(w).features for w in windows]
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(3):
                for w, e in zip(windows, expected):
                    np.testing.assert_allclose(ex.extract(w).features, e, atol=1e-6)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


# ---------------------------------------------------------------- config


def test_config_defaults_match_the_spec():
    cfg = ExtractorConfig()
    assert (cfg.fused_feature_dim, cfg.enable_caching, cfg.cache_size, cfg.cache_ttl_seconds) == (256, True, 1000, 60.0)
    assert (cfg.enable_fallback, cfg.fallback_feature_dim, cfg.n_features) == (True, 15, 15)
    assert (cfg.model_budget_seconds, cfg.torch_threads, cfg.weights_path) == (0.1, 1, None)
    assert not cfg.faults.enabled


def test_config_from_mapping_parses_and_names_bad_fields():
    cfg = ExtractorConfig.from_mapping({
        "cache_size": "50", "enable_caching": "false", "model_budget_seconds": 0.05,
        "torch_threads": "none", "faults": {"error_rate": "0.1"},
    })
    assert (cfg.cache_size, cfg.enable_caching, cfg.model_budget_seconds, cfg.torch_threads) == (50, False, 0.05, None)
    assert cfg.faults.error_rate == 0.1
    for mapping, field in [
        ({"cache_size": "ten"}, "cache_size"),
        ({"cache_size": 0}, "cache_size"),
        ({"cache_ttl_seconds": -1}, "cache_ttl_seconds"),
        ({"enable_fallback": "perhaps"}, "enable_fallback"),
        ({"max_nan_fraction": 1.5}, "max_nan_fraction"),
        ({"min_timesteps": 50, "max_timesteps": 20}, "max_timesteps"),
        ({"cache_sise": 10}, "cache_sise"),
        ({"faults": {"error_rate": 3}}, "faults.error_rate"),
    ]:
        with pytest.raises(ConfigError) as info:
            ExtractorConfig.from_mapping(mapping)
        assert info.value.field == field, mapping


def test_config_direct_construction_is_strict():
    with pytest.raises(ConfigError, match="cache_size"):
        ExtractorConfig(cache_size="10")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="model_budget_seconds"):
        ExtractorConfig(model_budget_seconds=0)


def test_config_from_env_names_the_variable():
    cfg = ExtractorConfig.from_env({"LBH_EXTRACTOR_CACHE_SIZE": "7", "LBH_FAULT_ERROR_RATE": "0.5"})
    assert cfg.cache_size == 7 and cfg.faults.error_rate == 0.5
    with pytest.raises(ConfigError) as info:
        ExtractorConfig.from_env({"LBH_EXTRACTOR_MODEL_BUDGET_SECONDS": "fast"})
    assert info.value.field == "LBH_EXTRACTOR_MODEL_BUDGET_SECONDS" and "'fast'" in str(info.value)


def test_spans_nest_and_carry_the_result_flags(model, registry, windows):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    cfg = ExtractorConfig(faults=FaultConfig(error_rate=1.0), breaker_threshold=1000)
    ex = build_extractor(cfg, registry=registry, tracer_provider=provider, model=model)
    ex.extract(windows[0])
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"feature_extraction", "model_inference", "fallback_extraction"}
    outer = spans["feature_extraction"]
    assert outer.attributes["fallback"] is True and outer.attributes["cache_hit"] is False
    assert outer.attributes["source"] == "fallback" and outer.attributes["model_error"] is True
    for child in ("model_inference", "fallback_extraction"):
        assert spans[child].parent.span_id == outer.context.span_id
        assert spans[child].context.trace_id == outer.context.trace_id
    assert not spans["model_inference"].status.is_ok  # the injected error is recorded on its span
