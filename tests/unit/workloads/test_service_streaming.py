"""/v1/stream's own rules without a server: client frames validated field by field, and
a slow consumer's queue that stays bounded (drops counted, then a disconnect)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from prometheus_client import CollectorRegistry

from workloads.service.streaming import (StreamHub, StreamInputError, StreamLimits, SubscribeRequest,
                                         _Connection, _Feed, _Subscription, parse_client_message)

LIMITS = StreamLimits()


def test_subscribe_and_unsubscribe_frames_parse():
    r = parse_client_message('{"subscribe": "aapl", "rate": 50, "count": 10}', LIMITS)
    assert r == SubscribeRequest("subscribe", "AAPL", 50.0, 10)
    assert parse_client_message('{"subscribe": "BRK.B", "rate": 0.5}', LIMITS).count is None
    assert parse_client_message('{"unsubscribe": "MSFT"}', LIMITS) == SubscribeRequest("unsubscribe", "MSFT")


@pytest.mark.parametrize("frame, field, status", [
    ('{"subscribe": "AAPL", "rate": 5000}', "rate", 422),
    ('{"subscribe": "AAPL", "rate": 0}', "rate", 422),
    ('{"subscribe": "AAPL", "rate": true}', "rate", 422),
    ('{"subscribe": "AAPL"}', "rate", 422),
    ('{"subscribe": "AAPL", "rate": 1, "count": 0}', "count", 422),
    ('{"subscribe": "AAPL", "rate": 1, "count": 1.5}', "count", 422),
    ('{"subscribe": "A A", "rate": 1}', "subscribe", 422),
    ('{"subscribe": 7, "rate": 1}', "subscribe", 422),
    ('{"subscribe": "AAPL", "rate": 1, "speed": 2}', "speed", 422),
    ('{"unsubscribe": "AAPL", "rate": 1}', "rate", 422),
    ('{"rate": 1}', "subscribe", 422),
    ('[1, 2]', "message", 422),
    ('nope', "message", 422),
    (b'{"subscribe": "AAPL"}', "message", 422),
    ('{"subscribe": "AAPL", "rate": 1, "pad": "' + "x" * 5000 + '"}', "message", 413),
])
def test_bad_frames_name_the_field(frame, field, status):
    with pytest.raises(StreamInputError) as info:
        parse_client_message(frame, LIMITS)
    assert info.value.field == field and info.value.status == status
    assert str(info.value).startswith(field + ":")


class _State:
    extractor = None  # the digest says "unavailable"; the stream goes on
    draining = False

    def is_ready(self):
        return True


def _value(reg, name, **labels):
    v = reg.get_sample_value(name, labels or None)
    return 0.0 if v is None else v


def test_a_slow_consumer_drops_beyond_its_queue_bound_then_is_disconnected():
    async def main():
        reg = CollectorRegistry()
        hub = StreamHub(_State(), StreamLimits(max_pending=3, slow_consumer_seconds=0.05), reg)
        conn = _Connection(object(), hub)  # nothing ever drains the queue: a consumer that reads nothing
        sub = _Subscription(SubscribeRequest("subscribe", "AAPL", 10.0, None), _Feed("AAPL"))
        for seq in range(10):
            conn.offer(sub, seq, 0)
        assert conn.ticks_queued == 3 and len(conn.queue) == 3  # bounded whatever the producer does
        assert sub.dropped == 7 and _value(reg, "lbh_stream_messages_dropped_total") == 7
        assert not conn.kill.done()
        time.sleep(0.06)
        conn.offer(sub, 10, 0)
        assert conn.kill.done() and conn.kill.result().code == 4008
        assert conn.ticks_queued == 3

    asyncio.run(main())


def test_a_consumer_that_catches_up_is_not_disconnected():
    async def main():
        hub = StreamHub(_State(), StreamLimits(max_pending=1, slow_consumer_seconds=0.01), CollectorRegistry())
        conn = _Connection(object(), hub)
        sub = _Subscription(SubscribeRequest("subscribe", "AAPL", 10.0, None), _Feed("AAPL"))
        conn.offer(sub, 0, 0)
        conn.offer(sub, 1, 0)  # dropped
        conn.queue.popleft()
        conn.ticks_queued -= 1  # the sender took one
        time.sleep(0.02)
        conn.offer(sub, 2, 0)
        assert not conn.kill.done() and sub.dropped == 1

    asyncio.run(main())


def test_the_digest_is_compact_json():
    feed = _Feed("AAPL")
    assert feed.window(0).shape == (60, 15) and feed.window(10**6).shape == (60, 15)
    from workloads.service.streaming import _digest
    d = json.loads(_digest(3, feed.window(3), None, "extractor not loaded"))
    assert d["bar"] == 3 and d["source"] == "unavailable" and isinstance(d["close"], float)


def test_distinct_symbols_are_bounded_and_a_feed_ends_with_its_last_subscriber():
    async def main():
        hub = StreamHub(_State(), StreamLimits(max_symbols=1, bar_seconds=60), CollectorRegistry())
        a = await hub.acquire("AAPL")
        assert await hub.acquire("AAPL") is a and a.refs == 2 and a.bar == 0  # one feed, shared
        with pytest.raises(StreamInputError) as info:
            await hub.acquire("MSFT")
        assert info.value.status == 429 and info.value.field == "subscribe"
        hub.release(a)
        hub.release(a)
        assert hub.feeds == {}
        await asyncio.sleep(0)
        assert a.task.cancelled()
        assert (await hub.acquire("MSFT")).symbol == "MSFT"  # room again
        for feed in list(hub.feeds.values()):
            hub.release(feed)

    asyncio.run(main())
