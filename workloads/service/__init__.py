"""The HTTP service around the workloads (``workloads serve``): FastAPI on uvicorn.

    from prometheus_client import CollectorRegistry
    from workloads.service import ServiceConfig, create_app

    app = create_app(ServiceConfig(max_concurrency=8), registry=CollectorRegistry())

Endpoints, input policy, overload behaviour and shutdown: docs/service.md.

Names are imported on first use, so ``workloads.service.config`` (and the CLI's flag
parsing) work without the web stack installed.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ServiceConfig": ".config",
    "ENV_NAMES": ".config",
    "SessionStore": ".sessions",
    "MAX_ABS_VALUE": ".schemas",
    "HttpMetrics": ".overload",
    "SHED_REASONS": ".overload",
    "WorkPool": ".overload",
    "http_metrics": ".overload",
    "WORK_ROUTES": ".app",
    "ServiceApp": ".app",
    "ServiceInputError": ".app",
    "ServiceState": ".app",
    "create_app": ".app",
    "DrainingServer": ".server",
    "ServiceProcess": ".server",
    "ServiceThread": ".server",
    "serve": ".server",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
