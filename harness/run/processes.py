"""``--workers N``: N processes, each running its segment of the schedule (ordinals
``k ≡ i mod N``, like k6's execution segments), merged exactly at the end.

Why processes: one CPython process runs Python on one core at a time (the GIL); a target
that holds the GIL, or a rate the scheduler cannot keep up with, needs more processes.
Children send a snapshot of their recorder every second (for the live view) and the full
encoded recorder at the end; HDR histograms add exactly, so the merged percentiles are
those of the union.
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_mod
import signal
import threading
import time
from typing import Any, Dict, List, Optional

from harness.engine.threads import LAG_BUCKETS, lag_percentile
from harness.record.recorder import Recorder

__all__ = ["ProcessFleet", "RecorderView"]

_SNAPSHOT_S = 1.0


def _child(index: int, count: int, scenario: Any, options: Dict[str, Any], out: Any, t0_value: Any,
           stop: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    from prometheus_client import CollectorRegistry

    from harness.run.runner import Run, RunOptions

    try:
        run = Run(_segmented(scenario, index, count), RunOptions(metrics_port=None, progress="off",
                                                                 install_signal_handlers=False,
                                                                 warmup_calls=options.get("warmup_calls")),
                  registry=CollectorRegistry())
        target = run._build_target()
        run._warm_up(target)
        out.put(("ready", index, None))
        # Shared values polled, not multiprocessing Events: a process that exits while it
        # sleeps on an Event's condition makes the next set() in the parent hang for ever.
        while not t0_value.value and not stop.value:
            time.sleep(0.001)
        t0 = t0_value.value
        recorder = Recorder(origin_ns=t0)
        executor = run._make_executor(target, recorder)

        def watch() -> None:
            last = time.monotonic()
            while not stop.value:
                time.sleep(0.05)
                if time.monotonic() - last >= _SNAPSHOT_S:
                    last = time.monotonic()
                    out.put(("snap", index, {"recorder": recorder.encode(), "lag": executor.lag_counts()}))
            executor.stop()

        threading.Thread(target=watch, daemon=True).start()
        executor.run(t0)
        out.put(("done", index, {"recorder": recorder.encode(), "lag": executor.lag_counts(),
                                 "abandoned": executor.abandoned}))
    except BaseException as exc:  # report, never hang the parent
        out.put(("error", index, f"{type(exc).__name__}: {exc}"))


def _segmented(scenario: Any, index: int, count: int) -> Any:
    from dataclasses import replace

    from harness.config.scenario import Executor

    ex = scenario.executor
    per = lambda n: max(1, -(-n // count))  # noqa: E731 - ceil split of concurrency
    return replace(scenario, profile=scenario.profile.segment(index, count),
                   executor=Executor(type="asyncio" if ex.type == "asyncio" else "threads", workers=1,
                                     threads=per(ex.threads), max_in_flight=per(ex.max_in_flight)))


class RecorderView:
    """Reads like a ``Recorder``; backed by the children's latest snapshots, merged."""

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

    def __getattr__(self, name: str) -> Any:
        return getattr(self._current, name)


class ProcessFleet:
    """Executor-shaped: ``run(t0)``, ``stop()``, ``in_flight()``, lag percentiles."""

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
        self._lags: Dict[int, List[int]] = {}
        self.pids: List[int] = []

    def start(self) -> None:
        """Start the children and wait until each has built and warmed its target."""
        for i in range(self.count):
            p = self._ctx.Process(target=_child, name=f"lbh-worker-proc-{i}",
                                  args=(i, self.count, self.scenario, {"warmup_calls": self._warmup},
                                        self._out, self._t0, self._stop), daemon=True)
            p.start()
            self._procs.append(p)
            self.pids.append(p.pid)
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
            elif kind == "error":
                self.stop()
                raise RuntimeError(f"worker process {index} failed to start: {payload}")

    def stop(self) -> None:
        self._stop.value = 1

    def in_flight(self) -> int:
        return 0  # per-child in-flight is not shipped; the rate and outcome counts are

    def run(self, t0_ns: int) -> List[Recorder]:
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
                self._lags[index] = payload["lag"]
            if kind == "done":
                self._final[index] = payload
                pending.discard(index)
            elif kind == "error":
                self.errors.append(f"worker process {index}: {payload}")
                pending.discard(index)
        self._stop.value = 1
        for p in self._procs:
            p.join(timeout=5)
        recorders = []
        for payload in self._final.values():
            recorders.append(Recorder.decode(payload["recorder"]))
            self.abandoned += payload["abandoned"]
        return recorders

    def lag_counts(self) -> List[int]:
        total = [0] * (LAG_BUCKETS + 1)
        for counts in list(self._lags.values()):
            total = [a + b for a, b in zip(total, counts)]
        return total

    def schedule_lag_percentile(self, p: float) -> Optional[float]:
        return lag_percentile(self.lag_counts(), p)

    def schedule_lag_samples(self) -> int:
        return sum(self.lag_counts())
