"""k6-style thresholds: parsing (good and bad), evaluation, abort rules and exit codes."""

from __future__ import annotations

import pytest

from harness.config import thresholds as T
from harness.exitcodes import ExitCode
from harness.config.thresholds import Aggregation, ThresholdError, evaluate, parse_thresholds


def one(metric, expr):
    (th,) = parse_thresholds({metric: [expr]})
    return th


@pytest.mark.parametrize(
    "metric, expr, agg, op, value",
    [
        ("latency", "p(95)<100ms", Aggregation("p", 95.0), "<", 100.0),
        ("latency", "p(99.9)<=1s", Aggregation("p", 99.9), "<=", 1000.0),
        ("latency", "avg<50", Aggregation("avg"), "<", 50.0),  # bare number = ms, like k6
        ("latency", "med<20ms", Aggregation("med"), "<", 20.0),
        ("latency", "max<2s", Aggregation("max"), "<", 2000.0),
        ("latency", "min>0", Aggregation("min"), ">", 0.0),
        ("service_time", "p(50) < 250us", Aggregation("p", 50.0), "<", 0.25),
        ("lag", "p(99)<5000µs", Aggregation("p", 99.0), "<", 5.0),
        ("lag", "p(99)<1.5e3ns", Aggregation("p", 99.0), "<", 0.0015),
        ("error_rate", "rate<0.01", Aggregation("rate"), "<", 0.01),
        ("timeout_rate", "rate<1%", Aggregation("rate"), "<", 0.01),
        ("cache_hit_rate", "rate>=0.5", Aggregation("rate"), ">=", 0.5),
        ("throughput", "count>100", Aggregation("count"), ">", 100.0),
        ("rps", "rate>=45", Aggregation("rate"), ">=", 45.0),
        ("latency", "count>100", Aggregation("count"), ">", 100.0),
        ("fallback_rate", "rate==0", Aggregation("rate"), "==", 0.0),
    ],
)
def test_good_expressions(metric, expr, agg, op, value):
    th = one(metric, expr)
    assert th.aggregation == agg
    assert th.op == op
    assert th.value == pytest.approx(value)
    assert th.name == T.METRIC_ALIASES.get(metric, metric)


def test_tagged_submetric_and_object_form():
    ths = parse_thresholds(
        {
            "latency{target:features}": ["p(95)<100ms"],
            "latency{ target: env-step , outcome: ok }": "p(99)<200ms",
            "error_rate": [{"threshold": "rate<0.01", "abortOnFail": True, "delayAbortEval": "10s"}],
            "timeout_rate": {"threshold": "rate<0.05", "abort_on_fail": True},
        }
    )
    assert ths[0].tags == {"target": "features"} and ths[0].name == "latency"
    assert ths[1].tags == {"target": "env-step", "outcome": "ok"}
    assert ths[2].abort_on_fail and ths[2].delay_abort_eval_s == 10.0
    assert ths[3].abort_on_fail and ths[3].delay_abort_eval_s == 0.0
    assert str(ths[0].aggregation) == "p(95)"


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"latency": "p95<100"}, "latency: 'p95<100': unknown aggregation 'p95' (did you mean 'p(95)'?)"),
        ({"latency": "averge<5"}, "latency: 'averge<5': unknown aggregation 'averge' (did you mean 'avg'?)"),
        ({"latency": "median<5"}, "(did you mean 'med'?)"),
        ({"latency": "rate<0.1"}, "aggregation 'rate' does not apply to trend metric 'latency'"),
        ({"error_rate": "p(95)<3"}, "aggregation 'p(N)' does not apply to rate metric 'error_rate'"),
        ({"latency": "p(95)<100sec"}, "unknown time unit 'sec'"),
        ({"latency": "p(95)"}, "expected <aggregation> <operator> <value>"),
        ({"latency": "p(95)<"}, "missing value after '<'"),
        ({"latency": "p(101)<5"}, "percentile must be between 0 and 100, got 101"),
        ({"latency": "p(x)<5"}, "percentile 'x' is not a number"),
        ({"latency": "p(95)<abc"}, "value 'abc' is not a number"),
        ({"latency": "<100"}, "missing aggregation before the operator"),
        ({"latncy": "p(95)<1"}, "latncy: unknown metric 'latncy' (did you mean 'latency'?)"),
        ({"data_received": "count<1"}, "unknown metric 'data_received' (known: latency"),
        ({"error_rate": "rate<5ms"}, "unit 'ms' does not apply to rate of error_rate"),
        ({"error_rate": "rate<2"}, "a rate is a fraction between 0 and 1"),
        ({"latency{taget:x}": "avg<1"}, "unknown tag 'taget' for latency (did you mean 'target'?)"),
        ({"latency{outcome:okk}": "avg<1"}, "unknown outcome 'okk' (did you mean 'ok'?)"),
        ({"error_rate{outcome:ok}": "rate<1"}, "unknown tag 'outcome' for error_rate"),
        ({"latency{}": "avg<1"}, "empty tag set"),
        ({"latency": {"threshold": "avg<1", "abortOnFial": True}}, "unknown threshold key 'abortOnFial' (did you mean 'abortOnFail'?)"),
        ({"latency": {"abortOnFail": True}}, "has no 'threshold' expression"),
        ({"latency": {"threshold": "avg<1", "delayAbortEval": "soon"}}, "delayAbortEval: expected a duration"),
        ({"latency": []}, "expected an expression or a list of expressions"),
        ({"latency": [3]}, "expression must be a string"),
    ],
)
def test_bad_expressions_name_metric_expression_and_problem(spec, message):
    with pytest.raises(ThresholdError) as info:
        parse_thresholds(spec)
    assert any(message in p for p in info.value.problems), info.value.problems
    metric = next(iter(spec))
    assert all(p.startswith(metric) for p in info.value.problems)


