"""Knee search: the highest constant arrival rate that still meets the scenario's thresholds.

This replaces the origin documents' "maximum throughput" test, which assumed its answer,
with a measured one.  Each step is a real, short, open-loop run of the scenario at one
constant rate (``Run`` in-process); a step **passes** when every threshold of the
scenario holds *and* the target completed at least ``min_achieved`` (default 95 %) of the
offered requests per second.  The search:

1. **exponential**: ``start_rate``, ×``factor`` (2) … until a step fails (or ``max_rate``);
2. **binary**: between the last passing and the first failing rate until the bracket is
   narrower than ``precision`` (5 %) of its lower end;

and reports the **knee** = the highest passing rate, with every step's evidence (rate,
achieved rate, p50/p95/p99, error rate, which thresholds failed, the generator's
self-check; with ``keep_results`` the whole result documents).

**When the generator is the limit** (after ``invalid_retries`` (1) re-measurements of the
step, so a moment of contention on a shared machine is not taken for a limit) — a step the runner marks invalid (schedule lag over
its bound, or the process saturating the CPUs) — the search **stops and says so**: the
numbers at that rate describe the harness, not the target, so the knee is reported only as
"at least" the last valid passing rate (``status: generator-limited``), never guessed.

**Rate-dependent thresholds follow the step's rate.** A scenario's ``throughput`` thresholds
(``rate`` and ``count``) are written for its own rate (``rate>=76`` at 80 rps: 95 %); at each
step they are rescaled by step rate / scenario rate (``rate>=9.5`` at 10 rps), so a
throughput floor means the same share of the offered rate at every step instead of failing
every step below it.  The scenario's rate is its mean (expected requests / duration).

**What limited the knee** (``limit``): the first failing step above the knee is classified —
``generator`` (the step was invalid), ``errors`` (a failure threshold failed: failed_rate,
error/timeout/dropped rate, no successful request; with the error types seen),
``latency`` (a latency/service-time threshold), ``throughput`` (the target completed
less than ``min_achieved`` of the offered rate) — and, when the target runs in its own
process (a scenario ``service``), its CPU at that step is measured: ``target-cpu`` when it
used at least ``cpu_saturated`` (90 %) of the cores left to it (``cpu_count`` minus what
the generator used), or at least ``cpu_one_core`` (0.85) cores — near the one core a single
Python process's GIL-bound code can use — with the failing criterion as the symptom.

**A scenario with a ``service``** (:mod:`harness.run.service`) is searched against one
service process started before the first step and stopped after the last, so the
generator and the target never share an interpreter, and the target's CPU is its own.

Closed-loop (``users``) scenarios have no arrival rate to search; they are refused.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional

from harness.config.scenario import Scenario, scenario_from_dict
from harness.config.thresholds import ThresholdError, format_observed, parse_expression, parse_metric
from harness.exitcodes import ExitCode
from harness.result.summary import run_duration
from harness.run.runner import Run, RunOptions
from harness.run.service import ManagedService, served

__all__ = ["SearchSettings", "SearchError", "search", "step_scenario", "scaled_thresholds", "classify_limit",
           "format_search", "search_exit_code", "SEARCH_SCHEMA"]

SEARCH_SCHEMA = "harness.studies.search/1"


class SearchError(ValueError):
    """The scenario cannot be searched (closed loop) or the settings are invalid."""


@dataclass
class SearchSettings:
    start_rate: float = 10.0
    max_rate: float = 5000.0
    factor: float = 2.0
    precision: float = 0.05          # stop when (hi - lo) / lo <= precision
    step_duration_s: float = 5.0
    min_achieved: float = 0.95       # achieved / offered rate a passing step needs
    max_steps: int = 30
    min_rate: Optional[float] = None  # stop the descent below this (default start_rate / 8)
    invalid_retries: int = 1         # re-measure an invalid step this often before concluding
    keep_results: bool = False
    cpu_saturated: float = 0.9       # target CPU share (of the cores left to it) called saturated
    cpu_one_core: float = 0.85       # ... or this many cores: one interpreter's GIL-bound ceiling

    def check(self) -> None:
        problems = []
        if not self.start_rate > 0:
            problems.append(f"start_rate must be > 0, got {self.start_rate}")
        if not self.max_rate >= self.start_rate:
            problems.append(f"max_rate must be >= start_rate, got {self.max_rate}")
        if not self.factor > 1:
            problems.append(f"factor must be > 1, got {self.factor}")
        if not 0 < self.precision < 1:
            problems.append(f"precision must be in (0, 1), got {self.precision}")
        if not self.step_duration_s > 0:
            problems.append(f"step duration must be > 0, got {self.step_duration_s}")
        if not 0 < self.min_achieved <= 1:
            problems.append(f"min_achieved must be in (0, 1], got {self.min_achieved}")
        if problems:
            raise SearchError("; ".join(problems))


def _base_rate(base: Scenario) -> Optional[float]:
    """The scenario's own (mean) arrival rate: expected requests / duration."""
    try:
        n = base.profile.expected_count()
    except Exception:
        return None
    return float(n) / base.duration if n and base.duration else None


