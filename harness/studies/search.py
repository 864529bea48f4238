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

Closed-loop (``users``) scenarios have no arrival rate to search; they are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional

from harness.config.scenario import Scenario, scenario_from_dict
from harness.exitcodes import ExitCode
from harness.result.summary import run_duration
from harness.run.runner import Run, RunOptions

__all__ = ["SearchSettings", "SearchError", "search", "step_scenario", "format_search", "search_exit_code",
           "SEARCH_SCHEMA"]

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


def step_scenario(base: Scenario, rate: float, duration_s: float) -> Scenario:
    """``base`` at a constant ``rate`` for ``duration_s`` (everything else unchanged)."""
    if base.closed_loop:
        raise SearchError(f"scenario {base.name!r} is closed-loop (users): there is no arrival rate to search")
    d = base.to_dict()
    arrival = (d.get("profile") or {}).get("arrival", "uniform")
    data = {k: v for k, v in d.items() if k not in ("profile", "duration")}
    data["name"] = f"{base.name}@{rate:g}rps"
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
    failed = [f"{t['metric']} {t['expression']} (observed {t['observed']if t['observed'] is None else round(t['observed'], 4)})"
              for t in result.get("thresholds") or [] if not t.get("ok")]
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
        "schedule_lag_p99_ms": gen.get("schedule_lag_p99_ms"),
        "cpu_percent_mean": gen.get("cpu_percent_mean"),
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
    steps: List[Dict[str, Any]] = []
    results: List[Dict[str, Any]] = []
    min_rate = s.min_rate if s.min_rate is not None else s.start_rate / 8.0

    def probe(rate: float, phase: str) -> Dict[str, Any]:
        for attempt in range(max(0, s.invalid_retries) + 1):
            result = runner(step_scenario(base, rate, s.step_duration_s))
            ev = _evidence(rate, result, s, phase if attempt == 0 else f"{phase} (retry)")
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
    out = {
        "schema": SEARCH_SCHEMA,
        "scenario": base.to_dict(),
        "status": status,
        "knee_rps": knee,
        "at_least_rps": lo,
        "bracket": [lo, hi],
        "message": message,
        "settings": {k: getattr(s, k) for k in ("start_rate", "max_rate", "factor", "precision", "step_duration_s",
                                                "min_achieved", "max_steps")},
        "criteria": ["every scenario threshold: " + ", ".join(f"{t.metric} {t.expression}"
                                                             for t in base.parsed_thresholds),
                     f"achieved rate >= {s.min_achieved:.0%} of the offered rate",
                     "the run is valid (the generator was not the limit)"],
        "steps": steps,
    }
    if s.keep_results:
        out["results"] = results
    return out


def format_search(r: Mapping[str, Any]) -> str:
    lines = [f"knee search: {r['scenario']['name']} -> {r['scenario']['target']}  ({'; '.join(r['criteria'])})",
             f"  {'phase':<12}{'rate':>9}{'achieved':>10}{'p50':>9}{'p95':>9}{'p99':>9}{'errors':>8}  result"]

    def f(v: Any, fmt: str = ".1f") -> str:
        return "-" if v is None else format(v, fmt)

    for st in r["steps"]:
        res = "pass" if st["passed"] else ("INVALID (generator)" if not st["valid"] else "fail: " + "; ".join(st["failed"]))
        lines.append(f"  {st['phase']:<12}{st['rate']:>9.4g}{f(st['achieved_rps']):>10}{f(st['p50_ms']):>9}"
                     f"{f(st['p95_ms']):>9}{f(st['p99_ms']):>9}"
                     f"{'-' if st['error_rate'] is None else format(100 * st['error_rate'], '.1f') + '%':>8}  {res}")
    lines.append(f"{r['status']}: {r['message']}")
    return "\n".join(lines)


def search_exit_code(r: Mapping[str, Any], *, min_knee: Optional[float] = None) -> ExitCode:
    """``harness search``'s exit code: OK when a knee was found (or every step passed up to
    ``max_rate``) and is at least ``min_knee``; INVALID_RUN when the generator was the limit
    before a knee; THRESHOLDS_FAILED when no rate passed or the knee is below ``min_knee``."""
    if r["status"] == "generator-limited":
        return ExitCode.INVALID_RUN
    if r["status"] == "below-min-rate" or r["knee_rps"] is None:
        return ExitCode.THRESHOLDS_FAILED
    if min_knee is not None and (r["knee_rps"] or 0) < min_knee:
        return ExitCode.THRESHOLDS_FAILED
    return ExitCode.OK
