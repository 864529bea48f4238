"""``harness stack up [--scrape [JOB=]HOST:PORT]…``: the local Prometheus + Alertmanager on
their own, with the project's rules, until Ctrl-C, SIGTERM or SIGHUP.

The handlers are installed explicitly: a process started in the background by a script
inherits SIGINT *ignored*, and Python then never raises KeyboardInterrupt, so waiting for
one would leave both programs running for ever.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any, Dict, List

from harness.exitcodes import ExitCode
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
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    webhook = WebhookReceiver()
    try:
        with LocalStack(jobs, webhook_url=webhook.url) as stack:
            print(f"prometheus:   {stack.prometheus_url}\nalertmanager: {stack.alertmanager_url}\n"
                  f"webhook:      {webhook.url}\nscraping:     {jobs or 'nothing (add --scrape JOB=HOST:PORT)'}\n"
                  "Ctrl-C stops both and removes their data.", flush=True)
            seen = 0
            while not stop.wait(1.0):
                notes = webhook.summary()
                for n in notes[seen:]:
                    names = ", ".join(f"{a['alertname']}({a['severity']}) {a['status']}" for a in n["alerts"])
                    print(f"notification to {n['receiver']}: {names}", flush=True)
                seen = len(notes)
            print("stopping", file=sys.stderr)
    except StackError as exc:
        print(f"harness: {exc}", file=sys.stderr)
        usage = isinstance(exc, StackConfigError) or "install" in str(exc)
        return int(ExitCode.USAGE if usage else ExitCode.ERROR)
    finally:
        webhook.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return int(ExitCode.OK)
