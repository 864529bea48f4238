"""``harness scale-test --hpa NAME --target URL``: drive a ramp at a Service while sampling
its HPA, Deployment and Pods (:mod:`harness.studies.scale_test`).

``harness scale-test --replicas 1,2,4,8 --deployment NAME --target URL``: set the
Deployment to each replica count, wait for its Pods, find the knee at each, report knee
per replica and scaling efficiency, restore the count (:mod:`harness.studies.replica_sweep`).

Exit 0 pass, 99 a scale verdict or a threshold failed (98 invalid, 105 interrupted: the
run's own), 2 usage (a bad flag, no kubeconfig, an object not found, a forbidden read, a
non-HTTP target), 1 the load could not start (or, sweeping, the Pods never got ready)."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Dict

from harness.cli.args import add_set_argument, parse_kv, scenario_overrides
from harness.config.durations import parse_duration
from harness.config.scenario import ScenarioError
from harness.exitcodes import ExitCode
from harness.lifecycle import Interrupted, signal_name, signal_scope
from harness.result.schema import write_result
from harness.result.summary import format_summary
from harness.run.runner import Run, RunOptions
from harness.studies.kube import Kube, KubeError
from harness.studies.replica_sweep import (SweepConfig, build_sweep_scenario, format_sweep, parse_replicas,
                                           run_sweep, sweep_exit_code)
from harness.studies.search import SearchError, SearchSettings
from harness.studies.scale_test import (DEFAULT_DURATION, DEFAULT_FROM_RATE, DEFAULT_TO_RATE, ScaleTestConfig,
                                        build_scenario, format_verdicts, preflight, run_scale_test)
from harness.targets import TargetError

__all__ = ["register", "handle", "kube_from_args"]

#: flag attribute -> scenario field (dotted path)
_OVERRIDE_FLAGS = (("target", "target"), ("payload", "payload"), ("duration", "duration"),
                   ("profile_type", "profile.type"), ("from_rate", "profile.from_rate"),
                   ("to_rate", "profile.to_rate"), ("ramp_duration", "profile.ramp_duration"),
                   ("rate", "profile.rate"), ("timeout", "timeout"), ("threads", "executor.threads"),
                   ("max_in_flight", "executor.max_in_flight"))


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``scale-test`` to ``harness``'s subparsers."""
    p = subparsers.add_parser(
        "scale-test", help="drive a ramp at a Service while sampling its HPA and Deployment (Kubernetes API)",
        description="Drive a ramp (or any scenario profile) against the Service URL while sampling the HPA, "
                    "the Deployment and its Pods every --interval; write the harness result with a scale_test "
                    "section (timeline and verdicts). With --replicas 1,2,4,8 instead of --hpa: set the "
                    "Deployment to each count (its scale subresource), wait for the Pods, run the knee search "
                    "at each, report knee per replica and scaling efficiency, and restore the original count. "
                    "Exit 0 pass, 99 a verdict or threshold failed, 2 usage.")
    p.add_argument("scenario", nargs="?", help="scenario YAML (default: a ramp from --from-rate to --to-rate over "
                                               "--duration, no latency thresholds)")
    k = p.add_argument_group("Kubernetes")
    k.add_argument("--hpa", help="the HorizontalPodAutoscaler (autoscaling/v2) to watch (or --replicas)")
    k.add_argument("--namespace", "-n", help="default: the kubeconfig context's namespace, in a pod its own, "
                                             "else 'default'")
    k.add_argument("--deployment", help="default: the HPA's scaleTargetRef (required with --replicas)")
    k.add_argument("--kubeconfig", help="default: $KUBECONFIG, then ~/.kube/config")
    k.add_argument("--context", help="kubeconfig context (default: its current-context)")
    k.add_argument("--in-cluster", action="store_true",
                   help="use the pod's ServiceAccount (automatic in a pod without --kubeconfig/KUBECONFIG)")
    k.add_argument("--server", help="an API server URL without credentials, e.g. `kubectl proxy`'s "
                                    "http://127.0.0.1:8001 (instead of a kubeconfig)")
    k.add_argument("--interval", help="sampling interval (default 5s; with --replicas: how often the Pods "
                                      "are polled while waiting for them, default 2s)")
    k.add_argument("--no-pods", action="store_true", help="do not list the Pods each sample")
    g = p.add_argument_group("load (flags > HARNESS_* env > scenario file > scale-test defaults)")
    g.add_argument("--target", help="the Service URL, e.g. http://feature-service.lbh.svc:8000/v1/features")
    g.add_argument("--payload", help="module:function giving each request its body")
    g.add_argument("--duration", help=f"default {DEFAULT_DURATION}")
    g.add_argument("--profile", dest="profile_type", help="constant | ramp | spike | step | stages (default ramp)")
    g.add_argument("--from-rate", type=float, help=f"ramp start, requests/s (default {DEFAULT_FROM_RATE:g})")
    g.add_argument("--to-rate", type=float, help=f"ramp end, requests/s (default {DEFAULT_TO_RATE:g})")
    g.add_argument("--ramp-duration", help="default: the whole duration")
    g.add_argument("--rate", type=float, help="requests/s for a constant profile")
    g.add_argument("--timeout", help="per-request timeout, e.g. 5s")
    g.add_argument("--threads", type=int)
    g.add_argument("--max-in-flight", type=int, dest="max_in_flight")
    g.add_argument("--threshold", action="append", type=parse_kv, default=[], metavar="METRIC=EXPR")
    add_set_argument(g)
    v = p.add_argument_group("verdicts")
    v.add_argument("--budget-ms", type=float, default=100.0, help="p95 budget for the recovery time (default 100)")
    v.add_argument("--max-scale-up-seconds", type=float, default=300.0,
                   help="metric above target -> first scale-up must take at most this (default 300)")
    v.add_argument("--max-recovery-seconds", type=float,
                   help="fail when p95 takes longer than this to return under budget (default: report only)")
    v.add_argument("--watch-scale-down", metavar="DURATION",
                   help="after the load, keep sampling until the replicas are back to their initial count, "
                        "at most DURATION (e.g. 6m: the HPA's default scale-down window is 5m; default: off)")
    v.add_argument("--max-scale-down-seconds", type=float,
                   help="fail when the desired replicas take longer than this after the load to return "
                        "(needs --watch-scale-down; default: report only)")
    v.add_argument("--min-efficiency", type=float,
                   help="fail when end throughput per replica / one-replica throughput is below this "
                        "(default: report only)")
    w = p.add_argument_group("replica sweep (--replicas; the knee search's settings as for `harness search`)")
    w.add_argument("--replicas", metavar="N,N,...", help="sweep these fixed replica counts, e.g. 1,2,4,8 "
                                                         "(instead of watching an HPA; detach the HPA first)")
    w.add_argument("--ready-timeout", default="5m", help="per count: how long to wait for the Pods (default 5m)")
    w.add_argument("--settle", default="0s", help="per count: wait this long after the Pods are ready (default 0s)")
    w.add_argument("--start-rate", type=float, default=10.0, help="search: first rate, requests/s (default 10)")
    w.add_argument("--max-rate", type=float, default=5000.0, help="search: highest rate (default 5000)")
    w.add_argument("--factor", type=float, default=2.0, help="search: growth factor (default 2)")
    w.add_argument("--precision", type=float, default=0.05, help="search: bracket width (fraction, default 0.05)")
    w.add_argument("--step", default="5s", help="search: each step's duration (default 5s)")
    w.add_argument("--min-achieved", type=float, default=0.95, help="search: achieved/offered a pass needs "
                                                                     "(default 0.95)")
    w.add_argument("--max-steps", type=int, default=30, help="search: steps per count (default 30)")
    w.add_argument("--no-restore", action="store_true", help="leave the Deployment at the last count")
    o = p.add_argument_group("output")
    o.add_argument("--out", help="result JSON path (default: results/<scenario>-scale-<time>.json)")
    o.add_argument("--metrics-port", type=int, default=None, help="serve the harness's live /metrics on this port "
                                                                  "(0: a free one; default: none)")
    o.add_argument("--metrics-addr", default="127.0.0.1")
    o.add_argument("--progress", choices=("auto", "tty", "plain", "off"), default="off",
                   help="the harness's own progress line (default off: the sampler prints a line per sample)")
    o.add_argument("--lag-bound-ms", type=float, default=5.0)
    o.add_argument("--quiet", "-q", action="store_true")
    p.set_defaults(handler=handle)
    return p


