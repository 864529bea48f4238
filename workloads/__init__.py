"""The reference system under test: market data, the feature-extractor chain, a trading
environment and risk calls, each instrumented with :func:`instrumentation.instrument`.

Operation names: ``feature_extraction``, ``feature_extraction_batch``, ``model_inference``,
``fallback_extraction``, ``env_reset``, ``env_step``, ``risk_var``, ``risk_cvar``,
``risk_mc_var``, ``risk_limits``. See docs/workloads.md for the input policy and faults.

Importing this package registers no metrics; objects register theirs in the registry
they are given (default: prometheus_client's global one) when they are built.
"""

from .cache import CacheStats, TTLCache, window_key
from .environment import ACTIONS, TradingEnv
from .extractor import (
    CircuitBreaker,
    Extractor,
    ExtractorConfig,
    FallbackExtractor,
    FeatureExtractor,
    FeatureResult,
    InvalidInputError,
    ModelExtractor,
    build_extractor,
    prepare_window,
    prepare_windows,
)
from .fallback import FALLBACK_FEATURE_NAMES, fallback_features
from .faults import ConfigError, FaultConfig, FaultInjector, InjectedFault
from .market_data import (
    CRASH_SCENARIOS,
    DEFAULT_TIMESTEPS,
    FEATURE_NAMES,
    N_FEATURES,
    MarketDataGenerator,
    MarketFrame,
    compute_features,
    crash_window,
    huge_window,
    nan_run_window,
    tiny_window,
)
from .model import CNNLSTM, FeatureModel, ModelArchitecture, ModelOutput
from .risk import (
    LimitBreach,
    LimitCheckResult,
    MonteCarloResult,
    MonteCarloVaR,
    RiskEngine,
    RiskLimits,
    check_limits,
    historical_cvar,
    historical_var,
    monte_carlo_var,
    parametric_var,
)

#: Every operation name the package instruments.
OPERATIONS: tuple[str, ...] = (
    "feature_extraction",
    "feature_extraction_batch",
    "model_inference",
    "fallback_extraction",
    "env_reset",
    "env_step",
    "risk_var",
    "risk_cvar",
    "risk_mc_var",
    "risk_limits",
)

__all__ = [
    "ACTIONS",
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
    "RiskEngine",
    "RiskLimits",
    "TTLCache",
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