def _scale_expression(metric: str, expr: str, factor: float) -> str:
    th = parse_expression(metric, expr)
    if th.aggregation.kind not in ("rate", "count"):
        return expr
    return f"{th.aggregation}{th.op}{th.value * factor:.6g}"


def scaled_thresholds(thresholds: Mapping[str, Any], factor: float) -> Dict[str, Any]:
    """``thresholds`` with every ``throughput`` rate/count threshold multiplied by ``factor``
    (step rate / scenario rate); other metrics unchanged.  The success guard (``count>0``)
    stays as it is."""
    out: Dict[str, Any] = {}
    for metric, exprs in thresholds.items():
        try:
            name, _tags = parse_metric(metric)
        except ThresholdError:
            out[metric] = exprs
            continue
        if name != "throughput" or factor == 1.0:
            out[metric] = exprs
            continue
        items = [exprs] if isinstance(exprs, (str, Mapping)) else list(exprs)
        scaled: List[Any] = []
        for item in items:
            expr = item.get("threshold") if isinstance(item, Mapping) else item
            if not isinstance(expr, str) or expr.replace(" ", "") == "count>0":
                scaled.append(item)
                continue
            new = _scale_expression(metric, expr, factor)
            scaled.append({**item, "threshold": new} if isinstance(item, Mapping) else new)
        out[metric] = scaled
    return out


def step_scenario(base: Scenario, rate: float, duration_s: float) -> Scenario:
    """``base`` at a constant ``rate`` for ``duration_s`` (everything else unchanged, but its
    throughput thresholds rescaled to ``rate``: :func:`scaled_thresholds`)."""
    if base.closed_loop:
        raise SearchError(f"scenario {base.name!r} is closed-loop (users): there is no arrival rate to search")
    d = base.to_dict()
    arrival = (d.get("profile") or {}).get("arrival", "uniform")
    data = {k: v for k, v in d.items() if k not in ("profile", "duration")}
    data["name"] = f"{base.name}@{rate:g}rps"
    own = _base_rate(base)
    if own:
        data["thresholds"] = scaled_thresholds(d.get("thresholds") or {}, float(rate) / own)
    return scenario_from_dict(data, overrides={"profile": {"type": "constant", "rate": float(rate), "arrival": arrival},
                                               "duration": float(duration_s)}, env={}, source="search")


def _default_runner(options: Optional[RunOptions]) -> Callable[[Scenario], Dict[str, Any]]:
    def run(sc: Scenario) -> Dict[str, Any]:
        opts = options if options is not None else RunOptions(metrics_port=None, progress="off",
                                                               install_signal_handlers=False)
        return Run(sc, opts).execute()

    return run


def _evidence(rate: float, result: Mapping[str, Any], settings: SearchSettings, phase: str) -> Dict[str, Any]:
    summ = (result.get("summary") or {}).get("all") or {}
    lat = summ.get("latency") or {}
    duration = run_duration(result)
    ran = int(summ.get("count") or 0) - int((summ.get("outcomes") or {}).get("dropped", 0))
    achieved = ran / duration if duration else None
    failed = [f"{t['metric']} {t['expression']} (observed "
              + ("no data" if t["observed"] is None else format_observed(t["metric"], t.get("aggregation", ""),
                                                                           t["observed"])) + ")"
              for t in result.get("thresholds") or [] if not t.get("ok")]
    failed_metrics = sorted({"no-success" if str(t.get("expression", "")).replace(" ", "") == "count>0"
                             else str(t["metric"]).split("{")[0]
                             for t in result.get("thresholds") or [] if not t.get("ok")})
    gen = result.get("generator") or {}
    valid = bool(gen.get("valid", True))
    enough = achieved is not None and achieved >= settings.min_achieved * rate
    if not enough:
        failed.append(f"achieved {achieved if achieved is None else round(achieved, 1)} rps < "
                      f"{settings.min_achieved:.0%} of {rate:g} rps offered")
    return {
        "phase": phase,
        "rate": rate,
        "passed": valid and not failed,
        "valid": valid,
        "generator_reasons": list(gen.get("reasons") or []),
        "failed": failed,
        "achieved_rps": achieved,
        "requests": summ.get("count"),
        "p50_ms": lat.get("p50"),
        "p95_ms": lat.get("p95"),
        "p99_ms": lat.get("p99"),
        "error_rate": summ.get("error_rate"),
        "failed_rate": summ.get("failed_rate"),
        "errors": dict(summ.get("errors") or {}),
        "outcomes": dict(summ.get("outcomes") or {}),
        "failed_metrics": failed_metrics,
        "throughput_short": not enough,
        "schedule_lag_p99_ms": gen.get("schedule_lag_p99_ms"),
        "cpu_percent_mean": gen.get("cpu_percent_mean"),
        "cpu_count": gen.get("cpu_count"),
        "run_id": result.get("run_id"),
        "exit_code": (result.get("verdict") or {}).get("exit_code"),
    }


