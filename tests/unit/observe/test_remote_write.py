"""The remote-write sender: snappy block format, the series it builds from a registry
(native histograms included), the bounded queue, retries and backoff against a fake
receiver on loopback, and a close() that never outlives its deadline."""

from __future__ import annotations

import socket
import time

import cramjam
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import Metric
from prometheus_client.samples import BucketSpan, Exemplar, NativeHistogram

from harness.observe import prompb
from harness.observe.remote_write import (REMOTE_WRITE_HEADERS, RemoteWriteConfig, RemoteWriteError, RemoteWriter,
                                          build_write_request, compress, decompress,
                                          parse_header, redact_url, summary_line, validate_url)
from tests.support.remote_write_receiver import FakeReceiver

NH = NativeHistogram(count_value=10, sum_value=1.5, schema=5, zero_threshold=1e-128, zero_count=1,
                     pos_spans=[BucketSpan(-96, 2), BucketSpan(3, 1)], pos_deltas=[4, 1, -3],
                     nh_exemplars=[Exemplar({"trace_id": "abc"}, 0.153, 1_700_000_000.5)])


class NativeCollector:
    """Yields one native histogram, as the harness's LiveCollector does."""

    def __init__(self, nh: NativeHistogram = NH) -> None:
        self.nh = nh

    def collect(self):
        m = Metric("test_latency_seconds", "a native histogram", "histogram")
        m.add_sample("test_latency_seconds", {"target": "t", "job": "mine"}, 0, None, None, self.nh)
        yield m


def _series(req) -> dict:
    return {tuple((lb.name, lb.value) for lb in ts.labels): ts for ts in req.timeseries}


def _registry() -> CollectorRegistry:
    reg = CollectorRegistry()
    Counter("test_requests", "n", ["outcome"], registry=reg).labels("ok").inc(3)
    Gauge("test_in_flight", "n", registry=reg).set(2)
    Histogram("test_classic_seconds", "h", buckets=(0.1, 1.0), registry=reg).observe(0.05)
    reg.register(NativeCollector())
    return reg


# -- formats --------------------------------------------------------------------------

def test_snappy_block_format_round_trip():
    data = b"lbh_harness_requests_total" * 100 + bytes(range(256))
    packed = compress(data)
    assert decompress(packed) == data and len(packed) < len(data)
    assert not packed.startswith(b"\xff\x06\x00\x00sNaPpY")  # the block format, not the framed stream
    # the block format starts with the uncompressed length as a varint
    n, shift, i = 0, 0, 0
    while True:
        b = packed[i]
        n |= (b & 0x7F) << shift
        i += 1
        shift += 7
        if b < 0x80:
            break
    assert n == len(data)
    assert bytes(cramjam.snappy.decompress_raw(packed)) == data  # any snappy block decoder reads it


def test_url_and_header_checks():
    assert validate_url(" http://prom:9090/api/v1/write ") == "http://prom:9090/api/v1/write"
    for bad in ("prom:9090/api/v1/write", "ftp://x/y", "http:///path", "http://host:notaport/", ""):
        with pytest.raises(RemoteWriteError):
            validate_url(bad)
    assert redact_url("https://user:secret@host:8443/w?x=1") == "https://host:8443/w?x=1"
    assert parse_header("Authorization: Bearer a:b") == ("Authorization", "Bearer a:b")
    for bad in ("no colon", ": empty name", "Two Words: x"):
        with pytest.raises(RemoteWriteError):
            parse_header(bad)


# -- the series -------------------------------------------------------------------------

