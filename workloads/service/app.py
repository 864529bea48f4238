"""The ASGI app: ``create_app(config=..., registry=..., tracer_provider=...)``.

Request path: :class:`~.protocol.GuardedHttpToolsProtocol` (header deadline and size,
connection cap) → :class:`~.overload.HTTPLayer` (route template, readiness, body read
with a deadline and size limit, metrics, server span) → FastAPI (JSON parsing and
validation against the request models; bodies over ``INLINE_PARSE_BYTES`` on the parse
pool) → an endpoint, which takes a concurrency slot only now and runs the blocking
workload call on the bounded work pool, all by the request deadline. See docs/service.md.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the endpoint annotations,
# and the request models are local to ``create_app``.

import asyncio
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any, Optional

import anyio.to_thread
import numpy as np
from fastapi import FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from prometheus_client import REGISTRY, CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..agent import PolicyArchitecture, TradingAgent, build_observation
from ..environment import TradingEnv
from ..extractor import FeatureExtractor, InvalidInputError, build_extractor
from ..faults import InjectedFault
from ..model import MODEL_LOAD_BUDGET_SECONDS, model_load_gauges
from ..risk import RiskEngine, RiskLimits
from . import schemas as S
from .config import ServiceConfig
from .overload import (
    INLINE_PARSE_BYTES,
    BodyParser,
    HTTPLayer,
    HttpMetrics,
    Overloaded,
    RequestTimedOut,
    WorkPool,
    http_metrics,
)
from .sessions import ClientSessionsFull, SessionBusy, SessionNotFound, SessionsFull, SessionStore
from .streaming import mount_streaming

__all__ = ["create_app", "ServiceApp", "ServiceState", "ServiceInputError", "WORK_ROUTES"]

log = logging.getLogger("workloads.service")

#: Route templates whose requests need a concurrency slot (everything that computes).
WORK_ROUTES = frozenset({
    "/v1/features",
    "/v1/features/batch",
    "/v1/env/reset",
    "/v1/env/{session_id}/step",
    "/v1/agent/act",
    "/v1/risk/var",
    "/v1/risk/mc-var",
    "/v1/risk/limits",
})

_SESSION_ID = Path(
    description="the id returned by POST /v1/env/reset", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$"
)


class ServiceInputError(Exception):
    """Input the schema could not catch (shape relations, the workloads' own policy):
    answered ``status`` (422 by default) with ``field`` named."""

    def __init__(self, field: str, message: str, status: int = 422, error: str = "invalid_input") -> None:
        if not message.startswith(field):
            message = f"{field}: {message}"
        super().__init__(message)
        self.field = field
        self.message = message
        self.status = status
        self.error = error


_FIELD_PREFIX = re.compile(r"^([A-Za-z_]\w*(?:\[\d+\])*)\s*:")
_IDENT = re.compile(r"[A-Za-z_]\w*")


def _field_of(message: str, default: str) -> str:
    m = _FIELD_PREFIX.match(message)
    return m.group(1) if m else default


# --------------------------------------------------------------------------- state


class ServiceState:
    """Everything the endpoints share; ``app.state.lbh`` holds it."""

    def __init__(
        self,
        config: ServiceConfig,
        registry: CollectorRegistry,
        tracer_provider: Any,
        metrics: HttpMetrics,
        extractor_factory: Optional[Callable[[], FeatureExtractor]],
    ) -> None:
        self.config = config
        self.registry = registry
        self.tracer_provider = tracer_provider
        self.metrics = metrics
        self.extractor_factory = extractor_factory
        self.extractor: Optional[FeatureExtractor] = None
        self.risk: Optional[RiskEngine] = None
        self.model_ready = False
        self.draining = False
        self.startup_error: Optional[str] = None
        self.model_load_s: Optional[float] = None    # building the extractor's model at start
        self.model_warmup_s: Optional[float] = None
        self.pool = WorkPool(config.max_concurrency)
        self.parser = BodyParser()
        self.sessions = SessionStore(
            config.max_sessions, config.session_idle_timeout_seconds,
            max_per_client=config.max_sessions_per_client, evict_idle=config.session_evict_idle_seconds,
            on_evict=self._on_evict,
        )
        # read at scrape time from the state itself: nothing to keep in step by hand (threads
        # setting a gauge after releasing a lock could leave it stale)
        metrics.slots_limit.set(config.max_concurrency)
        metrics.slots_busy.set_function(lambda: self.pool.busy)
        metrics.ready.set_function(lambda: 1.0 if self.model_ready and not self.draining else 0.0)
        metrics.sessions.set_function(lambda: len(self.sessions))
        self.layer: Optional[HTTPLayer] = None

    def _on_evict(self, reason: str, n: int) -> None:
        self.metrics.sessions_closed.labels(reason).inc(n)

    def is_ready(self) -> bool:
        """May work routes run? (The model is warm; draining does not stop accepted work.)"""
        return self.model_ready

    def begin_drain(self) -> None:
        """Report not-ready from now on (SIGTERM received); requests already accepted,
        and any that still arrive before the listener closes, are served."""
        if not self.draining:
            self.draining = True
            log.info("draining: /readyz answers 503 from now on")

    def load_and_warm_up(self) -> None:
        """Build the extractor and risk engine, then run ``warmup_inferences`` forward passes
        straight on the model (not through the fault injector or the metrics: warm-up is
        not traffic). Runs in a thread at startup."""
        cfg = self.config
        traced = {"registry": self.registry, "tracer_provider": self.tracer_provider}
        t0 = time.perf_counter()
        if self.extractor_factory is not None:
            extractor = self.extractor_factory()
        else:
            extractor = build_extractor(cfg.extractor, **traced)
        t1 = time.perf_counter()
        risk = RiskEngine(n_scenarios=cfg.mc_scenarios, **traced)
        ext = extractor.config
        t = min(max(60, ext.min_timesteps), ext.max_timesteps)
        window = np.random.default_rng(0).standard_normal((1, t, ext.n_features)).astype(np.float32)
        t2 = time.perf_counter()
        for _ in range(cfg.warmup_inferences):
            extractor.model.model.predict(window)
        self.model_load_s, self.model_warmup_s = t1 - t0, time.perf_counter() - t2
        gauges = model_load_gauges(self.registry)  # only now: no 0 s "load time" before the model loaded
        gauges.load_seconds.set(self.model_load_s)
        gauges.warmup_seconds.set(self.model_warmup_s)
        self.extractor, self.risk = extractor, risk
        self.model_ready = True
        log.info("ready: model loaded in %.3f s (budget %g s), warmed up (%d inferences) in %.3f s",
                 self.model_load_s, MODEL_LOAD_BUDGET_SECONDS, cfg.warmup_inferences, self.model_warmup_s)

    async def sweep_sessions(self) -> None:
        interval = min(max(self.config.session_idle_timeout_seconds / 4, 0.05), 5.0)
        while True:
            await asyncio.sleep(interval)
            self.sessions.sweep()


class ServiceApp(FastAPI):
    """FastAPI whose outermost layer is the service's :class:`HTTPLayer`, so metrics and
    admission see every request, including those FastAPI's own middleware answers."""

    lbh_layer_kwargs: dict[str, Any]

    def build_middleware_stack(self) -> Any:  # type: ignore[override]
        inner = super().build_middleware_stack()
        state: ServiceState = self.state.lbh
        layer = HTTPLayer(inner, routes=self.router.routes, **self.lbh_layer_kwargs)
        state.layer = layer
        return layer


def _fastapi_telemetry_off() -> dict[str, Any]:
    """FastAPI's native telemetry (newer FastAPI) traces every request itself once a global
    tracer provider is set: a second SERVER span around HTTPLayer's, plus dependency,
    endpoint and serialization spans, about 1 ms CPU a request at 100 % sampling (issue 15,
    item 8). HTTPLayer already gives the span, the metrics and the exemplars."""
    import inspect

    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}}