def search(base: Scenario, settings: Optional[SearchSettings] = None, *,
           run_step: Optional[Callable[[Scenario], Dict[str, Any]]] = None, run_options: Optional[RunOptions] = None,
           on_step: Optional[Callable[[Dict[str, Any]], None]] = None) -> Dict[str, Any]:
    """Find the knee of ``base``; see the module docstring.  ``run_step(scenario) -> result``
    replaces the in-process run (tests, or a remote runner)."""
    s = settings or SearchSettings()
    s.check()
    if base.closed_loop:
        raise SearchError(f"scenario {base.name!r} is closed-loop (users): there is no arrival rate to search")
    runner = run_step or _default_runner(run_options)
    with served(base) as (aimed, service):  # a scenario's service: one process for every step
        return _search(base, aimed, service, s, runner, on_step)


def _search(base: Scenario, aimed: Scenario, service: Optional[ManagedService], s: SearchSettings,
            runner: Callable[[Scenario], Dict[str, Any]],
            on_step: Optional[Callable[[Dict[str, Any]], None]]) -> Dict[str, Any]:
    steps: List[Dict[str, Any]] = []
    results: List[Dict[str, Any]] = []
    min_rate = s.min_rate if s.min_rate is not None else s.start_rate / 8.0

    def probe(rate: float, phase: str) -> Dict[str, Any]:
        for attempt in range(max(0, s.invalid_retries) + 1):
            cpu0, t0 = (service.cpu_seconds() if service is not None else None), time.monotonic()
            result = runner(step_scenario(aimed, rate, s.step_duration_s))
            cpu1, t1 = (service.cpu_seconds() if service is not None else None), time.monotonic()
            ev = _evidence(rate, result, s, phase if attempt == 0 else f"{phase} (retry)")
            ev["target_cpu_cores"] = (round((cpu1 - cpu0) / (t1 - t0), 3)
                                      if cpu0 is not None and cpu1 is not None and t1 > t0 else None)
            steps.append(ev)
            if s.keep_results:
                results.append(result)
            if on_step is not None:
                on_step(ev)
            if ev["valid"]:
                break
        return ev

    lo: Optional[float] = None   # highest passing rate
    hi: Optional[float] = None   # lowest failing rate
    status = message = None
    rate = s.start_rate
    # exponential phase (downwards too, when the start rate already fails)
    while len(steps) < s.max_steps:  # (retries count as steps)
        ev = probe(rate, "exponential")
        if not ev["valid"]:
            status = "generator-limited"
            break
        if ev["passed"]:
            lo = rate
            if hi is not None:
                break
            if rate >= s.max_rate:
                status = "above-max-rate"
                break
            rate = min(rate * s.factor, s.max_rate)
        else:
            hi = rate
            if lo is not None:
                break
            if rate / s.factor < min_rate:
                status = "below-min-rate"
                break
            rate = rate / s.factor
    # binary phase
    while status is None and lo is not None and hi is not None and (hi - lo) / lo > s.precision:
        if len(steps) >= s.max_steps:
            status = "step-limit"
            break
        mid = (lo + hi) / 2.0
        ev = probe(mid, "binary")
        if not ev["valid"]:
            status = "generator-limited"
            break
        if ev["passed"]:
            lo = mid
        else:
            hi = mid
    if status is None:
        status = "found" if lo is not None and hi is not None else "step-limit"
    bad = steps[-1] if steps else None
    if status == "found":
        message = (f"knee at {lo:.4g} rps: the highest rate that met every threshold; {hi:.4g} rps did not "
                   f"(bracket within {s.precision:.0%})")
    elif status == "generator-limited":
        assert bad is not None
        message = (f"stopped at {bad['rate']:.4g} rps: the generator, not the target, was the limit there ("
                   + "; ".join(bad["generator_reasons"]) + "). "
                   + (f"The knee is at least {lo:.4g} rps (the last valid passing step); measure higher with "
                      "more --workers or a separate load machine." if lo is not None else
                      "No valid step passed, so there is no knee to report."))
    elif status == "above-max-rate":
        message = f"every step passed up to max_rate {s.max_rate:g} rps: the knee is above it"
    elif status == "below-min-rate":
        message = f"even {rate:.4g} rps failed: the knee is below {min_rate:.4g} rps (or the thresholds cannot be met)"
    else:
        message = (f"stopped after {len(steps)} steps (max_steps); bracket "
                   f"[{lo if lo is None else f'{lo:.4g}'}, {hi if hi is None else f'{hi:.4g}'}] rps")
    knee = lo if status in ("found", "above-max-rate", "step-limit") else None
    limiting = _limiting_step(steps, hi, status)
    limit = classify_limit(limiting, s) if limiting is not None else None
    if limit is not None:
        message += ("" if message.endswith(".") else ".") + f" Limited by: {limit['detail']}."
    out = {
        "schema": SEARCH_SCHEMA,
        "scenario": base.to_dict(),
        "status": status,
        "knee_rps": knee,
        "at_least_rps": lo,
        "bracket": [lo, hi],
        "message": message,
        "limit": limit,
        "target_process": ({"command": service.command, "pid": service.pid} if service is not None
                           else "in-process (the generator's own process)"),
        "settings": {k: getattr(s, k) for k in ("start_rate", "max_rate", "factor", "precision", "step_duration_s",
                                                "min_achieved", "max_steps")},
        "criteria": ["every scenario threshold: " + ", ".join(f"{t.metric} {t.expression}"
                                                             for t in base.parsed_thresholds)
                     + (" (throughput thresholds rescaled to each step's rate)"
                        if any(t.name == "throughput" and t.expression.replace(" ", "") != "count>0"
                               for t in base.parsed_thresholds) else ""),
                     f"achieved rate >= {s.min_achieved:.0%} of the offered rate",
                     "the run is valid (the generator was not the limit)"],
        "steps": steps,
    }
    if s.keep_results:
        out["results"] = results
    return out