def test_registry_becomes_sorted_series_with_job_and_instance():
    req = build_write_request(_registry().collect(), 1_700_000_000_000, {"job": "harness", "instance": "h1"})
    series = _series(req)
    for labels in series:
        names = [k for k, _ in labels]
        assert names == sorted(names) and len(set(names)) == len(names)
        assert ("job", "harness") in labels and ("instance", "h1") in labels
    counter = series[(("__name__", "test_requests_total"), ("instance", "h1"), ("job", "harness"),
                      ("outcome", "ok"))]
    assert [(s.value, s.timestamp) for s in counter.samples] == [(3.0, 1_700_000_000_000)]
    bucket = series[(("__name__", "test_classic_seconds_bucket"), ("instance", "h1"), ("job", "harness"),
                     ("le", "0.1"))]
    assert bucket.samples[0].value == 1.0 and not bucket.histograms
    # the native histogram: one series under the family's name, the metric's own job kept as exported_job
    native = series[(("__name__", "test_latency_seconds"), ("exported_job", "mine"), ("instance", "h1"),
                     ("job", "harness"), ("target", "t"))]
    assert not native.samples
    (h,) = native.histograms
    assert (h.WhichOneof("count"), h.count_int, h.sum, h.schema, h.zero_count_int) == ("count_int", 10, 1.5, 5, 1)
    assert [(s.offset, s.length) for s in h.positive_spans] == [(-96, 2), (3, 1)]
    assert list(h.positive_deltas) == [4, 1, -3] and h.timestamp == 1_700_000_000_000
    (ex,) = native.exemplars
    assert (ex.value, ex.timestamp, ex.labels[0].value) == (0.153, 1_700_000_000_500, "abc")


def test_a_float_native_histogram_is_sent_with_absolute_counts():
    nh = NH._replace(count_value=2.5, zero_count=0.5, pos_spans=[BucketSpan(1, 2)], pos_deltas=[1.0, 0.5],
                     nh_exemplars=None)
    reg = CollectorRegistry()
    reg.register(NativeCollector(nh))
    (ts,) = build_write_request(reg.collect(), 1, {"job": "j"}).timeseries
    (h,) = ts.histograms
    assert h.WhichOneof("count") == "count_float" and h.WhichOneof("zero_count") == "zero_count_float"
    assert list(h.positive_counts) == [1.0, 1.5] and not h.positive_deltas


def test_an_exemplar_is_sent_once():
    reg = CollectorRegistry()
    reg.register(NativeCollector())
    w = RemoteWriter(RemoteWriteConfig("http://127.0.0.1:9/w", instance="i"), reg)
    first, _, _ = w._encoder.build(reg.collect(), 1000)
    second, _, n_hist = w._encoder.build(reg.collect(), 2000)
    assert len(first.timeseries[0].exemplars) == 1 and not second.timeseries[0].exemplars and n_hist == 1


# -- the queue --------------------------------------------------------------------------

def test_queue_is_bounded_and_drops_the_oldest():
    reg = CollectorRegistry()
    g = Gauge("test_seq", "which collection", registry=reg)
    w = RemoteWriter(RemoteWriteConfig("http://127.0.0.1:9/w", max_queue=3), reg)  # threads not started
    for i in range(5):
        g.set(i)
        w._collect_once()
    assert len(w._queue) == 3
    kept = [prompb.WriteRequest.FromString(decompress(b.body)).timeseries[0].samples[0].value for b in w._queue]
    assert kept == [2.0, 3.0, 4.0]
    assert w.stats()["batches_dropped"] == 2 and w.stats()["batches_collected"] == 5


# -- sending ----------------------------------------------------------------------------

def _writer(url: str, reg=None, **kw) -> RemoteWriter:
    cfg = dict(interval_s=0.05, backoff_min_s=0.05, backoff_max_s=0.4, max_attempts=5, flush_timeout_s=3.0)
    cfg.update(kw)
    return RemoteWriter(RemoteWriteConfig(url, **cfg), reg if reg is not None else _registry())


