"""``harness compare BASE NEW``: improved / regressed / unchanged / inconclusive per metric,
each with a confidence interval (:mod:`harness.result.compare`); exit 0, or REGRESSED (97)
when a gated metric is worse than the baseline by more than ``--fail-above`` over its whole
interval (and by more than its floor); 2 when a file is not a result or a flag is out of range.

``--report PATH`` writes an offline HTML page (:mod:`harness.result.compare_html`): both runs
overlaid (HDR spectrum, percentiles and throughput over time) and each metric's verdict with
its interval."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from harness.cli.args import write_outputs
from harness.exitcodes import ExitCode
from harness.result.compare import (CONFIDENCE, FAIL_ABOVE, FLOORS, MIN_WINDOWS, RESAMPLES, UNCHANGED_BELOW,
                                    compare, format_comparison)
from harness.result.compare_html import write_compare_report
from harness.result.schema import ResultError, load_result, write_result

__all__ = ["register", "handle", "add_gate_arguments", "gate_options"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("compare", help="compare a result with a baseline: improved / regressed / unchanged / "
                                              "inconclusive with confidence intervals; exit 97 when surely worse "
                                              "by > 10 %%")
    p.add_argument("base", help="baseline result JSON")
    p.add_argument("new", help="new result JSON")
    p.add_argument("--json", dest="json_out", help="write the comparison as JSON here")
    p.add_argument("--all", dest="all_rows", action="store_true", help="show every row, per target too")
    p.add_argument("--report", metavar="PATH", help="write an HTML page drawing both runs overlaid, with each "
                                                    "metric's verdict and interval")
    add_gate_arguments(p)
    p.set_defaults(handler=handle)
    return p


def add_gate_arguments(p: argparse.ArgumentParser) -> None:
    """The gate's lines, shared by ``compare`` and ``run --baseline``."""
    g = p.add_argument_group("gate (see docs/reports.md, Baselines)")
    g.add_argument("--min-samples", type=int, default=100, help="requests each run needs for any verdict")
    g.add_argument("--min-windows", type=int, default=MIN_WINDOWS,
                   help=f"windows (seconds) each run needs for an interval (default {MIN_WINDOWS})")
    g.add_argument("--fail-above", type=float, default=FAIL_ABOVE,
                   help="gate line: fraction worse over the whole interval (default 0.10)")
    g.add_argument("--unchanged-below", type=float, default=UNCHANGED_BELOW,
                   help="'improved' needs the whole interval better by more than this (default 0.01)")
    g.add_argument("--confidence", type=float, default=CONFIDENCE,
                   help=f"two-sided interval level (default {CONFIDENCE})")
    g.add_argument("--resamples", type=int, default=RESAMPLES, help=f"bootstrap resamples (default {RESAMPLES})")
    g.add_argument("--floor-ms", type=float, default=FLOORS["ms"],
                   help=f"latency differences under this never regress (default {FLOORS['ms']} ms)")
    g.add_argument("--floor-pp", type=float, default=100 * FLOORS["rate"],
                   help=f"rate differences under this many percentage points never regress "
                        f"(default {100 * FLOORS['rate']:g})")
    g.add_argument("--floor-rps", type=float, default=FLOORS["rps"],
                   help=f"throughput differences under this never regress (default {FLOORS['rps']:g} rps)")
    g.add_argument("--run-noise", type=float, default=0.0,
                   help="run-to-run noise of latency levels a single pair of runs cannot see, as a relative sd per "
                        "run (e.g. 0.05; default 0): widens latency intervals; benchmarks/gate_calibration.py "
                        "estimates it for a machine")


def gate_options(args: Any) -> dict[str, Any]:
    """The keyword arguments of :func:`harness.result.compare.compare` from the flags;
    ValueError naming the flag when one is out of range."""
    checks = (("--min-samples", args.min_samples, 1, None), ("--min-windows", args.min_windows, 2, None),
              ("--fail-above", args.fail_above, 0.0, None), ("--unchanged-below", args.unchanged_below, 0.0, None),
              ("--confidence", args.confidence, 0.5, 0.999), ("--resamples", args.resamples, 50, 100_000),
              ("--floor-ms", args.floor_ms, 0.0, None), ("--floor-pp", args.floor_pp, 0.0, 100.0),
              ("--floor-rps", args.floor_rps, 0.0, None), ("--run-noise", getattr(args, "run_noise", 0.0), 0.0, 0.99))
    for flag, value, low, high in checks:
        if value < low or (high is not None and value > high):
            raise ValueError(f"{flag}: must be ≥ {low:g}" + (f" and ≤ {high:g}" if high is not None else "")
                             + f", got {value:g}")
    return {"min_samples": args.min_samples, "min_windows": args.min_windows, "fail_above": args.fail_above,
            "unchanged_below": args.unchanged_below, "confidence": args.confidence, "resamples": args.resamples,
            "floors": {"ms": args.floor_ms, "rate": args.floor_pp / 100.0, "rps": args.floor_rps},
            "run_noise": getattr(args, "run_noise", 0.0)}


def handle(args: argparse.Namespace, *, stdout: Any = None, stderr: Any = None) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        opts = gate_options(args)
    except ValueError as exc:
        print(f"harness: compare: {exc}", file=stderr)
        return int(ExitCode.USAGE)
    try:
        base, new = load_result(args.base), load_result(args.new)
    except ResultError as exc:
        print(f"harness: compare: {exc}", file=stderr)
        return int(ExitCode.USAGE)
    c = compare(base, new, **opts)
    print(format_comparison(c, all_rows=args.all_rows), file=stdout)
    if not write_outputs("compare", (("--json", args.json_out, lambda p: write_result(c, p)),
                                      ("--report", args.report, lambda p: write_compare_report(base, new, c, p))),
                         stdout, stderr, announce=("--report",)):
        return int(ExitCode.ERROR)
    return int(c["gate"]["exit_code"])
