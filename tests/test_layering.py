"""The package boundaries, read from the source (every import, module-level or local):

- ``instrumentation`` imports neither ``harness`` nor ``workloads`` (what users import
  into their own services stays small);
- the harness core never imports ``workloads``: the reference system is a plug-in
  (entry points), as any team's own system is;
- in ``workloads`` only ``workloads/plugin/`` imports the harness (its public plug-in API).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imports(package: str) -> Iterator[Tuple[str, int, str]]:
    """``(file, line, imported top-level module)`` for every import under ``package``."""
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield str(path.relative_to(ROOT)), node.lineno, alias.name
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield str(path.relative_to(ROOT)), node.lineno, node.module


def _top(module: str) -> str:
    return module.split(".")[0]


@pytest.mark.parametrize("package, forbidden", [
    ("instrumentation", {"harness", "workloads"}),
    ("harness", {"workloads"}),
])
def test_forbidden_edges(package: str, forbidden: set) -> None:
    bad = [f"{f}:{line} imports {mod}" for f, line, mod in imports(package) if _top(mod) in forbidden]
    assert bad == []


def test_only_the_workloads_plugin_imports_the_harness() -> None:
    bad = [f"{f}:{line} imports {mod}" for f, line, mod in imports("workloads")
           if _top(mod) == "harness" and not f.startswith("workloads/plugin/")]
    assert bad == []
    # and the plug-in uses the public API only
    private = [f"{f}:{line} imports {mod}" for f, line, mod in imports("workloads")
               if _top(mod) == "harness" and mod not in ("harness.targets",)]
    assert private == []


def test_the_contract_reads_real_imports() -> None:
    """The walker sees module-level and function-local imports (a contract that reads
    nothing cannot fail)."""
    seen = {(f, mod) for f, _l, mod in imports("harness")}
    assert ("harness/run/runner.py", "harness.targets.resolve") in seen
    assert any(f == "harness/observe/dashboards.py" and mod == "grafana_client" for f, mod in seen)  # a local one
