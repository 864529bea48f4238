"""A suite: the seeds' CI flow in one file and one command (``harness suite FILE``).

The origin documents' CI script brings the environment up, waits for health, runs the
performance tests, writes a report, checks regressions against a baseline and tears
everything down.  A suite file says all of that declaratively::

    name: nightly
    smoke: false                    # true: every scenario's packaged `smoke:` variant (seconds)
    stack: local                    # none | local | auto, or `prometheus: URL` (external)
    services:                       # started in order before the first scenario, stopped after the last
      - name: reference
        command: ["{python}", "-m", "workloads.cli", "serve", "--port", "{port}"]
        ready: "http://127.0.0.1:{port}/readyz"
        start_timeout: 120s
    wait_for:                       # polled until each answers 2xx
      - {url: "http://127.0.0.1:{reference.port}/readyz", timeout: 60s}
    results: results/nightly        # <name>.json, <name>.html, suite.json
    baseline: baselines/nightly     # <name>.json gates that scenario when present
    fail_fast: false
    scenarios:
      - cold-start                  # a packaged name ...
      - scenarios/checkout.yaml     # ... or a file, relative to the suite file
      - scenario: max-throughput    # with overrides
        name: features-http         # result file name (and the scenario's name)
        service: false              # not its own service: (the suite's reference serves it)
        target: "http://127.0.0.1:{reference.port}/v1/features"
        payload: feature_window
        duration: 30s
        rate: 40
        set: {timeout: 2s}          # any scenario field by dotted path, as `--set`

**Paths.** Scenario files are found relative to the suite file (they ship with it);
``results`` and ``baseline`` are relative to the working directory (where the CI job keeps
its outputs; a packaged suite must never write into the installed package).

**Placeholders.** ``{NAME.port}`` and ``{NAME.url}`` (``http://127.0.0.1:PORT``) of a suite
service, in ``wait_for`` URLs and in any string of a scenario entry; ``{port}`` and
``{python}`` in a service's own ``command``/``ready``, as for a scenario's ``service``
(:mod:`harness.run.service`).  Ports are picked (free, loopback) when the suite is
planned, so every scenario is validated before anything starts.

**The stack** is the one ``harness run --stack`` starts: with ``local`` each scenario gets
its own fresh Prometheus + Alertmanager scraping that run (no alert of one scenario
carries into the next), stopped when the run ends; ``prometheus: URL`` asks an existing one.

**Order and teardown.** Everything is validated first (a bad suite or scenario: exit 2,
nothing started); then services start, the ``wait_for`` URLs are polled, and the
scenarios run one after another, each written (result, HTML report, gate) as soon as it
ends.  Services stop in reverse order whatever happens, Ctrl-C/SIGTERM included: a signal
during a scenario stops it softly (its partial result is written), no further scenario
starts, and the summary says what completed (exit 105).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple
from xml.etree import ElementTree as ET

import yaml

from harness.config import library
from harness.config.problems import Problems, suggest
from harness.config.scenario import Scenario, ScenarioError
from harness.exitcodes import ExitCode
from harness.lifecycle import Interrupted, SignalScope, signal_name, signal_scope
from harness.observe.stack import StackConfigError, StackError, find_binaries, missing_binaries_message
from harness.result.ci import to_junit, to_markdown
from harness.result.compare import compare, gate_exit_code
from harness.result.html import write_report
from harness.result.schema import ResultError, load_result, write_result
from harness.run.runner import Run, RunOptions
from harness.run.service import ManagedService, ServiceError, apply
from harness.targets import TargetError

__all__ = ["SUITE_SCHEMA", "SUITES_DIR", "SUITE_KEYS", "ENTRY_KEYS", "SERVICE_KEYS", "WAIT_KEYS", "SuiteError",
           "ServiceSpec", "WaitFor", "SuiteEntry", "Suite", "Planned", "SuiteOptions", "suite_names", "resolve_suite",
           "load_suite", "parse_suite", "plan_suite", "run_suite", "worst_exit_code", "SEVERITY", "suite_junit",
           "suite_markdown", "format_suite", "write_suite_output", "SuiteOutcome"]

SUITE_SCHEMA = "harness.suite/1"
#: packaged suites, ``harness suite NAME``
SUITES_DIR = Path(__file__).resolve().parent.parent / "config" / "suites"

SUITE_KEYS = ("name", "description", "smoke", "stack", "prometheus", "services", "wait_for", "results", "baseline",
              "fail_fast", "scenarios")
ENTRY_KEYS = ("scenario", "name", "smoke", "service", "target", "payload", "duration", "rate", "vus", "timeout", "set")
SERVICE_KEYS = ("name", "command", "ready", "start_timeout", "port")
WAIT_KEYS = ("url", "timeout")
STACK_MODES = ("none", "local", "auto")
#: entry key -> scenario field (dotted path), as ``harness run``'s flags
_ENTRY_FIELDS = (("target", "target"), ("payload", "payload"), ("duration", "duration"), ("rate", "profile.rate"),
                 ("vus", "profile.vus"), ("timeout", "timeout"))
_URL = re.compile(r"^https?://[^\s/]+(?:/\S*)?$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_-]+)\.(port|url)\}")

#: exit code -> rank, higher is worse (see :func:`worst_exit_code`)
SEVERITY: Dict[int, int] = {
    int(ExitCode.OK): 0,
    int(ExitCode.REGRESSED): 1,
    int(ExitCode.THRESHOLDS_FAILED): 2,
    int(ExitCode.INVALID_RUN): 3,
    int(ExitCode.USAGE): 4,
    int(ExitCode.ERROR): 5,
    int(ExitCode.INTERRUPTED): 6,
}


def worst_exit_code(codes: Sequence[int]) -> int:
    """The suite's exit code: the worst of its scenarios' codes, OK (0) for none.

    Worst by this order, most severe first::

        INTERRUPTED 105 > ERROR 1 > USAGE 2 > INVALID_RUN 98 > THRESHOLDS_FAILED 99 > REGRESSED 97 > OK 0

    Why: an interrupted suite is incomplete, so no verdict of its parts stands for the
    whole; ERROR (a service, stack or worker that broke) and USAGE (a target that could not
    be built) mean a scenario measured nothing; INVALID_RUN means the figures are the
    generator's, so nothing is known about the target, which is worse than a known failure;
    THRESHOLDS_FAILED breaks the budget; REGRESSED is within the budget but worse than the
    baseline.  An unknown code ranks with ERROR (something failed in an unforeseen way)."""
    worst = int(ExitCode.OK)
    for code in codes:
        c = int(code)
        if SEVERITY.get(c, SEVERITY[int(ExitCode.ERROR)]) > SEVERITY.get(worst, SEVERITY[int(ExitCode.ERROR)]):
            worst = c
    return worst


class SuiteError(ValueError):
    """An invalid suite; ``problems`` has one ``"field.path: what is wrong"`` each."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid suite:\n" + "\n".join(f"  - {p}" for p in self.problems))


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    command: Tuple[str, ...]
    ready: Optional[str] = None
    start_timeout_s: float = 60.0
    port: int = 0  # 0: a free port, picked when the suite is planned

    def as_service(self) -> Dict[str, Any]:
        """The ``service`` mapping :class:`harness.run.service.ManagedService` takes."""
        spec: Dict[str, Any] = {"command": list(self.command), "start_timeout": self.start_timeout_s}
        if self.ready:
            spec["ready"] = self.ready
        return spec


