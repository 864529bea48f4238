"""Grafana dashboards: generate the committed JSON from the Python definition, and push it.

    harness dashboards generate            # write dashboards/json/*.json from dashboards/definitions.py
    harness dashboards generate --check    # exit 1 when the committed JSON differs (CI's drift check)
    harness dashboards push --grafana-url http://localhost:3000
                                           # upload them (GRAFANA_TOKEN, or GRAFANA_USER + GRAFANA_PASSWORD)

Grafana normally gets the dashboards from files (dashboards/provisioning/, mounted by
docker-compose.yml); ``push`` is for a Grafana you do not provision, through its HTTP API
(``POST /api/folders``, ``POST /api/dashboards/db``) with grafana-client.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

__all__ = ["DASHBOARDS_DIR", "JSON_DIR", "load_definitions", "render", "generate", "stale", "load_dashboards",
           "grafana_api", "credential_from_env", "push", "register", "run", "main", "GrafanaPushError"]

DASHBOARDS_DIR = Path(__file__).resolve().parent.parent / "dashboards"
JSON_DIR = DASHBOARDS_DIR / "json"
DEFAULT_FOLDER_UID = "lbh"
DEFAULT_FOLDER_TITLE = "Latency budget"


class GrafanaPushError(RuntimeError):
    """Grafana refused a call, or cannot be reached; the message says which and why."""


# --------------------------------------------------------------------------- generate


def load_definitions(path: Optional[Path] = None) -> ModuleType:
    """``dashboards/definitions.py`` as a module (it lives beside the JSON, not in a package)."""
    path = path or DASHBOARDS_DIR / "definitions.py"
    spec = importlib.util.spec_from_file_location("lbh_dashboard_definitions", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def render(dashboard: Mapping[str, Any]) -> str:
    """The committed form: 2-space indent, keys in definition order, newline at the end."""
    return json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"


def generate(out_dir: Path = JSON_DIR) -> List[Path]:
    """Write every dashboard to ``out_dir/<name>.json``; returns the paths."""
    defs = load_definitions()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, dashboard in defs.build_all().items():
        path = out_dir / f"{stem}.json"
        path.write_text(render(dashboard))
        paths.append(path)
    return paths


def stale(out_dir: Path = JSON_DIR) -> List[str]:
    """Names of the committed files that differ from the definition (or are missing / extra)."""
    defs = load_definitions()
    wanted = {f"{stem}.json": render(d) for stem, d in defs.build_all().items()}
    problems = []
    for name, text in wanted.items():
        path = out_dir / name
        if not path.exists():
            problems.append(f"{name} (missing)")
        elif path.read_text() != text:
            problems.append(f"{name} (differs)")
    for path in sorted(out_dir.glob("*.json")) if out_dir.exists() else []:
        if path.name not in wanted:
            problems.append(f"{path.name} (not in the definition)")
    return problems


def load_dashboards(directory: Path = JSON_DIR) -> List[Dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))]


# --------------------------------------------------------------------------- push


Credential = Union[str, Tuple[str, str], None]


def credential_from_env(env: Optional[Mapping[str, str]] = None) -> Credential:
    """``GRAFANA_TOKEN`` (a service-account token) or ``GRAFANA_USER`` + ``GRAFANA_PASSWORD``
    (``GRAFANA_ADMIN_PASSWORD``, as docker-compose.yml uses, works for the password too)."""
    env = os.environ if env is None else env
    token = env.get("GRAFANA_TOKEN") or env.get("GRAFANA_API_KEY")
    if token:
        return token
    password = env.get("GRAFANA_PASSWORD") or env.get("GRAFANA_ADMIN_PASSWORD")
    if password:
        return (env.get("GRAFANA_USER") or "admin", password)
    return None


def grafana_api(url: str, credential: Credential = None, timeout_s: float = 10.0) -> Any:
    from grafana_client import GrafanaApi

    return GrafanaApi.from_url(url=url.rstrip("/"), credential=credential, timeout=timeout_s)


def _describe(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    message = getattr(exc, "message", None) or str(exc)
    return f"HTTP {status}: {message}" if status else f"{type(exc).__name__}: {message}"


def ensure_folder(api: Any, uid: str, title: str) -> None:
    from grafana_client.client import GrafanaClientError

    try:
        api.folder.get_folder(uid)
        return
    except GrafanaClientError as exc:
        if getattr(exc, "status_code", None) != 404:
            raise
    api.folder.create_folder(title, uid=uid)


def push(url: str, credential: Credential = None, dashboards: Optional[Sequence[Mapping[str, Any]]] = None,
         folder_uid: Optional[str] = DEFAULT_FOLDER_UID, folder_title: str = DEFAULT_FOLDER_TITLE,
         message: str = "harness dashboards push", timeout_s: float = 10.0) -> List[Dict[str, Any]]:
    """Create the folder when missing, then ``POST /api/dashboards/db`` each dashboard
    (``overwrite: true``, ``id`` dropped so the uid decides). Returns Grafana's answers."""
    dashboards = list(dashboards) if dashboards is not None else load_dashboards()
    api = grafana_api(url, credential, timeout_s)
    answers = []
    try:
        if folder_uid:
            ensure_folder(api, folder_uid, folder_title)
        for dash in dashboards:
            body: Dict[str, Any] = {"dashboard": {k: v for k, v in dash.items() if k != "id"},
                                    "overwrite": True, "message": message}
            if folder_uid:
                body["folderUid"] = folder_uid
            answers.append(api.dashboard.update_dashboard(body))
    except Exception as exc:  # grafana-client raises its own classes and niquests' connection errors
        raise GrafanaPushError(f"Grafana at {url}: {_describe(exc)}") from exc
    return answers


