"""``harness suite FILE|NAME``: the seeds' CI flow in one command (:mod:`harness.studies.suite`).

    harness suite seeds-ci --smoke --junit results/junit.xml --summary-md "$GITHUB_STEP_SUMMARY"
    harness suite perf/nightly.yaml --baseline baselines/
    harness suite --list

Validates the whole suite first (exit 2 naming the field, nothing started), starts its
services, waits for its health URLs, runs each scenario (result, HTML report and
baseline gate written as it ends), stops everything (Ctrl-C and SIGTERM included) and
writes ``suite.json`` into the results folder.  Exit code: the worst scenario's, by
INTERRUPTED 105 > ERROR 1 > USAGE 2 > INVALID_RUN 98 > THRESHOLDS_FAILED 99 >
REGRESSED 97 > OK 0 (:func:`harness.studies.suite.worst_exit_code`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from harness.exitcodes import ExitCode
from harness.lifecycle import signal_scope
from harness.studies.suite import (SUITES_DIR, SuiteError, SuiteOptions, format_suite, load_suite, plan_suite,
                                   run_suite, suite_junit, suite_markdown, suite_names, write_suite_output)

__all__ = ["register", "handle"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("suite", help="run a suite: services up, health, scenarios, reports, baselines, "
                                            "teardown (the seeds' CI flow)",
                              description=__doc__)
    p.add_argument("suite", nargs="?", help="suite YAML file or packaged suite name (`harness suite --list`)")
    p.add_argument("--list", action="store_true", help="list the packaged suites and exit")
    p.add_argument("--check", action="store_true",
                   help="validate the suite and every scenario in it, print the plan, run nothing")
    p.add_argument("--smoke", action="store_true", default=None,
                   help="every scenario's packaged smoke variant (a few seconds), whatever the file says")
    p.add_argument("--results", metavar="DIR", help="results folder (default: the file's results:, else "
                                                    "results/<suite name>)")
    p.add_argument("--baseline", metavar="DIR", help="baseline folder: <DIR>/<scenario>.json gates that scenario "
                                                     "(default: the file's baseline:)")
    p.add_argument("--update-baselines", action="store_true",
                   help="after its gate, each scenario that passed becomes <baseline>/<name>.json (the first run "
                        "of a CI job makes the baselines; later ones are gated against them)")
    p.add_argument("--progress", choices=("auto", "tty", "plain", "off"), default="off",
                   help="each run's own live display; off: one line per scenario")
    p.add_argument("--lag-bound-ms", type=float, default=5.0, help="schedule-lag p99 above which a run is invalid")
    p.add_argument("--junit", metavar="PATH", help="JUnit XML, one testsuite per scenario")
    p.add_argument("--summary-md", "--markdown", dest="summary_md", metavar="PATH",
                   help="Markdown verdict of the suite and each scenario (appended to $GITHUB_STEP_SUMMARY)")
    p.add_argument("--quiet", "-q", action="store_true", help="no table on stdout")
    p.set_defaults(handler=handle)
    return p


def handle(args: argparse.Namespace, *, stdout: Any = None, stderr: Any = None) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    if args.list:
        for name in suite_names():
            print(f"{name:<20}{_describe(name)}", file=stdout)
        print(f"\n{len(suite_names())} packaged suites ({SUITES_DIR}); run one with `harness suite NAME`.", file=stdout)
        return int(ExitCode.OK)
    if not args.suite:
        print("harness: suite: name a suite file or a packaged suite (`harness suite --list`)", file=stderr)
        return int(ExitCode.USAGE)
    try:
        suite = load_suite(args.suite)
        suite, planned, ports = plan_suite(suite, smoke=args.smoke,
                                           results=Path(args.results) if args.results else None,
                                           baseline=Path(args.baseline) if args.baseline else None)
    except SuiteError as exc:
        print(f"harness: {exc}", file=stderr)
        return int(ExitCode.USAGE)
    if args.update_baselines and suite.baseline is None:
        print("harness: suite: --update-baselines needs a baseline folder (baseline: in the file, or --baseline DIR)",
              file=stderr)
        return int(ExitCode.USAGE)
    if args.check:
        print(f"suite {suite.name}: valid; {len(planned)} scenarios" + (" (smoke)" if suite.smoke else ""), file=stdout)
        for p in planned:
            print(f"  {p.name}: {p.scenario.target}, {p.scenario.profile.describe()} -> {p.result_path}"
                  + (f" (baseline {p.baseline_path})" if p.baseline_path else ""), file=stdout)
        return int(ExitCode.OK)
    try:
        suite.results.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"harness: suite: results: cannot create {suite.results}: {exc.strerror or exc}", file=stderr)
        return int(ExitCode.USAGE)
    with signal_scope() as signals:
        opts = SuiteOptions(progress=args.progress, lag_bound_ms=args.lag_bound_ms, stream=stderr,
                            update_baselines=args.update_baselines)
        outcome = run_suite(suite, planned, ports, opts)
        code = outcome.exit_code
        with signals.soft():  # the suite is over: its CI files are written whatever signal comes
            for path, render, md in ((args.junit, suite_junit, False), (args.summary_md, suite_markdown, True)):
                if not path:
                    continue
                try:
                    written = write_suite_output(render(outcome.summary, outcome.results, outcome.comparisons), path,
                                                 markdown=md)
                except OSError as exc:
                    print(f"harness: suite: cannot write {path}: {exc.strerror or exc}", file=stderr)
                    code = code or int(ExitCode.ERROR)
                    continue
                print(f"suite {suite.name}: {'markdown' if md else 'junit'}: {written}", file=stderr)
            if not args.quiet:
                print(format_suite(outcome.summary), file=stdout)
    return int(ExitCode.INTERRUPTED) if signals.interrupted else int(code)


def _describe(name: str) -> str:
    try:
        return load_suite(name).description
    except SuiteError as exc:
        return f"(invalid: {exc.problems[0]})"
