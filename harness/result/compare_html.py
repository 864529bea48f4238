"""HTML pages of two runs and of many runs: ``harness compare A B --report`` and
``harness trend RESULTS… --report``.

Why a page of its own and not the one-run report with a second series: a comparison is
read for its verdicts, so the page opens with the gate and one row per metric carrying the
interval the verdict came from (a point change of +12 % means nothing without it), then
draws both runs overlaid (baseline blue and solid, new run red and dashed) on the same axes: the
HDR percentile spectrum (where in the distribution they part), latency percentiles over
time (whether a change is a level or a few bad seconds) and throughput over time.

The trend page draws p95, p99, throughput and failed rate with one point per run, in the
order the runs started, the baseline marked on every chart.

Budget lines come from the thresholds (the new run's, the newest run's in a trend), as in
the one-run report; the project's 100/200 ms when a result states none.

Both pages are one offline file: the charting library (:mod:`harness.result.charts`) is
embedded, nothing is fetched. :func:`comparison_table_html` and :func:`overlay_charts_html`
are also the comparison section of the one-run report (``run --baseline --report``,
``report --baseline``), so both show the same table and the same overlaid charts.
"""

from __future__ import annotations

import html
import math
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from harness.record.recorder import Recorder, value_at_percentile
from harness.result import charts
from harness.result.trend import Trend

__all__ = [
    "COMPARE_CHART_IDS",
    "TREND_CHART_IDS",
    "comparison_table_html",
    "latency_budgets",
    "failure_budgets",
    "spectrum_points",
    "overlay_charts_html",
    "compare_report_html",
    "write_compare_report",
    "trend_report_html",
    "write_trend_report",
]

#: the chart ids each page carries (the browser test looks for them)
COMPARE_CHART_IDS: Tuple[str, ...] = ("compare-spectrum", "compare-percentiles", "compare-throughput")
TREND_CHART_IDS: Tuple[str, ...] = ("trend-latency", "trend-throughput", "trend-failed")

