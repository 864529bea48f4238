"""``harness soak RESULT``: the leak verdict (RSS slope ± its error) and latency stability of
a long run (:mod:`harness.studies.soak`). Exit 0 flat (or inconclusive without
``--strict``), 99 leak or drifting latency, 2 an unreadable result or a bad flag."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from harness.exitcodes import ExitCode
from harness.result.schema import ResultError, load_result
from harness.studies.soak import MIB, analyze, format_soak, soak_exit_code

__all__ = ["register", "handle"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("soak", help="leak verdict (RSS slope ± its error) and latency stability of a long run")
    p.add_argument("result", help="a result JSON of a long run (e.g. `harness run soak --out soak.json`)")
    p.add_argument("--tolerance-mib-per-hour", type=float, default=50.0)
    p.add_argument("--warmup-fraction", type=float, default=0.2)
    p.add_argument("--min-samples", type=int, default=10)
    p.add_argument("--strict", action="store_true", help="an inconclusive verdict fails too")
    p.set_defaults(handler=handle)
    return p


def handle(args: argparse.Namespace, *, stdout: Any = None, stderr: Any = None) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    if not 0.0 <= args.warmup_fraction < 1.0:
        print(f"harness: soak: --warmup-fraction: must be in [0, 1), got {args.warmup_fraction:g}", file=stderr)
        return int(ExitCode.USAGE)
    try:
        result = load_result(args.result)
    except ResultError as exc:
        print(f"harness: soak: {exc}", file=stderr)
        return int(ExitCode.USAGE)
    a = analyze(result, tolerance_bytes_per_hour=args.tolerance_mib_per_hour * MIB,
                warmup_fraction=args.warmup_fraction, min_samples=args.min_samples)
    print(format_soak(a), file=stdout)
    return int(soak_exit_code(a, strict=args.strict))
