"""compare: synthetic results with known differences classify correctly (1 % / 10 % lines,
too few samples give no verdict), and the gate's exit code."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.cli.compare import handle as cmd_compare
from harness.exitcodes import ExitCode
from harness.result.compare import classify, compare, format_comparison, gate_exit_code
from harness.record.recorder import Recorder
from harness.result.schema import write_result


def synthetic(n: int = 5000, scale: float = 1.0, errors: int = 0, dropped: int = 0, seed: int = 1,
              duration: float = 50.0, target: str = "features") -> dict:
    """A result whose latencies are a fixed lognormal sample (ms) times ``scale``."""
    rng = np.random.default_rng(seed)
    lat_ms = np.exp(rng.normal(np.log(20.0), 0.5, n)) * scale
    rec = Recorder()
    for i, ms in enumerate(lat_ms):
        t = i * 10_000_000
        end = t + int(ms * 1e6)
        if i < dropped:
            rec.record(target, "dropped", t, None, end)
        elif i < dropped + errors:
            rec.record(target, "error", t, t, end, error_type="ValueError")
        else:
            rec.record(target, "ok", t, t, end)
    return {"schema": "harness.result/1", "run_id": f"synthetic-{scale}-{n}", "status": "completed",
            "scenario": {"name": "synthetic", "target": target, "duration": duration,
                         "profile": {"type": "constant", "rate": n / duration}},
            "summary": rec.summary(), "generator": {"valid": True}, "verdict": {"exit_code": 0},
            "resources": {"summary": {}, "samples": []}}


def row(c: dict, metric: str) -> dict:
    return next(r for r in c["metrics"] if r["metric"] == metric)


@pytest.fixture(scope="module")
def base() -> dict:
    return synthetic()


def test_identical_runs_are_unchanged_and_pass(base):
    c = compare(base, synthetic())
    judged = [r for r in c["metrics"] if r["gated"] and r["status"] not in ("no data", "insufficient samples")]
    assert row(c, "latency p99.9")["status"] == "insufficient samples"   # 5000 < 10 / 0.001
    assert judged and all(r["status"] == "unchanged" for r in judged), [(r["metric"], r["status"]) for r in judged]
    assert c["gate"]["passed"] and c["gate"]["exit_code"] == 0


@pytest.mark.parametrize("scale,status,beyond", [
    (1.005, "unchanged", False),   # 0.5 %: under the 1 % line
    (0.8, "improved", False),
    (1.05, "regressed", False),    # worse, within the 10 % tolerance
    (1.2, "regressed", True),      # worse by more than 10 %: fails
])
def test_latency_changes_classify(base, scale, status, beyond):
    c = compare(base, synthetic(scale=scale))
    for m in ("latency p50", "latency p95", "latency p99", "latency mean"):
        r = row(c, m)
        assert r["status"] == status, (m, r)
        assert r["beyond_tolerance"] is beyond
        if status != "unchanged":
            assert r["change_percent"] == pytest.approx((scale - 1) * 100, abs=0.5)
    assert c["gate"]["passed"] is (not beyond)
    assert c["gate"]["exit_code"] == (ExitCode.REGRESSED if beyond else 0)
    if beyond:
        assert "latency p95" in c["gate"]["regressions"]


def test_error_rate_and_throughput(base):
    c = compare(base, synthetic(errors=250))        # 0 % -> 5 %
    r = row(c, "error rate")
    assert r["status"] == "regressed" and r["beyond_tolerance"] and r["note"] == "baseline was 0"
    assert not c["gate"]["passed"]
    small = compare(synthetic(errors=10), synthetic(errors=12))   # 0.20 % -> 0.24 %: within 0.1 pp
    assert row(small, "error rate")["status"] == "unchanged"
    t = compare(base, synthetic(dropped=1000))      # 20 % never ran: throughput down 20 %
    r = row(t, "throughput (rps)")
    assert r["status"] == "regressed" and r["beyond_tolerance"]
    assert r["change_percent"] == pytest.approx(-20.0)
    assert row(compare(synthetic(dropped=1000), base), "throughput (rps)")["status"] == "improved"


def test_too_few_samples_give_no_verdict():
    c = compare(synthetic(n=50), synthetic(n=50, scale=2.0))
    assert {r["status"] for r in c["metrics"] if r["gated"]} <= {"insufficient samples", "no data"}
    assert not c["gate"]["passed"] and "no verdict" in c["gate"]["reason"]
    # 500 requests: enough for p50 / p95 (10 beyond them), not for p99 (needs 1000)
    c = compare(synthetic(n=500), synthetic(n=500, scale=1.5))
    assert row(c, "latency p95")["status"] == "regressed"
    assert row(c, "latency p99")["status"] == "insufficient samples"
    assert row(c, "latency p99.9")["status"] == "insufficient samples"
    assert "1000" in row(c, "latency p99")["note"]


def test_max_is_shown_not_gated(base):
    c = compare(base, synthetic(scale=1.5))
    r = row(c, "latency max")
    assert r["gated"] is False and r["status"] == "regressed"


def test_classify_lines():
    assert classify(100, 100.9, lower_is_better=True)["status"] == "unchanged"
    assert classify(100, 101.1, lower_is_better=True)["status"] == "regressed"
    assert classify(100, 109.9, lower_is_better=True)["beyond_tolerance"] is False
    assert classify(100, 110.1, lower_is_better=True)["beyond_tolerance"] is True
    assert classify(100, 89, lower_is_better=False)["beyond_tolerance"] is True   # throughput down 11 %
    assert classify(100, 150, lower_is_better=False)["status"] == "improved"
    assert classify(None, 1, lower_is_better=True)["status"] == "no data"
    assert classify(0, 0, lower_is_better=True)["status"] == "unchanged"


def test_gate_exit_code(base):
    ok = compare(base, synthetic())
    bad = compare(base, synthetic(scale=1.3))
    assert gate_exit_code(0, ok) == 0
    assert gate_exit_code(0, bad) == ExitCode.REGRESSED
    assert gate_exit_code(99, ok) == 99 and gate_exit_code(98, bad) == 98


def test_per_target_rows_and_scenario_warning():
    b = synthetic()
    n = synthetic(scale=1.3)
    n["scenario"]["duration"] = 60.0
    c = compare(b, n)
    assert any("differ in duration" in w for w in c["warnings"])
    assert "gate: FAILED (exit 97)" in format_comparison(c)


def test_cmd_compare(tmp_path, base, capsys):
    pb = write_result(json.loads(json.dumps(base)), tmp_path / "base.json")
    pn = write_result(json.loads(json.dumps(synthetic(scale=1.25))), tmp_path / "new.json")
    args = type("A", (), dict(base=str(pb), new=str(pn), json_out=str(tmp_path / "c.json"), all_rows=False,
                             min_samples=100, fail_above=0.10, unchanged_below=0.01))()
    assert cmd_compare(args) == ExitCode.REGRESSED
    out = capsys.readouterr().out
    assert "latency p95" in out and "FAIL" in out
    assert json.loads((tmp_path / "c.json").read_text())["schema"] == "harness.result.compare/1"
    args.new = str(pb)
    assert cmd_compare(args) == 0
    args.new = str(tmp_path / "missing.json")
    assert cmd_compare(args) == 2


def test_after_run_gate_and_report(tmp_path, base, capsys):
    from harness.cli.run import after_run

    from harness.cli.main import main
    from harness.result.schema import load_result

    pb = write_result(json.loads(json.dumps(base)), tmp_path / "base.json")
    loaded = load_result(str(pb))
    new = {**synthetic(scale=1.3), "verdict": {"exit_code": 0, "passed": True}, "thresholds": []}
    args = type("A", (), dict(baseline=str(pb), report="", quiet=False))()
    assert after_run(args, new, tmp_path / "new.json", baseline=loaded) == ExitCode.REGRESSED
    out = capsys.readouterr().out
    assert "gate: FAILED (exit 97)" in out and (tmp_path / "new.html").exists()
    assert 'id="comparison"' in (tmp_path / "new.html").read_text()
    failed = {**new, "verdict": {"exit_code": 99, "passed": False}}
    assert after_run(args, failed, tmp_path / "new.json", baseline=loaded) == 99  # the run's own failure wins
    same = {**synthetic(), "verdict": {"exit_code": 0, "passed": True}, "thresholds": []}
    args.report = None
    assert after_run(args, same, tmp_path / "same.json", baseline=loaded) == 0
    # a baseline that cannot be read is a usage error before any load is sent
    out_json = tmp_path / "never.json"
    assert main(["run", "--target", "noop", "--duration", "30s", "--no-metrics", "--baseline",
                 str(tmp_path / "missing.json"), "--out", str(out_json)]) == 2
    assert "--baseline" in capsys.readouterr().err and not out_json.exists()