def test_all_problems_collected():
    with pytest.raises(ThresholdError) as info:
        parse_thresholds({"latency": ["p95<1", "p(95)<1ms", "avg<x"], "nope": "rate<1"})
    assert len(info.value.problems) == 3


def fake_source(values):
    def value(metric, tags, agg):
        return values.get((metric, tuple(sorted(tags.items())), str(agg)))

    return value


def test_evaluate_pass_fail_and_no_data():
    ths = parse_thresholds(
        {
            "latency": ["p(95)<100ms", "p(99)<200ms"],
            "error_rate": "rate<0.01",
            "latency{target:risk-var}": "avg<10",
        }
    )
    src = fake_source(
        {
            ("latency", (), "p(95)"): 80.0,
            ("latency", (), "p(99)"): 250.0,
            ("error_rate", (), "rate"): 0.001,
        }
    )
    results = evaluate(ths, src)
    assert [r.ok for r in results] == [True, False, True, False]
    assert results[1].observed == 250.0 and results[1].reason is None
    assert results[3].observed is None and results[3].reason == "no data for latency{target:risk-var}"
    assert evaluate(ths[3:], src, no_data_ok=True)[0].ok
    assert "✗ latency p(99)<200ms (observed 250 ms)" == str(results[1])
    d = results[0].to_dict()
    assert d["metric"] == "latency" and d["observed"] == 80.0 and d["ok"] is True
    assert T.exit_code(results) == ExitCode.THRESHOLDS_FAILED == 99
    assert T.exit_code(results[:1]) == ExitCode.OK == 0


@pytest.mark.parametrize(
    "op, observed, ok",
    [("<", 100, False), ("<=", 100, True), (">", 100, False), (">=", 100, True), ("==", 100, True), ("!=", 100, False)],
)
def test_operators(op, observed, ok):
    th = one("latency", f"max{op}100ms")
    assert evaluate([th], lambda *a: observed)[0].ok is ok


def test_abort_due_respects_delay_and_no_data():
    ths = parse_thresholds(
        {
            "error_rate": [{"threshold": "rate<0.01", "abortOnFail": True, "delayAbortEval": "10s"}],
            "latency": [{"threshold": "p(95)<100", "abortOnFail": True}, "p(99)<1"],
            "timeout_rate": [{"threshold": "rate<0.01", "abortOnFail": True}],
        }
    )
    values = {"error_rate": 0.5, "latency": 500.0, "timeout_rate": None}
    results = evaluate(ths, lambda m, tags, agg: values[m])
    assert [r.threshold.expression for r in T.abort_due(results, 5)] == ["p(95)<100"]
    assert [r.threshold.expression for r in T.abort_due(results, 10)] == ["rate<0.01", "p(95)<100"]


def test_exit_code_precedence():
    failed = evaluate([one("latency", "max<1")], lambda *a: 5.0)
    assert T.exit_code(failed, invalid=True) == ExitCode.INVALID_RUN == 98
    assert T.exit_code(failed, interrupted=True, invalid=True) == ExitCode.INTERRUPTED == 105
    assert T.exit_code([]) == 0
    assert len({ExitCode.OK, ExitCode.USAGE, ExitCode.INVALID_RUN, ExitCode.THRESHOLDS_FAILED, ExitCode.INTERRUPTED}) == 5


@pytest.mark.parametrize("metric, agg, observed, text", [
    ("latency", "p(99.9)", 3.699, "3.699 ms"),           # ms, not a bare 3.699 next to "<=1s"
    ("latency{target:x}", "p(95)", 1250.0, "1.25 s"),
    ("lag", "max", 0.25, "0.25 ms"),
    ("latency", "count", 120.0, "120"),
    ("failed_rate", "rate", 0.066875, "6.69 %"),
    ("error_rate", "rate", 0.0, "0 %"),
    ("throughput", "rate", 300.0, "300 /s"),
    ("rps", "count", 1200.0, "1200"),
])
def test_observed_values_print_with_their_unit(metric, agg, observed, text):
    assert T.format_observed(metric, agg, observed) == text


