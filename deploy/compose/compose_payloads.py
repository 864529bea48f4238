"""Request bodies for the compose load run (``payload: compose_payloads:features``).

64 distinct market windows, cycled: the service's TTL cache sees repeats, so the cache-hit
panel has something to show. Built once, outside the measured call.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Dict, List

DISTINCT_WINDOWS = 64


@lru_cache(maxsize=None)
def _windows() -> List[List[List[float]]]:
    from workloads.market_data import MarketDataGenerator

    return [MarketDataGenerator(seed).window().astype(float).tolist() for seed in range(DISTINCT_WINDOWS)]


def features(i: int) -> Dict[str, Any]:
    """Body of ``POST /v1/features`` for request ``i``."""
    return {"window": _windows()[i % DISTINCT_WINDOWS]}
