"""One self-contained HTML report from a run result (``harness.result/1``).

Everything is in the file: the charts are inline SVG drawn here in Python, the styles are
inline, nothing is fetched (no CDN, no fonts, no scripts from elsewhere), so the report
opens offline and can be attached to a CI job as it is.

What it shows: the verdict table (thresholds, generator self-check, exit code), latency
percentiles over time with the 100/200 ms budget lines, intended vs achieved rate, error /
timeout / dropped rates, cache-hit and fallback rates, process CPU and RSS over time, the
full latency distribution (HDR percentile spectrum on a log axis) for latency and service
time, the alerts the real rules fired (when the run had the Prometheus stack), and the
scenario as run with where each value came from.

``harness report result.json`` (:mod:`harness.cli.report`) renders it again from a JSON
result.
"""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import yaml

from harness.exitcodes import ExitCode
from harness.record.recorder import Recorder, value_at_percentile

__all__ = [
    "render_html",
    "write_report",
    "comparison_table_html",
    "percentile_spectrum",
    "line_chart",
    "CHART_IDS",
]

#: the ``data-chart`` ids every report carries (tests check the browser rendered them).
CHART_IDS: Tuple[str, ...] = (
    "latency-over-time",
    "rate-over-time",
    "errors-over-time",
    "cache-fallback-over-time",
    "cpu-over-time",
    "rss-over-time",
    "latency-spectrum",
)

_CAPTIONS = {
    "latency-over-time": "Latency percentiles over time (per window, from intended start)",
    "rate-over-time": "Intended vs achieved rate",
    "errors-over-time": "Error, timeout and dropped rates",
    "cache-fallback-over-time": "Cache-hit and fallback rates",
    "cpu-over-time": "CPU over time (harness process incl. in-process target, and system)",
    "rss-over-time": "Process RSS over time",
    "latency-spectrum": "HDR percentile spectrum: latency and service time",
}

BUDGET_LINES_MS: Tuple[Tuple[float, str], ...] = ((100.0, "p95 budget 100 ms"), (200.0, "p99 budget 200 ms"))
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#7f7f7f")
_W, _H = 640, 280
_ML, _MR, _MT, _MB = 64, 16, 30, 44


# ----------------------------------------------------------------------------- SVG charts


def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _nice_ticks(lo: float, hi: float, n: int = 5) -> List[float]:
    if not math.isfinite(lo) or not math.isfinite(hi):
        return []
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    v = start
    while v <= hi + step * 1e-9:
        if v >= lo - step * 1e-9:
            ticks.append(round(v, 10))
        v += step
    return ticks


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e9:
        return f"{v / 1e9:g}G"
    if a >= 1e6:
        return f"{v / 1e6:g}M"
    if a >= 1e4:
        return f"{v / 1e3:g}k"
    if a >= 1:
        return f"{v:.4g}"
    return f"{v:.3g}"


