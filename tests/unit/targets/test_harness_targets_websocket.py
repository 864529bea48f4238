"""The ws:// target's pieces without a server: frames, per-subscription accounting of
gaps, drops, duplicates, early ends and timeouts, and the URL's settings."""

from __future__ import annotations

import pytest

from harness.targets import TargetError
from harness.targets.resolve import build_target
from harness.targets.websocket import (SUBSCRIBE_LABEL, StreamAccount, StreamStats, parse_message,
                                       parse_ws_url)


def test_parse_message_reads_each_kind():
    t = parse_message('{"type":"tick","symbol":"AAPL","seq":7,"due_ns":1,"sent_ns":123,"features":{"bar":0}}')
    assert (t.kind, t.symbol, t.seq, t.sent_ns) == ("tick", "AAPL", 7, 123)
    e = parse_message('{"type":"error","status":422,"field":"rate","message":"rate: too high"}')
    assert (e.kind, e.status, e.field) == ("error", 422, "rate")
    assert parse_message('{"type":"subscribed","symbol":"MSFT"}').kind == "subscribed"
    assert parse_message('{"type":"end","symbol":"MSFT","sent":3,"dropped":0}').kind == "end"


@pytest.mark.parametrize("raw, match", [
    ("not json", "not JSON"),
    (b'{"type":"tick"}', "binary"),
    ("[1]", "JSON object"),
    ('{"type":"tick","seq":-1,"sent_ns":1}', "seq"),
    ('{"type":"tick","seq":true,"sent_ns":1}', "seq"),
    ('{"type":"tick","seq":1,"sent_ns":"x"}', "sent_ns"),
    ('{"type":"party"}', "unknown message type"),
])
def test_parse_message_refuses_what_is_not_a_frame(raw, match):
    with pytest.raises(ValueError, match=match):
        parse_message(raw)


class Rec:
    def __init__(self):
        self.rows = []

    def __call__(self, label, outcome, intended, start, end, error=None, flags=0):
        self.rows.append((label, outcome, intended, start, end, error))

    def outcomes(self):
        return [r[1] for r in self.rows]


def account(count=5, rate=10.0, timeout_ns=1_000_000_000):
    rec, stats = Rec(), StreamStats()
    return StreamAccount("ws AAPL", 1_000_000_000, rate, count, timeout_ns, rec, stats), rec, stats


def test_in_order_messages_are_ok_with_three_times():
    acc, rec, stats = account()
    for seq in range(5):  # each arrives 2 ms after its intended time, 0.5 ms after it was sent
        intended = 1_000_000_000 + seq * 100_000_000
        acc.tick(seq, sent_ns=10_000 + seq, recv_wall_ns=10_000 + seq + 500_000, recv_perf_ns=intended + 2_000_000)
    assert rec.outcomes() == ["ok"] * 5 and acc.complete
    label, _, intended, start, end, _ = rec.rows[3]
    assert label == "ws AAPL" and intended == 1_300_000_000
    assert end - intended == 2_000_000 and end - start == 500_000  # latency; service time = transit
    assert (stats.messages, stats.gaps, stats.dropped) == (5, 0, 0)


def test_a_sequence_jump_is_one_gap_and_each_missing_message_is_dropped_at_its_intended_time():
    acc, rec, stats = account()
    acc.tick(0, 0, 0, 1_000_000_000)
    acc.tick(3, 0, 0, 1_300_000_000)
    assert rec.outcomes() == ["ok", "dropped", "dropped", "ok"]
    assert [r[2] for r in rec.rows[1:3]] == [1_100_000_000, 1_200_000_000] and rec.rows[1][3] is None
    assert (stats.gaps, stats.dropped, stats.messages) == (1, 2, 2)
    acc.tick(2, 0, 0, 1_310_000_000)  # late duplicate of an accounted number
    assert rec.rows[-1][1] == "error" and rec.rows[-1][5] == "duplicate" and stats.duplicates == 1


def test_every_expected_message_ends_exactly_once_whatever_ends_the_stream():
    for end in ("ended", "failed", "expired"):
        acc, rec, stats = account(count=6)
        acc.tick(0, 0, 0, 1_000_000_000)
        acc.tick(1, 0, 0, 1_100_000_000)
        if end == "ended":
            acc.ended(1_200_000_000)
            assert rec.outcomes()[2:] == ["dropped"] * 4 and stats.dropped == 4 and stats.gaps == 1
        elif end == "failed":
            acc.failed("WS 4008", 1_200_000_000)
            assert rec.outcomes()[2:] == ["error"] * 4 and {r[5] for r in rec.rows[2:]} == {"WS 4008"}
            assert stats.cut_short == 4
        else:
            acc.expired(2_300_000_000)
            assert rec.outcomes()[2:] == ["timeout"] * 4 and stats.timed_out == 4
            t = rec.rows[2]
            assert t[4] - t[2] == 1_000_000_000  # recorded at the deadline, like the executor's timeouts
        assert len(rec.rows) == 6 and acc.complete