@dataclass(frozen=True)
class WaitFor:
    url: str
    timeout_s: float = 60.0


@dataclass(frozen=True)
class SuiteEntry:
    index: int
    scenario: str                     # packaged name or file path (resolved against the suite's folder)
    name: Optional[str] = None
    smoke: Optional[bool] = None      # None: the suite's
    own_service: bool = True          # False: the scenario's own service: is not started (a suite one serves it)
    overrides: Mapping[str, Any] = field(default_factory=dict)  # dotted path -> value


@dataclass(frozen=True)
class Suite:
    name: str
    path: Optional[Path]
    entries: Tuple[SuiteEntry, ...]
    description: str = ""
    smoke: bool = False
    stack: str = "none"               # none | local | auto | external
    prometheus_url: Optional[str] = None
    services: Tuple[ServiceSpec, ...] = ()
    wait_for: Tuple[WaitFor, ...] = ()
    results: Path = Path("results")
    baseline: Optional[Path] = None
    fail_fast: bool = False


@dataclass(frozen=True)
class Planned:
    """One scenario of the suite, validated and aimed (placeholders filled)."""

    entry: SuiteEntry
    name: str
    scenario: Scenario
    result_path: Path
    report_path: Path
    baseline_path: Optional[Path]     # None: no baseline folder, or no file for it there


# -------------------------------------------------------------------------------- reading


def suite_names() -> List[str]:
    """The packaged suites' names (``harness suite --list``)."""
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def resolve_suite(name_or_path: str) -> Path:
    """A suite file by path, or a packaged suite by name; :class:`SuiteError` otherwise."""
    p = Path(name_or_path)
    if p.exists() or "/" in name_or_path or name_or_path.endswith((".yaml", ".yml")):
        if not p.is_file():
            raise SuiteError([f"suite: {name_or_path}: no such file"])
        return p
    packaged = SUITES_DIR / f"{name_or_path}.yaml"
    if packaged.is_file():
        return packaged
    known = suite_names()
    raise SuiteError([f"suite: {name_or_path!r} is neither a file nor a packaged suite"
                      + suggest(name_or_path, known, cutoff=0.5, otherwise="known")])


