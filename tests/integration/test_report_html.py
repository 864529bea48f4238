"""The HTML report: rendered from real runs (a healthy one, and one where every request
raised RuntimeError and a threshold aborted it), checked as text and in headless Chromium.

In Chromium (tests/support/chromium.py) the network is blocked and the test fails on any
console error or network request; it checks that every chart was drawn by uPlot (canvases
in the DOM), that the errors, status codes and per-target tables are there, and keeps
screenshots in $HARNESS_TEST_ARTIFACTS/<test> (default results/test-artifacts/, which git
ignores; the test prints the folder). Under CI=true a missing Chromium fails the test
(install: apt-get install -y --no-install-recommends chromium); elsewhere it skips.
"""

from __future__ import annotations

import copy
import html as html_mod
import json
import re

import pytest

from harness.cli.report import handle as cmd_report
from harness.config.scenario import load_scenario
from harness.result.compare import compare
from harness.result.html import BASELINE_CHART_IDS, CHART_IDS, error_rows, in_flight_series, render_html, target_rows, write_report
from harness.result.schema import load_result, write_result
from harness.run.runner import Run, RunOptions
from tests.support.chromium import artifacts_dir, png_size, render
from tests.support.targets_report import HOSTILE_MESSAGE

TIME_CHARTS = tuple(c for c in CHART_IDS if c != "latency-spectrum")


def _run(spec: dict) -> dict:
    sc = load_scenario(None, spec, env={})
    res = Run(sc, RunOptions(metrics_port=None, progress="off", install_signal_handlers=False)).execute()
    return json.loads(json.dumps(res))  # as read back from disk


@pytest.fixture(scope="module")
def result() -> dict:
    """A real 3 s run at 60 rps on a target with errors (every 50th), cache hits and fallbacks."""
    return _run({"name": "report-test", "target": "tests.support.targets_capacity:flagged",
                 "payload": "tests.support.targets_capacity:ordinal", "duration": "3s",
                 "profile": {"type": "constant", "rate": 60}})


@pytest.fixture(scope="module")
def failing() -> dict:
    """A real run where every request raises RuntimeError; the error-rate threshold aborts it."""
    return _run({"name": "all-fail", "target": "tests.support.targets_report:always_runtime_error",
                 "payload": "tests.support.targets_capacity:ordinal", "duration": "6s",
                 "profile": {"type": "constant", "rate": 50},
                 "thresholds": {"error_rate": [{"threshold": "rate<0.01", "abortOnFail": True}]}})


def _specs(page: str) -> dict:
    """chart id -> the JSON the page's renderer draws it from."""
    out = {}
    for cid, text in re.findall(r'<script type="application/json" id="spec-([\w-]+)">(.*?)</script>', page, re.S):
        out[cid] = json.loads(text)
    return out


def _section(page: str, anchor: str) -> str:
    return page.split(f'id="{anchor}"', 1)[1].split("<h2", 1)[0]


# ----------------------------------------------------------------------------- as text


def test_report_has_every_section_and_loads_nothing(result):
    page = render_html(result)
    specs = _specs(page)
    for cid in CHART_IDS:
        assert f'data-chart="{cid}"' in page, cid
        assert cid in specs, f"{cid} has no data"
        assert any(any(v is not None for v in s["values"]) for s in specs[cid]["series"]), f"{cid} drew no series"
    for needle in ('id="verdict-table"', 'id="errors"', 'id="target-table"', 'id="alerts"', 'id="scenario"',
                   "p95 budget 100 ms", "p99 budget 200 ms", "intended", "cache hit", "fallback", "service time",
                   "report-test", "in flight"):
        assert needle in page, needle
    assert "uPlot" in page  # the library is in the file ...
    # ... and nothing is loaded from anywhere: no src/href/url()/@import/fetch; the only URL is
    # the library's licence comment
    assert not re.search(r"""\b(src|href)\s*=|url\(|@import|\bfetch\(|XMLHttpRequest|import\(""", page)
    urls = set(re.findall(r"https?://[^\s\"')]+", page))
    assert urls <= {"https://github.com/leeoniya/uPlot"}, urls


