"""Error details (first/last time, first samples), named counters and exemplars: kept off
the ok path, bounded, and merged exactly across recorders (processes, pods)."""

from __future__ import annotations

import json

from harness.record.recorder import ERROR_SAMPLE_CHARS, ERROR_SAMPLES, Recorder, detail_of

S = 1_000_000_000


def _err(rec: Recorder, target: str, etype: str, t_s: float, detail: object) -> None:
    end = int(t_s * S)
    rec.record(target, "error", end - 1000, end - 500, end, etype, 0,
               detail if rec.wants_detail(target, etype) else None)


def test_first_samples_first_and_last_time_per_target_and_type():
    rec = Recorder(origin_ns=0)
    for i in range(10):
        _err(rec, "GET /x", "HTTP 422", 1.0 + i, f'{{"detail":"bad row {i}"}}'.encode())
    _err(rec, "GET /x", "connection refused", 4.5, "connection refused: 127.0.0.1:1")
    rec.record("GET /x", "ok", 0, 0, 1000)
    details = rec.error_details()
    assert [(d["type"], d["count"]) for d in details] == [("HTTP 422", 10), ("connection refused", 1)]
    d = details[0]
    assert d["target"] == "GET /x" and d["first_s"] == 1.0 and d["last_s"] == 10.0
    assert d["samples"] == [f'{{"detail":"bad row {i}"}}' for i in range(ERROR_SAMPLES)]
    assert details[1]["samples"] == ["connection refused: 127.0.0.1:1"]


def test_samples_are_truncated_and_exceptions_read_as_type_and_message():
    assert detail_of(ValueError("window must have 30 rows")) == "ValueError: window must have 30 rows"
    assert detail_of(KeyError()) == "KeyError"
    long = detail_of(b"x" * 5000)
    assert len(long) == ERROR_SAMPLE_CHARS and long.endswith("\u2026")
    assert detail_of(b"\xff\xfe ok") == "\ufffd\ufffd ok"


def test_wants_detail_says_yes_only_a_few_times_per_type():
    rec = Recorder()
    answers = [rec.wants_detail("t", "E") for _ in range(10)]
    assert answers == [True] * ERROR_SAMPLES + [False] * (10 - ERROR_SAMPLES)
    assert rec.wants_detail("t", "F") and rec.wants_detail("u", "E")


def test_details_counters_and_exemplars_survive_encode_and_merge():
    a, b = Recorder(origin_ns=0), Recorder(origin_ns=0)
    _err(a, "t", "HTTP 503", 5.0, b"late a")
    _err(b, "t", "HTTP 503", 2.0, b"early b")
    _err(b, "t", "HTTP 503", 7.0, b"later b")
    a.count("t", "status:503", 1)
    b.count("t", "status:503", 2)
    b.count("t", "status:200", 4)
    a.add_counter_source(lambda: {"t": {"bytes_sent": 100, "bytes_received": 50}})
    a.set_exemplar("t", "ab" * 16, 0.012, 1000.0)
    b.set_exemplar("t", "cd" * 16, 0.020, 2000.0)
    merged = Recorder.decode(json.loads(json.dumps(a.encode())))
    merged.merge(Recorder.decode(json.loads(json.dumps(b.encode()))))
    (d,) = merged.error_details()
    assert d["count"] == 3 and d["first_s"] == 2.0 and d["last_s"] == 7.0
    assert d["samples"] == ["early b", "late a", "later b"]  # the earliest first
    t = merged.summary()["targets"]["t"]
    assert t["status_codes"] == {"200": 4, "503": 3}
    assert (t["bytes_sent"], t["bytes_received"]) == (100, 50)
    assert merged.exemplar("t") == ("cd" * 16, 0.020, 2000.0)
    assert merged.exemplar("other") is None


def test_a_target_without_http_counters_has_no_such_fields():
    rec = Recorder()
    rec.record("noop", "ok", 0, 0, 10)
    t = rec.summary()["targets"]["noop"]
    assert "status_codes" not in t and "bytes_sent" not in t
    assert rec.error_details() == []


def test_errors_past_the_type_cap_keep_their_details_under_other():
    rec = Recorder(max_error_types=2)
    for i in range(4):
        _err(rec, "t", f"E{i}", 1.0 + i, f"sample {i}")
    types = {d["type"]: d for d in rec.error_details()}
    assert set(types) == {"E0", "E1", "other"}
    assert types["other"]["count"] == 2 and types["other"]["samples"] == ["sample 2", "sample 3"]
