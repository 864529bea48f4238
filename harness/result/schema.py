"""The result document (``harness.result/1``): its typed shape, the one loader and the one writer.

``harness run`` (:meth:`harness.run.runner.Run.execute`), ``harness merge`` and
``harness scale-test`` write it; ``report``, ``compare``, ``soak``, ``merge``, ``--baseline``
and the pytest plug-in read it. Everyone goes through :func:`load_result` and
:func:`write_result`, so a file that is not a result fails the same way everywhere: a
:class:`ResultError` naming the file and the field.

The TypedDicts describe the document as written; they are documentation for readers and
type checkers, not a runtime class (the document stays a plain JSON-ready dict, so a
result written by one version is read by the next without a migration step).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, TypedDict, Union

import numpy as np

from harness.record.recorder import Recorder
from harness.run.runner import RESULT_SCHEMA

__all__ = [
    "RESULT_SCHEMA",
    "REQUIRED_KEYS",
    "ResultError",
    "Result",
    "Verdict",
    "Generator",
    "ThresholdEntry",
    "HistogramStats",
    "TargetSummary",
    "Summary",
    "ErrorDetail",
    "Window",
    "Resources",
    "load_result",
    "write_result",
]


class ResultError(ValueError):
    """A file that is not a readable ``harness.result/1`` document; the message names the
    file and the field (``r.json: verdict.exit_code: missing``)."""


# ----------------------------------------------------------------------------- the shape

#: latency / service_time / lag statistics of one histogram, in ms (``harness.record``'s
#: ``histogram_stats``); the values are None when the histogram is empty
HistogramStats = TypedDict("HistogramStats", {
    "count": int,
    "min": Optional[float],
    "mean": Optional[float],
    "p50": Optional[float],
    "p90": Optional[float],
    "p95": Optional[float],
    "p99": Optional[float],
    "p99.9": Optional[float],
    "max": Optional[float],
}, total=False)


class TargetSummary(TypedDict, total=False):
    """``summary.targets[<label>]`` and ``summary.all``."""

    count: int
    outcomes: Dict[str, int]               # ok, error, timeout, dropped
    errors: Dict[str, int]                 # error type -> count
    error_rate: Optional[float]
    failed_rate: Optional[float]           # (error + timeout + dropped) / count: k6's http_req_failed
    timeout_rate: Optional[float]
    dropped_rate: Optional[float]
    cache_hit: int
    fallback: int
    cache_hit_rate: Optional[float]        # share of ok records flagged
    fallback_rate: Optional[float]
    latency: HistogramStats                # from the intended start
    service_time: HistogramStats           # from the actual start
    lag: HistogramStats                    # actual - intended start
    by_outcome: Dict[str, Dict[str, HistogramStats]]
    status_codes: Dict[str, int]           # HTTP targets: answers by status ("200": n)
    bytes_sent: int                        # HTTP targets: the client's own bytes on the wire, head + body
    bytes_received: int
    stream: Dict[str, int]                 # ws:// targets: subscriptions, messages, gaps, cut_short, not_due …


class ErrorDetail(TypedDict, total=False):
    """One entry of the top-level ``error_details``: an error type of one target."""

    target: str
    type: str                              # the error type, as in summary.targets[<label>].errors
    count: int
    first_s: float                         # seconds since the run's start
    last_s: float
    samples: List[str]                     # the first few (≤ 3): response bodies, messages; ≤ 300 chars each


class Summary(TypedDict, total=False):
    unit: str                              # "ms"
    targets: Dict[str, TargetSummary]
    all: TargetSummary
    clamped: int
    window_s: float


class Window(TypedDict, total=False):
    """One entry of ``timeseries`` (per-window counts and latency percentiles)."""

    start_s: float
    end_s: float
    ok: int
    error: int
    timeout: int
    dropped: int
    intended: int
    completed: int
    rate: float
    cache_hit: int
    fallback: int
    p50_ms: Optional[float]
    p95_ms: Optional[float]
    p99_ms: Optional[float]
    max_ms: Optional[float]


class Resources(TypedDict, total=False):
    summary: Dict[str, Any]                # process CPU / RSS figures (``harness.run.resources``)
    samples: List[Dict[str, Any]]          # one a second: t_s, process_rss_bytes, process_cpu_percent …


class ThresholdEntry(TypedDict, total=False):
    """One judged threshold (``ThresholdResult.to_dict``)."""

    metric: str
    expression: str                        # "p(95)<100ms"
    aggregation: str
    op: str
    value: float
    abort_on_fail: bool
    delay_abort_eval_s: float
    observed: Optional[float]              # None: no data (a threshold with no data fails)
    ok: bool
    reason: Optional[str]
    covers: str                            # which outcomes a latency threshold saw ("all outcomes" …)


class Generator(TypedDict, total=False):
    """The generator's self-check (``GeneratorHealth.to_dict`` plus the executor's counts)."""

    valid: bool
    reasons: List[str]
    schedule_lag_p50_ms: Optional[float]
    schedule_lag_p99_ms: Optional[float]
    lag_bound_ms: float
    cpu_percent_mean: float
    cpu_count: int
    cpu_bound_fraction: float
    abandoned_calls: int
    worker_processes: int
    worker_errors: List[str]
    closed_loop: bool
    schedule_lag_samples: Any
    parts: int                             # merged results only


class Verdict(TypedDict, total=False):
    passed: bool
    exit_code: int                         # a harness.exitcodes.ExitCode value
    thresholds_passed: bool
    valid: bool
    aborted_by: List[str]
    scale_test_passed: bool                # scale-test results only
    failure_threshold: Any                 # the failed-rate threshold judged, or "off" (and who said so)


class Result(TypedDict, total=False):
    """The whole document. ``stack`` is None without a Prometheus stack; ``scale_test`` is
    present in ``harness scale-test`` results only."""

    schema: str                            # RESULT_SCHEMA
    run_id: str
    status: str                            # completed | interrupted | aborted | failed (a worker died) | partial
    started_at: str                        # ISO 8601, UTC
    finished_at: str
    elapsed_s: float
    scenario: Dict[str, Any]               # Scenario.to_dict(): name, target, profile, duration, thresholds …
    scenario_sources: Dict[str, str]       # field -> where its value came from
    environment: Dict[str, Any]
    metrics_url: Optional[str]
    summary: Summary
    timeseries: List[Window]
    error_details: List[ErrorDetail]       # optional: older results lack it
    resources: Resources
    network: Dict[str, Any]                # OS interface bytes over the window: source, bytes_sent/_received, interfaces
    generator: Generator
    thresholds: List[ThresholdEntry]
    verdict: Verdict
    stack: Optional[Dict[str, Any]]
    histograms: Dict[str, Any]             # Recorder.encode(): what merge and the percentile spectrum read
    scale_test: Dict[str, Any]
    merge: Dict[str, Any]                  # merged results: parts, coverage, forced / partial, problems
    repeats: Dict[str, Any]                # ``run --repeat``: the pooled runs


#: what every reader may count on (the rest is read with ``.get``): checked by :func:`load_result`
REQUIRED_KEYS: Mapping[str, type] = {
    "run_id": str,
    "status": str,
    "scenario": dict,
    "summary": dict,
    "verdict": dict,
}


# ----------------------------------------------------------------------------- load / write


def load_result(path: Union[str, "os.PathLike[str]"]) -> Result:
    """Read and check a result file: JSON, the ``schema`` tag, the :data:`REQUIRED_KEYS`
    with their types and ``verdict.exit_code``. Raises :class:`ResultError` (a
    ``ValueError``) naming the file and the field; an unreadable file is one too."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ResultError(f"{p}: cannot read: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ResultError(f"{p}: not JSON: {exc}") from None
    schema = data.get("schema") if isinstance(data, dict) else None
    if schema != RESULT_SCHEMA:
        raise ResultError(f"{p}: not a harness result (schema {schema!r}, expected {RESULT_SCHEMA!r})")
    for key, kind in REQUIRED_KEYS.items():
        if key not in data:
            raise ResultError(f"{p}: {key}: missing")
        if not isinstance(data[key], kind):
            raise ResultError(f"{p}: {key}: expected {_json_type(kind)}, got {_json_type(type(data[key]))}")
    code = data["verdict"].get("exit_code")
    if code is None:
        raise ResultError(f"{p}: verdict.exit_code: missing")
    if isinstance(code, bool) or not isinstance(code, int):
        raise ResultError(f"{p}: verdict.exit_code: expected an integer, got {code!r}")
    problem = _shape_problem(data, _SHAPE, "")
    if problem:
        raise ResultError(f"{p}: {problem}")
    if data.get("histograms") is not None:
        try:
            Recorder.decode(data["histograms"])
        except Exception as exc:  # base64, zlib, HDR or a field of the wrong type: all "corrupt"
            raise ResultError(f"{p}: histograms: corrupt encoding: {type(exc).__name__}: {exc}") from None
    return data  # type: ignore[return-value]


