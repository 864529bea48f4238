"""What the service tests (tests/integration/test_service_*.py) share, so that each reads the
service's packages, its fault settings and its /metrics lines the same way."""

from __future__ import annotations

from types import ModuleType
from typing import Dict

from tests.support.ci import require_module

__all__ = ["require_service", "sample", "slow_env"]


def require_service() -> ModuleType:
    """``httpx``, once httpx, fastapi and uvicorn are found (missing: fails under CI, skips the module elsewhere)."""
    httpx = require_module("httpx")
    require_module("fastapi")
    require_module("uvicorn")
    return httpx


def sample(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` in exposition ``text`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            metric, value = line.split(" #", 1)[0].rsplit(" ", 1)
            if all(f'{k}="{v}"' in metric for k, v in labels.items()):
                total += float(value)
    return total


def slow_env(latency_ms: int) -> Dict[str, str]:
    """A ServiceProcess env: each model call ``latency_ms`` slower, no cache, a budget too wide for the breaker."""
    return {"LBH_FAULT_EXTRA_LATENCY_MS": str(latency_ms), "LBH_FAULT_CACHE_OUTAGE": "1",
            "LBH_EXTRACTOR_MODEL_BUDGET_SECONDS": "10"}
