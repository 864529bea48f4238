"""``harness report RESULT [-o HTML] [--baseline FILE]``: the self-contained HTML report of a
result JSON (:mod:`harness.result.html`), with the comparison when a baseline is given.

Exit 0; 2 when a file is not a result."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from harness.exitcodes import ExitCode
from harness.result.compare import compare
from harness.result.html import write_report
from harness.result.schema import ResultError, load_result

__all__ = ["register", "handle"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("report", help="render the self-contained HTML report of a result JSON")
    p.add_argument("result", help="a result JSON written by `harness run`")
    p.add_argument("-o", "--output", help="HTML path (default: the result's path with .html)")
    p.add_argument("--baseline", help="also compare with this baseline result and include the table")
    p.set_defaults(handler=handle)
    return p


def handle(args: argparse.Namespace, *, stdout: Any = None, stderr: Any = None) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        result = load_result(args.result)
        comparison = compare(load_result(args.baseline), result) if args.baseline else None
    except ResultError as exc:
        print(f"harness: report: {exc}", file=stderr)
        return int(ExitCode.USAGE)
    out = args.output or str(Path(args.result).with_suffix(".html"))
    path = write_report(result, out, comparison=comparison)
    print(f"report: {path}", file=stdout)
    return int(ExitCode.OK)