def line_chart(
    chart_id: str,
    title: str,
    series: Sequence[Tuple[str, Sequence[float], Sequence[Optional[float]]]],
    *,
    x_label: str = "time since start (s)",
    y_label: str = "",
    hlines: Sequence[Tuple[float, str]] = (),
    x_log: bool = False,
    x_tick_labels: Optional[Sequence[Tuple[float, str]]] = None,
    y_min: Optional[float] = 0.0,
    y_max: Optional[float] = None,
) -> str:
    """An inline ``<svg class="chart" data-chart=chart_id>``: one polyline per series
    (``None`` values break the line), optional horizontal reference lines, axes, legend.
    With ``x_log`` the x values must be > 0 and the axis is log10."""
    tx = (lambda v: math.log10(v)) if x_log else (lambda v: float(v))
    pts_all = [(tx(x), y) for _, xs, ys in series for x, y in zip(xs, ys)
               if y is not None and (not x_log or x > 0) and math.isfinite(y)]
    inner_w, inner_h = _W - _ML - _MR, _H - _MT - _MB
    parts: List[str] = [
        f'<svg class="chart" data-chart="{_esc(chart_id)}" viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" '
        f'role="img" aria-label="{_esc(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{_esc(title)}</title>",
        f'<rect x="{_ML}" y="{_MT}" width="{inner_w}" height="{inner_h}" fill="#fff" stroke="#ccc"/>',
    ]
    if not pts_all:
        parts.append(f'<text x="{_W / 2}" y="{_H / 2}" text-anchor="middle" class="nodata">no data</text></svg>')
        return "".join(parts)
    x0 = min(p[0] for p in pts_all)
    x1 = max(p[0] for p in pts_all)
    if x1 <= x0:
        x1 = x0 + 1.0
    ys = [p[1] for p in pts_all] + [h for h, _ in hlines]
    lo = min(ys) if y_min is None else min(y_min, min(ys))
    hi = max(ys) if y_max is None else y_max
    if hi <= lo:
        hi = lo + 1.0
    hi += (hi - lo) * 0.05

    def sx(v: float) -> float:
        return _ML + (v - x0) / (x1 - x0) * inner_w

    def sy(v: float) -> float:
        return _MT + inner_h - (min(max(v, lo), hi) - lo) / (hi - lo) * inner_h

    # grid and ticks
    for t in _nice_ticks(lo, hi):
        y = sy(t)
        parts.append(f'<line x1="{_ML}" x2="{_ML + inner_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
                     f'<text x="{_ML - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_fmt(t)}</text>')
    if x_tick_labels is not None:
        xt = [(tx(v), lab) for v, lab in x_tick_labels if (not x_log or v > 0) and x0 <= tx(v) <= x1]
    elif x_log:
        xt = [(float(e), _fmt(10 ** e)) for e in range(math.ceil(x0), math.floor(x1) + 1)]
    else:
        xt = [(t, _fmt(t)) for t in _nice_ticks(x0, x1, 8)]
    for v, lab in xt:
        x = sx(v)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{_MT}" y2="{_MT + inner_h}" stroke="#f2f2f2"/>'
                     f'<text x="{x:.1f}" y="{_MT + inner_h + 16}" text-anchor="middle" class="tick">{_esc(lab)}</text>')
    parts.append(f'<text x="{_ML + inner_w / 2}" y="{_H - 6}" text-anchor="middle" class="axis">{_esc(x_label)}</text>')
    parts.append(f'<text transform="translate(14,{_MT + inner_h / 2}) rotate(-90)" text-anchor="middle" '
                 f'class="axis">{_esc(y_label)}</text>')
    for h, label in hlines:
        if lo <= h <= hi:
            y = sy(h)
            parts.append(f'<line class="budget" x1="{_ML}" x2="{_ML + inner_w}" y1="{y:.1f}" y2="{y:.1f}" '
                         f'stroke="#b00" stroke-dasharray="6 4"/>'
                         f'<text x="{_ML + inner_w - 4}" y="{y - 4:.1f}" text-anchor="end" class="budget-label">'
                         f'{_esc(label)}</text>')
    # series
    for i, (name, xs, ys_) in enumerate(series):
        color = _COLORS[i % len(_COLORS)]
        segs: List[List[str]] = [[]]
        for x, y in zip(xs, ys_):
            if y is None or (x_log and x <= 0) or not math.isfinite(y):
                if segs[-1]:
                    segs.append([])
                continue
            segs[-1].append(f"{sx(tx(x)):.1f},{sy(y):.1f}")
        for seg in segs:
            if len(seg) == 1:
                cx, cy = seg[0].split(",")
                parts.append(f'<circle class="series" data-series="{_esc(name)}" cx="{cx}" cy="{cy}" r="2.5" '
                             f'fill="{color}"/>')
            elif seg:
                parts.append(f'<polyline class="series" data-series="{_esc(name)}" fill="none" stroke="{color}" '
                             f'stroke-width="1.8" points="{" ".join(seg)}"/>')
        lx = _ML + i * 130
        parts.append(f'<rect x="{lx}" y="8" width="12" height="4" fill="{color}"/>'
                     f'<text x="{lx + 16}" y="14" class="legend">{_esc(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


# ----------------------------------------------------------------------------- data


def percentile_spectrum(result: Mapping[str, Any], metric: str = "latency",
                        target: Optional[str] = None, points: int = 120) -> List[Tuple[float, float]]:
    """HDR percentile spectrum from the encoded histograms: ``[(percentile, ms)]`` with
    percentiles spaced evenly on the ``1/(1-p)`` log axis up to the last recorded value."""
    enc = result.get("histograms")
    if not enc:
        return []
    rec = Recorder.decode(enc)
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


def _series(ts: Sequence[Mapping[str, Any]], key: str) -> Tuple[List[float], List[Optional[float]]]:
    return [(w["start_s"] + w["end_s"]) / 2 for w in ts], [w.get(key) for w in ts]


def _ratio(a: float, b: float) -> Optional[float]:
    return a / b if b else None


def _charts(result: Mapping[str, Any]) -> Dict[str, str]:
    ts = result.get("timeseries") or []
    x = [(w["start_s"] + w["end_s"]) / 2 for w in ts]
    charts: Dict[str, str] = {}
    charts["latency-over-time"] = line_chart(
        "latency-over-time", "Latency percentiles per window (from intended start)",
        [(name, *_series(ts, key)) for name, key in (("p50", "p50_ms"), ("p95", "p95_ms"), ("p99", "p99_ms"),
                                                     ("max", "max_ms"))],
        y_label="ms", hlines=BUDGET_LINES_MS)
    width = [max(1e-9, w["end_s"] - w["start_s"]) for w in ts]
    charts["rate-over-time"] = line_chart(
        "rate-over-time", "Intended vs achieved rate",
        [("intended", x, [w.get("intended", 0) / d for w, d in zip(ts, width)]),
         ("achieved (completed)", x, [w.get("rate") for w in ts])],
        y_label="requests/s")
    tot = [w.get("ok", 0) + w.get("error", 0) + w.get("timeout", 0) + w.get("dropped", 0) for w in ts]
    charts["errors-over-time"] = line_chart(
        "errors-over-time", "Error, timeout and dropped rates per window",
        [(k, x, [None if not t else 100.0 * w.get(k, 0) / t for w, t in zip(ts, tot)])
         for k in ("error", "timeout", "dropped")],
        y_label="% of requests", hlines=((1.0, "error budget 1 %"),))
    charts["cache-fallback-over-time"] = line_chart(
        "cache-fallback-over-time", "Cache-hit and fallback rates per window",
        [(name, x, [None if not w.get("ok") else 100.0 * w.get(k, 0) / w["ok"] for w in ts])
         for name, k in (("cache hit", "cache_hit"), ("fallback", "fallback"))],
        y_label="% of ok requests", y_max=100.0)
    samples = (result.get("resources") or {}).get("samples") or []
    st = [s.get("t_s", 0.0) for s in samples]
    charts["cpu-over-time"] = line_chart(
        "cpu-over-time", "CPU over time",
        [("process CPU %", st, [s.get("process_cpu_percent") for s in samples]),
         ("system CPU %", st, [s.get("system_cpu_percent") for s in samples])],
        y_label="% (100 = one core for the process)")
    charts["rss-over-time"] = line_chart(
        "rss-over-time", "Process RSS over time",
        [("RSS MiB", st, [None if s.get("process_rss_bytes") is None else s["process_rss_bytes"] / 2**20
                          for s in samples])],
        y_label="MiB", y_min=None)
    spec_series = []
    for metric, label in (("latency", "latency"), ("service_time", "service time")):
        spec = percentile_spectrum(result, metric)
        if spec:
            # x: 1/(1-p) so 90 % -> 10, 99 % -> 100 ...; the final max point is placed one decade on
            xs = [1.0 / (1.0 - p / 100.0) if p < 100.0 else None for p, _ in spec]
            last = max((v for v in xs if v is not None), default=1.0)
            xs = [v if v is not None else last * 10 for v in xs]
            spec_series.append((label, xs, [v for _, v in spec]))
    ticks = [(1.0, "0%"), (2.0, "50%"), (10.0, "90%"), (100.0, "99%"), (1e3, "99.9%"), (1e4, "99.99%"),
             (1e5, "99.999%"), (1e6, "99.9999%")]
    charts["latency-spectrum"] = line_chart(
        "latency-spectrum", "Latency distribution: HDR percentile spectrum (log axis)", spec_series,
        x_label="percentile (log scale of 1/(1-p); last point: max)", y_label="ms", hlines=BUDGET_LINES_MS,
        x_log=True, x_tick_labels=ticks)
    return charts


# ----------------------------------------------------------------------------- HTML


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1340px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:6px 0} td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f5f5f5} td.l,th.l{text-align:left}
.pass{color:#060;font-weight:600} .fail{color:#b00;font-weight:600} .warn{color:#a60;font-weight:600}
.verdict{font-size:20px;padding:8px 12px;display:inline-block;border-radius:4px;margin:8px 0}
.verdict.pass{background:#e6f4e6} .verdict.fail{background:#fbe5e5} .verdict.warn{background:#fff3dc}
.grid{display:flex;flex-wrap:wrap;gap:12px} figure{margin:0} figcaption{font-weight:600;margin:4px 0}
svg.chart text{font:11px system-ui,sans-serif;fill:#444} svg.chart .legend{fill:#222}
svg.chart .budget-label{fill:#b00} pre{background:#f7f7f7;padding:8px;overflow:auto;font-size:12px}
.muted{color:#777}
"""

# Runs in the browser only to record what was laid out (the tests read it with --dump-dom);
# the report needs no script to display.
_JS = """
document.addEventListener('DOMContentLoaded',function(){
 var n=0,lines=0;document.querySelectorAll('svg.chart').forEach(function(s){
  var r=s.getBoundingClientRect(),k=s.querySelectorAll('.series').length;
  if(r.width>0&&r.height>0&&k>0){n++;s.setAttribute('data-rendered','1');}lines+=k;});
 document.body.setAttribute('data-charts-rendered',String(n));
 document.body.setAttribute('data-series-rendered',String(lines));});
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
    return "–" if v is None else (f"{v:.2f}" if v < 100 else f"{v:.1f}")


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * v:.2f} %"


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]], left: int = 1) -> str:
    out = ["<table><tr>" + "".join(f'<th class="{"l" if i < left else ""}">{_esc(h)}</th>'
                                   for i, h in enumerate(head)) + "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(
            f'<td class="{"l" if i < left else ""}">{c if isinstance(c, _Raw) else _esc(c)}</td>'
            for i, c in enumerate(row)) + "</tr>")
    out.append("</table>")
    return "".join(out)


