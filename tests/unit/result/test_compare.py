"""compare: synthetic results (with their per-window histograms) with known differences get
the right verdict from their confidence intervals (10 % line on the interval, absolute
floors, too few samples or windows give no verdict), the table and JSON carry the
intervals, and the gate's exit code (``compare`` and ``run --baseline``, ``--repeat``)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from harness.cli.compare import handle as cmd_compare
from harness.exitcodes import ExitCode
from harness.record.recorder import Recorder
from harness.result.compare import (COMPARE_SCHEMA, classify, compare, format_comparison, gate_exit_code, judge,
                                    pool_results)
from harness.result.schema import write_result


def synthetic(n: int = 5000, scale: float = 1.0, errors: int = 0, dropped: int = 0, seed: int = 1,
              duration: float = 50.0, target: str = "features", median_ms: float = 20.0,
              levels: np.ndarray | None = None) -> dict:
    """A result of ``n`` requests evenly spread over ``duration`` s whose latencies are a
    fixed lognormal sample (ms) times ``scale`` (times ``levels[window]`` when given), with
    its summary and encoded per-window histograms, as ``harness run`` writes them."""
    rng = np.random.default_rng(seed)
    lat_ms = np.exp(rng.normal(np.log(median_ms), 0.5, n)) * scale
    step = int(duration * 1e9 / n)
    if levels is not None:
        lat_ms = lat_ms * levels[np.minimum((np.arange(n) * step) // 1_000_000_000, len(levels) - 1)]
    kind = np.zeros(n, dtype=np.int8)   # dropped and errors spread evenly over the run
    kind[np.linspace(0, n - 1, dropped + errors).astype(int)[::-1][: dropped + errors]] = 2
    kind[np.linspace(0, n - 1, dropped).astype(int)] = 1
    rec = Recorder()
    for i, ms in enumerate(lat_ms):
        t = i * step
        end = t + int(ms * 1e6)
        if kind[i] == 1:
            rec.record(target, "dropped", t, None, end)
        elif kind[i] == 2:
            rec.record(target, "error", t, t, end, error_type="ValueError")
        else:
            rec.record(target, "ok", t, t, end)
    return {"schema": "harness.result/1", "run_id": f"synthetic-{scale}-{n}-{seed}", "status": "completed",
            "scenario": {"name": "synthetic", "target": target, "duration": duration,
                         "profile": {"type": "constant", "rate": n / duration}},
            "summary": rec.summary(), "generator": {"valid": True}, "verdict": {"exit_code": 0},
            "resources": {"summary": {}, "samples": []}, "histograms": rec.encode(),
            "started_at": "2026-01-01T00:00:00Z", "elapsed_s": duration}


def row(c: dict, metric: str) -> dict:
    return next(r for r in c["metrics"] if r["metric"] == metric)


@pytest.fixture(scope="module")
def base() -> dict:
    return synthetic()


def test_identical_runs_are_unchanged_and_pass(base):
    c = compare(base, synthetic())
    assert c["schema"] == COMPARE_SCHEMA == "harness.result.compare/2"
    judged = [r for r in c["metrics"] if r["gated"] and r["status"] not in ("no data", "insufficient samples")]
    assert row(c, "latency p99.9")["status"] == "insufficient samples"   # 5000 < 10 / 0.001
    assert judged and all(r["status"] == "unchanged" for r in judged), [(r["metric"], r["status"]) for r in judged]
    for r in judged:
        lo, hi = r["interval_percent"]
        assert lo <= (r["change_percent"] or 0.0) <= hi and hi - lo < 25.0, r
    assert c["gate"]["passed"] and c["gate"]["exit_code"] == 0


def test_same_inputs_same_verdict(base):
    other = synthetic(seed=2, scale=1.08)
    a, b = compare(base, other), compare(base, other)
    assert [r["interval_percent"] for r in a["metrics"]] == [r["interval_percent"] for r in b["metrics"]]


@pytest.mark.parametrize("scale,status", [
    (1.005, "unchanged"),   # 0.5 %
    (0.8, "improved"),      # the whole interval better by more than 1 %
    (1.05, "unchanged"),    # worse, but the interval stays within the 10 % tolerance
    (1.2, "regressed"),     # the whole interval worse by more than 10 %: fails
])
def test_latency_changes_classify(base, scale, status):
    c = compare(base, synthetic(scale=scale))
    for m in ("latency p50", "latency p95", "latency mean", "service time p50"):
        r = row(c, m)
        assert r["status"] == status, (m, r)
        assert r["beyond_tolerance"] is (status == "regressed")
        assert r["change_percent"] == pytest.approx((scale - 1) * 100, abs=0.6)
        lo, hi = r["interval_percent"]
        assert lo <= r["change_percent"] <= hi
    if scale == 1.05:
        assert row(c, "latency mean")["note"] == "worse, within the 10% tolerance"
    beyond = status == "regressed"
    assert c["gate"]["passed"] is (not beyond)
    assert c["gate"]["exit_code"] == (ExitCode.REGRESSED if beyond else 0)
    if beyond:
        assert "latency p95" in c["gate"]["regressions"]
        assert row(c, "latency p99")["status"] in ("regressed", "inconclusive")


def test_error_rate_failed_rate_and_throughput(base):
    c = compare(base, synthetic(errors=250))        # 0 % -> 5 %
    r = row(c, "error rate")
    assert r["status"] == "regressed" and r["beyond_tolerance"] and "baseline was 0" in r["note"]
    assert row(c, "failed rate")["status"] == "regressed"
    assert not c["gate"]["passed"]
    small = compare(base, synthetic(errors=1))   # 0 % -> 0.02 %: the whole interval under the 0.1 pp floor
    assert row(small, "error rate")["status"] == "unchanged" and small["gate"]["passed"]
    # 0.20 % -> 0.24 % (10 -> 12 errors): a difference under the floor never regresses, though
    # 5,000 requests cannot rule out a rise beyond it either
    small = compare(synthetic(errors=10), synthetic(errors=12))
    assert row(small, "error rate")["status"] in ("unchanged", "inconclusive") and small["gate"]["passed"]
    t = compare(base, synthetic(dropped=1000))      # 20 % never ran: throughput down 20 %
    r = row(t, "throughput (rps)")
    assert r["status"] == "regressed" and r["beyond_tolerance"]
    assert r["change_percent"] == pytest.approx(-20.0)
    assert row(t, "failed rate")["status"] == "regressed"
    assert row(compare(synthetic(dropped=1000), base), "throughput (rps)")["status"] == "improved"


def test_small_absolute_change_under_the_floor_is_unchanged():
    # 0.5 ms latencies 30 % slower: +0.15 ms at the median, under the 0.5 ms floor
    b, n = synthetic(median_ms=0.5), synthetic(median_ms=0.5, scale=1.3)
    c = compare(b, n)
    r = row(c, "latency p50")
    assert r["interval_percent"][0] > 10.0            # surely more than 10 % worse in ratio …
    assert r["status"] == "unchanged" and "under the floor" in r["note"]   # … but by less than 0.5 ms
    assert c["gate"]["passed"]
    # the same change with the floor lowered is a regression
    c = compare(b, n, floors={"ms": 0.1})
    assert row(c, "latency p50")["status"] == "regressed" and not c["gate"]["passed"]


def test_too_few_samples_or_windows_give_no_verdict():
    c = compare(synthetic(n=50), synthetic(n=50, scale=2.0))
    assert {r["status"] for r in c["metrics"] if r["gated"]} <= {"insufficient samples", "no data"}
    assert not c["gate"]["passed"] and "no verdict" in c["gate"]["reason"]
    # 500 requests: enough for p50 / p95 (10 beyond them), not for p99 (needs 1000)
    c = compare(synthetic(n=500), synthetic(n=500, scale=1.5))
    assert row(c, "latency p95")["status"] == "regressed"
    assert row(c, "latency p99")["status"] == "insufficient samples"
    assert row(c, "latency p99.9")["status"] == "insufficient samples"
    assert "1000" in row(c, "latency p99")["note"]
    # plenty of requests but 3 windows: no interval, no verdict
    c = compare(synthetic(duration=3.0), synthetic(duration=3.0, scale=1.5))
    r = row(c, "latency p50")
    assert r["status"] == "insufficient samples" and "windows" in r["note"]
    assert not c["gate"]["passed"]


def test_result_without_windows_gets_no_verdict(base):
    bare = {k: v for k, v in synthetic(scale=1.5).items() if k != "histograms"}
    c = compare(base, bare)
    assert row(c, "latency p50")["status"] == "insufficient samples"
    assert not c["gate"]["passed"]


def test_inconclusive_says_how_much_longer():
    # 1,000 requests over 20 s, +14 %: the interval straddles the 10 % line
    c = compare(synthetic(n=1000, duration=20.0), synthetic(n=1000, duration=20.0, seed=3, scale=1.14))
    inc = [r for r in c["metrics"] if r["status"] == "inconclusive"]
    assert inc, [(r["metric"], r["status"], r["interval_percent"]) for r in c["metrics"] if r["gated"]]
    for r in inc:
        lo, hi = r["interval_percent"]
        sign = 1 if r["lower_is_better"] else -1
        assert min(sign * lo, sign * hi) <= 10.0 < max(sign * lo, sign * hi)
        assert "straddles" in r["note"]
        assert r["decide_after_s"] is None or r["decide_after_s"] > 20.0
    assert c["gate"]["inconclusive"]
    if not c["gate"]["regressions"]:
        assert c["gate"]["passed"] and "inconclusive" in c["gate"]["reason"]


def test_judge_rules():
    f = dict(lower_is_better=True, floor=0.5)
    assert judge((0.12, 0.30), (1.0, 3.0), **f) == "regressed"
    assert judge((0.12, 0.30), (0.2, 3.0), **f) == "inconclusive"   # could be under the floor, could be over
    assert judge((0.12, 0.30), (0.1, 0.4), **f) == "unchanged"      # all under the floor
    assert judge((0.05, 0.30), (1.0, 3.0), **f) == "inconclusive"
    assert judge((-0.05, 0.09), (-1.0, 1.0), **f) == "unchanged"
    assert judge((-0.30, -0.02), (-3.0, -1.0), **f) == "improved"
    assert judge((-0.30, 0.02), (-3.0, 0.2), **f) == "unchanged"
    # higher is better (throughput): a fall is worse
    assert judge((-0.30, -0.15), (-30.0, -15.0), lower_is_better=False, floor=1.0) == "regressed"
    assert judge((0.05, 0.2), (5.0, 20.0), lower_is_better=False, floor=1.0) == "improved"


def test_max_is_shown_not_gated(base):
    c = compare(base, synthetic(scale=1.5))
    r = row(c, "latency max")
    assert r["gated"] is False and r["status"] == "regressed" and r["interval_percent"] is None


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


def test_table_and_json_carry_intervals(base):
    n = synthetic(scale=1.3)
    n["scenario"]["duration"] = 60.0
    c = compare(base, n)
    assert any("differ in duration" in w for w in c["warnings"])
    text = format_comparison(c)
    assert "gate: FAILED (exit 97)" in text and "interval" in text and "regressed" in text
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("latency p50"))
    lo, hi = row(c, "latency p50")["interval_percent"]
    assert f"[{lo:+.1f}%, {hi:+.1f}%]" in line
    doc = json.loads(json.dumps(c))   # JSON-ready
    r = next(r for r in doc["metrics"] if r["metric"] == "latency p50")
    assert {"interval_percent", "difference_interval", "floor", "method", "decide_after_s"} <= set(r)
    assert doc["bootstrap"]["all"]["windows"] == [51, 51] or doc["bootstrap"]["all"]["windows"][0] >= 50


def test_pool_results_concatenates_windows(base):
    parts = [synthetic(n=1000, duration=10.0, seed=s) for s in (11, 12, 13)]
    pooled = pool_results(parts)
    assert pooled["summary"]["all"]["count"] == 3000
    assert pooled["repeats"]["count"] == 3 and pooled["repeats"]["duration_s"] == 30.0
    wins = pooled["histograms"]["targets"]["features"]["windows"]
    assert len(wins) == sum(len(p["histograms"]["targets"]["features"]["windows"]) for p in parts)
    assert len({w["index"] for w in wins}) == len(wins)
    assert sum(w["completed"] for w in pooled["timeseries"]) == 3000
    one = compare(parts[0], synthetic(n=1000, duration=10.0, seed=14))
    c = compare(pooled, pool_results([synthetic(n=1000, duration=10.0, seed=s) for s in (14, 15, 16)]))
    assert row(c, "throughput (rps)")["base"] == pytest.approx(100.0)
    assert c["bootstrap"]["all"]["windows"][0] == len(wins)
    w1 = np.diff(row(one, "latency p50")["interval_percent"])[0]
    w3 = np.diff(row(c, "latency p50")["interval_percent"])[0]
    assert w3 < w1          # three times the windows: a narrower interval
    failed = dict(parts[1], verdict={"exit_code": 99, "passed": False})
    assert pool_results([parts[0], failed, parts[2]])["verdict"]["exit_code"] == 99
    with pytest.raises(ValueError):
        pool_results([])


def _args(**kw):
    d = dict(json_out=None, report=None, all_rows=False, min_samples=100, min_windows=5, fail_above=0.10, unchanged_below=0.01,
             confidence=0.9, resamples=400, floor_ms=0.5, floor_pp=0.1, floor_rps=1.0)
    d.update(kw)
    return type("A", (), d)()


def test_cmd_compare(tmp_path, base, capsys):
    pb = write_result(json.loads(json.dumps(base)), tmp_path / "base.json")
    pn = write_result(json.loads(json.dumps(synthetic(scale=1.25))), tmp_path / "new.json")
    args = _args(base=str(pb), new=str(pn), json_out=str(tmp_path / "c.json"))
    assert cmd_compare(args) == ExitCode.REGRESSED
    out = capsys.readouterr().out
    assert "latency p95" in out and "FAIL" in out
    assert json.loads((tmp_path / "c.json").read_text())["schema"] == "harness.result.compare/2"
    args.new = str(pb)
    assert cmd_compare(args) == 0
    args.new = str(tmp_path / "missing.json")
    assert cmd_compare(args) == 2
    args.new, args.confidence = str(pb), 1.5
    assert cmd_compare(args) == 2
    assert "--confidence" in capsys.readouterr().err


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
    # the gate flags of `run` reach the comparison: a floor above the change passes it
    lenient = _args(baseline=str(pb), report=None, quiet=True, floor_ms=100.0)
    assert after_run(lenient, new, tmp_path / "new.json", baseline=loaded) == 0
    # a baseline that cannot be read is a usage error before any load is sent
    out_json = tmp_path / "never.json"
    assert main(["run", "--target", "noop", "--duration", "30s", "--no-metrics", "--baseline",
                 str(tmp_path / "missing.json"), "--out", str(out_json)]) == 2
    assert "--baseline" in capsys.readouterr().err and not out_json.exists()
    assert main(["run", "--target", "noop", "--duration", "30s", "--no-metrics", "--repeat", "0",
                 "--out", str(out_json)]) == 2
    assert "--repeat" in capsys.readouterr().err and not out_json.exists()


def test_run_repeat_pools_and_gates(tmp_path, capsys):
    from harness.cli.main import main
    from harness.result.schema import load_result

    out = tmp_path / "pooled.json"
    quiet = ["--target", "noop", "--duration", "1s", "--rate", "200", "--no-metrics", "--progress", "off",
             "--lag-bound-ms", "1000", "--quiet"]   # lag bound: a loaded machine must not make the run invalid
    code = main(["run", *quiet, "--repeat", "2", "--out", str(out)])
    assert code in (0, 98), capsys.readouterr()   # 98: the generator's self-check on a loaded machine
    pooled = load_result(str(out))
    parts = [load_result(str(tmp_path / f"pooled.repeat-{k}.json")) for k in (1, 2)]
    assert pooled["repeats"]["count"] == 2 and pooled["repeats"]["run_ids"] == [p["run_id"] for p in parts]
    assert pooled["summary"]["all"]["count"] == sum(p["summary"]["all"]["count"] for p in parts)
    assert not math.isnan(pooled["summary"]["all"]["latency"]["p50"])
    # the same scenario again, gated on its pooled repeats against the pooled baseline (noop's
    # latency is the generator's lag, machine noise: a wide floor keeps this about the plumbing)
    again = tmp_path / "again.json"
    capsys.readouterr()
    code = main(["run", *quiet[:-1], "--repeat", "2", "--min-windows", "2", "--floor-ms", "1000", "--baseline",
                 str(out), "--out", str(again)])
    printed = capsys.readouterr().out
    assert code in (0, 98), printed               # the run's own failure code wins over the gate's
    assert "vs  new pooled-" in printed and "gate: PASSED" in printed, printed
