"""Payload generators for the reference service's endpoints (``--payload NAME``, registered
in the ``lbh.payloads`` entry-point group).

Each is called with the request ordinal and returns the JSON body. Windows come from a
seeded pool built once (before the clock starts, at the first call of the warm-up or the
run), so building payloads does not show up as generator lag.

A generator may return a :class:`harness.targets.JsonBody` (JSON already encoded): the HTTP target sends
it as is. ``feature_window`` does: encoding a 60 x 15 window costs 0.4-0.7 ms here, more than the
whole request costs the generator otherwise (benchmarks/generator.py prints both), so its
pool is encoded once.
"""

from __future__ import annotations

import functools
from typing import Any, Dict, List

import numpy as np

from harness.targets import JsonBody, json_body
from workloads.market_data import MarketDataGenerator

__all__ = ["feature_window", "feature_window_hot", "feature_window_cycle", "mc_var", "env_step", "window_pool",
           "pool_index", "POOL_SIZE", "HOT_WINDOWS"]

POOL_SIZE = 2048  # distinct windows: more than the default cache holds, so a walk stays cold
HOT_WINDOWS = 64  # few enough that the service's cache serves most requests


@functools.lru_cache(maxsize=4)
def window_pool(seed: int = 0) -> np.ndarray:
    """(POOL_SIZE, 60, 15) seeded market windows, built once per seed."""
    return MarketDataGenerator(seed).windows(POOL_SIZE)


def pool_index(k: int, n: int = POOL_SIZE) -> int:
    """Request ``k``'s window: a prime stride walks the pool in a scrambled order."""
    return (k * 7919) % n


@functools.lru_cache(maxsize=1)
def _encoded_windows() -> List[JsonBody]:
    return [json_body({"window": w.tolist()}) for w in window_pool(0)]


def feature_window(k: int) -> JsonBody:
    """``POST /v1/features``: a 60 x 15 window from the pool (cold cache), encoded."""
    pool = _encoded_windows()
    return pool[pool_index(k, len(pool))]


def feature_window_cycle(n: int):
    """A generator cycling the pool's first ``n`` windows (``n`` small: cache hits)."""
    if not 1 <= n <= POOL_SIZE:
        raise ValueError(f"windows: expected 1..{POOL_SIZE}, got {n}")

    def feature_window_n(k: int) -> JsonBody:
        return _encoded_windows()[k % n]

    return feature_window_n


#: ``POST /v1/features`` cycling 64 windows: the cache-hit panels have something to show
feature_window_hot = feature_window_cycle(HOT_WINDOWS)


def mc_var(k: int) -> Dict[str, Any]:
    """``POST /v1/risk/mc-var``: a 10-asset portfolio, seeded by the ordinal."""
    d = 10
    cov = [[(0.0004 if i == j else 0.0001) for j in range(d)] for i in range(d)]
    return {"mean": [0.0] * d, "cov": cov, "weights": [1.0 / d] * d, "confidence": 0.99, "seed": k}


def env_step(k: int) -> Dict[str, Any]:
    """``POST /v1/env/{session}/step`` body (the session id goes in the URL)."""
    return {"action": k % 3}
