"""Payload generators for the reference service's endpoints (``--payload harness.payloads:NAME``).

Each is called with the request ordinal and returns the JSON body. Windows come from a
seeded pool built once (before the clock starts, at the first call of the warm-up or the
run), so building payloads does not show up as generator lag.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional

__all__ = ["feature_window", "mc_var", "env_step"]

_POOL_SIZE = 2048
_pool: Optional[List[List[List[float]]]] = None
_lock = threading.Lock()


def _windows() -> List[List[List[float]]]:
    global _pool
    with _lock:
        if _pool is None:
            from workloads.market_data import MarketDataGenerator

            _pool = [w.tolist() for w in MarketDataGenerator(0).windows(_POOL_SIZE)]
        return _pool


def feature_window(k: int) -> Dict[str, Any]:
    """``POST /v1/features``: a 60 x 15 window; a prime stride walks the pool (cold cache)."""
    pool = _windows()
    return {"window": pool[(k * 7919) % len(pool)]}


def mc_var(k: int) -> Dict[str, Any]:
    """``POST /v1/risk/mc-var``: a 10-asset portfolio, seeded by the ordinal."""
    d = 10
    cov = [[(0.0004 if i == j else 0.0001) for j in range(d)] for i in range(d)]
    return {"mean": [0.0] * d, "cov": cov, "weights": [1.0 / d] * d, "confidence": 0.99, "seed": k}


def env_step(k: int) -> Dict[str, Any]:
    """``POST /v1/env/{session}/step`` body (the session id goes in the URL)."""
    return {"action": k % 3}
