"""The target contract: what the engine calls, and what a plug-in's factory receives.

A target turns a request ordinal into ``(label, callable, args)``; the label names the
histogram the request lands in (``mixed`` spreads requests over several labels). Work
that is not the measured call (building payloads, importing modules, loading a model)
happens while the target is built, before the clock starts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Protocol, Sequence, Tuple

from harness.record.recorder import FLAG_CACHE_HIT, FLAG_FALLBACK

__all__ = ["Target", "TargetError", "TargetContext", "TargetFactory", "JsonBody", "json_body", "flags_of",
           "NamedFailure"]


class TargetError(ValueError):
    """The target or payload cannot be used; the message names the field."""


class NamedFailure(Exception):
    """A failed call whose outcome has a name of its own (``HTTP 503``,
    ``ConnectionRefusedError``) rather than its exception class's."""

    def __init__(self, error_name: str, message: str = "") -> None:
        super().__init__(message or error_name)
        self.error_name = error_name


def _nothing() -> None:
    return None


@dataclass
class Target:
    """A resolved target: ``dispatch(ordinal) -> (label, fn, args)``."""

    name: str
    labels: Tuple[str, ...]
    dispatch: Callable[[int], Tuple[str, Callable[..., Any], Sequence[Any]]]
    is_async: bool = False
    close: Callable[[], None] = field(default=_nothing)
    #: async setup / teardown run inside the executor's event loop (an HTTP client session)
    aopen: Optional[Callable[[], Any]] = None
    aclose: Optional[Callable[[], Any]] = None
    #: callback face (one label): ``astart(ordinal, call)`` begins a request that later calls
    #: ``call.done(error_name_or_None, flags)``; ``acancel(call)`` abandons it at its deadline.
    #: The asyncio executor prefers it to ``dispatch`` (no task per request).
    astart: Optional[Callable[[int, Any], None]] = None
    acancel: Optional[Callable[[Any], None]] = None
    #: cumulative ``{label: {counter: n}}`` the target counts itself (HTTP: ``status:<code>``,
    #: ``bytes_sent``, ``bytes_received``); the run hands it to ``Recorder.add_counter_source``
    counters: Optional[Callable[[], Mapping[str, Mapping[str, int]]]] = None
    #: labels the target records observations under itself (a stream's messages), outside
    #: the one-outcome-per-scheduled-request accounting; it gets the run's recorder first
    #: through ``bind_recorder(recorder)``
    observation_labels: Tuple[str, ...] = ()
    bind_recorder: Optional[Callable[[Any], None]] = None


@dataclass
class TargetContext:
    """What a registered target's factory gets: the scenario's settings for it, and the
    run's registry and tracer provider (so a plug-in never touches global singletons)."""

    name: str
    faults: Mapping[str, Any] = field(default_factory=dict)
    workload: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    registry: Any = None
    tracer_provider: Any = None
    #: per-run state the factories of one plug-in share (a mix builds one model, not three)
    shared: Dict[str, Any] = field(default_factory=dict)

    def refuse_settings(self) -> None:
        """For factories that take no ``faults``/``workload``: a clear error if given."""
        for key, value in (("faults", self.faults), ("workload", self.workload)):
            if value:
                raise TargetError(f"{key}: target {self.name!r} takes no {key} settings")


class TargetFactory(Protocol):
    """An ``lbh.targets`` entry point: builds the target once per run."""

    def __call__(self, ctx: TargetContext) -> Target: ...


class JsonBody(bytes):
    """Encoded JSON, sent as is with ``Content-Type: application/json`` (a payload generator
    that returns one saves the per-request encoding)."""

    __slots__ = ()


def json_body(obj: Any) -> JsonBody:
    """``obj`` encoded once, compactly (what the HTTP target would send for it)."""
    return JsonBody(json.dumps(obj, separators=(",", ":")).encode())


def flags_of(result: Any) -> int:
    """Cache-hit / fallback bits from a workload result (attributes or mapping keys)."""
    if result is None:
        return 0
    if isinstance(result, Mapping):
        hit, fb = result.get("cache_hit"), result.get("fallback_used", result.get("fallback"))
    else:
        hit, fb = getattr(result, "cache_hit", None), getattr(result, "fallback_used", None)
    return (FLAG_CACHE_HIT if hit is True else 0) | (FLAG_FALLBACK if fb is True else 0)
