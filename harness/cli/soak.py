"""``harness soak RESULT``: the leak verdict (RSS growth per request against the budget, with
an autocorrelation-robust interval) and latency stability of a long run
(:mod:`harness.studies.soak`). Exit 0 flat (or inconclusive without ``--strict``), 99 leak
or drifting latency, 2 an unreadable result or a bad flag."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from harness.exitcodes import ExitCode
from harness.result.schema import ResultError, load_result
from harness.studies.soak import BUDGET_BYTES_PER_REQUEST, MIB, analyze, format_soak, soak_exit_code

__all__ = ["register", "handle"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("soak", help="leak verdict (RSS growth per request ± its error) and latency stability "
                                           "of a long run")
    p.add_argument("result", help="a result JSON of a long run (e.g. `harness run soak --out soak.json`)")
    p.add_argument("--budget-bytes-per-request", type=float, default=BUDGET_BYTES_PER_REQUEST,
                   help="the gate: RSS growth allowed per request (default 100000: 1 GB per 10,000 extractions)")
    p.add_argument("--tolerance-mib-per-hour", type=float, default=None,
                   help="also gate on growth per hour (default: not gated, reported only)")
    p.add_argument("--warmup-fraction", type=float, default=0.2, help="share of the run dropped as warm-up")
    p.add_argument("--min-warmup-s", type=float, default=5.0, help="seconds dropped as warm-up at least")
    p.add_argument("--min-duration-s", type=float, default=20.0,
                   help="seconds after the warm-up needed for a leak or flat verdict")
    p.add_argument("--min-samples", type=int, default=15)
    p.add_argument("--strict", action="store_true", help="an inconclusive verdict fails too")
    p.set_defaults(handler=handle)
    return p


def handle(args: argparse.Namespace, *, stdout: Any = None, stderr: Any = None) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    checks = (("--warmup-fraction", 0.0 <= args.warmup_fraction < 1.0, "must be in [0, 1)", args.warmup_fraction),
              ("--budget-bytes-per-request", args.budget_bytes_per_request > 0, "must be > 0",
               args.budget_bytes_per_request),
              ("--tolerance-mib-per-hour", args.tolerance_mib_per_hour is None or args.tolerance_mib_per_hour >= 0,
               "must be >= 0", args.tolerance_mib_per_hour),
              ("--min-warmup-s", args.min_warmup_s >= 0, "must be >= 0", args.min_warmup_s),
              ("--min-duration-s", args.min_duration_s >= 0, "must be >= 0", args.min_duration_s),
              ("--min-samples", args.min_samples >= 3, "must be >= 3", args.min_samples))
    for flag, ok, what, value in checks:
        if not ok:
            print(f"harness: soak: {flag}: {what}, got {value:g}", file=stderr)
            return int(ExitCode.USAGE)
    try:
        result = load_result(args.result)
    except ResultError as exc:
        print(f"harness: soak: {exc}", file=stderr)
        return int(ExitCode.USAGE)
    tol = None if args.tolerance_mib_per_hour is None else args.tolerance_mib_per_hour * MIB
    a = analyze(result, budget_bytes_per_request=args.budget_bytes_per_request, tolerance_bytes_per_hour=tol,
                warmup_fraction=args.warmup_fraction, min_warmup_s=args.min_warmup_s,
                min_duration_s=args.min_duration_s, min_samples=args.min_samples)
    print(format_soak(a), file=stdout)
    return int(soak_exit_code(a, strict=args.strict))
