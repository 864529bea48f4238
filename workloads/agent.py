"""The RL agent: a small actor network that maps a :class:`~workloads.environment.TradingEnv`
observation to an action, instrumented as ``agent_action`` (budget: p95 < 50 ms).

Why this shape:

* the input is exactly the environment's observation: the extractor's fused features
  (``fused_feature_dim``, fallback features zero-padded) followed by the position state
  [position, cumulative log P&L, model-features flag], so an agent trained on the env
  serves unchanged behind the service's ``POST /v1/agent/act``;
* a LayerNorm first: model features are tanh-bounded but fallback features, P&L and the
  flag are on other scales; normalising per observation keeps the logits sane without a
  fitted scaler (the same reason the feature model standardises its window);
* a tiny MLP (two Tanh layers of 64) and a softmax over sell/hold/buy: the harness
  measures the decision's latency, not alpha, and a policy this size costs well under a
  millisecond on one CPU thread, so the 50 ms budget measures the serving path around it;
* deterministic: weights come from a seeded, forked torch RNG (nobody else's stream
  moves), the action is the argmax (``greedy=True``) or a draw from the agent's own
  seeded numpy generator; ``save``/``load`` round-trip the weights (weights_only file).

Threads: as for the feature model, one intra-op thread by default (see
:mod:`workloads.model`); ``act`` is safe from several threads at once (eval-mode forward
passes share no mutable state; only sampling, ``greedy=False``, takes a lock).
"""

from __future__ import annotations

import os
import threading
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from prometheus_client import CollectorRegistry
from torch import nn

from instrumentation import instrument

from .environment import ACTIONS, OBS_BOUND, pad_features
from .extractor import FeatureResult
from .model import set_torch_threads

__all__ = ["AGENT_BUDGET_SECONDS", "POSITION_STATE", "ActorNetwork", "AgentDecision", "PolicyArchitecture",
           "TradingAgent", "build_observation"]

#: The seeds' budget for one agent action (p95), in seconds.
AGENT_BUDGET_SECONDS = 0.05
#: The position state appended to the features, in the environment's order.
POSITION_STATE: tuple[str, ...] = ("position", "cumulative_log_pnl", "model_features")

_FORMAT_VERSION = 1


@dataclass(frozen=True)
class PolicyArchitecture:
    """Shape hyper-parameters; saved with the weights so a mismatched load fails loudly."""

    feature_dim: int = 256
    hidden: tuple[int, ...] = (64, 64)
    n_actions: int = len(ACTIONS)

    def __post_init__(self) -> None:
        if self.feature_dim < 1 or self.n_actions < 2 or not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"feature_dim >= 1, n_actions >= 2 and hidden sizes >= 1 are required, got {self}")

    @property
    def obs_dim(self) -> int:
        """Features plus the position state: the environment's observation size."""
        return self.feature_dim + len(POSITION_STATE)


class ActorNetwork(nn.Module):
    """LayerNorm → (Linear → Tanh) × len(hidden) → Linear: action logits."""

    def __init__(self, arch: PolicyArchitecture = PolicyArchitecture()) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.LayerNorm(arch.obs_dim)]
        width = arch.obs_dim
        for h in arch.hidden:
            layers += [nn.Linear(width, h), nn.Tanh()]
            width = h
        layers.append(nn.Linear(width, arch.n_actions))
        self.net = nn.Sequential(*layers)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """obs: (B, obs_dim) → logits (B, n_actions)."""
        return self.net(obs)


@dataclass(frozen=True, eq=False)
class AgentDecision:
    """One action: its index (0 sell, 1 hold, 2 buy), name and the policy's probabilities."""

    action: int
    probabilities: np.ndarray

    @property
    def name(self) -> str:
        return ACTIONS[self.action] if self.action < len(ACTIONS) else str(self.action)

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "action_name": self.name, "probabilities": self.probabilities.tolist()}


def build_observation(result: FeatureResult, feature_dim: int, position: float = 0.0, pnl: float = 0.0) -> np.ndarray:
    """The environment's observation for an extraction and a position state (the layout
    of ``TradingEnv``: padded features, position, P&L, 1.0 if model features), clipped."""
    obs = np.empty(feature_dim + len(POSITION_STATE), dtype=np.float32)
    obs[:feature_dim] = pad_features(result.features, feature_dim)
    obs[feature_dim:] = (position, pnl, 0.0 if result.fallback_used else 1.0)
    np.clip(obs, -OBS_BOUND, OBS_BOUND, out=obs)
    return obs