#: the budget when a result states none (DESIGN: p95 < 100 ms, p99 < 200 ms)
_BUDGETS_MS = ((100.0, "p95 budget 100 ms"), (200.0, "p99 budget 200 ms"))
_PCT_AGG = re.compile(r"p\((\d+(?:\.\d+)?)\)")

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1340px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:6px 0} td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f5f5f5} td.l,th.l{text-align:left} table.comparison td:not(.l){white-space:nowrap}
.pass{color:#060;font-weight:600} .fail{color:#b00;font-weight:600} .warn{color:#a60;font-weight:600}
.muted{color:#777} tr.baseline td{background:#eef4ff}
.verdict{font-size:20px;padding:8px 12px;display:inline-block;border-radius:4px;margin:8px 0}
.verdict.pass{background:#e6f4e6} .verdict.fail{background:#fbe5e5}
.grid{display:flex;flex-wrap:wrap;gap:12px} figure{margin:0} figcaption{font-weight:600;margin:4px 0}
"""

#: the baseline in blues, the new run in reds (light to dark: p50, p95, p99): a legend shows colours, not dashes
_SHADES = (("#6baed6", "#2171b5", "#08306b"), ("#fc9272", "#de2d26", "#67000d"))

_STATUS_CLASS = {"improved": "pass", "regressed": "fail", "inconclusive": "warn", "insufficient samples": "muted",
                 "no data": "muted"}


def _esc(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


# ----------------------------------------------------------------------------- the comparison table


def _value(v: Any, unit: str) -> str:
    if v is None:
        return "–"
    if unit == "rate":
        return f"{100.0 * v:.2f} %"
    if unit == "ms":
        return f"{v:.3g} ms" if v < 100 else f"{v:.1f} ms"
    if unit == "rps":
        return f"{v:.1f}/s"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _signed(x: float) -> str:
    return "+∞" if x == math.inf else ("−∞" if x == -math.inf else f"{x:+.1f} %")


def _interval_bar(iv: Sequence[float], change: Optional[float], fail_above_pct: float, lower_is_better: bool) -> str:
    """A small inline SVG: the interval as a bar on a ±scale axis, the point as a tick,
    the fail line (worse side) dashed red. No script, no CSS: it prints as it is."""
    lo, hi = (float(iv[0]), float(iv[1]))
    finite = [abs(v) for v in (lo, hi, change or 0.0) if math.isfinite(v)]
    scale = max([fail_above_pct * 1.5, *finite]) * 1.1 or 1.0
    w, h, mid = 120.0, 14.0, 60.0

    def x(v: float) -> float:
        v = max(-scale, min(scale, v)) if math.isfinite(v) else (scale if v > 0 else -scale)
        return mid + v / scale * (w / 2 - 2)

    fail_x = x(fail_above_pct if lower_is_better else -fail_above_pct)
    parts = [f'<svg class="interval-bar" width="{w:.0f}" height="{h:.0f}" viewBox="0 0 {w:.0f} {h:.0f}" '
             f'role="img" aria-label="interval {_esc(_signed(lo))} to {_esc(_signed(hi))}">',
             f'<line x1="{mid}" x2="{mid}" y1="0" y2="{h}" stroke="#999"/>',
             f'<line x1="{fail_x:.1f}" x2="{fail_x:.1f}" y1="0" y2="{h}" stroke="#b00" stroke-dasharray="2 2"/>',
             f'<rect x="{min(x(lo), x(hi)):.1f}" y="4" width="{max(1.0, abs(x(hi) - x(lo))):.1f}" height="6" '
             'fill="#1f77b4" fill-opacity="0.55"/>']
    if change is not None and math.isfinite(change):
        parts.append(f'<line x1="{x(change):.1f}" x2="{x(change):.1f}" y1="2" y2="12" stroke="#111" '
                     'stroke-width="1.5"/>')
    parts.append("</svg>")
    return "".join(parts)


def comparison_table_html(comparison: Mapping[str, Any], *, all_rows: bool = True) -> str:
    """The gate line and one row per metric of a :func:`harness.result.compare.compare`
    result: baseline, new, change, the interval of the change (its confidence level in the
    header), the verdict and the note. Ungated rows say so (they never fail the gate).
    Without ``all_rows``, per-target rows are kept only where something changed."""
    lines = comparison.get("lines") or {}
    conf = float(lines.get("confidence") or 0.9)
    fail_pct = 100.0 * float(lines.get("fail_above") or 0.10)
    gate = comparison.get("gate") or {}
    passed = bool(gate.get("passed", True))
    out = [f'<p class="gate">gate: <b class="{"pass" if passed else "fail"}">{"PASSED" if passed else "FAILED"}'
           f'</b> (exit {_esc(gate.get("exit_code", 0))}): {_esc(gate.get("reason", ""))}</p>',
           f'<p class="muted">The gate fails only when the whole {conf:.0%} interval of a gated metric is worse than '
           f"{fail_pct:.0f} % and than its floor; the interval is a circular block bootstrap over the runs' windows. "
           "The bar shows the interval (blue), the point change (black) and the fail line (red, dashed); "
           "change = new / baseline − 1.</p>"]
    head = ("metric", "baseline", "new", "change", f"{conf:.0%} interval", "", "verdict", "note")
    rows = ["<table class=\"comparison\"><tr>" + "".join(
        f'<th class="{"l" if i in (0, 6, 7) else ""}">{_esc(h)}</th>' for i, h in enumerate(head)) + "</tr>"]
    for r in comparison.get("metrics") or []:
        status = str(r.get("status"))
        if not all_rows and r.get("scope") != "all" and status in ("unchanged", "insufficient samples", "no data"):
            continue
        unit = str(r.get("unit") or "")
        change = r.get("change_percent")
        iv = r.get("interval_percent")
        gated = bool(r.get("gated"))
        verdict = f'<span class="{_STATUS_CLASS.get(status, "")}">{_esc(status)}</span>'
        if not gated:
            verdict += ' <span class="muted">(not gated)</span>'
        elif r.get("beyond_tolerance"):
            verdict += ' <b class="fail">FAIL</b>'
        cells = [
            f'<td class="l">{_esc(r.get("metric"))}</td>',
            f"<td>{_esc(_value(r.get('base'), unit))}</td>",
            f"<td>{_esc(_value(r.get('new'), unit))}</td>",
            f"<td>{'–' if change is None else _esc(_signed(float(change)))}</td>",
            f"<td>{'–' if not iv else _esc(f'[{_signed(iv[0])}, {_signed(iv[1])}]')}</td>",
            "<td>" + ("" if not iv else _interval_bar(iv, change, fail_pct, bool(r.get("lower_is_better", True))))
            + "</td>",
            f'<td class="l">{verdict}</td>',
            f'<td class="l">{_esc(r.get("note") or "")}</td>',
        ]
        rows.append(f'<tr data-metric="{_esc(r.get("metric"))}" data-status="{_esc(status)}">' + "".join(cells)
                    + "</tr>")
    rows.append("</table>")
    out.append("".join(rows))
    for w in comparison.get("warnings") or []:
        out.append(f'<p class="warn">warning: {_esc(w)}</p>')
    return "".join(out)


# ----------------------------------------------------------------------------- data of the charts


def latency_budgets(result: Optional[Mapping[str, Any]]) -> List[charts.Budget]:
    """Budget lines from a result's latency percentile thresholds (``p(95)<100ms`` ->
    "p95 budget 100 ms"), the project's 100/200 ms when it states no thresholds at all (the
    same rule as the one-run report)."""
    out: List[charts.Budget] = []
    ths = (result or {}).get("thresholds") or []
    for th in ths:
        metric, value = str(th.get("metric") or ""), _finite(th.get("value"))
        m = _PCT_AGG.fullmatch(str(th.get("aggregation") or ""))
        if value is None or not m or metric.split("{", 1)[0] != "latency":
            continue
        label = f"p{m.group(1)} budget {value:g} ms" + metric[len("latency"):]
        if all(b.label != label for b in out):
            out.append(charts.Budget(value, label))
    if not ths:
        out = [charts.Budget(v, label) for v, label in _BUDGETS_MS]
    return out


def failure_budgets(result: Optional[Mapping[str, Any]]) -> List[charts.Budget]:
    """Budget lines (in %) from a result's failed/error/timeout rate thresholds (``<``, ``<=``)."""
    out: List[charts.Budget] = []
    for th in (result or {}).get("thresholds") or []:
        metric, value = str(th.get("metric") or "").split("{", 1)[0], _finite(th.get("value"))
        if metric in ("failed_rate", "error_rate", "timeout_rate") and value is not None \
                and th.get("op") in ("<", "<="):
            label = f"{metric.replace('_', ' ')} budget {100 * value:g} %"
            if all(b.label != label for b in out):
                out.append(charts.Budget(100.0 * value, label))
    return out


def spectrum_points(result: Mapping[str, Any], metric: str = "latency", points: int = 120
                    ) -> List[Tuple[float, float]]:
    """The HDR percentile spectrum of a result's encoded histograms: ``[(percentile, ms)]``,
    spaced evenly in "nines" (``1/(1−p)`` on a log axis) up to where one request remains,
    then the max; empty without histograms."""
    enc = result.get("histograms")
    if not enc:
        return []
    h = Recorder.decode(enc).histogram(metric)
    n = int(h.total_count)
    if n == 0:
        return []
    max_nines = max(1.0, math.log10(max(n, 10)))
    out = [(100.0 * (1.0 - 10 ** (-max_nines * i / points)),
            value_at_percentile(h, 100.0 * (1.0 - 10 ** (-max_nines * i / points))) / 1000.0)
           for i in range(points + 1)]
    out.append((100.0, h.get_max_value() / 1000.0))
    return out


def _windows(result: Mapping[str, Any]) -> List[Mapping[str, Any]]:
    return [w for w in result.get("timeseries") or [] if "start_s" in w and "end_s" in w]


def _partial_from(result: Mapping[str, Any]) -> Optional[float]:
    """Start of the last window when it is shorter than the others (the run ended inside it)."""
    ws = _windows(result)
    if len(ws) < 2:
        return None
    width = float(ws[0]["end_s"]) - float(ws[0]["start_s"])
    last = ws[-1]
    if float(last["end_s"]) - float(last["start_s"]) < 0.999 * width:
        return float(last["start_s"])
    d = (result.get("scenario") or {}).get("duration") if result.get("status") == "completed" else result.get(
        "elapsed_s")
    if d and float(last["end_s"]) > float(d) + 1e-6 and float(last["start_s"]) < float(d):
        return float(last["start_s"])
    return None


def _aligned(base: Mapping[str, Any], new: Mapping[str, Any], keys: Sequence[str]
             ) -> Tuple[List[float], Dict[str, List[List[Optional[float]]]]]:
    """One x axis (window midpoints, seconds since each run's start) for both runs, and per
    key the two value lists on it (None where a run has no window there)."""
    per = []
    for r in (base, new):
        per.append({round((float(w["start_s"]) + float(w["end_s"])) / 2.0, 6): w for w in _windows(r)})
    xs = sorted(set(per[0]) | set(per[1]))
    vals = {k: [[_finite(p[x].get(k)) if x in p else None for x in xs] for p in per] for k in keys}
    return xs, vals


def _overlay_partial(xs: Sequence[float], vals: Dict[str, List[List[Optional[float]]]],
                     starts: Tuple[Optional[float], Optional[float]]) -> Tuple[Optional[float], List[int]]:
    """One ``partial_from`` for a chart of both runs: the later run's partial window is drawn
    as partial; an earlier partial window of the other run (it ended sooner) would sit among
    full windows, so its point is left out (its index is returned for a note)."""
    known = [s for s in starts if s is not None]
    if not known:
        return None, []
    last = max(known)
    dropped = []
    for k, s in enumerate(starts):
        if s is not None and s < last:
            x = next((i for i, xv in enumerate(xs) if xv >= s), None)
            if x is not None:
                for series in vals.values():
                    series[k][x] = None
                dropped.append(k)
    return last, dropped


def _finite(v: Any) -> Optional[float]:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


# ----------------------------------------------------------------------------- the compare page


def _ident(r: Mapping[str, Any]) -> str:
    sc = r.get("scenario") or {}
    return (f"<b>{_esc(r.get('run_id'))}</b> · scenario {_esc(sc.get('name'))} · target {_esc(sc.get('target'))} "
            f"· started {_esc(r.get('started_at'))} · status {_esc(r.get('status'))} · exit "
            f"{_esc((r.get('verdict') or {}).get('exit_code'))}")


def _page(title: str, body: Sequence[str]) -> str:
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_esc(title)}</title><style>{_CSS}</style>{charts.chart_assets()}</head><body>"
            + "\n".join(body) + "</body></html>\n")


