"""k6-style thresholds: parse ``{"latency": ["p(95)<100ms"]}`` and judge a run against them.

Why k6's syntax: the users already write it, and CI already knows exit code 99.  What we
add: units on time values (``100ms``, ``1s``, ``250us``; a bare number means
milliseconds, as in k6), ``%`` on rates (``rate<1%``), and messages that say which metric,
which expression and what is wrong, with a did-you-mean.

Metrics (kinds decide which aggregations are legal):

========================  =======  ===============================================
metric                    kind     aggregations
========================  =======  ===============================================
latency, service_time,    trend    ``avg min max med p(N) count`` (values in ms)
lag
failed_rate, error_rate,  rate     ``rate`` (fraction 0..1)
timeout_rate, dropped_rate,
cache_hit_rate,
fallback_rate
throughput (alias rps)    counter  ``count`` (requests), ``rate`` (requests/s)
========================  =======  ===============================================

k6's names are accepted as aliases (:data:`K6_ALIASES`): ``http_req_duration`` and
``iteration_duration`` are ``latency`` (one request is one iteration here, and latency is
measured from the intended start, so it is never smaller than k6's figure for the same
stall), ``http_req_failed`` is ``failed_rate``, ``http_reqs`` is ``throughput``.  k6's
``name`` tag is ``target`` (an HTTP endpoint's label is its ``name``, else ``METHOD
/path``); ``status`` selects answers by HTTP status on ``throughput`` (``http_reqs{status:
200}: count>0``; HTTP targets count every answer by status); ``method`` is refused with a
message that says what to write instead (select the endpoint with ``{target:<label>}``).

``failed_rate`` is (errors + timeouts + dropped) / all requests, like k6's
``http_req_failed`` (which counts timeouts too); ``error_rate``, ``timeout_rate`` and
``dropped_rate`` count one outcome each over all requests.  Trend metrics cover **every
outcome** (a timed-out call counts with the time it was given) unless tagged
``{outcome:ok}``; :func:`coverage` says which, and the summary prints it.

The failure threshold (:data:`FAILURE_METRIC`, default :data:`DEFAULT_FAILURE_THRESHOLD`)
and the guard :data:`SUCCESS_GUARD` (at least one successful request) are added to every
scenario by :mod:`harness.config.scenario` unless turned off there (``failures``).

Tagged sub-metrics use k6's syntax: ``latency{target:features}``,
``latency{target:features,outcome:ok}``.  Known tags: ``target`` and (for trend and
counter metrics) ``outcome``.

Evaluation asks a :data:`ValueSource` — any callable ``value(metric, tags, aggregation)``
returning a float or ``None`` for "no data" — so this module knows nothing about the
recorder.  A threshold with no data **fails** by default (a verdict that proved nothing
must not pass CI); pass ``no_data_ok=True`` to :func:`evaluate` for k6's lenient behaviour.

Exit codes (:func:`exit_code`): ``0`` pass, ``99`` thresholds failed (k6's code, also when
a run was aborted by an ``abortOnFail`` threshold), ``98`` invalid run (the generator was
the bottleneck, so the numbers are not the target's: not a pass and not the target's
failure), ``105`` interrupted (Ctrl-C/SIGTERM; k6's ``ExternalAbort``), ``2`` usage.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

from harness.config.problems import suggest
from harness.exitcodes import ExitCode
from harness.config.durations import parse_duration

__all__ = [
    "TREND",
    "RATE",
    "COUNTER",
    "METRICS",
    "METRIC_ALIASES",
    "K6_ALIASES",
    "TIME_UNITS",
    "FAILURE_METRIC",
    "DEFAULT_FAILURE_THRESHOLD",
    "SUCCESS_GUARD",
    "metric_key",
    "coverage",
    "format_observed",
    "ThresholdError",
    "Aggregation",
    "Threshold",
    "ThresholdResult",
    "ValueSource",
    "parse_expression",
    "parse_metric",
    "parse_thresholds",
    "evaluate",
    "passed",
    "abort_due",
    "exit_code",
]


TREND, RATE, COUNTER, ALERTS = "trend", "rate", "counter", "alerts"

METRICS: dict[str, str] = {
    "latency": TREND,
    "service_time": TREND,
    "lag": TREND,
    "failed_rate": RATE,
    "error_rate": RATE,
    "timeout_rate": RATE,
    "dropped_rate": RATE,
    "cache_hit_rate": RATE,
    "fallback_rate": RATE,
    "throughput": COUNTER,
    # alerts the real rules fired during the run (needs --stack): alerts{severity:page}: count==0
    "alerts": ALERTS,
}
#: k6's built-in metric names -> ours (README "Coming from k6")
K6_ALIASES: dict[str, str] = {
    "http_req_duration": "latency",
    "iteration_duration": "latency",
    "http_req_failed": "failed_rate",
    "http_reqs": "throughput",
}
METRIC_ALIASES: dict[str, str] = {"rps": "throughput", **K6_ALIASES}

_AGGREGATIONS: dict[str, tuple[str, ...]] = {
    TREND: ("avg", "min", "max", "med", "p(N)", "count"),
    RATE: ("rate",),
    COUNTER: ("count", "rate"),
    ALERTS: ("count",),
}
_TAGS: dict[str, tuple[str, ...]] = {
    TREND: ("target", "outcome"),
    RATE: ("target",),
    COUNTER: ("target", "outcome", "status"),
    ALERTS: ("severity", "alertname"),
}
#: k6's tag names that mean one of ours
_TAG_ALIASES: dict[str, str] = {"name": "target"}
OUTCOMES = ("ok", "error", "timeout", "dropped")
#: k6 tags the recorder has no data for: what to write instead (never a made-up figure)
_K6_TAGS: dict[str, str] = {
    "status": "answers are counted by HTTP status on throughput (http_reqs{status:200}); elsewhere a non-2xx "
              "answer is an error of type 'HTTP <status>', so judge it with error_rate or failed_rate",
    "method": "each HTTP endpoint is its own target; select its requests with {target:<label>} "
              "(its name, else 'METHOD /path')",
}

#: the metric of the failure threshold every run is judged on unless turned off
FAILURE_METRIC = "failed_rate"
#: the budget's failure threshold: at most 1 % of requests failed (errors, timeouts, dropped)
DEFAULT_FAILURE_THRESHOLD = "rate<0.01"
#: (metric, expression) every run is judged on: a run with no successful request never passes
SUCCESS_GUARD = ("throughput{outcome:ok}", "count>0")

#: time unit -> milliseconds (time values are compared in ms).
TIME_UNITS: dict[str, float] = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "μs": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "===": operator.eq,
    "!=": operator.ne,
}

_EXPR = re.compile(
    r"^\s*(?P<agg>[^<>=!]*?)\s*(?P<op>===|==|!=|<=|>=|<|>)\s*(?P<rest>.*?)\s*$", re.DOTALL
)
_VALUE = re.compile(r"^(?P<num>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*(?P<unit>[^\s\d.+-][^\s]*)?$")
_PCT = re.compile(r"^p\(\s*(?P<n>[^)]*?)\s*\)$")
_PCT_BARE = re.compile(r"^p(?:ct)?_?(?P<n>\d+(?:\.\d+)?)$", re.IGNORECASE)
_METRIC = re.compile(r"^\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?:\{(?P<tags>.*)\})?\s*$", re.DOTALL)


class ThresholdError(ValueError):
    """Invalid thresholds; ``problems`` holds one message per problem, each naming the metric
    and the expression (``latency: 'p95<100': unknown aggregation 'p95' (did you mean
    'p(95)'?)``)."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class Aggregation(NamedTuple):
    """What to compute: ``kind`` in avg/min/max/med/count/rate/p, ``percentile`` for p."""

    kind: str
    percentile: float | None = None

    def __str__(self) -> str:
        if self.kind == "p":
            return f"p({self.percentile:g})"
        return self.kind