def _sdk_tracer(tracer_provider: Any) -> Any:
    """A tracer for server spans when an SDK provider is in use (explicit or global)."""
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider as SdkProvider
    except ImportError:  # pragma: no cover - the SDK is a dependency
        return None
    provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
    if isinstance(provider, SdkProvider):
        return provider.get_tracer("workloads.service")
    return None


def _register_process_collectors(registry: CollectorRegistry) -> None:
    if registry is REGISTRY:
        return  # prometheus_client registers these in its global registry itself
    for make in (ProcessCollector, PlatformCollector, GCCollector):
        try:
            make(registry=registry)
        except ValueError:  # already there (a second app on this registry)
            pass


# --------------------------------------------------------------------------- errors


def _loc_field(loc: tuple[Any, ...]) -> str:
    parts = list(loc)
    if parts and parts[0] in ("body", "path", "query", "header"):
        where = parts.pop(0)
        if not parts:
            return "body" if where == "body" else where
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif isinstance(p, str) and _IDENT.fullmatch(p):
            out += f".{p}" if out else p
        # union member tags like 'list[constrained-float]' carry no field: skipped
    return out or "body"


def _error_json(status: int, error: str, message: str, field: Optional[str] = None,
                errors: Optional[list[dict[str, str]]] = None, headers: Optional[dict[str, str]] = None) -> JSONResponse:
    content: dict[str, Any] = {"error": error, "message": message, "field": field}
    if errors is not None:
        content["errors"] = errors
    return JSONResponse(content, status_code=status, headers=headers)


