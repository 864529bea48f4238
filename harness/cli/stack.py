"""``harness stack up [--scrape [JOB=]HOST:PORT]…``: the local Prometheus + Alertmanager on
their own, with the project's rules, until Ctrl-C, SIGTERM or SIGHUP (exit 105), or until
one of them exits (exit 1, with its log tail).

The handlers are installed explicitly, from the first moment (:mod:`harness.lifecycle`): a
process started in the background by a script inherits SIGINT *ignored*, and Python then
never raises KeyboardInterrupt, so waiting for one would leave both programs running for
ever. Both programs die with this process even on kill -9 (parent-death signal; the
folder is removed by the stack's guardian).
"""

from __future__ import annotations

import argparse
import sys
import threading
from typing import Any, Dict, List

from harness.exitcodes import ExitCode
from harness.lifecycle import signal_name, signal_scope
from harness.observe.stack import LocalStack, StackConfigError, StackError, WebhookReceiver

__all__ = ["register", "handle_up"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    stack = subparsers.add_parser("stack", help="the local Prometheus + Alertmanager on their own")
    stack.set_defaults(handler=_missing_command)
    stack_sub = stack.add_subparsers(dest="stack_command")
    up = stack_sub.add_parser("up", help="start them with the project's rules, print the URLs, wait for Ctrl-C")
    up.add_argument("--scrape", action="append", default=[], metavar="[JOB=]HOST:PORT",
                    help="a /metrics endpoint to scrape (repeatable), e.g. service=127.0.0.1:8000")
    up.set_defaults(handler=handle_up)
    return stack


def _missing_command(args: argparse.Namespace) -> int:
    print("harness: stack: expected `harness stack up`", file=sys.stderr)
    return int(ExitCode.USAGE)


def handle_up(args: argparse.Namespace) -> int:
    jobs: Dict[str, List[str]] = {}
    for item in args.scrape:
        job, sep, addr = item.rpartition("=")
        job = job if sep else "target"
        if ":" not in addr or not addr.rsplit(":", 1)[1].isdigit():
            print(f"harness: --scrape: expected [JOB=]HOST:PORT, got {item!r}", file=sys.stderr)
            return int(ExitCode.USAGE)
        jobs.setdefault(job, []).append(addr)
    stop = threading.Event()
    died = None
    with signal_scope() as signals:  # before the start: a signal while starting stops what started
        webhook = WebhookReceiver()
        try:
            with LocalStack(jobs, webhook_url=webhook.url) as stack, signals.soft(stop.set):
                print(f"prometheus:   {stack.prometheus_url}\nalertmanager: {stack.alertmanager_url}\n"
                      f"webhook:      {webhook.url}\n"
                      f"scraping:     {jobs or 'nothing (add --scrape JOB=HOST:PORT)'}\n"
                      "Ctrl-C stops both and removes their data.", flush=True)
                seen = 0
                while not stop.wait(0.5):
                    died = stack.exited()
                    if died:
                        break
                    notes = webhook.summary()
                    for n in notes[seen:]:
                        names = ", ".join(f"{a['alertname']}({a['severity']}) {a['status']}" for a in n["alerts"])
                        print(f"notification to {n['receiver']}: {names}", flush=True)
                    seen = len(notes)
                if died:
                    print(f"harness: stack up: {died}; stopping the other", file=sys.stderr, flush=True)
                else:
                    print(f"stopping ({signal_name(signals.signum or 0)})", file=sys.stderr, flush=True)
        except StackError as exc:
            print(f"harness: {exc}", file=sys.stderr)
            usage = isinstance(exc, StackConfigError) or "install" in str(exc)
            return int(ExitCode.USAGE if usage else ExitCode.ERROR)
        finally:
            webhook.close()
    if died:
        return int(ExitCode.ERROR)
    return int(ExitCode.INTERRUPTED)
