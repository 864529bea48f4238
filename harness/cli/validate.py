"""``harness validate [SCENARIO] [--set PATH=VALUE]``: check a scenario and print it normalised.

Exit 0 when it is valid; 2 with every problem named by its field (``profile.rte: unknown
key … (did you mean 'rate'?)``)."""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from harness.cli.args import add_set_argument, load_scenario, scenario_overrides
from harness.exitcodes import ExitCode

__all__ = ["register", "handle"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    val = subparsers.add_parser("validate", help="check a scenario file and print it normalised")
    val.add_argument("scenario", nargs="?")
    add_set_argument(val)
    val.set_defaults(handler=handle)
    return val


def handle(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario, scenario_overrides({}, args.set))
    if scenario is None:
        return int(ExitCode.USAGE)
    print(yaml.safe_dump(scenario.to_dict(), sort_keys=False).rstrip())
    return int(ExitCode.OK)
