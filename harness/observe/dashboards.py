"""Grafana dashboards: generate the committed JSON from the Python definition, and push it.

    harness dashboards generate --out DIR  # write DIR/*.json from the shipped definition
                                           # (default: ./dashboards/json, the repo's committed copy)
    harness dashboards generate --check    # exit 1 when the committed JSON differs (CI's drift check)
    harness dashboards push --grafana-url http://localhost:3000
                                           # upload them (GRAFANA_TOKEN, or GRAFANA_USER + GRAFANA_PASSWORD)

The definition and the JSON ship in the package (:mod:`harness.observe.shipped`), so both
commands work from an installed wheel, in any folder. The commands themselves are
:mod:`harness.cli.dashboards`; this module is what they call.

Grafana normally gets the dashboards from files (dashboards/provisioning/, mounted by
docker-compose.yml); ``push`` is for a Grafana you do not provision, through its HTTP API
(``POST /api/folders``, ``POST /api/dashboards/db``) with grafana-client.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from harness.observe import shipped

__all__ = ["DEFAULT_OUT", "load_definitions", "render", "generate", "stale", "load_dashboards",
           "grafana_api", "credential_from_env", "ensure_folder", "push", "GrafanaPushError",
           "DEFAULT_FOLDER_UID", "DEFAULT_FOLDER_TITLE"]

#: where ``generate`` writes by default: relative to the current folder (in the repo: the
#: committed copy that docker-compose and the k8s ConfigMap read)
DEFAULT_OUT = Path("dashboards") / "json"
DEFAULT_FOLDER_UID = "lbh"
DEFAULT_FOLDER_TITLE = "Latency budget"


class GrafanaPushError(RuntimeError):
    """Grafana refused a call, or cannot be reached; the message says which and why."""


# --------------------------------------------------------------------------- generate


def load_definitions(path: Optional[Path] = None) -> ModuleType:
    """``definitions.py`` (shipped, or ``path``) as a module: it lives beside the JSON in
    the top-level ``dashboards/``, not in a package."""
    source = shipped.read_text(path.parent, path.name) if path is not None else \
        shipped.read_text(shipped.dashboards_dir(), shipped.DASHBOARD_DEFINITIONS)
    module = ModuleType("lbh_dashboard_definitions")
    module.__file__ = str(path or shipped.dashboards_dir() / shipped.DASHBOARD_DEFINITIONS)
    sys.modules[module.__name__] = module  # dataclasses in it look their module up by name
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def render(dashboard: Mapping[str, Any]) -> str:
    """The committed form: 2-space indent, keys in definition order, newline at the end."""
    return json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"


def generate(out_dir: Path = DEFAULT_OUT) -> List[Path]:
    """Write every dashboard to ``out_dir/<name>.json``; returns the paths."""
    defs = load_definitions()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, dashboard in defs.build_all().items():
        path = out_dir / f"{stem}.json"
        path.write_text(render(dashboard))
        paths.append(path)
    return paths


def stale(out_dir: Path = DEFAULT_OUT) -> List[str]:
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


def load_dashboards(directory: Optional[Path] = None) -> List[Dict[str, Any]]:
    """Every ``*.json`` in ``directory`` (default: the shipped dashboards), by file name."""
    folder = shipped.dashboards_dir() / "json" if directory is None else directory
    files = sorted((p for p in folder.iterdir() if p.name.endswith(".json")), key=lambda p: p.name)
    return [json.loads(shipped.read_text(folder, p.name)) for p in files]


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
    try:  # lazy: grafana-client is an optional extra ([grafana]); only push and annotations need it
        from grafana_client import GrafanaApi
    except ImportError as exc:
        raise GrafanaPushError(f"the Grafana client is not installed ({exc}): "
                               "pip install 'latency-budget-harness[grafana]'") from None

    return GrafanaApi.from_url(url=url.rstrip("/"), credential=credential, timeout=timeout_s)


def _describe(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    message = getattr(exc, "message", None) or str(exc)
    return f"HTTP {status}: {message}" if status else f"{type(exc).__name__}: {message}"


def ensure_folder(api: Any, uid: str, title: str) -> None:
    """Create the folder ``uid`` unless Grafana has it."""
    # lazy: grafana-client is an optional extra ([grafana]); grafana_api() checked it is installed
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
