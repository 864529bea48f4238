"""The CNN+LSTM feature model: (T, F) market windows in, a 256-d fused vector out.

Architecture, and why:

* per-window standardisation of every feature over time, inside ``forward``: raw
  columns mix prices (~1e2) and volumes (~1e6); normalising here makes the model
  scale-free and means callers never need a fitted scaler;
* two Conv1d layers (features as channels, kernel 3 along time) for local patterns;
* an LSTM over the conv output for the sequence; its last hidden state plus the
  time-averaged conv output are fused by a linear layer into the 256-d feature vector;
* heads: 3-class probabilities (softmax; sell/hold/buy by convention) and a positive
  regression uncertainty (softplus + a floor).

Weights are random but deterministic for a seed (the harness measures latency, not
alpha); ``save``/``load`` round-trip them through a ``state_dict`` file.

Threads: torch's intra-op pool is process-wide. The default here is 1 thread, because a
60×15 window is far too small for intra-op parallelism to pay for its synchronisation,
and a service runs several requests at once: N request threads × M intra-op threads on
a 2-core box oversubscribes the CPU and inflates the tail. Parallelism should come from
concurrent requests and replicas. ``threads=None`` leaves torch's setting alone.

Load time. The seeds budget loading the model at < 5 s (``MODEL_LOAD_BUDGET_SECONDS``);
the service measures it at start (building the extractor: the module, its seeded
weights or a weights file) and publishes it as ``lbh_model_load_seconds`` next to
``lbh_model_load_budget_seconds`` and in ``/readyz``'s answer (:func:`model_load_gauges`);
``benchmarks/workloads.py`` prints it beside the budget.
"""

from __future__ import annotations

import os
import threading
import weakref
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from prometheus_client import CollectorRegistry, Gauge
from torch import nn

from .market_data import N_FEATURES

__all__ = ["CNNLSTM", "FeatureModel", "ModelArchitecture", "ModelOutput", "set_torch_threads",
           "MODEL_LOAD_BUDGET_SECONDS", "ModelLoadGauges", "model_load_gauges"]

_FORMAT_VERSION = 1

#: The seeds' budget for loading the model at service start, in seconds.
MODEL_LOAD_BUDGET_SECONDS = 5.0


@dataclass(frozen=True)
class ModelArchitecture:
    """Shape hyper-parameters; saved with the weights so a mismatched load fails loudly."""

    n_features: int = N_FEATURES
    fused_dim: int = 256
    conv_channels: int = 64
    hidden_size: int = 128
    n_classes: int = 3


@dataclass(frozen=True, eq=False)
class ModelOutput:
    """Batched numpy outputs: features (B, fused_dim), probabilities (B, 3), uncertainty (B,)."""

    features: np.ndarray
    probabilities: np.ndarray
    uncertainty: np.ndarray