class TradingAgent:
    """The policy behind ``act(obs)``, the ``agent_action`` operation."""

    def __init__(
        self,
        arch: PolicyArchitecture = PolicyArchitecture(),
        *,
        seed: int = 0,
        greedy: bool = True,
        threads: int | None = 1,
        weights_path: str | os.PathLike[str] | None = None,
        registry: CollectorRegistry | None = None,
        tracer_provider: Any = None,
    ) -> None:
        set_torch_threads(threads)
        self.arch = arch
        self.greedy = greedy
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.module = ActorNetwork(arch)
        self.module.eval()
        if weights_path is not None:
            self.load_weights(weights_path)
        self._rng = np.random.default_rng(seed)
        self._rng_lock = threading.Lock()
        self._act = instrument("agent_action", registry=registry, tracer_provider=tracer_provider,
                               annotate=self._annotate)(self._act_impl)

    @property
    def obs_dim(self) -> int:
        return self.arch.obs_dim

    def act(self, obs: Any) -> AgentDecision:
        """The action for one observation of ``obs_dim`` finite values (``ValueError`` naming
        ``obs`` otherwise): the ``agent_action`` operation."""
        return self._act(obs)

    def probabilities(self, obs: Any) -> np.ndarray:
        """Action probabilities for one (obs_dim,) observation or a (B, obs_dim) batch (not timed)."""
        x = self._check(obs, batch_ok=True)
        p = self._forward(x if x.ndim == 2 else x[None])
        return p if x.ndim == 2 else p[0]

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return torch.softmax(self.module(torch.from_numpy(batch)), dim=1).numpy()

    def _act_impl(self, obs: Any) -> AgentDecision:
        p = self._forward(self._check(obs)[None])[0]
        if self.greedy:
            action = int(np.argmax(p))
        else:
            with self._rng_lock:
                action = int(self._rng.choice(len(p), p=p / p.sum()))
        return AgentDecision(action, p)

    def _check(self, obs: Any, *, batch_ok: bool = False) -> np.ndarray:
        try:
            x = np.asarray(obs, dtype=np.float32)
        except (TypeError, ValueError):
            raise ValueError(f"obs: expected {self.obs_dim} numbers, got {type(obs).__name__}") from None
        if not (x.ndim == 1 or (batch_ok and x.ndim == 2)) or x.shape[-1] != self.obs_dim:
            raise ValueError(f"obs: expected shape ({self.obs_dim},), got {tuple(x.shape)}")
        if not np.isfinite(x).all():
            raise ValueError("obs: values must be finite (no NaN or inf)")
        return np.ascontiguousarray(x)

    @staticmethod
    def _annotate(decision: AgentDecision) -> dict[str, str]:
        return {"action": decision.name}

    # weights -------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the architecture and ``state_dict`` (a plain-tensor file, loadable with weights_only)."""
        arch = asdict(self.arch)
        arch["hidden"] = list(arch["hidden"])
        torch.save({"format_version": _FORMAT_VERSION, "kind": "trading-agent", "arch": arch,
                    "state_dict": self.module.state_dict()}, path)

    def load_weights(self, path: str | os.PathLike[str]) -> None:
        """Load weights saved by ``save``; the saved architecture must match this agent's."""
        arch, state = _read_weights(path)
        if arch != self.arch:
            raise ValueError(f"{path}: weights are for {arch}, this agent is {self.arch}")
        self.module.load_state_dict(state)
        self.module.eval()

    @classmethod
    def load(cls, path: str | os.PathLike[str], **kwargs: Any) -> TradingAgent:
        """An agent with the architecture and weights stored in ``path`` (kwargs as ``__init__``)."""
        arch, _ = _read_weights(path)
        return cls(arch, weights_path=path, **kwargs)


def _read_weights(path: str | os.PathLike[str]) -> tuple[PolicyArchitecture, dict[str, Any]]:
    blob: Any = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format_version") != _FORMAT_VERSION or blob.get("kind") != "trading-agent":
        version = blob.get("format_version") if isinstance(blob, dict) else None
        raise ValueError(f"{path}: not a TradingAgent weights file (format_version={version!r})")
    raw = dict(blob["arch"])
    raw["hidden"] = tuple(raw["hidden"])
    return PolicyArchitecture(**raw), blob["state_dict"]
