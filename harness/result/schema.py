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


class Result(TypedDict, total=False):
    """The whole document. ``stack`` is None without a Prometheus stack; ``scale_test`` is
    present in ``harness scale-test`` results only."""

    schema: str                            # RESULT_SCHEMA
    run_id: str
    status: str                            # completed | interrupted | aborted | partial (merged)
    started_at: str                        # ISO 8601, UTC
    finished_at: str
    elapsed_s: float
    scenario: Dict[str, Any]               # Scenario.to_dict(): name, target, profile, duration, thresholds …
    scenario_sources: Dict[str, str]       # field -> where its value came from
    environment: Dict[str, Any]
    metrics_url: Optional[str]
    summary: Summary
    timeseries: List[Window]
    resources: Resources
    generator: Generator
    thresholds: List[ThresholdEntry]
    verdict: Verdict
    stack: Optional[Dict[str, Any]]
    histograms: Dict[str, Any]             # Recorder.encode(): what merge and the percentile spectrum read
    scale_test: Dict[str, Any]


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
    return data  # type: ignore[return-value]


def write_result(result: Mapping[str, Any], path: Union[str, "os.PathLike[str]"]) -> Path:
    """Write ``result`` as JSON via a temporary file and rename, so a crash or a second
    Ctrl-C never leaves half a file where a result was expected. Also writes the other
    harness documents (a comparison, a knee search) the same way."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=p.name + ".", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(result, f, indent=1, default=_jsonable)
            f.write("\n")
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return p


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
