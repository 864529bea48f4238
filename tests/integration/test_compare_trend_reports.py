"""Two runs and many runs, end to end: three short real runs (``harness run`` of a sleeping
target on this machine), then ``harness compare A B --report``, ``harness run --baseline A
--report`` and ``harness trend … --report``; the pages are opened in headless Chromium with
the network blocked (:mod:`tests.support.chromium`): no console error, no request, every
chart drawn with its series, the tables in the DOM; screenshots are kept as test
artifacts (``results/test-artifacts/<test>/``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.exitcodes import ExitCode
from harness.result.compare_html import COMPARE_CHART_IDS, TREND_CHART_IDS
from harness.result.html import BASELINE_CHART_IDS
from harness.result.summary import run_duration
from tests.support.chromium import artifacts_dir, png_size, render

#: exit codes of a run that measured: passed, or invalid because the generator was late on a loaded machine
MEASURED = (ExitCode.OK, ExitCode.INVALID_RUN)

#: the target's service time in seconds; each run sets it before it starts (in-process runs)
DELAY = [0.001]


def work() -> None:
    """The system under test: a sleep of ``DELAY[0]`` seconds."""
    time.sleep(DELAY[0])


def _run(out: Path, delay_s: float, duration: str, *extra: str) -> int:
    DELAY[0] = delay_s
    return main(["run", "--target", f"{__name__}:work", "--name", "reports-it", "--duration", duration,
                 "--rate", "40", "--progress", "off", "--no-metrics", "--quiet", "--out", str(out), *extra])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A (1 ms), B (20 ms: a regression far beyond the 0.5 ms floor and 10 %, even on a loaded
    machine), and C (1 ms, gated against A with its report), each 6 s at 40 rps."""
    d = tmp_path_factory.mktemp("runs")
    a, b, c = d / "a.json", d / "b.json", d / "c.json"
    # 98 (the generator was late: a loaded machine) still measures; the pages draw what was measured
    assert _run(a, 0.001, "6s") in MEASURED
    assert _run(b, 0.020, "6s") in MEASURED
    code_c = _run(c, 0.001, "6s", "--baseline", str(a), "--report", str(d / "c.html"))
    return {"dir": d, "a": a, "b": b, "c": c, "c_code": code_c}


def test_compare_report_of_two_real_runs(runs, tmp_path, capsys):
    out = tmp_path / "compare.html"
    code = main(["compare", str(runs["a"]), str(runs["b"]), "--report", str(out)])
    text = capsys.readouterr().out
    assert code == ExitCode.REGRESSED, text
    assert f"report: {out}" in text
    page = out.read_text()
    for cid in COMPARE_CHART_IDS:
        assert f'data-chart="{cid}"' in page
    assert 'data-metric="latency p50" data-status="regressed"' in page
    size = out.stat().st_size
    assert size < 2_000_000, size
    print(f"compare report: {size} bytes")


def test_run_with_baseline_report_has_the_comparison_table(runs):
    assert runs["c_code"] in (*MEASURED, ExitCode.REGRESSED)       # the run's verdict is not what is tested here
    page = (runs["dir"] / "c.html").read_text()
    section = page.split('id="comparison"', 1)[1]
    assert "90% interval" in section and 'data-metric="latency p95"' in section
    for cid in BASELINE_CHART_IDS:                   # and A and C overlaid, as `compare --report` draws them
        assert f'data-chart="{cid}"' in page, cid