def test_failed_rate_is_a_rate_and_coverage_is_stated():
    th = one("failed_rate", "rate<1%")
    assert th.value == pytest.approx(0.01) and th.aggregation == Aggregation("rate")
    assert one("latency", "p(95)<1s").coverage == "all outcomes"
    assert one("latency{outcome:ok}", "p(95)<1s").coverage == "ok only"
    assert one("failed_rate", "rate<0.01").coverage is None
    assert one("latency", "p(95)<1s").to_dict()["covers"] == "all outcomes"
    assert T.metric_key("latency{ target: a , outcome: ok }") == T.metric_key("latency{outcome:ok,target:a}")


# ----------------------------------------------------------------------------- k6 names


@pytest.mark.parametrize("k6, ours, expr, agg", [
    ("http_req_duration", "latency", "p(95)<100ms", Aggregation("p", 95.0)),
    ("iteration_duration", "latency", "avg<1s", Aggregation("avg")),
    ("http_req_failed", "failed_rate", "rate<0.01", Aggregation("rate")),
    ("http_reqs", "throughput", "count>10", Aggregation("count")),
    ("http_reqs", "throughput", "rate>=45", Aggregation("rate")),
])
def test_k6_metric_names_are_aliases(k6, ours, expr, agg):
    th = one(k6, expr)
    assert th.name == ours and th.metric == k6 and th.aggregation == agg
    assert T.metric_key(k6) == T.metric_key(ours)  # the same metric when a scenario merges layers
    tagged = one(k6 + "{target:features}", expr)
    assert tagged.name == ours and dict(tagged.tags) == {"target": "features"}


def test_k6_names_judge_the_same_figures_as_ours():
    from harness.record.recorder import Recorder

    rec = Recorder()
    for i in range(100):  # 3 errors in 100: failed_rate 3 %
        rec.record("t", "error" if i % 40 == 0 else "ok", i * 10**7, i * 10**7, i * 10**7 + 5_000_000,
                   error_type="HTTP 503" if i % 40 == 0 else None)
    src = rec.threshold_source(1.0)
    ths = parse_thresholds({"http_req_failed": ["rate<0.01"], "failed_rate": ["rate<0.01"],
                            "http_req_duration": ["p(95)<100ms"], "latency": ["p(95)<100ms"],
                            "http_reqs": ["count==100"], "throughput": ["count==100"]})
    res = evaluate(ths, src)
    assert [r.observed for r in res[0::2]] == [r.observed for r in res[1::2]]
    assert res[0].observed == pytest.approx(0.03) and not res[0].ok
    assert res[2].ok and res[4].ok
    assert T.format_observed("http_req_failed", "rate", 0.03) == "3 %"
    assert T.format_observed("http_req_duration", "p(95)", 5.0) == "5 ms"


@pytest.mark.parametrize("metric, word", [
    ("http_req_duration{status:200}", "HTTP status"),
    ("http_reqs{method:GET}", "{target:<label>}"),
])
def test_k6_tags_without_data_are_refused_with_what_to_write(metric, word):
    with pytest.raises(ThresholdError) as err:
        parse_thresholds({metric: ["p(95)<1s" if "duration" in metric else "rate<0.5"]})
    (msg,) = err.value.problems
    assert msg.startswith(metric + ": tag ") and "not supported" in msg and word in msg
    assert "tags of " in msg and "target" in msg  # names what is supported


def test_k6_name_tag_is_target_and_status_counts_answers_by_code():
    from harness.record.recorder import Recorder

    rec = Recorder()
    for i in range(10):
        rec.record("GET /a", "ok", i * 10**7, i * 10**7, i * 10**7 + 1_000_000)
    rec.record("GET /b", "error", 0, 0, 1_000_000, error_type="HTTP 503")
    rec.add_counter_source(lambda: {"GET /a": {"status:200": 10}, "GET /b": {"status:503": 1}})
    ths = parse_thresholds({"http_req_failed{name:GET /a}": ["rate==0"],
                            "http_reqs{status:200}": ["count==10"],
                            "http_reqs{name:GET /b,status:503}": ["count==1"],
                            "http_reqs{status:404}": ["count==0"]})
    assert [th.tags for th in ths][0] == {"target": "GET /a"}
    res = evaluate(ths, rec.threshold_source(1.0))
    assert [r.observed for r in res] == [0.0, 10.0, 1.0, 0.0] and all(r.ok for r in res)


@pytest.mark.parametrize("metric, word", [
    ("http_reqs{status:ok}", "not an HTTP status code"),
    ("http_reqs{status:200,outcome:ok}", "cannot be combined"),
])
def test_k6_status_tag_bad_values(metric, word):
    with pytest.raises(ThresholdError) as err:
        parse_thresholds({metric: ["count>0"]})
    assert word in err.value.problems[0]
