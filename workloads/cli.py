"""workloads: run the reference system as an HTTP service.

    workloads serve                                  # 127.0.0.1:8000
    workloads serve --host 0.0.0.0 --port 8080 --max-concurrency 8 --request-timeout 1.5
    LBH_FAULT_EXTRA_LATENCY_MS=150 workloads serve   # inject model latency

Precedence: flag > environment variable > default. Service settings read
LBH_SERVICE_<SETTING> (e.g. LBH_SERVICE_MAX_CONCURRENCY); the extractor reads
LBH_EXTRACTOR_<FIELD> and faults LBH_FAULT_* (docs/workloads.md); tracing reads the
standard OTEL_* variables. Exit codes: 0 after a graceful shutdown, 1 if the server
could not start, 2 for a bad flag or variable.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["build_parser", "main", "config_from_args"]

# flag dest -> ServiceConfig field
_SERVICE_FLAGS = {
    "host": "host",
    "port": "port",
    "max_concurrency": "max_concurrency",
    "request_timeout": "request_timeout_seconds",
    "max_sessions": "max_sessions",
    "session_idle_timeout": "session_idle_timeout_seconds",
    "max_body_bytes": "max_body_bytes",
    "retry_after": "retry_after_seconds",
    "drain_timeout": "drain_timeout_seconds",
    "drain_delay": "drain_delay_seconds",
    "header_read_timeout": "header_read_timeout_seconds",
    "body_read_timeout": "body_read_timeout_seconds",
    "keep_alive_timeout": "keep_alive_timeout_seconds",
    "max_header_bytes": "max_header_bytes",
    "max_headers": "max_headers",
    "max_connections": "max_connections",
    "max_sessions_per_client": "max_sessions_per_client",
    "session_evict_idle": "session_evict_idle_seconds",
    "mc_scenarios": "mc_scenarios",
    "max_assets": "max_assets",
    "max_batch": "max_batch",
    "warmup_inferences": "warmup_inferences",
}

# flag dest -> FaultConfig field
_FAULT_FLAGS = {
    "fault_error_rate": "error_rate",
    "fault_extra_latency_ms": "extra_latency_seconds",
    "fault_latency_rate": "latency_rate",
    "fault_cache_outage": "cache_outage",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="workloads", description="The reference ML trading workloads.",
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = p.add_subparsers(dest="command")
    s = sub.add_parser("serve", help="run the HTTP service (FastAPI on uvicorn) until SIGTERM",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--host", help="bind address (LBH_SERVICE_HOST; default 127.0.0.1)")
    s.add_argument("--port", help="TCP port, 0 = any free (LBH_SERVICE_PORT; default 8000)")
    s.add_argument("--max-concurrency", help="computations at once; beyond: 503 + Retry-After "
                   "(LBH_SERVICE_MAX_CONCURRENCY; default 16)")
    s.add_argument("--request-timeout", help="seconds from the end of the headers to the answer (read + parse + "
                   "compute); beyond: 504 "
                   "(LBH_SERVICE_REQUEST_TIMEOUT; default 2)")
    s.add_argument("--max-sessions", help="environment sessions at once (LBH_SERVICE_MAX_SESSIONS; default 64)")
    s.add_argument("--session-idle-timeout", help="seconds before an unused session closes "
                   "(LBH_SERVICE_SESSION_IDLE_TIMEOUT; default 300)")
    s.add_argument("--max-body-bytes", help="larger bodies get 413 (LBH_SERVICE_MAX_BODY_BYTES; default 1 MiB)")
    s.add_argument("--retry-after", help="Retry-After seconds on a shed (LBH_SERVICE_RETRY_AFTER; default 1)")
    s.add_argument("--drain-timeout", help="seconds in-flight requests get once the listener closes "
                   "(LBH_SERVICE_DRAIN_TIMEOUT; default 20)")
    s.add_argument("--drain-delay", help="seconds /readyz says draining before the listener closes "
                   "(LBH_SERVICE_DRAIN_DELAY; default 6, above the readiness probe period)")
    s.add_argument("--header-read-timeout", help="seconds to deliver a request's headers; beyond: 408/close "
                   "(LBH_SERVICE_HEADER_READ_TIMEOUT; default 5)")
    s.add_argument("--body-read-timeout", help="seconds to deliver a body after its headers; beyond: 408 "
                   "(LBH_SERVICE_BODY_READ_TIMEOUT; default 2)")
    s.add_argument("--keep-alive-timeout", help="seconds an idle kept-alive connection stays open "
                   "(LBH_SERVICE_KEEP_ALIVE_TIMEOUT; default 5)")
    s.add_argument("--max-header-bytes", help="request line + headers; beyond: 431 (LBH_SERVICE_MAX_HEADER_BYTES; "
                   "default 16384)")
    s.add_argument("--max-headers", help="header fields per request; beyond: 431 (LBH_SERVICE_MAX_HEADERS; default 100)")
    s.add_argument("--max-connections", help="open connections; at the cap the longest-idle one is closed "
                   "(LBH_SERVICE_MAX_CONNECTIONS; default 1000)")
    s.add_argument("--max-sessions-per-client", help="sessions one client address may hold; beyond: 429 "
                   "(LBH_SERVICE_MAX_SESSIONS_PER_CLIENT; default 32)")
    s.add_argument("--session-evict-idle", help="with the session table full, a session idle this long is "
                   "closed for a new one (LBH_SERVICE_SESSION_EVICT_IDLE; default 30)")
    s.add_argument("--mc-scenarios", help="Monte-Carlo VaR scenarios (LBH_SERVICE_MC_SCENARIOS; default 10000)")
    s.add_argument("--max-assets", help="assets in a Monte-Carlo VaR request (LBH_SERVICE_MAX_ASSETS; default 64)")
    s.add_argument("--max-batch", help="windows in a batch request (LBH_SERVICE_MAX_BATCH; default 64)")
    s.add_argument("--warmup-inferences", help="forward passes before ready (LBH_SERVICE_WARMUP_INFERENCES; default 3)")
    f = s.add_argument_group("fault injection (over LBH_FAULT_*)")
    f.add_argument("--fault-error-rate", help="probability a model call fails (-> fallback)")
    f.add_argument("--fault-extra-latency-ms", help="sleep added inside each model call")
    f.add_argument("--fault-latency-rate", help="probability a call gets the extra latency")
    f.add_argument("--fault-cache-outage", help="1/0: every lookup bypasses the cache")
    s.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="server log level (default: info)")
    s.add_argument("--access-log", action="store_true", help="log every request (costs throughput)")
    return p


def config_from_args(args: argparse.Namespace, environ: Any = None) -> Any:
    """The ServiceConfig for parsed ``serve`` flags over the environment."""
    from .faults import FaultConfig, parse_bool, parse_float
    from .service.config import ServiceConfig

    config = ServiceConfig.from_env(environ)
    changes = {field: getattr(args, dest) for dest, field in _SERVICE_FLAGS.items() if getattr(args, dest) is not None}
    if changes:
        config = config.replace(**changes)
    faults: dict[str, Any] = {}
    for dest, field in _FAULT_FLAGS.items():
        raw = getattr(args, dest)
        if raw is None:
            continue
        flag = "--" + dest.replace("_", "-")
        if field == "cache_outage":
            faults[field] = parse_bool(flag, raw)
        elif field == "extra_latency_seconds":
            faults[field] = parse_float(flag, raw, low=0.0) / 1000.0
        else:
            faults[field] = parse_float(flag, raw, low=0.0, high=1.0)
    if faults:
        merged = {**config.extractor.faults.__dict__, **faults}
        config = config.replace(extractor=config.extractor.replace(faults=FaultConfig(**merged)))
    return config


#: what ``serve`` needs beyond the core install (the ``service`` extra)
SERVICE_MODULES = ("torch", "gymnasium", "fastapi", "uvicorn", "pydantic")


def _missing_service_modules() -> list[str]:
    import importlib.util

    return [m for m in SERVICE_MODULES if importlib.util.find_spec(m) is None]


def _serve(args: argparse.Namespace) -> int:
    missing = _missing_service_modules()
    if missing:
        print(f"workloads serve: {', '.join(missing)} not installed; the service comes with "
              "pip install 'latency-budget-harness[service]' (install torch==2.13.0 or a CPU build of torch "
              "first: a bare torch spec pulls a multi-GB CUDA build)", file=sys.stderr)
        return 2
    from instrumentation import TracingConfigError, setup_tracing

    from .faults import ConfigError

    try:
        config = config_from_args(args)
        setup_tracing("lbh-workloads-service")
        # A background thread (the span exporter above all) holds the GIL until the switch
        # interval expires before a request thread gets it back: 5 ms by default, more than
        # a request's p50; 0.5 ms bounds that wait (issue 15, item 8: benchmarks/tracing_overhead.py).
        sys.setswitchinterval(0.0005)
    except (ConfigError, TracingConfigError) as exc:
        print(f"workloads serve: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .service.server import serve

    logging.getLogger("workloads.service").info(
        "starting on %s:%d (max_concurrency=%d, request_timeout=%gs, max_sessions=%d, faults=%s)",
        config.host, config.port, config.max_concurrency, config.request_timeout_seconds, config.max_sessions,
        config.extractor.faults if config.extractor.faults.enabled else "off",
    )
    return serve(config, log_level=args.log_level, access_log=args.access_log)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    parser.print_help()
    return 2


if __name__ == "__main__":  # python -m workloads.cli serve ...
    sys.exit(main())
