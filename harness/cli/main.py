"""``harness``: run a scenario and judge it.

    harness run                         # the default scenario on the embedded workloads
    harness run scenario.yaml --rate 80 --duration 1m --threshold 'latency=p(95)<100ms'
    harness validate scenario.yaml

Exit codes: 0 pass, 99 thresholds failed (k6's code), 98 invalid run (the generator was
the bottleneck), 105 interrupted, 2 usage error (bad flags or scenario).

Signals: SIGINT, SIGTERM and SIGHUP are handled from the first moment of every command
(:mod:`harness.lifecycle`): whatever was started is stopped, a run writes what it measured,
and the exit code is 105, never a traceback or a -15.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from harness.cli.args import HelpFormatter
from harness.cli import (compare, dashboards, merge, report, run, scale_test, scenarios, search, soak, stack,
                         suite, targets, trend, validate)
from harness.exitcodes import ExitCode
from harness.lifecycle import Interrupted, signal_name, signal_scope

__all__ = ["main", "build_parser", "SUBCOMMANDS"]

#: one module per subcommand, in the order ``harness --help`` lists them; each has
#: ``register(subparsers)``, which adds its parser and sets its ``handler``
SUBCOMMANDS = (run, suite, report, compare, trend, search, soak, scenarios, merge, stack, scale_test, targets,
               validate, dashboards)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness", description="Latency-budget load harness.",
                                formatter_class=HelpFormatter, epilog=__doc__)
    sub = p.add_subparsers(dest="command")
    for module in SUBCOMMANDS:
        module.register(sub)
    _format_all(p)
    return p


def _format_all(parser: argparse.ArgumentParser) -> None:
    """One help formatter for every (sub)command, whatever its module set (markup-free,
    defaults only where they exist): an option with a default but no help text shows its default."""
    for action in parser._actions:
        if action.help is None and action.option_strings and action.nargs != 0 \
                and action.default not in (None, "", [], ()) and not isinstance(action.default, bool):
            action.help = "(default: %(default)s)"
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                if child.formatter_class in (argparse.HelpFormatter, argparse.RawDescriptionHelpFormatter):
                    child.formatter_class = HelpFormatter
                _format_all(child)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    with signal_scope() as signals:
        try:
            args = parser.parse_args(argv)
            if args.command is None:
                parser.print_help()
                return int(ExitCode.USAGE)
            code = int(args.handler(args))
        except KeyboardInterrupt as exc:  # Interrupted included: what was started is stopped by now
            sig = exc.signum if isinstance(exc, Interrupted) else signals.signum
            print(f"harness: interrupted ({signal_name(sig) if sig else 'KeyboardInterrupt'}): what it started "
                  "is stopped; nothing measured, nothing written", file=sys.stderr)
            return int(ExitCode.INTERRUPTED)
        if signals.interrupted and code != ExitCode.INTERRUPTED:
            print(f"harness: interrupted ({signal_name(signals.signum or 0)}): exit {int(ExitCode.INTERRUPTED)} "
                  f"instead of {code}", file=sys.stderr)
            return int(ExitCode.INTERRUPTED)
        return code


if __name__ == "__main__":
    sys.exit(main())