#: ``value(metric, tags, aggregation) -> float | None``; ``metric`` is canonical (aliases
#: resolved), time values in milliseconds, ``None`` means no data.
ValueSource = Callable[[str, Mapping[str, str], Aggregation], "float | None"]


@dataclass(frozen=True)
class Threshold:
    """One parsed threshold expression."""

    metric: str  # as written, with tags: "latency{target:features}"
    name: str  # canonical base metric: "latency"
    tags: Mapping[str, str]
    expression: str  # as written: "p(95)<100ms"
    aggregation: Aggregation
    op: str
    value: float  # canonical units: ms for trend time aggregations, fraction for rates
    abort_on_fail: bool = False
    delay_abort_eval_s: float = 0.0

    def check(self, observed: float) -> bool:
        return _OPS[self.op](observed, self.value)

    @property
    def coverage(self) -> str | None:
        """Which outcomes the observed value covers (trend metrics), else None."""
        return coverage(self.name, self.tags)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "expression": self.expression,
            "aggregation": str(self.aggregation),
            "op": self.op,
            "value": self.value,
            "abort_on_fail": self.abort_on_fail,
            "delay_abort_eval_s": self.delay_abort_eval_s,
            "covers": self.coverage,
        }


@dataclass(frozen=True)
class ThresholdResult:
    threshold: Threshold
    observed: float | None
    ok: bool
    reason: str | None = None  # set when there was no data

    def to_dict(self) -> dict[str, Any]:
        return {**self.threshold.to_dict(), "observed": self.observed, "ok": self.ok, "reason": self.reason}

    def __str__(self) -> str:
        mark = "✓" if self.ok else "✗"
        obs = "no data" if self.observed is None else format_observed(self.threshold.name, self.threshold.aggregation,
                                                                      self.observed)
        return f"{mark} {self.threshold.metric} {self.threshold.expression} (observed {obs})"


