"""The service's configuration: one frozen dataclass, from defaults, ``LBH_SERVICE_*``
variables or CLI flags (flag > environment > default).

The extractor (and its fault injection) keeps its own configuration,
:class:`workloads.ExtractorConfig`, read from ``LBH_EXTRACTOR_*`` and ``LBH_FAULT_*``.
Every invalid value raises :class:`workloads.ConfigError` naming the field or variable.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..extractor import ExtractorConfig
from ..faults import ConfigError, parse_float

__all__ = ["ServiceConfig", "ENV_PREFIX"]

ENV_PREFIX = "LBH_SERVICE_"

# field -> (kind, low, high); kinds: "str", "int", "float"
_FIELDS: dict[str, tuple[str, float, float]] = {
    "host": ("str", 0, 0),
    "port": ("int", 0, 65535),
    "max_concurrency": ("int", 1, 100_000),
    "request_timeout_seconds": ("float", 0.001, 3600),
    "max_sessions": ("int", 1, 1_000_000),
    "session_idle_timeout_seconds": ("float", 0.01, 86_400 * 7),
    "max_body_bytes": ("int", 1024, 1 << 30),
    "retry_after_seconds": ("int", 1, 3600),
    "drain_timeout_seconds": ("float", 0, 3600),
    "drain_delay_seconds": ("float", 0, 3600),
    "header_read_timeout_seconds": ("float", 0.01, 3600),
    "body_read_timeout_seconds": ("float", 0.01, 3600),
    "keep_alive_timeout_seconds": ("float", 0.01, 3600),
    "max_header_bytes": ("int", 1024, 1 << 20),
    "max_headers": ("int", 8, 10_000),
    "max_connections": ("int", 1, 1_000_000),
    "max_sessions_per_client": ("int", 1, 1_000_000),
    "session_evict_idle_seconds": ("float", 0.01, 86_400 * 7),
    "mc_scenarios": ("int", 100, 10_000_000),
    "max_assets": ("int", 1, 10_000),
    "max_batch": ("int", 1, 10_000),
    "max_episode_steps": ("int", 1, 10_000_000),
    "warmup_inferences": ("int", 0, 1000),
}

#: The environment variable of each field (``LBH_SERVICE_<FIELD>``), with the short
#: names the CLI flags use where the field name carries a unit suffix.
ENV_NAMES: dict[str, str] = {
    name: ENV_PREFIX + name.upper().removesuffix("_SECONDS") for name in _FIELDS
}


def _parse(name: str, raw: object, label: str) -> Any:
    kind, low, high = _FIELDS[name]
    if kind == "str":
        if not isinstance(raw, str) or not raw.strip():
            raise ConfigError(label, f"expected a non-empty string, got {raw!r}")
        return raw.strip()
    if kind == "int":
        if isinstance(raw, bool):
            raise ConfigError(label, f"expected an integer, got {raw!r}")
        if isinstance(raw, int):
            value = raw
        elif isinstance(raw, str) and raw.strip().lstrip("+-").isdigit():
            value = int(raw.strip())
        else:
            raise ConfigError(label, f"expected an integer, got {raw!r}")
        if not low <= value <= high:
            raise ConfigError(label, f"must be in [{int(low)}, {int(high)}], got {value}")
        return value
    value = parse_float(label, raw, low=low, high=high)
    return value


@dataclass(frozen=True)
class ServiceConfig:
    """What ``workloads serve`` runs with. See docs/service.md for the reasoning behind
    each default."""

    host: str = "127.0.0.1"
    port: int = 8000
    #: Requests computing at once (work routes under /v1); the next one gets 503 + Retry-After.
    max_concurrency: int = 16
    #: From the end of the request's headers to the answer: covers reading the body,
    #: parsing and validating it, and the computation. Past it the client gets 504 (the
    #: computation, which cannot be pre-empted, keeps its concurrency slot until it ends).
    request_timeout_seconds: float = 2.0
    #: Environment sessions alive at once; a reset beyond it gets 503 + Retry-After.
    max_sessions: int = 64
    #: A session untouched this long is closed.
    session_idle_timeout_seconds: float = 300.0
    #: Sessions one client address may hold (capped at max_sessions); beyond: 429. One
    #: client cannot take the whole table.
    max_sessions_per_client: int = 32
    #: With the table full, the least recently used session idle at least this long is
    #: closed to make room: sessions nobody steps cannot hold the table.
    session_evict_idle_seconds: float = 30.0
    #: Larger request bodies get 413 (checked on Content-Length and while streaming).
    max_body_bytes: int = 1 << 20
    #: The Retry-After value (seconds) sent with a concurrency shed.
    retry_after_seconds: int = 1
    #: On SIGTERM: how long in-flight requests may take before they are cancelled.
    drain_timeout_seconds: float = 20.0
    #: On SIGTERM, /readyz answers 503 for this long while the listener still serves, so
    #: a readiness probe (period 5 s in deploy/k8s) sees it before connections are refused.
    drain_delay_seconds: float = 6.0
    #: A connection must deliver a request's complete headers within this many seconds
    #: (of connecting, or of the request's first byte on a kept-alive connection);
    #: else 408 (or a plain close if nothing arrived) — idle and slow-header clients.
    header_read_timeout_seconds: float = 5.0
    #: A request's body must arrive within this many seconds of its headers (work routes:
    #: also within request_timeout); else 408 and the connection closes. No concurrency
    #: slot is held while a body is read.
    body_read_timeout_seconds: float = 2.0
    #: An idle kept-alive connection closes after this many seconds.
    keep_alive_timeout_seconds: float = 5.0
    #: Bytes of a request line + headers; beyond: 431 and the connection closes.
    max_header_bytes: int = 16_384
    #: Header fields in a request; beyond: 431.
    max_headers: int = 100
    #: Open connections; at the limit the longest-idle connection without a request in
    #: progress is closed for the new one, or the new one is refused if none is idle.
    max_connections: int = 1000
    #: Monte-Carlo VaR scenarios per call (fixed per server: a request cannot ask for more).
    mc_scenarios: int = 10_000
    #: Assets in a Monte-Carlo VaR request (bounds its memory: 2 × scenarios × assets doubles).
    max_assets: int = 64
    #: Windows in one batch extraction request.
    max_batch: int = 64
    #: Upper bound of ``n_steps`` in an environment reset.
    max_episode_steps: int = 10_000
    #: Model forward passes at startup before /readyz says ready (0: none).
    warmup_inferences: int = 3
    extractor: ExtractorConfig = field(default_factory=ExtractorConfig)

    def __post_init__(self) -> None:
        for name in _FIELDS:
            value = getattr(self, name)
            kind = _FIELDS[name][0]
            if kind != "str" and isinstance(value, str):
                raise ConfigError(name, f"expected a number, got the string {value!r}")
            if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, name, float(value))
            elif kind == "float" and not isinstance(value, float):
                raise ConfigError(name, f"expected a number, got {value!r}")
            _parse(name, value, name)  # parse_float rejects inf and nan
        if not isinstance(self.extractor, ExtractorConfig):
            raise ConfigError("extractor", f"expected an ExtractorConfig, got {type(self.extractor).__name__}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServiceConfig:
        """Fields from ``LBH_SERVICE_<FIELD>`` (e.g. ``LBH_SERVICE_MAX_CONCURRENCY``,
        ``LBH_SERVICE_REQUEST_TIMEOUT``; see :data:`ENV_NAMES`), the extractor from
        ``LBH_EXTRACTOR_*`` and faults from ``LBH_FAULT_*``. Errors name the variable."""
        env = os.environ if environ is None else environ
        kwargs: dict[str, Any] = {}
        for name, var in ENV_NAMES.items():
            if var in env and env[var].strip() != "":
                kwargs[name] = _parse(name, env[var], var)
        return cls(**kwargs, extractor=ExtractorConfig.from_env(env))

    def replace(self, **changes: Any) -> ServiceConfig:
        """A copy with ``changes``; strings are parsed (CLI values), errors name the field."""
        parsed = {k: (_parse(k, v, k) if k in _FIELDS and isinstance(v, str) else v) for k, v in changes.items()}
        unknown = sorted(set(parsed) - set(_FIELDS) - {"extractor"})
        if unknown:
            raise ConfigError(unknown[0], "unknown service setting")
        return dataclasses.replace(self, **parsed)