def load_suite(name_or_path: str) -> Suite:
    """Read and validate a suite file (or packaged name); :class:`SuiteError` naming every
    bad field."""
    path = resolve_suite(name_or_path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError([f"suite: cannot read {path}: {exc}"]) from None
    except yaml.YAMLError as exc:
        raise SuiteError([f"suite: {path} is not valid YAML: {exc}"]) from None
    return parse_suite(data, path=path)


def _text(p: Problems, path: str, value: Any, *, required: bool = False) -> Optional[str]:
    if value is None:
        if required:
            p.add(path, "required")
        return None
    if not isinstance(value, str) or not value.strip():
        p.add(path, f"must be a non-empty string, got {value!r}")
        return None
    return value


def _flag(p: Problems, path: str, value: Any) -> Optional[bool]:
    if value is None:
        return None
    if not isinstance(value, bool):
        p.add(path, f"must be true or false, got {value!r}")
        return None
    return value


def _listing(p: Problems, path: str, value: Any) -> List[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        p.add(path, f"must be a list, got {value!r}")
        return []
    return value


def parse_suite(data: Any, *, path: Optional[Path] = None) -> Suite:
    """Validate a suite mapping (see the module docstring); :class:`SuiteError` lists every
    problem by field path (``scenarios[2].rate: must be a number, got 'fast'``)."""
    p = Problems()
    if not isinstance(data, Mapping):
        raise SuiteError([f"suite: must be a mapping ({', '.join(SUITE_KEYS)}), got {data!r}"])
    p.unknown_keys("", [str(k) for k in data], SUITE_KEYS)
    name = _text(p, "name", data.get("name")) or (path.stem if path is not None else "suite")
    description = _text(p, "description", data.get("description")) or ""
    smoke = bool(_flag(p, "smoke", data.get("smoke")))
    fail_fast = bool(_flag(p, "fail_fast", data.get("fail_fast")))
    stack = data.get("stack", "none")
    if stack not in STACK_MODES:
        p.add("stack", f"must be one of {', '.join(STACK_MODES)}, got {stack!r}"
              + (suggest(stack, STACK_MODES, otherwise="") if isinstance(stack, str) else ""))
        stack = "none"
    prometheus = _text(p, "prometheus", data.get("prometheus"))
    if prometheus is not None:
        if not _URL.match(prometheus):
            p.add("prometheus", f"must be an http(s) URL of an existing Prometheus, got {prometheus!r}")
        if "stack" in data and stack != "none":
            p.add("prometheus", f"an external Prometheus and `stack: {stack}` exclude each other: keep one")
        stack = "external"
    services = _services(p, data.get("services"))
    known = [s.name for s in services]
    waits: List[WaitFor] = []
    for i, w in enumerate(_listing(p, "wait_for", data.get("wait_for"))):
        at = f"wait_for[{i}]"
        if isinstance(w, str):
            w = {"url": w}
        if not isinstance(w, Mapping):
            p.add(at, f"must be a URL or a mapping ({', '.join(WAIT_KEYS)}), got {w!r}")
            continue
        p.unknown_keys(f"{at}.", [str(k) for k in w], WAIT_KEYS)
        url = _text(p, f"{at}.url", w.get("url"), required=True)
        if url is not None:
            _placeholders(p, f"{at}.url", url, known)
            if not _URL.match(_fill(url, {k: 1 for k in known})):
                p.add(f"{at}.url", f"must be an http(s) URL answering 2xx when ready, got {url!r}")
        timeout = p.duration(f"{at}.timeout", w.get("timeout", "60s"))
        if url is not None and timeout is not None:
            waits.append(WaitFor(url, timeout))
    results = _text(p, "results", data.get("results"))
    baseline = _text(p, "baseline", data.get("baseline"))
    entries: List[SuiteEntry] = []
    raw = data.get("scenarios")
    if raw is None:
        p.add("scenarios", "required: a list of packaged scenario names or scenario files")
    for i, e in enumerate(_listing(p, "scenarios", raw)):
        entry = _entry(p, i, e, known)
        if entry is not None:
            entries.append(entry)
    if raw is not None and isinstance(raw, list) and not raw:
        p.add("scenarios", "must list at least one scenario")
    p.raise_if_any(SuiteError)
    return Suite(name=name, path=path, entries=tuple(entries), description=description, smoke=smoke, stack=stack,
                 prometheus_url=prometheus, services=tuple(services), wait_for=tuple(waits),
                 results=Path(results) if results else Path("results") / name,
                 baseline=Path(baseline) if baseline else None, fail_fast=fail_fast)


def _services(p: Problems, value: Any) -> List[ServiceSpec]:
    out: List[ServiceSpec] = []
    for i, s in enumerate(_listing(p, "services", value)):
        at = f"services[{i}]"
        if not isinstance(s, Mapping):
            p.add(at, f"must be a mapping ({', '.join(SERVICE_KEYS)}), got {s!r}")
            continue
        p.unknown_keys(f"{at}.", [str(k) for k in s], SERVICE_KEYS)
        name = _text(p, f"{at}.name", s.get("name"), required=True)
        if name is not None and not _NAME.match(name):
            p.add(f"{at}.name", f"letters, digits, '-', '_' and '.' only (it names the placeholders), got {name!r}")
            name = None
        if name is not None and any(o.name == name for o in out):
            p.add(f"{at}.name", f"{name!r} is already the name of another service")
        cmd = s.get("command")
        if not isinstance(cmd, list) or not cmd or not all(isinstance(a, (str, int, float)) for a in cmd):
            p.add(f"{at}.command", f"must be a non-empty list of arguments, e.g. ['{{python}}', '-m', "
                                   f"'workloads.cli', 'serve', '--port', '{{port}}'], got {cmd!r}")
            cmd = None
        ready = _text(p, f"{at}.ready", s.get("ready"))
        if ready is not None and not _URL.match(ready):
            p.add(f"{at}.ready", f"must be an http(s) URL answering 2xx when the service is ready, got {ready!r}")
        timeout = p.duration(f"{at}.start_timeout", s.get("start_timeout", "60s"))
        port = p.integer(f"{at}.port", s.get("port", 0), 0)
        if port is not None and port > 65535:
            p.add(f"{at}.port", f"must be at most 65535, got {port}")
        if name is not None and cmd is not None and timeout is not None and port is not None:
            out.append(ServiceSpec(name, tuple(str(a) for a in cmd), ready, timeout, port))
    return out


def _placeholders(p: Problems, path: str, text: str, known: Sequence[str]) -> None:
    for m in _PLACEHOLDER.finditer(text):
        if m.group(1) not in known:
            p.add(path, f"{m.group(0)!r} names no service of this suite"
                  + (suggest(m.group(1), known) if known else " (it has no services: block)"))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def _entry(p: Problems, i: int, e: Any, known: Sequence[str]) -> Optional[SuiteEntry]:
    at = f"scenarios[{i}]"
    if isinstance(e, str):
        e = {"scenario": e}
    if not isinstance(e, Mapping):
        p.add(at, f"must be a scenario name, a file, or a mapping ({', '.join(ENTRY_KEYS)}), got {e!r}")
        return None
    p.unknown_keys(f"{at}.", [str(k) for k in e], ENTRY_KEYS)
    ref = _text(p, f"{at}.scenario", e.get("scenario"), required=True)
    name = _text(p, f"{at}.name", e.get("name"))
    if name is not None and not _NAME.match(name):
        p.add(f"{at}.name", f"letters, digits, '-', '_' and '.' only (it names the result files), got {name!r}")
    smoke = _flag(p, f"{at}.smoke", e.get("smoke"))
    own_service = True
    if "service" in e:
        if e["service"] is not False:
            p.add(f"{at}.service", "only `false` (do not start the scenario's own service: one of the suite's "
                                   f"services: serves its target), got {e['service']!r}")
        own_service = False
    ov: Dict[str, Any] = {}
    for key, path in _ENTRY_FIELDS:
        if e.get(key) is None:
            continue
        value = e[key]
        if key == "rate":
            value = p.number(f"{at}.rate", value, strict=True)
        elif key == "vus":
            value = p.integer(f"{at}.vus", value, 1)
        elif key in ("duration", "timeout"):
            if p.duration(f"{at}.{key}", value) is None:
                value = None
        elif _text(p, f"{at}.{key}", value) is None:
            value = None
        if value is not None:
            ov[path] = value
    sets = e.get("set")
    if sets is not None:
        if not isinstance(sets, Mapping) or not all(isinstance(k, str) and k for k in sets):
            p.add(f"{at}.set", f"must map scenario fields (dotted paths) to values, e.g. {{timeout: 2s}}, got {sets!r}")
        else:
            for k, v in sets.items():
                ov[k] = v
    if name is not None:
        ov["name"] = name
    for k, v in ov.items():
        for s in _strings(v):
            _placeholders(p, f"{at}.{k}", s, known)
    if ref is None:
        return None
    return SuiteEntry(index=i, scenario=ref, name=name, smoke=smoke, own_service=own_service, overrides=ov)


# -------------------------------------------------------------------------------- planning


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _fill(value: Any, ports: Mapping[str, int]) -> Any:
    """``{NAME.port}`` / ``{NAME.url}`` filled in every string of ``value``."""
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: (str(ports[m.group(1)]) if m.group(2) == "port"
                                           else f"http://127.0.0.1:{ports[m.group(1)]}")
                                if m.group(1) in ports else m.group(0), value)
    if isinstance(value, Mapping):
        return {k: _fill(v, ports) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ports) for v in value]
    return value


