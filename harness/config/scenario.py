"""Scenarios: what to run, loaded from YAML, environment variables and CLI overrides.

Precedence (the project's convention): **CLI flag > environment variable > scenario file >
default**.  The CLI passes its flags to :func:`load_scenario` as ``overrides`` — a mapping
with dotted paths (``{"profile.rate": 200, "executor.workers": 2}``) or nested mappings;
``None`` values are ignored so argparse defaults can be passed straight through.

Environment variables are ``HARNESS_`` + the field path in upper case with ``.`` → ``_``
(``HARNESS_DURATION=2m``, ``HARNESS_PROFILE_RATE=200``, ``HARNESS_EXECUTOR_MAX_IN_FLIGHT=64``;
mappings as YAML/JSON: ``HARNESS_THRESHOLDS='{latency: ["p(95)<80ms"]}'``).  Values are read
as YAML scalars, so ``200`` is a number and ``30s`` a string.  Only the known names
(:data:`ENV_VARS`) are read; other ``HARNESS_*`` variables belong to other components.

Merging: mappings merge key by key, except ``thresholds``, ``faults`` and ``mix``, which a
higher layer replaces whole (a file that states its thresholds means exactly those), and
``profile``, which is replaced whole when a higher layer changes its ``type`` (the old
type's parameters would only be "unknown key" noise).  From the command line
(``overrides``: ``--threshold``, ``--set thresholds=…``) thresholds merge **per metric**: a
metric given there replaces that metric's expressions, the others stay; ``METRIC=off``
removes one.

Failures always count: every scenario is judged on ``failed_rate`` (errors + timeouts +
dropped over all requests) with the budget's ``rate<0.01`` (1 %) unless the scenario or the command
line says otherwise — ``failures: {threshold: "rate<5%"}`` changes it (so does a
``thresholds.failed_rate`` entry, which wins), ``failures: {threshold: off}``
(``--failure-threshold off``) turns it off, visibly: the result's ``scenario.failures``
and the summary say so.  Independently of that switch, a run with no successful request
never passes (``throughput{outcome:ok}: count>0`` is always judged).

``service``: a process the harness starts before the load and stops after it (the target
in its own process, e.g. the reference HTTP service: ``command: ["{python}", "-m",
"workloads.cli", "serve", "--port", "{port}"]``, ``ready: "http://127.0.0.1:{port}/readyz"``);
``{port}`` in the target is the free port picked for it (see :mod:`harness.run.service`).

Validation collects **every** problem and raises one :class:`ScenarioError` with one line
per problem, each naming the field path (``profile.rate: must be > 0, got -5``), with a
"did you mean" for unknown keys and, when the value came from the environment or the
command line, where it came from.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from harness.config import profiles as _profiles
from harness.config.durations import format_duration, parse_duration
from harness.config.problems import Problems, suggest
from harness.config.profiles import ProfileError, Schedule
from harness.targets.registry import payload_names, target_names
from harness.targets.http import ENDPOINT_SETTINGS, HTTP_SETTINGS as _HTTP_SETTINGS
from harness.config.thresholds import (
    DEFAULT_FAILURE_THRESHOLD,
    FAILURE_METRIC,
    SUCCESS_GUARD,
    Threshold,
    ThresholdError,
    metric_key,
    parse_expression,
    parse_thresholds,
)

__all__ = [
    "ScenarioError",
    "ExecutorSettings",
    "Scenario",
    "BUILTIN_TARGETS",
    "short_targets",
    "EXECUTOR_TYPES",
    "MAX_WORKERS",
    "MAX_THREADS",
    "MAX_IN_FLIGHT",
    "DEFAULTS",
    "ENV_PREFIX",
    "ENV_VARS",
    "load_scenario",
    "scenario_from_dict",
    "default_scenario",
]

#: target names the harness itself knows; the rest are registered by plug-ins (``lbh.targets``)
BUILTIN_TARGETS: tuple[str, ...] = ("mixed", "noop")
EXECUTOR_TYPES: tuple[str, ...] = ("threads", "processes", "asyncio")
#: executor bounds: worker processes, threads per process, calls in flight
MAX_WORKERS, MAX_THREADS, MAX_IN_FLIGHT = 1024, 10_000, 1_000_000
ENV_PREFIX = "HARNESS_"

@dataclass(frozen=True)
class ExecutorSettings:
    """How calls are made.  ``workers`` processes each take a segment of the schedule
    (``type: processes`` or ``workers > 1``); inside a worker calls run on ``threads``
    threads (right for torch, which releases the GIL) or on an asyncio loop
    (``type: asyncio``, for async targets).  ``max_in_flight`` bounds concurrent calls
    for the whole run (the runner splits it across workers)."""

    type: str = "threads"
    workers: int = 1
    threads: int = 32
    max_in_flight: int = 256

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "workers": self.workers, "threads": self.threads, "max_in_flight": self.max_in_flight}


#: The defaults: ``harness run`` with no arguments runs this against the embedded workloads.
DEFAULTS: dict[str, Any] = {
    "name": "default",
    "description": "",
    "target": "features",
    "payload": None,
    "mix": None,
    "duration": "30s",
    "profile": {"type": "constant", "rate": 20},
    "executor": ExecutorSettings().to_dict(),
    "timeout": "5s",
    "thresholds": {"latency": ["p(95)<100ms", "p(99)<200ms"]},
    # the budget's failure threshold (failed_rate), judged on every run unless turned off
    "failures": {"threshold": DEFAULT_FAILURE_THRESHOLD},
    "service": None,
    "faults": {},
    "workload": {},
    "http": {},
    "seed": None,
}
TOP_LEVEL_KEYS: tuple[str, ...] = tuple(DEFAULTS)
EXECUTOR_KEYS: tuple[str, ...] = ("type", "workers", "threads", "max_in_flight")
_REPLACED_WHOLE = ("thresholds", "faults", "mix")
_MODULE_FUNCTION = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*|[^:\s]+\.py)"
                              r":[A-Za-z_][A-Za-z0-9_.]*$")
#: keys of the ``http`` mapping (harness.targets.http reads and checks them when the target is built)
HTTP_SETTINGS = _HTTP_SETTINGS
_URL = re.compile(r"^https?://[^\s/]+(?:/\S*)?$")
_WS_URL = re.compile(r"^wss?://[^\s/]+(?:/\S*)?$")  # a streaming target (harness.targets.websocket)


def _profile_params() -> list[str]:
    names: list[str] = ["type"]
    for params in _profiles.PROFILE_TYPES.values():
        for p in params:
            if p not in names:
                names.append(p)
    return names


def _env_vars() -> dict[str, str]:
    paths = [k for k in TOP_LEVEL_KEYS if k not in ("profile", "executor")]
    paths += ["profile"] + [f"profile.{p}" for p in _profile_params()]
    paths += ["executor"] + [f"executor.{k}" for k in EXECUTOR_KEYS]
    out: dict[str, str] = {}
    for path in paths:
        name = ENV_PREFIX + path.upper().replace(".", "_").replace("-", "_")
        assert name not in out, name  # the table must be unambiguous
        out[name] = path
    return out


#: environment variable -> field path (``HARNESS_PROFILE_RATE -> "profile.rate"``).
ENV_VARS: dict[str, str] = _env_vars()


class ScenarioError(ValueError):
    """Invalid scenario; ``problems`` has one ``"field.path: what is wrong"`` per problem."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__(
            "invalid scenario:\n" + "\n".join(f"  - {p}" for p in self.problems) if self.problems else "invalid scenario"
        )