def metric_key(metric: str) -> tuple[str, tuple[tuple[str, str], ...]] | str:
    """A comparable key for a thresholds mapping's metric (``latency{ target: x }`` and
    ``latency{target:x}`` are the same metric); the text itself when it does not parse."""
    try:
        name, tags = parse_metric(metric)
    except ThresholdError:
        return str(metric).strip()
    return name, tuple(sorted(tags.items()))


def coverage(metric: str, tags: Mapping[str, str]) -> str | None:
    """``"all outcomes"`` or ``"<outcome> only"`` for trend metrics (latency,
    service_time, lag) and throughput counts; None for rates and alerts."""
    kind = METRICS.get(METRIC_ALIASES.get(metric, metric))
    if kind not in (TREND, COUNTER):
        return None
    if "outcome" in tags:
        return f"{tags['outcome']} only"
    return "all outcomes" if kind == TREND else "ok, error and timeout (not dropped)"


def format_observed(metric: str, aggregation: Aggregation | str, observed: float) -> str:
    """An observed value with its unit: ``3.699 ms``, ``1.25 s``, ``2.5 %``, ``300 /s``."""
    name, _ = parse_metric(metric) if "{" in metric else (METRIC_ALIASES.get(metric, metric), {})
    kind = METRICS.get(name)
    agg = str(aggregation)
    if kind == TREND and agg != "count":
        if abs(observed) >= 1000.0:
            return f"{observed / 1000.0:.4g} s"
        return f"{observed:.4g} ms"
    if kind == RATE:
        return f"{observed * 100:.3g} %"
    if kind == COUNTER and agg == "rate":
        return f"{observed:.4g} /s"
    return f"{observed:.6g}"


# ----------------------------------------------------------------------------- parsing


def _suggest(word: str, choices: Iterable[str]) -> str:
    return suggest(word, choices, otherwise="")