def _scenario_ref(suite: Suite, ref: str) -> str:
    """A packaged name as it is; a file relative to the suite file's folder."""
    if suite.path is None or library.is_library_name(ref) and not (suite.path.parent / ref).exists():
        return ref
    p = Path(ref)
    return str(p if p.is_absolute() else suite.path.parent / p)


def plan_suite(suite: Suite, *, smoke: Optional[bool] = None, results: Optional[Path] = None,
               baseline: Optional[Path] = None, env: Optional[Mapping[str, str]] = None
               ) -> Tuple[Suite, List[Planned], Dict[str, int]]:
    """Validate every scenario of ``suite`` as it will run (ports picked, placeholders
    filled, smoke variants applied, baselines read) before anything starts.  ``smoke``,
    ``results``, ``baseline``: the command line's overrides.  Returns the suite as
    overridden, the plan and the services' ports; :class:`SuiteError` lists every problem
    (``scenarios[1] (spike): profile.rte: unknown key``)."""
    suite = replace(suite, smoke=suite.smoke if smoke is None else smoke,
                    results=results if results is not None else suite.results,
                    baseline=baseline if baseline is not None else suite.baseline)
    if suite.baseline is not None and suite.baseline.exists() and not suite.baseline.is_dir():
        raise SuiteError([f"baseline: {suite.baseline} is not a folder (it holds <scenario>.json baselines)"])
    if suite.stack == "local":
        msg = missing_binaries_message(find_binaries())
        if msg:
            raise SuiteError([f"stack: local: {msg}"])
    ports = {s.name: s.port or _free_port() for s in suite.services}
    problems: List[str] = []
    planned: List[Planned] = []
    seen: Dict[str, int] = {}
    for e in suite.entries:
        at = f"scenarios[{e.index}] ({e.scenario})"
        use_smoke = suite.smoke if e.smoke is None else e.smoke
        try:
            sc = library.load(_scenario_ref(suite, e.scenario), _fill(dict(e.overrides), ports), env,
                              smoke=use_smoke)
        except ScenarioError as exc:
            problems += [f"{at}: {pr}" for pr in exc.problems]
            continue
        if not e.own_service and sc.service is not None:
            sc = replace(sc, service=None)
            if "{port}" in sc.target:
                problems.append(f"{at}: target: {sc.target!r} is the port of the scenario's own service, which "
                                "`service: false` does not start: aim it at a suite service, e.g. "
                                "target: '{NAME.url}/path'")
                continue
        if use_smoke and not library.read(_scenario_ref(suite, e.scenario))[1].get("smoke"):
            problems.append(f"{at}: smoke: this scenario has no smoke: block to shorten it; "
                            "give the entry `smoke: false` or a duration")
            continue
        name = e.name or sc.name
        if not _NAME.match(name):
            problems.append(f"{at}: name {name!r}: letters, digits, '-', '_' and '.' only (it names the result "
                            "files); give the entry a name:")
            continue
        if name in seen:
            problems.append(f"{at}: name {name!r} is also scenarios[{seen[name]}]'s: give one of them a name: "
                            "(each names its result files)")
            continue
        seen[name] = e.index
        base_path: Optional[Path] = None
        if suite.baseline is not None and (suite.baseline / f"{name}.json").is_file():
            base_path = suite.baseline / f"{name}.json"
            try:
                load_result(base_path)
            except ResultError as exc:
                problems.append(f"{at}: baseline {base_path}: {exc}")
                continue
        planned.append(Planned(e, name, sc, suite.results / f"{name}.json", suite.results / f"{name}.html",
                               base_path))
    if problems:
        raise SuiteError(problems)
    return suite, planned, ports


