"""Every ``--help`` reads clean: no ``(default: None)`` (a default is shown only where one
exists) and no reStructuredText markup leaking from the docstrings the texts come from."""

from __future__ import annotations

import argparse
import re
from typing import Iterator, Tuple

import pytest

from harness.cli.args import HelpFormatter, plain_text
from harness.cli.main import build_parser as harness_parser
from workloads.cli import build_parser as workloads_parser

MARKUP = re.compile(r"``|:(?:py:)?(?:func|class|mod|meth|attr|data|ref|doc|exc|obj):`")


def _walk(parser: argparse.ArgumentParser, name: str) -> Iterator[Tuple[str, argparse.ArgumentParser]]:
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, child in action.choices.items():
                yield from _walk(child, f"{name} {sub}")


def _all_helps():
    out = list(_walk(harness_parser(), "harness")) + list(_walk(workloads_parser(), "workloads"))
    return [pytest.param(p, id=name) for name, p in out]


def test_every_command_is_covered():
    names = {name for name, _p in _walk(harness_parser(), "harness")}
    names |= {name for name, _p in _walk(workloads_parser(), "workloads")}
    assert {"harness", "harness run", "harness report", "harness compare", "workloads serve"} <= names
    assert len(names) >= 14, names


@pytest.mark.parametrize("parser", _all_helps())
def test_help_has_no_none_default_and_no_markup(parser):
    text = parser.format_help()
    assert "(default: None)" not in text and "default: None" not in text, text
    bad = [line for line in text.splitlines() if MARKUP.search(line)]
    assert not bad, bad


def test_top_level_help_keeps_its_examples_without_markup():
    text = harness_parser().format_help()
    assert "harness: run a scenario and judge it." in text
    assert "harness run scenario.yaml --rate 80" in text  # the epilog's layout is kept
    assert "(harness.lifecycle)" in text


def test_defaults_that_exist_are_shown_once():
    text = " ".join(harness_parser()._subparsers._group_actions[0].choices["run"].format_help().split())
    assert "(default: auto)" in text  # --progress
    assert "(default: 5.0)" in text  # --lag-bound-ms
    # a help text that states its own default gets no second one
    assert "(default: results/<scenario>-<time>.json)" in text and "json) (default" not in text


def test_plain_text_strips_roles_literals_and_strong():
    assert plain_text("see :func:`~harness.config.thresholds.evaluate` and :mod:`harness.lifecycle`") == \
        "see evaluate and harness.lifecycle"
    assert plain_text(":class:`the run <harness.run.runner.Run>`") == "the run"
    assert plain_text("``rate<0.01`` is **always** judged") == "rate<0.01 is always judged"


def test_formatter_never_prints_a_none_or_false_default():
    p = argparse.ArgumentParser(prog="x", formatter_class=HelpFormatter)
    p.add_argument("--a", help="no default")
    p.add_argument("--b", default=3, help="a number")
    p.add_argument("--c", action="store_true", help="a flag")
    p.add_argument("--d", default="x", help="x (default: x)")
    text = " ".join(p.format_help().split())
    assert "no default (default" not in text and "a number (default: 3)" in text
    assert "a flag (default" not in text and "(default: x) (default: x)" not in text
