"""The terminal summary tells no small untruths: observed values carry their unit,
latency thresholds say which outcomes they covered, the two lag figures are told apart,
and whether failures were judged is always said."""

from __future__ import annotations

from harness.result.summary import format_summary

STATS = {"count": 10, "min": 1.0, "mean": 2.0, "p50": 2.0, "p90": 3.0, "p95": 3.5, "p99": 3.6, "p99.9": 3.699,
         "max": 3.7}


def result(failures, thresholds):
    block = {"count": 10, "outcomes": {"ok": 10, "error": 0, "timeout": 0, "dropped": 0}, "errors": {},
             "latency": STATS, "service_time": STATS, "lag": {**STATS, "p99": 9.0}, "failed_rate": 0.0,
             "error_rate": 0.0}
    return {"run_id": "r", "status": "completed", "elapsed_s": 1.0,
            "scenario": {"name": "s", "target": "t", "failures": failures},
            "summary": {"targets": {"t": block}, "all": block},
            "thresholds": thresholds,
            "generator": {"schedule_lag_p50_ms": 0.1, "schedule_lag_p99_ms": 0.4, "lag_bound_ms": 5.0,
                          "cpu_percent_mean": 3.0, "cpu_count": 2, "reasons": []},
            "verdict": {"exit_code": 0}}


TH = [
    {"metric": "latency", "expression": "p(99.9)<=1s", "aggregation": "p(99.9)", "observed": 3.699, "ok": True,
     "covers": "all outcomes"},
    {"metric": "latency{outcome:ok}", "expression": "p(95)<2s", "aggregation": "p(95)", "observed": 1500.0,
     "ok": True, "covers": "ok only"},
    {"metric": "failed_rate", "expression": "rate<0.01", "aggregation": "rate", "observed": 0.0, "ok": True,
     "covers": None},
    {"metric": "throughput", "expression": "rate>=76", "aggregation": "rate", "observed": 80.0, "ok": True},
]


def test_observed_values_have_units_and_latency_says_what_it_covered():
    text = format_summary(result({"threshold": "rate<0.01", "judged": ["rate<0.01"], "source": "default"}, TH))
    assert "PASS  latency: p(99.9)<=1s  (observed 3.699 ms; all outcomes)" in text
    assert "PASS  latency{outcome:ok}: p(95)<2s  (observed 1.5 s; ok only)" in text
    assert "PASS  failed_rate: rate<0.01  (observed 0 %)" in text
    assert "PASS  throughput: rate>=76  (observed 80 /s; ok, error and timeout (not dropped))" in text
    assert "failures: judged, failed_rate rate<0.01" in text


def test_the_two_lag_figures_are_labelled_distinctly():
    text = format_summary(result({"threshold": "rate<0.01"}, TH))
    # the table's per-request start lag (9.00 at p99) and the generator's own lateness (0.40)
    row = next(line for line in text.splitlines() if line.strip().startswith("start lag†"))
    assert "9.00" in row
    assert "generator: own lateness (where a worker was free) p50 0.10 ms, p99 0.40 ms" in text
    assert "schedule lag p99" not in text and "\n  lag " not in text


def test_failures_off_is_said():
    text = format_summary(result({"threshold": "off", "judged": [], "source": "cli"}, TH[:1]))
    assert "failures: NOT JUDGED (failures.threshold: off, set by cli)" in text


def test_a_streaming_targets_own_counts_are_printed_with_its_block():
    r = result({"threshold": "rate<0.01", "judged": ["rate<0.01"], "source": "default"}, TH)
    r["summary"]["targets"]["t"] = {**r["summary"]["targets"]["t"],
                                    "stream": {"subscriptions": 4, "messages": 120, "gaps": 0, "not_due": 37}}
    text = format_summary(r)
    assert "  stream: subscriptions 4, messages 120, gaps 0, not_due 37" in text
    assert text.count("stream:") == 1  # the target's block only, not "all"