def overlay_charts_html(base: Mapping[str, Any], new: Mapping[str, Any], *,
                        chart_ids: Sequence[str] = COMPARE_CHART_IDS, heading_id: str = "charts") -> str:
    """Both runs overlaid (baseline blue and solid, new red and dashed): the HDR spectrum,
    p50/p95/p99 per window and throughput per window, with the notes that go with them.
    The compare page and the one-run report with a baseline share it; ``chart_ids`` (the
    spectrum's, the percentiles', the throughput's) keep the one-run report's own charts
    apart from these."""
    if len(chart_ids) != 3:
        raise ValueError(f"chart_ids: need 3 ids (spectrum, percentiles, throughput), got {len(chart_ids)}")
    spectrum_id, percentiles_id, throughput_id = chart_ids
    ids = ("baseline", "new")
    budgets = latency_budgets(new)
    spec = []
    for j, (metric, label) in enumerate((("latency", "latency"), ("service_time", "service time"))):
        for k, r in enumerate((base, new)):
            pts = spectrum_points(r, metric)
            if pts:
                spec.append(charts.SpectrumSeries(f"{ids[k]} {label}", [p for p, _ in pts], [v for _, v in pts],
                                                  dashed=k == 1, color=_SHADES[k][2 - 2 * j]))
    xs, vals = _aligned(base, new, ("p50_ms", "p95_ms", "p99_ms", "rate"))
    pct_series = [charts.Series(f"{ids[k]} {key[:-3]}", vals[key][k], dashed=k == 1, color=_SHADES[k][j])
                  for j, key in enumerate(("p50_ms", "p95_ms", "p99_ms")) for k in (0, 1)]
    rate_series = [charts.Series(f"{ids[k]} completed/s", vals["rate"][k], dashed=k == 1, color=_SHADES[k][1])
                   for k in (0, 1)]
    partial_from, dropped = _overlay_partial(xs, vals, (_partial_from(base), _partial_from(new)))
    body = [f'<h2 id="{_esc(heading_id)}">Both runs overlaid (baseline blue and solid, new red and dashed)</h2>'
            '<div class="grid">',
            charts.spectrum_chart(spectrum_id, "HDR percentile spectrum: latency and service time",
                                  spec, budgets=budgets),
            charts.time_chart(percentiles_id, "Latency p50 / p95 / p99 per window (from intended start)",
                              xs, pct_series, y_unit="ms", budgets=budgets, partial_from=partial_from,
                              x_label="time since each run's start (s)"),
            charts.time_chart(throughput_id, "Throughput per window (completed requests/s)", xs,
                              rate_series, y_unit="req/s", partial_from=partial_from,
                              x_label="time since each run's start (s)"),
            "</div>"]
    for k in dropped:
        body.append(f'<p class="muted">The {ids[k]}\'s last window was partial (the run ended inside it) and ends '
                    "before the other run's: it is left out of the over-time charts rather than drawn as a drop.</p>")
    body.append('<p class="muted">Latency is measured from each request\'s intended start (open loop); per-window '
                "percentiles are ≤ 0.8 % coarse, the table's figures are exact HDR values (3 significant digits). "
                "Time runs from each run's own start, so the two runs line up second by second.</p>")
    return "\n".join(body)


