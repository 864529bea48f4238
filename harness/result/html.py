"""One self-contained, interactive HTML report from a run result (``harness.result/1``).

Everything is in the file: the charts are drawn in the browser by uPlot, whose script and
style are embedded (:mod:`harness.result.charts`), the data sit in the page as JSON, nothing
is fetched (no CDN, no fonts), so the report opens offline and can be attached to a CI job.
Every string from the result is escaped: a target name or an error message is data, never
markup.

What it shows, top to bottom: the verdict (thresholds, generator self-check, exit code);
*what failed*: errors by type and target (count, first and last time, sample messages),
HTTP status codes, a per-target table (count, ok/s, fail/s, failure %, p50/p95/p99/max,
bytes, as Locust's first table), bytes on the wire; the latency / service time / lag
summary; over time (hover for values, drag to zoom, double-click to reset): latency
percentiles with the budgets, intended vs achieved rate, error / timeout / dropped rates,
requests in flight, cache-hit and fallback rates, CPU and RSS, each with the abort or
interrupt marked and the last partial window drawn as partial; the HDR percentile spectrum;
the alerts the real rules fired; with a baseline, the comparison table and both runs overlaid
(the charts of ``harness compare --report``, :mod:`harness.result.compare_html`); the
scenario as run.

``harness report result.json`` (:mod:`harness.cli.report`) renders it again from a JSON
result.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import yaml

from harness.config.thresholds import format_observed
from harness.exitcodes import ExitCode
from harness.record.recorder import Recorder, value_at_percentile, window_latency
from harness.result.charts import (Budget, Marker, Series, SpectrumSeries, chart_assets, number_or_none,
                                   spectrum_chart,
                                   time_chart)
from harness.result.compare_html import comparison_table_html as _comparison_table, overlay_charts_html

__all__ = [
    "render_html",
    "write_report",
    "comparison_table_html",
    "percentile_spectrum",
    "error_rows",
    "target_rows",
    "in_flight_series",
    "CHART_IDS",
    "BASELINE_CHART_IDS",
    "BUDGET_LINES_MS",
]

#: the ``data-chart`` ids every report carries (tests check the browser drew them).
CHART_IDS: Tuple[str, ...] = (
    "latency-over-time",
    "rate-over-time",
    "errors-over-time",
    "in-flight-over-time",
    "cache-fallback-over-time",
    "cpu-over-time",
    "rss-over-time",
    "latency-spectrum",
)

#: the ``data-chart`` ids of the baseline overlay (a report with a baseline): the HDR spectrum,
#: p50/p95/p99 per window and throughput, both runs on one chart each (``compare --report``'s)
BASELINE_CHART_IDS: Tuple[str, ...] = ("baseline-spectrum", "baseline-percentiles", "baseline-throughput")

#: budgets drawn when the result carries no latency thresholds (the project's defaults)
BUDGET_LINES_MS: Tuple[Tuple[float, str], ...] = ((100.0, "p95 budget 100 ms"), (200.0, "p99 budget 200 ms"))

#: a partial last window shorter than this draws no rate (a few stragglers over a few ms
#: would read as a spike); its counts are in the tables
_MIN_RATE_SPAN_S = 0.2


def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


# ----------------------------------------------------------------------------- data


def _spectrum_of(rec: Optional[Recorder], metric: str, target: Optional[str] = None,
                 points: int = 120) -> List[Tuple[float, float]]:
    if rec is None:
        return []
    h = rec.histogram(metric, target)
    n = int(h.total_count)
    if n == 0:
        return []
    # up to the percentile where one request remains: beyond that it is all the max
    max_nines = max(1.0, math.log10(max(n, 10)))
    out: List[Tuple[float, float]] = []
    for i in range(points + 1):
        nines = max_nines * i / points
        p = 100.0 * (1.0 - 10 ** (-nines))
        out.append((p, value_at_percentile(h, p) / 1000.0))
    out.append((100.0, h.get_max_value() / 1000.0))
    return out


def _decoded(result: Mapping[str, Any]) -> Tuple[Optional[Recorder], Optional[str]]:
    """The result's histograms, or why they could not be read (the report says so)."""
    enc = result.get("histograms")
    if not enc:
        return None, None
    try:
        return Recorder.decode(enc), None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # damaged or foreign: say so, not a crash
        return None, f"{type(exc).__name__}: {exc}"