def test_axes_fit_the_data_and_budgets_off_scale_become_markers(result):
    """A 1-3 ms run: the latency axis is not stretched to 200 ms; the budgets above it are
    named as edge markers (the canvas draws them; the text says so too)."""
    page = render_html(result)
    spec = _specs(page)["latency-over-time"]
    assert spec["y_max"] is None  # fitted by the browser to the data (checked there below)
    assert {b["label"] for b in spec["budgets"]} == {"p95 budget 100 ms", "p99 budget 200 ms"}
    fig = page.split('id="fig-latency-over-time"', 1)[1].split("</figure>", 1)[0]
    assert "p99 budget 200 ms: above every value" in fig and "marked at the top edge" in fig


def test_run_where_every_request_failed_names_the_error(failing):
    assert failing["summary"]["all"]["outcomes"]["ok"] == 0
    page = render_html(failing)
    errors = _section(page, "errors")
    assert "RuntimeError" in errors and "always_runtime_error" in errors
    count = failing["summary"]["all"]["outcomes"]["error"]
    assert re.search(rf"<td[^>]*>{count}</td>", errors), "the error count is in the table"
    # the message is shown as text, never as markup (when the result carries samples)
    assert "<b>no</b>" not in page and "<script>window.pwned" not in page
    if failing.get("error_details"):
        assert html_mod.escape(HOSTILE_MESSAGE[:40], quote=True) in errors
        row = next(r for r in error_rows(failing) if r["type"] == "RuntimeError")
        assert row["first_s"] is not None and row["last_s"] >= row["first_s"]
    targets = _section(page, "targets")
    assert "100.00 %" in targets  # failure %


def test_abort_is_marked_on_every_time_chart(failing):
    assert failing["status"] == "aborted" and failing["verdict"]["aborted_by"], failing["status"]
    specs = _specs(render_html(failing))
    # no request succeeded: the cache-hit/fallback chart (% of ok requests) has no data
    assert set(TIME_CHARTS) - set(specs) == {"cache-fallback-over-time"}
    for cid in set(TIME_CHARTS) & set(specs):
        labels = [m["label"] for m in specs[cid]["markers"]]
        assert any(lab.startswith("aborted: error_rate") for lab in labels), (cid, labels)
        assert specs[cid]["markers"][0]["x"] == pytest.approx(failing["elapsed_s"])


def test_partial_last_window_is_drawn_as_partial_not_as_a_drop(result):
    """Interrupted at 2.4 s: the last window [2, 3) covers 0.4 s. Its rate is per second
    of that 0.4 s (60/s, not 24/s or 0) and it is drawn as the partial segment."""
    r = copy.deepcopy(result)
    r["timeseries"] = [w for w in r["timeseries"] if w["start_s"] < 3]
    last = r["timeseries"][2]
    last.update({"intended": 24, "ok": 24, "error": 0, "completed": 24, "rate": 24.0})
    r["elapsed_s"], r["status"] = 2.4, "interrupted"
    spec = _specs(render_html(r))["rate-over-time"]
    assert spec["partial_from"] == 2.0
    intended = spec["series"][0]
    assert intended["values"][2] is None, "the partial point is not on the full line"
    assert intended["partial_values"][2] == pytest.approx(60.0)
    assert intended["partial_values"][1] == intended["values"][1], "the dashed segment joins the last full point"
    assert spec["x"][2] == pytest.approx(2.2)
    assert [m["label"] for m in spec["markers"]] == ["interrupted"]


