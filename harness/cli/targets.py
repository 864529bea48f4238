"""``harness targets``: the registered targets and payload generators (entry points)."""

from __future__ import annotations

import argparse
from typing import Any

from harness.exitcodes import ExitCode
from harness.targets.registry import describe

__all__ = ["register", "handle"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("targets", help="list the registered targets and payload generators (entry points)")
    p.set_defaults(handler=handle)
    return p


def handle(args: argparse.Namespace) -> int:
    for line in describe():
        print(line)
    return int(ExitCode.OK)
