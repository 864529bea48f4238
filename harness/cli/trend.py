"""``harness trend RESULTS… [--baseline FILE] [--report PATH] [--json PATH]``: runs in time
order (:mod:`harness.result.trend`): a table of p95, p99, throughput and failed rate per run,
with ``--report`` an offline HTML page drawing them across runs with the baseline marked.

Exit 0; 2 when an input is not a result (the message names the file), when the runs are of
different scenarios (``--scenario NAME`` keeps one, ``--allow-mixed`` draws them together),
or when two results are flagged as the baseline."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from harness.cli.args import write_outputs
from harness.exitcodes import ExitCode
from harness.result.compare_html import write_trend_report
from harness.result.schema import write_result
from harness.result.trend import TrendError, format_trend, load_trend

__all__ = ["register", "handle"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("trend", help="p95, p99, throughput and failed rate across runs in time order, "
                                            "with the baseline marked; --report draws them")
    p.add_argument("results", nargs="+", metavar="RESULT",
                   help="result JSON files and/or folders of them (a folder's *.json, not recursive)")
    p.add_argument("--baseline", metavar="FILE",
                   help="the baseline run (drawn and marked; default: a result with \"baseline\": true, if any)")
    p.add_argument("--scenario", metavar="NAME", help="keep only the runs of this scenario")
    p.add_argument("--allow-mixed", action="store_true",
                   help="draw runs of different scenarios together instead of refusing")
    p.add_argument("--report", metavar="PATH", help="write the HTML trend report here")
    p.add_argument("--json", dest="json_out", metavar="PATH", help="write the trend as JSON here")
    p.set_defaults(handler=handle)
    return p


def handle(args: argparse.Namespace, *, stdout: Any = None, stderr: Any = None) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        trend = load_trend(args.results, baseline=args.baseline, scenario=args.scenario,
                           allow_mixed=args.allow_mixed)
    except TrendError as exc:
        print(f"harness: trend: {exc}", file=stderr)
        return int(ExitCode.USAGE)
    print(format_trend(trend), file=stdout)
    if not write_outputs("trend", (("--json", args.json_out, lambda p: write_result(trend.to_dict(), p)),
                                    ("--report", args.report, lambda p: write_trend_report(trend, p))),
                         stdout, stderr):
        return int(ExitCode.ERROR)
    return int(ExitCode.OK)