def percentile_spectrum(result: Mapping[str, Any], metric: str = "latency",
                        target: Optional[str] = None, points: int = 120) -> List[Tuple[float, float]]:
    """HDR percentile spectrum from the encoded histograms: ``[(percentile, ms)]`` with
    percentiles spaced evenly on the ``1/(1-p)`` log axis up to the last recorded value,
    then ``(100, max)``."""
    return _spectrum_of(_decoded(result)[0], metric, target, points)


_num = number_or_none


def _run_end_s(result: Mapping[str, Any]) -> Optional[float]:
    """Seconds from the run's start to its end (drain included): where the windows stop."""
    return _num(result.get("elapsed_s"))


def _measured_s(result: Mapping[str, Any]) -> Optional[float]:
    """The run's measured duration, as the runner judged it: the scenario's duration, or
    the elapsed time when the run was interrupted or aborted."""
    sc = result.get("scenario") or {}
    dur = _num(sc.get("duration"))
    elapsed = _num(result.get("elapsed_s"))
    if result.get("status") in ("interrupted", "aborted") or dur is None:
        return elapsed if dur is None or elapsed is None else min(elapsed, dur)
    return dur


def _stop_marker(result: Mapping[str, Any]) -> List[Marker]:
    """The abort or interrupt as a labelled vertical line (at the elapsed time)."""
    status = result.get("status")
    at = _run_end_s(result)
    if at is None:
        return []
    aborted = (result.get("verdict") or {}).get("aborted_by") or []
    if aborted or status == "aborted":
        return [Marker(at, "aborted: " + ", ".join(str(a) for a in aborted) if aborted else "aborted")]
    if status == "interrupted":
        return [Marker(at, "interrupted")]
    if status == "failed":
        return [Marker(at, "run failed")]
    return []


class _Windows:
    """The time series prepared for drawing: x at each window's middle (of its covered
    part, for a partial last window), per-second rates over the covered span."""

    def __init__(self, result: Mapping[str, Any]) -> None:
        ts = [w for w in (result.get("timeseries") or []) if _num(w.get("start_s")) is not None
              and _num(w.get("end_s")) is not None]
        self.ts = ts
        end = _run_end_s(result)
        dur = _num((result.get("scenario") or {}).get("duration"))
        if end is not None and dur is not None and result.get("status") == "completed":
            end = max(end, dur)  # the drain can end a hair before the schedule's last second does
        self.partial_from: Optional[float] = None
        self.span = [max(1e-9, float(w["end_s"]) - float(w["start_s"])) for w in ts]
        self.x = [(float(w["start_s"]) + float(w["end_s"])) / 2 for w in ts]
        self.partial_note = ""
        if (ts and end is not None and end > float(ts[-1]["start_s"])
                and end - float(ts[-1]["start_s"]) < 0.98 * self.span[-1]):
            last = ts[-1]
            covered = end - float(last["start_s"])
            self.span[-1] = covered
            self.x[-1] = float(last["start_s"]) + covered / 2
            self.partial_from = float(last["start_s"])
            self.partial_note = (f"The last window ({_fmt_s(last['start_s'])}–{_fmt_s(last['end_s'])} s) is partial: "
                                 f"the run ended at {end:.3f} s, so it covers {covered:.3f} s; it is drawn dashed "
                                 "on a shaded band, its rates per second of the covered part.")
            if covered < _MIN_RATE_SPAN_S:
                self.partial_note += (f" It is shorter than {_MIN_RATE_SPAN_S:g} s, so no rate is drawn for it "
                                      f"({last.get('completed', 0)} completions, counted in the tables).")

    def rate(self, counts: Sequence[Optional[float]]) -> List[Optional[float]]:
        out: List[Optional[float]] = []
        for i, c in enumerate(counts):
            if c is None or (self.partial_from is not None and i == len(counts) - 1
                             and self.span[i] < _MIN_RATE_SPAN_S):
                out.append(None)
            else:
                out.append(c / self.span[i])
        return out

    def col(self, key: str) -> List[Optional[float]]:
        return [_num(w.get(key)) for w in self.ts]