@dataclass(frozen=True)
class Scenario:
    """A validated scenario.  Durations are in seconds."""

    name: str
    target: str
    profile: Schedule
    duration: float
    timeout: float
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)
    payload: str | None = None
    mix: Mapping[str, float] | None = None
    thresholds: Mapping[str, Any] = field(default_factory=dict)  # k6 form, as given
    faults: Mapping[str, Any] = field(default_factory=dict)
    #: settings for the embedded workloads' extractor (``ExtractorConfig`` fields)
    workload: Mapping[str, Any] = field(default_factory=dict)
    #: for an http(s) target: method, headers, verify (TLS certificate check)
    http: Mapping[str, Any] = field(default_factory=dict)
    seed: int | None = None
    description: str = ""
    #: the failure threshold: {"threshold": expression or "off", "judged": [...], "source": ...}
    failures: Mapping[str, Any] = field(default_factory=lambda: {"threshold": DEFAULT_FAILURE_THRESHOLD})
    #: a process to start for the run (command, ready, start_timeout); None: the target runs itself
    service: Mapping[str, Any] | None = None
    parsed_thresholds: tuple[Threshold, ...] = field(default=(), compare=False, repr=False)
    #: field path -> where its value came from: "default", the file path, "env HARNESS_X", "cli"
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def target_kind(self) -> str:
        """``"short"`` (a registered or built-in name), ``"function"`` (module:function), ``"http"`` or ``"ws"``."""
        if ":" not in self.target:
            return "short"
        if _URL.match(self.target):
            return "http"
        if _WS_URL.match(self.target):
            return "ws"
        return "function"

    @property
    def closed_loop(self) -> bool:
        return self.profile.closed_loop

    def to_dict(self) -> dict[str, Any]:
        """Normalised and JSON-serialisable (for the run result)."""
        return {
            "name": self.name,
            "description": self.description,
            "target": self.target,
            "payload": self.payload,
            "mix": dict(self.mix) if self.mix is not None else None,
            "duration": self.duration,
            "profile": self.profile.to_dict(),
            "executor": self.executor.to_dict(),
            "timeout": self.timeout,
            "thresholds": {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in self.thresholds.items()},
            "faults": dict(self.faults),
            "workload": dict(self.workload),
            "http": dict(self.http),
            "seed": self.seed,
            "failures": dict(self.failures),
            "service": dict(self.service) if self.service is not None else None,
        }

    @property
    def failure_threshold_on(self) -> bool:
        """Whether failed requests are judged (``failures.threshold`` not off)."""
        return self.failures.get("threshold") != "off"