def compare_report_html(base: Mapping[str, Any], new: Mapping[str, Any], comparison: Mapping[str, Any], *,
                        title: Optional[str] = None) -> str:
    """The whole compare page as one HTML string (no external resources)."""
    title = title or f"compare {base.get('run_id')} → {new.get('run_id')}"
    gate = comparison.get("gate") or {}
    passed = bool(gate.get("passed", True))
    body = [f"<h1>{_esc(title)}</h1>",
            f'<div class="muted">baseline (blue, solid): {_ident(base)}<br>new (red, dashed): {_ident(new)}</div>',
            f'<div class="verdict {"pass" if passed else "fail"}" id="gate">gate: '
            f'{"PASSED" if passed else "FAILED"} (exit {_esc(gate.get("exit_code", 0))})</div>',
            '<h2 id="comparison">Verdict per metric</h2>' + comparison_table_html(comparison)]
    body.append(overlay_charts_html(base, new))
    return _page(title, body)


def write_compare_report(base: Mapping[str, Any], new: Mapping[str, Any], comparison: Mapping[str, Any],
                         path: str | os.PathLike[str], **kw: Any) -> Path:
    """Render the compare page and write it atomically; returns the path."""
    return _write(compare_report_html(base, new, comparison, **kw), path)


def _write(text: str, path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, p)
    return p


