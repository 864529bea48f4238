"""The alert rules, Alertmanager config and Grafana dashboards that ship in the wheel.

They are package data under ``harness/observe/assets/`` (symbolic links, in the source
tree, to the top-level ``alerts/`` and ``dashboards/``, which stay their one editable
source; a wheel build copies the files), read with :mod:`importlib.resources`, so an
installed harness never depends on files beside it. A file that is missing or unreadable
is an error naming it: a Prometheus started without its rules would judge nothing and
pass.
"""

from __future__ import annotations

from importlib import resources

try:
    from importlib.resources.abc import Traversable
except ImportError:  # Python 3.10
    from importlib.abc import Traversable
from pathlib import Path
from typing import Dict, Optional, Union

__all__ = ["AssetError", "RULE_FILES", "ALERTMANAGER_FILE", "DASHBOARD_DEFINITIONS", "assets", "alerts_dir",
           "dashboards_dir", "read_text", "rule_texts"]

RULE_FILES = ("recording_rules.yml", "alert_rules.yml")
ALERTMANAGER_FILE = "alertmanager.yml"
DASHBOARD_DEFINITIONS = "definitions.py"

Where = Union[Path, Traversable]


class AssetError(FileNotFoundError):
    """A shipped or user-given rule/dashboard file is missing or unreadable."""


def assets() -> Traversable:
    """The package's ``assets`` folder."""
    return resources.files("harness.observe") / "assets"


def alerts_dir() -> Traversable:
    """Recording and alert rules, ``alertmanager.yml``."""
    return assets() / "alerts"


def dashboards_dir() -> Traversable:
    """``definitions.py``, ``json/*.json`` and ``provisioning/``."""
    return assets() / "dashboards"


def read_text(folder: Where, name: str) -> str:
    """``folder/name`` as text; :class:`AssetError` naming the path when it cannot be read."""
    path = folder / name
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AssetError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None


def rule_texts(folder: Optional[Where] = None) -> Dict[str, str]:
    """Every rule file by name, from ``folder`` or the shipped rules; all must be readable."""
    folder = alerts_dir() if folder is None else folder
    return {name: read_text(folder, name) for name in RULE_FILES}
