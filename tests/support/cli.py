"""One harness subcommand called in this process, the way main() parses and dispatches it
but without main()'s signal scope, so a test can patch, signal or read sys.stderr freely."""

from __future__ import annotations

import argparse
from types import ModuleType
from typing import Sequence

__all__ = ["run_subcommand"]


def run_subcommand(module: ModuleType, argv: Sequence[str]) -> int:
    """The exit code of ``harness ARGV`` parsed by ``module.register``'s parser alone and run by its handler."""
    parser = argparse.ArgumentParser(prog="harness")
    module.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    return args.handler(args)
