"""The result's ``error_details`` and the HTTP targets' ``status_codes`` / bytes: optional
(older results lack them), checked when present, and printed by the summary."""

from __future__ import annotations

import json

import pytest

from harness.record.recorder import Recorder
from harness.result.schema import RESULT_SCHEMA, ResultError, load_result, write_result
from harness.result.summary import format_summary


def _result(rec: Recorder) -> dict:
    return {
        "schema": RESULT_SCHEMA, "run_id": "r1", "status": "completed", "elapsed_s": 1.0,
        "scenario": {"name": "s", "target": "http://x/", "duration": 1.0, "timeout": 1.0, "thresholds": {},
                     "executor": {}, "profile": {"type": "constant"}},
        "summary": rec.summary(), "error_details": rec.error_details(), "timeseries": [],
        "thresholds": [], "stack": None,
        "generator": {"valid": True, "reasons": [], "worker_errors": [], "abandoned_calls": 0, "worker_processes": 1,
                      "schedule_lag_p50_ms": 0.1, "schedule_lag_p99_ms": 0.2, "lag_bound_ms": 5.0,
                      "cpu_percent_mean": 10.0, "cpu_count": 2},
        "verdict": {"passed": False, "exit_code": 99, "valid": True, "thresholds_passed": False, "aborted_by": []},
    }


def _recorder() -> Recorder:
    rec = Recorder(origin_ns=0)
    for i in range(5):
        end = (i + 1) * 1_000_000_000
        rec.record("POST /f", "error", end - 10, end - 5, end, "HTTP 422", 0,
                   b'{"detail":"window:\n must have 30 rows"}' if rec.wants_detail("POST /f", "HTTP 422") else None)
    rec.record("POST /f", "ok", 0, 1, 2)
    rec.count("POST /f", "status:422", 5)
    rec.count("POST /f", "status:200", 1)
    rec.count("POST /f", "bytes_sent", 1234)
    rec.count("POST /f", "bytes_received", 4321)
    return rec


def test_round_trip_and_the_summary_prints_the_first_sample(tmp_path):
    p = write_result(_result(_recorder()), tmp_path / "r.json")
    r = load_result(p)
    (d,) = r["error_details"]
    assert (d["type"], d["count"], d["first_s"], d["last_s"]) == ("HTTP 422", 5, 1.0, 5.0)
    t = r["summary"]["targets"]["POST /f"]
    assert t["status_codes"] == {"200": 1, "422": 5} and t["bytes_sent"] == 1234
    text = format_summary(r)
    assert 'HTTP 422 (first at 1.0s, last at 5.0s): {"detail":"window: must have 30 rows"}' in text
    assert "status codes: 200 1, 422 5" in text and "sent 1.2 KiB, received 4.2 KiB" in text


def test_older_results_without_the_fields_still_load_and_print(tmp_path):
    r = _result(Recorder())
    del r["error_details"]
    r = load_result(write_result(r, tmp_path / "r.json"))
    assert "error_details" not in r
    format_summary(r)


@pytest.mark.parametrize("path, value, field", [
    (("error_details",), {"a": 1}, "error_details"),
    (("error_details",), [{"target": "t", "type": "E", "count": "3"}], r"error_details\[0\].count"),
    (("error_details",), [{"target": "t", "samples": [3]}], r"error_details\[0\].samples\[0\]"),
    (("summary", "targets", "POST /f", "status_codes"), {"200": "x"}, "status_codes.200"),
    (("summary", "targets", "POST /f", "bytes_sent"), 1.5, "bytes_sent"),
])
def test_a_wrong_shape_names_the_field(tmp_path, path, value, field):
    r = json.loads(json.dumps(_result(_recorder())))
    node = r
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    p = tmp_path / "r.json"
    p.write_text(json.dumps(r))
    with pytest.raises(ResultError, match=field):
        load_result(p)
