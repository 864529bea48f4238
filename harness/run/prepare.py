"""The steps of a run that happen before the clock starts, as plain functions: the
in-process runner and each worker process call the same ones (no reaching into a Run)."""

from __future__ import annotations

from typing import Any, Optional

from harness.config.scenario import Scenario
from harness.engine.aio import AsyncExecutor
from harness.engine.base import Executor
from harness.engine.threads import ThreadExecutor
from harness.engine.users import AsyncUsersExecutor, UsersExecutor
from harness.record.recorder import Recorder
from harness.targets import Target, TargetError, flags_of
from harness.targets.resolve import build_target

__all__ = ["build_scenario_target", "warm_up", "make_executor", "DEFAULT_WARMUP_CALLS"]

#: warm-up calls per label for registered targets (a model's first calls pay one-time set-up)
DEFAULT_WARMUP_CALLS = 2


def build_scenario_target(scenario: Scenario, *, registry: Any, tracer_provider: Any = None) -> Target:
    """The scenario's target; whatever goes wrong while building it (a factory or a
    payload generator's first call that raises) is a :class:`TargetError` naming the field."""
    sc = scenario
    try:
        return build_target(sc.target, payload=sc.payload, mix=sc.mix, faults=sc.faults, workload=sc.workload,
                            http=sc.http, max_in_flight=sc.executor.max_in_flight, seed=sc.seed,
                            registry=registry, tracer_provider=tracer_provider)
    except TargetError:
        raise
    except (Exception, SystemExit) as exc:  # a Ctrl-C (KeyboardInterrupt) still stops the run
        field = "payload" if sc.payload else "target"
        raise TargetError(f"{field}: building target {sc.target!r}"
                          + (f" with payload {sc.payload!r}" if sc.payload else "")
                          + f" failed: {type(exc).__name__}: {exc}") from None


def warm_up(target: Target, scenario: Scenario, calls: Optional[int] = None) -> None:
    """``calls`` calls per label (default: 2 for registered targets, 0 for your own
    functions and HTTP), outside the measured run; a failing call fails in the run instead."""
    n = calls
    if n is None:
        n = DEFAULT_WARMUP_CALLS if scenario.target_kind == "short" else 0
    if target.is_async:
        return
    # every label (each target of a mix) gets its n calls: walk the ordinals until each has
    # been dispatched n times (a mix's ordinals map to its targets in a fixed order)
    remaining = {label: n for label in target.labels}
    for k in range(1000 * n):
        if not any(remaining.values()):
            break
        try:
            label, fn, args = target.dispatch(k)
        except (Exception, SystemExit):
            return  # a failing payload generator fails in the run, where each request counts it
        if remaining.get(label, 0) > 0:
            remaining[label] -= 1
            try:
                fn(*args)
            except (Exception, SystemExit):
                pass  # a failing target fails in the run, where it is counted


def make_executor(scenario: Scenario, target: Target, recorder: Recorder, *,
                  drop_after_s: Optional[float] = None) -> Executor:
    """The executor the scenario asks for, for this target (one process)."""
    sc = scenario
    if target.counters is not None:  # an HTTP target's status codes and bytes, read with the recorder
        recorder.add_counter_source(target.counters)
    if target.bind_recorder is not None:  # a streaming target records its messages itself
        if sc.closed_loop:
            raise TargetError(f"target: {target.name!r} streams on the open-loop schedule; closed-loop users "
                              "cannot drive it")
        target.bind_recorder(recorder)
    if sc.closed_loop:
        if target.is_async:
            return AsyncUsersExecutor(sc.profile, target.dispatch, recorder, duration_s=sc.duration,
                                      timeout_s=sc.timeout, flags_of=flags_of, seed=sc.seed,
                                      aopen=target.aopen, aclose=target.aclose, labels=target.labels)
        return UsersExecutor(sc.profile, target.dispatch, recorder, duration_s=sc.duration,
                             timeout_s=sc.timeout, flags_of=flags_of, seed=sc.seed, labels=target.labels)
    schedule = sc.profile.arrival_batches()
    if target.is_async or sc.executor.type == "asyncio":
        if not target.is_async:
            raise TargetError("executor.type: asyncio needs an `async def` target")
        return AsyncExecutor(schedule, target.dispatch, recorder,
                             max_in_flight=sc.executor.max_in_flight, timeout_s=sc.timeout,
                             drop_after_s=drop_after_s, flags_of=flags_of, aopen=target.aopen,
                             aclose=target.aclose, astart=target.astart, acancel=target.acancel,
                             label=target.labels[0], labels=target.labels)
    threads = max(1, min(sc.executor.threads, sc.executor.max_in_flight))
    return ThreadExecutor(schedule, target.dispatch, recorder, threads=threads,
                          timeout_s=sc.timeout, drop_after_s=drop_after_s, flags_of=flags_of,
                          labels=target.labels)
