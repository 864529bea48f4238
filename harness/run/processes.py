"""``--workers N``: N processes, each running its segment of the schedule (ordinals
``k ≡ i mod N``, like k6's execution segments), merged exactly at the end.

Why processes: one CPython process runs Python on one core at a time (the GIL); a target
that holds the GIL, or a rate the scheduler cannot keep up with, needs more processes.
Children send a snapshot of their recorder every second (for the live view) and the full
encoded recorder at the end; HDR histograms add exactly, so the merged percentiles are
those of the union.

Workers never outlive the harness: each one dies with its parent (parent-death signal and
a watchdog thread, :func:`harness.lifecycle.die_with_parent`), also on ``kill -9`` and while
a queue write is blocked; :meth:`ProcessFleet.close` stops, drains and reaps them on every
way out of a run. Ctrl-C and SIGHUP are the parent's to act on; SIGTERM to a worker stops
it cleanly (its results still reach the parent).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import signal
import threading
import time
from dataclasses import replace
from typing import Any, Dict, List, Optional

from prometheus_client import CollectorRegistry

from harness.config.scenario import ExecutorSettings, Scenario
from harness.engine.base import LagCounts
from harness.lifecycle import die_with_parent, in_long_lived_thread
from harness.record.recorder import Recorder
from harness.run.prepare import build_scenario_target, make_executor, warm_up
from harness.targets import TargetError

__all__ = ["ProcessFleet", "RecorderView"]

_SNAPSHOT_S = 1.0


def _child(index: int, count: int, scenario: Scenario, options: Dict[str, Any], out: Any, t0_value: Any,
           stop: Any, parent_pid: int = 0) -> None:
    if parent_pid:
        die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    local = {"term": False, "running": False}

    def on_term(*_: Any) -> None:  # stop cleanly; before the run there is nothing to keep
        local["term"] = True
        if not local["running"]:
            raise SystemExit(143)

    signal.signal(signal.SIGTERM, on_term)
    try:
        segment = _segmented(scenario, index, count)
        target = build_scenario_target(segment, registry=CollectorRegistry())
        warm_up(target, segment, options.get("warmup_calls"))
        out.put(("ready", index, None))
        # Shared values polled, not multiprocessing Events: a process that exits while it
        # sleeps on an Event's condition makes the next set() in the parent hang for ever.
        while not t0_value.value and not stop.value and not local["term"]:
            time.sleep(0.001)
        t0 = t0_value.value
        recorder = Recorder(origin_ns=t0)
        executor = make_executor(segment, target, recorder)
        local["running"] = True
        if local["term"] or stop.value:
            executor.stop()

        def watch() -> None:
            last = time.monotonic()
            while not stop.value and not local["term"] and local["running"]:
                time.sleep(0.05)
                if time.monotonic() - last >= _SNAPSHOT_S and local["running"]:
                    last = time.monotonic()
                    out.put(("snap", index, {"recorder": recorder.encode(), "lag": executor.lag.counts()}))
            executor.stop()

        threading.Thread(target=watch, daemon=True).start()
        executor.run(t0)
        local["running"] = False  # no snapshot after the final one: nobody reads it
        out.put(("done", index, {"recorder": recorder.encode(), "lag": executor.lag.counts(),
                                 "abandoned": executor.abandoned, "errors": list(executor.errors)}))
    except TargetError as exc:  # a bad target or payload: the parent says so (exit 2)
        out.put(("bad_target", index, str(exc)))
    except BaseException as exc:  # report, never hang the parent
        out.put(("error", index, f"{type(exc).__name__}: {exc}"))


def _segmented(scenario: Scenario, index: int, count: int) -> Scenario:
    ex = scenario.executor
    per = lambda n: max(1, -(-n // count))  # noqa: E731 - ceil split of concurrency
    return replace(scenario, profile=scenario.profile.segment(index, count),
                   executor=ExecutorSettings(type="asyncio" if ex.type == "asyncio" else "threads", workers=1,
                                     threads=per(ex.threads), max_in_flight=per(ex.max_in_flight)))


class RecorderView:
    """The children's latest snapshots, merged: :meth:`current` is what the live view reads."""

    def __init__(self, origin_ns: int) -> None:
        self._origin = origin_ns
        self._current = Recorder(origin_ns=origin_ns)
        self._snaps: Dict[int, Dict[str, Any]] = {}
        self._lock = threading.Lock()

    def update(self, index: int, encoded: Dict[str, Any]) -> None:
        with self._lock:
            self._snaps[index] = encoded
            merged = Recorder(origin_ns=self._origin)
            for snap in self._snaps.values():
                merged.merge(Recorder.decode(snap))
            self._current = merged

    def current(self) -> Recorder:
        with self._lock:
            return self._current