# -------------------------------------------------------------------------------- running


@dataclass
class SuiteOptions:
    """How to run a suite (what: the suite file)."""

    progress: str = "off"            # each run's own live display (auto | tty | plain | off)
    lag_bound_ms: float = 5.0
    install_signal_handlers: bool = True
    stream: Any = field(default_factory=lambda: sys.stderr)  # progress lines
    #: after its gate, a scenario that passed becomes the baseline's <name>.json
    update_baselines: bool = False
    #: (planned, scenario) -> result; replaces the in-process run (tests)
    run_scenario: Optional[Callable[[Planned, Scenario], Dict[str, Any]]] = None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


class _SetupError(Exception):
    """A suite service or ``wait_for`` URL that did not come up (exit 1)."""


@contextlib.contextmanager
def _started(spec: Mapping[str, Any], port: Optional[int], signals: SignalScope) -> Iterator[ManagedService]:
    """A started :class:`ManagedService`, stopped on leaving, also when its start is
    interrupted (a signal while it boots must not leave it running); the stop itself is
    never cut short by a signal."""
    svc = ManagedService(spec, port=port)
    try:
        svc.start()
        yield svc
    finally:
        with signals.soft():
            svc.stop()


def _wait_http(url: str, timeout_s: float, signals: SignalScope) -> float:
    """Poll ``url`` until it answers 2xx; seconds it took, or :class:`_SetupError`."""
    t0 = time.monotonic()
    last = "no answer"
    while True:
        try:
            with urllib.request.urlopen(url, timeout=min(2.0, max(timeout_s, 0.1))) as r:  # noqa: S310 (suite file)
                if 200 <= r.status < 300:
                    return time.monotonic() - t0
                last = f"HTTP {r.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = str(getattr(exc, "reason", exc))
        if time.monotonic() - t0 >= timeout_s:
            raise _SetupError(f"wait_for: {url} did not answer 2xx within {timeout_s:g}s (last: {last})")
        signals.check()
        time.sleep(0.25)


