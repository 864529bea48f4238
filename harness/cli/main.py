"""``harness``: run a scenario and judge it.

    harness run                         # the default scenario on the embedded workloads
    harness run scenario.yaml --rate 80 --duration 1m --threshold 'latency=p(95)<100ms'
    harness validate scenario.yaml

Exit codes: 0 pass, 99 thresholds failed (k6's code), 98 invalid run (the generator was
the bottleneck), 105 interrupted, 2 usage error (bad flags or scenario).
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from harness.cli import (compare, dashboards, merge, report, run, scale_test, scenarios, search, soak, stack,
                         targets, validate)
from harness.exitcodes import ExitCode

__all__ = ["main", "build_parser", "SUBCOMMANDS"]

#: one module per subcommand, in the order ``harness --help`` lists them; each has
#: ``register(subparsers)``, which adds its parser and sets its ``handler``
SUBCOMMANDS = (run, report, compare, search, soak, scenarios, merge, stack, scale_test, targets, validate,
               dashboards)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness", description="Latency-budget load harness.",
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = p.add_subparsers(dest="command")
    for module in SUBCOMMANDS:
        module.register(sub)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return int(ExitCode.USAGE)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