def parse_metric(metric: str) -> tuple[str, dict[str, str]]:
    """``"latency{target:features}" -> ("latency", {"target": "features"})`` (canonical name).

    Raises :class:`ThresholdError` for unknown metrics or tags.
    """
    if not isinstance(metric, str):
        raise ThresholdError([f"{metric!r}: metric name must be a string"])
    m = _METRIC.match(metric)
    if not m:
        raise ThresholdError([f"{metric}: not a metric name; expected e.g. 'latency' or 'latency{{target:features}}'"])
    raw = m.group("name")
    name = METRIC_ALIASES.get(raw, raw)
    if name not in METRICS:
        known = list(METRICS) + list(METRIC_ALIASES)
        hint = _suggest(raw, known) or f" (known: {', '.join(known)})"
        raise ThresholdError([f"{metric}: unknown metric {raw!r}{hint}"])
    tags: dict[str, str] = {}
    problems: list[str] = []
    if m.group("tags") is not None:
        body = m.group("tags").strip()
        if not body:
            problems.append(f"{metric}: empty tag set '{{}}'; write e.g. {raw}{{target:features}}")
        for part in filter(None, (p.strip() for p in body.split(","))) if body else ():
            if ":" not in part:
                problems.append(f"{metric}: tag {part!r} must be key:value")
                continue
            key, val = (x.strip().strip("'\"") for x in part.split(":", 1))
            key = _TAG_ALIASES.get(key, key)
            allowed = _TAGS[METRICS[name]]
            if key not in allowed and key in _K6_TAGS:
                problems.append(f"{metric}: tag {key!r} is not supported: {_K6_TAGS[key]} "
                                f"(tags of {name}: {', '.join(allowed)})")
            elif key not in allowed:
                hint = _suggest(key, allowed) or " (known: " + ", ".join(allowed) + ")"
                problems.append(f"{metric}: unknown tag {key!r} for {name}{hint}")
            elif key in tags:
                problems.append(f"{metric}: tag {key!r} given twice")
            elif not val:
                problems.append(f"{metric}: tag {key!r} has an empty value")
            elif key == "status" and not (val.isdigit() and len(val) == 3):
                problems.append(f"{metric}: status {val!r} is not an HTTP status code (e.g. status:200)")
            elif key == "status" and "outcome" in tags or key == "outcome" and "status" in tags:
                problems.append(f"{metric}: tags 'status' and 'outcome' cannot be combined")
            elif key == "outcome" and val not in OUTCOMES:
                hint = _suggest(val, OUTCOMES) or " (known: " + ", ".join(OUTCOMES) + ")"
                problems.append(f"{metric}: unknown outcome {val!r}{hint}")
            else:
                tags[key] = val
    if problems:
        raise ThresholdError(problems)
    return name, tags


def _parse_aggregation(metric: str, expr: str, text: str, kind: str) -> Aggregation:
    def fail(why: str) -> ThresholdError:
        return ThresholdError([f"{metric}: {expr!r}: {why}"])

    allowed = _AGGREGATIONS[kind]
    t = text.strip()
    pm = _PCT.match(t)
    if pm:
        if kind != TREND:
            return _wrong_kind(metric, expr, "p(N)", kind, fail)
        try:
            n = float(pm.group("n"))
        except ValueError:
            raise fail(f"percentile {pm.group('n')!r} is not a number; write e.g. p(95) or p(99.9)") from None
        if not 0.0 <= n <= 100.0 or math.isnan(n):
            raise fail(f"percentile must be between 0 and 100, got {pm.group('n')}")
        return Aggregation("p", n)
    if t in ("avg", "min", "max", "med", "count", "rate"):
        if t not in allowed:
            return _wrong_kind(metric, expr, t, kind, fail)
        return Aggregation(t)
    if not t:
        raise fail(f"missing aggregation before the operator; expected one of {', '.join(allowed)}")
    bare = _PCT_BARE.match(t)
    if bare and kind == TREND:
        raise fail(f"unknown aggregation {t!r} (did you mean 'p({bare.group('n')})'?)")
    names = [a for a in allowed if a != "p(N)"] + (["p(95)", "p(99)"] if kind == TREND else [])
    extra = {"mean": "avg", "average": "avg", "median": "med", "p50": "med", "minimum": "min", "maximum": "max"}
    if t.lower() in extra and extra[t.lower()] in allowed:
        hint = f" (did you mean {extra[t.lower()]!r}?)"
    else:
        hint = _suggest(t, names)
    raise fail(f"unknown aggregation {t!r}{hint}; {kind} metrics take {', '.join(allowed)}")


