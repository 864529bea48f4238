"""``harness trend``: the table on stdout, ``--json`` and ``--report`` written, and every bad
input an exit 2 with one line naming the file or the clash (no traceback)."""

from __future__ import annotations

import json

import pytest

from harness.cli.main import main
from harness.exitcodes import ExitCode
from harness.result.schema import write_result
from tests.support.synthetic_results import result


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "results"
    write_result(result("run-2", "2026-01-02T00:00:00Z", ms=12), d / "a.json")
    write_result(result("run-1", "2026-01-01T00:00:00Z", ms=10), d / "b.json")
    write_result(result("run-3", "2026-01-03T00:00:00Z", ms=30, errors=20), d / "c.json")
    return d


def test_table_json_and_report(folder, tmp_path, capsys):
    out_json, out_html = tmp_path / "t.json", tmp_path / "t.html"
    code = main(["trend", str(folder), "--baseline", str(folder / "b.json"), "--json", str(out_json),
                 "--report", str(out_html)])
    cap = capsys.readouterr()
    assert code == ExitCode.OK, cap.err
    lines = cap.out.splitlines()
    assert lines[0] == "trend of 3 run(s), baseline run-1"
    assert [ln.split()[0] for ln in lines[2:5]] == ["*", "run-2", "run-3"] and lines[2].split()[1] == "run-1"
    assert "+199.9 %" in lines[4]                                  # p95 30.02 ms vs 10.01 ms (HDR)
    doc = json.loads(out_json.read_text())
    assert doc["baseline"] == "run-1" and [r["run_id"] for r in doc["runs"]] == ["run-1", "run-2", "run-3"]
    page = out_html.read_text()
    assert "run-3" in page and 'data-run="run-1"' in page and f"report: {out_html}" in cap.out


@pytest.mark.parametrize("setup, message", [
    (lambda d: d / "missing.json", "missing.json: no such file or folder"),
    (lambda d: (d / "x.json").write_text("[1, 2]") and d / "x.json", "x.json: not a harness result"),
    (lambda d: (d / "y.json").write_text("{not json") and d / "y.json", "y.json: not JSON"),
])
def test_bad_input_exit_2_names_the_file(folder, tmp_path, capsys, setup, message):
    bad = setup(tmp_path)
    assert main(["trend", str(folder), str(bad)]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err.startswith("harness: trend: ") and message in err and "Traceback" not in err


def test_mixed_scenarios_exit_2_then_scenario_keeps_one(folder, capsys):
    write_result(result("other", "2026-01-04T00:00:00Z", name="smoke"), folder / "d.json")
    assert main(["trend", str(folder)]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "2 different scenarios" in err and "--scenario NAME" in err
    assert main(["trend", str(folder), "--scenario", "nightly"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "trend of 3 run(s)" in out and "skipped" in out and "d.json" in out
    assert main(["trend", str(folder), "--allow-mixed"]) == ExitCode.OK


def test_no_arguments_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["trend"])
    assert exc.value.code == 2


def test_unwritable_report_is_an_error(folder, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["trend", str(folder), "--report", str(blocker / "sub" / "t.html")]) == ExitCode.ERROR
    assert "--report: cannot write" in capsys.readouterr().err