class ProcessFleet:
    """An :class:`~harness.engine.base.Executor` over N worker processes; :meth:`merged`
    is the exact union of their recorders after :meth:`run`."""

    def __init__(self, scenario: Any, *, warmup_calls: Optional[int] = None, start_timeout_s: float = 300.0) -> None:
        self.scenario = scenario
        self.count = scenario.executor.workers
        self._ctx = mp.get_context("spawn")  # torch and threads do not survive fork
        self._out = self._ctx.Queue()
        self._stop = self._ctx.Value("b", 0)
        self._t0 = self._ctx.Value("q", 0)
        self._warmup = warmup_calls
        self._start_timeout = start_timeout_s
        self._procs: List[Any] = []
        self._final: Dict[int, Dict[str, Any]] = {}
        self.errors: List[str] = []
        self.view: Optional[RecorderView] = None
        self.abandoned = 0
        self.lag = LagCounts()
        self.loop_cpu_fraction: Optional[float] = None
        self.pids: List[int] = []
        self._t0_ns = 0
        self._closed = False

    def start(self) -> None:
        """Start the children and wait until each has built and warmed its target."""
        for i in range(self.count):
            p = self._ctx.Process(target=_child, name=f"lbh-worker-proc-{i}",
                                  args=(i, self.count, self.scenario, {"warmup_calls": self._warmup},
                                        self._out, self._t0, self._stop, os.getpid()), daemon=True)

            def start(p: Any = p) -> None:  # forked by a long-lived thread, booked before a signal acts
                p.start()
                self._procs.append(p)
                self.pids.append(p.pid)

            in_long_lived_thread(start)
        ready = 0
        deadline = time.monotonic() + self._start_timeout
        while ready < self.count:
            try:
                kind, index, payload = self._out.get(timeout=0.5)
            except queue_mod.Empty:
                dead = [p for p in self._procs if not p.is_alive()]
                if dead or time.monotonic() > deadline:
                    self.stop()
                    why = (f"worker process exited with code {dead[0].exitcode} before it was ready" if dead
                           else f"only {ready} of {self.count} processes were ready within {self._start_timeout:.0f} s")
                    raise RuntimeError(f"workers: {why}") from None
                continue
            if kind == "ready":
                ready += 1
            elif kind == "bad_target":
                self.stop()
                raise TargetError(payload)
            elif kind == "error":
                self.stop()
                raise RuntimeError(f"worker process {index} failed to start: {payload}")

    def stop(self) -> None:
        self._stop.value = 1

    def in_flight(self) -> int:
        return 0  # per-child in-flight is not shipped; the rate and outcome counts are

    def run(self, t0_ns: Optional[int] = None) -> None:
        t0_ns = time.perf_counter_ns() if t0_ns is None else t0_ns
        self._t0_ns = t0_ns
        self.view = self.view or RecorderView(t0_ns)
        self._t0.value = t0_ns
        pending = set(range(self.count))
        while pending:
            try:
                kind, index, payload = self._out.get(timeout=0.5)
            except queue_mod.Empty:
                dead = [i for i in pending if not self._procs[i].is_alive()]
                for i in dead:
                    self.errors.append(f"worker process {i} exited with code {self._procs[i].exitcode}")
                    pending.discard(i)
                continue
            if kind in ("snap", "done"):
                self.view.update(index, payload["recorder"])
                self.lag.set_part(index, payload["lag"])
            if kind == "done":
                self._final[index] = payload
                self.errors.extend(f"worker process {index}: {e}" for e in payload.get("errors", ()))
                pending.discard(index)
            elif kind == "error":
                self.errors.append(f"worker process {index}: {payload}")
                pending.discard(index)
        self._reap(timeout_s=5.0)
        for payload in self._final.values():
            self.abandoned += payload["abandoned"]

    def _reap(self, timeout_s: float) -> None:
        """Ask every worker to stop and wait for it, reading the queue meanwhile (a worker
        exits only once what it wrote is read); then terminate, then kill, what is left."""
        self._stop.value = 1
        deadline = time.monotonic() + timeout_s
        while any(p.is_alive() for p in self._procs) and time.monotonic() < deadline:
            try:
                self._out.get(timeout=0.05)
            except (queue_mod.Empty, OSError, EOFError, ValueError):
                pass
        for p in self._procs:
            if p.is_alive():
                p.terminate()
        for p in self._procs:
            p.join(timeout=2)
            if p.is_alive():
                p.kill()
                p.join(timeout=2)

    def close(self) -> None:
        """No worker left, on every way out of a run (an error, a signal while starting)."""
        if self._closed:
            return
        self._closed = True
        self._reap(timeout_s=2.0)
        for p in self._procs:
            try:
                p.close()
            except ValueError:  # still running (unkillable): nothing more a parent can do
                pass
        try:
            self._out.close()
            self._out.join_thread()
        except (OSError, ValueError, AssertionError):
            pass

    def merged(self) -> Recorder:
        """The workers' final recorders merged (exact: HDR histograms add)."""
        recorder = Recorder(origin_ns=self._t0_ns)
        for payload in self._final.values():
            recorder.merge(Recorder.decode(payload["recorder"]))
        return recorder