# ----------------------------------------------------------------------------- the trend page


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def trend_report_html(trend: Trend, *, title: Optional[str] = None) -> str:
    """The whole trend page as one HTML string (no external resources)."""
    runs = trend.runs
    names = sorted({str(r.scenario) for r in runs})
    title = title or f"trend of {len(runs)} run(s): {', '.join(names)}"
    b = trend.baseline
    body = [f"<h1>{_esc(title)}</h1>",
            f'<div class="muted">{len(runs)} run(s) from {_esc(_utc(runs[0].start_ts))} to '
            f'{_esc(_utc(runs[-1].start_ts))} UTC, in the order they started · baseline: '
            + (f"<b>{_esc(b.run_id)}</b> ({_esc(_utc(b.start_ts))} UTC)" if b else "none") + "</div>"]
    xs = [r.start_ts for r in runs]
    markers = [charts.Marker(b.start_ts, f"baseline {b.run_id}")] if b else []
    budgets = latency_budgets({"thresholds": trend.thresholds})
    body.append('<h2 id="charts">Across runs</h2><div class="grid">')
    labels = [f"{r.run_id} ({_utc(r.start_ts)} UTC)" + (" · baseline" if r.baseline else "") for r in runs]
    common = dict(markers=markers, x_time=True, x_labels=labels, points=True,
                  x_label="run start (this browser's time zone)")
    body.append(charts.time_chart(
        "trend-latency", "Latency p95 and p99 per run (from intended start)", xs,
        [charts.Series("p95", [r.p95_ms for r in runs]), charts.Series("p99", [r.p99_ms for r in runs])],
        y_unit="ms", budgets=budgets, **common))
    body.append(charts.time_chart(
        "trend-throughput", "Throughput per run (requests that ran / duration)", xs,
        [charts.Series("requests/s", [r.rps for r in runs])], y_unit="req/s", **common))
    body.append(charts.time_chart(
        "trend-failed", "Failed rate per run (errors + timeouts + dropped)", xs,
        [charts.Series("failed %", [None if r.failed_rate is None else 100.0 * r.failed_rate for r in runs])],
        y_unit="%", budgets=failure_budgets({"thresholds": trend.thresholds}), **common))
    body.append("</div>")
    head = ("", "run id", "started (UTC)", "scenario", "status", "exit", "requests", "p50 ms", "p95 ms", "p99 ms",
            "requests/s", "failed %", "p95 vs baseline", "file")
    rows = ['<table class="trend"><tr>' + "".join(f'<th class="{"l" if i in (1, 2, 3, 4, 13) else ""}">{_esc(h)}'
                                                  "</th>" for i, h in enumerate(head)) + "</tr>"]
    for r in runs:
        rel = "–" if not b or r.p95_ms is None or not b.p95_ms else f"{100.0 * (r.p95_ms / b.p95_ms - 1):+.1f} %"
        cells = ("baseline" if r.baseline else "", r.run_id, _utc(r.start_ts), r.scenario, r.status
                 + ("" if r.valid else " (invalid: generator-limited)"), r.exit_code, r.count,
                 _num(r.p50_ms, ".2f"), _num(r.p95_ms, ".2f"), _num(r.p99_ms, ".2f"), _num(r.rps, ".1f"),
                 _num(None if r.failed_rate is None else 100 * r.failed_rate, ".2f"), rel, r.path)
        rows.append(f'<tr class="{"baseline" if r.baseline else ""}" data-run="{_esc(r.run_id)}">' + "".join(
            f'<td class="{"l" if i in (1, 2, 3, 4, 13) else ""}">{_esc(c)}</td>' for i, c in enumerate(cells))
            + "</tr>")
    rows.append("</table>")
    body.append('<h2 id="runs">Runs</h2>' + "".join(rows))
    if trend.skipped or trend.notes:
        body.append("<h2 id=\"notes\">Left out and notes</h2><ul>"
                    + "".join(f"<li>skipped {_esc(p)}: {_esc(why)}</li>" for p, why in trend.skipped)
                    + "".join(f"<li>{_esc(n)}</li>" for n in trend.notes) + "</ul>")
    return _page(title, body)


def _num(v: Optional[float], fmt: str) -> str:
    return "–" if v is None else format(v, fmt)


def write_trend_report(trend: Trend, path: str | os.PathLike[str], **kw: Any) -> Path:
    """Render the trend page and write it atomically; returns the path."""
    return _write(trend_report_html(trend, **kw), path)