class _Suite:
    """One execution of a planned suite (see :func:`run_suite`)."""

    def __init__(self, suite: Suite, planned: List[Planned], ports: Mapping[str, int], opts: SuiteOptions) -> None:
        self.suite, self.planned, self.ports, self.opts = suite, planned, dict(ports), opts
        self.records: List[Dict[str, Any]] = []
        self.results: Dict[str, Dict[str, Any]] = {}
        self.comparisons: Dict[str, Optional[Dict[str, Any]]] = {}
        self.services: List[Dict[str, Any]] = []
        self.setup_error: Optional[str] = None
        self.interrupted_by: Optional[str] = None

    def say(self, text: str) -> None:
        print(f"suite {self.suite.name}: {text}", file=self.opts.stream, flush=True)

    def run_options(self) -> RunOptions:
        s = self.suite
        stack = s.stack
        if stack == "auto":
            stack = "none" if missing_binaries_message(find_binaries()) else "local"
        return RunOptions(metrics_port=0, progress=self.opts.progress, lag_bound_ms=self.opts.lag_bound_ms,
                          stack=stack, prometheus_url=s.prometheus_url,
                          install_signal_handlers=self.opts.install_signal_handlers)

    def execute(self, signals: SignalScope) -> None:
        s = self.suite
        n = len(self.planned)
        base = f"; baselines from {s.baseline} ({sum(1 for p in self.planned if p.baseline_path)} of {n} present)" \
            if s.baseline is not None else "; no baseline folder"
        stack = self.run_options().stack
        self.say(f"{n} scenario{'s' if n != 1 else ''}" + (" (smoke)" if s.smoke else "")
                 + f", results in {s.results}{base}; "
                 + {"local": "a fresh Prometheus + Alertmanager per scenario",
                    "external": f"alerts asked of {s.prometheus_url}"}.get(stack, "no alert stack"))
        if s.stack == "auto" and stack == "none":
            self.say("stack: auto: Prometheus/Alertmanager not installed: running without the alert stack")
        with contextlib.ExitStack() as started:
            try:
                for spec in s.services:
                    t0 = time.monotonic()
                    self.say(f"starting service {spec.name}: {' '.join(spec.command)}")
                    try:
                        svc = started.enter_context(_started(spec.as_service(), self.ports[spec.name], signals))
                    except ServiceError as exc:
                        raise _SetupError(f"service {spec.name}: {exc}") from None
                    self.services.append({"name": spec.name, "pid": svc.pid, "port": svc.port,
                                          "command": svc.command, "ready_s": round(time.monotonic() - t0, 3)})
                    self.say(f"service {spec.name} ready on port {svc.port} (pid {svc.pid}) "
                             f"after {time.monotonic() - t0:.1f}s")
                for w in s.wait_for:
                    url = _fill(w.url, self.ports)
                    took = _wait_http(url, w.timeout_s, signals)
                    self.say(f"{url} answered after {took:.1f}s")
                for k, p in enumerate(self.planned, 1):
                    rec = self.run_one(k, p, signals)
                    self.records.append(rec)
                    if signals.interrupted:
                        break
                    if s.fail_fast and rec["exit_code"] != ExitCode.OK:
                        self.say(f"fail_fast: stopping after {p.name} (exit {rec['exit_code']})")
                        break
            except Interrupted as exc:
                self.interrupted_by = signal_name(exc.signum)
            except _SetupError as exc:
                self.setup_error = str(exc)
                self.say(f"ERROR: {exc}")
            finally:
                if self.services:
                    self.say("stopping services: " + ", ".join(sv["name"] for sv in reversed(self.services)))
        if signals.interrupted and self.interrupted_by is None:
            self.interrupted_by = signal_name(signals.signum or 0)

    def run_one(self, k: int, p: Planned, signals: SignalScope) -> Dict[str, Any]:
        n = len(self.planned)
        sc = p.scenario
        rec: Dict[str, Any] = {"name": p.name, "scenario": p.entry.scenario, "target": sc.target,
                               "profile": sc.profile.describe(), "started_at": _now()}
        self.say(f"[{k}/{n}] {p.name}: {sc.target}, {sc.profile.describe()}")
        t0 = time.monotonic()
        result: Optional[Dict[str, Any]] = None
        code = int(ExitCode.ERROR)
        error: Optional[str] = None
        try:
            if sc.service is not None:  # the scenario's own service: for this scenario only
                with _started(sc.service, None, signals) as svc:
                    result = self._execute(p, apply(sc, svc))
            else:
                result = self._execute(p, sc)
        except Interrupted:  # before its first request (Run stopped what it started)
            code, error = int(ExitCode.INTERRUPTED), "interrupted before its first request: nothing measured"
        except _ScenarioFailed as exc:
            code, error = exc.code, str(exc)
        except ServiceError as exc:  # the scenario's own service did not start
            code, error = int(ExitCode.ERROR), str(exc)
        with signals.soft():  # what was measured is written, whatever signal comes now
            if result is not None:
                try:
                    code = self.write(p, result, rec)
                except OSError as exc:
                    code, error = int(ExitCode.ERROR), f"cannot write its files: {exc}"
            rec.update(exit_code=code, verdict=_verdict_word(code), finished_at=_now(),
                       wall_s=round(time.monotonic() - t0, 3))
            if error is not None:
                rec["error"] = error
            self.say(f"[{k}/{n}] {p.name}: {rec['verdict']} (exit {code}) in {rec['wall_s']:.1f}s"
                     + (f"; {rec['headline']}" if rec.get("headline") else "")
                     + (f"; {error}" if error else "")
                     + (f" -> {rec['result']}" if rec.get("result") else ""))
        return rec

    def _execute(self, p: Planned, sc: Scenario) -> Dict[str, Any]:
        """The run; a scenario that could not run at all raises :class:`_ScenarioFailed`
        with the code ``harness run`` would exit with."""
        try:
            if self.opts.run_scenario is not None:
                return self.opts.run_scenario(p, sc)
            return Run(sc, self.run_options()).execute()
        except ServiceError as exc:
            raise _ScenarioFailed(int(ExitCode.ERROR), str(exc)) from None
        except (TargetError, StackConfigError) as exc:
            raise _ScenarioFailed(int(ExitCode.USAGE), str(exc)) from None
        except (StackError, RuntimeError) as exc:  # RuntimeError: worker processes that could not start
            raise _ScenarioFailed(int(ExitCode.ERROR), str(exc)) from None

    def write(self, p: Planned, result: Dict[str, Any], rec: Dict[str, Any]) -> int:
        code = int((result.get("verdict") or {}).get("exit_code", ExitCode.ERROR))
        comparison = None
        if p.baseline_path is not None:
            try:
                comparison = compare(load_result(p.baseline_path), result)
                code = gate_exit_code(code, comparison)
                rec["baseline"] = str(p.baseline_path)
                rec["gate"] = {k: v for k, v in (comparison.get("gate") or {}).items()
                               if k in ("passed", "exit_code", "reason")}
            except (ResultError, ValueError) as exc:
                rec["baseline"] = str(p.baseline_path)
                rec["gate"] = {"passed": False, "reason": f"cannot compare: {exc}"}
                code = code or int(ExitCode.USAGE)
        else:
            rec["baseline"] = None
        rec["result"] = str(write_result(result, p.result_path))
        rec["report"] = str(write_report(result, p.report_path, comparison=comparison))
        if self.opts.update_baselines and self.suite.baseline is not None and code == ExitCode.OK:
            rec["baseline_updated"] = str(write_result(result, self.suite.baseline / f"{p.name}.json"))
        rec["status"] = result.get("status")
        rec["run_id"] = result.get("run_id")
        lat = (((result.get("summary") or {}).get("all") or {}).get("latency") or {})
        if lat.get("p95") is not None:
            rec["headline"] = f"p95 {lat['p95']:.1f} ms" + (
                f", gate {'passed' if rec['gate'].get('passed') else 'FAILED'}" if rec.get("gate") else "")
        self.results[p.name] = result
        self.comparisons[p.name] = comparison
        return code


