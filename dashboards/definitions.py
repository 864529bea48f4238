"""The Grafana dashboards, defined once in Python.

``harness dashboards generate`` writes them to ``dashboards/json/*.json`` (the
committed files Grafana provisions); ``tests/unit/dashboards/test_dashboards_schema.py`` fails when the
committed JSON drifts from this definition.

Why a small builder of our own and not grafana-foundation-sdk: the SDK (10.1.0 on PyPI)
emits fields that Grafana's own dashboard JSON schema rejects (``style``, an ``id`` on
every variable, ``"options": null`` on panels), so its output would need a fix-up pass
anyway; a hundred lines of dict builders give JSON that validates as generated.

Conventions every panel follows:

* Prometheus queries use the ``${datasource}`` variable (default: the provisioned uid
  ``prometheus``); exemplars (the ``trace_id`` label the instrumentation attaches) open
  in the provisioned ``tempo`` datasource (see dashboards/provisioning/datasources).
* Rates use ``$__rate_interval``; windows over the whole dashboard range use ``$__range``.
* Budget lines: p95 100 ms, p99 200 ms, error ratio 1 %, good-latency objective 95 %
  (alerts/README.md has the objectives and burn-rate factors); operations with a budget
  of their own (the agent's action: p95 50 ms) are drawn against it in the
  "p95 against its budget" panel.

``needs(uid)`` lists the queries that cannot return data on an in-process harness run:
``cluster`` (kube-state-metrics / cAdvisor series, the scaling dashboard: checked with
``promtool`` only) and ``http`` (the HTTP service's own ``lbh_http_*`` series: checked in
a run against the real service).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = ["DASHBOARDS", "build_all", "needs", "PROMETHEUS_UID", "TEMPO_UID", "SCHEMA_VERSION", "RUN_ANNOTATION_TAG"]

PROMETHEUS_UID = "prometheus"
TEMPO_UID = "tempo"
SCHEMA_VERSION = 39
#: Tag of the annotations ``harness run --grafana-url`` posts (run start/end, phases).
RUN_ANNOTATION_TAG = "lbh-run"

P95_BUDGET = 0.1
P99_BUDGET = 0.2
ERROR_BUDGET = 0.01
LATENCY_OBJECTIVE = 0.95  # share of calls <= 100 ms
ERROR_OBJECTIVE = 0.99
#: Operations with a p95 budget of their own (alerts/generate.py OPERATION_P95_BUDGETS):
#: the RL agent's action, p95 < 50 ms. Every other operation is held to P95_BUDGET.
OPERATION_P95_BUDGETS: Dict[str, float] = {"agent_action": 0.05}

DS = {"type": "prometheus", "uid": "${datasource}"}
GRAFANA_DS = {"type": "grafana", "uid": "-- Grafana --"}

GREEN, ORANGE, RED, BLUE = "green", "orange", "red", "blue"

_NEEDS: Dict[str, Dict[Tuple[int, str], str]] = {}


# --------------------------------------------------------------------------- builder


class Board:
    """One dashboard being built: panels laid out left to right in rows of 24 columns."""

    def __init__(self, uid: str, title: str, description: str, tags: Sequence[str]) -> None:
        self.uid = uid
        self.title = title
        self.description = description
        self.tags = list(tags)
        self.panels: List[Dict[str, Any]] = []
        self.variables: List[Dict[str, Any]] = []
        self.annotations: List[Dict[str, Any]] = [
            {"name": "Annotations & Alerts", "builtIn": 1, "datasource": GRAFANA_DS, "enable": True,
             "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "type": "dashboard",
             "target": {"limit": 100, "matchAny": False, "tags": [], "type": "dashboard"}},
            {"name": "Harness runs and phases", "datasource": GRAFANA_DS, "enable": True, "hide": False,
             "iconColor": "purple", "type": "tags",
             "target": {"limit": 100, "matchAny": True, "tags": [RUN_ANNOTATION_TAG], "type": "tags"}},
        ]
        self.needs: Dict[Tuple[int, str], str] = {}
        self._x = 0
        self._y = 0
        self._row_h = 0
        self._next_id = 1

    # layout ------------------------------------------------------------------------------

    def _place(self, w: int, h: int) -> Dict[str, int]:
        if self._x + w > 24:
            self._x, self._y, self._row_h = 0, self._y + self._row_h, 0
        pos = {"h": h, "w": w, "x": self._x, "y": self._y}
        self._x += w
        self._row_h = max(self._row_h, h)
        return pos

    def row(self, title: str) -> None:
        if self._x:
            self._x, self._y, self._row_h = 0, self._y + self._row_h, 0
        self.panels.append({"type": "row", "id": self._next_id, "title": title, "collapsed": False, "panels": [],
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self._y}})
        self._next_id += 1
        self._y += 1

    def add(self, panel: Dict[str, Any], w: int = 12, h: int = 8,
            needs: Optional[Dict[str, str] | str] = None) -> Dict[str, Any]:
        """``needs``: ``{refId: scope}`` for some targets, or one scope for all of them."""
        panel["id"] = self._next_id
        self._next_id += 1
        panel["gridPos"] = self._place(w, h)
        if isinstance(needs, str):
            needs = {t["refId"]: needs for t in panel["targets"]}
        for ref, scope in (needs or {}).items():
            self.needs[(panel["id"], ref)] = scope
        self.panels.append(panel)
        return panel

    # variables ---------------------------------------------------------------------------

    def datasource_variable(self) -> None:
        self.variables.append({
            "type": "datasource", "name": "datasource", "label": "Prometheus", "query": "prometheus",
            "current": {"selected": True, "text": "Prometheus", "value": PROMETHEUS_UID},
            "hide": 0, "refresh": 1, "regex": "", "options": [], "multi": False, "includeAll": False,
        })

    def query_variable(self, name: str, label: str, metric: str, label_name: str, *,
                       multi: bool = True, include_all: bool = True, default: Optional[str] = None) -> None:
        """``label_values(metric, label_name)``; All means ``.*`` in the ``=~`` matchers."""
        query = f"label_values({metric}, {label_name})"
        var: Dict[str, Any] = {
            "type": "query", "name": name, "label": label, "datasource": DS,
            "query": query, "definition": query,
            "refresh": 2, "sort": 1, "regex": "", "hide": 0, "options": [],
            "multi": multi, "includeAll": include_all,
        }
        if include_all:
            var["allValue"] = ".*"
            var["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
        elif default is not None:
            var["current"] = {"selected": True, "text": default, "value": default}
        self.variables.append(var)

    # output ------------------------------------------------------------------------------

    def build_with_needs(self) -> Dict[str, Any]:
        """The dashboard JSON; remembers which queries need a cluster or the HTTP service."""
        _NEEDS[self.uid] = dict(self.needs)
        return self.build()

    def build(self) -> Dict[str, Any]:
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": self.tags,
            "timezone": "browser",
            "editable": True,
            "graphTooltip": 1,
            "time": {"from": "now-15m", "to": "now"},
            "timepicker": {"refresh_intervals": ["5s", "10s", "30s", "1m", "5m"]},
            "fiscalYearStartMonth": 0,
            "liveNow": False,
            "refresh": "5s",
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "links": [{"title": "Latency-budget dashboards", "type": "dashboards", "icon": "external link",
                       "tooltip": "", "tags": ["latency-budget"], "asDropdown": True, "targetBlank": False,
                       "includeVars": True, "keepTime": True}],
            "annotations": {"list": self.annotations},
            "templating": {"list": self.variables},
            "panels": self.panels,
        }


def q(expr: str, legend: str = "", ref: str = "A", *, instant: bool = False, exemplar: bool = False) -> Dict[str, Any]:
    """A Prometheus target."""
    t: Dict[str, Any] = {"datasource": DS, "refId": ref, "expr": expr, "editorMode": "code",
                         "legendFormat": legend or "__auto", "range": not instant, "instant": instant,
                         "format": "time_series"}
    if exemplar:
        t["exemplar"] = True
    return t


def _thresholds(steps: Sequence[Tuple[Optional[float], str]]) -> Dict[str, Any]:
    return {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in steps]}


def timeseries(title: str, description: str, targets: List[Dict[str, Any]], *, unit: str,
               thresholds: Sequence[Tuple[Optional[float], str]] = ((None, GREEN),),
               threshold_style: str = "off", min_: Optional[float] = None, max_: Optional[float] = None,
               stack: bool = False, draw: str = "line", fill: int = 10) -> Dict[str, Any]:
    defaults: Dict[str, Any] = {
        "unit": unit,
        "color": {"mode": "palette-classic"},
        "thresholds": _thresholds(thresholds),
        "custom": {
            "drawStyle": draw, "lineWidth": 1, "fillOpacity": fill, "showPoints": "never", "spanNulls": False,
            "lineInterpolation": "linear", "gradientMode": "none", "axisPlacement": "auto",
            "stacking": {"mode": "normal" if stack else "none", "group": "A"},
            "thresholdsStyle": {"mode": threshold_style},
        },
    }
    if min_ is not None:
        defaults["min"] = min_
    if max_ is not None:
        defaults["max"] = max_
    return {
        "type": "timeseries", "title": title, "description": description, "datasource": DS, "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom", "showLegend": True,
                               "calcs": ["lastNotNull", "max"]},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
    }


def stat(title: str, description: str, targets: List[Dict[str, Any]], *, unit: str,
         thresholds: Sequence[Tuple[Optional[float], str]] = ((None, GREEN),),
         text_mode: str = "value_and_name", decimals: Optional[int] = None) -> Dict[str, Any]:
    defaults: Dict[str, Any] = {"unit": unit, "color": {"mode": "thresholds"}, "thresholds": _thresholds(thresholds)}
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": "stat", "title": title, "description": description, "datasource": DS, "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"graphMode": "area", "colorMode": "background", "justifyMode": "auto", "textMode": text_mode,
                    "wideLayout": True, "showPercentChange": False, "percentChangeColorMode": "standard",
                    "orientation": "auto",
                    "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
    }


def alerts_annotation(selector: str) -> Dict[str, Any]:
    """Firing Prometheus alerts (the ``ALERTS`` series) as annotations."""
    return {"name": "Firing alerts", "datasource": DS, "enable": True, "hide": False, "iconColor": "red",
            "expr": f'ALERTS{{alertstate="firing"{selector}}}', "step": "15s",
            "titleFormat": "{{alertname}} ({{severity}})", "textFormat": "{{job}} {{operation}}",
            "tagKeys": "alertname,severity,job,operation", "useValueForTime": False}


def budgets_by_operation(count_expr: str) -> str:
    """A vector of each operation's p95 budget (label ``operation``): the own budgets of
    OPERATION_P95_BUDGETS, P95_BUDGET for every other operation seen in ``count_expr``."""
    own = " or ".join(f'label_replace(vector({b:g}), "operation", "{op}", "", "")'
                      for op, b in OPERATION_P95_BUDGETS.items())
    return f"({own} or on (operation) (0 * {count_expr} + {P95_BUDGET:g}))"


def _hq(quantile: float, metric: str, selector: str, by: str) -> str:
    return (f"histogram_quantile({quantile}, sum by (le, {by}) "
            f"(rate({metric}_bucket{{{selector}}}[$__rate_interval])))")


def _hq_native(quantile: float, metric: str, selector: str, by: str) -> str:
    """The harness's histograms: the native one (``<name>_native_seconds``, exact from HDR
    to 2.2 %) where Prometheus has it (``--enable-feature=native-histograms``), ``or`` the
    classic buckets (budget-edged, coarse between the edges) for the series it lacks."""
    native = metric[: -len("_seconds")] + "_native_seconds"
    return (f"histogram_quantile({quantile}, sum by ({by}) (rate({native}{{{selector}}}[$__rate_interval]))) "
            f"or {_hq(quantile, metric, selector, by)}")


# --------------------------------------------------------------------------- latency budget


def latency_budget() -> Dict[str, Any]:
    b = Board("lbh-latency-budget", "Latency budget",
              "Per-operation latency against the budget (p95 < 100 ms, p99 < 200 ms, errors < 1 %), SLO burn "
              "and budget left, traffic, cache and fallback, process CPU and memory.",
              ["latency-budget", "lbh"])
    b.datasource_variable()
    b.query_variable("job", "Job", "lbh_operation_duration_seconds_count", "job")
    b.query_variable("operation", "Operation", 'lbh_operation_duration_seconds_count{job=~"$job"}', "operation")
    b.annotations.append(alerts_annotation(', job=~"$job"'))
    sel = 'job=~"$job", operation=~"$operation"'
    h = "lbh_operation_duration_seconds"
    count = f"sum by (operation) (rate({h}_count{{{sel}}}[$__rate_interval]))"
    good_range = (f"sum by (operation) (increase({h}_bucket{{{sel}, le=\"0.1\"}}[$__range])) / "
                  f"sum by (operation) (increase({h}_count{{{sel}}}[$__range]))")
    err_range = (f"(sum by (operation) (increase({h}_count{{{sel}, outcome=\"error\"}}[$__range])) or "
                 f"0 * sum by (operation) (increase({h}_count{{{sel}}}[$__range]))) / "
                 f"sum by (operation) (increase({h}_count{{{sel}}}[$__range]))")

    b.row("Budget now")
    b.add(stat("p95 latency", "p95 over the last rate interval; red at the 100 ms budget (operations with a "
               "budget of their own, e.g. agent_action at 50 ms: see \"p95 against its budget\").",
               [q(_hq(0.95, h, sel, "operation"), "{{operation}}", instant=True)], unit="s",
               thresholds=((None, GREEN), (round(P95_BUDGET * 0.8, 6), ORANGE), (P95_BUDGET, RED))), w=6, h=5)
    b.add(stat("p99 latency", "p99 over the last rate interval; red at the 200 ms budget.",
               [q(_hq(0.99, h, sel, "operation"), "{{operation}}", instant=True)], unit="s",
               thresholds=((None, GREEN), (round(P99_BUDGET * 0.8, 6), ORANGE), (P99_BUDGET, RED))), w=6, h=5)
    b.add(stat("Latency budget left", "Share of the latency error budget (5 % of calls over 100 ms) not yet "
               "spent over the dashboard's time range. Below 0: the objective is missed for the range.",
               [q(f"1 - (1 - ({good_range})) / {1 - LATENCY_OBJECTIVE:g}", "{{operation}}", instant=True)],
               unit="percentunit", thresholds=((None, RED), (0.25, ORANGE), (0.5, GREEN))), w=6, h=5)
    b.add(stat("Error budget left", "Share of the error budget (1 % of calls) not yet spent over the "
               "dashboard's time range.",
               [q(f"1 - ({err_range}) / {ERROR_BUDGET:g}", "{{operation}}", instant=True)],
               unit="percentunit", thresholds=((None, RED), (0.25, ORANGE), (0.5, GREEN))), w=6, h=5)

    b.row("Latency")
    budget_lines = ((None, GREEN), (P95_BUDGET, ORANGE), (P99_BUDGET, RED))
    b.add(timeseries("Latency p50 / p95 / p99 by operation",
                     "Quantiles of lbh_operation_duration_seconds; dashed lines at the 100 ms (p95) and 200 ms "
                     "(p99) budgets. Exemplar dots open the trace in Tempo.",
                     [q(_hq(0.5, h, sel, "operation"), "p50 {{operation}}", "A", exemplar=True),
                      q(_hq(0.95, h, sel, "operation"), "p95 {{operation}}", "B", exemplar=True),
                      q(_hq(0.99, h, sel, "operation"), "p99 {{operation}}", "C", exemplar=True)],
                     unit="s", thresholds=budget_lines, threshold_style="dashed", min_=0), w=24, h=9)
    b.add(timeseries("Good-latency ratio (<= 100 ms) vs objective",
                     "Share of calls at or under 100 ms; the SLO objective is 95 % (line).",
                     [q(f"sum by (operation) (rate({h}_bucket{{{sel}, le=\"0.1\"}}[$__rate_interval])) / {count}",
                        "{{operation}}")],
                     unit="percentunit", thresholds=((None, RED), (LATENCY_OBJECTIVE, GREEN)),
                     threshold_style="dashed", max_=1), w=12)
    b.add(timeseries("Error ratio vs budget",
                     "Failed calls / all calls; the budget is 1 % (line).",
                     [q(f"(sum by (operation) (rate({h}_count{{{sel}, outcome=\"error\"}}[$__rate_interval])) or "
                        f"0 * {count}) / {count}", "{{operation}}")],
                     unit="percentunit", thresholds=((None, GREEN), (ERROR_BUDGET, RED)),
                     threshold_style="dashed", min_=0), w=12)
    rsel = 'job=~"$job", operation=~"$operation"'
    b.add(timeseries("Burn rate (latency and error SLOs)",
                     "How fast the 30-day budgets burn (1 = exactly on budget), from the recording rules; the "
                     "fast-burn page factor is 14.4 (line), see alerts/README.md.",
                     [q(f"(1 - job_operation:lbh_operation_good_latency:ratio_rate5m{{{rsel}}}) / "
                        f"{1 - LATENCY_OBJECTIVE:g}", "latency 5m {{operation}}", "A"),
                      q(f"(1 - job_operation:lbh_operation_good_latency:ratio_rate1h{{{rsel}}}) / "
                        f"{1 - LATENCY_OBJECTIVE:g}", "latency 1h {{operation}}", "B"),
                      q(f"job_operation:lbh_operation_errors:ratio_rate5m{{{rsel}}} / {1 - ERROR_OBJECTIVE:g}",
                        "errors 5m {{operation}}", "C"),
                      q(f"job_operation:lbh_operation_errors:ratio_rate1h{{{rsel}}} / {1 - ERROR_OBJECTIVE:g}",
                        "errors 1h {{operation}}", "D")],
                     unit="none", thresholds=((None, GREEN), (6, ORANGE), (14.4, RED)),
                     threshold_style="dashed", min_=0), w=12)
    b.add(timeseries("Errors by type", "lbh_operation_errors_total by operation and exception type.",
                     [q(f"sum by (operation, error_type) (rate(lbh_operation_errors_total{{{sel}}}[$__rate_interval]))",
                        "{{operation}} {{error_type}}")], unit="reqps", min_=0, stack=True), w=12)
    own = ", ".join(f"{op} {b * 1000:g} ms" for op, b in OPERATION_P95_BUDGETS.items())
    b.add(timeseries("p95 against its budget",
                     f"Each operation's p95 divided by its own p95 budget ({own}; every other operation "
                     f"{P95_BUDGET * 1000:g} ms): 100 % (line) is exactly on budget. The RL agent's decision "
                     "(agent_action) is held to 50 ms, the seeds' budget; OperationP95OverBudget pages above it.",
                     [q(f"{_hq(0.95, h, sel, 'operation')} / on (operation) {budgets_by_operation(count)}",
                        "{{operation}}")],
                     unit="percentunit", thresholds=((None, GREEN), (0.8, ORANGE), (1.0, RED)),
                     threshold_style="dashed", min_=0), w=24, h=7)

    b.row("Traffic, cache and fallback")
    b.add(timeseries("Call rate by operation and outcome", "Calls per second.",
                     [q(f"sum by (operation, outcome) (rate({h}_count{{{sel}}}[$__rate_interval]))",
                        "{{operation}} {{outcome}}")], unit="reqps", min_=0, stack=True), w=8)
    b.add(timeseries("In flight", "Calls running now (lbh_operation_in_flight).",
                     [q(f"sum by (operation) (lbh_operation_in_flight{{{sel}}})", "{{operation}}")],
                     unit="short", min_=0), w=8)
    b.add(timeseries("Cache hit and fallback ratio",
                     "Share of calls answered from the TTL cache, and share answered by the technical-indicator "
                     "fallback (model error or open circuit).",
                     [q(f"sum by (operation) (rate(lbh_operation_flags_total{{{sel}, flag=\"cache_hit\"}}[$__rate_interval])) / {count}",
                        "cache hit {{operation}}", "A"),
                      q(f"sum by (operation) (rate(lbh_operation_flags_total{{{sel}, flag=\"fallback\"}}[$__rate_interval])) / {count}",
                        "fallback {{operation}}", "B")],
                     unit="percentunit", min_=0, max_=1), w=8)
    b.add(timeseries("Injected faults", "Faults injected on purpose (lbh_faults_injected_total) and the fault "
                     "settings in force (lbh_fault_setting): a latency spike is never shown without its cause.",
                     [q('sum by (operation, fault) (rate(lbh_faults_injected_total{job=~"$job"}[$__rate_interval]))',
                        "injected {{operation}} {{fault}}", "A"),
                      q('max by (fault) (lbh_fault_setting{job=~"$job"})', "setting {{fault}}", "B")],
                     unit="short", min_=0), w=24, h=6)

    b.row("Process")
    b.add(timeseries("CPU", "process_cpu_seconds_total rate: cores in use.",
                     [q('sum by (job, instance) (rate(process_cpu_seconds_total{job=~"$job"}[$__rate_interval]))',
                        "{{job}} {{instance}}")], unit="short", min_=0), w=12)
    b.add(timeseries("Resident memory", "process_resident_memory_bytes; the MemoryGrowthOverBudget alert fires "
                     "on 1 GB growth within an hour.",
                     [q('sum by (job, instance) (process_resident_memory_bytes{job=~"$job"})', "{{job}} {{instance}}")],
                     unit="bytes", min_=0), w=12)
    return b.build_with_needs()


# --------------------------------------------------------------------------- load run


def load_run() -> Dict[str, Any]:
    b = Board("lbh-load-run", "Load run",
              "One harness run as it happens: intended vs achieved rate, latency from the intended start "
              "(client view, coordinated omission corrected) vs service time vs the service's own histogram "
              "(server view), schedule lag, outcomes; firing alerts and run phases as annotations.",
              ["latency-budget", "lbh", "harness"])
    b.datasource_variable()
    b.query_variable("job", "Harness job", "lbh_harness_requests_total", "job")
    b.query_variable("target", "Target", 'lbh_harness_requests_total{job=~"$job"}', "target")
    b.query_variable("service_job", "Service job", "lbh_operation_duration_seconds_count", "job")
    b.annotations.append(alerts_annotation(""))
    hsel = 'job=~"$job", target=~"$target"'
    ssel = 'job=~"$service_job"'

    b.row("Run")
    b.add(stat("Run", "lbh_harness_run_info: the run in progress.",
               [q('max by (run_id, scenario, target, profile) (lbh_harness_run_info{job=~"$job"})',
                  "{{scenario}} / {{profile}} -> {{target}} ({{run_id}})", instant=True)],
               unit="none", text_mode="name"), w=12, h=4)
    b.add(stat("Elapsed", "Seconds since the run's first intended start.",
               [q('max(lbh_harness_elapsed_seconds{job=~"$job"})', "elapsed", instant=True)], unit="s"), w=4, h=4)
    b.add(stat("Achieved / intended", "Completed requests per second over the intended rate; below 1 the "
               "target (or the generator) cannot keep up.",
               [q('sum(lbh_harness_achieved_rate{job=~"$job"}) / sum(lbh_harness_intended_rate{job=~"$job"} > 0)',
                  "ratio", instant=True)],
               unit="percentunit", thresholds=((None, RED), (0.95, ORANGE), (0.99, GREEN))), w=4, h=4)
    b.add(stat("Failed requests", "Share of requests not ok (error, timeout, dropped) since the start.",
               [q(f'sum(lbh_harness_requests_total{{{hsel}, outcome!="ok"}}) / sum(lbh_harness_requests_total{{{hsel}}})',
                  "failed", instant=True)],
               unit="percentunit", thresholds=((None, GREEN), (ERROR_BUDGET, RED))), w=4, h=4)

    b.add(timeseries("Intended vs achieved rate",
                     "The schedule's rate (intended), what completed (achieved), and the request counters' rates.",
                     [q('sum(lbh_harness_intended_rate{job=~"$job"})', "intended", "A"),
                      q('sum(lbh_harness_achieved_rate{job=~"$job"})', "achieved", "B"),
                      q('sum(rate(lbh_harness_intended_requests_total{job=~"$job"}[$__rate_interval]))',
                        "intended (counter)", "C"),
                      q(f"sum(rate(lbh_harness_requests_total{{{hsel}}}[$__rate_interval]))", "completed (counter)", "D")],
                     unit="reqps", min_=0), w=12)
    b.add(timeseries("Outcomes", "Requests per second by outcome (ok, error, timeout, dropped).",
                     [q(f"sum by (outcome) (rate(lbh_harness_requests_total{{{hsel}}}[$__rate_interval]))",
                        "{{outcome}}")], unit="reqps", min_=0, stack=True, draw="bars", fill=80), w=12)

    b.row("Latency: client view vs server view")
    lines = ((None, GREEN), (P95_BUDGET, ORANGE), (P99_BUDGET, RED))
    b.add(timeseries("Client view: latency from intended start vs service time",
                     "lbh_harness_latency_seconds counts from each request's intended start (a stall is never "
                     "hidden); lbh_harness_service_time_seconds from its actual start. The gap is queueing in "
                     "the generator or the target. Native histograms (exact from HDR to 2.2 %) where Prometheus has "
                     "them, the classic buckets otherwise.",
                     [q(_hq_native(0.95, "lbh_harness_latency_seconds", hsel, "target"), "latency p95 {{target}}", "A",
                        exemplar=True),
                      q(_hq_native(0.99, "lbh_harness_latency_seconds", hsel, "target"), "latency p99 {{target}}", "B",
                        exemplar=True),
                      q(_hq_native(0.95, "lbh_harness_service_time_seconds", hsel, "target"),
                        "service time p95 {{target}}",
                        "C", exemplar=True),
                      q(_hq_native(0.99, "lbh_harness_service_time_seconds", hsel, "target"),
                        "service time p99 {{target}}",
                        "D", exemplar=True)],
                     unit="s", thresholds=lines, threshold_style="dashed", min_=0), w=12, h=9)
    b.add(timeseries("Server view: the service's own histogram",
                     "In-process targets: lbh_operation_duration_seconds (feature_extraction). HTTP service: "
                     "lbh_http_request_duration_seconds by route. Exemplar dots open the trace.",
                     [q(_hq(0.95, "lbh_operation_duration_seconds", f'{ssel}, operation="feature_extraction"',
                            "operation"), "p95 {{operation}}", "A", exemplar=True),
                      q(_hq(0.99, "lbh_operation_duration_seconds", f'{ssel}, operation="feature_extraction"',
                            "operation"), "p99 {{operation}}", "B", exemplar=True),
                      q(_hq(0.95, "lbh_http_request_duration_seconds", ssel, "route"), "http p95 {{route}}", "C",
                        exemplar=True),
                      q(_hq(0.99, "lbh_http_request_duration_seconds", ssel, "route"), "http p99 {{route}}", "D",
                        exemplar=True)],
                     unit="s", thresholds=lines, threshold_style="dashed", min_=0), w=12, h=9,
          needs={"C": "http", "D": "http"})

    b.row("Generator health")
    b.add(timeseries("Schedule lag", "Actual start minus intended start (p99 per target), and the generator's "
                     "own wake-up lag (p99). Above 5 ms the run is marked invalid.",
                     [q(_hq_native(0.99, "lbh_harness_schedule_lag_seconds", hsel, "target"),
                        "schedule lag p99 {{target}}",
                        "A"),
                      q('histogram_quantile(0.99, sum by (le) (rate(lbh_harness_generator_lag_seconds_bucket'
                        '{job=~"$job"}[$__rate_interval])))', "generator lag p99", "B")],
                     unit="s", thresholds=((None, GREEN), (0.005, RED)), threshold_style="dashed", min_=0), w=8)
    b.add(timeseries("In flight", "Requests sent and not yet answered: harness side, and the HTTP service's own "
                     "gauge.",
                     [q('sum(lbh_harness_in_flight{job=~"$job"})', "harness", "A"),
                      q(f"sum(lbh_http_requests_in_flight{{{ssel}}})", "service (http)", "B")],
                     unit="short", min_=0), w=8, needs={"B": "http"})
    b.add(timeseries("Firing alerts", "ALERTS{alertstate=\"firing\"} by alert and severity (also shown as "
                     "annotations).",
                     [q('sum by (alertname, severity) (ALERTS{alertstate="firing"})', "{{alertname}} {{severity}}")],
                     unit="short", min_=0, draw="bars", fill=80, stack=True), w=8)
    b.add(timeseries("Load shedding (HTTP service)", "503s the service returned before doing any work, by reason.",
                     [q(f"sum by (reason) (rate(lbh_http_shed_total{{{ssel}}}[$__rate_interval]))", "{{reason}}")],
                     unit="reqps", min_=0, stack=True), w=24, h=6, needs={"A": "http"})
    return b.build_with_needs()


# --------------------------------------------------------------------------- scaling (cluster only)


def scaling() -> Dict[str, Any]:
    b = Board("lbh-scaling", "Scaling",
              "Kubernetes scaling of the service: replicas the HPA wants vs has (kube-state-metrics), per-pod "
              "rate, p95 and CPU, and the metric the HPA scales on against its target. Cluster only: needs "
              "kube-state-metrics and cAdvisor (kube-prometheus-stack).",
              ["latency-budget", "lbh", "kubernetes"])
    b.datasource_variable()
    b.query_variable("namespace", "Namespace", "kube_horizontalpodautoscaler_info", "namespace",
                     multi=False, include_all=False)
    b.query_variable("hpa", "HPA", 'kube_horizontalpodautoscaler_info{namespace="$namespace"}',
                     "horizontalpodautoscaler", multi=False, include_all=False)
    b.query_variable("deployment", "Deployment", 'kube_deployment_status_replicas{namespace="$namespace"}',
                     "deployment", multi=False, include_all=False)
    b.annotations.append(alerts_annotation(', namespace="$namespace"'))
    hpa = 'namespace="$namespace", horizontalpodautoscaler="$hpa"'
    dep = 'namespace="$namespace", deployment="$deployment"'
    pods = 'namespace="$namespace", pod=~"$deployment-[a-z0-9]+-[a-z0-9]+"'
    all_cluster = "cluster"

    b.row("Replicas")
    b.add(timeseries("Replicas: desired vs current",
                     "What the HPA wants (desired), what it has (current), the deployment's available replicas, "
                     "and the HPA's bounds.",
                     [q(f"kube_horizontalpodautoscaler_status_desired_replicas{{{hpa}}}", "desired", "A"),
                      q(f"kube_horizontalpodautoscaler_status_current_replicas{{{hpa}}}", "current", "B"),
                      q(f"kube_deployment_status_replicas_available{{{dep}}}", "available", "C"),
                      q(f"kube_deployment_status_replicas_unavailable{{{dep}}}", "unavailable", "D"),
                      q(f"kube_horizontalpodautoscaler_spec_min_replicas{{{hpa}}}", "min", "E"),
                      q(f"kube_horizontalpodautoscaler_spec_max_replicas{{{hpa}}}", "max", "F")],
                     unit="short", min_=0), w=12, h=9, needs=all_cluster)
    b.add(timeseries("HPA metric vs target",
                     "The metric the HPA scales on (status) against its target (spec), per metric name.",
                     [q(f"kube_horizontalpodautoscaler_status_target_metric{{{hpa}}}",
                        "{{metric_name}} {{metric_target_type}} current", "A"),
                      q(f"kube_horizontalpodautoscaler_spec_target_metric{{{hpa}}}",
                        "{{metric_name}} {{metric_target_type}} target", "B")],
                     unit="short", min_=0), w=12, h=9, needs=all_cluster)

    b.row("Per pod")
    b.add(timeseries("Request rate per pod", "HTTP requests per second each pod serves.",
                     [q(f"sum by (pod) (rate(lbh_http_request_duration_seconds_count{{{pods}}}[$__rate_interval]))",
                        "{{pod}}")], unit="reqps", min_=0, stack=True), w=8, needs=all_cluster)
    b.add(timeseries("p95 per pod", "Each pod's p95 of lbh_http_request_duration_seconds; line at 100 ms.",
                     [q(_hq(0.95, "lbh_http_request_duration_seconds", pods, "pod"), "{{pod}}", exemplar=True)],
                     unit="s", thresholds=((None, GREEN), (P95_BUDGET, RED)), threshold_style="dashed", min_=0),
          w=8, needs=all_cluster)
    b.add(timeseries("CPU per pod", "Cores used per pod (cAdvisor) against the container's CPU request.",
                     [q(f'sum by (pod) (rate(container_cpu_usage_seconds_total{{{pods}, container!=""}}[$__rate_interval]))',
                        "{{pod}}", "A"),
                      q(f'sum by (pod) (kube_pod_container_resource_requests{{{pods}, resource="cpu"}})',
                        "request {{pod}}", "B")],
                     unit="short", min_=0), w=8, needs=all_cluster)
    return b.build_with_needs()



#: file stem -> builder; the file is dashboards/json/<stem>.json
DASHBOARDS = {"latency-budget": latency_budget, "load-run": load_run, "scaling": scaling}


def build_all() -> Dict[str, Dict[str, Any]]:
    """``{stem: dashboard JSON (a dict)}`` for every dashboard."""
    return {stem: fn() for stem, fn in DASHBOARDS.items()}


def needs(uid: str) -> Dict[Tuple[int, str], str]:
    """``{(panel id, refId): "cluster" | "http"}``: the queries a local harness run cannot feed."""
    if uid not in _NEEDS:
        build_all()
    return dict(_NEEDS.get(uid, {}))
