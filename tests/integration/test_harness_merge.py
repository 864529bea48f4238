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


def with_recorder(template, rec, segment=None, run_id=None):
    r = json.loads(json.dumps(template))
    r["histograms"] = rec.encode()
    r["summary"] = rec.summary()
    if segment is not None:
        as_segment(r, *segment)
    if run_id is not None:
        r["run_id"] = run_id
    return r


def as_segment(r, offset, stride, run_id=None):
    """``r`` as segment offset/stride of its schedule (what `harness run --segment` writes)."""
    r["scenario"]["profile"].pop("segment", None)
    if stride != 1:
        r["scenario"]["profile"]["segment"] = {"offset": offset, "stride": stride}
    r["run_id"] = run_id or f"{r['run_id']}-seg{offset}of{stride}"
    return r


def copy(r):
    return json.loads(json.dumps(r))


def cli_merge(tmp_path, parts, *flags):
    paths = []
    for i, p in enumerate(parts):
        path = tmp_path / f"part{i}.json"
        path.write_text(json.dumps(p))
        paths.append(str(path))
    out = tmp_path / "merged.json"
    proc = subprocess.run([sys.executable, "-m", "harness.cli.main", "merge", *paths, "--out", str(out), "-q", *flags],
                          capture_output=True, text=True, timeout=60)
    return proc, (json.loads(out.read_text()) if proc.returncode != 2 and out.exists() else None), paths


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
        outcome = "error" if i % 199 == 0 else "ok"  # 0.5 %: inside the default failed_rate budget (1 %)
        for rec in (part, union):
            rec.record("features", outcome, intended, intended + 100_000, intended + 100_000 + service,
                       "ValueError" if outcome == "error" else None)
    merged = merge_results([with_recorder(template, p, (i, 3)) for i, p in enumerate(parts)],
                           ["pod-0", "pod-1", "pod-2"])
    assert merged["summary"]["all"]["latency"] == union.summary()["all"]["latency"]
    assert merged["summary"]["all"]["outcomes"] == union.summary()["all"]["outcomes"]
    # judged on the union, not per pod: the slow pod alone fails p(99)<50ms, the fleet passes
    per_pod_p99 = [p.summary()["all"]["latency"]["p99"] for p in parts]
    assert min(per_pod_p99) < 50 < max(per_pod_p99)
    th = {t["expression"]: t for t in merged["thresholds"]}
    assert th["p(99)<50ms"]["observed"] == union.summary()["all"]["latency"]["p99"] < 50
    assert th["p(99)<50ms"]["ok"] is True and merged["verdict"]["exit_code"] == 0


def test_merge_cli_and_bad_inputs(tmp_path):
    base = base_result()
    a, b = as_segment(copy(base), 0, 2), as_segment(copy(base), 1, 2)
    proc, m, _ = cli_merge(tmp_path, [a, b])
    assert proc.returncode == 0, proc.stderr
    assert m["summary"]["all"]["count"] == a["summary"]["all"]["count"] + b["summary"]["all"]["count"]
    assert "segment" not in m["scenario"]["profile"]              # together: the whole schedule
    assert m["merge"]["covers"] == {"offset": 0, "stride": 1} and m["merge"]["forced"] is False
    pa = tmp_path / "a.json"
    pa.write_text(json.dumps(a))
    (tmp_path / "junk.json").write_text("{}")
    proc = subprocess.run([sys.executable, "-m", "harness.cli.main", "merge", str(pa), str(tmp_path / "junk.json"),
                           "--out", str(tmp_path / "m.json")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "junk.json" in proc.stderr and "not a harness result" in proc.stderr
    other = copy(b)
    other["scenario"]["name"] = "something-else"
    with pytest.raises(MergeError, match="scenario name"):
        merge_results([a, other])


def test_the_same_file_twice_is_refused(tmp_path):
    """`harness merge seg0.json seg0.json` counted 400 and passed."""
    seg0 = as_segment(base_result(), 0, 2)
    proc, _, paths = cli_merge(tmp_path, [seg0, seg0])
    assert proc.returncode == 2, proc.stderr
    assert "appears 2 times" in proc.stderr and "same run" in proc.stderr
    assert paths[0] in proc.stderr and paths[1] in proc.stderr and "Traceback" not in proc.stderr
    # and two full runs of one scenario are the whole schedule twice
    r1, r2 = base_result(), base_result()
    with pytest.raises(MergeError, match="segment 0/1 appears 2 times"):
        merge_results([r1, r2], ["r1.json", "r2.json"])


def test_parts_of_different_schedules_are_refused(tmp_path):
    """A 40 rps/10 s part merged with a 5 rps/3 s part."""
    a = as_segment(base_result(), 0, 2)
    b = as_segment(copy(a), 1, 2)
    b["scenario"]["profile"]["rate"] = 5
    b["scenario"]["duration"] = 3.0
    proc, _, paths = cli_merge(tmp_path, [a, b])
    assert proc.returncode == 2
    assert f"{paths[1]}: scenario profile (apart from its segment)" in proc.stderr and "duration" in proc.stderr
    with pytest.raises(MergeError, match="thresholds"):
        c = copy(b)
        c["scenario"] = copy(a["scenario"])
        as_segment(c, 1, 2)
        c["scenario"]["thresholds"] = {"latency": ["p(99)<1ms"]}
        merge_results([a, c])


def test_segments_plus_the_whole_run_are_refused(tmp_path):
    """seg0 + seg1 + the full run gave 800."""
    full = base_result()
    seg0, seg1 = as_segment(copy(full), 0, 2), as_segment(copy(full), 1, 2)
    proc, _, _ = cli_merge(tmp_path, [seg0, seg1, full])
    assert proc.returncode == 2 and "different strides" in proc.stderr and "0/1" in proc.stderr


def test_missing_segments_are_named_and_refused_unless_partial(tmp_path):
    full = base_result()
    parts = [as_segment(copy(full), 0, 4), as_segment(copy(full), 2, 4)]
    proc, _, _ = cli_merge(tmp_path, parts)
    assert proc.returncode == 2 and "segments missing: 1/4, 3/4" in proc.stderr and "--allow-partial" in proc.stderr
    bad = as_segment(copy(full), 1, 4)
    bad["scenario"]["profile"]["segment"]["offset"] = 7
    with pytest.raises(MergeError, match=r"b.json: scenario.profile.segment: offset must be in \[0, stride\)"):
        merge_results([parts[0], bad], ["a.json", "b.json"])
    proc, m, _ = cli_merge(tmp_path, parts, "--allow-partial")
    assert proc.returncode != 2, proc.stderr
    assert m["merge"]["partial"] is True and m["merge"]["forced"] is False
    assert any("1/4, 3/4" in p for p in m["merge"]["problems"])
    # segments 0/4 and 2/4 are exactly segment 0/2: what a partial merge of them ran
    assert "together they are segment 0/2" in proc.stderr
    merged = merge_results(parts, allow_partial=True)
    assert merged["merge"]["covers"] == {"offset": 0, "stride": 2}
    assert merged["scenario"]["profile"]["segment"] == {"offset": 0, "stride": 2}


def test_force_merges_anything_and_says_so(tmp_path):
    seg0 = as_segment(base_result(), 0, 2)
    proc, m, _ = cli_merge(tmp_path, [seg0, seg0], "--force")
    assert proc.returncode != 2 and "forced" in proc.stderr
    assert m["merge"]["forced"] is True and any("appears 2 times" in p for p in m["merge"]["problems"])
    assert m["summary"]["all"]["count"] == 2 * seg0["summary"]["all"]["count"]


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