class _ScenarioFailed(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


_WORDS = {int(ExitCode.OK): "passed", int(ExitCode.REGRESSED): "REGRESSED",
          int(ExitCode.THRESHOLDS_FAILED): "THRESHOLDS FAILED", int(ExitCode.INVALID_RUN): "INVALID RUN",
          int(ExitCode.USAGE): "USAGE ERROR", int(ExitCode.ERROR): "ERROR", int(ExitCode.INTERRUPTED): "INTERRUPTED"}


def _verdict_word(code: int) -> str:
    return _WORDS.get(int(code), f"exit {code}")


@dataclass
class SuiteOutcome:
    """What :func:`run_suite` did: the summary (``suite.json``) and, per scenario name, its
    result and baseline comparison (for the CI formats)."""

    summary: Dict[str, Any]
    results: Dict[str, Dict[str, Any]]
    comparisons: Dict[str, Optional[Dict[str, Any]]]

    @property
    def exit_code(self) -> int:
        return int(self.summary["exit_code"])


def run_suite(suite: Suite, planned: List[Planned], ports: Mapping[str, int],
              options: Optional[SuiteOptions] = None) -> SuiteOutcome:
    """Run a planned suite (:func:`plan_suite`): services up, ``wait_for`` answered, the
    scenarios in order (each result, report and gate written as it ends), services down,
    ``suite.json`` written to the results folder.  Signals: see the module docstring."""
    opts = options or SuiteOptions()
    run = _Suite(suite, planned, ports, opts)
    started, t0 = _now(), time.monotonic()
    with signal_scope(opts.install_signal_handlers) as signals:
        run.execute(signals)
        with signals.soft():
            summary = _summary(run, started, time.monotonic() - t0)
            try:
                summary["summary_file"] = str(write_result(summary, suite.results / "suite.json"))
            except OSError as exc:  # the scenarios' verdicts stand; the summary file is a failed step
                run.say(f"ERROR: cannot write {suite.results / 'suite.json'}: {exc.strerror or exc}")
                summary["summary_file"] = None
                summary["exit_code"] = worst_exit_code([summary["exit_code"], int(ExitCode.ERROR)])
                summary["verdict"] = _verdict_word(summary["exit_code"])
    return SuiteOutcome(summary, run.results, run.comparisons)


def _summary(run: _Suite, started: str, wall_s: float) -> Dict[str, Any]:
    s = run.suite
    codes = [int(r["exit_code"]) for r in run.records]
    if run.interrupted_by is not None:
        codes.append(int(ExitCode.INTERRUPTED))
    if run.setup_error is not None:
        codes.append(int(ExitCode.ERROR))
    code = worst_exit_code(codes)
    done = {r["name"] for r in run.records}
    scenarios = list(run.records) + [
        {"name": p.name, "scenario": p.entry.scenario, "target": p.scenario.target, "status": "not run",
         "exit_code": None, "verdict": "not run", "result": None, "report": None,
         "baseline": str(p.baseline_path) if p.baseline_path else None}
        for p in run.planned if p.name not in done]
    status = ("interrupted" if run.interrupted_by is not None else "setup-failed" if run.setup_error is not None
              else "stopped" if len(run.records) < len(run.planned) else "completed")
    return {
        "schema": SUITE_SCHEMA,
        "name": s.name,
        "description": s.description,
        "suite_file": str(s.path) if s.path is not None else None,
        "smoke": s.smoke,
        "stack": s.stack,
        "prometheus_url": s.prometheus_url,
        "results_dir": str(s.results),
        "baseline_dir": str(s.baseline) if s.baseline is not None else None,
        "started_at": started,
        "finished_at": _now(),
        "wall_s": round(wall_s, 3),
        "status": status,
        "interrupted_by": run.interrupted_by,
        "setup_error": run.setup_error,
        "exit_code": code,
        "verdict": _verdict_word(code),
        "worst_order": [ExitCode(c).name for c in sorted(SEVERITY, key=SEVERITY.__getitem__, reverse=True)],
        "services": run.services,
        "counts": {"scenarios": len(run.planned), "ran": len(run.records),
                   "passed": sum(1 for r in run.records if r["exit_code"] == ExitCode.OK),
                   "failed": sum(1 for r in run.records if r["exit_code"] != ExitCode.OK),
                   "not_run": len(run.planned) - len(run.records)},
        "scenarios": scenarios,
    }


# -------------------------------------------------------------------------------- outputs


def format_suite(summary: Mapping[str, Any]) -> str:
    """The terminal table: one line per scenario, then the suite's verdict."""
    rows = summary.get("scenarios") or []
    width = max([len(str(r["name"])) for r in rows] + [8]) + 2
    lines = [f"suite {summary['name']}: {summary['status']}"
             + (f" ({summary['interrupted_by']})" if summary.get("interrupted_by") else "")
             + (f": {summary['setup_error']}" if summary.get("setup_error") else "")]
    for r in rows:
        gate = r.get("gate")
        lines.append(f"  {r['name']:<{width}}{r['verdict']:<19}"
                     + ("" if r.get("exit_code") is None else f"exit {r['exit_code']:<4}")
                     + (f"{r['wall_s']:>7.1f}s" if r.get("wall_s") is not None else "")
                     + (f"  {r['headline']}" if r.get("headline") else "")
                     + ("  (no baseline)" if r.get("result") and not r.get("baseline") and summary.get("baseline_dir")
                        else "")
                     + (f"  gate: {gate.get('reason')}" if gate and not gate.get("passed") else ""))
    c = summary["counts"]
    lines.append(f"{c['passed']} passed, {c['failed']} failed, {c['not_run']} not run of {c['scenarios']}; "
                 f"exit {summary['exit_code']} ({summary['verdict']}); summary {summary.get('summary_file', '')}")
    return "\n".join(lines)


def suite_junit(summary: Mapping[str, Any], results: Mapping[str, Mapping[str, Any]],
                comparisons: Mapping[str, Optional[Mapping[str, Any]]]) -> str:
    """JUnit XML with one ``<testsuite>`` per scenario: its result's testcases
    (:func:`harness.result.ci.to_junit`: thresholds, self-check, run, and the gate's
    metrics folded into the same suite); a scenario that produced no result is one
    ``<error>`` testcase, one that did not run one ``<skipped>``."""
    root = ET.Element("testsuites", {"name": f"harness suite {summary['name']}"})
    for rec in summary.get("scenarios") or []:
        name = str(rec["name"])
        if name in results:
            doc = ET.fromstring(to_junit(results[name], comparisons.get(name)))
            suites = list(doc)
            first = suites[0]
            for extra in suites[1:]:
                first.extend(c for c in extra if c.tag == "testcase")
            for attr, tag in (("tests", None), ("failures", "failure"), ("errors", "error"), ("skipped", "skipped")):
                cases = [c for c in first if c.tag == "testcase"]
                first.set(attr, str(len(cases) if tag is None else sum(1 for c in cases if c.find(tag) is not None)))
            first.set("name", f"harness: {name}")
            root.append(first)
            continue
        suite = ET.SubElement(root, "testsuite", {"name": f"harness: {name}", "tests": "1", "failures": "0",
                                                  "errors": "0", "skipped": "0",
                                                  "time": f"{float(rec.get('wall_s') or 0):.3f}"})
        case = ET.SubElement(suite, "testcase", {"classname": f"harness.{name}.run", "name": "run completed",
                                                 "time": f"{float(rec.get('wall_s') or 0):.3f}"})
        if rec.get("exit_code") is None:
            ET.SubElement(case, "skipped", {"message": f"not run: the suite {summary['status']}"})
            suite.set("skipped", "1")
        else:
            msg = f"{rec['verdict']} (exit {rec['exit_code']}): {rec.get('error') or 'no result'}"
            el = ET.SubElement(case, "error", {"type": "NoResult", "message": msg})
            el.text = msg
            suite.set("errors", "1")
    for attr in ("tests", "failures", "errors", "skipped"):
        root.set(attr, str(sum(int(s.get(attr, "0")) for s in root)))
    root.set("time", f"{float(summary.get('wall_s') or 0):.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _md(text: Any) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def suite_markdown(summary: Mapping[str, Any], results: Mapping[str, Mapping[str, Any]],
                   comparisons: Mapping[str, Optional[Mapping[str, Any]]]) -> str:
    """A Markdown verdict of the whole suite (a table of its scenarios), then each
    scenario's own (:func:`harness.result.ci.to_markdown`)."""
    code = int(summary["exit_code"])
    mark = "✅" if code == ExitCode.OK else "⚠️" if code == ExitCode.INTERRUPTED else "❌"
    lines = [f"## {mark} Suite {_md(summary['name'])}: {summary['verdict']} (exit {code})", "",
             f"{summary['counts']['passed']} passed, {summary['counts']['failed']} failed, "
             f"{summary['counts']['not_run']} not run; status {summary['status']}, {summary['wall_s']:.1f} s.", "",
             "| scenario | verdict | exit | p95 / gate | time |", "|---|---|---|---|---|"]
    for r in summary.get("scenarios") or []:
        lines.append(f"| {_md(r['name'])} | {_md(r['verdict'])} | {'-' if r.get('exit_code') is None else r['exit_code']}"
                     f" | {_md(r.get('headline') or r.get('error') or '-')} | "
                     f"{'-' if r.get('wall_s') is None else format(r['wall_s'], '.1f') + ' s'} |")
    lines.append("")
    for r in summary.get("scenarios") or []:
        if r["name"] in results:
            lines.append(to_markdown(results[r["name"]], comparisons.get(r["name"])))
    return "\n".join(lines) + "\n"


def write_suite_output(text: str, path: str, *, markdown: bool = False) -> Path:
    """Write a CI file (folders made); Markdown is appended when ``path`` is
    ``$GITHUB_STEP_SUMMARY``, as :func:`harness.result.ci.write_ci` does."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    step = os.environ.get("GITHUB_STEP_SUMMARY")
    mode = "a" if markdown and step and p.resolve() == Path(step).resolve() else "w"
    with open(p, mode, encoding="utf-8", newline="") as f:
        f.write(text)
    return p
