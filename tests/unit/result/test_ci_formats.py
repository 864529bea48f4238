"""CI formats of a result: JUnit XML in the shape CI servers read (a failed threshold is a
``<failure>`` with observed vs limit, an invalid or interrupted run an ``<error>``, the gate's
metrics with a baseline), CSV and Markdown that read back to the result's own figures, and
``harness report --format`` / ``harness run --junit …`` writing them."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.config.thresholds import evaluate, exit_code, parse_thresholds
from harness.exitcodes import ExitCode
from harness.record.recorder import Recorder
from harness.result import ci
from harness.result.compare import compare
from harness.result.schema import load_result, write_result

THRESHOLDS = {"latency": ["p(95)<100ms"], "http_req_failed": ["rate<0.01"],
              "latency{target:b}": ["p(99)<1ms"]}


def make_result(scale: float = 1.0, errors_every: int = 25, valid: bool = True, status: str = "completed",
                n: int = 1200, duration: float = 12.0) -> dict:
    """Two targets (a, b), ``n`` requests over ``duration`` s, latencies 5..15 ms × ``scale``,
    every ``errors_every``-th an error; thresholds judged by the real evaluator."""
    rec = Recorder()
    step = int(duration * 1e9 / n)
    for i in range(n):
        t = i * step
        ms = (5.0 + (i * 7919 % 1000) / 100.0) * scale
        err = i % errors_every == 0
        rec.record("a" if i % 2 else "b", "error" if err else "ok", t, t, t + int(ms * 1e6),
                   error_type="HTTP 503" if err else None)
    results = evaluate(parse_thresholds(THRESHOLDS), rec.threshold_source(duration))
    code = exit_code(results, invalid=not valid, interrupted=status == "interrupted")
    return {"schema": "harness.result/1", "run_id": f"r-{scale}-{valid}-{status}", "status": status,
            "started_at": "2026-11-30T12:00:00Z", "elapsed_s": duration,
            "scenario": {"name": "ci|demo", "target": "a+b", "duration": duration, "timeout": 5.0,
                         "thresholds": THRESHOLDS, "executor": {}, "profile": {"type": "constant", "rate": n / duration}},
            "summary": rec.summary(), "timeseries": rec.windows(),
            "resources": {"summary": {}, "samples": []},
            "generator": {"valid": valid, "reasons": [] if valid else ["schedule lag p99 9.1 ms > bound 5 ms"],
                          "worker_errors": [], "abandoned_calls": 0, "worker_processes": 1,
                          "schedule_lag_p99_ms": 0.3, "lag_bound_ms": 5.0},
            "thresholds": [r.to_dict() for r in results],
            "verdict": {"passed": code == ExitCode.OK, "exit_code": int(code), "valid": valid,
                        "thresholds_passed": all(r.ok for r in results), "aborted_by": []},
            "histograms": rec.encode()}


def check_junit_shape(text: str) -> ET.Element:
    """The common JUnit shape (Ant / Jenkins / GitLab / surefire): <testsuites> of
    <testsuite name tests failures errors time> of <testcase classname name time>, each
    with at most one <failure|error|skipped message type>; the counts add up."""
    root = ET.fromstring(text.encode())
    assert root.tag == "testsuites"
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    for suite in root:
        assert suite.tag == "testsuite"
        for attr in ("name", "tests", "failures", "errors", "time"):
            assert suite.get(attr) is not None, attr
        float(suite.get("time"))
        cases = suite.findall("testcase")
        assert [c.tag for c in suite if c.tag != "properties"] == ["testcase"] * len(cases)
        counted = dict.fromkeys(totals, 0)
        counted["tests"] = len(cases)
        for c in cases:
            assert c.get("name") and c.get("classname")
            float(c.get("time"))
            outcomes = [e for e in c if e.tag in ("failure", "error", "skipped")]
            assert len(outcomes) <= 1
            for e in outcomes:
                assert e.get("message") is not None
                counted[{"failure": "failures", "error": "errors", "skipped": "skipped"}[e.tag]] += 1
                if e.tag != "skipped":
                    assert e.get("type")
        for k, v in counted.items():
            assert int(suite.get(k, "0")) == v, k
            totals[k] += v
    for k, v in totals.items():
        assert int(root.get(k)) == v, k
    return root


def cases_of(root: ET.Element) -> dict:
    return {c.get("name"): c for c in root.iter("testcase")}


@pytest.fixture(scope="module")
def failing() -> dict:
    return make_result()  # 4 % errors: http_req_failed fails; b's p99 < 1 ms fails


def test_junit_a_testcase_per_threshold_failed_ones_with_observed_and_limit(failing):
    root = check_junit_shape(ci.to_junit(failing))
    (suite,) = root
    assert suite.get("tests") == str(len(failing["thresholds"]) + 2)
    assert suite.get("failures") == str(sum(not t["ok"] for t in failing["thresholds"])) == "2"
    assert suite.get("errors") == "0"
    cases = cases_of(root)
    assert cases["latency: p(95)<100ms"].find("failure") is None
    fail = cases["http_req_failed: rate<0.01"].find("failure")
    assert fail.get("type") == "ThresholdFailed"
    assert fail.get("message") == "http_req_failed rate<0.01: observed 4 %, limit < 1 %"
    msg = cases["latency{target:b}: p(99)<1ms"].find("failure").get("message")
    observed = next(t["observed"] for t in failing["thresholds"] if t["metric"] == "latency{target:b}")
    assert f"observed {observed:.4g} ms, limit < 1 ms (all outcomes)" in msg
    assert cases["generator self-check"].find("error") is None and cases["run completed"].find("error") is None
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["exit_code"] == "99" and props["run_id"] == failing["run_id"]


def test_junit_passing_run_has_no_failure():
    ok = make_result(errors_every=10**9)
    ok["thresholds"] = [t for t in ok["thresholds"] if t["metric"] != "latency{target:b}"]
    root = check_junit_shape(ci.to_junit(ok))
    assert root.get("failures") == "0" and root.get("errors") == "0" and root.get("tests") == "4"


@pytest.mark.parametrize("valid, status, case, kind, word", [
    (False, "completed", "generator self-check", "InvalidRun", "exit 98"),
    (True, "interrupted", "run completed", "Interrupted", "exit 105"),
])
def test_junit_invalid_or_interrupted_run_is_an_error(valid, status, case, kind, word):
    r = make_result(valid=valid, status=status)
    root = check_junit_shape(ci.to_junit(r))
    assert root.get("errors") == "1"
    err = cases_of(root)[case].find("error")
    assert err.get("type") == kind and word in err.get("message")
    if not valid:
        assert "schedule lag p99 9.1 ms" in err.get("message")


def test_junit_with_a_comparison_has_the_gate_suite():
    base, new = make_result(errors_every=10**9), make_result(scale=1.6, errors_every=10**9)
    c = compare(base, new, resamples=100)
    root = check_junit_shape(ci.to_junit(new, c))
    assert len(root.findall("testsuite")) == 2
    gate = root.findall("testsuite")[1]
    cases = cases_of(gate)
    assert cases["latency p95"].find("failure").get("type") == "Regressed"
    assert cases["regression gate"].find("failure") is not None
    gated = [r for r in c["metrics"] if r["gated"]]
    assert int(gate.get("tests")) == len(gated) + 1
    assert int(gate.get("failures")) == len(c["gate"]["regressions"]) + 1


def test_junit_escapes_markup_in_names():
    r = make_result()
    r["scenario"]["name"] = 'a<b>&"c"'
    root = check_junit_shape(ci.to_junit(r))
    assert root.find("testsuite").get("name") == 'harness: a<b>&"c"'


def test_csv_reads_back_to_the_summary(failing):
    rows = list(csv.DictReader(io.StringIO(ci.to_csv(failing))))
    assert tuple(rows[0]) == ci.CSV_COLUMNS
    targets = list(failing["summary"]["targets"]) + ["all"]
    assert {r["target"] for r in rows} == set(targets)
    for r in rows:
        t = failing["summary"]["all"] if r["target"] == "all" else failing["summary"]["targets"][r["target"]]
        if r["unit"] == "ms":
            stats = t[r["metric"]]
            for k in ("min", "mean", "p50", "p90", "p95", "p99", "p99.9", "max"):
                assert float(r[k]) == stats[k], (r["target"], r["metric"], k)
            assert int(r["count"]) == stats["count"]
        elif r["unit"] == "fraction":
            assert float(r["value"]) == t[r["metric"]]
        else:
            assert r["metric"] == "throughput" and float(r["value"]) == pytest.approx(t["count"] / 12.0)
    metrics = [r["metric"] for r in rows if r["target"] == "all"]
    assert metrics[:4] == ["latency", "service_time", "lag", "failed_rate"] and metrics[-1] == "throughput"


def test_csv_series_reads_back_to_the_windows(failing):
    rows = list(csv.DictReader(io.StringIO(ci.to_csv_series(failing))))
    assert len(rows) == len(failing["timeseries"]) >= 12
    for row, w in zip(rows, failing["timeseries"]):
        for k, v in w.items():
            assert (row[k] == "") if v is None else (type(v)(row[k]) == v), k


def _md_table(text: str, first_header: str) -> list:
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| ") and ln.split("|")[1].strip() == first_header)
    out = []
    for ln in lines[start + 2:]:
        if not ln.startswith("|"):
            break
        cells = [c.strip().replace("\\|", "|") for c in ln.strip("|").replace("\\|", "\x00").split("|")]
        out.append([c.replace("\x00", "|") for c in cells])
    return out


def test_markdown_verdict_thresholds_and_figures(failing):
    md = ci.to_markdown(failing)
    assert md.startswith("### ❌ ci\\|demo: thresholds failed (exit 99)")
    rows = _md_table(md, "")
    assert len(rows) == len(failing["thresholds"])
    for row, th in zip(rows, failing["thresholds"]):
        assert row[0] == ("✅" if th["ok"] else "❌")
        assert row[1] == f"`{th['metric']}`" and row[2] == f"`{th['expression']}`"
    figures = {r[0]: r for r in _md_table(md, "target")}
    assert set(figures) == {"a", "b", "all"}
    for name, row in figures.items():
        t = failing["summary"]["all"] if name == "all" else failing["summary"]["targets"][name]
        assert int(row[1]) == t["count"]
        assert row[2] == f"{t['failed_rate']:.2%}"
        assert float(row[4]) == pytest.approx(t["latency"]["p95"], abs=0.005)


def test_markdown_invalid_run_and_gate():
    base, new = make_result(errors_every=10**9), make_result(scale=1.6, errors_every=10**9)
    new["thresholds"] = [t for t in new["thresholds"] if t["metric"] != "latency{target:b}"]
    new["verdict"].update(exit_code=0, passed=True)
    md = ci.to_markdown(new, compare(base, new, resamples=100))
    assert md.startswith("### 📉 ci\\|demo: regressed (exit 97)") and "**Regression gate: FAILED**" in md
    assert "regressed" in [r[-1] for r in _md_table(md, "metric") if r[0] == "latency p95"]
    bad = ci.to_markdown(make_result(valid=False))
    assert "exit 98" in bad.splitlines()[0] and "**Invalid run**" in bad and "schedule lag p99 9.1 ms" in bad


def test_write_ci_appends_markdown_to_the_step_summary(tmp_path, monkeypatch, failing):
    summary = tmp_path / "step_summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    ci.write_ci(failing, "markdown", summary)
    assert summary.read_text().startswith("earlier step\n### ❌")
    other = ci.write_ci(failing, "markdown", tmp_path / "x.md")
    ci.write_ci(failing, "markdown", other)
    assert other.read_text().count("### ") == 1
    with pytest.raises(ValueError, match="known: junit, csv, csv-series, markdown"):
        ci.render(failing, "tap")


@pytest.mark.parametrize("fmt, suffix", [("junit", ".junit.xml"), ("csv", ".csv"), ("csv-series", ".series.csv"),
                                         ("markdown", ".md"), ("html", ".html")])
def test_report_command_formats(tmp_path, capsys, failing, fmt, suffix):
    path = write_result(failing, tmp_path / "r.json")
    assert main(["report", str(path), "--format", fmt]) == 0
    out = tmp_path / ("r" + suffix)
    assert out.exists() and f"report: {out}" in capsys.readouterr().out
    if fmt == "junit":
        check_junit_shape(out.read_text())
    elif fmt != "html":
        assert out.read_text() == ci.render(load_result(path), fmt)


def test_report_command_stdout_and_bad_input(tmp_path, capsys, failing):
    path = write_result(failing, tmp_path / "r.json")
    assert main(["report", str(path), "-f", "markdown", "--out", "-"]) == 0
    assert capsys.readouterr().out == ci.to_markdown(load_result(path))
    assert main(["report", str(path), "-f", "html", "-o", "-"]) == 2
    assert "needs a file path" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["report", str(path), "--format", "tap"])
    assert exc.value.code == 2
    (tmp_path / "bad.json").write_text(json.dumps({"schema": "x"}))
    assert main(["report", str(tmp_path / "bad.json"), "-f", "junit"]) == 2


def test_run_writes_the_ci_outputs(tmp_path, capsys):
    """``harness run --junit --csv --csv-series --summary-md``: written with the run's
    verdict (exit 99 here: an impossible threshold), the JUnit failure naming it."""
    T = "tests.support.targets_capacity"
    out = {k: tmp_path / name for k, name in (("junit", "j.xml"), ("csv", "s.csv"), ("csv-series", "w.csv"),
                                              ("summary-md", "s.md"))}
    argv = ["run", "--target", f"{T}:flagged", "--payload", f"{T}:ordinal", "--rate", "20", "--duration", "1s",
            "--no-metrics", "--progress", "off", "-q", "--out", str(tmp_path / "r.json"),
            "--threshold", "http_req_duration=p(50)<0.001ms", "--failure-threshold", "off"]
    for flag, p in out.items():
        argv += [f"--{flag}", str(p)]
    code = main(argv)
    assert code in (int(ExitCode.THRESHOLDS_FAILED), int(ExitCode.INVALID_RUN))  # a loaded box may void the run
    root = check_junit_shape(out["junit"].read_text())
    fail = cases_of(root)["http_req_duration: p(50)<0.001ms"].find("failure")
    assert "observed" in fail.get("message") and "limit < 0.001 ms" in fail.get("message")
    result = load_result(tmp_path / "r.json")
    assert out["csv"].read_text() == ci.to_csv(result)
    assert out["csv-series"].read_text() == ci.to_csv_series(result)
    assert out["summary-md"].read_text().startswith("### ")
    assert Path(tmp_path / "r.json").exists()


def test_after_run_reports_a_ci_file_it_cannot_write(tmp_path, capsys, failing):
    """The result is written; a CI file that cannot be is named on stderr, the run's own
    failure code is kept and a passing run exits 1 (the CI step must not go green without it)."""
    from types import SimpleNamespace

    from harness.cli.run import after_run

    args = SimpleNamespace(quiet=True, report=None, junit=str(tmp_path), csv=None, csv_series=None,
                           summary_md=str(tmp_path / "ok.md"))
    assert after_run(args, failing, tmp_path / "r.json") == int(ExitCode.THRESHOLDS_FAILED)
    assert f"--junit: cannot write {tmp_path}" in capsys.readouterr().err
    assert (tmp_path / "ok.md").read_text() == ci.to_markdown(failing)
    passing = {**failing, "verdict": {**failing["verdict"], "exit_code": 0}}
    assert after_run(args, passing, tmp_path / "r.json") == int(ExitCode.ERROR)
    args.junit = str(tmp_path / "j.xml")
    assert after_run(args, passing, tmp_path / "r.json") == 0 and (tmp_path / "j.xml").exists()


def test_junit_names_the_threshold_that_aborted_the_run():
    r = make_result(status="aborted")
    r["verdict"]["aborted_by"] = ["http_req_failed rate<0.01"]
    root = check_junit_shape(ci.to_junit(r))
    cases = cases_of(root)
    assert "aborted by this threshold" in cases["http_req_failed: rate<0.01"].find("failure").text
    assert "aborted" not in (cases["latency{target:b}: p(99)<1ms"].find("failure").text or "")
    assert cases["run completed"].find("error") is None  # the failure is the threshold's, counted once
