"""``harness dashboards generate | push``: the Grafana dashboards' JSON from their shipped
definition, or uploaded to a Grafana (:mod:`harness.observe.dashboards`).

    harness dashboards generate --out DIR  # write DIR/*.json (default: ./dashboards/json)
    harness dashboards generate --check    # exit 1 when the committed JSON differs (CI's drift check)
    harness dashboards push --grafana-url http://localhost:3000
                                           # GRAFANA_TOKEN, or GRAFANA_USER + GRAFANA_PASSWORD
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from harness.exitcodes import ExitCode
from harness.observe.dashboards import (DEFAULT_FOLDER_TITLE, DEFAULT_FOLDER_UID, DEFAULT_OUT, GrafanaPushError,
                                        credential_from_env, generate, load_dashboards, push, stale)

__all__ = ["register", "handle_generate", "handle_push"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``dashboards generate|push`` to a parent's subparsers."""
    p = subparsers.add_parser("dashboards", help="generate the Grafana dashboards' JSON, or push them to a Grafana")
    p.set_defaults(handler=_missing_command)
    sub = p.add_subparsers(dest="dashboards_command")
    gen = sub.add_parser("generate", help="write the dashboards' JSON from their shipped definition")
    gen.add_argument("--out", type=Path, default=DEFAULT_OUT,
                     help=f"output folder (default: {DEFAULT_OUT}, relative to the current folder)")
    gen.add_argument("--check", action="store_true", help="write nothing; exit 1 when the files are stale")
    gen.set_defaults(handler=handle_generate)
    push_p = sub.add_parser("push", help="upload the dashboards with Grafana's HTTP API "
                                         "(GRAFANA_TOKEN, or GRAFANA_USER + GRAFANA_PASSWORD)")
    push_p.add_argument("--grafana-url", default=os.environ.get("GRAFANA_URL"),
                        help="e.g. http://localhost:3000 (GRAFANA_URL)")
    push_p.add_argument("--folder-uid", default=DEFAULT_FOLDER_UID, help="folder uid ('' for the General folder)")
    push_p.add_argument("--folder-title", default=DEFAULT_FOLDER_TITLE)
    push_p.add_argument("--dir", type=Path, default=None,
                        help="folder of dashboard JSON files (default: the dashboards shipped with the harness)")
    push_p.add_argument("--timeout", type=float, default=10.0, help="seconds per HTTP call")
    push_p.set_defaults(handler=handle_push)
    return p


def _missing_command(args: argparse.Namespace) -> int:
    print("harness: dashboards: expected `generate` or `push`", file=sys.stderr)
    return int(ExitCode.USAGE)


def handle_generate(args: argparse.Namespace) -> int:
    if args.check:
        problems = stale(args.out)
        for line in problems:
            print(f"stale: {line}", file=sys.stderr)
        if problems:
            print("run `harness dashboards generate` and commit the result", file=sys.stderr)
        return int(ExitCode.ERROR if problems else ExitCode.OK)
    try:
        paths = generate(args.out)
    except OSError as exc:
        print(f"harness: dashboards generate --out {args.out}: {exc}", file=sys.stderr)
        return int(ExitCode.USAGE)
    for path in paths:
        print(path)
    return int(ExitCode.OK)


def handle_push(args: argparse.Namespace) -> int:
    if not args.grafana_url:
        print("harness: dashboards push needs --grafana-url (or GRAFANA_URL)", file=sys.stderr)
        return int(ExitCode.USAGE)
    try:
        dashboards = load_dashboards(args.dir)
    except (OSError, ValueError) as exc:
        print(f"harness: dashboards push --dir: {exc}", file=sys.stderr)
        return int(ExitCode.USAGE)
    if not dashboards:
        print(f"harness: no dashboard JSON in {args.dir}", file=sys.stderr)
        return int(ExitCode.USAGE)
    try:
        answers = push(args.grafana_url, credential_from_env(), dashboards, folder_uid=args.folder_uid or None,
                       folder_title=args.folder_title, timeout_s=args.timeout)
    except GrafanaPushError as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return int(ExitCode.ERROR)
    base = args.grafana_url.rstrip("/")
    for dash, answer in zip(dashboards, answers):
        url = (answer or {}).get("url") if isinstance(answer, dict) else None
        print(f"{dash.get('title')}: {base}{url}" if url else f"{dash.get('title')}: {answer}")
    return int(ExitCode.OK)