def in_flight_series(result: Mapping[str, Any]) -> Tuple[List[Optional[float]], str]:
    """Mean requests in flight per window, and how it was obtained.

    ``timeseries[i].in_flight`` when the result has it; otherwise Little's law on each
    window's coarse latency histogram (``histograms.targets.*.windows``): the sum of the
    latencies (intended start to end) of the requests that completed in the window, over
    the window's length. A request longer than a window is counted in the window it ended.
    """
    ts = result.get("timeseries") or []
    if ts and all(_num(w.get("in_flight")) is not None for w in ts):
        return [_num(w.get("in_flight")) for w in ts], "sampled by the run"
    enc = result.get("histograms") or {}
    targets = enc.get("targets") or {}
    if not ts or not targets:
        return [None] * len(ts), "not available"
    width = float(enc.get("window_s") or 1)
    busy_s: Dict[int, float] = {}
    try:
        for t in targets.values():
            for w in t.get("windows") or []:
                vals, cnts = window_latency(w)
                if len(vals):
                    busy_s[int(w["index"])] = busy_s.get(int(w["index"]), 0.0) + float((vals * cnts).sum()) / 1e6
    except (ValueError, KeyError, TypeError):
        return [None] * len(ts), "not available"
    wins = _Windows(result)
    out: List[Optional[float]] = []
    for i, w in enumerate(ts):
        idx = int(round(float(w["start_s"]) / width))
        out.append(busy_s.get(idx, 0.0) / wins.span[i])
    return out, "Little's law per window: sum of completed requests' latencies ÷ window"


def _latency_budgets(result: Mapping[str, Any]) -> List[Budget]:
    """Budget lines from the result's latency thresholds (``p(95)<100ms`` -> "p95 budget
    100 ms"); the project's defaults when it has none."""
    out: List[Budget] = []
    for th in result.get("thresholds") or []:
        metric = str(th.get("metric") or "")
        agg = str(th.get("aggregation") or "")
        value = _num(th.get("value"))
        m = re.fullmatch(r"p\((\d+(?:\.\d+)?)\)", agg)
        if value is None or not m or metric.split("{", 1)[0] != "latency":
            continue
        tags = metric[len("latency"):]
        label = f"p{m.group(1)} budget {value:g} ms" + (f" {tags}" if tags else "")
        if all(b.label != label for b in out):
            out.append(Budget(value, label))
    if not out and not result.get("thresholds"):
        out = [Budget(v, label) for v, label in BUDGET_LINES_MS]
    return out


def _failure_budgets(result: Mapping[str, Any]) -> List[Budget]:
    out = []
    for th in result.get("thresholds") or []:
        metric = str(th.get("metric") or "").split("{", 1)[0]
        value = _num(th.get("value"))
        if metric in ("failed_rate", "error_rate", "timeout_rate") and value is not None and th.get("op") in ("<", "<="):
            out.append(Budget(100.0 * value, f"{metric.replace('_', ' ')} budget {100 * value:g} %"))
    return out


def _fmt_s(v: Any) -> str:
    f = _num(v)
    return "–" if f is None else f"{f:g}"