def test_trend_report_of_three_real_runs(runs, tmp_path, capsys):
    out, js = tmp_path / "trend.html", tmp_path / "trend.json"
    code = main(["trend", str(runs["dir"]), "--baseline", str(runs["a"]), "--report", str(out), "--json", str(js)])
    cap = capsys.readouterr()
    assert code == ExitCode.OK, cap.err
    doc = json.loads(js.read_text())
    ids = [r["run_id"] for r in doc["runs"]]
    order = [json.loads(runs[k].read_text())["run_id"] for k in ("a", "b", "c")]
    assert ids == order and doc["baseline"] == order[0]              # start order, A marked
    for point, k in zip(doc["runs"], ("a", "b", "c")):                # the runs' own exact figures
        res = json.loads(runs[k].read_text())
        block = res["summary"]["all"]
        assert (point["p95_ms"], point["p99_ms"]) == (block["latency"]["p95"], block["latency"]["p99"])
        ran = block["count"] - block["outcomes"].get("dropped", 0)
        assert point["rps"] == pytest.approx(ran / run_duration(res))
        assert point["failed_rate"] == pytest.approx(block["failed_rate"])
    assert doc["runs"][1]["p50_ms"] > 15                               # B's 20 ms sleep shows
    page = out.read_text()
    for cid in TREND_CHART_IDS:
        assert f'data-chart="{cid}"' in page
    assert out.stat().st_size < 2_000_000
    print(f"trend report: {out.stat().st_size} bytes")


def _check_in_chromium(path: Path, chart_ids, shot: Path, tables: dict) -> None:
    page = render(path, screenshot=shot, height=1200, evaluate={
        "rendered": "Array.from(document.querySelectorAll('.lbh-chart[data-rendered=\"1\"]'))"
                    ".map(e => e.dataset.chart)",
        "series": "Object.fromEntries(Array.from(document.querySelectorAll('.lbh-chart')).map("
                  "e => [e.dataset.chart, Number(e.dataset.series || 0)]))",
        "canvases": "document.querySelectorAll('.lbh-chart canvas').length",
        **{name: f"document.querySelectorAll({sel!r}).length" for name, sel in tables.items()},
    })
    assert not page.problems(), page.problems()
    assert sorted(page.values["rendered"]) == sorted(chart_ids), page.values["rendered"]
    assert all(page.values["series"][cid] >= 1 for cid in chart_ids), page.values["series"]
    assert page.values["canvases"] >= len(chart_ids)
    for name in tables:
        assert page.values[name] >= 1, name
    w, h = png_size(shot.read_bytes())
    assert w == 1400 and h >= 1200


def test_reports_in_headless_chromium(runs, tmp_path, capsys):
    out = artifacts_dir("test_compare_trend_reports_in_chromium")
    cmp_html, trend_html = out / "compare.html", out / "trend.html"
    assert main(["compare", str(runs["a"]), str(runs["b"]), "--report", str(cmp_html)]) == ExitCode.REGRESSED
    assert main(["trend", str(runs["a"]), str(runs["b"]), str(runs["c"]), "--baseline", str(runs["a"]),
                 "--report", str(trend_html)]) == ExitCode.OK
    capsys.readouterr()
    _check_in_chromium(cmp_html, COMPARE_CHART_IDS, out / "compare.png",
                       {"rows": "table.comparison tr[data-metric]", "regressed": "tr[data-status='regressed']",
                        "interval_bars": "svg.interval-bar", "gate": "#gate"})
    _check_in_chromium(trend_html, TREND_CHART_IDS, out / "trend.png",
                       {"runs": "table.trend tr[data-run]", "baseline_row": "table.trend tr.baseline"})


def test_the_browser_check_catches_a_fetch_and_a_script_error(runs, tmp_path, capsys):
    """The check above can fail: the same compare page with one image from a CDN and one
    throwing script is reported (network request + console error)."""
    page = tmp_path / "bad.html"
    assert main(["compare", str(runs["a"]), str(runs["b"]), "--report", str(page)]) == ExitCode.REGRESSED
    capsys.readouterr()
    page.write_text(page.read_text().replace(
        "</body>", '<img src="https://cdn.example.com/x.png"><script>null.boom()</script></body>'))
    problems = render(page).problems()
    assert any(p.startswith("network request: https://cdn.example.com/x.png") for p in problems), problems
    assert any(p.startswith("console error:") for p in problems), problems
