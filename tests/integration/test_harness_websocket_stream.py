"""The ws:// target against the real reference service's /v1/stream: a known message rate
is counted message for message, and a bad subscription is a clear error."""

from __future__ import annotations

import asyncio
import json

from prometheus_client import CollectorRegistry

from harness.config.scenario import load_scenario
from harness.run.runner import Run, RunOptions

from workloads.service.config import ServiceConfig
from workloads.service.server import ServiceThread


def run(url, **overrides):
    sc = load_scenario(None, {"target": url, "thresholds": {"failed_rate": ["rate<0.01"]}, **overrides}, env={})
    return Run(sc, RunOptions(metrics_port=None, progress="off", install_signal_handlers=False),
               registry=CollectorRegistry()).execute()


def test_every_streamed_message_is_counted_and_none_is_lost_on_loopback():
    reg = CollectorRegistry()
    with ServiceThread(ServiceConfig(), registry=reg) as svc:
        url = svc.url.replace("http://", "ws://") + "/v1/stream?symbols=AAPL,MSFT&rate=40&hold=1.5s&timeout=2s"
        # 4 subscriptions/s for 2 s = 8 subscriptions x 40 msg/s x 1.5 s = 480 messages
        r = run(url, duration="2s", **{"profile.rate": 4})
        sent = reg.get_sample_value("lbh_stream_messages_sent_total")
        dropped = reg.get_sample_value("lbh_stream_messages_dropped_total")
    targets = r["summary"]["targets"]
    assert targets["ws subscribe"]["outcomes"]["ok"] == 8, targets["ws subscribe"]
    for sym in ("AAPL", "MSFT"):  # symbols in turn: 4 subscriptions each
        t = targets[f"ws {sym}"]
        assert t["outcomes"] == {"ok": 240, "error": 0, "timeout": 0, "dropped": 0}, t
    assert sent == 480 and dropped == 0
    # the stream's own counts reach the result, beside the outcomes
    stream = targets["ws subscribe"]["stream"]
    assert stream["subscriptions"] == 8 and stream["messages"] == 480, stream
    assert stream["gaps"] == stream["dropped"] == stream["cut_short"] == stream["not_due"] == 0, stream
    assert r["verdict"]["valid"], r["generator"]["reasons"]  # messages are outside the request accounting
    assert r["verdict"]["thresholds_passed"] is True


def test_a_bad_subscription_is_an_error_outcome_and_a_message_naming_the_field():
    with ServiceThread(ServiceConfig(), registry=CollectorRegistry()) as svc:
        base = svc.url.replace("http://", "ws://") + "/v1/stream"
        r = run(base + "?rate=5000&messages=10", duration="1s", **{"profile.rate": 3})

        async def direct():
            import websockets
            async with websockets.connect(base) as ws:
                await ws.send(json.dumps({"subscribe": "AAPL", "rate": 50, "count": -1}))
                err = json.loads(await ws.recv())
                try:
                    await ws.recv()
                except websockets.ConnectionClosed as closed:
                    return err, closed.rcvd.code
            return err, None

        err, code = asyncio.run(direct())
    sub = r["summary"]["targets"]["ws subscribe"]
    assert sub["outcomes"]["error"] == 3 and sub["errors"] == {"WS 4422": 3}, sub
    assert "ws AAPL" not in r["summary"]["targets"]  # no subscription, no messages
    for d in r.get("error_details") or []:  # where the result keeps samples, they quote the server
        assert d["target"] == "ws subscribe" and all(x.startswith("rate:") for x in d["samples"]), d
    assert r["verdict"]["thresholds_passed"] is False
    assert err["type"] == "error" and err["status"] == 422 and err["field"] == "count", err
    assert err["message"].startswith("count:") and code == 4422


def test_too_many_subscriptions_on_one_connection_are_refused():
    with ServiceThread(ServiceConfig(), registry=CollectorRegistry()) as svc:
        base = svc.url.replace("http://", "ws://") + "/v1/stream"

        async def direct():
            import websockets
            async with websockets.connect(base) as ws:
                got = []
                for i in range(9):  # the limit is 8 per connection
                    await ws.send(json.dumps({"subscribe": f"S{i}", "rate": 1}))
                try:
                    while True:
                        got.append(json.loads(await ws.recv()))
                except websockets.ConnectionClosed as closed:
                    return got, closed.rcvd.code

        got, code = asyncio.run(direct())
    errors = [m for m in got if m["type"] == "error"]
    assert code == 4429 and errors and errors[0]["status"] == 429 and errors[0]["field"] == "subscribe"
    assert sum(m["type"] == "subscribed" for m in got) == 8
