"""The compare and trend pages: the comparison table carries each metric's interval and
verdict (and says which rows are not gated), the pages hold their charts with both runs'
series and the budget lines, load nothing from elsewhere, and the one-run report's
comparison section is the same table. ``harness compare --report`` writes the page."""

from __future__ import annotations

import json
import re

import pytest

from harness.cli.main import main
from harness.exitcodes import ExitCode
from harness.result.compare import compare
from harness.result.compare_html import (COMPARE_CHART_IDS, TREND_CHART_IDS, comparison_table_html,
                                         compare_report_html, overlay_charts_html, spectrum_points,
                                         trend_report_html)
from harness.result.html import BASELINE_CHART_IDS, CHART_IDS, render_html
from harness.result.schema import write_result
from harness.result.trend import build_trend
from tests.support.synthetic_results import result


@pytest.fixture(scope="module")
def pair():
    base = result("base-run", "2026-01-01T00:00:00Z", ms=10.0, n=2000, duration=20.0)
    new = result("new-run", "2026-01-02T00:00:00Z", ms=13.0, n=2000, duration=20.0)
    return base, new, compare(base, new)


def _spec(page: str, chart_id: str) -> dict:
    m = re.search(rf'<script type="application/json" id="spec-{chart_id}">(.*?)</script>', page, re.S)
    assert m, f"no data for chart {chart_id}"
    return json.loads(m.group(1))


def _row(table: str, metric: str) -> str:
    m = re.search(rf'<tr data-metric="{re.escape(metric)}"[^>]*>(.*?)</tr>', table, re.S)
    assert m, metric
    return m.group(1)


def test_table_has_the_interval_and_the_verdict(pair):
    _base, _new, c = pair
    table = comparison_table_html(c)
    assert "90% interval" in table and "gate: <b class=\"fail\">FAILED</b> (exit 97)" in table
    p95 = _row(table, "latency p95")
    assert "+30.0 %" in p95 and "[+30.0 %, +30.0 %]" in p95 and "regressed" in p95 and "FAIL" in p95
    assert 'class="interval-bar"' in p95
    thr = _row(table, "throughput (rps)")
    iv = next(r for r in c["metrics"] if r["metric"] == "throughput (rps)")["interval_percent"]
    assert f"[{iv[0]:+.1f} %, {iv[1]:+.1f} %]" in thr
    assert "(not gated)" in _row(table, "latency max") and "FAIL" not in _row(table, "latency max")
    assert "insufficient samples" in _row(table, "latency p99.9")
    assert "10 ms" in p95 and "13 ms" in p95                      # values with their unit
    assert "0.00 %" in _row(table, "failed rate")                  # rates as percent


def test_one_run_report_comparison_section_is_the_same_table(pair):
    base, new, c = pair
    page = render_html(new, comparison=c)
    section = page.split('id="comparison"', 1)[1]
    assert "90% interval" in section and 'data-metric="latency p95"' in section


def test_one_run_report_with_a_baseline_overlays_both_runs_as_the_compare_page(pair):
    base, new, c = pair
    page = render_html(new, comparison=c, baseline=base)
    charts_on_page = re.findall(r'data-chart="([^"]+)"', page)
    assert len(charts_on_page) == len(set(charts_on_page))              # no id drawn twice
    assert set(BASELINE_CHART_IDS) <= set(charts_on_page) and set(CHART_IDS) <= set(charts_on_page)
    assert not set(BASELINE_CHART_IDS) & set(CHART_IDS) and not set(BASELINE_CHART_IDS) & set(COMPARE_CHART_IDS)
    assert page.index('id="comparison"') < page.index('id="baseline-overlay"')
    # the same charts as `harness compare A B --report`, data and all, under the report's own ids
    cmp_page = compare_report_html(base, new, c)
    for mine, theirs in zip(BASELINE_CHART_IDS, COMPARE_CHART_IDS):
        assert _spec(page, mine) == _spec(cmp_page, theirs), mine
    names = [s["name"] for s in _spec(page, "baseline-spectrum")["series"]]
    assert names == ["baseline latency", "new latency", "baseline service time", "new service time"]
    # without a baseline (or with only the comparison) the report draws no overlay
    for alone in (render_html(new), render_html(new, comparison=c)):
        assert not any(f'data-chart="{cid}"' in alone for cid in BASELINE_CHART_IDS)
        assert 'id="baseline-overlay"' not in alone


def test_overlay_needs_three_chart_ids(pair):
    base, new, _c = pair
    with pytest.raises(ValueError, match="chart_ids: need 3 ids"):
        overlay_charts_html(base, new, chart_ids=("a-b", "c-d"))