# ----------------------------------------------------------------------------- loading


def short_targets() -> tuple[str, ...]:
    """Every target name that resolves here: registered plug-in targets, then the built-ins."""
    return (*target_names(), *BUILTIN_TARGETS)


def _nest(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Turn ``{"profile.rate": 5}`` into ``{"profile": {"rate": 5}}``; drop ``None``s."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        parts = str(key).split(".")
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        last = parts[-1]
        if isinstance(value, Mapping) and isinstance(node.get(last), dict):
            node[last] = _merge(node[last], dict(value))
        else:
            node[last] = dict(value) if isinstance(value, Mapping) else value
    return out


def _merge(base: dict[str, Any], top: Mapping[str, Any], path: str = "") -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        here = f"{path}.{key}" if path else str(key)
        cur = out.get(key)
        if here in _REPLACED_WHOLE or not isinstance(value, Mapping) or not isinstance(cur, Mapping):
            out[key] = value
        elif here == "profile" and "type" in value and value.get("type") != cur.get("type"):
            out[key] = dict(value)
        else:
            out[key] = _merge(dict(cur), value, here)
    return out


def _leaves(data: Mapping[str, Any], path: str = "") -> list[str]:
    out = []
    for key, value in data.items():
        here = f"{path}.{key}" if path else str(key)
        if isinstance(value, Mapping) and here not in _REPLACED_WHOLE and value:
            out += _leaves(value, here)
        else:
            out.append(here)
    return out


def _env_layer(env: Mapping[str, str], problems: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    flat: dict[str, Any] = {}
    labels: dict[str, str] = {}
    for name, path in ENV_VARS.items():
        if name not in env:
            continue
        raw = env[name]
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except (yaml.YAMLError, ValueError, RecursionError) as exc:
            problems.append(f"{path}: environment variable {name} is not valid YAML: "
                            f"{'nested too deeply' if isinstance(exc, RecursionError) else exc}")
            continue
        if value is None:
            continue
        if path in ("profile", "executor") and not isinstance(value, Mapping):
            problems.append(f"{path}: environment variable {name} must be a YAML mapping, got {raw!r}")
            continue
        flat[path] = value
        labels[path] = f"env {name}"
    nested = _nest(flat)
    return nested, {leaf: labels[next(p for p in labels if leaf == p or leaf.startswith(p + "."))]
                    for leaf in _leaves(nested)}


def load_scenario(
    path: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Scenario:
    """Load and validate a scenario: defaults < YAML file ``path`` < ``env`` (default
    ``os.environ``) < ``overrides`` (the CLI's flags).  Raises :class:`ScenarioError`."""
    data: Mapping[str, Any] = {}
    label = "default"
    if path is not None:
        label = str(path)
        data = read_scenario_file(path)
    return scenario_from_dict(data, overrides=overrides, env=env, source=label)


def read_scenario_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A scenario file's mapping; every way it can fail is a :class:`ScenarioError` naming it."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError([f"{p}: no such scenario file"]) from None
    except OSError as exc:
        raise ScenarioError([f"{p}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ScenarioError([f"{p}: not UTF-8 text (byte {exc.start}): a scenario file is UTF-8 YAML"]) from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError([f"{p}: invalid YAML: {exc}"]) from None
    except RecursionError:
        raise ScenarioError([f"{p}: invalid YAML: nested too deeply"]) from None
    except ValueError as exc:  # a value YAML cannot build, e.g. a date such as 2024-13-45
        raise ScenarioError([f"{p}: invalid YAML: {exc}"]) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, Mapping):
        raise ScenarioError([f"{p}: a scenario file must be a YAML mapping, got {type(loaded).__name__}"])
    return dict(loaded)


def scenario_from_dict(
    data: Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    source: str = "file",
) -> Scenario:
    """Like :func:`load_scenario` for an already-parsed mapping (``source`` labels it)."""
    problems: list[str] = []
    env_map = os.environ if env is None else env
    env_data, env_sources = _env_layer(env_map, problems)
    cli_data = _nest(overrides or {})
    file_data = dict(data)

    sources: dict[str, str] = {leaf: "default" for leaf in _leaves(DEFAULTS)}
    merged = dict(DEFAULTS)
    for layer, labels in (
        (file_data, {leaf: source for leaf in _leaves(file_data)}),
        (env_data, env_sources),
        (cli_data, {leaf: "cli" for leaf in _leaves(cli_data)}),
    ):
        if not layer:
            continue
        if (
            isinstance(layer.get("profile"), Mapping)
            and "type" in layer["profile"]
            and isinstance(merged.get("profile"), Mapping)
            and layer["profile"].get("type") != merged["profile"].get("type")
        ):
            sources = {k: v for k, v in sources.items() if not k.startswith("profile.") and k != "profile"}
        if layer is cli_data and isinstance(layer.get("thresholds"), Mapping) \
                and isinstance(merged.get("thresholds"), Mapping):
            if any(metric_key(k) == metric_key(FAILURE_METRIC) and v in _OFF for k, v in layer["thresholds"].items()):
                # --threshold failed_rate=off means --failure-threshold off (else the default would return)
                layer = {**layer, "failures": {**(layer.get("failures") or {}), "threshold": "off"}}
                labels = {**labels, "failures.threshold": "cli"}
            layer = {**layer, "thresholds": _merge_thresholds(merged["thresholds"], layer["thresholds"])}
        for key in _REPLACED_WHOLE:
            if key in layer:
                sources = {k: v for k, v in sources.items() if not k.startswith(key + ".")}
        merged = _merge(merged, layer)
        sources.update(labels)
    return _validate(merged, sources, problems)


_OFF = (False, None, "off", "none")


def _merge_thresholds(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Per metric: ``top``'s metrics replace the same metric in ``base`` (``latency{ target: x }``
    is ``latency{target:x}``); ``off`` removes one; the other metrics of ``base`` stay."""
    out = dict(base)
    for metric, exprs in top.items():
        for old in [k for k in out if metric_key(k) == metric_key(metric)]:
            del out[old]
        if exprs not in _OFF and exprs != []:
            out[metric] = exprs
    return out


def _with_failure_checks(th_spec: Mapping[str, Any], failures: Mapping[str, Any]) -> dict[str, Any]:
    """``th_spec`` plus the failure threshold (unless off, or the scenario states its own
    ``failed_rate``) and the success guard; with the threshold off, ``failed_rate`` (untagged)
    is not judged even when listed."""
    out = dict(th_spec)
    own = [k for k in out if metric_key(k) == metric_key(FAILURE_METRIC)]
    if failures.get("threshold") == "off":
        for k in own:
            del out[k]
    elif not own:
        out[FAILURE_METRIC] = [failures["threshold"]]
    guard_metric, guard_expr = SUCCESS_GUARD
    have = next((k for k in out if metric_key(k) == metric_key(guard_metric)), None)
    if have is None:
        out[guard_metric] = [guard_expr]
    else:
        items = out[have]
        items = [items] if isinstance(items, (str, Mapping)) else list(items or [])
        if guard_expr not in items:
            out[have] = items + [guard_expr]
    return out


def default_scenario() -> Scenario:
    """The defaults alone (no file, no environment, no overrides)."""
    return scenario_from_dict({}, env={})


# ----------------------------------------------------------------------------- validation


class _Check(Problems):
    """Problems that also say where a bad value came from (command line, environment)."""

    def __init__(self, sources: Mapping[str, str], problems: list[str]):
        super().__init__()
        self.sources = sources
        self.items = problems

    def where(self, path: str) -> str:
        src = self.sources.get(path)
        if src is None:  # a sub-path of a leaf (e.g. thresholds.latency) or a parent
            src = next((v for k, v in self.sources.items() if path.startswith(k + ".") or path.startswith(k + "[")), None)
        if src is None:
            src = next((v for k, v in self.sources.items() if k.startswith(path + ".")), None)
        if src and (src == "cli" or src.startswith("env ")):
            return " (set by " + ("the command line" if src == "cli" else src[4:]) + ")"
        return ""

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}{self.where(path)}")


def _validate(data: Mapping[str, Any], sources: Mapping[str, str], problems: list[str]) -> Scenario:
    c = _Check(sources, problems)
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            c.add(str(key), "unknown key" + suggest(str(key), TOP_LEVEL_KEYS))

    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        c.add("name", f"must be a non-empty string, got {name!r}")
    description = data.get("description") or ""
    if not isinstance(description, str):
        c.add("description", f"must be a string, got {description!r}")
        description = ""

    target = data.get("target")
    known = short_targets()
    what = "a registered name, mixed, noop, module:function, path/to/file.py:function or an http(s) URL"
    if not isinstance(target, str) or not target.strip():
        c.add("target", f"must be {what}, got {target!r}")
    elif not (target in known or _MODULE_FUNCTION.match(target) or _URL.match(target) or _WS_URL.match(target)):
        registered = ", ".join(target_names()) or ("none registered: the reference workloads come with "
                                                   "pip install 'latency-budget-harness[workloads]'")
        hint = suggest(target, known, otherwise="")
        c.add("target", f"{target!r} is not {what}" + (hint or f" (registered: {registered})"))

    payload = data.get("payload")
    if payload is not None and (not isinstance(payload, str)
                                or not (_MODULE_FUNCTION.match(payload) or payload in payload_names())):
        c.add("payload", "must be a registered payload generator"
              f" ({', '.join(payload_names()) or 'none registered'}), module:function or path/to/file.py:function,"
              f" got {payload!r}")

    mix = data.get("mix")
    mix_out: dict[str, float] | None = None
    if mix is not None:
        if target != "mixed":
            c.add("mix", f"only applies to target 'mixed', not {target!r}")
        elif not isinstance(mix, Mapping) or not mix:
            c.add("mix", f"must map target names to weights, e.g. {{features: 3, env-step: 1}}, got {mix!r}")
        else:
            mix_out = {}
            choices = list(target_names())
            for k, w in mix.items():
                if k not in choices:
                    c.add(f"mix.{k}", "unknown target" + suggest(str(k), choices))
                elif isinstance(w, bool) or not isinstance(w, (int, float)) or not w > 0:
                    c.add(f"mix.{k}", f"weight must be a number > 0, got {w!r}")
                else:
                    mix_out[str(k)] = float(w)

    duration = c.duration("duration", data.get("duration"))
    timeout = c.duration("timeout", data.get("timeout"))

    # profile
    profile: Schedule | None = None
    spec = data.get("profile")
    if not isinstance(spec, Mapping):
        c.add("profile", f"must be a mapping with a type ({', '.join(_profiles.PROFILE_TYPES)}), got {spec!r}")
    else:
        duration_explicit = sources.get("duration", "default") != "default"
        seed0 = data.get("seed")
        if spec.get("arrival") == "poisson" and "seed" not in spec and isinstance(seed0, int) and not isinstance(seed0, bool):
            spec = {**spec, "seed": seed0}  # the scenario's seed makes the Poisson schedule reproducible
        try:
            profile = _profiles.from_spec(spec, default_duration=duration)
        except ProfileError as exc:
            for pr in exc.problems:
                field_path, _, msg = pr.partition(": ")
                if field_path == "duration" and duration is None and "duration" not in spec:
                    continue  # the top-level duration is wrong and already reported
                c.add(f"profile.{field_path}", msg)
        if profile is not None and duration is not None:
            own = profile.duration
            if own is not None and abs(own - duration) > 1e-9:
                if duration_explicit:
                    what = "the stages add up to" if spec.get("type") == "stages" else "profile.duration is"
                    c.add("duration", f"{format_duration(duration)} conflicts with the profile: {what} {format_duration(own)}")
                else:
                    duration = own  # the default duration yields to the profile's own

    # executor
    ex = data.get("executor")
    executor = d = ExecutorSettings()
    if not isinstance(ex, Mapping):
        c.add("executor", f"must be a mapping ({', '.join(EXECUTOR_KEYS)}), got {ex!r}")
    else:
        for key in ex:
            if key not in EXECUTOR_KEYS:
                c.add(f"executor.{key}", "unknown key" + suggest(str(key), EXECUTOR_KEYS))
        etype = ex.get("type", d.type)
        if etype not in EXECUTOR_TYPES:
            c.add("executor.type", f"must be one of {', '.join(EXECUTOR_TYPES)}, got {etype!r}" + (
                suggest(str(etype), EXECUTOR_TYPES) if isinstance(etype, str) else ""))
            etype = d.type
        workers = c.integer("executor.workers", ex.get("workers", d.workers), 1)
        threads = c.integer("executor.threads", ex.get("threads", d.threads), 1)
        mif = c.integer("executor.max_in_flight", ex.get("max_in_flight", d.max_in_flight), 1)
        for key, value, most in (("workers", workers, MAX_WORKERS), ("threads", threads, MAX_THREADS),
                                 ("max_in_flight", mif, MAX_IN_FLIGHT)):
            if value is not None and value > most:  # each one is a process, a thread or a slot
                c.add(f"executor.{key}", f"must be at most {most:,}, got {value:,}")
        if workers is not None and mif is not None and mif < workers:
            c.add("executor.max_in_flight", f"must be >= executor.workers ({workers}) so every worker can send, got {mif}")
        executor = ExecutorSettings(etype, workers or 1, threads or 1, mif or 1)

    # failures (the always-judged failure threshold) and the service
    failures = _failures(data.get("failures"), c, sources)
    service = _service(data.get("service"), c)
    if isinstance(target, str) and "{port}" in target and service is None:
        c.add("target", "'{port}' is the port of a started service: add a service: block (command, ready)")

    # thresholds
    th_spec = data.get("thresholds")
    parsed: list[Threshold] = []
    if th_spec is None:
        th_spec = {}
    if not isinstance(th_spec, Mapping):
        c.add("thresholds", f"must map metrics to expressions, e.g. {{latency: ['p(95)<100ms']}}, got {th_spec!r}")
        th_spec = {}
    else:
        th_spec = _with_failure_checks(th_spec, failures)
        own = [v for k, v in th_spec.items() if metric_key(k) == metric_key(FAILURE_METRIC)]
        failures["judged"] = [e if isinstance(e, str) else str(e.get("threshold")) if isinstance(e, Mapping) else str(e)
                              for v in own for e in ([v] if isinstance(v, (str, Mapping)) else v)]
        try:
            parsed = parse_thresholds(th_spec)
        except ThresholdError as exc:
            for pr in exc.problems:
                metric, _, msg = pr.partition(": ")
                if msg:
                    c.add(f"thresholds.{metric}", msg)
                else:
                    c.add("thresholds", pr)

    def mapping(key: str, what: str) -> dict[str, Any]:
        value = data.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            c.add(key, f"must be a mapping of {what}, got {value!r}")
            return {}
        return dict(value)

    faults = mapping("faults", "fault name -> settings")
    workload = mapping("workload", "extractor settings (e.g. enable_fallback: false)")
    http = mapping("http", "HTTP settings (method, headers, verify, endpoints, gzip, ...)")
    for key in http:
        if key not in HTTP_SETTINGS:
            c.add(f"http.{key}", "unknown key" + suggest(key, HTTP_SETTINGS))
    endpoints = http.get("endpoints")
    if endpoints is not None:
        if not isinstance(endpoints, list) or not endpoints:
            c.add("http.endpoints", "must be a non-empty list of endpoints, e.g. "
                  "[{url: /v1/features, method: POST, weight: 3, body: {...}}, {url: /healthz, weight: 1}]")
        else:
            for i, ep in enumerate(endpoints):
                if not isinstance(ep, Mapping):
                    c.add(f"http.endpoints[{i}]", f"must be a mapping with url (and method, weight, headers, body, "
                          f"payload, name), got {ep!r}")
                    continue
                for key in ep:
                    if key not in ENDPOINT_SETTINGS:
                        c.add(f"http.endpoints[{i}].{key}", "unknown key" + suggest(str(key), ENDPOINT_SETTINGS))
                if not isinstance(ep.get("url"), str) or not ep["url"]:
                    c.add(f"http.endpoints[{i}].url", f"must be a path (/v1/x) or an http(s) URL, got {ep.get('url')!r}")
                w = ep.get("weight", 1)
                if isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0:
                    c.add(f"http.endpoints[{i}].weight", f"must be a number >= 0, got {w!r}")
        if payload is not None:
            c.add("payload", "with http.endpoints, give each endpoint its own body or payload")

    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        c.add("seed", f"must be a non-negative integer, got {seed!r}")

    if problems:
        raise ScenarioError(problems)
    assert profile is not None and duration is not None and timeout is not None
    return Scenario(
        name=str(name),
        description=description,
        target=str(target),
        payload=payload,
        mix=mix_out,
        profile=profile,
        duration=duration,
        timeout=timeout,
        executor=executor,
        thresholds=dict(th_spec),
        faults=dict(faults),
        workload=dict(workload),
        http=dict(http),
        seed=seed,
        failures=failures,
        service=service,
        parsed_thresholds=tuple(parsed),
        sources=dict(sources),
    )


def _failures(spec: Any, c: _Check, sources: Mapping[str, str]) -> dict[str, Any]:
    """``failures: {threshold: EXPR | off}`` -> ``{"threshold": EXPR or "off", "source": ...}``."""
    out: dict[str, Any] = {"threshold": DEFAULT_FAILURE_THRESHOLD}
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        c.add("failures", f"must be a mapping such as {{threshold: 'rate<1%'}} or {{threshold: off}}, got {spec!r}")
        return out
    for key in spec:
        if key not in ("threshold", "source", "judged"):  # source, judged: the result's echo, read back
            c.add(f"failures.{key}", "unknown key" + suggest(str(key), ("threshold",)))
    value = spec.get("threshold", DEFAULT_FAILURE_THRESHOLD)
    if value is True or value == "on":
        value = DEFAULT_FAILURE_THRESHOLD
    if value in _OFF:
        out["threshold"] = "off"
    elif not isinstance(value, str):
        c.add("failures.threshold", f"must be an expression such as 'rate<1%' or off, got {value!r}")
    else:
        try:
            parse_expression(FAILURE_METRIC, value)
            out["threshold"] = value.strip()
        except ThresholdError as exc:
            for pr in exc.problems:
                c.add("failures.threshold", pr.partition(": ")[2] or pr)
    src = sources.get("failures.threshold") or sources.get("failures") or "default"
    out["source"] = src
    return out


#: keys of the ``service`` mapping
SERVICE_KEYS = ("command", "ready", "start_timeout")


def _service(spec: Any, c: _Check) -> dict[str, Any] | None:
    """``service: {command, ready, start_timeout}`` checked; None when there is none."""
    if spec is None or spec in _OFF:
        return None
    if not isinstance(spec, Mapping):
        c.add("service", f"must be a mapping ({', '.join(SERVICE_KEYS)}), got {spec!r}")
        return None
    for key in spec:
        if key not in SERVICE_KEYS:
            c.add(f"service.{key}", "unknown key" + suggest(str(key), SERVICE_KEYS))
    command = spec.get("command")
    if isinstance(command, str):
        command = command.split()
    if not isinstance(command, (list, tuple)) or not command or not all(isinstance(a, (str, int, float))
                                                                         for a in command):
        c.add("service.command", f"must be a non-empty list of arguments, e.g. ['{{python}}', '-m', "
              f"'workloads.cli', 'serve', '--port', '{{port}}'], got {command!r}")
        command = []
    ready = spec.get("ready")
    if ready is not None and (not isinstance(ready, str) or not _URL.match(ready)):
        c.add("service.ready", f"must be an http(s) URL answering 2xx when the service is ready, got {ready!r}")
        ready = None
    timeout = c.duration("service.start_timeout", spec.get("start_timeout", "60s"))
    return {"command": [str(a) for a in command], "ready": ready, "start_timeout": timeout or 60.0}