def kube_from_args(args: argparse.Namespace) -> Kube:
    """The Kubernetes API client the flags name (``--server``, else a kubeconfig or in-cluster)."""
    if args.server:
        return Kube.from_host(args.server, namespace=args.namespace)
    return Kube.from_config(args.kubeconfig, args.context, True if args.in_cluster else None)


def _usage(msg: str) -> int:
    print(f"harness: scale-test: {msg}", file=sys.stderr)
    return int(ExitCode.USAGE)


def _positive_duration(flag: str, text: str) -> float:
    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise ValueError(f"{flag}: {exc}") from None
    if value <= 0:
        raise ValueError(f"{flag}: must be > 0, got {text!r}")
    return value


def handle(args: argparse.Namespace) -> int:
    if args.replicas is not None:
        if args.hpa is not None:
            return _usage("--replicas and --hpa: give one (--hpa watches an autoscaler, --replicas sets fixed "
                          "counts)")
        return _handle_sweep(args)
    if args.hpa is None:
        return _usage("--hpa NAME (watch an autoscaler) or --replicas N,N,... with --deployment (sweep fixed "
                      "counts) is required")
    try:
        interval = _positive_duration("--interval", args.interval or "5s")
        watch_down = (_positive_duration("--watch-scale-down", args.watch_scale_down)
                      if args.watch_scale_down is not None else 0.0)
    except ValueError as exc:
        return _usage(str(exc))
    for flag, val in (("--budget-ms", args.budget_ms), ("--max-scale-up-seconds", args.max_scale_up_seconds)):
        if val <= 0:
            return _usage(f"{flag}: must be > 0, got {val:g}")
    if args.max_scale_down_seconds is not None:
        if args.max_scale_down_seconds <= 0:
            return _usage(f"--max-scale-down-seconds: must be > 0, got {args.max_scale_down_seconds:g}")
        if watch_down < args.max_scale_down_seconds:
            return _usage("--max-scale-down-seconds: needs --watch-scale-down at least as long "
                          f"(got {watch_down:g}s of watching)")
    flags = {path: vars(args)[attr] for attr, path in _OVERRIDE_FLAGS}
    try:
        scenario = build_scenario(args.scenario, scenario_overrides(flags, args.set, args.threshold))
    except ScenarioError as exc:
        return _usage(str(exc))
    try:
        kube = kube_from_args(args)
    except KubeError as exc:
        return _usage(str(exc))
    cfg = ScaleTestConfig(hpa=args.hpa, namespace=args.namespace or kube.default_namespace,
                          deployment=args.deployment, interval_s=interval, budget_ms=args.budget_ms,
                          max_scale_up_s=args.max_scale_up_seconds, max_recovery_s=args.max_recovery_seconds,
                          min_efficiency=args.min_efficiency, list_pods=not args.no_pods,
                          watch_down_s=watch_down, max_scale_down_s=args.max_scale_down_seconds)
    kube.request_timeout_s = max(1.0, min(5.0, interval))
    stream = None if args.quiet else sys.stderr
    try:
        pre = preflight(kube, cfg)
        if stream is not None:
            print(f"harness: scale-test: {kube.source}; HPA {cfg.namespace}/{cfg.hpa} "
                  f"(min {pre.hpa.min_replicas}, max {pre.hpa.max_replicas}, desired {pre.hpa.desired_replicas}) "
                  f"-> Deployment {pre.deployment}; load {scenario.profile.describe()} -> {scenario.target}",
                  file=stream, flush=True)
        opts = RunOptions(metrics_port=args.metrics_port, metrics_addr=args.metrics_addr, progress=args.progress,
                          lag_bound_ms=args.lag_bound_ms)
        result = run_scale_test(scenario, kube, cfg, opts, stream=stream, pre=pre)
    except (KubeError, TargetError) as exc:
        return _usage(str(exc))
    except RuntimeError as exc:
        print(f"harness: scale-test: {exc}", file=sys.stderr)
        return int(ExitCode.ERROR)
    finally:
        kube.close()
    out = args.out or str(Path("results") / f"{scenario.name}-scale-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json")
    path = write_result(result, out)
    if not args.quiet:
        print(format_summary(result, str(path)))
        print(format_verdicts(result))
    return int(result["verdict"]["exit_code"])