class CNNLSTM(nn.Module):
    """The torch module; see the module docstring for the layout."""

    def __init__(self, arch: ModelArchitecture = ModelArchitecture()) -> None:
        super().__init__()
        c = arch.conv_channels
        self.conv = nn.Sequential(
            nn.Conv1d(arch.n_features, c, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv1d(c, c, kernel_size=3, padding=1),
            nn.ReLU(),
        )
        self.lstm = nn.LSTM(c, arch.hidden_size, batch_first=True)
        self.fuse = nn.Sequential(nn.Linear(arch.hidden_size + c, arch.fused_dim), nn.Tanh())
        self.classifier = nn.Linear(arch.fused_dim, arch.n_classes)
        self.uncertainty = nn.Linear(arch.fused_dim, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: (B, T, F). Returns fused (B, D), probabilities (B, C), uncertainty (B,)."""
        mean = x.mean(dim=1, keepdim=True)
        std = x.std(dim=1, keepdim=True, unbiased=False)
        x = (x - mean) / (std + 1e-6)
        conv = self.conv(x.transpose(1, 2))  # (B, C, T)
        _, (h_n, _) = self.lstm(conv.transpose(1, 2))  # h_n: (1, B, H)
        fused = self.fuse(torch.cat((h_n[-1], conv.mean(dim=2)), dim=1))
        probs = torch.softmax(self.classifier(fused), dim=1)
        sigma = nn.functional.softplus(self.uncertainty(fused)).squeeze(1) + 1e-4
        return fused, probs, sigma


def set_torch_threads(threads: int | None) -> None:
    """Set torch's (process-wide) intra-op thread count; None leaves it unchanged."""
    if threads is None:
        return
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


class FeatureModel:
    """Inference wrapper: numpy in, numpy out, eval mode, ``torch.inference_mode``.

    ``predict`` is safe to call from several threads at once (eval-mode forward passes
    share no mutable state).
    """

    def __init__(
        self,
        arch: ModelArchitecture = ModelArchitecture(),
        *,
        seed: int = 0,
        threads: int | None = 1,
        weights_path: str | os.PathLike[str] | None = None,
    ) -> None:
        set_torch_threads(threads)
        self.arch = arch
        # fork_rng: seeding must not disturb anyone else's torch RNG stream.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.module = CNNLSTM(arch)
        self.module.eval()
        if weights_path is not None:
            self.load_weights(weights_path)

    def predict(self, windows: np.ndarray) -> ModelOutput:
        """Run a (T, F) window or a (B, T, F) batch; a single window gives B = 1."""
        x = np.asarray(windows, dtype=np.float32)
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[2] != self.arch.n_features or x.shape[1] < 1:
            raise ValueError(
                f"expected (T, {self.arch.n_features}) or (B, T, {self.arch.n_features}), "
                f"got {tuple(np.shape(windows))}"
            )
        with torch.inference_mode():
            fused, probs, sigma = self.module(torch.from_numpy(np.ascontiguousarray(x)))
        return ModelOutput(fused.numpy(), probs.numpy(), sigma.numpy())

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the architecture and ``state_dict`` (a plain-tensor file, loadable with weights_only)."""
        torch.save(
            {"format_version": _FORMAT_VERSION, "arch": asdict(self.arch), "state_dict": self.module.state_dict()},
            path,
        )

    def load_weights(self, path: str | os.PathLike[str]) -> None:
        """Load weights saved by ``save``; the saved architecture must match this model's."""
        arch, state = _read_weights(path)
        if arch != self.arch:
            raise ValueError(f"{path}: weights are for {arch}, this model is {self.arch}")
        self.module.load_state_dict(state)
        self.module.eval()

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, threads: int | None = 1) -> FeatureModel:
        """A model with the architecture and weights stored in ``path``."""
        arch, state = _read_weights(path)
        model = cls(arch, threads=threads)
        model.module.load_state_dict(state)
        model.module.eval()
        return model


def _read_weights(path: str | os.PathLike[str]) -> tuple[ModelArchitecture, dict[str, Any]]:
    blob: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format_version") != _FORMAT_VERSION:
        version = blob.get("format_version") if isinstance(blob, dict) else None
        raise ValueError(f"{path}: not a FeatureModel weights file (format_version={version!r})")
    return ModelArchitecture(**blob["arch"]), blob["state_dict"]


@dataclass(frozen=True, eq=False)
class ModelLoadGauges:
    """``lbh_model_load_seconds`` (building the model at service start: module and
    weights), ``lbh_model_warmup_seconds`` (the warm-up inferences after it) and
    ``lbh_model_load_budget_seconds`` (the budget, constant), so a dashboard or a rule
    compares the two series without a number of its own."""

    load_seconds: Gauge
    warmup_seconds: Gauge
    budget_seconds: Gauge


_load_gauges: "weakref.WeakKeyDictionary[CollectorRegistry, ModelLoadGauges]" = weakref.WeakKeyDictionary()
_load_gauges_lock = threading.Lock()


def model_load_gauges(registry: CollectorRegistry) -> ModelLoadGauges:
    """The load-time gauges in ``registry``, created once (two apps on one registry share them)."""
    with _load_gauges_lock:
        gauges = _load_gauges.get(registry)
        if gauges is None:
            gauges = ModelLoadGauges(
                Gauge("model_load_seconds", "Seconds the service took to load the feature model at start "
                      "(module and weights; before the warm-up). Budget: lbh_model_load_budget_seconds.",
                      namespace="lbh", registry=registry),
                Gauge("model_warmup_seconds", "Seconds the warm-up inferences took after the model loaded.",
                      namespace="lbh", registry=registry),
                Gauge("model_load_budget_seconds", "The model load time budget (the seeds: < 5 s).",
                      namespace="lbh", registry=registry),
            )
            gauges.budget_seconds.set(MODEL_LOAD_BUDGET_SECONDS)
            _load_gauges[registry] = gauges
        return gauges
