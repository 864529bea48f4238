"""``harness run [SCENARIO]``: run a scenario (default: the embedded workloads) and judge it.

Flags override the scenario (flags > ``HARNESS_*`` env > file > defaults). After the run:
the JSON result, the terminal summary, with ``--report`` the HTML report and with
``--baseline`` the regression gate (:func:`after_run`). Exit code: the run's own
(:class:`harness.exitcodes.ExitCode`: 0, 99 thresholds, 98 invalid, 105 interrupted), else 97
when worse than the baseline; 2 for a bad flag, scenario, target or baseline file.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from harness.cli.args import add_set_argument, load_scenario, parse_kv, scenario_overrides
from harness.cli.compare import add_gate_arguments, gate_options
from harness.config.scenario import Scenario
from harness.events import RunStarted
from harness.exitcodes import ExitCode
from harness.lifecycle import Interrupted, signal_name, signal_scope
from harness.observe.annotations import RunAnnotations, annotations_for
from harness.observe.remote_write import RemoteWriteConfig, RemoteWriteError, parse_header, validate_url
from harness.observe.stack import StackConfigError, StackError, find_binaries, missing_binaries_message
from harness.result.compare import compare, format_comparison, gate_exit_code, pool_results
from harness.result.ci import write_ci
from harness.result.html import write_report
from harness.result.schema import Result, ResultError, load_result, write_result
from harness.result.summary import format_summary
from harness.run.runner import Run, RunOptions
from harness.run.service import ServiceError, served
from harness.targets import TargetError

__all__ = ["register", "handle", "after_run", "add_ci_arguments", "add_grafana_arguments", "annotations_from_args",
           "segment", "add_remote_write_arguments", "remote_write_from_args"]

#: ``--junit`` & co.: flag attribute -> format of :mod:`harness.result.ci`
CI_OUTPUTS = (("junit", "junit"), ("csv", "csv"), ("csv_series", "csv-series"), ("summary_md", "markdown"))

#: flag attribute -> scenario field (dotted path)
_OVERRIDE_FLAGS = (("name", "name"), ("target", "target"), ("payload", "payload"), ("duration", "duration"),
                   ("profile_type", "profile.type"), ("rate", "profile.rate"), ("vus", "profile.vus"),
                   ("timeout", "timeout"), ("workers", "executor.workers"), ("threads", "executor.threads"),
                   ("max_in_flight", "executor.max_in_flight"), ("seed", "seed"),
                   ("failure_threshold", "failures.threshold"))


def register(subparsers: Any) -> argparse.ArgumentParser:
    run = subparsers.add_parser("run", help="run a scenario (default: the embedded workloads)")
    run.add_argument("scenario", nargs="?",
                     help="scenario YAML file or packaged name (`harness scenarios`); omit for the default")
    g = run.add_argument_group("scenario overrides (flags > HARNESS_* env > file > defaults)")
    g.add_argument("--name")
    g.add_argument("--target", help="features | env-step | risk-var | mixed | module:function")
    g.add_argument("--payload", help="module:function giving each call its arguments (called with the request ordinal)")
    g.add_argument("--duration", help="e.g. 30s, 2m")
    g.add_argument("--profile", dest="profile_type", help="constant | ramp | spike | step | stages | users")
    g.add_argument("--rate", type=float, help="requests/s for a constant profile")
    g.add_argument("--vus", type=int, help="virtual users (closed loop, with --profile users)")
    g.add_argument("--timeout", help="per-call timeout, e.g. 5s")
    g.add_argument("--workers", type=int, help="processes, each taking its segment of the schedule")
    g.add_argument("--threads", type=int, help="worker threads per process (max in flight per process)")
    g.add_argument("--max-in-flight", type=int, dest="max_in_flight")
    g.add_argument("--seed", type=int)
    g.add_argument("--segment", metavar="INDEX/COUNT",
                   help="run only this segment of the schedule (request k with k %% COUNT == INDEX), e.g. in a "
                        "Kubernetes Indexed Job: --segment $(JOB_COMPLETION_INDEX)/4; merge with `harness merge`")
    g.add_argument("--threshold", action="append", type=parse_kv, default=[], metavar="METRIC=EXPR",
                   help="e.g. 'latency=p(95)<100ms' (repeatable; replaces that metric's thresholds, keeps the "
                        "others; METRIC=off removes one)")
    g.add_argument("--failure-threshold", metavar="EXPR|off",
                   help="failed_rate (errors + timeouts + dropped over all requests) threshold judged on every "
                        "run, default the budget's rate<0.01 (1 %%); 'off' stops judging failures (shown in the summary)")
    g.add_argument("--fault", action="append", type=parse_kv, default=[], metavar="NAME=VALUE",
                   help="fault for the embedded workloads, e.g. extra_latency_seconds=0.15, error_rate=0.05")
    add_set_argument(g, help="any scenario field by dotted path, e.g. profile.spike_rate=150")
    o = run.add_argument_group("output and self-checks")
    o.add_argument("--out", help="result JSON path (default: results/<scenario>-<time>.json)")
    o.add_argument("--metrics-port", type=int, default=0, help="port for the live /metrics (0: a free port)")
    o.add_argument("--metrics-addr", default="127.0.0.1")
    o.add_argument("--no-metrics", action="store_true", help="do not serve /metrics")
    o.add_argument("--progress", choices=("auto", "tty", "plain", "off"), default="auto",
                   help="auto: a live display on a terminal (bar, rates, p95 against the budget, errors), "
                   "plain lines otherwise; tty/plain force one; off: none. NO_COLOR drops the colour")
    o.add_argument("--lag-bound-ms", type=float, default=5.0, help="schedule-lag p99 above which the run is invalid")
    o.add_argument("--quiet", "-q", action="store_true", help="no summary on stdout")
    st = run.add_argument_group("Prometheus stack (alerts evaluated by the real rules on this run)")
    st.add_argument("--stack", choices=("none", "local", "auto", "external"), default="none",
                    help="local: start Prometheus + Alertmanager from PATH for this run; auto: local when "
                         "the binaries are installed; external: ask --prometheus-url")
    st.add_argument("--prometheus-url", help="an existing Prometheus that scrapes this run (with --stack external)")
    st.add_argument("--prometheus-job", default="harness", help="its job label for the harness's /metrics")
    add_remote_write_arguments(run)
    r = run.add_argument_group("reports and baselines")
    r.add_argument("--baseline", metavar="FILE", help="compare with this baseline result; exit 97 when a gated metric "
                                                      "is surely worse by more than 10 %% (its whole interval; the "
                                                      "run's own failure codes win)")
    r.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="run the scenario N times and gate on the pooled result (for noisy machines): --out gets "
                        "the pooled result, each repeat is kept as <out>.repeat-K.json")
    r.add_argument("--report", nargs="?", const="", default=None, metavar="PATH",
                   help="also write the HTML report (default: next to the result, .html)")
    r.add_argument("--smoke", action="store_true", help="a packaged scenario's shortened variant (a few seconds)")
    add_ci_arguments(run)
    add_gate_arguments(run)
    add_grafana_arguments(run)
    run.set_defaults(handler=handle)
    return run


def add_ci_arguments(parser: argparse.ArgumentParser) -> None:
    """``--junit``, ``--csv``, ``--csv-series``, ``--summary-md``: the CI formats of the result
    (:mod:`harness.result.ci`), written after the run whatever its verdict."""
    g = parser.add_argument_group("CI outputs (written whatever the verdict; `harness report --format` makes "
                                  "them from a result later)")
    g.add_argument("--junit", metavar="PATH", help="JUnit XML: a testcase per threshold (a failed one is a "
                                                   "<failure>), the generator self-check and, with --baseline, "
                                                   "the gate's metrics")
    g.add_argument("--csv", metavar="PATH", help="CSV, one row per target x metric (percentiles in ms, rates)")
    g.add_argument("--csv-series", dest="csv_series", metavar="PATH", help="CSV of the per-second windows")
    g.add_argument("--summary-md", "--markdown", dest="summary_md", metavar="PATH",
                   help="Markdown verdict for a CI job summary, e.g. --summary-md \"$GITHUB_STEP_SUMMARY\" "
                        "(appended to that file)")


def add_remote_write_arguments(parser: argparse.ArgumentParser) -> None:
    """``--remote-write URL`` and ``--remote-write-header``: push the live series
    (:mod:`harness.observe.remote_write`), for runs that no Prometheus scrapes in time."""
    g = parser.add_argument_group("Prometheus remote write (push the live series: CI jobs, short Kubernetes Jobs)")
    g.add_argument("--remote-write", metavar="URL",
                   help="send the live series every second, and a final flush, to this remote-write 1.0 receiver, "
                        "e.g. http://prometheus:9090/api/v1/write (Prometheus: --web.enable-remote-write-receiver, "
                        "and --enable-feature=native-histograms for the native histograms); labels job "
                        "(--prometheus-job) and instance (this host); never slows the run")
    g.add_argument("--remote-write-header", action="append", default=[], metavar="'NAME: VALUE'",
                   help="a header on every remote-write request, e.g. 'Authorization: Bearer TOKEN' (repeatable)")


def remote_write_from_args(args: argparse.Namespace) -> Optional[RemoteWriteConfig]:
    """The :class:`RemoteWriteConfig` of ``--remote-write`` (None without it);
    :class:`RemoteWriteError` naming the flag when a value is bad."""
    url = getattr(args, "remote_write", None)
    headers = getattr(args, "remote_write_header", None) or []
    if not url:
        if headers:
            raise RemoteWriteError("--remote-write-header needs --remote-write URL")
        return None
    try:
        url = validate_url(url)
    except RemoteWriteError as exc:
        raise RemoteWriteError(f"--remote-write: {exc}") from None
    parsed = {}
    for text in headers:
        try:
            name, value = parse_header(text)
        except RemoteWriteError as exc:
            raise RemoteWriteError(f"--remote-write-header: {exc}") from None
        parsed[name] = value
    return RemoteWriteConfig(url, headers=parsed, job=getattr(args, "prometheus_job", None) or "harness")


def add_grafana_arguments(parser: argparse.ArgumentParser) -> None:
    """``--grafana-url`` and ``--grafana-dashboard``: annotate the run in Grafana."""
    g = parser.add_argument_group("Grafana annotations (run start, end and phase changes)")
    g.add_argument("--grafana-url", default=os.environ.get("GRAFANA_URL"),
                   help="annotate this Grafana (GRAFANA_URL; auth: GRAFANA_TOKEN, or GRAFANA_USER + "
                        "GRAFANA_PASSWORD)")
    g.add_argument("--grafana-dashboard", action="append", default=[], metavar="UID",
                   help="post to this dashboard only (repeatable); default: organisation-wide, tagged lbh-run")


def annotations_from_args(args: argparse.Namespace, env: Optional[Mapping[str, str]] = None) -> Optional[RunAnnotations]:
    """A :class:`RunAnnotations` when ``--grafana-url`` (or GRAFANA_URL) was given, else None."""
    return annotations_for(args.grafana_url, args.grafana_dashboard, env=env)


def segment(scenario: Scenario, text: str) -> Scenario:
    """``scenario`` restricted to the ``INDEX/COUNT`` segment of its schedule; ValueError
    when the text is not one."""
    index_s, sep, count_s = text.partition("/")
    if not sep or not index_s.strip().isdigit() or not count_s.strip().isdigit():
        raise ValueError(f"expected INDEX/COUNT such as 0/4, got {text!r}")
    index, count = int(index_s), int(count_s)
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"INDEX must be in [0, COUNT) and COUNT >= 1, got {index}/{count}")
    return replace(scenario, profile=scenario.profile.segment(index, count))


def _error(message: str, code: ExitCode = ExitCode.USAGE) -> int:
    print(f"harness: {message}", file=sys.stderr)
    return int(code)


def _banner(event: RunStarted) -> None:
    run, sc = event.run, event.run.scenario
    print(f"harness: run {run.run_id}: {sc.name} -> {sc.target}, {sc.profile.describe()}"
          + (f"; live metrics at {run.metrics_url}" if run.metrics_url else "")
          + "".join(f"; {k} at {v}" for k, v in run.stack_urls.items()),
          file=sys.stderr, flush=True)


def handle(args: argparse.Namespace) -> int:
    """Signals: the scope of :func:`harness.cli.main.main` (or its own when called alone);
    once the run returned, a signal no longer interrupts: the result is written, exit 105."""
    with signal_scope() as signals:
        try:
            code = _handle(args, signals)
        except Interrupted as exc:  # before the first request: Run.execute stopped what it started
            print(f"harness: interrupted ({signal_name(exc.signum)}) before the first request: what it started "
                  "is stopped; nothing measured, nothing written", file=sys.stderr)
            return int(ExitCode.INTERRUPTED)
    return int(ExitCode.INTERRUPTED) if signals.interrupted else code


def _handle(args: argparse.Namespace, signals: Any) -> int:
    flags = {path: vars(args)[attr] for attr, path in _OVERRIDE_FLAGS}
    scenario = load_scenario(args.scenario, scenario_overrides(flags, args.set, args.threshold, args.fault),
                             smoke=args.smoke)
    if scenario is None:
        return int(ExitCode.USAGE)
    if args.segment:
        try:
            scenario = segment(scenario, args.segment)
        except ValueError as exc:
            return _error(f"--segment: {exc}")
    out = args.out or str(Path("results") / f"{scenario.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json")
    baseline = None
    if args.baseline:  # checked before the load, not after it
        try:
            baseline = load_result(args.baseline)
        except ResultError as exc:
            return _error(f"--baseline: {exc}")
    try:  # the gate's flags and --repeat, checked before the load too
        _gate_kwargs(args)
        if getattr(args, "repeat", 1) < 1:
            raise ValueError(f"--repeat: must be ≥ 1, got {args.repeat}")
    except ValueError as exc:
        return _error(str(exc))
    try:
        remote_write = remote_write_from_args(args)
    except RemoteWriteError as exc:
        return _error(str(exc))
    stack_mode = args.stack
    if stack_mode == "auto":
        stack_mode = "none" if missing_binaries_message(find_binaries()) else "local"
        if stack_mode == "none":
            print("harness: Prometheus/Alertmanager not installed: running without the alert stack "
                  "(install prometheus and prometheus-alertmanager to see alerts evaluated)", file=sys.stderr)
    if stack_mode == "local":
        msg = missing_binaries_message(find_binaries())
        if msg:
            return _error(msg)
        if args.no_metrics:
            return _error("--stack local scrapes the harness's /metrics: drop --no-metrics")
    if stack_mode == "external" and not args.prometheus_url:
        return _error("--stack external needs --prometheus-url")
    opts = RunOptions(metrics_port=None if args.no_metrics else args.metrics_port, metrics_addr=args.metrics_addr,
                      progress=args.progress, lag_bound_ms=args.lag_bound_ms, stack=stack_mode,
                      prometheus_url=args.prometheus_url, prometheus_job=args.prometheus_job,
                      remote_write=remote_write)
    opts.events.started.add_listener(_banner)
    annotations = annotations_from_args(args)  # None without --grafana-url / GRAFANA_URL
    if annotations is not None:
        annotations.subscribe(opts.events)
    try:
        with served(scenario) as (scenario, _service):  # the scenario's service:, started for this run
            result = _execute_repeats(scenario, opts, args, out)
    except ServiceError as exc:
        return _error(str(exc), ExitCode.ERROR)
    except (TargetError, StackConfigError) as exc:
        return _error(str(exc))
    except StackError as exc:
        return _error(str(exc), ExitCode.ERROR)
    except RuntimeError as exc:  # worker processes that could not start
        return _error(str(exc), ExitCode.ERROR)
    with signals.soft():  # the result exists: a signal from now on must not lose it
        if annotations is not None:
            for err in annotations.finish(result):  # the finished event posted the end; this returns the errors
                print(f"harness: Grafana annotation not posted: {err}", file=sys.stderr)
        path = write_result(result, out)
        if not args.quiet:
            print(format_summary(result, str(path)))
        return after_run(args, result, path, baseline=baseline)


def after_run(args: Any, result: Result, result_path: Path, *, baseline: Optional[Result] = None,
              stdout: Any = None) -> int:
    """Report and baseline gate after ``harness run`` wrote its result (``args``: its
    ``quiet`` and ``report`` flags; ``baseline``: the ``--baseline`` result, read before the
    load so a bad path fails at once); returns the exit code: the run's own failure wins,
    else REGRESSED (97) when the gate failed."""
    stdout = stdout or sys.stdout
    code = int(result["verdict"]["exit_code"])
    comparison: Optional[Dict[str, Any]] = None
    if baseline is not None:
        comparison = compare(baseline, result, **_gate_kwargs(args))
        if not args.quiet:
            print("\n" + format_comparison(comparison), file=stdout)
        code = gate_exit_code(code, comparison)
    if args.report is not None:
        out = args.report or str(Path(result_path).with_suffix(".html"))
        path = write_report(result, out, comparison=comparison, baseline=baseline)
        print(f"report: {path}", file=stdout)
    for attr, fmt in CI_OUTPUTS:
        target = getattr(args, attr, None)
        if not target:
            continue
        try:
            path = write_ci(result, fmt, target, comparison=comparison)
        except OSError as exc:  # the result is written; a CI file that could not be is still a failed step
            print(f"harness: --{attr.replace('_', '-')}: cannot write {target}: {exc.strerror or exc}", file=sys.stderr)
            code = code or int(ExitCode.ERROR)
            continue
        if not args.quiet:
            print(f"{fmt}: {path}", file=stdout)
    return code


def _gate_kwargs(args: Any) -> Dict[str, Any]:
    """The gate flags (``add_gate_arguments``) when ``args`` has them, else the defaults."""
    return gate_options(args) if hasattr(args, "floor_ms") else {}


def _execute_repeats(scenario: Scenario, opts: RunOptions, args: Any, out: str) -> Result:
    """``--repeat N``: N runs one after another, each kept as ``<out>.repeat-K.json``, pooled
    for the gate (:func:`harness.result.compare.pool_results`); an interrupted or aborted
    repeat ends the series.  One run without the flag.

    A signal at any moment of repeat k>1 (its target or stack starting, its warm-up, between
    two repeats) gives the pooled result of the repeats completed so far, marked
    interrupted (exit 105), as one interrupted run gives its partial result: those repeats
    were measured and must not be lost.  Before repeat 1 measured anything the signal
    propagates as for a single run (nothing measured, nothing written)."""
    n = int(getattr(args, "repeat", 1))
    if n <= 1:
        return Run(scenario, opts).execute()
    parts = []
    try:
        for k in range(1, n + 1):
            part = Run(scenario, opts).execute()
            parts.append(part)
            kept = write_result(part, Path(out).with_suffix(f".repeat-{k}.json"))
            print(f"harness: repeat {k}/{n}: {kept} (exit {part['verdict']['exit_code']})", file=sys.stderr)
            if part.get("status") in ("interrupted", "aborted"):
                break
    except Interrupted as exc:
        if not parts:
            raise
        print(f"harness: interrupted ({signal_name(exc.signum)}) while repeat {len(parts) + 1}/{n} was starting: "
              f"pooling the {len(parts)} completed", file=sys.stderr)
        return _interrupted_pool(pool_results(parts), planned=n)
    return pool_results(parts)


def _interrupted_pool(pooled: Result, *, planned: int) -> Result:
    """The pooled result of the repeats completed before a signal, marked as an interrupted
    run is (``status``, exit code 105, not passed), with the number of repeats planned."""
    pooled["status"] = "interrupted"
    verdict = dict(pooled.get("verdict") or {})
    verdict.update(passed=False, exit_code=int(ExitCode.INTERRUPTED))
    pooled["verdict"] = verdict
    if "repeats" in pooled:
        pooled["repeats"]["planned"] = planned
        pooled["repeats"]["interrupted"] = True
    return pooled
