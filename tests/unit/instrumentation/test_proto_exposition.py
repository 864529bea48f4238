"""prometheus_client families → io.prometheus.client.MetricFamily (delimited protobuf)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, Summary
from prometheus_client.core import GaugeHistogramMetricFamily

from instrumentation.proto_exposition import decode_delimited, encode_delimited, metric_families

COUNTER, GAUGE, SUMMARY, UNTYPED, HISTOGRAM, GAUGE_HISTOGRAM = range(6)


def _labels(m):
    return {lp.name: lp.value for lp in m.label}


def test_every_family_type_maps_as_the_text_format_names_it():
    reg = CollectorRegistry()
    c = Counter("jobs", "Jobs done.", ["kind"], registry=reg)
    c.labels("a").inc(3, exemplar={"trace_id": "ab12"})
    Gauge("temp_celsius", "Temperature.", registry=reg).set(21.5)
    s = Summary("req_seconds", "Requests.", registry=reg)
    s.observe(0.2)
    s.observe(0.4)
    h = Histogram("lat_seconds", "Latency.", ["op"], buckets=(0.1, 0.2, 0.5), registry=reg)
    h.labels("x").observe(0.15, {"trace_id": "cd34"})
    h.labels("x").observe(0.7)
    Info("build", "Build.", registry=reg).info({"version": "1.2"})
    Enum("state", "State.", states=["up", "down"], registry=reg).state("down")
    reg.register(type("GH", (), {"collect": lambda self: iter([GaugeHistogramMetricFamily(
        "queue_seconds", "Queue.", buckets=[("1.0", 4), ("+Inf", 6)], gsum_value=3.0)])})())
    fams = {f.name: f for f in decode_delimited(encode_delimited(reg))}
    assert fams.keys() == {"jobs_total", "temp_celsius", "req_seconds", "lat_seconds", "build_info", "state",
                           "queue_seconds"}
    jobs = fams["jobs_total"]
    assert jobs.type == COUNTER and jobs.help == "Jobs done."
    assert _labels(jobs.metric[0]) == {"kind": "a"} and jobs.metric[0].counter.value == 3
    assert jobs.metric[0].counter.exemplar.label[0].value == "ab12"
    assert fams["temp_celsius"].type == GAUGE and fams["temp_celsius"].metric[0].gauge.value == 21.5
    summ = fams["req_seconds"].metric[0].summary
    assert fams["req_seconds"].type == SUMMARY and summ.sample_count == 2 and abs(summ.sample_sum - 0.6) < 1e-9
    lat = fams["lat_seconds"]
    assert lat.type == HISTOGRAM and len(lat.metric) == 1 and _labels(lat.metric[0]) == {"op": "x"}
    hist = lat.metric[0].histogram
    assert [(b.upper_bound, b.cumulative_count) for b in hist.bucket] == [(0.1, 0), (0.2, 1), (0.5, 1)]
    assert hist.sample_count == 2 and abs(hist.sample_sum - 0.85) < 1e-9
    assert hist.bucket[1].exemplar.label[0].value == "cd34" and hist.bucket[1].exemplar.value == 0.15
    assert not hist.positive_span  # classic only: Prometheus ingests its _bucket series
    info = fams["build_info"]
    assert info.type == GAUGE and _labels(info.metric[0]) == {"version": "1.2"} and info.metric[0].gauge.value == 1
    states = {(_labels(m)["state"], m.gauge.value) for m in fams["state"].metric}
    assert fams["state"].type == GAUGE and states == {("up", 0.0), ("down", 1.0)}
    gh = fams["queue_seconds"]
    assert gh.type == GAUGE_HISTOGRAM and gh.metric[0].histogram.sample_count == 6
    assert gh.metric[0].histogram.sample_sum == 3.0


def test_empty_registry_and_empty_family():
    reg = CollectorRegistry()
    assert encode_delimited(reg) == b""
    Counter("never", "Never labelled.", ["x"], registry=reg)
    assert metric_families(reg) == []


def test_large_body_length_prefix_round_trips():
    reg = CollectorRegistry()
    g = Gauge("g", "Many.", ["i"], registry=reg)
    for i in range(500):
        g.labels(str(i)).set(i)
    [fam] = list(decode_delimited(encode_delimited(reg)))
    assert len(fam.metric) == 500 and fam.ByteSize() > 128  # a multi-byte varint prefix