def test_partial_window_hover_says_partial_in_chromium(result):
    """In the browser: hovering the partial window's point reads "(partial window)" with the
    rate over the covered part; the interrupt is a marker on the chart."""
    r = copy.deepcopy(result)
    r["timeseries"] = [w for w in r["timeseries"] if w["start_s"] < 3]
    r["timeseries"][2].update({"intended": 24, "ok": 24, "error": 0, "completed": 24, "rate": 24.0})
    r["elapsed_s"], r["status"] = 2.4, "interrupted"
    out = artifacts_dir("test_partial_window_hover_says_partial_in_chromium")
    print(f"report artifacts: {out}")
    path = write_report(r, out / "report.html")
    hover = """(async () => {
      const u = window.lbhCharts['rate-over-time'], r = u.over.getBoundingClientRect();
      u.over.dispatchEvent(new MouseEvent('mousemove', {clientX: r.left + u.valToPos(2.2, 'x'),
                                                        clientY: r.top + 20, bubbles: true}));
      await new Promise(res => setTimeout(res, 60));
      return [...u.root.querySelectorAll('.u-legend .u-series:not(.lbh-hidden)')].map(e => e.textContent);
    })()"""
    page = render(path, screenshot=out / "report.png", evaluate={"legend": hover})
    assert not page.problems(), page.problems()
    legend = page.values["legend"]
    assert legend[0].endswith("2.2") and "intended60 req/s (partial window)" in legend, legend


def test_error_table_from_details_and_from_older_results(result):
    r = copy.deepcopy(result)
    r["error_details"] = [{"target": "flagged", "type": "RuntimeError", "count": 3, "first_s": 0.82, "last_s": 2.49,
                           "samples": ["every fiftieth call fails", "<img src=x onerror=alert(1)>"]},
                          {"target": "flagged", "type": "HTTP 503", "count": 7, "first_s": 1.0, "last_s": 2.0,
                           "samples": ['{"detail": "overloaded"}']}]
    errors = _section(render_html(r), "errors")
    assert errors.index("HTTP 503") < errors.index("RuntimeError"), "most frequent first"
    assert ">0.82<" in errors and ">2.49<" in errors and "every fiftieth call fails" in errors
    assert "&lt;img src=x onerror=alert(1)&gt;" in errors and "<img" not in errors
    assert "{&quot;detail&quot;: &quot;overloaded&quot;}" in errors
    # an older result: counts from summary.targets[*].errors, said to be counts only
    del r["error_details"]
    errors = _section(render_html(r), "errors")
    assert "RuntimeError" in errors and ">3<" in errors and "counts only" in errors


def test_per_target_table_status_codes_and_bytes(result):
    r = copy.deepcopy(result)
    t = r["summary"]["targets"]["flagged"]
    t.update({"status_codes": {"200": 170, "503": 10}, "bytes_sent": 123456, "bytes_received": 5 * 2**20})
    other = copy.deepcopy(t)
    other.update({"count": 10, "outcomes": {"ok": 5, "error": 5, "timeout": 0, "dropped": 0},
                  "status_codes": {"500": 5, "200": 5}, "bytes_sent": 1000, "bytes_received": 2000})
    r["summary"]["targets"]["POST /predict <x>"] = other
    r["network"] = {"source": "interface", "bytes_sent": 4096, "bytes_received": 8192,
                    "interfaces": {"lo": {"bytes_sent": 4096, "bytes_received": 8192}}}
    page = render_html(r)
    rows = {row["target"]: row for row in target_rows(r)}
    assert rows["flagged"]["count"] == 180 and rows["flagged"]["ok_per_s"] == pytest.approx(177 / 3)
    assert rows["flagged"]["failure_pct"] == pytest.approx(100 * 3 / 180)
    assert rows["all"]["bytes_sent"] == 124456
    table = page.split('id="target-table"', 1)[1].split("</table>", 1)[0]
    for needle in ("flagged", "POST /predict &lt;x&gt;", "59.0", "1.67 %", "50.00 %", "120.56 KiB", "5.00 MiB",
                   ">all<"):
        assert needle in table, needle
    codes = _section(page, "status-codes")
    assert ">503<" in codes and ">170<" in codes and ">500<" in codes and "5.56 %" in codes
    net = _section(page, "network")
    assert ">lo<" in net and "4.00 KiB" in net and "8.00 KiB" in net