def write_result(result: Mapping[str, Any], path: Union[str, "os.PathLike[str]"]) -> Path:
    """Write ``result`` as JSON via a temporary file, fsync and rename (and fsync the
    folder), so a crash, a power cut or a second Ctrl-C never leaves half a file where a
    result was expected. Mode 0644 less the umask, like any file the user writes (the
    temporary file's 0600 would hide a container's result from the host user). Also writes
    the other harness documents (a comparison, a knee search) the same way."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=p.name + ".", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(result, f, indent=1, default=_jsonable)
            f.write("\n")
            f.flush()
            os.fchmod(f.fileno(), 0o644 & ~_umask())
            os.fsync(f.fileno())
        os.replace(tmp, p)
        _fsync_dir(p.parent)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return p


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows (another thread
    creating a file meanwhile must not get a 0 umask)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (where the platform lets a folder be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- the checked shape
# What the readers (compare, report, merge, soak, the summary) index or convert without
# looking first. A spec is a type or a tuple of types; ``_Map(spec)``: an object of any
# keys with values of ``spec``; ``_List(spec)``; a dict: an object whose listed keys, when
# present, have those specs (other keys are free: newer writers may add some).

class _Map:
    def __init__(self, spec: Any) -> None:
        self.spec = spec


class _List:
    def __init__(self, spec: Any) -> None:
        self.spec = spec


_INT = (int,)
_NUM = (int, float)
_OPT_NUM = (int, float, type(None))
_STATS: Any = _Map(_OPT_NUM)  # HistogramStats
_TARGET: Any = {
    "count": _INT, "outcomes": _Map(_INT), "errors": _Map(_INT), "cache_hit": _INT, "fallback": _INT,
    "error_rate": _OPT_NUM, "timeout_rate": _OPT_NUM, "dropped_rate": _OPT_NUM, "cache_hit_rate": _OPT_NUM,
    "fallback_rate": _OPT_NUM, "latency": _STATS, "service_time": _STATS, "lag": _STATS,
    "by_outcome": _Map(_Map(_STATS)), "status_codes": _Map(_INT), "bytes_sent": _INT, "bytes_received": _INT,
    "stream": _Map(_INT),
}
_SHAPE: Any = {
    "elapsed_s": _NUM,
    "scenario": {"name": (str,), "target": (str,), "duration": _NUM, "timeout": _NUM, "thresholds": (dict,),
                 "executor": (dict,), "profile": {"type": (str,), "segment": {"offset": _INT, "stride": _INT}}},
    "summary": {"targets": _Map(_TARGET), "all": _TARGET, "clamped": _INT, "window_s": _NUM},
    "timeseries": _List(_Map((int, float, type(None), str))),
    "error_details": _List({"target": (str,), "type": (str,), "count": _INT, "first_s": _NUM, "last_s": _NUM,
                            "samples": _List((str,))}),
    "resources": {"summary": (dict,), "samples": _List((dict,))},
    "network": {"source": (str,), "bytes_sent": _INT, "bytes_received": _INT, "interfaces": _Map(_Map(_INT))},
    "generator": {"valid": (bool,), "reasons": _List((str,)), "worker_errors": _List((str,)),
                  "abandoned_calls": _INT, "worker_processes": _INT},
    "thresholds": _List({"metric": (str,), "expression": (str,), "ok": (bool,), "observed": _OPT_NUM}),
    "verdict": {"passed": (bool,), "valid": (bool,), "thresholds_passed": (bool,), "aborted_by": _List((str,))},
    "stack": (dict, type(None)),
    "histograms": (dict, type(None)),
}


def _shape_problem(value: Any, spec: Any, path: str) -> Optional[str]:
    """``"path: expected …, got …"`` for the first value off ``spec``, else None."""
    where = path or "the document"
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            return f"{where}: expected an object, got {_describe(value)}"
        for key, sub in spec.items():
            if key in value:
                problem = _shape_problem(value[key], sub, f"{path}.{key}" if path else key)
                if problem:
                    return problem
        return None
    if isinstance(spec, _Map):
        if not isinstance(value, dict):
            return f"{where}: expected an object, got {_describe(value)}"
        for key, item in value.items():
            problem = _shape_problem(item, spec.spec, f"{path}.{key}")
            if problem:
                return problem
        return None
    if isinstance(spec, _List):
        if not isinstance(value, list):
            return f"{where}: expected an array, got {_describe(value)}"
        for i, item in enumerate(value):
            problem = _shape_problem(item, spec.spec, f"{path}[{i}]")
            if problem:
                return problem
        return None
    kinds = spec
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if not ok:
        return f"{where}: expected {' or '.join(_json_type(k) for k in kinds)}, got {_describe(value)}"
    return None


def _describe(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _json_type(kind: type) -> str:
    return {dict: "an object", list: "an array", str: "a string", int: "an integer", float: "a number",
            bool: "true/false", type(None): "null"}.get(kind, kind.__name__)


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    return str(o)
