"""``instrument``: one decorator / context manager for metrics, errors and a span.

Per call: a histogram observation ``<ns>_operation_duration_seconds{operation,outcome}``
(with the trace id as exemplar when the span is sampled), the in-flight gauge, errors by
exception type (bounded), and an OpenTelemetry span that records the exception, is
marked ERROR, re-raises, and ends in ``finally``. ``annotate`` turns a result into span
attributes and flag counters (the extractor reports ``cache_hit`` and ``fallback``).
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import threading
from time import perf_counter
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, TypeVar, Union

from opentelemetry import context as otel_context
from opentelemetry.trace import Status, StatusCode
from prometheus_client import CollectorRegistry

from .metrics import DEFAULT_NAMESPACE, exemplar_observer, operation_metrics
from .tracing import SpanStarter

__all__ = ["instrument", "Instrument", "Call", "AttributeValue", "MAX_ERROR_TYPES", "MAX_FLAGS"]

log = logging.getLogger(__name__)

AttributeValue = Union[bool, int, float, str]
Annotator = Callable[[Any], Optional[Mapping[str, AttributeValue]]]
F = TypeVar("F", bound=Callable[..., Any])

#: Distinct ``error_type`` label values per operation before new ones become "other".
MAX_ERROR_TYPES = 20
#: Distinct flag names per operation before new ones are ignored (span attributes stay).
MAX_FLAGS = 16


class _Both:
    """A classic histogram child and a native one, observed together."""

    __slots__ = ("observe",)

    def __init__(self, classic: Any, native: Any) -> None:
        c, n = classic.observe, native.observe

        def observe(amount: float) -> None:
            c(amount)
            n(amount)
        self.observe = observe


def _also_native(child: Any, exemplar: Callable[[float, int, int], None],
                 native: Any) -> "tuple[Any, Callable[[float, int, int], None]]":
    n = native.observe

    def with_exemplar(amount: float, trace_id: int, span_id: int) -> None:
        exemplar(amount, trace_id, span_id)
        n(amount)
    return _Both(child, native), with_exemplar


class Call:
    """One in-progress call entered with ``with instrument(...) as call``."""

    __slots__ = ("_inst", "_t0", "_span", "_token", "_attrs")


    def __init__(self, inst: "Instrument") -> None:
        self._inst = inst
        self._attrs: Dict[str, AttributeValue] = {}
        self._span, self._token = inst._spans.start()
        inst._in_flight.append(None)
        self._t0 = inst._clock()

    def annotate(self, **attributes: AttributeValue) -> None:
        """Attach attributes to the span; true booleans also count as flags."""
        self._attrs.update(attributes)

    @property
    def span(self) -> Any:
        """The recording span, or ``None`` when this call is not sampled."""
        return self._span

    def _finish(self, exc: Optional[BaseException]) -> None:
        inst = self._inst
        elapsed = inst._clock() - self._t0
        inst._in_flight.pop()
        if exc is None:
            inst._finish_ok(elapsed, self._attrs or None, self._span, self._token)
        else:
            inst._finish_error(exc, elapsed, self._span, self._token)


class Instrument:
    """The instrumentation of one operation; use as a decorator or a context manager.

    As a context manager the per-call state lives in a ``Call`` kept in a context
    variable, so one ``Instrument`` may be entered concurrently from threads and tasks.
    """

    def __init__(
        self,
        operation: str,
        *,
        registry: Optional[CollectorRegistry] = None,
        tracer_provider: Any = None,
        annotate: Optional[Annotator] = None,
        namespace: str = DEFAULT_NAMESPACE,
        buckets: Optional[Sequence[float]] = None,
        clock: Callable[[], float] = perf_counter,
        native: bool = False,
    ) -> None:
        if not operation or not isinstance(operation, str):
            raise ValueError(f"operation: must be a non-empty string, got {operation!r}")
        self.operation = operation
        self._annotate = annotate
        self._clock = clock
        fam = operation_metrics(registry, namespace, buckets)
        self._fam = fam
        self._ok = fam.duration.labels(operation, "ok")
        self._err = fam.duration.labels(operation, "error")
        self._ok_exemplar = exemplar_observer(self._ok)
        self._err_exemplar = exemplar_observer(self._err)
        if native:  # opt-in: every observation also goes to the native histogram
            nat = fam.native_duration()
            self._ok, self._ok_exemplar = _also_native(self._ok, self._ok_exemplar, nat.labels(operation, "ok"))
            self._err, self._err_exemplar = _also_native(self._err, self._err_exemplar, nat.labels(operation, "error"))
        self._in_flight = fam.in_flight.tracker(operation)
        self._error_children: Dict[str, Any] = {}
        self._flag_children: Dict[str, Any] = {}
        self._lock = threading.Lock()
        self._spans = SpanStarter(operation, tracer_provider)
        self._calls: contextvars.ContextVar = contextvars.ContextVar(f"lbh_call_{operation}", default=())
        self._annotate_failed = False

    # -- recording -------------------------------------------------------------------

    def _error_child(self, exc: BaseException) -> Any:
        name = type(exc).__name__
        child = self._error_children.get(name)
        if child is None:
            with self._lock:
                child = self._error_children.get(name)
                if child is None:
                    label = name if len(self._error_children) < MAX_ERROR_TYPES else "other"
                    child = self._fam.errors.labels(self.operation, label)
                    self._error_children[name] = child
        return child

    def _count_flags(self, attrs: Mapping[str, AttributeValue]) -> None:
        for key, value in attrs.items():
            if value is True:
                child = self._flag_children.get(key)
                if child is None:
                    with self._lock:
                        child = self._flag_children.get(key)
                        if child is None:
                            if len(self._flag_children) >= MAX_FLAGS:
                                continue
                            child = self._flag_children[key] = self._fam.flags.labels(self.operation, key)
                child.inc()

    def _attributes_of(self, result: Any) -> Optional[Mapping[str, AttributeValue]]:
        try:
            return self._annotate(result)  # type: ignore[misc]
        except Exception:  # a broken hook must not fail the user's call
            if not self._annotate_failed:
                self._annotate_failed = True
                log.exception("annotate hook of operation %r failed; its attributes are skipped", self.operation)
            return None

    def _finish_ok(self, elapsed: float, attrs: Optional[Mapping[str, AttributeValue]], span: Any, token: Any) -> None:
        if attrs:
            self._count_flags(attrs)
        if span is None:
            self._ok.observe(elapsed)
        else:
            try:
                if attrs:
                    span.set_attributes(attrs)
                ctx = span.get_span_context()
                self._ok_exemplar(elapsed, ctx.trace_id, ctx.span_id)
            finally:
                span.end()
        if token is not None:
            otel_context.detach(token)

    def _finish_error(self, exc: BaseException, elapsed: float, span: Any, token: Any) -> None:
        self._error_child(exc).inc()
        if span is None:
            self._err.observe(elapsed)
        else:
            try:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                ctx = span.get_span_context()
                self._err_exemplar(elapsed, ctx.trace_id, ctx.span_id)
            finally:
                span.end()
        if token is not None:
            otel_context.detach(token)

    # -- decorator ---------------------------------------------------------------------

    def __call__(self, func: F) -> F:
        if not callable(func):
            raise TypeError(f"instrument({self.operation!r}) decorates a callable, got {type(func).__name__}")
        start = self._spans.start
        in_flight = self._in_flight
        ok_observe = self._ok.observe
        finish_ok = self._finish_ok
        finish_error = self._finish_error
        annotate = self._annotate
        attributes_of = self._attributes_of
        clock = self._clock

        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                span, token = start()
                in_flight.append(None)
                t0 = clock()
                try:
                    result = await func(*args, **kwargs)
                except BaseException as exc:
                    elapsed = clock() - t0
                    in_flight.pop()
                    finish_error(exc, elapsed, span, token)
                    raise
                elapsed = clock() - t0
                in_flight.pop()
                finish_ok(elapsed, attributes_of(result) if annotate is not None else None, span, token)
                return result

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            span, token = start()
            in_flight.append(None)
            t0 = clock()
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                elapsed = clock() - t0
                in_flight.pop()
                finish_error(exc, elapsed, span, token)
                raise
            elapsed = clock() - t0
            in_flight.pop()
            if span is None and token is None and annotate is None:
                ok_observe(elapsed)
            else:
                finish_ok(elapsed, attributes_of(result) if annotate is not None else None, span, token)
            return result

        return wrapper  # type: ignore[return-value]

    # -- context manager ----------------------------------------------------------------

    def __enter__(self) -> Call:
        call = Call(self)
        self._calls.set(self._calls.get() + (call,))
        return call

    def __exit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> None:
        stack = self._calls.get()
        call = stack[-1]
        self._calls.set(stack[:-1])
        call._finish(exc)

    async def __aenter__(self) -> Call:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)


def instrument(
    operation: str,
    *,
    registry: Optional[CollectorRegistry] = None,
    tracer_provider: Any = None,
    annotate: Optional[Annotator] = None,
    namespace: str = DEFAULT_NAMESPACE,
    buckets: Optional[Sequence[float]] = None,
    clock: Callable[[], float] = perf_counter,
    native: bool = False,
) -> Instrument:
    """Instrument ``operation``: ``@instrument("op")`` or ``with instrument("op") as call``.

    ``registry`` and ``tracer_provider`` default to the global ones, looked up per call
    for the tracer provider so one set after import is still used. ``annotate(result)``
    may return attributes for the span; true booleans among them increment
    ``<ns>_operation_flags_total{operation, flag}``. ``clock`` (seconds, monotonic) is
    injectable for tests. ``native=True`` also records a Prometheus native histogram,
    ``<ns>_operation_duration_native_seconds`` (:mod:`instrumentation.native_histogram`;
    served over the protobuf exposition, for Prometheus with native histograms on).
    """
    return Instrument(
        operation,
        registry=registry,
        tracer_provider=tracer_provider,
        annotate=annotate,
        namespace=namespace,
        buckets=buckets,
        clock=clock,
        native=native,
    )