class _Raw(str):
    """Already-escaped HTML for a table cell."""


def render_html(result: Mapping[str, Any], *, title: Optional[str] = None,
                comparison: Optional[Mapping[str, Any]] = None) -> str:
    """The whole report as one HTML string (no external resources).  ``comparison``: a
    :func:`harness.result.compare.compare` result to include as a section."""
    sc = result.get("scenario") or {}
    v = result.get("verdict") or {}
    g = result.get("generator") or {}
    code = int(v.get("exit_code", ExitCode.ERROR))
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
        obs = "no data" if th.get("observed") is None else f"{th['observed']:.4g}"
        mark = _Raw('<span class="pass">PASS</span>' if th.get("ok") else '<span class="fail">FAIL</span>')
        rows.append((th.get("metric"), th.get("expression"), obs, mark))
    rows.append(("generator", f"schedule lag p99 ≤ {g.get('lag_bound_ms', '?')} ms, CPU not saturated",
                 f"lag p99 {_ms(g.get('schedule_lag_p99_ms'))} ms, CPU {g.get('cpu_percent_mean', 0):.0f} % of "
                 f"{g.get('cpu_count', '?')} core(s)",
                 _Raw('<span class="pass">VALID</span>' if g.get("valid", True) else '<span class="warn">INVALID</span>')))
    body.append('<h2 id="verdict-table">Verdict</h2>' + _table(("metric", "threshold", "observed", "result"), rows, 2))
    for reason in g.get("reasons") or []:
        body.append(f'<p class="warn">invalid: {_esc(reason)}</p>')
    if v.get("aborted_by"):
        body.append(f'<p class="fail">aborted by: {_esc(", ".join(v["aborted_by"]))}</p>')

    # per-target summary
    summ = result.get("summary") or {}
    blocks = list((summ.get("targets") or {}).items())
    if len(blocks) > 1 and summ.get("all"):
        blocks.append(("all", summ["all"]))
    srows = []
    for name, t in blocks:
        o = t.get("outcomes", {})
        for metric in ("latency", "service_time", "lag"):
            s = t.get(metric) or {}
            srows.append((name if metric == "latency" else "", metric.replace("_", " "), s.get("count"),
                          *(_ms(s.get(k)) for k in ("mean", "p50", "p90", "p95", "p99", "p99.9", "max"))))
        srows.append(("", _Raw(f"ok {o.get('ok', 0)} · error {o.get('error', 0)} · timeout {o.get('timeout', 0)} · "
                               f"dropped {o.get('dropped', 0)} · error rate {_pct(t.get('error_rate'))} · timeout rate "
                               f"{_pct(t.get('timeout_rate'))} · cache hit {_pct(t.get('cache_hit_rate'))} · "
                               f"fallback {_pct(t.get('fallback_rate'))}"), "", "", "", "", "", "", "", ""))
    body.append("<h2>Summary (ms)</h2>" + _table(
        ("target", "histogram", "count", "mean", "p50", "p90", "p95", "p99", "p99.9", "max"), srows, 2))

    charts = _charts(result)
    body.append("<h2>Over time</h2><div class=\"grid\">")
    for cid in CHART_IDS[:-1]:
        body.append(f"<figure><figcaption>{_esc(_CAPTIONS[cid])}</figcaption>{charts[cid]}</figure>")
    body.append("</div><h2>Latency distribution</h2><div class=\"grid\">"
                f"<figure><figcaption>{_esc(_CAPTIONS['latency-spectrum'])}</figcaption>"
                f"{charts['latency-spectrum']}</figure></div>")
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
                                 f"{a.get('firing_s', 0):.0f}", "yes" if a.get("still_firing_at_end") else "no")
                                for a in fired]))
        elif "alerts_fired" in stack:
            body.append("<p>No alert fired.</p>")

    if comparison is not None:
        body.append('<h2 id="comparison">Comparison with the baseline</h2>' + comparison_table_html(comparison))

    # scenario as run
    try:
        sc_text = yaml.safe_dump(dict(sc), sort_keys=False)
    except yaml.YAMLError:  # a value YAML cannot represent (a numpy scalar in a live result)
        sc_text = json.dumps(sc, indent=1, default=str)
    body.append(f'<h2 id="scenario">Scenario as run</h2><pre>{_esc(sc_text)}</pre>')
    sources = result.get("scenario_sources") or {}
    if sources:
        body.append("<details><summary>where each value came from</summary>" + _table(
            ("field", "source"), sorted(sources.items())) + "</details>")
    env = result.get("environment") or {}
    if env:
        body.append("<details><summary>environment</summary>" + _table(
            ("key", "value"), sorted((k, str(val)) for k, val in env.items())) + "</details>")
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>"
            + "\n".join(body) + f"<script>{_JS}</script></body></html>\n")


def comparison_table_html(comparison: Mapping[str, Any]) -> str:
    """The rows of a :func:`harness.result.compare.compare` result as an HTML table."""
    rows = []
    for r in comparison.get("metrics", []):
        klass = {"improved": "pass", "regressed": "fail"}.get(r.get("status"), "")
        change = r.get("change_percent")
        rows.append((r.get("metric"), _fmt_val(r.get("base")), _fmt_val(r.get("new")),
                     "–" if change is None else f"{change:+.1f} %",
                     _Raw(f'<span class="{klass}">{_esc(r.get("status"))}</span>'), r.get("note") or ""))
    gate = comparison.get("gate") or {}
    head = (f'<p>gate: <b class="{"pass" if gate.get("passed", True) else "fail"}">'
            f'{"passed" if gate.get("passed", True) else "failed"}</b> ({_esc(gate.get("reason", ""))})</p>')
    return head + _table(("metric", "baseline", "new", "change", "status", "note"), rows, 1)


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