def test_in_flight_from_the_windows_by_littles_law(result):
    values, how = in_flight_series(result)
    assert "Little" in how
    full = [w for w, v in zip(result["timeseries"], values) if w["completed"] >= 50]
    assert full
    for w, v in zip(result["timeseries"], values):
        if w["completed"] >= 50:  # 60/s x ~1.3 ms: about 0.08 requests in flight
            assert 0.5 * w["rate"] * w["p50_ms"] / 1e3 < v < 1.5 * w["rate"] * w["max_ms"] / 1e3, (w, v)
    r = copy.deepcopy(result)
    for i, w in enumerate(r["timeseries"]):
        w["in_flight"] = float(i)
    assert in_flight_series(r) == ([float(i) for i in range(len(r["timeseries"]))], "sampled by the run")


def test_report_lists_alerts_that_fired(result):
    with_stack = {**result, "stack": {"prometheus_url": "http://127.0.0.1:9", "alerts_fired": [
        {"alertname": "LatencyP95OverBudget", "severity": "page", "labels": {"operation": "features"},
         "firing_s": 42.0, "still_firing_at_end": True}], "notifications": []}}
    page = render_html(with_stack)
    alerts = page.split('id="alerts"', 1)[1].split("<h2", 1)[0]
    assert "LatencyP95OverBudget" in alerts and "operation=features" in alerts and ">42<" in alerts
    quiet = render_html({**result, "stack": {"alerts_fired": []}})
    assert "No alert fired" in quiet


def test_report_without_histograms_or_samples_still_renders():
    page = render_html({"schema": "harness.result/1", "scenario": {"name": "empty"}, "verdict": {"exit_code": 0},
                        "timeseries": [], "thresholds": []})
    assert page.count('class="lbh-chart nodata"') == len(CHART_IDS)
    assert "no data" in page and "No request raised an error" in page


def test_a_ten_minute_run_stays_small(result):
    """600 one-second windows and resource samples (a 10-minute run's series): well under 2 MB."""
    r = copy.deepcopy(result)
    w0, s0 = r["timeseries"][1], r["resources"]["samples"][0]
    r["timeseries"] = [{**w0, "start_s": i, "end_s": i + 1} for i in range(600)]
    r["resources"]["samples"] = [{**s0, "t_s": i + 0.5} for i in range(600)]
    size = len(render_html(r).encode())
    assert size < 2_000_000, size


def test_harness_report_renders_again_from_json(result, tmp_path, capsys):
    src = write_result(result, tmp_path / "r.json")
    args = type("A", (), {"result": str(src), "output": None, "baseline": str(src)})()
    assert cmd_report(args) == 0
    page = (tmp_path / "r.html").read_text()
    assert 'data-chart="latency-spectrum"' in page and 'id="comparison"' in page
    for cid in BASELINE_CHART_IDS:                   # --baseline: the overlay charts of `compare --report` too
        assert f'data-chart="{cid}"' in page, cid
    assert load_result(src)["run_id"] == result["run_id"]
    (tmp_path / "bad.json").write_text("{}")
    bad = type("A", (), {"result": str(tmp_path / "bad.json"), "output": None, "baseline": None})()
    assert cmd_report(bad) == 2


# ----------------------------------------------------------------------------- in Chromium

_PROBE = {
    "canvases": "document.querySelectorAll('.lbh-chart canvas').length",
    "rendered": "[...document.querySelectorAll('.lbh-chart[data-rendered=\"1\"]')].map(e => e.dataset.chart)",
    "y_max": "Object.fromEntries([...document.querySelectorAll('.lbh-chart[data-rendered]')]"
             ".map(e => [e.dataset.chart, Number(e.dataset.yMax)]))",
    "offscale": "Object.fromEntries([...document.querySelectorAll('.lbh-chart[data-rendered]')]"
                ".map(e => [e.dataset.chart, e.dataset.budgetsOffscale]))",
    "legends": "document.querySelectorAll('.lbh-chart .u-legend').length",
    "pwned": "window.pwned === 1",
    "images": "document.querySelectorAll('img').length",
    "error_cells": "[...document.querySelectorAll('#error-table td')].map(td => td.textContent)",
}


