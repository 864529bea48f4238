"""What a run announces while it goes, for whoever listens (Locust's typed event hooks):
the CLI's banner, Grafana annotations and the scale test's cluster sampler subscribe
instead of chaining one callback by hand.

The events carry the run through :class:`RunHandle`, a protocol of what listeners may
read, so this module (and every listener) stays below ``harness.run`` in the layering.
A listener that raises is recorded in :attr:`EventHook.errors`, never breaks the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Generic, List, Mapping, Optional, Protocol, Tuple, TypeVar

__all__ = ["RunHandle", "RunStarted", "PhaseStarted", "RunFinished", "EventHook", "RunEvents"]


class RunHandle(Protocol):
    """What a listener may read of a live run (``harness.run.runner.Run`` is one)."""

    run_id: str
    scenario: Any                      # harness.config.scenario.Scenario
    metrics_url: Optional[str]
    stack_urls: Dict[str, str]

    @property
    def recorder(self) -> Any: ...             # harness.record.recorder.Recorder so far, or None

    def elapsed_s(self) -> float: ...          # seconds since request 0's intended start

    @property
    def finished(self) -> bool: ...

    @property
    def t0_ns(self) -> Optional[int]: ...      # perf_counter_ns of request 0's intended start

    def stop(self, reason: str = "interrupted") -> None: ...


@dataclass(frozen=True)
class RunStarted:
    """The schedule's clock is set; request 0 is due at ``t0_wall`` (epoch seconds)."""

    run: RunHandle
    t0_wall: float


@dataclass(frozen=True)
class PhaseStarted:
    """A profile phase (``warm-up``, ``steady``, ``spike`` …) began at ``at_s`` into the run."""

    run: RunHandle
    phase: str
    at_s: float


@dataclass(frozen=True)
class RunFinished:
    """The result document is complete (``result["verdict"]["exit_code"]`` decided)."""

    run: RunHandle
    result: Mapping[str, Any]


E = TypeVar("E")


class EventHook(Generic[E]):
    """Listeners called in order with one event; errors collected, not raised."""

    def __init__(self) -> None:
        self._listeners: List[Callable[[E], None]] = []
        self.errors: List[Tuple[str, str]] = []   # (listener, "Type: message")

    def add_listener(self, listener: Callable[[E], None]) -> Callable[[E], None]:
        self._listeners.append(listener)
        return listener

    def remove_listener(self, listener: Callable[[E], None]) -> None:
        self._listeners.remove(listener)

    def fire(self, event: E) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception as exc:  # a listener's failure is reported, the run goes on
                self.errors.append((_name(listener),
                                    f"{type(exc).__name__}: {exc}"))


class RunEvents:
    """The hooks of one run (``RunOptions.events``)."""

    def __init__(self) -> None:
        self.started: EventHook[RunStarted] = EventHook()
        self.phase: EventHook[PhaseStarted] = EventHook()
        self.finished: EventHook[RunFinished] = EventHook()

    def errors(self) -> List[Tuple[str, str]]:
        return self.started.errors + self.phase.errors + self.finished.errors


def _name(listener: Callable[..., Any]) -> str:
    qualname = listener.__qualname__ if isinstance(listener, type(_name)) else type(listener).__qualname__
    return qualname
