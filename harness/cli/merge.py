"""``harness merge RESULT… --out FILE``: N results of workers or pods into one, with exact
global percentiles and the thresholds judged on the union (:mod:`harness.result.merge`).

The parts must be distinct segments of one schedule (``harness run --segment i/n``): same
scenario and profile, one stride, each segment once, none missing. ``--allow-partial``
merges a subset (the missing segments are named in the result); ``--force`` merges
anything, and the merged result says it was forced and why.

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
    mg.add_argument("results", nargs="+", help="result JSON files: distinct segments of one schedule")
    mg.add_argument("--out", required=True, help="merged result JSON path")
    mg.add_argument("--allow-partial", action="store_true",
                    help="merge even if some segments are missing (named in the result)")
    mg.add_argument("--force", action="store_true",
                    help="merge parts that are not distinct segments of one schedule (recorded in the result)")
    mg.add_argument("--quiet", "-q", action="store_true")
    mg.set_defaults(handler=handle)
    return mg


def handle(args: argparse.Namespace) -> int:
    try:
        parts = [load_result(p) for p in args.results]
        merged = merge_results(parts, args.results, force=getattr(args, "force", False),
                               allow_partial=getattr(args, "allow_partial", False))
    except (ResultError, MergeError) as exc:
        print(f"harness: merge: {exc}", file=sys.stderr)
        return int(ExitCode.USAGE)
    info = merged.get("merge") or {}
    if info.get("forced") or info.get("partial"):
        what = "forced" if info.get("forced") else "partial"
        print(f"harness: merge: {what}: " + "; ".join(info.get("problems") or []), file=sys.stderr)
    path = write_result(merged, args.out)
    if not args.quiet:
        print(format_summary(merged, str(path)))
    return int(merged["verdict"]["exit_code"])
