"""The architecture, read from the source (every import, module-level or local), so it
cannot drift:

- ``instrumentation`` imports neither ``harness`` nor ``workloads``;
- the harness core never imports ``workloads`` (the reference system is a plug-in), and in
  ``workloads`` only ``workloads/plugin/`` imports the harness, through its public API;
- ``harness`` subpackages import only their own layer or lower ones, in the order of the
  data flow: exit codes and events < record < targets < config < engine < observe < run <
  result < studies < cli (``harness.pytest_plugin`` sits on top);
- no import cycles between harness modules, and no module imports another module's
  ``_private`` name.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())

#: low to high; a module may import its own layer and the ones before it
LAYERS: Tuple[Tuple[str, ...], ...] = (
    ("harness", "harness.exitcodes", "harness.events", "harness.lifecycle"),
    ("harness.record",),
    ("harness.targets",),
    ("harness.config",),
    ("harness.engine",),
    ("harness.observe",),
    ("harness.run",),
    ("harness.result",),
    ("harness.studies",),
    ("harness.cli",),
    ("harness.pytest_plugin",),
)


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(package: str) -> Iterator[Tuple[str, int, str, List[str]]]:
    """``(module, line, imported module, imported names)`` for every absolute import."""
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        mod = module_name(path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield mod, node.lineno, alias.name, []
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield mod, node.lineno, node.module, [a.name for a in node.names]


def layer_of(module: str) -> int:
    best = -1
    for i, layer in enumerate(LAYERS):
        for prefix in layer:
            if prefix == "harness":
                if module == "harness":
                    best = max(best, i)
            elif module == prefix or module.startswith(prefix + "."):
                best = i
    if best < 0:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS")
    return best


def _top(module: str) -> str:
    return module.split(".")[0]


def _resolve(imported: str, names: List[str], known: Set[str]) -> List[str]:
    """The harness modules an import pulls in (``from harness.x import y`` may name a module)."""
    out = [imported] if imported in known else []
    out += [f"{imported}.{n}" for n in names if f"{imported}.{n}" in known]
    return out or [imported]


@pytest.mark.parametrize("package, forbidden", [
    ("instrumentation", {"harness", "workloads"}),
    ("harness", {"workloads"}),
])
def test_forbidden_edges(package: str, forbidden: set) -> None:
    bad = [f"{m}:{line} imports {mod}" for m, line, mod, _n in imports(package) if _top(mod) in forbidden]
    assert bad == []


def test_only_the_workloads_plugin_imports_the_harness_public_api() -> None:
    bad = [f"{m}:{line} imports {mod}" for m, line, mod, _n in imports("workloads")
           if _top(mod) == "harness" and not (m.startswith("workloads.plugin") and mod == "harness.targets")]
    assert bad == []


def _harness_graph() -> Tuple[Dict[str, Set[str]], List[str]]:
    known = {module_name(p) for p in (ROOT / "harness").rglob("*.py")}
    graph: Dict[str, Set[str]] = {m: set() for m in known}
    edges = []
    for mod, line, imported, names in imports("harness"):
        if _top(imported) != "harness":
            continue
        for target in _resolve(imported, names, known):
            if target != mod:
                graph[mod].add(target)
                edges.append((mod, line, target))
    return graph, edges


def test_every_import_goes_down_the_layers() -> None:
    _graph, edges = _harness_graph()
    bad = sorted({f"{m}:{line} imports {t} (layer {layer_of(t)} > {layer_of(m)})"
                  for m, line, t in edges if layer_of(t) > layer_of(m)})
    assert bad == []


def test_no_import_cycles() -> None:
    graph, _edges = _harness_graph()
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on: Set[str] = set()
    cycles: List[List[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    # a package's __init__ re-exporting its own modules is not a cycle between concepts
    cycles = [c for c in cycles if not all(x == c[0] or x.startswith(c[0] + ".") for x in c)]
    assert cycles == []


def test_no_private_names_across_modules() -> None:
    bad = [f"{m}:{line} imports {mod}.{n}" for pkg in ("harness", "workloads", "instrumentation")
           for m, line, mod, names in imports(pkg) if _top(mod) in ("harness", "workloads", "instrumentation")
           for n in names if n.startswith("_") and not n.startswith("__") and mod != m]
    assert bad == []


def test_the_contract_reads_real_imports() -> None:
    """The walker sees module-level and function-local imports (a contract that reads
    nothing cannot fail)."""
    _graph, edges = _harness_graph()
    seen = {(m, t) for m, _l, t in edges}
    assert ("harness.run.runner", "harness.run.prepare") in seen
    assert layer_of("harness.cli.main") > layer_of("harness.run.runner") > layer_of("harness.config.scenario")
    local = [(m, mod) for m, _l, mod, _n in imports("harness") if mod == "grafana_client"]
    assert local  # a function-local import of an optional dependency is seen too
