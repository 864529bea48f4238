"""One load run from start to verdict: build the target, drive the schedule, watch the
generator, serve live metrics, and produce the result, also when interrupted.

The ``Run`` object is what a run's parts share (like Locust's ``Environment``): the
scenario, the registry its metrics live in, the recorder, the state the live view reads.
"""

from __future__ import annotations

import os
import platform
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Optional, TextIO

from prometheus_client import CollectorRegistry, ProcessCollector

from harness import __version__
from harness.engine.threads import ThreadExecutor
from harness.run.live import LiveCollector, Progress, RunState
from harness.record.recorder import Recorder
from harness.run.resources import ResourceSampler
from harness.config.scenario import Scenario
from harness.targets import Target, flags_of
from harness.targets.resolve import build_target
from harness.config.thresholds import abort_due, evaluate, exit_code
from harness.run.selfcheck import judge_generator

__all__ = ["Run", "RunOptions", "RESULT_SCHEMA"]

RESULT_SCHEMA = "harness.result/1"


@dataclass
class RunOptions:
    """How to run (not what: that is the scenario)."""

    metrics_port: Optional[int] = 0          # None: no /metrics; 0: a free port
    metrics_addr: str = "127.0.0.1"
    progress: str = "auto"                   # auto | tty | plain | off
    lag_bound_ms: float = 5.0
    cpu_bound_fraction: float = 0.9
    warmup_calls: Optional[int] = None       # None: 2 for the embedded workloads, 0 otherwise
    drop_after_s: Optional[float] = None     # None: the scenario's timeout
    switch_interval_s: float = 0.0005        # GIL hand-off bound while the run lasts
    tracer_provider: Any = None
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    install_signal_handlers: bool = True
    on_started: Optional[Callable[["Run"], None]] = None
    stack: str = "none"                      # none | local: Prometheus + Alertmanager for this run
    settle_s: float = 3.0                    # after the run: one more scrape and rule evaluation
    prometheus_url: Optional[str] = None     # with stack="external"
    prometheus_job: str = "harness"