def _limiting_step(steps: List[Dict[str, Any]], hi: Optional[float], status: str) -> Optional[Dict[str, Any]]:
    """The step that bounds the knee from above: the last step at the lowest failing rate
    (or the invalid one that stopped the search)."""
    if not steps:
        return None
    if status == "generator-limited":
        return steps[-1]
    if hi is None:
        return None
    at_hi = [st for st in steps if st["rate"] == hi and not st["passed"]]
    return at_hi[-1] if at_hi else None


_ERROR_METRICS = ("failed_rate", "error_rate", "timeout_rate", "dropped_rate", "no-success")
_LATENCY_METRICS = ("latency", "service_time")


def classify_limit(step: Mapping[str, Any], settings: Optional[SearchSettings] = None) -> Dict[str, Any]:
    """What stopped ``step`` from passing: ``generator`` | ``target-cpu`` | ``errors`` |
    ``latency`` | ``throughput`` | ``thresholds``, with a one-line ``detail`` naming the
    evidence (see the module docstring)."""
    s = settings or SearchSettings()
    failed = set(step.get("failed_metrics") or [])
    symptoms: List[str] = []
    if any(m in failed for m in _ERROR_METRICS):
        errs = ", ".join(f"{k} x{v}" for k, v in sorted((step.get("errors") or {}).items(), key=lambda kv: -kv[1])[:3])
        o = step.get("outcomes") or {}
        fr = step.get("failed_rate")
        symptoms.append("errors: " + (f"{fr:.1%} of requests failed" if fr is not None else "failures")
                        + (f" (timeout {o.get('timeout', 0)}, dropped {o.get('dropped', 0)}"
                           + (f"; {errs}" if errs else "") + ")" if o else ""))
    if any(m in failed for m in _LATENCY_METRICS):
        p95 = step.get("p95_ms")
        symptoms.append("latency" + (f": p95 {p95:.1f} ms" if p95 is not None else ""))
    if step.get("throughput_short") or "throughput" in failed:
        a = step.get("achieved_rps")
        symptoms.append("throughput" + (f": achieved {a:.1f} of {step['rate']:.4g} rps offered" if a is not None else ""))
    if not step.get("valid", True):
        kind = "generator"
        detail = "the generator (" + "; ".join(step.get("generator_reasons") or ["invalid run"]) + ")"
        return {"kind": kind, "detail": detail, "rate": step["rate"], "symptoms": symptoms,
                "target_cpu_cores": step.get("target_cpu_cores")}
    kind = symptoms[0].split(":")[0] if symptoms else "thresholds"
    cpu = step.get("target_cpu_cores")
    cores = step.get("cpu_count") or os.cpu_count() or 1
    gen_cores = (step.get("cpu_percent_mean") or 0.0) / 100.0  # psutil: percent of one core
    left = max(cores - gen_cores, 0.5)
    detail = "; ".join(symptoms) or "a threshold failed"
    if cpu is not None:
        share = cpu / left
        if share >= s.cpu_saturated:
            kind = "target-cpu"
            detail = (f"target CPU: the target process used {cpu:.2f} cores of the {left:.2f} left to it by the "
                      f"generator ({share:.0%}) at {step['rate']:.4g} rps; symptom: {detail}")
        elif cpu >= s.cpu_one_core:
            kind = "target-cpu"
            detail = (f"target CPU: the target process used {cpu:.2f} cores at {step['rate']:.4g} rps, near the one "
                      f"core a single Python process's GIL-bound code can use ({left:.2f} left to it by the generator); "
                      f"symptom: {detail}")
        else:
            detail += f" (target process CPU {cpu:.2f} of {left:.2f} cores: not CPU-saturated)"
    return {"kind": kind, "detail": detail, "rate": step["rate"], "symptoms": symptoms, "target_cpu_cores": cpu}


