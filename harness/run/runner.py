"""One load run from start to verdict: build the target, drive the schedule, watch the
generator, serve live metrics, and produce the result, also when interrupted.

The ``Run`` object is what a run's parts share (like Locust's ``Environment``): the
scenario, the registry its metrics live in, the recorder, the state the live view reads.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Optional, TextIO

from prometheus_client import CollectorRegistry, ProcessCollector

from instrumentation import serve_metrics

from harness import __version__
from harness.config.scenario import Scenario
from harness.config.thresholds import abort_due, evaluate, exit_code
from harness.engine.base import Executor, accounting_problems
from harness.events import PhaseStarted, RunEvents, RunFinished, RunStarted
from harness.exitcodes import ExitCode
from harness.lifecycle import SignalScope, held_signals, signal_scope
from harness.observe.remote_write import RemoteWriter
from harness.observe.stack import LocalStack, PrometheusClient, StackError, WebhookReceiver
from harness.observe.stack_report import fired_alerts, quantile_crosscheck, server_quantiles
from harness.record.recorder import Recorder
from harness.run.live import LiveCollector, Progress, RunState, p95_budget_ms
from harness.run.prepare import build_scenario_target, make_executor, warm_up
from harness.run.processes import ProcessFleet, RecorderView
from harness.run.resources import ResourceSampler
from harness.run.selfcheck import judge_generator
from harness.targets import Target, TargetError

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
    #: SIGINT/SIGTERM/SIGHUP for the whole run (harness.lifecycle): before the first request
    #: they raise Interrupted after the cleanup, from then on they stop the run softly
    install_signal_handlers: bool = True
    #: started / phase / finished hooks (the CLI banner, annotations, the scale-test sampler)
    events: RunEvents = field(default_factory=RunEvents)
    stack: str = "none"                      # none | local: Prometheus + Alertmanager for this run
    settle_s: float = 3.0                    # after the run: one more scrape and rule evaluation
    prometheus_url: Optional[str] = None     # with stack="external"
    prometheus_job: str = "harness"
    #: a harness.observe.remote_write.RemoteWriteConfig: push the live series every second
    remote_write: Any = None


class Run:
    """A single run. ``execute()`` returns the result document (a JSON-ready dict).

    It is the :class:`harness.events.RunHandle` its events carry."""

    def __init__(self, scenario: Scenario, options: Optional[RunOptions] = None,
                 registry: Optional[CollectorRegistry] = None) -> None:
        self.scenario = scenario
        self.options = options or RunOptions()
        self.registry = registry if registry is not None else CollectorRegistry()
        self.run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
        self._recorder: Optional[Recorder] = None
        self._fleet_view: Optional[RecorderView] = None
        self.state = RunState(self.run_id, scenario.name, scenario.target, scenario.profile, scenario.duration)
        self.state.p95_budget_ms = p95_budget_ms(scenario.parsed_thresholds)
        self.metrics_url: Optional[str] = None
        self.interrupted = False
        self.aborted_by: List[str] = []
        self._executor: Optional[Executor] = None
        self._stop_requested = threading.Event()
        self._cut_short = threading.Event()  # an interruption: no settle, no waiting
        self.stack_urls: Dict[str, str] = {}
        self._observation_labels: tuple = ()
        self._remote_write: Optional[RemoteWriter] = None

    # -- what listeners read (RunHandle) ---------------------------------------------------

    @property
    def recorder(self) -> Optional[Recorder]:
        """The recorder so far (with worker processes: their latest snapshots, merged)."""
        if self._fleet_view is not None and self._recorder is None:
            return self._fleet_view.current()
        return self._recorder

    def elapsed_s(self) -> float:
        return self.state.elapsed_s()

    @property
    def finished(self) -> bool:
        return self.state.finished

    @property
    def t0_ns(self) -> Optional[int]:
        return self.state.t0_ns

    # -- control ----------------------------------------------------------------------

    def stop(self, reason: str = "interrupted") -> None:
        """Stop scheduling; in-flight calls finish or time out; the result is still written."""
        if reason == "interrupted":
            self.interrupted = True
            self._cut_short.set()
        self._stop_requested.set()
        if self._executor is not None:
            self._executor.stop()

    # -- the run ----------------------------------------------------------------------

    def execute(self) -> Dict[str, Any]:
        """The run, start to result. A signal before the first request (workers or stack
        starting, warm-up) raises :class:`harness.lifecycle.Interrupted` once everything
        started is stopped; from the first request on it stops the run and the partial
        result comes back (``status: interrupted``, exit code 105)."""
        with signal_scope(self.options.install_signal_handlers) as signals:
            return self._execute(signals)

    def _execute(self, signals: SignalScope) -> Dict[str, Any]:
        opts = self.options
        started_wall = datetime.now(timezone.utc)
        parts: Dict[str, Any] = {}  # what was started, closed in reverse order
        try:
            if self.scenario.executor.workers > 1 or self.scenario.executor.type == "processes":
                if self.scenario.closed_loop:
                    raise TargetError("executor.workers: closed-loop users run in one process; use --workers 1")
                if self.scenario.target_kind == "ws":  # its messages are counted apart from the requests
                    raise TargetError("executor.workers: a ws:// target streams in one process; use --workers 1")
                fleet = parts["fleet"] = ProcessFleet(self.scenario, warmup_calls=opts.warmup_calls)
                fleet.start()
            else:
                parts["target"] = build_scenario_target(self.scenario, registry=self.registry,
                                                        tracer_provider=opts.tracer_provider)
                warm_up(parts["target"], self.scenario, opts.warmup_calls)
            if opts.metrics_port is not None or opts.remote_write is not None:
                self.registry.register(LiveCollector(lambda: self.recorder, self.state))
                try:  # RSS and CPU, for the memory-growth alert (unless the registry has them)
                    ProcessCollector(registry=self.registry)
                except ValueError:
                    pass
            if opts.metrics_port is not None:
                server = parts["server"] = serve_metrics(opts.metrics_port, opts.metrics_addr, self.registry)
                self.metrics_url = server.url
            if opts.stack == "local":
                parts["stack"], parts["webhook"] = self._start_stack(parts.get("server"))
            if opts.remote_write is not None:  # pushes what /metrics serves, from its own threads
                self._remote_write = parts["remote_write"] = RemoteWriter(opts.remote_write, self.registry).start()
            # From here on something is measured: a signal stops the run, never loses it.
            with signals.soft(lambda: self.stop("interrupted")):
                try:
                    return self._drive(parts.get("fleet"), parts.get("target"), parts.get("stack"),
                                       parts.get("webhook"), started_wall)
                finally:
                    _close(parts)
        finally:
            _close(parts)

    def _start_stack(self, server: Any):
        if server is None:
            raise StackError("--stack local needs the harness's /metrics: drop --no-metrics")
        webhook = WebhookReceiver()  # loopback, its own port, a per-run secret path
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

    def _drive(self, fleet: Optional[ProcessFleet], target: Optional[Target], stack: Any, webhook: Any,
               started_wall: datetime) -> Dict[str, Any]:
        opts = self.options
        executor: Executor
        if fleet is not None:
            t0 = time.perf_counter_ns() + 100_000_000  # the children need a moment to see t0
            self._fleet_view = fleet.view = RecorderView(t0)
            executor = self._executor = fleet
        else:
            assert target is not None
            self._observation_labels = target.observation_labels
            t0 = time.perf_counter_ns() + 20_000_000  # a moment to start the threads before request 0
            self._recorder = Recorder(origin_ns=t0)
            executor = self._executor = make_executor(self.scenario, target, self._recorder,
                                                      drop_after_s=opts.drop_after_s)
        self.state.t0_ns = t0
        self.state.in_flight = executor.in_flight
        self.state.lag_counts = executor.lag.counts
        t0_wall = time.time() + (t0 - time.perf_counter_ns()) / 1e9

        resources = ResourceSampler(extra_pids=fleet.pids if fleet is not None else ()).start()
        progress = Progress(lambda: self.recorder, self.state, stream=opts.stream, mode=opts.progress).start()
        # A worker waking for its intended start must get the GIL from whichever thread
        # runs Python now; the default 5 ms switch interval would show up as schedule lag.
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(switch_interval, opts.switch_interval_s))
        abort_watch = threading.Thread(target=self._watch, name="lbh-run-watch", daemon=True)
        opts.events.started.fire(RunStarted(self, t0_wall))
        if self._stop_requested.is_set():
            executor.stop()
        outcome: Dict[str, Any] = {}
        try:
            abort_watch.start()

            def drive() -> None:
                try:
                    executor.run(t0)
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
        if fleet is not None:
            self._recorder = fleet.merged()
        recorder = self._recorder
        assert recorder is not None
        finished_wall = datetime.now(timezone.utc)
        elapsed = (time.perf_counter_ns() - t0) / 1e9
        remote_write = None
        if self._remote_write is not None:  # the final flush: the series' last values, before the verdict
            remote_write = self._remote_write.close(1.0 if self._cut_short.is_set() else None)
        stack_report = None
        if stack is not None:
            stack_report = self._stack_report(stack.client, webhook, recorder, t0_wall, "harness")
        elif opts.stack == "external" and opts.prometheus_url:
            stack_report = self._stack_report(PrometheusClient(opts.prometheus_url), None, recorder, t0_wall,
                                              opts.prometheus_job)
        result = self._result(recorder, executor, resources, started_wall, finished_wall, elapsed, stack_report)
        if remote_write is not None:
            result["remote_write"] = remote_write
        opts.events.finished.fire(RunFinished(self, result))
        return result

    def _stack_report(self, client: Any, webhook: Any, recorder: Recorder, t0_wall: float,
                      job: str) -> Dict[str, Any]:
        """Let Prometheus scrape and evaluate once more (unless interrupted: then at once),
        then ask it what it saw."""
        settled = not self._cut_short.wait(self.options.settle_s)
        end = time.time()
        report: Dict[str, Any] = {"prometheus_url": client.url, **self.stack_urls}
        if not settled:
            report["settle"] = "interrupted: Prometheus asked without the last scrape and evaluation"
        try:
            report["alerts_fired"] = fired_alerts(client, t0_wall - 1.0, end)
            report["quantiles"] = quantile_crosscheck(client, recorder, job, end)
            report["server_quantiles"] = server_quantiles(client, job, end)
        except Exception as exc:  # the run's own figures stand; say what is missing
            report["error"] = f"{type(exc).__name__}: {exc}"
        report["notifications"] = webhook.summary() if webhook is not None else []
        return report

    def _watch(self) -> None:
        """While the run goes on: announce each profile phase as it starts (every 0.1 s),
        and evaluate ``abortOnFail`` thresholds every second."""
        ths = [t for t in self.scenario.parsed_thresholds if t.abort_on_fail]
        phases = list(self.scenario.profile.phases())
        next_abort_check = 1.0
        while not self._stop_requested.wait(0.1) and not self.state.finished:
            now = self.state.elapsed_s()
            while phases and phases[0].start_s <= now:
                phase = phases.pop(0)
                self.state.phase = phase.name
                self.options.events.phase.fire(PhaseStarted(self, phase.name, phase.start_s))
            if not ths or now < next_abort_check:
                continue
            next_abort_check = now + 1.0
            rec = self.recorder
            if rec is None:
                continue
            failing = abort_due(evaluate(ths, rec.threshold_source(max(now, 1e-9))), now)
            if failing:
                self.aborted_by = [f"{r.threshold.metric} {r.threshold.expression}" for r in failing]
                self.stop("aborted")
                return

    def _result(self, recorder: Recorder, executor: Executor, resources: ResourceSampler, started: datetime,
                finished: datetime, elapsed: float, stack_report: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        sc = self.scenario
        duration = min(elapsed, sc.duration) if self.interrupted or self.aborted_by else sc.duration
        results = evaluate(list(sc.parsed_thresholds), _with_alerts(recorder.threshold_source(max(duration, 1e-9)),
                                                                    stack_report))
        res_summary = resources.summary()
        health = judge_generator(
            executor.lag.percentile,
            lag_counts=executor.lag.counts(),
            loop_cpu_fraction=executor.loop_cpu_fraction,
            cpu_percent_mean=res_summary["process_cpu_percent_mean"],
            cpu_count=res_summary["cpu_count"],
            lag_bound_ms=self.options.lag_bound_ms,
            cpu_bound_fraction=self.options.cpu_bound_fraction,
            samples=res_summary["samples"],
        )
        # a worker that died, or scheduled requests with no outcome: invalid, never passed
        scheduled = None if self.interrupted or self.aborted_by or sc.closed_loop else sc.profile.count()
        observed = set(self._observation_labels)  # a stream's messages are not scheduled requests
        outcomes = sum(n for t in recorder.targets() if t not in observed for n in recorder.counts(t).values())
        health.reasons.extend(accounting_problems(executor.errors, scheduled, outcomes))
        code = exit_code(results, invalid=not health.valid, interrupted=self.interrupted)
        if self.aborted_by and code == ExitCode.OK:
            code = ExitCode.THRESHOLDS_FAILED
        status = "interrupted" if self.interrupted else ("aborted" if self.aborted_by else
                                                         "failed" if executor.errors else "completed")
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
            "error_details": recorder.error_details(),
            "timeseries": recorder.windows(),
            "resources": {"summary": res_summary, "samples": resources.samples},
            "network": resources.network(),  # OS interface counters over the measured window
            "generator": {**health.to_dict(), "abandoned_calls": executor.abandoned,
                          "worker_processes": self.scenario.executor.workers,
                          "worker_errors": list(executor.errors),
                          "closed_loop": sc.closed_loop,
                          "schedule_lag_samples": executor.lag.samples()},
            "thresholds": [r.to_dict() for r in results],
            "verdict": {
                "passed": code == 0,
                "exit_code": int(code),
                "thresholds_passed": all(r.ok for r in results),
                "valid": health.valid,
                "aborted_by": self.aborted_by,
                "failure_threshold": sc.failures.get("threshold"),  # "off" when failures were not judged
            },
            "stack": stack_report,
            "histograms": recorder.encode(),
        }


def _close(parts: Dict[str, Any]) -> None:
    """Stop what a run started, newest first, each once; signals wait meanwhile (a second
    Ctrl-C must not leave Prometheus or a worker behind)."""
    first: Optional[BaseException] = None
    with held_signals():
        for key, method in (("remote_write", "close"), ("fleet", "close"), ("stack", "stop"), ("webhook", "close"),
                            ("server", "close"), ("target", "close")):
            part = parts.pop(key, None)
            try:
                if part is not None:
                    getattr(part, method)()
            except Exception as exc:  # the others are still stopped
                first = first or exc
    if first is not None:
        raise first


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
    for mod, dist in (("torch", "torch"), ("numpy", "numpy"), ("prometheus_client", "prometheus-client")):
        if mod in sys.modules:
            try:
                env[f"{mod}_version"] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                env[f"{mod}_version"] = None
    return env