class Run:
    """A single run. ``execute()`` returns the result document (a JSON-ready dict)."""

    def __init__(self, scenario: Scenario, options: Optional[RunOptions] = None,
                 registry: Optional[CollectorRegistry] = None) -> None:
        self.scenario = scenario
        self.options = options or RunOptions()
        self.registry = registry if registry is not None else CollectorRegistry()
        self.run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
        self.recorder: Optional[Recorder] = None
        self.state = RunState(self.run_id, scenario.name, scenario.target, scenario.profile, scenario.duration)
        self.metrics_url: Optional[str] = None
        self.interrupted = False
        self.aborted_by: List[str] = []
        self._executor: Any = None
        self._stop_requested = threading.Event()
        self.stack_urls: Dict[str, str] = {}

    # -- control ----------------------------------------------------------------------

    def stop(self, reason: str = "interrupted") -> None:
        """Stop scheduling; in-flight calls finish or time out; the result is still written."""
        if reason == "interrupted":
            self.interrupted = True
        self._stop_requested.set()
        if self._executor is not None:
            self._executor.stop()

    # -- the run ----------------------------------------------------------------------

    def _build_target(self) -> Target:
        sc = self.scenario
        return build_target(sc.target, payload=sc.payload, mix=sc.mix, faults=sc.faults, workload=sc.workload,
                            http=sc.http, max_in_flight=sc.executor.max_in_flight, seed=sc.seed,
                            registry=self.registry, tracer_provider=self.options.tracer_provider)

    def _warm_up(self, target: Target) -> None:
        n = self.options.warmup_calls
        if n is None:
            n = 2 if self.scenario.target_kind == "short" else 0
        if target.is_async:
            return
        # every label (each workload of a mix) gets its n calls: walk the ordinals until each
        # has been dispatched n times (a mix's ordinals map to its workloads in a fixed order)
        remaining = {label: n for label in target.labels}
        for k in range(1000 * n):
            if not any(remaining.values()):
                break
            label, fn, args = target.dispatch(k)
            if remaining.get(label, 0) > 0:
                remaining[label] -= 1
                try:
                    fn(*args)
                except Exception:
                    pass  # a failing target fails in the run, where it is counted

    def _make_executor(self, target: Target, recorder: Recorder):
        sc = self.scenario
        drop_after = self.options.drop_after_s
        if sc.closed_loop:
            from harness.engine.users import AsyncUsersExecutor, UsersExecutor

            if target.is_async:
                return AsyncUsersExecutor(sc.profile, target.dispatch, lambda: recorder, duration_s=sc.duration,
                                          timeout_s=sc.timeout, flags_of=flags_of, seed=sc.seed,
                                          aopen=target.aopen, aclose=target.aclose)
            return UsersExecutor(sc.profile, target.dispatch, lambda: recorder, duration_s=sc.duration,
                                 timeout_s=sc.timeout, flags_of=flags_of, seed=sc.seed)
        schedule = sc.profile.arrivals()
        if target.is_async or sc.executor.type == "asyncio":
            if not target.is_async:
                from harness.targets import TargetError

                raise TargetError("executor.type: asyncio needs an `async def` target")
            from harness.engine.aio import AsyncExecutor

            return AsyncExecutor(schedule, target.dispatch, lambda: recorder,
                                 max_in_flight=sc.executor.max_in_flight, timeout_s=sc.timeout,
                                 drop_after_s=drop_after, flags_of=flags_of, aopen=target.aopen,
                                 aclose=target.aclose, astart=target.astart, acancel=target.acancel,
                                 label=target.labels[0])
        threads = max(1, min(sc.executor.threads, sc.executor.max_in_flight))
        return ThreadExecutor(schedule, target.dispatch, lambda: recorder, threads=threads,
                              timeout_s=sc.timeout, drop_after_s=drop_after, flags_of=flags_of)

    def execute(self) -> Dict[str, Any]:
        opts = self.options
        started_wall = datetime.now(timezone.utc)
        fleet = target = None
        if self.scenario.executor.workers > 1 or self.scenario.executor.type == "processes":
            from harness.run.processes import ProcessFleet

            if self.scenario.closed_loop:
                from harness.targets import TargetError

                raise TargetError("executor.workers: closed-loop users run in one process; use --workers 1")
            fleet = ProcessFleet(self.scenario, warmup_calls=opts.warmup_calls)
            fleet.start()
        else:
            target = self._build_target()
            self._warm_up(target)

        server = stack = webhook = None
        if opts.metrics_port is not None:
            from instrumentation import serve_metrics

            self.registry.register(LiveCollector(lambda: self.recorder, self.state))
            if not self._has_process_collector():
                ProcessCollector(registry=self.registry)  # RSS and CPU, for the memory-growth alert
            server = serve_metrics(opts.metrics_port, opts.metrics_addr, self.registry)
            self.metrics_url = server.url
        try:
            if opts.stack == "local":
                stack, webhook = self._start_stack(server)
            return self._drive(fleet, target, stack, webhook, started_wall)
        finally:
            if stack is not None:
                stack.stop()
            if webhook is not None:
                webhook.close()
            if server is not None:
                server.close()
            if target is not None:
                target.close()

    def _start_stack(self, server: Any):
        from harness.observe.stack import LocalStack, StackError, WebhookReceiver

        if server is None:
            raise StackError("--stack local needs the harness's /metrics: drop --no-metrics")
        webhook = WebhookReceiver(self.options.metrics_addr)
        try:
            stack = LocalStack({"harness": [f"{server.host}:{server.port}"]}, webhook_url=webhook.url).start()
        except BaseException:
            webhook.close()
            raise
        self.stack_urls = {"prometheus": stack.prometheus_url, "alertmanager": stack.alertmanager_url}
        # Start measuring once Prometheus has scraped us: the first samples must be zeros.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if any(t.get("health") == "up" for t in stack.client.targets()):
                    break
            except Exception:
                pass
            time.sleep(0.2)
        return stack, webhook

    def _drive(self, fleet: Any, target: Optional[Target], stack: Any, webhook: Any,
               started_wall: datetime) -> Dict[str, Any]:
        opts = self.options
        if fleet is not None:
            from harness.run.processes import RecorderView

            t0 = time.perf_counter_ns() + 100_000_000  # the children need a moment to see t0
            recorder = fleet.view = RecorderView(t0)
            executor = self._executor = fleet
        else:
            assert target is not None
            t0 = time.perf_counter_ns() + 20_000_000  # a moment to start the threads before request 0
            recorder = Recorder(origin_ns=t0)
            executor = self._executor = self._make_executor(target, recorder)
        self.recorder = recorder
        self.state.t0_ns = t0
        self.state.in_flight = executor.in_flight
        self.state.lag_counts = executor.lag_counts
        t0_wall = time.time() + (t0 - time.perf_counter_ns()) / 1e9

        resources = ResourceSampler(extra_pids=fleet.pids if fleet is not None else ()).start()
        progress = Progress(recorder, self.state, stream=opts.stream, mode=opts.progress).start()
        # A worker waking for its intended start must get the GIL from whichever thread
        # runs Python now; the default 5 ms switch interval would show up as schedule lag.
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(switch_interval, opts.switch_interval_s))
        previous_handlers = {}
        if opts.install_signal_handlers and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous_handlers[sig] = signal.signal(sig, lambda *_: self.stop("interrupted"))
        abort_watch = threading.Thread(target=self._watch_aborts, name="lbh-abort-watch", daemon=True)
        if opts.on_started is not None:
            opts.on_started(self)
        if self._stop_requested.is_set():
            executor.stop()
        outcome: Dict[str, Any] = {}
        try:
            abort_watch.start()

            def drive() -> None:
                try:
                    outcome["recorders"] = executor.run(t0)
                except BaseException as exc:  # surfaced below, after the cleanup
                    outcome["error"] = exc

            runner = threading.Thread(target=drive, name="lbh-executor", daemon=True)
            runner.start()
            while runner.is_alive():  # join in slices so signals reach the main thread
                runner.join(0.2)
            if "error" in outcome:
                raise outcome["error"]
        finally:
            self.state.finished = True
            sys.setswitchinterval(switch_interval)
            progress.stop()
            resources.stop()
            for sig, h in previous_handlers.items():
                signal.signal(sig, h)
        if fleet is not None:
            recorder = Recorder(origin_ns=t0)
            for part in outcome.get("recorders", []):
                recorder.merge(part)
            self.recorder = recorder
        finished_wall = datetime.now(timezone.utc)
        elapsed = (time.perf_counter_ns() - t0) / 1e9
        stack_report = None
        if stack is not None:
            stack_report = self._stack_report(stack.client, webhook, recorder, t0_wall, "harness")
        elif opts.stack == "external" and opts.prometheus_url:
            from harness.observe.stack import PrometheusClient

            stack_report = self._stack_report(PrometheusClient(opts.prometheus_url), None, recorder, t0_wall,
                                              opts.prometheus_job)
        return self._result(recorder, executor, resources, started_wall, finished_wall, elapsed, stack_report)

    def _stack_report(self, client: Any, webhook: Any, recorder: Recorder, t0_wall: float,
                      job: str) -> Dict[str, Any]:
        """Let Prometheus scrape and evaluate once more, then ask it what it saw."""
        from harness.observe.stack_report import fired_alerts, quantile_crosscheck, server_quantiles

        time.sleep(self.options.settle_s)
        end = time.time()
        report: Dict[str, Any] = {"prometheus_url": client.url, **self.stack_urls}
        try:
            report["alerts_fired"] = fired_alerts(client, t0_wall - 1.0, end)
            report["quantiles"] = quantile_crosscheck(client, recorder, job, end)
            report["server_quantiles"] = server_quantiles(client, job, end)
        except Exception as exc:  # the run's own figures stand; say what is missing
            report["error"] = f"{type(exc).__name__}: {exc}"
        report["notifications"] = webhook.summary() if webhook is not None else []
        return report

    def _has_process_collector(self) -> bool:
        return "process_resident_memory_bytes" in getattr(self.registry, "_names_to_collectors", {})

    def _watch_aborts(self) -> None:
        """Evaluate ``abortOnFail`` thresholds every second while the run goes on."""
        ths = [t for t in self.scenario.parsed_thresholds if t.abort_on_fail]
        if not ths:
            return
        while not self._stop_requested.wait(1.0) and not self.state.finished:
            rec = self.recorder
            if rec is None:
                continue
            failing = abort_due(evaluate(ths, rec.threshold_source(max(self.state.elapsed_s(), 1e-9))),
                                self.state.elapsed_s())
            if failing:
                self.aborted_by = [f"{r.threshold.metric} {r.threshold.expression}" for r in failing]
                self.stop("aborted")
                return

    def _result(self, recorder: Recorder, executor: Any, resources: ResourceSampler, started: datetime,
                finished: datetime, elapsed: float, stack_report: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        sc = self.scenario
        duration = min(elapsed, sc.duration) if self.interrupted or self.aborted_by else sc.duration
        results = evaluate(list(sc.parsed_thresholds), _with_alerts(recorder.threshold_source(max(duration, 1e-9)),
                                                                    stack_report))
        res_summary = resources.summary()
        health = judge_generator(
            executor.schedule_lag_percentile,
            lag_counts=executor.lag_counts(),
            loop_cpu_fraction=getattr(executor, "loop_cpu_fraction", None),
            cpu_percent_mean=res_summary["process_cpu_percent_mean"],
            cpu_count=res_summary["cpu_count"],
            lag_bound_ms=self.options.lag_bound_ms,
            cpu_bound_fraction=self.options.cpu_bound_fraction,
            samples=res_summary["samples"],
        )
        code = exit_code(results, invalid=not health.valid, interrupted=self.interrupted)
        if self.aborted_by and code == 0:
            code = 99
        status = "interrupted" if self.interrupted else ("aborted" if self.aborted_by else "completed")
        return {
            "schema": RESULT_SCHEMA,
            "run_id": self.run_id,
            "status": status,
            "started_at": started.isoformat(),
            "finished_at": finished.isoformat(),
            "elapsed_s": round(elapsed, 3),
            "scenario": sc.to_dict(),
            "scenario_sources": dict(sc.sources),
            "environment": _environment(),
            "metrics_url": self.metrics_url,
            "summary": recorder.summary(),
            "timeseries": recorder.windows(),
            "resources": {"summary": res_summary, "samples": resources.samples},
            "generator": {**health.to_dict(), "abandoned_calls": executor.abandoned,
                          "worker_processes": self.scenario.executor.workers,
                          "worker_errors": list(getattr(executor, "errors", [])),
                          "closed_loop": sc.closed_loop,
                          "schedule_lag_samples": executor.schedule_lag_samples()},
            "thresholds": [r.to_dict() for r in results],
            "verdict": {
                "passed": code == 0,
                "exit_code": code,
                "thresholds_passed": all(r.ok for r in results),
                "valid": health.valid,
                "aborted_by": self.aborted_by,
            },
            "stack": stack_report,
            "histograms": recorder.encode(),
        }


def _with_alerts(source: Callable[..., Optional[float]], stack_report: Optional[Dict[str, Any]]):
    """Thresholds on ``alerts{severity:page}`` count what the real rules fired; without a
    stack there is no data, and a threshold with no data fails (it proved nothing)."""

    def value(metric: str, tags: Any, aggregation: Any) -> Optional[float]:
        if metric != "alerts":
            return source(metric, tags, aggregation)
        if stack_report is None or "alerts_fired" not in stack_report:
            return None
        return float(sum(1 for a in stack_report["alerts_fired"]
                         if all(a.get(k) == v for k, v in tags.items())))

    return value


def _environment() -> Dict[str, Any]:
    env: Dict[str, Any] = {
        "harness_version": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "pid": os.getpid(),
    }
    for mod in ("torch", "numpy", "prometheus_client"):
        m = sys.modules.get(mod)
        if m is not None:
            env[f"{mod}_version"] = getattr(m, "__version__", None)
    return env
