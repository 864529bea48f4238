#!/usr/bin/env python3
"""Write ``recording_rules.yml`` and ``alert_rules.yml`` from the budgets below.

The budgets, windows, burn-rate factors and the runbook base URL live here, once; the two
YAML files are generated so that forty near-identical rules cannot drift apart. Both files
are committed (Prometheus, promtool and the k8s PrometheusRule read them as they are).

    python alerts/generate.py          # rewrite the files
    python alerts/generate.py --check  # exit 1 if they differ from what this writes (tests, CI)

Only the standard library and PyYAML (a project dependency) are used.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List

import yaml

HERE = Path(__file__).resolve().parent

# --------------------------------------------------------------------------------------
# The one place to change things.
# --------------------------------------------------------------------------------------

#: Where ``docs/runbooks/<file>.md`` is published; every ``runbook_url`` starts with this.
RUNBOOK_BASE = "https://github.com/latency-budget/harness/blob/main/docs/runbooks/"

#: Windows recorded for instrumented operations: 1m for test runs, the rest for burn rates.
OPERATION_WINDOWS = ("1m", "5m", "30m", "1h", "2h", "6h", "1d", "3d")
#: Windows recorded for the load harness's client-side view (a run lasts minutes).
HARNESS_WINDOWS = ("1m", "5m")

#: Operations held to the 100 ms / 200 ms latency budget (a PromQL regex). The error
#: budget applies to every operation. Add your own operation here, e.g. "feature_extraction|my_op".
LATENCY_BUDGET_OPERATIONS = "feature_extraction"

P95_BUDGET_SECONDS = 0.1
#: Operations with a p95 budget of their own (seconds), each alerted by OperationP95OverBudget
#: (page above it, critical above 1.2x it). The seeds: the RL agent's action < 50 ms. Each
#: budget should be an instrumentation bucket edge (instrumentation/buckets.py has 0.05).
OPERATION_P95_BUDGETS: Dict[str, float] = {"agent_action": 0.05}
P99_BUDGET_SECONDS = 0.2
#: The model's load time at service start (the seeds: < 5 s). The service publishes it as
#: ``lbh_model_load_seconds`` beside ``lbh_model_load_budget_seconds`` and in ``/readyz``;
#: a one-off at start, not a rate, so no rule is generated from it. Must equal
#: ``workloads.model.MODEL_LOAD_BUDGET_SECONDS`` (tests/unit/workloads/test_model_load_budget.py).
MODEL_LOAD_BUDGET_SECONDS = 5.0
ERROR_RATIO_BUDGET = 0.01
MEMORY_GROWTH_BUDGET_BYTES = 1e9
MEMORY_GROWTH_WINDOW = "1h"
#: The origin documents: WARNING above the threshold, CRITICAL above 1.2x it.
CRITICAL_FACTOR = 1.2
#: Generator health: the load generator's own scheduling lateness, p99.
GENERATOR_LAG_P99_SECONDS = 0.005

#: ``for:`` of the threshold alerts on the 1m window: they must fire inside a 30-60 s run.
BUDGET_FOR = "10s"

#: SLOs for the burn-rate alerts. Latency SLI: share of calls <= 100 ms (the le="0.1"
#: bucket). The objective is 95 %, i.e. exactly the p95 < 100 ms budget (see README).
LATENCY_SLO = 0.95
ERROR_SLO = 0.99
#: (burn-rate factor, long window, short window, severity, for) -- SRE workbook, ch. 5,
#: "multiwindow, multi-burn-rate alerts": 2 % / 5 % of a 30-day budget in 1 h / 6 h page,
#: 10 % in 1 d / 3 d open a ticket (here: warning -> chat).
BURN_RATES = (
    (14.4, "1h", "5m", "page", "2m"),
    (6, "6h", "30m", "page", "2m"),
    (3, "1d", "2h", "warning", "15m"),
    (1, "3d", "6h", "warning", "15m"),
)

HIST = "lbh_operation_duration_seconds"
HARNESS_LATENCY = "lbh_harness_latency_seconds"


def num(x: float) -> str:
    """A threshold as PromQL prints it best: 0.12, not 0.12000000000000001."""
    if abs(x) >= 1e6:  # bytes: 1e9, 1.2e9
        mantissa, exponent = f"{x:e}".split("e")
        return f"{float(mantissa):g}e{int(exponent)}"
    return f"{round(x, 9):g}"


def runbook(name: str) -> str:
    return f"{RUNBOOK_BASE}{runbook_file(name)}"


def runbook_file(alertname: str) -> str:
    """``LatencyP95OverBudget`` -> ``latency-p95-over-budget.md``."""
    out = []
    for i, ch in enumerate(alertname):
        if ch.isupper() and i and (not alertname[i - 1].isupper() or (i + 1 < len(alertname) and alertname[i + 1].islower())):
            out.append("-")
        out.append(ch.lower())
    return "".join(out) + ".md"


# --------------------------------------------------------------------------------------
# Recording rules
# --------------------------------------------------------------------------------------


def operation_rules(w: str) -> List[Dict[str, Any]]:
    by = "job, operation"
    calls = f"sum by ({by}) (rate({HIST}_count[{w}]))"
    errors = f'sum by ({by}) (rate({HIST}_count{{outcome="error"}}[{w}]))'
    good = f'sum by ({by}) (rate({HIST}_bucket{{le="0.1"}}[{w}]))'
    rules = [
        {"record": f"job_operation:lbh_operation_calls:rate{w}", "expr": calls},
        # "or 0 * calls": an operation that never failed has no outcome="error" series;
        # its error ratio is 0, not missing.
        {"record": f"job_operation:lbh_operation_errors:ratio_rate{w}",
         "expr": f"(\n  {errors}\n  or\n  0 * {calls}\n)\n/\n{calls}\n"},
        {"record": f"job_operation:lbh_operation_good_latency:ratio_rate{w}",
         "expr": f"{good}\n/\n{calls}\n"},
    ]
    for q in (95, 99):
        rules.append({
            "record": f"job_operation:{HIST}:p{q}_rate{w}",
            "expr": f"histogram_quantile(0.{q}, sum by (le, {by}) (rate({HIST}_bucket[{w}])))",
        })
    return rules


def harness_rules(w: str) -> List[Dict[str, Any]]:
    by = "job, target"
    requests = f"sum by ({by}) (rate(lbh_harness_requests_total[{w}]))"
    failed = f'sum by ({by}) (rate(lbh_harness_requests_total{{outcome!="ok"}}[{w}]))'
    lat_count = f"sum by ({by}) (rate({HARNESS_LATENCY}_count[{w}]))"
    lat_good = f'sum by ({by}) (rate({HARNESS_LATENCY}_bucket{{le="0.1"}}[{w}]))'
    rules = [
        {"record": f"job_target:lbh_harness_requests:rate{w}", "expr": requests},
        {"record": f"job_target:lbh_harness_requests_failed:ratio_rate{w}",
         "expr": f"(\n  {failed}\n  or\n  0 * {requests}\n)\n/\n{requests}\n"},
        {"record": f"job_target:lbh_harness_good_latency:ratio_rate{w}", "expr": f"{lat_good}\n/\n{lat_count}\n"},
    ]
    for metric, quantiles in (
        (HARNESS_LATENCY, (95, 99)),
        ("lbh_harness_service_time_seconds", (95, 99)),
        ("lbh_harness_schedule_lag_seconds", (99,)),
    ):
        for q in quantiles:
            rules.append({
                "record": f"job_target:{metric}:p{q}_rate{w}",
                "expr": f"histogram_quantile(0.{q}, sum by (le, {by}) (rate({metric}_bucket[{w}])))",
            })
    rules.append({
        "record": f"job_instance:lbh_harness_generator_lag_seconds:p99_rate{w}",
        "expr": f"histogram_quantile(0.99, sum by (le, job, instance) (rate(lbh_harness_generator_lag_seconds_bucket[{w}])))",
    })
    return rules


def recording_rules() -> Dict[str, Any]:
    groups = [{"name": f"lbh-operation-rate{w}", "rules": operation_rules(w)} for w in OPERATION_WINDOWS]
    groups += [{"name": f"lbh-harness-rate{w}", "rules": harness_rules(w)} for w in HARNESS_WINDOWS]
    return {"groups": groups}


# --------------------------------------------------------------------------------------
# Alert rules
# --------------------------------------------------------------------------------------


def alert(name: str, expr: str, for_: str, severity: str, summary: str, description: str, **labels: str) -> Dict[str, Any]:
    rule: Dict[str, Any] = {"alert": name, "expr": expr}
    if for_:
        rule["for"] = for_
    rule["labels"] = {"severity": severity, **labels}
    rule["annotations"] = {"summary": summary, "description": description, "runbook_url": runbook(name)}
    return rule


def escalating(name: str, metric: str, budget: float, low: str, fmt: str, what: str, unit: str, for_: str) -> List[Dict[str, Any]]:
    """Two rules, one alertname: ``low`` severity above the budget, critical above 1.2x it."""
    rules = []
    for severity, threshold, word in ((low, budget, "over"), ("critical", budget * CRITICAL_FACTOR, f"over {num(CRITICAL_FACTOR)}x")):
        rules.append(alert(
            name,
            f"{metric} > {num(threshold)}",
            for_,
            severity,
            f"{{{{ $labels.operation }}}} {what} {word} its {unit} budget on {{{{ $labels.job }}}}",
            f"{what} of {{{{ $labels.operation }}}} on job {{{{ $labels.job }}}} is {{{{ $value | {fmt} }}}} "
            f"over the last minute (budget {unit}, {severity} above {{{{ {num(threshold)} | {fmt} }}}}).",
        ))
    return rules


def duration(seconds: float) -> str:
    """0.05 -> "50ms", 1.0 -> "1s" (for summaries)."""
    return f"{num(seconds * 1000)}ms" if seconds < 1 else f"{num(seconds)}s"


def operation_p95_rules() -> List[Dict[str, Any]]:
    """``OperationP95OverBudget``: one page/critical pair per operation with a budget of its own."""
    rules = []
    for operation, budget in OPERATION_P95_BUDGETS.items():
        metric = f'job_operation:{HIST}:p95_rate1m{{operation="{operation}"}}'
        rules += escalating("OperationP95OverBudget", metric, budget, "page", "humanizeDuration", "p95 latency",
                            duration(budget), BUDGET_FOR)
    return rules


def burn_rules(name: str, slo_name: str, ratio_bad: str, budget: float, selector: str) -> List[Dict[str, Any]]:
    rules = []
    for factor, long_w, short_w, severity, for_ in BURN_RATES:
        def burn(w: str) -> str:
            return f"({ratio_bad.format(w=w, sel=selector)}) / {num(budget)}"

        rules.append(alert(
            name,
            f"(\n  {burn(long_w)} > {num(factor)}\n)\nand\n(\n  {burn(short_w)} > {num(factor)}\n)\n",
            for_,
            severity,
            f"{{{{ $labels.operation }}}} burns its {slo_name} SLO budget faster than {num(factor)}x on {{{{ $labels.job }}}}",
            f"{{{{ $labels.operation }}}} on job {{{{ $labels.job }}}} burns its {slo_name} budget at "
            f"{{{{ $value | printf \"%.1f\" }}}}x over {long_w} (and over {short_w}); at {num(factor)}x "
            f"the {long_w} window alone spends {num(round(factor * _window_days(long_w) / 30 * 100, 1))} % of a 30-day budget.",
            window=long_w,
        ))
    return rules


def _window_days(w: str) -> float:
    n, unit = float(w[:-1]), w[-1]
    return n * {"m": 1 / 1440, "h": 1 / 24, "d": 1}[unit]


def alert_rules() -> Dict[str, Any]:
    lat = f'{{operation=~"{LATENCY_BUDGET_OPERATIONS}"}}'
    budget = escalating(
        "LatencyP95OverBudget", f"job_operation:{HIST}:p95_rate1m{lat}", P95_BUDGET_SECONDS,
        "page", "humanizeDuration", "p95 latency", "100ms", BUDGET_FOR)
    budget += escalating(
        "LatencyP99OverBudget", f"job_operation:{HIST}:p99_rate1m{lat}", P99_BUDGET_SECONDS,
        "warning", "humanizeDuration", "p99 latency", "200ms", BUDGET_FOR)
    budget += operation_p95_rules()
    budget += escalating(
        "ErrorRatioOverBudget", "job_operation:lbh_operation_errors:ratio_rate1m", ERROR_RATIO_BUDGET,
        "page", "humanizePercentage", "error ratio", "1%", BUDGET_FOR)

    slo = burn_rules(
        "LatencyBudgetBurn", f"latency ({num(LATENCY_SLO * 100)} % <= 100ms)",
        "1 - job_operation:lbh_operation_good_latency:ratio_rate{w}{sel}", 1 - LATENCY_SLO, lat)
    slo += burn_rules(
        "ErrorBudgetBurn", f"error ({num(ERROR_SLO * 100)} % ok)",
        "job_operation:lbh_operation_errors:ratio_rate{w}", 1 - ERROR_SLO, "")

    mem = MEMORY_GROWTH_WINDOW
    growth = f"process_resident_memory_bytes - min_over_time(process_resident_memory_bytes[{mem}])"
    platform = [alert(
        "TargetDown", "up == 0", "30s", "page",
        "{{ $labels.job }} target {{ $labels.instance }} is down",
        "Prometheus has failed to scrape {{ $labels.instance }} (job {{ $labels.job }}) for 30s; "
        "its latency and error alerts cannot fire while it is down.",
    )]
    for severity, threshold in (("warning", MEMORY_GROWTH_BUDGET_BYTES), ("critical", MEMORY_GROWTH_BUDGET_BYTES * CRITICAL_FACTOR)):
        platform.append(alert(
            "MemoryGrowthOverBudget", f"{growth} > {num(threshold)}", "1m", severity,
            "{{ $labels.job }} {{ $labels.instance }} resident memory grew over budget",
            f"Resident memory of {{{{ $labels.instance }}}} (job {{{{ $labels.job }}}}) grew by "
            f"{{{{ $value | humanize }}}}B over the last {mem} (budget 1GB, {severity} above "
            f"{{{{ {num(threshold)} | humanize }}}}B).",
        ))
    platform.append(alert(
        "FaultInjectionActive", 'lbh_fault_setting{fault!="latency_rate"} > 0', "", "info",
        "Fault {{ $labels.fault }} is injected on {{ $labels.job }}",
        "Fault injection {{ $labels.fault }}={{ $value }} is configured on {{ $labels.instance }} "
        "(job {{ $labels.job }}); latency and error alerts from this process are expected and on purpose.",
    ))
    platform.append(alert(
        "LoadGeneratorLagHigh",
        f"job_instance:lbh_harness_generator_lag_seconds:p99_rate1m > {num(GENERATOR_LAG_P99_SECONDS)}",
        BUDGET_FOR, "warning",
        "Load generator {{ $labels.instance }} is late: this run measures the generator, not the target",
        "The load generator on {{ $labels.instance }} (job {{ $labels.job }}) starts requests late: "
        "p99 schedule lag {{ $value | humanizeDuration }} over the last minute (limit "
        f"{{{{ {num(GENERATOR_LAG_P99_SECONDS)} | humanizeDuration }}}}). Latency figures of this run "
        "describe the generator, not the target; treat the run as invalid.",
    ))
    return {"groups": [
        {"name": "lbh-budget-alerts", "rules": budget},
        {"name": "lbh-slo-burn-alerts", "rules": slo},
        {"name": "lbh-platform-alerts", "rules": platform},
    ]}


# --------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)

HEADER = """\
# GENERATED by alerts/generate.py -- edit that file, then run `python alerts/generate.py`.
# {what}
# Objectives, windows and severities: alerts/README.md.
"""


def render() -> Dict[Path, str]:
    out = {}
    for name, doc, what in (
        ("recording_rules.yml", recording_rules(),
         "Recording rules: per job and operation (and per harness target) call rate, error ratio, "
         "good-latency ratio (<= 100 ms), p95, p99."),
        ("alert_rules.yml", alert_rules(),
         "Alert rules: latency and error budgets (with 1.2x escalation), SLO burn rates, platform health."),
    ):
        body = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=1_000_000, default_flow_style=False)
        out[HERE / name] = HEADER.format(what=what) + body
    return out


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for path, text in render().items():
        current = path.read_text() if path.exists() else None
        if current != text:
            stale.append(path)
            if not args.check:
                path.write_text(text)
    if args.check and stale:
        print("out of date (run `python alerts/generate.py`): " + ", ".join(str(p) for p in stale), file=sys.stderr)
        return 1
    for path in stale:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
