"""Request and response models. The request models are built per configuration, so the
OpenAPI document states the real bounds (window length, batch size, assets).

Input policy over JSON (docs/service.md):

* every model forbids unknown fields and is strict: ``"1.5"`` is not a number and
  ``true`` is not an integer (an integer *is* accepted where a number is expected);
* a window value may be ``null``: a missing value, i.e. NaN, repaired by the workloads'
  policy (forward-fill; more than ``max_nan_fraction`` missing is rejected). JSON has no
  NaN or Infinity; the non-standard ``NaN``/``Infinity`` tokens some encoders emit are
  rejected with a message saying to send ``null``;
* every number must lie within ±``MAX_ABS_VALUE`` (1e15): float32 maths overflows near
  1e19, and no price, volume or return is anywhere near that.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from .config import ServiceConfig

__all__ = [
    "MAX_ABS_VALUE",
    "RequestModels",
    "build_request_models",
    "ErrorResponse",
    "ErrorItem",
    "FeaturesResponse",
    "FeaturesBatchResponse",
    "EnvResetResponse",
    "EnvStepResponse",
    "EnvInfo",
    "AgentActResponse",
    "VarResponse",
    "MonteCarloVarResponse",
    "LimitBreachModel",
    "LimitsResponse",
    "HealthResponse",
    "ReadyResponse",
]

#: Largest magnitude accepted for any number in a request.
MAX_ABS_VALUE = 1e15

_STRICT = ConfigDict(extra="forbid", strict=True)

Number = Annotated[float, Field(ge=-MAX_ABS_VALUE, le=MAX_ABS_VALUE, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, le=MAX_ABS_VALUE, allow_inf_nan=False)]
Confidence = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False, description="e.g. 0.99; the tail is 1 - confidence")]
Horizon = Annotated[float, Field(gt=0, le=3650, allow_inf_nan=False, description="days; sqrt-of-time scaling")]
Seed = Annotated[int, Field(ge=0, le=2**63 - 1)]
#: A window value: a number, or null for a missing value (NaN).
WindowValue = Optional[Number]


class RequestModels:
    """The request models of one configuration (attributes are pydantic model classes)."""

    Features: type[BaseModel]
    FeaturesBatch: type[BaseModel]
    EnvReset: type[BaseModel]
    EnvStep: type[BaseModel]
    AgentAct: type[BaseModel]
    Var: type[BaseModel]
    MonteCarloVar: type[BaseModel]
    Limits: type[BaseModel]
    LimitsSpec: type[BaseModel]


def build_request_models(config: ServiceConfig) -> RequestModels:
    """Request models whose bounds come from ``config`` (and its extractor config)."""
    ext = config.extractor
    n_features, t_min, t_max = ext.n_features, ext.min_timesteps, ext.max_timesteps
    row = Annotated[list[WindowValue], Field(min_length=n_features, max_length=n_features)]
    window_doc = (
        f"T rows of {n_features} feature values ({t_min} <= T <= {t_max}); null marks a missing "
        f"value (NaN), forward-filled in time; more than {ext.max_nan_fraction:g} of the values "
        "missing is rejected"
    )
    Window = Annotated[list[row], Field(min_length=t_min, max_length=t_max, description=window_doc)]
    max_assets = config.max_assets
    Vector = Annotated[list[Number], Field(min_length=1, max_length=max_assets)]

    class FeaturesRequest(BaseModel):
        """One market window through the extractor chain (the ``feature_extraction`` operation)."""

        model_config = _STRICT
        window: Window

    class FeaturesBatchRequest(BaseModel):
        """Several windows in one call (``feature_extraction_batch``); lengths may differ."""

        model_config = _STRICT
        windows: Annotated[list[Window], Field(min_length=1, max_length=config.max_batch)]

    class EnvResetRequest(BaseModel):
        """Start an episode in a new session. Every field is optional."""

        model_config = _STRICT
        seed: Optional[Seed] = Field(None, description="market seed; omitted: a random episode")
        n_steps: Annotated[int, Field(ge=1, le=config.max_episode_steps)] = 256
        lookback: Annotated[int, Field(ge=max(t_min, 2), le=t_max)] = min(max(60, t_min), t_max)
        transaction_cost: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 1e-3

    class EnvStepRequest(BaseModel):
        """One action: 0 = sell (go short), 1 = hold, 2 = buy (go long)."""

        model_config = _STRICT
        action: Annotated[int, Field(ge=0, le=2)]

    class AgentActRequest(BaseModel):
        """The agent's action for a market window and a position state (``agent_action``)."""

        model_config = _STRICT
        window: Window
        position: Annotated[int, Field(ge=-1, le=1, description="-1 short, 0 flat, +1 long")] = 0
        pnl: Annotated[float, Field(ge=-1e4, le=1e4, allow_inf_nan=False,
                                    description="cumulative log P&L of the episode so far")] = 0.0

    class VarRequest(BaseModel):
        """Historical VaR of returns: one series, per-asset columns, or a weighted portfolio."""

        model_config = _STRICT
        returns: Union[
            Annotated[list[Number], Field(min_length=2)],
            Annotated[list[Annotated[list[Number], Field(min_length=1, max_length=max_assets)]], Field(min_length=2)],
        ] = Field(description="(n_obs,) or (n_obs, n_assets) returns, n_obs >= 2")
        confidence: Confidence = 0.99
        weights: Optional[Vector] = Field(None, description="(n_assets,); needs 2-D returns; gives the portfolio VaR")
        horizon_days: Horizon = 1.0
        include_cvar: bool = Field(False, description="also compute CVaR (expected shortfall)")

    class MonteCarloVarRequest(BaseModel):
        """Monte-Carlo VaR/CVaR of a portfolio with normal returns of the given moments."""

        model_config = _STRICT
        mean: Vector = Field(description="(d,) mean return per asset")
        cov: Annotated[list[Vector], Field(min_length=1, max_length=max_assets)] = Field(
            description="(d, d) covariance, positive definite"
        )
        weights: Vector = Field(description="(d,) portfolio weights")
        confidence: Confidence = 0.99
        horizon_days: Horizon = 1.0
        seed: Optional[Seed] = Field(None, description="makes the draw reproducible")

    class LimitsSpec(BaseModel):
        """Limits in currency; null (or omitted) disables one."""

        model_config = _STRICT
        max_position: Union[NonNegative, list[NonNegative], None] = Field(
            None, description="|position x price| per asset: one number, or one per asset"
        )
        max_gross_exposure: Optional[NonNegative] = None
        max_net_exposure: Optional[NonNegative] = None
        max_var: Optional[NonNegative] = None

    class LimitsRequest(BaseModel):
        """Every breached limit for the given positions."""

        model_config = _STRICT
        positions: Annotated[list[Number], Field(min_length=1, max_length=100_000)]
        prices: Annotated[list[Number], Field(min_length=1, max_length=100_000)]
        limits: LimitsSpec
        var: Optional[NonNegative] = Field(None, description="the portfolio VaR to check against max_var")
        asset_names: Optional[list[Annotated[str, Field(min_length=1, max_length=64)]]] = None

    models = RequestModels()
    models.Features = FeaturesRequest
    models.FeaturesBatch = FeaturesBatchRequest
    models.EnvReset = EnvResetRequest
    models.EnvStep = EnvStepRequest
    models.AgentAct = AgentActRequest
    models.Var = VarRequest
    models.MonteCarloVar = MonteCarloVarRequest
    models.Limits = LimitsRequest
    models.LimitsSpec = LimitsSpec
    return models