def _handle_sweep(args: argparse.Namespace) -> int:
    """``--replicas``: validate everything before the first PATCH; a signal stops the step
    that runs, restores the replica count and writes what was measured (exit 105)."""
    try:
        counts = parse_replicas(args.replicas)
        poll = _positive_duration("--interval", args.interval or "2s")
        ready_timeout = _positive_duration("--ready-timeout", args.ready_timeout)
        settle = parse_duration(args.settle)
        step = _positive_duration("--step", args.step)
    except ValueError as exc:
        return _usage(str(exc))
    if settle < 0:
        return _usage(f"--settle: must be >= 0, got {args.settle!r}")
    if not args.deployment:
        return _usage("--replicas: needs --deployment NAME (the Deployment whose replicas the sweep sets)")
    if args.budget_ms <= 0:
        return _usage(f"--budget-ms: must be > 0, got {args.budget_ms:g}")
    for flag in ("watch_scale_down", "max_scale_down_seconds", "max_recovery_seconds"):
        if getattr(args, flag) is not None:
            return _usage(f"--{flag.replace('_', '-')}: only for --hpa (the sweep sets the replicas itself)")
    if args.min_efficiency is not None and not 0 < args.min_efficiency <= 2:
        return _usage(f"--min-efficiency: must be in (0, 2], got {args.min_efficiency:g}")
    settings = SearchSettings(start_rate=args.start_rate, max_rate=args.max_rate, factor=args.factor,
                              precision=args.precision, step_duration_s=step, min_achieved=args.min_achieved,
                              max_steps=args.max_steps)
    try:
        settings.check()
    except SearchError as exc:
        return _usage(f"search settings: {exc}")
    flags = {path: vars(args)[attr] for attr, path in _OVERRIDE_FLAGS if attr in ("target", "payload", "timeout",
                                                                              "threads", "max_in_flight")}
    try:
        scenario = build_sweep_scenario(args.scenario, scenario_overrides(flags, args.set, args.threshold),
                                        budget_ms=args.budget_ms)
    except ScenarioError as exc:
        return _usage(str(exc))
    if scenario.closed_loop:
        return _usage(f"scenario {scenario.name!r} is closed-loop (users): there is no arrival rate to search")
    try:
        kube = kube_from_args(args)
    except KubeError as exc:
        return _usage(str(exc))
    cfg = SweepConfig(deployment=args.deployment, namespace=args.namespace or kube.default_namespace,
                      replicas=counts, ready_timeout_s=ready_timeout, poll_s=poll, settle_s=settle,
                      min_efficiency=args.min_efficiency, list_pods=not args.no_pods, restore=not args.no_restore,
                      search=settings)
    kube.request_timeout_s = max(1.0, min(5.0, poll * 2))
    stream = None if args.quiet else sys.stderr
    out = args.out or str(Path("results") / f"{scenario.name}-replicas-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json")
    opts = RunOptions(metrics_port=args.metrics_port, metrics_addr=args.metrics_addr, progress=args.progress,
                      lag_bound_ms=args.lag_bound_ms, install_signal_handlers=True)
    doc: Dict[str, Any] = {}
    with signal_scope() as signals:
        def run_step(sc: Any) -> Any:
            signals.check()  # a signal during the last step: no next one
            return Run(sc, opts).execute()

        def on_step(st: Any) -> None:
            if stream is not None:
                print(f"  step {st['rate']:.4g} rps: "
                      + ("pass" if st["passed"] else "INVALID" if not st["valid"] else "fail"), file=stream, flush=True)

        try:
            run_sweep(scenario, kube, cfg, stream=stream, run_step=run_step, on_step=on_step, doc=doc)
            code = sweep_exit_code(doc)
        except Interrupted as exc:
            print(f"harness: scale-test: interrupted ({signal_name(exc.signum)}) after "
                  f"{len(doc.get('counts') or [])} replica count(s)", file=sys.stderr)
            code = ExitCode.INTERRUPTED
        except (KubeError, SearchError, TargetError) as exc:
            if not doc.get("restored"):   # nothing changed (a forbidden PATCH, no Deployment): no file
                return _usage(str(exc))
            print(f"harness: scale-test: {exc}", file=sys.stderr)
            doc.setdefault("error", str(exc))
            code = ExitCode.USAGE
        finally:
            kube.close()
        if not doc:
            return int(ExitCode.INTERRUPTED)   # interrupted before the Deployment was even read
        with signals.soft():  # the sweep is over: a signal now must not lose its file
            path = write_result(doc, out)
            if not args.quiet:
                print(format_sweep(doc))
                print(f"result: {path}")
    return int(ExitCode.INTERRUPTED) if signals.interrupted else int(code)
