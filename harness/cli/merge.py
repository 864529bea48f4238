"""``harness merge RESULT… --out FILE``: N results of workers or pods into one, with exact
global percentiles and the thresholds judged on the union (:mod:`harness.result.merge`).

Exit code: the merged verdict's; 2 when a file is not a result or the parts do not match."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from harness.exitcodes import ExitCode
from harness.result.merge import MergeError, merge_results
from harness.result.schema import ResultError, load_result, write_result
from harness.result.summary import format_summary

__all__ = ["register", "handle"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    mg = subparsers.add_parser("merge", help="merge results of N workers/pods into one (exact percentiles, thresholds)")
    mg.add_argument("results", nargs="+", help="result JSON files")
    mg.add_argument("--out", required=True, help="merged result JSON path")
    mg.add_argument("--quiet", "-q", action="store_true")
    mg.set_defaults(handler=handle)
    return mg


def handle(args: argparse.Namespace) -> int:
    try:
        parts = [load_result(p) for p in args.results]
        merged = merge_results(parts, args.results)
    except (ResultError, MergeError) as exc:
        print(f"harness: merge: {exc}", file=sys.stderr)
        return int(ExitCode.USAGE)
    path = write_result(merged, args.out)
    if not args.quiet:
        print(format_summary(merged, str(path)))
    return int(merged["verdict"]["exit_code"])
