"""trend: runs are ordered by when they started (not by file name), each carries the
summary's exact figures (p95, p99, throughput over the run's duration, failed rate), the
baseline is marked (``--baseline`` or a result flagged ``"baseline": true``), a baseline
copied next to the runs and a pooled ``--repeat`` result are not counted twice, and bad or
mixed inputs are refused with a message naming the file or the clash."""

from __future__ import annotations

import json

import pytest

from harness.result.schema import write_result
from harness.result.trend import (TREND_SCHEMA, TrendError, build_trend, expand_inputs, format_trend, load_trend,
                                  trend_point)
from tests.support.synthetic_results import result


def test_point_has_the_summary_figures():
    r = result("a", "2026-01-01T00:00:00+00:00", ms=20.0, n=200, errors=10, dropped=50, duration=10.0)
    p = trend_point(r, "a.json")
    assert p.p95_ms == pytest.approx(20.0, rel=0.01) and p.p99_ms == pytest.approx(20.0, rel=0.01)
    assert p.count == 250
    assert p.rps == pytest.approx(200 / 10.0)                 # dropped requests never ran
    assert p.failed_rate == pytest.approx(60 / 250)           # errors + dropped over all
    assert p.start_ts == pytest.approx(1767225600.0)


def test_runs_are_ordered_by_start_time_not_by_input_order():
    runs = [(result("late", "2026-01-03T00:00:00Z", ms=30), "z.json"),
            (result("early", "2026-01-01T00:00:00Z", ms=10), "y.json"),
            (result("middle", "2026-01-02T00:00:00+01:00", ms=20), "x.json")]
    t = build_trend(runs)
    assert [r.run_id for r in t.runs] == ["early", "middle", "late"]
    assert [round(r.p95_ms) for r in t.runs] == [10, 20, 30]
    assert t.baseline is None


def test_time_zones_order_correctly():
    # 00:30 at +01:00 is 23:30 UTC the day before: it ran first
    t = build_trend([(result("b", "2026-01-02T00:00:00Z"), "b"), (result("a", "2026-01-02T00:30:00+01:00"), "a")])
    assert [r.run_id for r in t.runs] == ["a", "b"]


def test_baseline_given_is_drawn_marked_and_not_duplicated():
    base = result("base", "2026-01-01T00:00:00Z", ms=10)
    runs = [(base, "results/base.json"), (result("n1", "2026-01-02T00:00:00Z", ms=12), "n1.json")]
    t = build_trend(runs, baseline=(base, "baseline.json"))
    assert [r.run_id for r in t.runs] == ["base", "n1"]
    assert t.baseline_index == 0 and t.runs[0].baseline and not t.runs[1].baseline
    assert any("shown once" in n for n in t.notes)
    text = format_trend(t)
    assert "baseline base" in text and "+20.0 %" in text  # p95 12 ms vs 10 ms
    assert text.splitlines()[2].startswith("* base")


def test_baseline_given_outside_the_results_is_added():
    t = build_trend([(result("n1", "2026-01-02T00:00:00Z"), "n1.json")],
                    baseline=(result("old", "2025-12-01T00:00:00Z"), "old.json"))
    assert [r.run_id for r in t.runs] == ["old", "n1"] and t.baseline.run_id == "old"


def test_flagged_baseline_and_two_flags_refused():
    runs = [(result("a", "2026-01-01T00:00:00Z"), "a"), (result("b", "2026-01-02T00:00:00Z", baseline=True), "b")]
    assert build_trend(runs).baseline.run_id == "b"
    runs.append((result("c", "2026-01-03T00:00:00Z", baseline=True), "c"))
    with pytest.raises(TrendError, match="more than one result is flagged as the baseline"):
        build_trend(runs)


def test_mixed_scenarios_refused_unless_asked_or_filtered():
    runs = [(result("a", "2026-01-01T00:00:00Z", name="nightly"), "a.json"),
            (result("b", "2026-01-02T00:00:00Z", name="smoke", target="risk-var"), "b.json")]
    with pytest.raises(TrendError) as exc:
        build_trend(runs)
    msg = str(exc.value)
    assert "2 different scenarios" in msg and "'smoke' (target risk-var)" in msg and "--scenario" in msg
    assert len(build_trend(runs, allow_mixed=True).runs) == 2
    t = build_trend(runs, scenario="smoke")
    assert [r.run_id for r in t.runs] == ["b"] and t.skipped == [("a.json", "scenario 'nightly', not 'smoke'")]
    with pytest.raises(TrendError, match="no result of scenario 'other'"):
        build_trend(runs, scenario="other")


