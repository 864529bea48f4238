"""Flag helpers the subcommands share: ``KEY=VALUE`` values, scenario overrides from flags,
and loading the scenario a command names (with the error printed the one way)."""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import yaml

from harness.config import library
from harness.config.scenario import Scenario, ScenarioError

__all__ = ["write_outputs", "HelpFormatter", "plain_text", "parse_kv", "add_set_argument", "scenario_overrides", "threshold_overrides",
           "load_scenario"]


_ROLE = re.compile(r":(?:py:)?[a-z]+:`(~?)([^`<]*?)\s*(?:<[^`>]*>)?`")
_LITERAL = re.compile(r"``(.+?)``", re.S)
_STRONG = re.compile(r"\*\*(.+?)\*\*", re.S)


def plain_text(text: str) -> str:
    """reStructuredText inline markup as a terminal shows it: ``:mod:`a.b``` -> ``a.b``,
    double-backquoted literals and ``**strong**`` without their marks (docstrings double
    as ``--help`` texts; the markup is for the docs, not the reader of a terminal)."""
    text = _ROLE.sub(lambda m: m.group(2).rsplit(".", 1)[-1] if m.group(1) else m.group(2), text)
    text = _LITERAL.sub(lambda m: m.group(1), text)
    return _STRONG.sub(lambda m: m.group(1), text)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every ``harness`` parser's help: descriptions and epilogs keep their layout, lose
    reStructuredText markup; an option's default is shown only when there is one (never
    ``(default: None)``) and its help text does not state it already."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return super()._fill_text(plain_text(text), width, indent)

    def _split_lines(self, text: str, width: int) -> List[str]:
        return super()._split_lines(plain_text(text), width)

    def _get_help_string(self, action: argparse.Action) -> str:
        help = action.help or ""
        default = action.default
        if ("%(default)" in help or "default" in help.lower() or not action.option_strings
                or action.nargs == 0 or default is None or default is argparse.SUPPRESS
                or isinstance(default, bool) or default in ("", [], ())):
            return help
        return help + " (default: %(default)s)"


def parse_kv(text: str) -> Tuple[str, Any]:
    """``KEY=VALUE`` (an argparse ``type``): the value read as YAML (``150`` a number,
    ``[a, b]`` a list), or kept as text when it is not YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except (yaml.YAMLError, ValueError, RecursionError):  # not YAML (or too deep): the text itself
        parsed = value
    return key.strip(), parsed


def add_set_argument(parser: Any, help: Optional[str] = None) -> None:
    """``--set PATH=VALUE`` (repeatable): any scenario field by dotted path."""
    parser.add_argument("--set", action="append", type=parse_kv, default=[], metavar="PATH=VALUE", help=help)


def threshold_overrides(pairs: Iterable[Tuple[str, Any]]) -> Dict[str, List[str]]:
    """``--threshold METRIC=EXPR`` pairs as the scenario's ``thresholds`` mapping."""
    ths: Dict[str, List[str]] = {}
    for metric, expr in pairs:
        ths.setdefault(metric, []).append(str(expr))
    return ths


def scenario_overrides(flags: Mapping[str, Any], sets: Sequence[Tuple[str, Any]] = (),
                       thresholds: Sequence[Tuple[str, Any]] = (),
                       faults: Sequence[Tuple[str, Any]] = ()) -> Dict[str, Any]:
    """Dotted-path overrides: ``flags`` (path -> value; None means not given), then the
    ``--set`` pairs, then ``--threshold`` (replacing the scenario's thresholds) and ``--fault``."""
    ov: Dict[str, Any] = {path: value for path, value in flags.items() if value is not None}
    for key, value in sets:
        ov[key] = value
    if thresholds:
        ov["thresholds"] = threshold_overrides(thresholds)
    if faults:
        ov["faults"] = {k: v for k, v in faults}
    return ov


def load_scenario(name_or_path: Optional[str], overrides: Mapping[str, Any], *, smoke: bool = False,
                  stderr: Any = None) -> Optional[Scenario]:
    """The scenario a command names (None: the default one), or None after printing why
    not (``harness: <field>: <problem>``)."""
    try:
        return library.load_for_cli(name_or_path, overrides, smoke=smoke)
    except ScenarioError as exc:
        print(f"harness: {exc}", file=stderr or sys.stderr)
        return None


def write_outputs(command: str, outputs: Sequence[Tuple[str, Any, Any]], stdout: Any, stderr: Any,
                  announce: Sequence[str] = ("--json", "--report")) -> bool:
    """Write each ``(flag, path, write)`` whose path was given; print ``name: path`` for the
    flags in ``announce``. A path that cannot be written is named with its flag on stderr and
    the rest are not attempted: False (the command exits 1)."""
    for flag, path, write in outputs:
        if not path:
            continue
        try:
            written = write(path)
        except OSError as exc:
            print(f"harness: {command}: {flag}: cannot write {path}: {exc.strerror or exc}", file=stderr)
            return False
        if flag in announce:
            print(f"{flag.lstrip('-')}: {written}", file=stdout)
    return True
