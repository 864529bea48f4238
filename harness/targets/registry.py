"""Targets and payload generators by short name, registered through entry points.

A package offers targets with the ``lbh.targets`` group (name = a :class:`TargetFactory`)
and payload generators with ``lbh.payloads`` (name = ``fn(ordinal) -> body``), the way
pytest finds plug-ins through ``pytest11``. The reference workloads register theirs this
way, so the harness core never imports them; a team registers its own in its
``pyproject.toml``::

    [project.entry-points."lbh.targets"]
    pricing = "mypkg.load:pricing_target"

An entry point may name the extra it needs (``"pkg.mod:fn [workloads]"``): when loading
fails for a missing package, the error says which ``pip install`` brings it.
"""

from __future__ import annotations

import re
from importlib import metadata
from typing import Any, Callable, Dict, List, Tuple

from harness.targets.base import TargetError, TargetFactory

__all__ = ["TARGET_GROUP", "PAYLOAD_GROUP", "DISTRIBUTION", "target_names", "payload_names", "load_target_factory",
           "load_payload", "describe"]

TARGET_GROUP = "lbh.targets"
PAYLOAD_GROUP = "lbh.payloads"
DISTRIBUTION = "latency-budget-harness"


def _entry_points(group: str) -> Dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=group)}


def target_names() -> List[str]:
    """Registered target names, sorted."""
    return sorted(_entry_points(TARGET_GROUP))


def payload_names() -> List[str]:
    """Registered payload generator names, sorted."""
    return sorted(_entry_points(PAYLOAD_GROUP))


def describe() -> List[str]:
    """One line per registered target and payload generator: name, where it lives, and the
    ``pip install`` it needs when its extra's packages are missing (nothing is imported)."""
    lines = []
    for group, title in ((TARGET_GROUP, "targets"), (PAYLOAD_GROUP, "payload generators")):
        eps = _entry_points(group)
        lines.append(f"{title} ({group}):" if eps else f"{title} ({group}): none registered")
        for name in sorted(eps):
            ep = eps[name]
            note = f"  [missing {', '.join(missing)}: {_install_hint(ep)}]" if (missing := _missing(ep)) else ""
            lines.append(f"  {name:<22} {ep.value}{note}")
    lines.append("built in: mixed, noop; also module:function, path/to/file.py:function, http(s)://URL")
    return lines


def _missing(ep: metadata.EntryPoint) -> List[str]:
    """The distributions an entry point's extras require that are not installed, read from
    its distribution's ``Requires-Dist`` (``pkg; extra == "name"``)."""
    if ep.dist is None or not ep.extras:
        return []
    own = (ep.dist.metadata["Name"] or "").lower().replace("_", "-")
    missing = []
    for req in ep.dist.requires or []:
        spec, _, marker = req.partition(";")
        if not any(f'extra == "{extra}"' in marker for extra in ep.extras):
            continue
        name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
        if name is None or name.group(1).lower().replace("_", "-") == own:
            continue
        try:
            metadata.distribution(name.group(1))
        except metadata.PackageNotFoundError:
            missing.append(name.group(1))
    return missing


def _install_hint(ep: metadata.EntryPoint) -> str:
    dist = ep.dist.metadata["Name"] if ep.dist is not None else DISTRIBUTION
    extras = ",".join(ep.extras)
    return f"pip install '{dist}[{extras}]'" if extras else f"pip install '{dist}'"


def _load(group: str, name: str, what: str) -> Tuple[Any, metadata.EntryPoint]:
    eps = _entry_points(group)
    ep = eps.get(name)
    if ep is None:
        raise KeyError(name)
    try:
        return ep.load(), ep
    except ImportError as exc:
        missing = exc.name or str(exc)
        raise TargetError(f"{what}: {name!r} needs packages that are not installed ({missing}): "
                          f"{_install_hint(ep)}") from None
    except Exception as exc:
        raise TargetError(f"{what}: loading {name!r} ({ep.value}) failed: {type(exc).__name__}: {exc}") from None


def load_target_factory(name: str) -> TargetFactory:
    """The factory registered as ``name``; ``KeyError`` when none is."""
    factory, _ = _load(TARGET_GROUP, name, "target")
    return factory


def load_payload(name: str) -> Callable[[int], Any]:
    """The payload generator registered as ``name``; a clear error naming the registered ones."""
    try:
        gen, ep = _load(PAYLOAD_GROUP, name, "payload")
    except KeyError:
        known = ", ".join(payload_names()) or "none registered"
        raise TargetError(f"payload: unknown {name!r}; expected a registered name ({known}), module:function "
                          "or path/to/file.py:function") from None
    if not callable(gen):
        raise TargetError(f"payload: {name!r} ({ep.value}) is not callable")
    return gen
