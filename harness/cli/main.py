"""``harness``: run a scenario and judge it.

    harness run                         # the default scenario on the embedded workloads
    harness run scenario.yaml --rate 80 --duration 1m --threshold 'latency=p(95)<100ms'
    harness validate scenario.yaml

Exit codes: 0 pass, 99 thresholds failed (k6's code), 98 invalid run (the generator was
the bottleneck), 105 interrupted, 2 usage error (bad flags or scenario).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml

from harness.config.thresholds import EXIT_USAGE

__all__ = ["main", "build_parser"]


def _kv(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return key.strip(), parsed


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness", description="Latency-budget load harness.",
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = p.add_subparsers(dest="command")

    run = sub.add_parser("run", help="run a scenario (default: the embedded workloads)")
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
    g.add_argument("--threshold", action="append", type=_kv, default=[], metavar="METRIC=EXPR",
                   help="e.g. 'latency=p(95)<100ms' (repeatable; replaces the scenario's thresholds)")
    g.add_argument("--fault", action="append", type=_kv, default=[], metavar="NAME=VALUE",
                   help="fault for the embedded workloads, e.g. extra_latency_seconds=0.15, error_rate=0.05")
    g.add_argument("--set", action="append", type=_kv, default=[], metavar="PATH=VALUE",
                   help="any scenario field by dotted path, e.g. profile.spike_rate=150")
    o = run.add_argument_group("output and self-checks")
    o.add_argument("--out", help="result JSON path (default: results/<scenario>-<time>.json)")
    o.add_argument("--metrics-port", type=int, default=0, help="port for the live /metrics (0: a free port)")
    o.add_argument("--metrics-addr", default="127.0.0.1")
    o.add_argument("--no-metrics", action="store_true", help="do not serve /metrics")
    o.add_argument("--progress", choices=("auto", "tty", "plain", "off"), default="auto")
    o.add_argument("--lag-bound-ms", type=float, default=5.0, help="schedule-lag p99 above which the run is invalid")
    o.add_argument("--quiet", "-q", action="store_true", help="no summary on stdout")
    st = run.add_argument_group("Prometheus stack (alerts evaluated by the real rules on this run)")
    st.add_argument("--stack", choices=("none", "local", "auto", "external"), default="none",
                    help="local: start Prometheus + Alertmanager from PATH for this run; auto: local when "
                         "the binaries are installed; external: ask --prometheus-url")
    st.add_argument("--prometheus-url", help="an existing Prometheus that scrapes this run (with --stack external)")
    st.add_argument("--prometheus-job", default="harness", help="its job label for the harness's /metrics")
    from harness.cli.reports import add_run_arguments as add_report_arguments, add_subcommands

    add_report_arguments(run)  # --baseline FILE, --report [PATH], --smoke
    add_subcommands(sub)       # report, compare, search, soak, scenarios
    from harness.observe.annotations import add_run_arguments

    add_run_arguments(run)  # --grafana-url, --grafana-dashboard

    mg = sub.add_parser("merge", help="merge results of N workers/pods into one (exact percentiles, thresholds)")
    mg.add_argument("results", nargs="+", help="result JSON files")
    mg.add_argument("--out", required=True, help="merged result JSON path")
    mg.add_argument("--quiet", "-q", action="store_true")

    stack = sub.add_parser("stack", help="the local Prometheus + Alertmanager on their own")
    stack_sub = stack.add_subparsers(dest="stack_command")
    up = stack_sub.add_parser("up", help="start them with the project's rules, print the URLs, wait for Ctrl-C")
    up.add_argument("--scrape", action="append", default=[], metavar="[JOB=]HOST:PORT",
                    help="a /metrics endpoint to scrape (repeatable), e.g. service=127.0.0.1:8000")

    from harness.studies import scale_test

    scale_test.add_parser(sub)  # harness scale-test

    sub.add_parser("targets", help="list the registered targets and payload generators (entry points)")

    val = sub.add_parser("validate", help="check a scenario file and print it normalised")
    val.add_argument("scenario", nargs="?")
    val.add_argument("--set", action="append", type=_kv, default=[], metavar="PATH=VALUE")
    from harness.observe.dashboards import register as register_dashboards

    register_dashboards(sub)  # harness dashboards generate | push
    return p


def _overrides(args: argparse.Namespace) -> Dict[str, Any]:
    ov: Dict[str, Any] = {}
    for attr, path in (("name", "name"), ("target", "target"), ("payload", "payload"), ("duration", "duration"),
                       ("profile_type", "profile.type"), ("rate", "profile.rate"), ("vus", "profile.vus"),
                       ("timeout", "timeout"), ("workers", "executor.workers"), ("threads", "executor.threads"),
                       ("max_in_flight", "executor.max_in_flight"), ("seed", "seed")):
        v = getattr(args, attr, None)
        if v is not None:
            ov[path] = v
    for key, value in getattr(args, "set", []):
        ov[key] = value
    if getattr(args, "threshold", None):
        ths: Dict[str, List[str]] = {}
        for metric, expr in args.threshold:
            ths.setdefault(metric, []).append(str(expr))
        ov["thresholds"] = ths
    if getattr(args, "fault", None):
        ov["faults"] = {k: v for k, v in args.fault}
    return ov


def _load(args: argparse.Namespace):
    from harness.config.scenario import ScenarioError, load_scenario

    try:
        from harness.config.library import load_for_cli

        return load_for_cli(args.scenario, _overrides(args), smoke=getattr(args, "smoke", False))
    except ScenarioError as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return None


def _segment(scenario: Any, text: str) -> Any:
    from dataclasses import replace

    index_s, sep, count_s = text.partition("/")
    if not sep or not index_s.strip().isdigit() or not count_s.strip().isdigit():
        raise ValueError(f"expected INDEX/COUNT such as 0/4, got {text!r}")
    index, count = int(index_s), int(count_s)
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"INDEX must be in [0, COUNT) and COUNT >= 1, got {index}/{count}")
    return replace(scenario, profile=scenario.profile.segment(index, count))


def _cmd_run(args: argparse.Namespace) -> int:
    from harness.run.runner import Run, RunOptions
    from harness.result.summary import format_summary, write_result
    from harness.observe.stack import StackConfigError, StackError
    from harness.targets import TargetError

    scenario = _load(args)
    if scenario is None:
        return EXIT_USAGE
    if args.segment:
        try:
            scenario = _segment(scenario, args.segment)
        except ValueError as exc:
            print(f"harness: --segment: {exc}", file=sys.stderr)
            return EXIT_USAGE
    out = args.out or str(Path("results") / f"{scenario.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json")
    baseline = None
    if getattr(args, "baseline", None):  # checked before the load, not after it
        from harness.result.html import load_result

        try:
            baseline = load_result(args.baseline)
        except (OSError, ValueError) as exc:
            print(f"harness: --baseline: {exc}", file=sys.stderr)
            return EXIT_USAGE
    from harness.observe.stack import find_binaries, missing_binaries_message

    stack_mode = args.stack
    if stack_mode == "auto":
        stack_mode = "none" if missing_binaries_message(find_binaries()) else "local"
        if stack_mode == "none":
            print("harness: Prometheus/Alertmanager not installed: running without the alert stack "
                  "(install prometheus and prometheus-alertmanager to see alerts evaluated)", file=sys.stderr)
    if stack_mode == "local":
        msg = missing_binaries_message(find_binaries())
        if msg:
            print(f"harness: {msg}", file=sys.stderr)
            return EXIT_USAGE
        if args.no_metrics:
            print("harness: --stack local scrapes the harness's /metrics: drop --no-metrics", file=sys.stderr)
            return EXIT_USAGE
    if stack_mode == "external" and not args.prometheus_url:
        print("harness: --stack external needs --prometheus-url", file=sys.stderr)
        return EXIT_USAGE
    from harness.observe.annotations import chain_on_started, from_args as annotations_from_args

    annotations = annotations_from_args(args)  # None without --grafana-url / GRAFANA_URL
    opts = RunOptions(metrics_port=None if args.no_metrics else args.metrics_port, metrics_addr=args.metrics_addr,
                      progress=args.progress, lag_bound_ms=args.lag_bound_ms, stack=stack_mode,
                      prometheus_url=args.prometheus_url, prometheus_job=args.prometheus_job,
                      on_started=chain_on_started(lambda r: print(f"harness: run {r.run_id}: {scenario.name} -> {scenario.target}, "
                                                 f"{scenario.profile.describe()}"
                                                 + (f"; live metrics at {r.metrics_url}" if r.metrics_url else "")
                                                 + "".join(f"; {k} at {v}" for k, v in r.stack_urls.items()),
                                                 file=sys.stderr, flush=True),
                                                  annotations.on_started if annotations else None))
    try:
        run = Run(scenario, opts)
        result = run.execute()
    except TargetError as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StackConfigError as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StackError as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:  # worker processes that could not start
        print(f"harness: {exc}", file=sys.stderr)
        return 1
    if annotations is not None:
        for err in annotations.finish(result):
            print(f"harness: Grafana annotation not posted: {err}", file=sys.stderr)
    path = write_result(result, out)
    if not args.quiet:
        print(format_summary(result, str(path)))
    from harness.cli.reports import after_run

    return after_run(args, result, path, baseline=baseline)


def _cmd_validate(args: argparse.Namespace) -> int:
    scenario = _load(args)
    if scenario is None:
        return EXIT_USAGE
    print(yaml.safe_dump(scenario.to_dict(), sort_keys=False).rstrip())
    return 0


def _cmd_targets(args: argparse.Namespace) -> int:
    from harness.targets.registry import describe

    for line in describe():
        print(line)
    return 0


def _cmd_merge(args: argparse.Namespace) -> int:
    from harness.result.merge import MergeError, load_result, merge_results
    from harness.result.summary import format_summary, write_result

    try:
        parts = [load_result(p) for p in args.results]
        merged = merge_results(parts, args.results)
    except MergeError as exc:
        print(f"harness: merge: {exc}", file=sys.stderr)
        return EXIT_USAGE
    path = write_result(merged, args.out)
    if not args.quiet:
        print(format_summary(merged, str(path)))
    return int(merged["verdict"]["exit_code"])


def _cmd_stack(args: argparse.Namespace) -> int:
    import time

    from harness.observe.stack import LocalStack, StackConfigError, StackError, WebhookReceiver

    if args.stack_command != "up":
        print("harness: stack: expected `harness stack up`", file=sys.stderr)
        return EXIT_USAGE
    jobs: Dict[str, List[str]] = {}
    for item in args.scrape:
        job, sep, addr = item.rpartition("=")
        job = job if sep else "target"
        if ":" not in addr or not addr.rsplit(":", 1)[1].isdigit():
            print(f"harness: --scrape: expected [JOB=]HOST:PORT, got {item!r}", file=sys.stderr)
            return EXIT_USAGE
        jobs.setdefault(job, []).append(addr)
    webhook = WebhookReceiver()
    try:
        with LocalStack(jobs, webhook_url=webhook.url) as stack:
            print(f"prometheus:   {stack.prometheus_url}\nalertmanager: {stack.alertmanager_url}\n"
                  f"webhook:      {webhook.url}\nscraping:     {jobs or 'nothing (add --scrape JOB=HOST:PORT)'}\n"
                  "Ctrl-C stops both and removes their data.", flush=True)
            seen = 0
            try:
                while True:
                    time.sleep(1)
                    notes = webhook.summary()
                    for n in notes[seen:]:
                        names = ", ".join(f"{a['alertname']}({a['severity']}) {a['status']}" for a in n["alerts"])
                        print(f"notification to {n['receiver']}: {names}", flush=True)
                    seen = len(notes)
            except KeyboardInterrupt:
                print("stopping", file=sys.stderr)
    except StackError as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, StackConfigError) or "install" in str(exc) else 1
    finally:
        webhook.close()
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    handler = getattr(args, "_handler", None)
    if handler is not None:
        return int(handler(args))
    return {"run": _cmd_run, "validate": _cmd_validate, "stack": _cmd_stack, "merge": _cmd_merge,
            "targets": _cmd_targets}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