def _wrong_kind(metric: str, expr: str, agg: str, kind: str, fail: Callable[[str], ThresholdError]) -> Aggregation:
    raise fail(
        f"aggregation {agg!r} does not apply to {kind} metric {metric.split('{')[0]!r}; "
        f"use one of {', '.join(_AGGREGATIONS[kind])}"
    )


def parse_expression(
    metric: str,
    expression: str,
    *,
    abort_on_fail: bool = False,
    delay_abort_eval: float | str = 0.0,
) -> Threshold:
    """Parse one expression such as ``"p(95)<100ms"`` for ``metric``."""
    name, tags = parse_metric(metric)
    kind = METRICS[name]
    if not isinstance(expression, str):
        raise ThresholdError([f"{metric}: {expression!r}: expression must be a string like 'p(95)<100ms'"])

    def fail(why: str) -> ThresholdError:
        return ThresholdError([f"{metric}: {expression!r}: {why}"])

    m = _EXPR.match(expression)
    if not m:
        raise fail("expected <aggregation> <operator> <value>, e.g. 'p(95)<100ms' (operators: < <= > >= == !=)")
    agg = _parse_aggregation(metric, expression, m.group("agg"), kind)
    rest = m.group("rest")
    if not rest:
        raise fail(f"missing value after {m.group('op')!r}")
    vm = _VALUE.match(rest)
    if not vm:
        raise fail(f"value {rest!r} is not a number (with an optional unit such as ms, s, us)")
    value = float(vm.group("num"))
    unit = vm.group("unit")
    is_time = kind == TREND and agg.kind != "count"
    if unit:
        if is_time:
            if unit not in TIME_UNITS:
                hint = _suggest(unit, TIME_UNITS) or {"sec": " (did you mean 's'?)", "secs": " (did you mean 's'?)",
                                                       "msec": " (did you mean 'ms'?)"}.get(unit, "")
                raise fail(f"unknown time unit {unit!r}{hint}; use one of ns, us, µs, ms, s, m")
            value *= TIME_UNITS[unit]
        elif unit == "%" and agg.kind == "rate" and kind == RATE:
            value /= 100.0
        else:
            what = "a fraction (0..1) or a percentage like 1%" if kind == RATE else "a plain number"
            raise fail(f"unit {unit!r} does not apply to {agg} of {name}; the value is {what}")
    if kind == RATE and not 0.0 <= value <= 1.0:
        raise fail(f"a rate is a fraction between 0 and 1 (or a percentage like 1%), got {rest}")
    try:
        delay = parse_duration(delay_abort_eval)
    except ValueError as exc:
        raise fail(f"delayAbortEval: {exc}") from None
    if delay < 0:
        raise fail(f"delayAbortEval must be >= 0, got {delay_abort_eval!r}")
    if not isinstance(abort_on_fail, bool):
        raise fail(f"abortOnFail must be true or false, got {abort_on_fail!r}")
    return Threshold(
        metric=metric.strip(),
        name=name,
        tags=tags,
        expression=expression.strip(),
        aggregation=agg,
        op=m.group("op"),
        value=value,
        abort_on_fail=abort_on_fail,
        delay_abort_eval_s=delay,
    )


_OBJECT_KEYS = ("threshold", "abortOnFail", "delayAbortEval")
_OBJECT_ALIASES = {"abort_on_fail": "abortOnFail", "delay_abort_eval": "delayAbortEval"}