# --------------------------------------------------------------------------- CLI


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``dashboards generate|push`` to a parent's subparsers (dispatched to :func:`run`)."""
    p = subparsers.add_parser("dashboards", help="generate the Grafana dashboards' JSON, or push them to a Grafana")
    sub = p.add_subparsers(dest="dashboards_command")
    gen = sub.add_parser("generate", help="write dashboards/json/*.json from dashboards/definitions.py")
    gen.add_argument("--out", type=Path, default=JSON_DIR, help=f"output folder (default: {JSON_DIR})")
    gen.add_argument("--check", action="store_true", help="write nothing; exit 1 when the files are stale")
    push_p = sub.add_parser("push", help="upload the dashboards with Grafana's HTTP API "
                                         "(GRAFANA_TOKEN, or GRAFANA_USER + GRAFANA_PASSWORD)")
    push_p.add_argument("--grafana-url", default=os.environ.get("GRAFANA_URL"),
                        help="e.g. http://localhost:3000 (GRAFANA_URL)")
    push_p.add_argument("--folder-uid", default=DEFAULT_FOLDER_UID, help="folder uid ('' for the General folder)")
    push_p.add_argument("--folder-title", default=DEFAULT_FOLDER_TITLE)
    push_p.add_argument("--dir", type=Path, default=JSON_DIR, help="folder of dashboard JSON files")
    push_p.add_argument("--timeout", type=float, default=10.0, help="seconds per HTTP call")
    p.set_defaults(_handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    command = getattr(args, "dashboards_command", None)
    if command == "generate":
        if args.check:
            problems = stale(args.out)
            for line in problems:
                print(f"stale: {line}", file=sys.stderr)
            if problems:
                print("run `harness dashboards generate` and commit the result", file=sys.stderr)
            return 1 if problems else 0
        for path in generate(args.out):
            print(path)
        return 0
    if command == "push":
        if not args.grafana_url:
            print("harness: dashboards push needs --grafana-url (or GRAFANA_URL)", file=sys.stderr)
            return 2
        dashboards = load_dashboards(args.dir)
        if not dashboards:
            print(f"harness: no dashboard JSON in {args.dir}", file=sys.stderr)
            return 2
        try:
            answers = push(args.grafana_url, credential_from_env(), dashboards, folder_uid=args.folder_uid or None,
                           folder_title=args.folder_title, timeout_s=args.timeout)
        except GrafanaPushError as exc:
            print(f"harness: {exc}", file=sys.stderr)
            return 1
        base = args.grafana_url.rstrip("/")
        for dash, answer in zip(dashboards, answers):
            url = (answer or {}).get("url") if isinstance(answer, dict) else None
            print(f"{dash.get('title')}: {base}{url}" if url else f"{dash.get('title')}: {answer}")
        return 0
    print("harness: dashboards: expected `generate` or `push`", file=sys.stderr)
    return 2


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.dashboards")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["dashboards", *(argv if argv is not None else sys.argv[1:])])
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