def test_pooled_repeat_result_is_not_counted_twice():
    parts = [result(f"r{k}", f"2026-01-01T00:0{k}:00Z") for k in (1, 2)]
    pooled = result("pooled-r1+r2", "2026-01-01T00:01:00Z", repeats={"count": 2, "run_ids": ["r1", "r2"]})
    t = build_trend([(parts[0], "x.repeat-1.json"), (parts[1], "x.repeat-2.json"), (pooled, "x.json")])
    assert [r.run_id for r in t.runs] == ["r1", "r2"]
    assert t.skipped and t.skipped[0][0] == "x.json"
    # without its parts the pooled result is a run of its own
    assert [r.run_id for r in build_trend([(pooled, "x.json")]).runs] == ["pooled-r1+r2"]


def test_segments_of_a_merged_run_are_not_drawn_beside_it():
    segs = [result(f"seg{k}", "2026-01-01T00:00:00Z") for k in (0, 1)]
    merged = result("merged-seg0+seg1", "2026-01-01T00:00:00Z",
                    merge={"parts": [{"name": f"s{k}.json", "run_id": f"seg{k}"} for k in (0, 1)]})
    t = build_trend([(segs[0], "s0.json"), (segs[1], "s1.json"), (merged, "m.json"),
                     (result("next", "2026-01-02T00:00:00Z"), "n.json")])
    assert [r.run_id for r in t.runs] == ["merged-seg0+seg1", "next"]
    assert sorted(p for p, _ in t.skipped) == ["s0.json", "s1.json"]


def test_missing_start_time_names_the_file():
    with pytest.raises(TrendError, match=r"old\.json: started_at: missing"):
        build_trend([(result("a", ""), "old.json")])
    with pytest.raises(TrendError, match=r"w\.json: started_at: not an ISO 8601 time"):
        build_trend([(result("a", "yesterday"), "w.json")])


def test_no_results():
    with pytest.raises(TrendError, match="no results"):
        build_trend([])


def test_load_from_files_and_folders(tmp_path):
    d = tmp_path / "results"
    write_result(result("b", "2026-01-02T00:00:00Z"), d / "a-named-first.json")
    write_result(result("a", "2026-01-01T00:00:00Z"), d / "b-named-second.json")
    (d / "comparison.json").write_text(json.dumps({"schema": "harness.result.compare/2", "metrics": []}))
    (d / "notes.txt").write_text("not json")
    extra = write_result(result("c", "2026-01-03T00:00:00Z"), tmp_path / "c.json")
    t = load_trend([d, extra, d / "a-named-first.json"])   # a file given twice is read once
    assert [r.run_id for r in t.runs] == ["a", "b", "c"]
    assert t.skipped == [(str(d / "comparison.json"), "not a result (schema 'harness.result.compare/2')")]
    doc = t.to_dict()
    assert doc["schema"] == TREND_SCHEMA and [r["run_id"] for r in doc["runs"]] == ["a", "b", "c"]
    json.dumps(doc)


def test_bad_inputs_name_the_file(tmp_path):
    good = write_result(result("a", "2026-01-01T00:00:00Z"), tmp_path / "good.json")
    other = tmp_path / "comparison.json"
    other.write_text(json.dumps({"schema": "harness.result.compare/2"}))
    with pytest.raises(TrendError, match=r"comparison\.json: not a harness result"):
        load_trend([good, other])                                 # named on the command line: an error
    broken = tmp_path / "dir"
    broken.mkdir()
    (broken / "cut.json").write_text('{"schema": "harness.result/1", "run_id"')
    with pytest.raises(TrendError, match=r"cut\.json: not JSON"):
        load_trend([broken])                                      # a broken result in a folder: an error too
    with pytest.raises(TrendError, match=r"missing\.json: no such file or folder"):
        load_trend([tmp_path / "missing.json"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TrendError, match="a folder without result files"):
        expand_inputs([empty])
    with pytest.raises(TrendError, match=r"--baseline: .*nope\.json"):
        load_trend([good], baseline=tmp_path / "nope.json")


def test_text_table_columns():
    t = build_trend([(result("a", "2026-01-01T00:00:00Z", ms=10, errors=4), "a"),
                     (result("b", "2026-01-02T12:30:00Z", ms=15), "b")])
    lines = format_trend(t).splitlines()
    assert lines[0] == "trend of 2 run(s), no baseline"
    for col in ("run id", "started (UTC)", "p95 ms", "p99 ms", "rps", "failed %"):
        assert col in lines[1]
    assert "2026-01-02 12:30:00" in lines[3] and "2.00" in lines[2]   # 4 of 200 failed
