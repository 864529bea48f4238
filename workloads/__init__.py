"""The reference system under test: market data, the feature-extractor chain, a trading
environment, an RL agent and risk calls, each instrumented with :func:`instrumentation.instrument`.

Operation names: ``feature_extraction``, ``feature_extraction_batch``, ``model_inference``,
``fallback_extraction``, ``env_reset``, ``env_step``, ``agent_action``, ``risk_var``, ``risk_cvar``,
``risk_mc_var``, ``risk_limits``. See docs/workloads.md for the input policy and faults.

Importing this package imports nothing heavy (torch loads with the first model class
used) and registers no metrics; objects register theirs in the registry they are given
(default: prometheus_client's global one) when they are built.
"""

import importlib

#: public name -> the submodule that defines it, imported on first use (PEP 562), so
#: ``workloads.market_data`` and the payload generators work without torch installed
_LAZY: dict[str, str] = {
    "AgentDecision": "agent",
    "PolicyArchitecture": "agent",
    "TradingAgent": "agent",
    "CacheStats": "cache",
    "TTLCache": "cache",
    "window_key": "cache",
    "ACTIONS": "environment",
    "TradingEnv": "environment",
    "CircuitBreaker": "extractor",
    "Extractor": "extractor",
    "ExtractorConfig": "extractor",
    "FallbackExtractor": "extractor",
    "FeatureExtractor": "extractor",
    "FeatureResult": "extractor",
    "InvalidInputError": "extractor",
    "ModelExtractor": "extractor",
    "build_extractor": "extractor",
    "prepare_window": "extractor",
    "prepare_windows": "extractor",
    "FALLBACK_FEATURE_NAMES": "fallback",
    "fallback_features": "fallback",
    "ConfigError": "faults",
    "FaultConfig": "faults",
    "FaultInjector": "faults",
    "InjectedFault": "faults",
    "CRASH_SCENARIOS": "market_data",
    "DEFAULT_TIMESTEPS": "market_data",
    "FEATURE_NAMES": "market_data",
    "N_FEATURES": "market_data",
    "MarketDataGenerator": "market_data",
    "MarketFrame": "market_data",
    "compute_features": "market_data",
    "crash_window": "market_data",
    "huge_window": "market_data",
    "nan_run_window": "market_data",
    "tiny_window": "market_data",
    "CNNLSTM": "model",
    "FeatureModel": "model",
    "ModelArchitecture": "model",
    "ModelOutput": "model",
    "LimitBreach": "risk",
    "LimitCheckResult": "risk",
    "MonteCarloResult": "risk",
    "MonteCarloVaR": "risk",
    "RiskEngine": "risk",
    "RiskLimits": "risk",
    "check_limits": "risk",
    "historical_cvar": "risk",
    "historical_var": "risk",
    "monte_carlo_var": "risk",
    "parametric_var": "risk",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'workloads' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"workloads.{module}"), name)
    globals()[name] = value
    return value


#: Every operation name the package instruments.
OPERATIONS: tuple[str, ...] = (
    "feature_extraction",
    "feature_extraction_batch",
    "model_inference",
    "fallback_extraction",
    "env_reset",
    "env_step",
    "agent_action",
    "risk_var",
    "risk_cvar",
    "risk_mc_var",
    "risk_limits",
)

__all__ = [
    "ACTIONS",
    "AgentDecision",
    "CNNLSTM",
    "CRASH_SCENARIOS",
    "CacheStats",
    "CircuitBreaker",
    "ConfigError",
    "DEFAULT_TIMESTEPS",
    "Extractor",
    "ExtractorConfig",
    "FALLBACK_FEATURE_NAMES",
    "FEATURE_NAMES",
    "FallbackExtractor",
    "FaultConfig",
    "FaultInjector",
    "FeatureExtractor",
    "FeatureModel",
    "FeatureResult",
    "InjectedFault",
    "InvalidInputError",
    "LimitBreach",
    "LimitCheckResult",
    "MarketDataGenerator",
    "MarketFrame",
    "ModelArchitecture",
    "ModelExtractor",
    "ModelOutput",
    "MonteCarloResult",
    "MonteCarloVaR",
    "N_FEATURES",
    "OPERATIONS",
    "PolicyArchitecture",
    "RiskEngine",
    "RiskLimits",
    "TTLCache",
    "TradingAgent",
    "TradingEnv",
    "build_extractor",
    "check_limits",
    "compute_features",
    "crash_window",
    "fallback_features",
    "historical_cvar",
    "historical_var",
    "huge_window",
    "monte_carlo_var",
    "nan_run_window",
    "parametric_var",
    "prepare_window",
    "prepare_windows",
    "tiny_window",
    "window_key",
]
