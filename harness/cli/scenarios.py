"""``harness scenarios [-v] [--show NAME]``: the packaged scenarios (:mod:`harness.config.library`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from harness.config import library
from harness.config.scenario import ScenarioError
from harness.exitcodes import ExitCode

__all__ = ["register", "handle"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("scenarios", help="list the packaged scenarios (run one with `harness run NAME`)")
    p.add_argument("-v", "--verbose", action="store_true", help="also each one's target, thresholds and file")
    p.add_argument("--show", metavar="NAME", help="print one packaged scenario file")
    p.set_defaults(handler=handle)
    return p


def handle(args: argparse.Namespace, *, stdout: Any = None, stderr: Any = None) -> int:
    stdout = stdout or sys.stdout
    if args.show:
        try:
            print(library.resolve(args.show).read_text(encoding="utf-8").rstrip(), file=stdout)
        except ScenarioError as exc:
            print(f"harness: {exc.problems[0]}", file=stderr or sys.stderr)
            return int(ExitCode.USAGE)
        return int(ExitCode.OK)
    print(library.format_list(verbose=args.verbose), file=stdout)
    return int(ExitCode.OK)