def _check_in_chromium(result: dict, name: str) -> tuple:
    out = artifacts_dir(name)
    print(f"report artifacts: {out}")
    path = write_report(result, out / "report.html")
    with_data = sorted(_specs(path.read_text()))
    page = render(path, screenshot=out / "report.png", evaluate=_PROBE)
    assert not page.problems(), page.problems()
    v = page.values
    assert sorted(v["rendered"]) == with_data, v["rendered"]
    assert v["canvases"] >= len(with_data) and v["legends"] == len(with_data)
    assert v["pwned"] is False and v["images"] == 0
    w, h = png_size(page.screenshot.read_bytes())
    assert w == 1400 and h > 2000, (w, h)
    return page, v


# hover the middle of each chart, drag over 30-60 % of its width, double-click: what the
# legend says and what the x axis spans after each (uPlot listens to these mouse events)
_INTERACT = """(async () => {
  const tick = () => new Promise(r => requestAnimationFrame(() => setTimeout(r, 30)));
  const out = {};
  for (const [id, u] of Object.entries(window.lbhCharts || {})) {
    const r = u.over.getBoundingClientRect();
    const at = (type, fx, target) => (target || u.over).dispatchEvent(new MouseEvent(type,
      {clientX: r.left + r.width * fx, clientY: r.top + r.height / 2, movementX: 5, bubbles: true, button: 0, buttons: 1}));
    at("mouseenter", 0.5); at("mousemove", 0.5); await tick();
    const values = [...u.root.querySelectorAll(".u-legend .u-series:not(.lbh-hidden) .u-value")]
      .slice(1).map(e => e.textContent);
    const full = [u.scales.x.min, u.scales.x.max];
    at("mousedown", 0.3); await tick(); at("mousemove", 0.45); await tick(); at("mousemove", 0.6); await tick();
    at("mouseup", 0.6, document); await tick();
    const zoomed = [u.scales.x.min, u.scales.x.max];
    at("dblclick", 0.5); await tick();
    out[id] = {values, full, zoomed, reset: [u.scales.x.min, u.scales.x.max]};
  }
  return out;
})()"""


def test_report_in_headless_chromium(result):
    page, v = _check_in_chromium(result, "test_report_in_headless_chromium")
    assert sorted(v["rendered"]) == sorted(CHART_IDS)
    # every chart: hover shows numbers in the legend, a drag zooms in, a double-click resets
    acts = render(page.screenshot.with_name("report.html"), evaluate={"acts": _INTERACT}).values["acts"]
    assert sorted(acts) == sorted(CHART_IDS), acts
    for cid, a in acts.items():
        assert any(re.match(r"^-?\d", val) for val in a["values"]), (cid, a)
        (lo, hi), (zlo, zhi), (rlo, rhi) = a["full"], a["zoomed"], a["reset"]
        assert lo < zlo < zhi < hi, (cid, a)
        assert (rlo, rhi) == (lo, hi), (cid, a)
    # axes fit the data (a ~1-3 ms run; a loaded machine may add a few slow ones): the top is
    # the data's max plus a small margin, and each budget above it is an edge marker
    specs = _specs(page.screenshot.with_name("report.html").read_text())
    for cid in ("latency-over-time", "latency-spectrum"):
        spec = specs[cid]
        top = max(x for s in spec["series"] for x in s["values"] + (s.get("partial_values") or []) if x is not None)
        assert top < v["y_max"][cid] <= top * 1.07 + 1e-9, (cid, top, v["y_max"])
        above = [b["label"] for b in spec["budgets"] if b["y"] > v["y_max"][cid]]
        assert set(filter(None, v["offscale"][cid].split("|"))) == set(above), (cid, v["offscale"])
        if top < 90:
            assert "p99 budget 200 ms" in above
    assert 'id="target-table"' in page.dom and "RuntimeError" in page.dom


def test_failing_run_report_in_headless_chromium(failing):
    page, v = _check_in_chromium(failing, "test_failing_run_report_in_headless_chromium")
    assert "RuntimeError" in v["error_cells"]
    assert 'id="target-table"' in page.dom and "aborted by: error_rate" in page.dom