def format_search(r: Mapping[str, Any]) -> str:
    tp = r.get("target_process")
    lines = [f"knee search: {r['scenario']['name']} -> {r['scenario']['target']}  ({'; '.join(r['criteria'])})"]
    if tp:
        lines.append("  target process: " + (" ".join(tp["command"]) + f" (pid {tp['pid']}, its own process)"
                                             if isinstance(tp, Mapping) else str(tp)))
    lines.append(f"  {'phase':<12}{'rate':>9}{'achieved':>10}{'p50':>9}{'p95':>9}{'p99':>9}{'failed':>8}"
                 f"{'tgt CPU':>9}  result")

    def f(v: Any, fmt: str = ".1f") -> str:
        return "-" if v is None else format(v, fmt)

    for st in r["steps"]:
        res = "pass" if st["passed"] else ("INVALID (generator)" if not st["valid"] else "fail: " + "; ".join(st["failed"]))
        fr = st.get("failed_rate", st.get("error_rate"))
        lines.append(f"  {st['phase']:<12}{st['rate']:>9.4g}{f(st['achieved_rps']):>10}{f(st['p50_ms']):>9}"
                     f"{f(st['p95_ms']):>9}{f(st['p99_ms']):>9}"
                     f"{'-' if fr is None else format(100 * fr, '.1f') + '%':>8}"
                     f"{f(st.get('target_cpu_cores'), '.2f'):>9}  {res}")
    lines.append(f"{r['status']}: {r['message']}")
    return "\n".join(lines)


def search_exit_code(r: Mapping[str, Any], *, min_knee: Optional[float] = None) -> ExitCode:
    """``harness search``'s exit code: OK when a knee was found (or every step passed up to
    ``max_rate``) and is at least ``min_knee``; INVALID_RUN when the generator was the limit
    before a knee — unless a valid step at or above ``min_knee`` already passed (the
    requirement is proven, the knee is "at least" that); THRESHOLDS_FAILED when no rate
    passed or the knee is below ``min_knee``."""
    if r["status"] == "generator-limited":
        if min_knee is not None and r.get("at_least_rps") is not None and r["at_least_rps"] >= min_knee:
            return ExitCode.OK
        return ExitCode.INVALID_RUN
    if r["status"] == "below-min-rate" or r["knee_rps"] is None:
        return ExitCode.THRESHOLDS_FAILED
    if min_knee is not None and (r["knee_rps"] or 0) < min_knee:
        return ExitCode.THRESHOLDS_FAILED
    return ExitCode.OK