# --------------------------------------------------------------------------- responses


class ErrorItem(BaseModel):
    field: str = Field(description="the offending field, e.g. window[3][2]; 'body' for the whole body")
    message: str
    type: str


class ErrorResponse(BaseModel):
    """Every non-2xx answer. ``message`` starts with the field it is about."""

    error: str = Field(description="a stable code: invalid_input, invalid_json, body_too_large, overloaded, ...")
    message: str
    field: Optional[str] = None
    errors: Optional[list[ErrorItem]] = None


class FeaturesResponse(BaseModel):
    features: list[float] = Field(description="fused_feature_dim values from the model, fallback_feature_dim from the fallback")
    probabilities: Optional[list[float]] = Field(description="sell/hold/buy; null from the fallback")
    uncertainty: Optional[float] = Field(description="null from the fallback")
    cache_hit: bool
    fallback_used: bool
    source: Literal["model", "cache", "fallback"]
    fallback_reason: Optional[str] = Field(description="model_error | circuit_open when the chain fell back")
    over_budget: bool = Field(description="the model answered slower than model_budget_seconds")
    nan_filled: int = Field(description="missing values the input policy repaired")


class FeaturesBatchResponse(BaseModel):
    results: list[FeaturesResponse]


class EnvInfo(BaseModel):
    t: int
    position: int
    pnl: float
    fallback_used: bool


class EnvResetResponse(BaseModel):
    session_id: str
    observation: list[float]
    info: EnvInfo
    idle_timeout_seconds: float = Field(description="the session closes after this long without a call")


class EnvStepResponse(BaseModel):
    observation: list[float]
    reward: float
    terminated: bool
    truncated: bool
    info: EnvInfo


class AgentActResponse(BaseModel):
    action: int = Field(description="0 = sell (go short), 1 = hold, 2 = buy (go long)")
    action_name: Literal["sell", "hold", "buy"]
    probabilities: list[float] = Field(description="the policy's sell/hold/buy probabilities")
    source: Literal["model", "cache", "fallback"] = Field(description="where the observation's features came from")
    fallback_used: bool
    cache_hit: bool


class VarResponse(BaseModel):
    var: Union[float, list[float]] = Field(description="a positive loss; one per column for 2-D returns without weights")
    cvar: Union[float, list[float], None] = None
    confidence: float
    horizon_days: float


class MonteCarloVarResponse(BaseModel):
    var: float
    cvar: float
    confidence: float
    n_scenarios: int
    horizon_days: float


class LimitBreachModel(BaseModel):
    limit: Literal["position", "gross_exposure", "net_exposure", "var"]
    value: float
    threshold: float
    asset: Union[str, int, None] = None


class LimitsResponse(BaseModel):
    ok: bool
    breaches: list[LimitBreachModel]
    gross_exposure: float
    net_exposure: float
    var: Optional[float] = None


class HealthResponse(BaseModel):
    status: Literal["ok", "failed"]
    detail: Optional[str] = None


class ReadyResponse(BaseModel):
    status: Literal["ready", "starting", "draining", "failed"]
    detail: Optional[str] = None
    model_load_s: Optional[float] = Field(None, description="seconds the model took to load at start (None "
                                                            "until loaded)")
    model_warmup_s: Optional[float] = Field(None, description="seconds the warm-up inferences took")
    model_load_budget_s: Optional[float] = Field(None, description="the load time budget (the seeds: 5 s)")
    model_load_within_budget: Optional[bool] = None