def test_sends_protobuf_snappy_with_the_spec_headers_and_user_headers():
    with FakeReceiver() as rx:
        url = rx.url.replace("http://", "http://me:p%40ss@")
        w = _writer(url, headers={"X-Scope-OrgID": "team-a"}, job="ci", instance="pod-0").start()
        time.sleep(0.3)
        stats = w.close()
        got = rx.requests()
    assert stats["batches_sent"] == len(got) >= 2 and stats["batches_failed"] == 0
    assert stats["final_flush"] == "ok" and stats["url"] == rx.url  # no password in the result
    h = got[0].headers
    for name, value in REMOTE_WRITE_HEADERS.items():
        assert h[name.lower()] == value
    assert h["x-scope-orgid"] == "team-a" and h["authorization"] == "Basic bWU6cEBzcw=="  # me:p@ss
    for r in got:
        assert r.request is not None and any(ts.histograms for ts in r.request.timeseries)
        assert all(("job", "ci") in [(lb.name, lb.value) for lb in ts.labels] for ts in r.request.timeseries)
    times = [r.request.timeseries[0].samples[0].timestamp for r in got]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert "failed" in summary_line(stats) and str(stats["batches_sent"]) in summary_line(stats)


def test_5xx_and_429_are_retried_with_growing_backoff():
    with FakeReceiver(statuses=[503, 500, 429]) as rx:
        w = _writer(rx.url, interval_s=30, backoff_min_s=0.1, backoff_max_s=1.0)  # one batch: the final one
        w.start()
        stats = w.close()
        got = rx.requests()
    assert [r.status for r in got] == [503, 500, 429, 204]
    assert stats["batches_sent"] == 1 and stats["retries"] == 3 and stats["batches_failed"] == 0
    gaps = [b.at - a.at for a, b in zip(got, got[1:])]
    # 0.1, 0.2, 0.4 s (+-20 % jitter): doubling (a sleep never ends early; a loaded machine adds to it)
    assert gaps[0] >= 0.08 and gaps[1] >= 0.16 and gaps[2] >= 0.32 and gaps[0] < 0.3, gaps
    assert len({r.request.SerializeToString() for r in got}) == 1  # the same batch each time


def test_4xx_is_not_retried():
    with FakeReceiver(statuses=[400]) as rx:
        w = _writer(rx.url, interval_s=30).start()
        stats = w.close()
        got = rx.requests()
    assert [r.status for r in got] == [400]
    assert stats["batches_failed"] == 1 and stats["retries"] == 0 and stats["final_flush"] == "failed"
    assert "HTTP 400" in stats["last_error"] and "as told" in stats["last_error"]
    assert "last error: HTTP 400" in summary_line(stats)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_connection_refused_is_retried_then_counted_as_failed():
    w = _writer(f"http://127.0.0.1:{_closed_port()}/api/v1/write", interval_s=30, max_attempts=3).start()
    stats = w.close()
    assert stats["batches_failed"] == 1 and stats["retries"] == 2 and stats["batches_sent"] == 0
    assert "Connection" in stats["last_error"] or "refused" in stats["last_error"]


def test_a_stalled_receiver_blocks_neither_collection_nor_close():
    with FakeReceiver(delay_s=10) as rx:
        w = _writer(rx.url, timeout_s=10).start()
        time.sleep(0.5)
        collected = w.stats()["batches_collected"]
        assert collected >= 4, "collection goes on while the sender waits"
        t = time.monotonic()
        stats = w.close(timeout_s=0.5)
        took = time.monotonic() - t
    assert took < 2.0, took
    assert stats["final_flush"] == "timed out" and stats["batches_unsent"] >= 3
    assert stats["batches_sent"] == 0 and "unsent" in summary_line(stats)
    assert w.close() is stats  # idempotent


def test_a_failing_collector_is_counted_and_the_writer_goes_on():
    class Broken:
        def collect(self):
            raise RuntimeError("boom")

    reg = CollectorRegistry()
    reg.register(Broken())
    with FakeReceiver() as rx:
        w = _writer(rx.url, reg=reg).start()
        time.sleep(0.2)
        stats = w.close()
    assert stats["collect_errors"] >= 2 and "boom" in stats["last_error"] and stats["batches_sent"] == 0