def test_compare_page_overlays_both_runs(pair):
    base, new, c = pair
    page = compare_report_html(base, new, c)
    for cid in COMPARE_CHART_IDS:
        assert f'data-chart="{cid}"' in page, cid
    spec = _spec(page, "compare-spectrum")
    names = [s["name"] for s in spec["series"]]
    assert names == ["baseline latency", "new latency", "baseline service time", "new service time"]
    assert [s["dashed"] for s in spec["series"]] == [False, True, False, True]
    lat = _spec(page, "compare-percentiles")
    assert {s["name"] for s in lat["series"]} == {f"{r} {p}" for r in ("baseline", "new") for p in ("p50", "p95",
                                                                                                    "p99")}
    base_p95 = next(s for s in lat["series"] if s["name"] == "baseline p95")
    new_p95 = next(s for s in lat["series"] if s["name"] == "new p95")
    full = [i for i, v in enumerate(base_p95["values"]) if v is not None]
    assert full and all(new_p95["values"][i] > base_p95["values"][i] for i in full)
    assert [b["label"] for b in lat["budgets"]] == ["p95 budget 100 ms", "p99 budget 200 ms"]
    thr = _spec(page, "compare-throughput")
    assert [s["name"] for s in thr["series"]] == ["baseline completed/s", "new completed/s"]
    assert "FAILED (exit 97)" in page and "base-run" in page and "new-run" in page
    # one file: no element loads anything (the browser test also watches the network)
    assert not re.search(r"""<(script|link|img|iframe)[^>]+\b(src|href)\s*=""", page)
    assert not re.search(r"""url\(\s*['"]?https?:|@import""", page)


def test_partial_last_window_is_marked_not_drawn_as_a_drop(pair):
    base, new, c = pair
    short = json.loads(json.dumps(new))
    last = short["timeseries"][-1]
    short["timeseries"][-1] = {**last, "end_s": last["start_s"] + 0.4}   # the run ended inside its last window
    page = compare_report_html(base, short, compare(base, short))
    assert _spec(page, "compare-percentiles")["partial_from"] == last["start_s"]


def test_spectrum_points_reach_the_max():
    r = result("x", "2026-01-01T00:00:00Z", ms=10.0, n=1000)
    pts = spectrum_points(r)
    assert pts[0][0] == 0.0 and pts[-1][0] == 100.0 and pts[-1][1] == pytest.approx(10.0, rel=0.01)
    assert spectrum_points({"histograms": None}) == []


def test_trend_page_marks_the_baseline():
    runs = [(result(f"r{k}", f"2026-01-0{k}T00:00:00Z", ms=10.0 + k, errors=k), f"r{k}.json") for k in (1, 2, 3)]
    t = build_trend(runs[1:], baseline=runs[0])
    page = trend_report_html(t)
    for cid in TREND_CHART_IDS:
        spec = _spec(page, cid)
        assert spec["x_time"] and spec["points"] and len(spec["x"]) == 3
        assert [m["label"] for m in spec["markers"]] == ["baseline r1"] and spec["markers"][0]["x"] == spec["x"][0]
    lat = _spec(page, "trend-latency")
    assert [s["name"] for s in lat["series"]] == ["p95", "p99"]
    assert [round(v) for v in lat["series"][0]["values"]] == [11, 12, 13]
    failed = _spec(page, "trend-failed")["series"][0]["values"]
    assert failed == pytest.approx([0.5, 1.0, 1.5])                   # k errors of 200, in %
    assert '<tr class="baseline" data-run="r1">' in page and 'data-run="r3"' in page
    assert "+18.2 %" in page                                          # r3's p95 13 vs 11 ms (rounded figures)


def test_compare_cli_writes_the_report(pair, tmp_path, capsys):
    base, new, _c = pair
    pb, pn = write_result(base, tmp_path / "a.json"), write_result(new, tmp_path / "b.json")
    out = tmp_path / "report" / "cmp.html"
    assert main(["compare", str(pb), str(pn), "--report", str(out)]) == ExitCode.REGRESSED
    assert f"report: {out}" in capsys.readouterr().out
    assert 'data-chart="compare-spectrum"' in out.read_text()
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["compare", str(pb), str(pn), "--report", str(blocker / "x.html")]) == ExitCode.ERROR
    assert "--report: cannot write" in capsys.readouterr().err


def test_budget_lines_follow_the_thresholds():
    ths = [{"metric": "latency", "expression": "p(95)<50ms", "aggregation": "p(95)", "op": "<", "value": 50.0,
            "ok": True, "observed": 10.0},
           {"metric": "latency{target:features}", "expression": "p(99)<80ms", "aggregation": "p(99)", "op": "<",
            "value": 80.0, "ok": True, "observed": 10.0},
           {"metric": "failed_rate", "expression": "rate<0.02", "aggregation": "rate", "op": "<", "value": 0.02,
            "ok": True, "observed": 0.0}]
    base = result("a", "2026-01-01T00:00:00Z", n=500)
    new = result("b", "2026-01-02T00:00:00Z", n=500, thresholds=ths)
    page = compare_report_html(base, new, compare(base, new))
    assert [b["label"] for b in _spec(page, "compare-percentiles")["budgets"]] == [
        "p95 budget 50 ms", "p99 budget 80 ms{target:features}"]
    t = build_trend([(base, "a"), (new, "b")])
    page = trend_report_html(t)
    assert [b["y"] for b in _spec(page, "trend-latency")["budgets"]] == [50.0, 80.0]
    assert [(b["y"], b["label"]) for b in _spec(page, "trend-failed")["budgets"]] == [(2.0, "failed rate budget 2 %")]
    # thresholds without a latency one: no latency line; none at all: the project's 100/200 ms
    only_failed = result("c", "2026-01-03T00:00:00Z", thresholds=ths[2:])
    assert _spec(trend_report_html(build_trend([(only_failed, "c")])), "trend-latency")["budgets"] == []
