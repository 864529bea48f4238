"""The scenario library: packaged scenario files (``harness/config/scenarios/*.yaml``), by name.

``harness scenarios`` (:mod:`harness.cli.scenarios`) lists them one line each; ``harness run NAME`` runs one
(:func:`resolve` turns a name or a path into a file, :func:`load` validates it with the
usual precedence: flags > ``HARNESS_*`` env > file > defaults).

Besides the scenario keys the loader knows, a packaged file may carry two library keys,
which :func:`load` takes out before validation:

* ``meant_to_fail: true`` — the scenario is designed to breach its thresholds (resource
  exhaustion, a slow model without fallback); its tests check that it *does* fail;
* ``smoke`` — overrides (dotted paths or mappings, like ``--set``) that shorten it to a
  few seconds at a lower rate, for the test suite and for ``harness run NAME --smoke``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from harness.config.problems import suggest
from harness.config.scenario import Scenario, ScenarioError, load_scenario, read_scenario_file, scenario_from_dict

__all__ = ["LIBRARY_DIR", "LIBRARY_KEYS", "Entry", "entries", "names", "resolve", "read", "load", "load_for_cli", "meant_to_fail",
           "format_list", "is_library_name"]

LIBRARY_DIR = Path(__file__).resolve().parent / "scenarios"
LIBRARY_KEYS = ("meant_to_fail", "smoke")


@dataclass(frozen=True)
class Entry:
    name: str
    path: Path
    description: str
    meant_to_fail: bool
    target: str
    thresholds: Mapping[str, Any]


def entries() -> List[Entry]:
    """Every packaged scenario, sorted by name."""
    out = []
    for path in sorted(LIBRARY_DIR.glob("*.yaml")):
        d = read_scenario_file(path)
        out.append(Entry(str(d.get("name") or path.stem), path, str(d.get("description") or ""),
                         bool(d.get("meant_to_fail", False)), str(d.get("target", "features")),
                         dict(d.get("thresholds") or {})))
    return sorted(out, key=lambda e: e.name)


def names() -> List[str]:
    return [e.name for e in entries()]


def is_library_name(arg: str) -> bool:
    """A bare name (no path separator, no .yaml/.yml) that is not an existing file."""
    return bool(arg) and "/" not in arg and not arg.endswith((".yaml", ".yml")) and not Path(arg).exists()


def resolve(name_or_path: str) -> Path:
    """A packaged scenario's file by name (``cold-start``), or the path itself when it is
    one.  Unknown names raise :class:`ScenarioError` with a did-you-mean."""
    p = Path(name_or_path)
    if not is_library_name(name_or_path):
        return p
    for e in entries():
        if e.name == name_or_path or e.path.stem == name_or_path:
            return e.path
    known = names()
    hint = suggest(name_or_path, known, cutoff=0.5, otherwise="")
    raise ScenarioError([f"scenario: {name_or_path!r} is neither a file nor a packaged scenario{hint}; "
                         f"`harness scenarios` lists them: {', '.join(known)}"])


def read(name_or_path: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """``(scenario mapping, library keys)`` of a file or packaged name, unvalidated."""
    data = read_scenario_file(resolve(name_or_path))
    extra = {k: data.pop(k) for k in LIBRARY_KEYS if k in data}
    return data, extra


def load(name_or_path: str, overrides: Optional[Mapping[str, Any]] = None, env: Optional[Mapping[str, str]] = None,
         *, smoke: bool = False) -> Scenario:
    """Validate a packaged scenario (or any scenario file; library keys are ignored).
    With ``smoke`` the file's ``smoke`` overrides apply first (under ``overrides``)."""
    path = resolve(name_or_path)
    data, extra = read(str(path))
    ov: Dict[str, Any] = {}
    if smoke:
        sm = extra.get("smoke") or {}
        if not isinstance(sm, Mapping):
            raise ScenarioError([f"{path}: smoke: must be a mapping of overrides, got {sm!r}"])
        ov.update(sm)
    ov.update(overrides or {})
    return scenario_from_dict(data, overrides=ov, env=env, source=str(path))


def load_for_cli(arg: Optional[str], overrides: Optional[Mapping[str, Any]] = None,
                 env: Optional[Mapping[str, str]] = None, *, smoke: bool = False) -> Scenario:
    """``harness run [NAME|FILE]``: no argument is the default scenario; a packaged name or
    a file goes through :func:`load` (so library keys never count as unknown keys)."""
    if arg is None:
        if smoke:
            raise ScenarioError(["--smoke: only a packaged scenario or a file with a smoke: block has one"])
        return load_scenario(None, overrides, env)
    return load(arg, overrides, env, smoke=smoke)


def meant_to_fail(name_or_path: str) -> bool:
    return bool(read(name_or_path)[1].get("meant_to_fail", False))


def _thresholds_line(ths: Mapping[str, Any]) -> str:
    parts = []
    for metric, exprs in ths.items():
        items = exprs if isinstance(exprs, list) else [exprs]
        for it in items:
            parts.append(f"{metric} {it['threshold'] if isinstance(it, Mapping) else it}")
    return ", ".join(parts)


def format_list(verbose: bool = False) -> str:
    """``harness scenarios``: one line each (name, description; ``[meant to fail]`` marked)."""
    es = entries()
    width = max((len(e.name) for e in es), default=10) + 2
    lines = []
    for e in es:
        mark = " [meant to fail]" if e.meant_to_fail else ""
        lines.append(f"{e.name:<{width}}{e.description}{mark}")
        if verbose:
            lines.append(f"{'':<{width}}target {e.target}; thresholds: {_thresholds_line(e.thresholds)}; {e.path}")
    lines.append(f"\n{len(es)} scenarios; run one with `harness run NAME` (add --smoke for a few seconds).")
    return "\n".join(lines)
