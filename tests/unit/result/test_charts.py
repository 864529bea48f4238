"""The chart builder (harness/result/charts.py): the JSON each chart is drawn from, escaping,
the partial window, budgets off the scale, spectrum alignment. The browser side is checked
in tests/integration/test_report_html.py (headless Chromium)."""

from __future__ import annotations

import json
import re

import pytest

from harness.result.charts import (UPLOT_VERSION, Budget, Marker, Series, SpectrumSeries, chart_assets,
                                   spectrum_chart, spectrum_x, time_chart)


def _spec(fig: str) -> dict:
    m = re.search(r'<script type="application/json" id="spec-[\w-]+">(.*?)</script>', fig, re.S)
    assert m, fig
    return json.loads(m.group(1))


def test_assets_embed_uplot_once_and_fetch_nothing():
    a = chart_assets()
    assert f"uPlot (v{UPLOT_VERSION})" in a or f"v{UPLOT_VERSION}" in a
    assert a.count("<script>") == 2 and a.count("<style>") == 1
    assert not re.search(r"""\b(src|href)\s*=|url\(|@import|\bfetch\(|XMLHttpRequest""", a)


def test_strings_cannot_escape_their_elements():
    hostile = "</script><script>alert(1)</script> & <b>"
    fig = time_chart("c1", hostile, [0.5, 1.5], [Series(hostile, [1, 2])], y_unit="ms",
                     markers=[Marker(1.0, hostile)], budgets=[Budget(100, hostile)])
    assert "<script>alert" not in fig and "<b>" not in fig
    assert fig.count("</script>") == 1  # only the data element's own end
    spec = _spec(fig)
    assert spec["series"][0]["name"] == hostile and spec["markers"][0]["label"] == hostile
    with pytest.raises(ValueError, match="chart_id"):
        time_chart('x" onload="1', "t", [1], [Series("a", [1])], y_unit="ms")


def test_nan_and_infinities_become_gaps_and_lengths_must_match():
    spec = _spec(time_chart("c", "t", [1, 2, 3], [Series("a", [1.0, float("nan"), float("inf")])], y_unit="ms"))
    assert spec["series"][0]["values"] == [1.0, None, None]
    with pytest.raises(ValueError, match="has 2 values for 3 x values"):
        time_chart("c", "t", [1, 2, 3], [Series("a", [1, 2])], y_unit="ms")
    with pytest.raises(ValueError, match="ascending"):
        time_chart("c", "t", [2, 1], [Series("a", [1, 2])], y_unit="ms")


def test_partial_window_is_split_off_and_joined_to_the_last_full_point():
    spec = _spec(time_chart("c", "t", [0.5, 1.5, 2.2], [Series("rate", [60, 60, 59])], y_unit="req/s",
                            partial_from=2.0))
    s = spec["series"][0]
    assert s["values"] == [60, 60, None]
    assert s["partial_values"] == [None, 60, 59]
    assert spec["partial_from"] == 2.0


def test_no_data_is_said_not_drawn():
    fig = time_chart("c", "t", [1, 2], [Series("a", [None, None])], y_unit="ms")
    assert 'class="lbh-chart nodata"' in fig and "no data" in fig and "application/json" not in fig


def test_budget_off_the_data_is_named_as_an_edge_marker():
    fig = time_chart("c", "t", [1, 2], [Series("p95", [2.0, 3.0])], y_unit="ms",
                     budgets=[Budget(100, "p95 budget 100 ms"), Budget(2.5, "tight")])
    assert "p95 budget 100 ms: above every value (max 3 ms); marked at the top edge" in fig
    assert "tight:" not in fig  # within the data: a line, no note
    assert _spec(fig)["y_max"] is None


def test_spectrum_aligns_series_and_places_the_max_past_the_last_percentile():
    fig = spectrum_chart("s", "t", [SpectrumSeries("A", [0, 90, 99, 100], [1, 2, 3, 9]),
                                    SpectrumSeries("B", [0, 90, 99.9, 100], [1, 2.5, 4, 8])],
                         budgets=[Budget(100, "p95 budget")])
    spec = _spec(fig)
    assert spec["x"] == pytest.approx([1, 10, 100, 1000, 10000])
    assert spec["x_labels"] == ["p0", "p90", "p99", "p99.9", "max"]
    a, b = (s["values"] for s in spec["series"])
    assert a == [1, 2, 3, None, 9] and b == [1, 2.5, None, 4, 8]
    assert spectrum_x(99.0) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="outside 0"):
        spectrum_chart("s", "t", [SpectrumSeries("A", [101], [1])])