def test_deadline_follows_the_next_expected_message():
    acc, _rec, _stats = account(timeout_ns=50)
    assert acc.deadline_ns() == 1_000_000_050
    acc.tick(0, 0, 0, 1_000_000_000)
    assert acc.deadline_ns() == 1_100_000_050


def test_url_settings_are_read_and_removed_from_the_url():
    s = parse_ws_url("ws://127.0.0.1:9/v1/stream?symbols=aapl,MSFT&rate=50&hold=2s&timeout=500ms&token=x")
    assert s.symbols == ("AAPL", "MSFT") and s.rate == 50 and s.messages == 100 and s.timeout_s == 0.5
    assert s.url == "ws://127.0.0.1:9/v1/stream?token=x"
    assert parse_ws_url("wss://h/s?messages=7").messages == 7
    assert parse_ws_url("ws://h/s").messages == 50  # 10 msg/s for 5 s


@pytest.mark.parametrize("url, http, match", [
    ("ws://h/s?rate=0", None, "rate"),
    ("ws://h/s?rate=fast", None, "rate"),
    ("ws://h/s?symbols=", None, "symbols"),
    ("ws://h/s?symbols=A$B", None, "symbols"),
    ("ws://h/s?messages=1&hold=1s", None, "messages= or hold="),
    ("ws://h/s?messages=0", None, "messages"),
    ("ws://h/s?hold=-1s", None, "hold"),
    ("ws://h/s?timeout=soon", None, "timeout"),
    ("ws://h:99999/s", None, "port"),
    ("ws://h/s", {"method": "POST"}, "http.method"),
    ("ws://h/s", {"verify": "no"}, "http.verify"),
])
def test_bad_settings_name_the_field(url, http, match):
    with pytest.raises(TargetError, match=match):
        parse_ws_url(url, http)


def test_resolve_builds_a_streaming_target():
    t = build_target("ws://127.0.0.1:9/v1/stream?symbols=AAPL,MSFT")
    assert t.labels == (SUBSCRIBE_LABEL,) and t.is_async and t.astart is not None
    assert t.observation_labels == ("ws AAPL", "ws MSFT") and t.bind_recorder is not None
    with pytest.raises(TargetError, match="^payload: a ws:// target"):
        build_target("ws://127.0.0.1:9/v1/stream", payload="feature_window")
    with pytest.raises(TargetError, match="^workload"):
        build_target("wss://127.0.0.1:9/v1/stream", workload={"x": 1})


def test_closed_loop_users_and_worker_processes_are_refused_with_the_field():
    from prometheus_client import CollectorRegistry

    from harness.config.scenario import load_scenario
    from harness.record.recorder import Recorder
    from harness.run.prepare import make_executor
    from harness.run.runner import Run, RunOptions

    url = "ws://127.0.0.1:9/v1/stream"
    users = load_scenario(None, {"target": url, "profile": {"type": "users", "vus": 2}}, env={})
    assert users.target_kind == "ws"
    with pytest.raises(TargetError, match="closed-loop users"):
        make_executor(users, build_target(url), Recorder())
    workers = load_scenario(None, {"target": url, "executor.workers": 2}, env={})
    with pytest.raises(TargetError, match="^executor.workers: a ws:// target"):
        Run(workers, RunOptions(metrics_port=None, progress="off", install_signal_handlers=False),
            registry=CollectorRegistry()).execute()


def test_a_stop_cut_counts_due_messages_as_early_ends_and_not_yet_due_ones_not_at_all():
    acc, rec, stats = account(count=10)  # intended at 1.0 s, 1.1 s … 1.9 s
    acc.tick(0, sent_ns=0, recv_wall_ns=0, recv_perf_ns=1_000_000_000)
    acc.cut(cut_ns=1_350_000_000, now_perf_ns=1_360_000_000)  # seq 1-3 were due, 4-9 not yet
    assert rec.outcomes() == ["ok", "error", "error", "error"] and acc.complete
    assert all(r[5] == "cancelled" for r in rec.rows[1:])
    assert (stats.cut_short, stats.not_due, stats.dropped, stats.timed_out) == (3, 6, 0, 0)
    acc.tick(4, sent_ns=0, recv_wall_ns=0, recv_perf_ns=1_400_000_000)  # after the cut: nothing new counts as ok
    assert rec.outcomes().count("ok") == 1