def parse_thresholds(spec: Mapping[str, Any] | None) -> list[Threshold]:
    """Parse k6's ``thresholds`` mapping: metric -> expression, list of expressions, or
    objects ``{threshold, abortOnFail, delayAbortEval}`` (snake_case keys accepted too).

    Collects every problem into one :class:`ThresholdError`.
    """
    if spec is None:
        return []
    if not isinstance(spec, Mapping):
        raise ThresholdError([f"thresholds must be a mapping of metric -> expressions, got {spec!r}"])
    out: list[Threshold] = []
    problems: list[str] = []
    for metric, exprs in spec.items():
        try:
            parse_metric(metric)
        except ThresholdError as exc:
            problems += exc.problems
            continue
        items = [exprs] if isinstance(exprs, (str, Mapping)) else exprs
        if not isinstance(items, (list, tuple)) or not items:
            problems.append(f"{metric}: expected an expression or a list of expressions, got {exprs!r}")
            continue
        for item in items:
            try:
                if isinstance(item, Mapping):
                    kw: dict[str, Any] = {}
                    bad = False
                    for key, val in item.items():
                        key = _OBJECT_ALIASES.get(key, key)
                        if key not in _OBJECT_KEYS:
                            problems.append(
                                f"{metric}: unknown threshold key {key!r}"
                                f"{_suggest(str(key), _OBJECT_KEYS) or ' (known: threshold, abortOnFail, delayAbortEval)'}"
                            )
                            bad = True
                        kw[key] = val
                    if "threshold" not in kw:
                        problems.append(f"{metric}: threshold object {dict(item)!r} has no 'threshold' expression")
                        continue
                    if bad:
                        continue
                    out.append(
                        parse_expression(
                            metric,
                            kw["threshold"],
                            abort_on_fail=kw.get("abortOnFail", False),
                            delay_abort_eval=kw.get("delayAbortEval", 0.0),
                        )
                    )
                else:
                    out.append(parse_expression(metric, item))
            except ThresholdError as exc:
                problems += exc.problems
    if problems:
        raise ThresholdError(problems)
    return out


# ----------------------------------------------------------------------------- judging


def evaluate(
    thresholds: Sequence[Threshold], value: ValueSource, *, no_data_ok: bool = False
) -> list[ThresholdResult]:
    """Judge every threshold; one result per threshold, in order."""
    results = []
    for th in thresholds:
        observed = value(th.name, th.tags, th.aggregation)
        if observed is None or (isinstance(observed, float) and math.isnan(observed)):
            results.append(ThresholdResult(th, None, no_data_ok, f"no data for {th.metric}"))
        else:
            observed = float(observed)
            results.append(ThresholdResult(th, observed, th.check(observed)))
    return results


def passed(results: Iterable[ThresholdResult]) -> bool:
    return all(r.ok for r in results)


def abort_due(results: Iterable[ThresholdResult], elapsed_s: float) -> list[ThresholdResult]:
    """Failed ``abortOnFail`` thresholds whose ``delayAbortEval`` has passed: the runner
    stops the run (exit 99) when this is non-empty.  No-data results never abort."""
    return [
        r
        for r in results
        if not r.ok
        and r.observed is not None
        and r.threshold.abort_on_fail
        and elapsed_s >= r.threshold.delay_abort_eval_s
    ]


def exit_code(
    results: Iterable[ThresholdResult] = (), *, invalid: bool = False, interrupted: bool = False
) -> ExitCode:
    """Process exit code for a finished run.

    Precedence: interrupted (105) > invalid run (98) > thresholds failed (99) > ok (0).
    An invalid run outranks failed thresholds because its numbers describe the
    generator, not the target.
    """
    if interrupted:
        return ExitCode.INTERRUPTED
    if invalid:
        return ExitCode.INVALID_RUN
    return ExitCode.OK if passed(results) else ExitCode.THRESHOLDS_FAILED
