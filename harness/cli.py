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

from harness.thresholds import EXIT_USAGE

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
    run.add_argument("scenario", nargs="?", help="scenario YAML file (omit for the default scenario)")
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

    val = sub.add_parser("validate", help="check a scenario file and print it normalised")
    val.add_argument("scenario", nargs="?")
    val.add_argument("--set", action="append", type=_kv, default=[], metavar="PATH=VALUE")
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
    from harness.scenario import ScenarioError, load_scenario

    try:
        return load_scenario(args.scenario, _overrides(args))
    except ScenarioError as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return None
    except OSError as exc:
        print(f"harness: scenario: cannot read {args.scenario!r}: {exc.strerror or exc}", file=sys.stderr)
        return None


def _cmd_run(args: argparse.Namespace) -> int:
    from harness.runner import Run, RunOptions
    from harness.summary import format_summary, write_result
    from harness.targets import TargetError

    scenario = _load(args)
    if scenario is None:
        return EXIT_USAGE
    out = args.out or str(Path("results") / f"{scenario.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json")
    opts = RunOptions(metrics_port=None if args.no_metrics else args.metrics_port, metrics_addr=args.metrics_addr,
                      progress=args.progress, lag_bound_ms=args.lag_bound_ms,
                      on_started=lambda r: print(f"harness: run {r.run_id}: {scenario.name} -> {scenario.target}, "
                                                 f"{scenario.profile.describe() if hasattr(scenario.profile, 'describe') else scenario.profile}"
                                                 + (f"; live metrics at {r.metrics_url}" if r.metrics_url else ""),
                                                 file=sys.stderr, flush=True))
    try:
        run = Run(scenario, opts)
        result = run.execute()
    except TargetError as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RuntimeError as exc:  # worker processes that could not start
        print(f"harness: {exc}", file=sys.stderr)
        return 1
    path = write_result(result, out)
    if not args.quiet:
        print(format_summary(result, str(path)))
    return int(result["verdict"]["exit_code"])


def _cmd_validate(args: argparse.Namespace) -> int:
    scenario = _load(args)
    if scenario is None:
        return EXIT_USAGE
    print(yaml.safe_dump(scenario.to_dict(), sort_keys=False).rstrip())
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    return {"run": _cmd_run, "validate": _cmd_validate}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