def _prune_union_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep, for each union in the errors, only the member that came closest (fewest errors):
    ``[0.1]`` for ``returns`` is one list too short, not also "returns[0] is not a list"."""
    tagged: dict[tuple[Any, ...], dict[str, int]] = {}
    for e in errors:
        loc = tuple(e.get("loc", ()))
        for i, part in enumerate(loc):
            if isinstance(part, str) and not _IDENT.fullmatch(part):
                counts = tagged.setdefault(loc[:i], {})
                counts[part] = counts.get(part, 0) + 1
                break
    if not tagged:
        return errors
    best = {prefix: min(counts, key=lambda t: counts[t]) for prefix, counts in tagged.items()}
    kept = []
    for e in errors:
        loc = tuple(e.get("loc", ()))
        for i, part in enumerate(loc):
            if isinstance(part, str) and not _IDENT.fullmatch(part):
                if best.get(loc[:i]) == part:
                    kept.append(e)
                break
        else:
            kept.append(e)
    return kept


def _validation_message(err: dict[str, Any]) -> str:
    if err.get("type") == "finite_number":
        return "must be a finite number; send null for a missing window value (JSON has no NaN or Infinity)"
    if err.get("type") == "extra_forbidden":
        return "unknown field"
    if err.get("type") == "missing":
        return "field required"
    return str(err.get("msg", "invalid"))


def _install_error_handlers(app: FastAPI, state: ServiceState) -> None:
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        raw = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in raw):
            e = next(e for e in raw if e.get("type") == "json_invalid")
            pos = e.get("loc", ("body", "?"))[-1]
            detail = (e.get("ctx") or {}).get("error", "invalid JSON")
            return _error_json(400, "invalid_json", f"body: not valid JSON at position {pos}: {detail}", "body")
        items, seen = [], set()
        for e in _prune_union_errors(raw):
            field = _loc_field(tuple(e.get("loc", ())))
            message = _validation_message(e)
            if (field, message) in seen:
                continue
            seen.add((field, message))
            items.append({"field": field, "message": f"{field}: {message}", "type": str(e.get("type", "invalid"))})
        items = items[:10]
        first = items[0] if items else {"field": "body", "message": "body: invalid", "type": "invalid"}
        return _error_json(422, "invalid_input", first["message"], first["field"], items)

    async def on_http(request: Request, exc: StarletteHTTPException) -> Response:
        status = exc.status_code
        headers = dict(exc.headers or {})
        if status == 413:
            headers.setdefault("connection", "close")
            return _error_json(413, "body_too_large", str(exc.detail), "body", headers=headers)
        if status == 404:
            return _error_json(404, "not_found", f"no route for {request.method} {request.url.path}", headers=headers)
        if status == 405:
            return _error_json(405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}",
                               headers=headers)
        if status == 400:
            return _error_json(400, "invalid_body", f"body: {exc.detail}", "body", headers=headers)
        return _error_json(status, "http_error", str(exc.detail), headers=headers)

    async def on_input(request: Request, exc: ServiceInputError) -> JSONResponse:
        return _error_json(exc.status, exc.error, exc.message, exc.field)

    async def on_not_found(request: Request, exc: SessionNotFound) -> JSONResponse:
        return _error_json(404, "session_not_found", exc.message, "session_id")

    async def on_busy(request: Request, exc: SessionBusy) -> JSONResponse:
        return _error_json(409, "session_busy", str(exc), "session_id")

    async def on_full(request: Request, exc: SessionsFull) -> JSONResponse:
        state.metrics.shed.labels("sessions").inc()
        if isinstance(exc, ClientSessionsFull):
            return _error_json(429, "too_many_sessions", str(exc), "session_id",
                               headers={"retry-after": str(exc.retry_after)})
        return _error_json(503, "sessions_full", str(exc), "session_id", headers={"retry-after": str(exc.retry_after)})

    async def on_overloaded(request: Request, exc: Overloaded) -> JSONResponse:
        state.metrics.shed.labels("concurrency").inc()
        return _error_json(503, "overloaded", str(exc), headers={"retry-after": str(state.config.retry_after_seconds)})

    async def on_timeout(request: Request, exc: RequestTimedOut) -> JSONResponse:
        return _error_json(
            504, "timeout", f"{exc} (request_timeout={state.config.request_timeout_seconds:g} s)"
        )

    async def on_injected(request: Request, exc: InjectedFault) -> JSONResponse:
        # Reachable only with enable_fallback=False: the model failed and nothing could answer.
        return _error_json(503, "model_unavailable", f"model: {exc}", headers={"retry-after": "1"})

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error_json(500, "internal_error", f"internal error ({type(exc).__name__}); see the server log")

    app.add_exception_handler(RequestValidationError, on_validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, on_http)  # type: ignore[arg-type]
    app.add_exception_handler(ServiceInputError, on_input)  # type: ignore[arg-type]
    app.add_exception_handler(SessionNotFound, on_not_found)  # type: ignore[arg-type]
    app.add_exception_handler(SessionBusy, on_busy)  # type: ignore[arg-type]
    app.add_exception_handler(SessionsFull, on_full)  # type: ignore[arg-type]
    app.add_exception_handler(Overloaded, on_overloaded)  # type: ignore[arg-type]
    app.add_exception_handler(RequestTimedOut, on_timeout)  # type: ignore[arg-type]
    app.add_exception_handler(InjectedFault, on_injected)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, on_unexpected)


# --------------------------------------------------------------------------- helpers


def _finite(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, np.ndarray):
        return bool(np.isfinite(value).all())
    return math.isfinite(value)


def _features_dict(result: Any, field: str) -> dict[str, Any]:
    if not (_finite(result.features) and _finite(result.probabilities) and _finite(result.uncertainty)):
        raise ServiceInputError(
            field, "the model produced non-finite output for this input (values too extreme for float32)"
        )
    return result.to_dict()


def _as_window(rows: list[list[Optional[float]]]) -> np.ndarray:
    return np.array(rows, dtype=np.float32)  # null -> NaN


def _obs(observation: np.ndarray) -> list[float]:
    return observation.tolist()


_RESPONSES_WORK: dict[int | str, dict[str, Any]] = {
    400: {"model": S.ErrorResponse, "description": "body is not valid JSON"},
    408: {"model": S.ErrorResponse, "description": "the body did not arrive within body_read_timeout"},
    413: {"model": S.ErrorResponse, "description": "body larger than max_body_bytes"},
    415: {"model": S.ErrorResponse, "description": "a body whose Content-Type is not application/json"},
    422: {"model": S.ErrorResponse, "description": "invalid input; message and field name the culprit"},
    431: {"model": S.ErrorResponse, "description": "more header fields than max_headers"},
    503: {"model": S.ErrorResponse, "description": "overloaded or not ready; see Retry-After"},
    504: {"model": S.ErrorResponse, "description": "request_timeout passed"},
}


def _responses(*extra: int) -> dict[int | str, dict[str, Any]]:
    out = dict(_RESPONSES_WORK)
    for code in extra:
        out[code] = {"model": S.ErrorResponse}
    return out


# --------------------------------------------------------------------------- body parsing


def _route_class(state: ServiceState) -> type[APIRoute]:
    """FastAPI routes whose large JSON bodies are decoded and validated on the parse pool.

    FastAPI decodes and validates on the event loop; for a 1 MiB body that stalls every
    other request for tens of milliseconds. Here a body of at least ``INLINE_PARSE_BYTES``
    is decoded and validated against the route's body field on :class:`~.overload.BodyParser`
    (by the request deadline); FastAPI then finds the validated model already decoded
    (Starlette caches ``request.json()``) and its own validation of a model instance is a
    no-op. Errors are the ones FastAPI would raise, so the answers are the same.
    """

    class OffloopRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Any]:
            handler = super().get_route_handler()
            body_field = self.body_field
            if body_field is None:
                return handler

            annotation = getattr(body_field.field_info, "annotation", None)
            model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None

            def fastapi_way(body: bytes) -> Any:
                """Decode, then validate the decoded value: FastAPI's steps, FastAPI's errors."""
                try:
                    obj = json.loads(body)
                except json.JSONDecodeError as e:
                    raise RequestValidationError([{
                        "type": "json_invalid", "loc": ("body", e.pos), "msg": "JSON decode error",
                        "input": {}, "ctx": {"error": e.msg},
                    }]) from None
                except Exception:  # bad UTF-8, nesting too deep: what FastAPI answers
                    raise StarletteHTTPException(400, "There was an error parsing the body") from None
                value, errors = body_field.validate(obj, {}, loc=("body",))
                if errors:
                    raise RequestValidationError(errors)
                return value

            def decode_and_validate(body: bytes) -> Any:
                if model is None:
                    return fastapi_way(body)
                try:
                    # one pass over the bytes, no intermediate dicts: 2-3x less time holding the GIL
                    return model.model_validate_json(body)
                except ValidationError:
                    return fastapi_way(body)  # rare: the answer (and its messages) FastAPI would give

            async def offloop(request: Request) -> Any:
                body = await request.body()
                if len(body) >= INLINE_PARSE_BYTES:
                    # Starlette's cache of request.json(): FastAPI reads the validated model from it
                    request._json = await state.parser.parse(  # noqa: SLF001
                        decode_and_validate, body, request.scope["lbh.deadline"]
                    )
                return await handler(request)

            return offloop

    return OffloopRoute


# --------------------------------------------------------------------------- the factory


def create_app(
    config: Optional[ServiceConfig] = None,
    registry: Optional[CollectorRegistry] = None,
    tracer_provider: Any = None,
    *,
    extractor_factory: Optional[Callable[[], FeatureExtractor]] = None,
) -> ServiceApp:
    """The service as an ASGI app.

    ``registry``: where every metric goes (workload, HTTP, process); default a fresh
    ``CollectorRegistry``, served on ``/metrics``. ``tracer_provider``: default the global
    one; with an SDK provider each request gets a SERVER span and the HTTP histogram
    exemplars. ``extractor_factory``: builds the extractor at startup instead of
    ``build_extractor(config.extractor)`` (to share a model, or to test readiness).
    The model loads and warms up in the background after startup: ``/healthz`` answers
    at once, ``/readyz`` and the work routes once it is ready.
    """
    config = config or ServiceConfig()
    registry = CollectorRegistry() if registry is None else registry
    _register_process_collectors(registry)
    metrics = http_metrics(registry)
    state = ServiceState(config, registry, tracer_provider, metrics, extractor_factory)
    models = S.build_request_models(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        loop = asyncio.get_running_loop()

        async def start() -> None:
            try:
                await anyio.to_thread.run_sync(state.load_and_warm_up)
            except Exception as exc:  # stays not-ready; /healthz reports the failure
                state.startup_error = f"{type(exc).__name__}: {exc}"
                log.exception("startup failed: the model could not be loaded or warmed up")

        starter = loop.create_task(start())
        sweeper = loop.create_task(state.sweep_sessions())
        try:
            yield
        finally:
            state.begin_drain()
            idle = await state.pool.wait_idle(config.drain_timeout_seconds)
            sweeper.cancel()
            starter.cancel()
            state.pool.shutdown()
            state.parser.shutdown()
            state.sessions.clear()
            served = state.layer.requests_served if state.layer is not None else 0
            log.info(
                "drained: %d work requests served; %s",
                served, "no computation left" if idle else f"{state.pool.busy} computations abandoned",
            )

    app = ServiceApp(
        title="latency-budget-harness workloads service",
        version="1",
        description=(
            "Feature extraction (CNN+LSTM with cache and fallback), a trading environment, and risk "
            "calls, behind bounded concurrency. Errors: {error, message, field}. See docs/service.md."
        ),
        lifespan=lifespan,
        docs_url=None,  # Swagger UI loads from a CDN; /openapi.json is the contract
        redoc_url=None,
        **_fastapi_telemetry_off(),
    )
    app.state.lbh = state
    app.lbh_layer_kwargs = {
        "metrics": metrics,
        "pool": state.pool,
        "is_ready": state.is_ready,
        "max_body_bytes": config.max_body_bytes,
        "request_timeout": config.request_timeout_seconds,
        "body_read_timeout": config.body_read_timeout_seconds,
        "max_headers": config.max_headers,
        "is_draining": lambda: state.draining,
        "retry_after": config.retry_after_seconds,
        "tracer": _sdk_tracer(tracer_provider),
        "work_routes": WORK_ROUTES,
    }
    app.router.route_class = _route_class(state)
    _install_error_handlers(app, state)
    state.streams = mount_streaming(app, state, registry)  # /v1/stream (WebSocket), see streaming.py

    async def run(request: Request, fn: Callable[..., Any], *args: Any, on_not_started: Any = None) -> Any:
        """``fn(*args)`` on the work pool under a concurrency slot, taken only now that the
        body is read and valid (503 :class:`Overloaded` when none is free), by the deadline."""
        slot = state.pool.try_acquire()
        if slot is None:
            if on_not_started is not None:
                on_not_started()
            raise Overloaded(state.pool.limit)
        try:
            return await state.pool.run(slot, request.scope["lbh.deadline"], fn, *args,
                                        on_not_started=on_not_started)
        finally:
            slot.release()

    # ---- probes and metrics ------------------------------------------------------

    @app.get("/healthz", response_model=S.HealthResponse, tags=["probes"],
             responses={503: {"model": S.HealthResponse}})
    async def healthz() -> Any:
        """Alive: the process serves HTTP. 503 only if startup failed for good."""
        if state.startup_error is not None:
            return JSONResponse({"status": "failed", "detail": state.startup_error}, status_code=503)
        return {"status": "ok", "detail": None}

    @app.get("/readyz", response_model=S.ReadyResponse, tags=["probes"],
             responses={503: {"model": S.ReadyResponse}})
    async def readyz() -> Any:
        """Ready: model loaded and warmed up, and not draining. The answer carries the model's
        load time at start beside its budget (None until it loaded)."""
        load = state.model_load_s
        timing = {"model_load_s": None if load is None else round(load, 6),
                  "model_warmup_s": None if state.model_warmup_s is None else round(state.model_warmup_s, 6),
                  "model_load_budget_s": MODEL_LOAD_BUDGET_SECONDS,
                  "model_load_within_budget": None if load is None else load < MODEL_LOAD_BUDGET_SECONDS}
        if state.draining:
            body = {"status": "draining", "detail": "SIGTERM received; finishing accepted requests"}
        elif state.startup_error is not None:
            body = {"status": "failed", "detail": state.startup_error}
        elif not state.model_ready:
            body = {"status": "starting", "detail": "loading and warming up the model"}
        else:
            return {"status": "ready", "detail": None, **timing}
        return JSONResponse({**body, **timing}, status_code=503)

    @app.get(
        "/metrics",
        tags=["probes"],
        response_class=Response,
        responses={200: {
            "description": "Prometheus text; OpenMetrics (with exemplars) when Accept asks for it",
            "content": {"text/plain": {"schema": {"type": "string"}},
                        "application/openmetrics-text": {"schema": {"type": "string"}}},
        }},
    )
    async def metrics_endpoint(request: Request) -> Response:
        """Every metric of the registry given to the app."""
        encoder, content_type = choose_encoder(request.headers.get("accept"))
        body = await anyio.to_thread.run_sync(encoder, registry)
        return Response(body, media_type=None, headers={"content-type": content_type})

    # ---- features ------------------------------------------------------------------

    @app.post("/v1/features", response_model=S.FeaturesResponse, tags=["features"], responses=_responses())
    async def features(body: models.Features, request: Request) -> Any:  # type: ignore[valid-type]
        """Features of one (T, n_features) window through cache → model → fallback."""
        extractor = state.extractor
        assert extractor is not None

        def work(rows: list[list[Optional[float]]]) -> dict[str, Any]:
            try:
                result = extractor.extract(_as_window(rows))
            except InvalidInputError as exc:
                raise ServiceInputError(_field_of(str(exc), "window"), str(exc)) from None
            return _features_dict(result, "window")

        return await run(request, work, body.window)

    @app.post("/v1/features/batch", response_model=S.FeaturesBatchResponse, tags=["features"],
              responses=_responses())
    async def features_batch(body: models.FeaturesBatch, request: Request) -> Any:  # type: ignore[valid-type]
        """Features of several windows (one model call per distinct window length)."""
        extractor = state.extractor
        assert extractor is not None

        def work(windows: list[list[list[Optional[float]]]]) -> dict[str, Any]:
            try:
                results = extractor.extract_batch([_as_window(w) for w in windows])
            except InvalidInputError as exc:
                raise ServiceInputError(_field_of(str(exc), "windows"), str(exc)) from None
            return {"results": [_features_dict(r, f"windows[{i}]") for i, r in enumerate(results)]}

        return await run(request, work, body.windows)

    # ---- environment -----------------------------------------------------------------

    @app.post("/v1/env/reset", response_model=S.EnvResetResponse, tags=["environment"],
              responses=_responses(429))
    async def env_reset(request: Request, body: Optional[models.EnvReset] = None) -> Any:  # type: ignore[valid-type]
        """Start an episode in a new session (bounded: max_sessions, max_sessions_per_client,
        session_idle_timeout; 429 beyond the per-client bound)."""
        body = body or models.EnvReset()
        client = request.client.host if request.client is not None else ""
        state.sessions.check_room(client)  # refuse before computing
        extractor = state.extractor

        def work() -> tuple[TradingEnv, np.ndarray, dict[str, Any]]:
            env = TradingEnv(
                extractor,
                n_steps=body.n_steps,
                lookback=body.lookback,
                transaction_cost=body.transaction_cost,
                registry=state.registry,
                tracer_provider=state.tracer_provider,
            )
            obs, info = env.reset(seed=body.seed)
            return env, obs, info

        env, obs, info = await run(request, work)
        session = state.sessions.create(env, client)
        return {
            "session_id": session.id,
            "observation": _obs(obs),
            "info": info,
            "idle_timeout_seconds": config.session_idle_timeout_seconds,
        }

    @app.post("/v1/env/{session_id}/step", response_model=S.EnvStepResponse, tags=["environment"],
              responses=_responses(404, 409))
    async def env_step(body: models.EnvStep, request: Request,  # type: ignore[valid-type]
                       session_id: str = _SESSION_ID) -> Any:
        """One step; 409 if the episode has terminated or another step of it is running."""
        session = state.sessions.acquire(session_id)

        def work(action: int) -> tuple[Any, ...]:
            try:
                return session.env.step(action)
            except RuntimeError as exc:
                if "terminated" in str(exc):
                    raise ServiceInputError(
                        "session_id", "the episode has terminated; POST /v1/env/reset starts another",
                        status=409, error="episode_terminated",
                    ) from None
                raise
            finally:
                state.sessions.release(session)

        obs, reward, terminated, truncated, info = await run(
            request, work, body.action, on_not_started=lambda: state.sessions.release(session)
        )
        return {"observation": _obs(obs), "reward": reward, "terminated": terminated,
                "truncated": truncated, "info": info}

    @app.delete("/v1/env/{session_id}", status_code=204, tags=["environment"],
                responses={404: {"model": S.ErrorResponse}, 422: {"model": S.ErrorResponse}})
    async def env_close(session_id: str = _SESSION_ID) -> Response:
        """Close a session now (sessions also close after session_idle_timeout)."""
        if not state.sessions.delete(session_id):
            raise SessionNotFound(session_id)
        metrics.sessions_closed.labels("deleted").inc()
        return Response(status_code=204)

    # ---- agent -------------------------------------------------------------------------

    agent_lock = threading.Lock()

    def agent() -> TradingAgent:
        """The service's agent, built on first use (a tiny MLP: milliseconds), seeded like the model."""
        with agent_lock:
            built = getattr(state, "agent", None)
            if built is None:
                ext = config.extractor
                built = state.agent = TradingAgent(
                    PolicyArchitecture(feature_dim=ext.fused_feature_dim), seed=ext.seed, threads=ext.torch_threads,
                    registry=state.registry, tracer_provider=state.tracer_provider)
            return built

    @app.post("/v1/agent/act", response_model=S.AgentActResponse, tags=["agent"], responses=_responses())
    async def agent_act(body: models.AgentAct, request: Request) -> Any:  # type: ignore[valid-type]
        """The agent's action: the window through the extractor chain, the environment's
        observation (features + position state), then the policy (``agent_action``)."""
        extractor = state.extractor
        assert extractor is not None

        def work() -> dict[str, Any]:
            try:
                result = extractor.extract(_as_window(body.window))
            except InvalidInputError as exc:
                raise ServiceInputError(_field_of(str(exc), "window"), str(exc)) from None
            _features_dict(result, "window")  # 422 on non-finite model output
            obs = build_observation(result, extractor.config.fused_feature_dim, body.position, body.pnl)
            decision = agent().act(obs).to_dict()
            return {**decision, "source": result.source, "fallback_used": result.fallback_used,
                    "cache_hit": result.cache_hit}

        return await run(request, work)

    # ---- risk --------------------------------------------------------------------------

    @app.post("/v1/risk/var", response_model=S.VarResponse, tags=["risk"], responses=_responses())
    async def risk_var(body: models.Var, request: Request) -> Any:  # type: ignore[valid-type]
        """Historical VaR (and optionally CVaR) as a positive loss."""
        returns, weights = body.returns, body.weights
        two_d = isinstance(returns[0], list)
        if two_d:
            width = len(returns[0])
            for i, row in enumerate(returns):
                if not isinstance(row, list) or len(row) != width:
                    got = len(row) if isinstance(row, list) else "a number"
                    raise ServiceInputError(f"returns[{i}]", f"expected {width} values like returns[0], got {got}")
        if weights is not None:
            if not two_d:
                raise ServiceInputError("weights", "needs 2-D returns (n_obs, n_assets)")
            if len(weights) != width:
                raise ServiceInputError("weights", f"expected {width} values (one per returns column), got {len(weights)}")
        risk = state.risk
        assert risk is not None

        def work() -> dict[str, Any]:
            r = np.asarray(returns, dtype=np.float64)
            kwargs = {"weights": weights, "horizon_days": body.horizon_days}
            try:
                var = risk.var(r, body.confidence, **kwargs)
                cvar = risk.cvar(r, body.confidence, **kwargs) if body.include_cvar else None
            except ValueError as exc:
                raise ServiceInputError(_field_of(str(exc).replace(" must", ": must"), "returns"), str(exc)) from None
            if not (_finite(np.asarray(var)) and (cvar is None or _finite(np.asarray(cvar)))):
                raise ServiceInputError("returns", "the result is not finite (values too extreme)")
            as_json = lambda v: v.tolist() if isinstance(v, np.ndarray) else v  # noqa: E731
            return {"var": as_json(var), "cvar": as_json(cvar), "confidence": body.confidence,
                    "horizon_days": body.horizon_days}

        return await run(request, work)

    @app.post("/v1/risk/mc-var", response_model=S.MonteCarloVarResponse, tags=["risk"], responses=_responses())
    async def risk_mc_var(body: models.MonteCarloVar, request: Request) -> Any:  # type: ignore[valid-type]
        """Monte-Carlo VaR/CVaR over mc_scenarios correlated normal scenarios."""
        d = len(body.weights)
        if len(body.mean) != d:
            raise ServiceInputError("mean", f"expected {d} values (one per weight), got {len(body.mean)}")
        if len(body.cov) != d:
            raise ServiceInputError("cov", f"expected {d} rows (one per weight), got {len(body.cov)}")
        for i, row in enumerate(body.cov):
            if len(row) != d:
                raise ServiceInputError(f"cov[{i}]", f"expected {d} values, got {len(row)}")
        risk = state.risk
        assert risk is not None

        def work() -> dict[str, Any]:
            try:
                res = risk.mc_var(body.mean, body.cov, body.weights, body.confidence,
                                  horizon_days=body.horizon_days, seed=body.seed)
            except ValueError as exc:
                field = "cov" if "cov" in str(exc) else "body"
                raise ServiceInputError(field, str(exc)) from None
            if not (math.isfinite(res.var) and math.isfinite(res.cvar)):
                raise ServiceInputError("cov", "the result is not finite (values too extreme)")
            return {"var": res.var, "cvar": res.cvar, "confidence": res.confidence,
                    "n_scenarios": res.n_scenarios, "horizon_days": res.horizon_days}

        return await run(request, work)

    @app.post("/v1/risk/limits", response_model=S.LimitsResponse, tags=["risk"], responses=_responses())
    async def risk_limits(body: models.Limits, request: Request) -> Any:  # type: ignore[valid-type]
        """Every breached limit: per-asset position, gross, net, VaR."""
        n = len(body.positions)
        if len(body.prices) != n:
            raise ServiceInputError("prices", f"expected {n} values (one per position), got {len(body.prices)}")
        max_position = body.limits.max_position
        if isinstance(max_position, list) and len(max_position) != n:
            raise ServiceInputError(
                "limits.max_position", f"expected one number or {n} values (one per position), got {len(max_position)}"
            )
        if body.asset_names is not None and len(body.asset_names) != n:
            raise ServiceInputError("asset_names", f"expected {n} names (one per position), got {len(body.asset_names)}")
        risk = state.risk
        assert risk is not None
        limits = RiskLimits(
            max_position=max_position,
            max_gross_exposure=body.limits.max_gross_exposure,
            max_net_exposure=body.limits.max_net_exposure,
            max_var=body.limits.max_var,
        )

        def work() -> dict[str, Any]:
            try:
                res = risk.check_limits(body.positions, body.prices, limits, var=body.var, asset_names=body.asset_names)
            except ValueError as exc:
                raise ServiceInputError(_field_of(str(exc).replace(" must", ": must"), "positions"), str(exc)) from None
            return {
                "ok": res.ok,
                "breaches": [
                    {"limit": b.limit, "value": b.value, "threshold": b.threshold, "asset": b.asset}
                    for b in res.breaches
                ],
                "gross_exposure": res.gross_exposure,
                "net_exposure": res.net_exposure,
                "var": res.var,
            }

        return await run(request, work)

    return app
