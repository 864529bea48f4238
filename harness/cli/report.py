"""``harness report RESULT [--format html|junit|csv|csv-series|markdown] [-o FILE] [--baseline FILE]``:
a result JSON as the self-contained HTML report (:mod:`harness.result.html`) or in a CI
format (:mod:`harness.result.ci`), with the comparison when a baseline is given (in HTML, the
table and both runs overlaid, as ``harness compare --report`` draws them).

``-o -`` writes the text formats to stdout (``>> "$GITHUB_STEP_SUMMARY"``). Exit 0; 2 when a
file is not a result."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from harness.exitcodes import ExitCode
from harness.result.ci import FORMATS, render, write_ci
from harness.result.compare import compare
from harness.result.html import write_report
from harness.result.schema import ResultError, load_result

__all__ = ["register", "handle", "SUFFIXES"]

#: format -> default file suffix (next to the result)
SUFFIXES = {"html": ".html", "junit": ".junit.xml", "csv": ".csv", "csv-series": ".series.csv", "markdown": ".md"}


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("report", help="render a result JSON as HTML, JUnit XML, CSV or Markdown")
    p.add_argument("result", help="a result JSON written by `harness run`")
    p.add_argument("--format", "-f", choices=("html",) + FORMATS, default="html",
                   help="html (default); junit: a testcase per threshold; csv: a row per target x metric; "
                        "csv-series: the per-second windows; markdown: a verdict for a CI job summary")
    p.add_argument("-o", "--output", "--out", dest="output",
                   help="output path (default: the result's path with .html, .junit.xml, .csv, .series.csv or "
                        ".md); '-' for stdout (not html)")
    p.add_argument("--baseline", help="also compare with this baseline result and include the gate")
    p.set_defaults(handler=handle)
    return p


def handle(args: argparse.Namespace, *, stdout: Any = None, stderr: Any = None) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    fmt = getattr(args, "format", "html") or "html"
    try:
        result = load_result(args.result)
        baseline = load_result(args.baseline) if args.baseline else None
        comparison = compare(baseline, result) if baseline is not None else None
    except ResultError as exc:
        print(f"harness: report: {exc}", file=stderr)
        return int(ExitCode.USAGE)
    if fmt == "html":
        if args.output == "-":
            print("harness: report: --output -: the HTML report needs a file path", file=stderr)
            return int(ExitCode.USAGE)
        out = args.output or str(Path(args.result).with_suffix(".html"))
        path = write_report(result, out, comparison=comparison, baseline=baseline)
    elif args.output == "-":
        stdout.write(render(result, fmt, comparison))
        return int(ExitCode.OK)
    else:
        out = args.output or str(Path(args.result).with_suffix(SUFFIXES[fmt]))
        try:
            path = write_ci(result, fmt, out, comparison=comparison)
        except OSError as exc:
            print(f"harness: report: --output: cannot write {out}: {exc.strerror or exc}", file=stderr)
            return int(ExitCode.ERROR)
    print(f"report: {path}", file=stdout)
    return int(ExitCode.OK)