def test_report_with_a_baseline_draws_the_overlay_in_headless_chromium(result):
    """``run --baseline --report`` / ``report --baseline``: the run's own charts and the
    baseline overlay (spectrum, p50/p95/p99, throughput: both runs on each) are all drawn,
    offline, with no console error."""
    base = copy.deepcopy(result)
    base["run_id"] = "the-baseline"
    out = artifacts_dir("test_report_with_a_baseline_in_headless_chromium")
    print(f"report artifacts: {out}")
    path = write_report(result, out / "report.html", comparison=compare(base, result), baseline=base)
    with_data = sorted(_specs(path.read_text()))
    assert set(BASELINE_CHART_IDS) <= set(with_data) and set(CHART_IDS) <= set(with_data)
    page = render(path, screenshot=out / "report.png", evaluate={
        **_PROBE,
        "series": "Object.fromEntries([...document.querySelectorAll('.lbh-chart[data-rendered]')]"
                  ".map(e => [e.dataset.chart, Number(e.dataset.series || 0)]))",
        "overlay_heading": "!!document.getElementById('baseline-overlay')",
    })
    assert not page.problems(), page.problems()
    v = page.values
    assert sorted(v["rendered"]) == with_data, v["rendered"]
    assert v["canvases"] >= len(with_data) and v["legends"] == len(with_data)
    # both runs on every overlay chart: latency + service time of each, p50/p95/p99 of each, rate of each
    assert {cid: v["series"][cid] for cid in BASELINE_CHART_IDS} == dict(zip(BASELINE_CHART_IDS, (4, 6, 2)))
    assert v["overlay_heading"] is True and v["images"] == 0


def test_chromium_check_sees_network_requests_and_console_errors(tmp_path):
    """The check above can fail: a page that asks for a remote image and logs an error."""
    p = tmp_path / "bad.html"
    p.write_text('<!DOCTYPE html><html><body><img src="https://cdn.example.com/x.png">'
                 "<script>console.error('boom')</script></body></html>")
    page = render(p, ready="document.readyState === 'complete'")
    assert any("cdn.example.com" in u for u in page.requests), page.requests
    assert any("boom" in e for e in page.console_errors), page.console_errors


def test_http_run_report_names_status_codes_bodies_and_bytes_per_endpoint():
    """Two endpoints, one shedding with 503: the report names the status, the body the
    server sent, and counts and bytes per endpoint, in Chromium too."""
    from prometheus_client import CollectorRegistry

    from tests.support.http_recording_server import RecordingServer

    routes = {"/ok": (200, {"Content-Type": "application/json"}, b'{"ok":true}'),
              "/busy": (503, {"Content-Type": "application/json"}, b'{"detail":"overloaded <retry later>"}')}
    with RecordingServer(routes) as srv:
        sc = load_scenario(None, {"name": "http-report", "target": srv.url, "duration": "2s", "profile.rate": 40,
                                  "thresholds": {}, "failures": {"threshold": "off"},
                                  "http": {"endpoints": [{"url": "/ok", "weight": 3}, {"url": "/busy"}]}}, env={})
        res = Run(sc, RunOptions(metrics_port=None, progress="off", install_signal_handlers=False),
                  registry=CollectorRegistry()).execute()
    res = json.loads(json.dumps(res))
    page_text = render_html(res)
    codes = _section(page_text, "status-codes")
    assert "GET /busy" in codes and ">503<" in codes and ">200<" in codes
    errors = _section(page_text, "errors")
    assert "HTTP 503" in errors and "overloaded &lt;retry later&gt;" in errors
    table = page_text.split('id="target-table"', 1)[1].split("</table>", 1)[0]
    assert "GET /ok" in table and "GET /busy" in table and ">all<" in table and "100.00 %" in table
    assert "KiB" in table or " B<" in table
    page, v = _check_in_chromium(res, "test_http_run_report_in_headless_chromium")
    assert any("HTTP 503" in c for c in v["error_cells"]), v["error_cells"]
    assert 'id="status-table"' in page.dom