def error_rows(result: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """Errors by target and type: ``error_details`` when the result has them, else the
    counts of ``summary.targets[*].errors`` (older results: no times, no samples)."""
    rows: List[Dict[str, Any]] = []
    details = result.get("error_details")
    if isinstance(details, list) and details:
        for d in details:
            if not isinstance(d, Mapping):
                continue
            samples = d.get("samples") or []
            rows.append({"target": str(d.get("target", "")), "type": str(d.get("type", "")),
                         "count": d.get("count"), "first_s": _num(d.get("first_s")), "last_s": _num(d.get("last_s")),
                         "samples": [str(x) for x in samples if x is not None] if isinstance(samples, list) else []})
    else:
        for target, t in ((result.get("summary") or {}).get("targets") or {}).items():
            for etype, n in ((t or {}).get("errors") or {}).items():
                rows.append({"target": str(target), "type": str(etype), "count": n, "first_s": None, "last_s": None,
                             "samples": []})
    rows.sort(key=lambda r: (-(_num(r["count"]) or 0), r["target"], r["type"]))
    return rows


def target_rows(result: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """One row per target (and ``all`` when there are several): Locust's first table."""
    summ = result.get("summary") or {}
    blocks = list((summ.get("targets") or {}).items())
    if len(blocks) > 1 and summ.get("all"):
        blocks.append(("all", summ["all"]))
    dur = _measured_s(result)
    rows = []
    for name, t in blocks:
        t = t or {}
        o = t.get("outcomes") or {}
        ok = int(o.get("ok", 0) or 0)
        failed = sum(int(o.get(k, 0) or 0) for k in ("error", "timeout", "dropped"))
        count = int(t.get("count") if t.get("count") is not None else ok + failed)
        lat = t.get("latency") or {}
        sent, recv = t.get("bytes_sent"), t.get("bytes_received")
        if name == "all" and sent is None:
            parts = [b.get("bytes_sent") for _, b in blocks[:-1]]
            sent = sum(parts) if parts and all(p is not None for p in parts) else None
            parts = [b.get("bytes_received") for _, b in blocks[:-1]]
            recv = sum(parts) if parts and all(p is not None for p in parts) else None
        rows.append({
            "target": str(name), "count": count, "ok": ok, "failed": failed,
            "ok_per_s": ok / dur if dur else None, "fail_per_s": failed / dur if dur else None,
            "failure_pct": 100.0 * failed / count if count else None,
            "p50": lat.get("p50"), "p95": lat.get("p95"), "p99": lat.get("p99"), "max": lat.get("max"),
            "bytes_sent": sent, "bytes_received": recv,
        })
    return rows


# ----------------------------------------------------------------------------- charts


def _charts(result: Mapping[str, Any], rec: Optional[Recorder]) -> Dict[str, str]:
    win = _Windows(result)
    x, pf = win.x, win.partial_from
    markers = _stop_marker(result)
    charts: Dict[str, str] = {}
    charts["latency-over-time"] = time_chart(
        "latency-over-time", "Latency percentiles per window (from intended start)", x,
        [Series(name, win.col(key)) for name, key in (("p50", "p50_ms"), ("p95", "p95_ms"), ("p99", "p99_ms"),
                                                      ("max", "max_ms"))],
        y_unit="ms", budgets=_latency_budgets(result), markers=markers, partial_from=pf)
    charts["rate-over-time"] = time_chart(
        "rate-over-time", "Intended vs achieved rate", x,
        [Series("intended", win.rate(win.col("intended")), dashed=True),
         Series("achieved (completed)", win.rate(win.col("completed"))),
         Series("ok", win.rate(win.col("ok")))],
        y_unit="req/s", markers=markers, partial_from=pf)
    tot = [sum(_num(w.get(k)) or 0 for k in ("ok", "error", "timeout", "dropped")) for w in win.ts]

    def share(keys: Sequence[str]) -> List[Optional[float]]:
        return [None if not t else 100.0 * sum(_num(w.get(k)) or 0 for k in keys) / t for w, t in zip(win.ts, tot)]

    charts["errors-over-time"] = time_chart(
        "errors-over-time", "Failed requests per window (% of requests ending in it)", x,
        [Series("failed (all)", share(("error", "timeout", "dropped"))), Series("error", share(("error",))),
         Series("timeout", share(("timeout",))), Series("dropped", share(("dropped",)))],
        y_unit="%", y_label="% of requests", budgets=_failure_budgets(result) or [Budget(1.0, "error budget 1 %")],
        markers=markers, partial_from=pf)
    inflight, how = in_flight_series(result)
    closed = bool((result.get("generator") or {}).get("closed_loop"))
    charts["in-flight-over-time"] = time_chart(
        "in-flight-over-time", "Requests in flight (virtual users busy)" if closed else "Requests in flight", x,
        [Series("in flight (mean)", inflight)], y_unit="requests", markers=markers, partial_from=pf)
    charts["in-flight-over-time"] = charts["in-flight-over-time"].replace(
        "</figure>", f'<div class="lbh-chart-hint">{_esc(how)}</div></figure>', 1)
    charts["cache-fallback-over-time"] = time_chart(
        "cache-fallback-over-time", "Cache-hit and fallback rates per window", x,
        [Series(name, [None if not w.get("ok") else 100.0 * (_num(w.get(k)) or 0) / float(w["ok"]) for w in win.ts])
         for name, k in (("cache hit", "cache_hit"), ("fallback", "fallback"))],
        y_unit="%", y_label="% of ok requests", markers=markers, partial_from=pf)
    samples = [s for s in ((result.get("resources") or {}).get("samples") or []) if _num(s.get("t_s")) is not None]
    samples.sort(key=lambda s: float(s["t_s"]))
    st = [float(s["t_s"]) for s in samples]
    charts["cpu-over-time"] = time_chart(
        "cpu-over-time", "CPU over time (harness process incl. in-process target, and system)", st,
        [Series("process CPU %", [s.get("process_cpu_percent") for s in samples]),
         Series("system CPU %", [s.get("system_cpu_percent") for s in samples])],
        y_unit="%", y_label="% (100 = one core for the process)", markers=markers)
    charts["rss-over-time"] = time_chart(
        "rss-over-time", "Process RSS over time", st,
        [Series("RSS MiB", [None if _num(s.get("process_rss_bytes")) is None else float(s["process_rss_bytes"]) / 2**20
                            for s in samples])],
        y_unit="MiB", y_min=None, markers=markers)
    spec = []
    for metric, label in (("latency", "latency"), ("service_time", "service time")):
        pts = _spectrum_of(rec, metric)
        if pts:
            spec.append(SpectrumSeries(label, [p for p, _ in pts], [v for _, v in pts]))
    charts["latency-spectrum"] = spectrum_chart(
        "latency-spectrum", "Latency distribution: HDR percentile spectrum (log axis)", spec,
        y_unit="ms", budgets=_latency_budgets(result))
    if win.partial_note:
        for cid in ("latency-over-time", "rate-over-time"):
            charts[cid] = charts[cid].replace("</figure>", f'<div class="lbh-chart-hint">{_esc(win.partial_note)}'
                                                           "</div></figure>", 1)
    return charts


# ----------------------------------------------------------------------------- HTML


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:6px 0} td,th{border:1px solid #ddd;padding:3px 8px;text-align:right;vertical-align:top}
th{background:#f5f5f5} td.l,th.l{text-align:left}
.pass{color:#060;font-weight:600} .fail{color:#b00;font-weight:600} .warn{color:#a60;font-weight:600}
.verdict{font-size:20px;padding:8px 12px;display:inline-block;border-radius:4px;margin:8px 0}
.verdict.pass{background:#e6f4e6} .verdict.fail{background:#fbe5e5} .verdict.warn{background:#fff3dc}
.grid{display:flex;flex-wrap:wrap;gap:16px}
pre{background:#f7f7f7;padding:8px;overflow:auto;font-size:12px}
.muted{color:#777} .sample{font:12px ui-monospace,monospace;white-space:pre-wrap;word-break:break-all;
 background:#f7f7f7;margin:2px 0;padding:2px 4px;max-width:720px;text-align:left}
.code2{color:#060} .code3{color:#06c} .code4{color:#a60} .code5{color:#b00}
"""

_VERDICT_WORDS: Dict[ExitCode, Tuple[str, str]] = {
    ExitCode.OK: ("PASSED", "pass"),
    ExitCode.INVALID_RUN: ("INVALID RUN (the generator was the limit)", "warn"),
    ExitCode.THRESHOLDS_FAILED: ("THRESHOLDS FAILED", "fail"),
    ExitCode.INTERRUPTED: ("INTERRUPTED", "warn"),
}


def _verdict_word(code: int) -> Tuple[str, str]:
    return _VERDICT_WORDS.get(code, (f"FAILED ({code})", "fail"))


def _ms(v: Any) -> str:
    f = _num(v)
    return "–" if f is None else (f"{f:.2f}" if f < 100 else f"{f:.1f}")


def _pct(v: Any) -> str:
    f = _num(v)
    return "–" if f is None else f"{100 * f:.2f} %"


def _rate(v: Any) -> str:
    f = _num(v)
    return "–" if f is None else (f"{f:.1f}" if f < 1000 else f"{f:,.0f}")


def _bytes(v: Any) -> str:
    f = _num(v)
    if f is None:
        return "–"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(f) >= size:
            return f"{f / size:.2f} {unit}"
    return f"{f:.0f} B"


class _Raw(str):
    """Already-escaped HTML for a table cell."""


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]], left: int = 1, table_id: Optional[str] = None) -> str:
    tid = f' id="{_esc(table_id)}"' if table_id else ""
    out = [f"<table{tid}><tr>" + "".join(f'<th class="{"l" if i < left else ""}">{_esc(h)}</th>'
                                         for i, h in enumerate(head)) + "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(
            f'<td class="{"l" if i < left else ""}">{c if isinstance(c, _Raw) else _esc(c)}</td>'
            for i, c in enumerate(row)) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _errors_section(result: Mapping[str, Any]) -> str:
    rows = error_rows(result)
    out = ['<h2 id="errors">What failed: errors by type and target</h2>']
    if not rows:
        summ = (result.get("summary") or {}).get("all") or {}
        o = summ.get("outcomes") or {}
        extra = ", ".join(f"{o[k]} {k}" for k in ("timeout", "dropped") if o.get(k))
        out.append(f"<p>No request raised an error{' (but ' + _esc(extra) + ')' if extra else ''}.</p>")
        return "".join(out)
    has_times = any(r["first_s"] is not None for r in rows)
    table_rows = []
    for r in rows:
        samples = _Raw("".join(f'<div class="sample">{_esc(s)}</div>' for s in r["samples"][:3])
                       or '<span class="muted">–</span>')
        table_rows.append((r["target"], _Raw(f'<b class="fail">{_esc(r["type"])}</b>'), r["count"],
                           _fmt_s(r["first_s"]), _fmt_s(r["last_s"]), samples))
    out.append(_table(("target", "error type", "count", "first (s)", "last (s)", "sample messages / bodies"),
                      table_rows, 2, "error-table"))
    if not has_times:
        out.append('<p class="muted">This result predates per-error details: counts only (no times or samples).</p>')
    return "".join(out)


def _status_section(result: Mapping[str, Any]) -> str:
    targets = (result.get("summary") or {}).get("targets") or {}
    rows = []
    for name, t in targets.items():
        codes = (t or {}).get("status_codes") or {}
        total = sum(int(n) for n in codes.values() if _num(n) is not None)
        for code, n in sorted(codes.items(), key=lambda kv: str(kv[0])):
            klass = f"code{str(code)[:1]}" if str(code)[:1] in "2345" else ""
            rows.append((name, _Raw(f'<span class="{klass}">{_esc(code)}</span>'), n,
                         f"{100.0 * int(n) / total:.2f} %" if total else "–"))
    if not rows:
        return ""
    return '<h2 id="status-codes">HTTP status codes</h2>' + _table(("target", "status", "responses", "share"), rows,
                                                                   2, "status-table")


def _targets_section(result: Mapping[str, Any]) -> str:
    rows = target_rows(result)
    dur = _measured_s(result)
    body = [(r["target"], r["count"], _rate(r["ok_per_s"]), _rate(r["fail_per_s"]),
             "–" if r["failure_pct"] is None else f"{r['failure_pct']:.2f} %",
             _ms(r["p50"]), _ms(r["p95"]), _ms(r["p99"]), _ms(r["max"]),
             _bytes(r["bytes_sent"]), _bytes(r["bytes_received"])) for r in rows]
    out = ['<h2 id="targets">Per target</h2>',
           _table(("target", "requests", "ok/s", "fail/s", "failure %", "p50 ms", "p95 ms", "p99 ms", "max ms",
                   "bytes sent", "bytes received"), body, 1, "target-table"),
           f'<p class="muted">Rates over the measured {_fmt_s(dur)} s; failures are errors, timeouts and dropped '
           "requests; percentiles of latency from the intended start; bytes are the HTTP client's own "
           "(head and body), – where the target is not HTTP.</p>"]
    net = result.get("network")
    if isinstance(net, Mapping):
        if net.get("source") == "interface":
            ifs = net.get("interfaces") or {}
            out.append('<h2 id="network">Bytes on the wire (network interfaces, over the run)</h2>' + _table(
                ("interface", "bytes sent", "bytes received"),
                [("all", _bytes(net.get("bytes_sent")), _bytes(net.get("bytes_received")))]
                + [(name, _bytes((v or {}).get("bytes_sent")), _bytes((v or {}).get("bytes_received")))
                   for name, v in sorted(ifs.items())], 1, "network-table"))
        else:
            out.append('<h2 id="network">Bytes on the wire</h2><p class="muted">Interface counters were not '
                       f"available ({_esc(net.get('source'))}).</p>")
    return "".join(out)


def render_html(result: Mapping[str, Any], *, title: Optional[str] = None,
                comparison: Optional[Mapping[str, Any]] = None,
                baseline: Optional[Mapping[str, Any]] = None) -> str:
    """The whole report as one HTML string (no external resources).  ``comparison``: a
    :func:`harness.result.compare.compare` result to include as a section; ``baseline``:
    the result it compared with, drawn overlaid on this run as ``harness compare --report``
    draws them (charts :data:`BASELINE_CHART_IDS`)."""
    sc = result.get("scenario") or {}
    v = result.get("verdict") or {}
    g = result.get("generator") or {}
    try:
        code = int(v.get("exit_code", ExitCode.ERROR))
    except (TypeError, ValueError):
        code = int(ExitCode.ERROR)
    word, cls = _verdict_word(code)
    title = title or f"{sc.get('name', 'run')} — {result.get('run_id', '')}"
    body: List[str] = [
        f"<h1>{_esc(title)}</h1>",
        f'<div class="muted">scenario <b>{_esc(sc.get("name"))}</b> · target <b>{_esc(sc.get("target"))}</b> · '
        f'status {_esc(result.get("status"))} · started {_esc(result.get("started_at"))} · elapsed '
        f'{_esc(result.get("elapsed_s"))} s · schema {_esc(result.get("schema"))}</div>',
    ]
    if sc.get("description"):
        body.append(f"<p>{_esc(sc['description'])}</p>")
    body.append(f'<div class="verdict {cls}" id="verdict">verdict: {_esc(word)} (exit {code})</div>')

    # verdict table
    rows = []
    for th in result.get("thresholds") or []:
        obs = ("no data" if _num(th.get("observed")) is None
               else format_observed(str(th.get("metric")), th.get("aggregation", ""), float(th["observed"])))
        mark = _Raw('<span class="pass">PASS</span>' if th.get("ok") else '<span class="fail">FAIL</span>')
        rows.append((th.get("metric"), th.get("expression"), obs, mark))
    cpu_mean = _num(g.get("cpu_percent_mean")) or 0.0
    rows.append(("generator", f"own lateness p99 ≤ {g.get('lag_bound_ms', '?')} ms, CPU not saturated",
                 f"own lateness p99 {_ms(g.get('schedule_lag_p99_ms'))} ms, CPU {cpu_mean:.0f} % of "
                 f"{g.get('cpu_count', '?')} core(s)",
                 _Raw('<span class="pass">VALID</span>' if g.get("valid", True) else '<span class="warn">INVALID</span>')))
    body.append('<h2 id="verdict-table">Verdict</h2>' + _table(("metric", "threshold", "observed", "result"), rows, 2))
    for reason in g.get("reasons") or []:
        body.append(f'<p class="warn">invalid: {_esc(reason)}</p>')
    if v.get("aborted_by"):
        body.append(f'<p class="fail">aborted by: {_esc(", ".join(str(a) for a in v["aborted_by"]))} '
                    f'at {_fmt_s(result.get("elapsed_s"))} s</p>')
    elif result.get("status") == "interrupted":
        body.append(f'<p class="warn">interrupted at {_fmt_s(result.get("elapsed_s"))} s</p>')

    # what failed, per target, bytes
    body.append(_errors_section(result))
    body.append(_status_section(result))
    body.append(_targets_section(result))

    # latency / service time / lag summary
    summ = result.get("summary") or {}
    blocks = list((summ.get("targets") or {}).items())
    if len(blocks) > 1 and summ.get("all"):
        blocks.append(("all", summ["all"]))
    srows = []
    for name, t in blocks:
        t = t or {}
        o = t.get("outcomes") or {}
        for metric in ("latency", "service_time", "lag"):
            s = t.get(metric) or {}
            label = "start lag" if metric == "lag" else metric.replace("_", " ")
            srows.append((name if metric == "latency" else "", label, s.get("count"),
                          *(_ms(s.get(k)) for k in ("mean", "p50", "p90", "p95", "p99", "p99.9", "max"))))
        srows.append(("", _Raw(_esc(f"ok {o.get('ok', 0)} · error {o.get('error', 0)} · timeout {o.get('timeout', 0)} · "
                                    f"dropped {o.get('dropped', 0)} · error rate {_pct(t.get('error_rate'))} · timeout "
                                    f"rate {_pct(t.get('timeout_rate'))} · cache hit {_pct(t.get('cache_hit_rate'))} · "
                                    f"fallback {_pct(t.get('fallback_rate'))}")), "", "", "", "", "", "", "", ""))
    body.append('<h2 id="summary">Latency, service time and start lag (ms)</h2>' + _table(
        ("target", "histogram", "count", "mean", "p50", "p90", "p95", "p99", "p99.9", "max"), srows, 2))

    rec, rec_error = _decoded(result)
    charts = _charts(result, rec)
    body.append('<h2 id="over-time">Over time</h2><p class="muted">Hover a chart for values; drag to zoom in, '
                'double-click to zoom out; click a legend entry to hide its line.</p><div class="grid">')
    body.extend(charts[cid] for cid in CHART_IDS[:-1])
    body.append('</div><h2 id="distribution">Latency distribution</h2>')
    if rec_error:
        body.append(f'<p class="warn">The histograms in this result could not be read ({_esc(rec_error)}).</p>')
    body.append(f'<div class="grid">{charts["latency-spectrum"]}</div>')
    body.append('<p class="muted">Latency is measured from each request\'s intended start (open loop), so stalls '
                "are not hidden; service time is from the actual start. Percentiles are exact HDR histogram values "
                "(3 significant digits); per-window percentiles are ≤ 0.8 % coarse.</p>")

    # alerts
    stack = result.get("stack")
    body.append('<h2 id="alerts">Alerts that fired</h2>')
    if not stack:
        body.append('<p class="muted">No alert stack ran with this run (use <code>--stack local</code> to have '
                    "the real Prometheus rules evaluate it).</p>")
    else:
        fired = stack.get("alerts_fired") or []
        if stack.get("error"):
            body.append(f'<p class="warn">could not query Prometheus: {_esc(stack["error"])}</p>')
        if fired:
            body.append(_table(("alert", "severity", "labels", "firing for (s)", "still firing at end"),
                               [(a.get("alertname"), a.get("severity") or "–",
                                 ", ".join(f"{k}={val}" for k, val in sorted((a.get("labels") or {}).items())),
                                 f"{_num(a.get('firing_s')) or 0:.0f}", "yes" if a.get("still_firing_at_end") else "no")
                                for a in fired]))
        elif "alerts_fired" in stack:
            body.append("<p>No alert fired.</p>")

    if comparison is not None:
        body.append('<h2 id="comparison">Comparison with the baseline</h2>' + comparison_table_html(comparison))
    if baseline is not None:
        body.append(overlay_charts_html(baseline, result, chart_ids=BASELINE_CHART_IDS,
                                        heading_id="baseline-overlay"))

    # scenario as run
    try:
        sc_text = yaml.safe_dump(dict(sc), sort_keys=False)
    except yaml.YAMLError:  # a value YAML cannot represent (a numpy scalar in a live result)
        sc_text = json.dumps(sc, indent=1, default=str)
    body.append(f'<h2 id="scenario">Scenario as run</h2><pre>{_esc(sc_text)}</pre>')
    sources = result.get("scenario_sources") or {}
    if sources:
        body.append("<details><summary>where each value came from</summary>" + _table(
            ("field", "source"), sorted((str(k), str(val)) for k, val in sources.items())) + "</details>")
    env = result.get("environment") or {}
    if env:
        body.append("<details><summary>environment</summary>" + _table(
            ("key", "value"), sorted((str(k), str(val)) for k, val in env.items())) + "</details>")
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<title>{_esc(title)}</title><style>{_CSS}</style>{chart_assets()}</head><body>"
            + "\n".join(b for b in body if b) + "</body></html>\n")


def comparison_table_html(comparison: Mapping[str, Any]) -> str:
    """The comparison section: the compare page's table, with intervals (:mod:`harness.result.compare_html`)."""
    return _comparison_table(comparison)


def _fmt_val(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def write_report(result: Mapping[str, Any], path: str | os.PathLike[str], **kw: Any) -> Path:
    """Render and write atomically; returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(render_html(result, **kw), encoding="utf-8")
    os.replace(tmp, p)
    return p
