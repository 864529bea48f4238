"""``harness compare BASE NEW``: improved / regressed / unchanged per metric
(:mod:`harness.result.compare`); exit 0, or REGRESSED (97) when a gated metric is worse
than the baseline by more than ``--fail-above``; 2 when a file is not a result."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from harness.exitcodes import ExitCode
from harness.result.compare import FAIL_ABOVE, UNCHANGED_BELOW, compare, format_comparison
from harness.result.schema import ResultError, load_result, write_result

__all__ = ["register", "handle"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("compare", help="compare a result with a baseline: improved / regressed / unchanged; "
                                              "exit 97 when worse by > 10 %%")
    p.add_argument("base", help="baseline result JSON")
    p.add_argument("new", help="new result JSON")
    p.add_argument("--json", dest="json_out", help="write the comparison as JSON here")
    p.add_argument("--all", dest="all_rows", action="store_true", help="show every row, per target too")
    p.add_argument("--min-samples", type=int, default=100)
    p.add_argument("--fail-above", type=float, default=FAIL_ABOVE, help="gate line (fraction, default 0.10)")
    p.add_argument("--unchanged-below", type=float, default=UNCHANGED_BELOW, help="default 0.01")
    p.set_defaults(handler=handle)
    return p


def handle(args: argparse.Namespace, *, stdout: Any = None, stderr: Any = None) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        base, new = load_result(args.base), load_result(args.new)
    except ResultError as exc:
        print(f"harness: compare: {exc}", file=stderr)
        return int(ExitCode.USAGE)
    c = compare(base, new, min_samples=args.min_samples, fail_above=args.fail_above,
                unchanged_below=args.unchanged_below)
    print(format_comparison(c, all_rows=args.all_rows), file=stdout)
    if args.json_out:
        write_result(c, args.json_out)
    return int(c["gate"]["exit_code"])
