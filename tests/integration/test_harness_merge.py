"""``harness merge``: N results equal one result over the union, thresholds judged globally."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
from prometheus_client import CollectorRegistry

from harness.result.merge import MergeError, merge_results
from harness.record.recorder import Recorder
from harness.run.runner import Run, RunOptions
from harness.config.scenario import load_scenario


def base_result(duration="2s"):
    sc = load_scenario(None, {"target": "noop", "duration": duration, "profile.rate": 20,
                              "thresholds": {"latency": ["p(99)<50ms"], "error_rate": ["rate<0.05"]}}, env={})
    # merging is under test, not the generator's self-check: a loaded test machine must not
    # make a part invalid (exit 98)
    return Run(sc, RunOptions(metrics_port=None, progress="off", install_signal_handlers=False, lag_bound_ms=1000.0),
               registry=CollectorRegistry()).execute()


def with_recorder(template, rec):
    r = json.loads(json.dumps(template))
    r["histograms"] = rec.encode()
    r["summary"] = rec.summary()
    return r


def test_merged_percentiles_equal_the_union_and_thresholds_are_global():
    template = base_result()
    rng = random.Random(7)
    parts = [Recorder(origin_ns=0) for _ in range(3)]
    union = Recorder(origin_ns=0)
    for i in range(6000):
        part = parts[i % 3]
        intended = i * 1_000_000
        # part 2 is the slow pod: 2 % of its requests take +60 ms, 0.67 % of the fleet's
        service = int(rng.expovariate(1 / 3e6)) + (60_000_000 if i % 3 == 2 and i % 50 == 2 else 0)
        outcome = "error" if i % 97 == 0 else "ok"
        for rec in (part, union):
            rec.record("features", outcome, intended, intended + 100_000, intended + 100_000 + service,
                       "ValueError" if outcome == "error" else None)
    merged = merge_results([with_recorder(template, p) for p in parts], ["pod-0", "pod-1", "pod-2"])
    assert merged["summary"]["all"]["latency"] == union.summary()["all"]["latency"]
    assert merged["summary"]["all"]["outcomes"] == union.summary()["all"]["outcomes"]
    # judged on the union, not per pod: the slow pod alone fails p(99)<50ms, the fleet passes
    per_pod_p99 = [p.summary()["all"]["latency"]["p99"] for p in parts]
    assert min(per_pod_p99) < 50 < max(per_pod_p99)
    th = {t["expression"]: t for t in merged["thresholds"]}
    assert th["p(99)<50ms"]["observed"] == union.summary()["all"]["latency"]["p99"] < 50
    assert th["p(99)<50ms"]["ok"] is True and merged["verdict"]["exit_code"] == 0


def test_merge_cli_and_bad_inputs(tmp_path):
    a, b = base_result(), base_result()
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_text(json.dumps(a))
    pb.write_text(json.dumps(b))
    out = tmp_path / "m.json"
    proc = subprocess.run([sys.executable, "-m", "harness.cli.main", "merge", str(pa), str(pb), "--out", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    m = json.loads(out.read_text())
    assert m["summary"]["all"]["count"] == a["summary"]["all"]["count"] + b["summary"]["all"]["count"]
    (tmp_path / "junk.json").write_text("{}")
    proc = subprocess.run([sys.executable, "-m", "harness.cli.main", "merge", str(pa), str(tmp_path / "junk.json"),
                           "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "junk.json" in proc.stderr and "not a harness result" in proc.stderr
    other = json.loads(json.dumps(b))
    other["scenario"]["name"] = "something-else"
    with pytest.raises(MergeError, match="scenario"):
        merge_results([a, other])


def test_segments_of_a_schedule_merge_to_the_whole(tmp_path):
    outs = []
    for i in range(3):
        out = tmp_path / f"seg{i}.json"
        proc = subprocess.run([sys.executable, "-m", "harness.cli.main", "run", "--target", "noop", "--rate", "90",
                               "--duration", "1s", "--segment", f"{i}/3", "--no-metrics", "-q", "--out", str(out)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        outs.append(json.loads(out.read_text()))
    assert [o["summary"]["all"]["count"] for o in outs] == [30, 30, 30]
    merged = merge_results(outs)
    assert merged["summary"]["all"]["outcomes"]["ok"] == 90
    assert sum(w["intended"] for w in merged["timeseries"]) == 90
    proc = subprocess.run([sys.executable, "-m", "harness.cli.main", "run", "--segment", "3/3"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--segment" in proc.stderr
