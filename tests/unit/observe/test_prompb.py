"""The remote-write messages: field numbers and wire types as prometheus/prometheus
prompb/types.proto and remote.proto declare them, checked on the bytes, and a full round
trip of a WriteRequest."""

from __future__ import annotations

import math

from harness.observe import prompb

# (message, field) -> (number, proto type) as in prompb/types.proto + remote.proto (v2.42)
EXPECTED = {
    ("WriteRequest", "timeseries"): (1, "message"), ("WriteRequest", "metadata"): (3, "message"),
    ("TimeSeries", "labels"): (1, "message"), ("TimeSeries", "samples"): (2, "message"),
    ("TimeSeries", "exemplars"): (3, "message"), ("TimeSeries", "histograms"): (4, "message"),
    ("Label", "name"): (1, "string"), ("Label", "value"): (2, "string"),
    ("Sample", "value"): (1, "double"), ("Sample", "timestamp"): (2, "int64"),
    ("Exemplar", "labels"): (1, "message"), ("Exemplar", "value"): (2, "double"),
    ("Exemplar", "timestamp"): (3, "int64"),
    ("BucketSpan", "offset"): (1, "sint32"), ("BucketSpan", "length"): (2, "uint32"),
    ("Histogram", "count_int"): (1, "uint64"), ("Histogram", "count_float"): (2, "double"),
    ("Histogram", "sum"): (3, "double"), ("Histogram", "schema"): (4, "sint32"),
    ("Histogram", "zero_threshold"): (5, "double"), ("Histogram", "zero_count_int"): (6, "uint64"),
    ("Histogram", "zero_count_float"): (7, "double"), ("Histogram", "negative_spans"): (8, "message"),
    ("Histogram", "negative_deltas"): (9, "sint64"), ("Histogram", "negative_counts"): (10, "double"),
    ("Histogram", "positive_spans"): (11, "message"), ("Histogram", "positive_deltas"): (12, "sint64"),
    ("Histogram", "positive_counts"): (13, "double"), ("Histogram", "reset_hint"): (14, "enum"),
    ("Histogram", "timestamp"): (15, "int64"),
    ("MetricMetadata", "type"): (1, "enum"), ("MetricMetadata", "metric_family_name"): (2, "string"),
    ("MetricMetadata", "help"): (4, "string"), ("MetricMetadata", "unit"): (5, "string"),
}
_TYPE_NAMES = {1: "double", 3: "int64", 4: "uint64", 9: "string", 11: "message", 13: "uint32", 14: "enum",
               17: "sint32", 18: "sint64"}


def test_field_numbers_and_types_match_prompb():
    seen = set()
    for msg in prompb.FILE_DESCRIPTOR.message_type:
        for f in msg.field:
            seen.add((msg.name, f.name))
            assert EXPECTED[(msg.name, f.name)] == (f.number, _TYPE_NAMES[f.type]), (msg.name, f.name)
    assert seen == set(EXPECTED)
    hist = prompb.Histogram.DESCRIPTOR
    assert {o.name: sorted(f.name for f in o.fields) for o in hist.oneofs} == {
        "count": ["count_float", "count_int"], "zero_count": ["zero_count_float", "zero_count_int"]}


def test_bytes_on_the_wire():
    # Label{name: "a", value: "b"}: field 1 and 2, length-delimited
    assert prompb.Label(name="a", value="b").SerializeToString() == bytes.fromhex("0a0161120162")
    # Sample{value: 1.0, timestamp: 5}: a fixed64 double (field 1), a varint (field 2)
    assert prompb.Sample(value=1.0, timestamp=5).SerializeToString() == bytes.fromhex("09000000000000f03f1005")
    # sint32 schema -1 zigzags to 1 (field 4); packed sint64 deltas [1, -1] -> 02 01 (field 12)
    h = prompb.Histogram(schema=-1)
    h.positive_deltas.extend([1, -1])
    assert h.SerializeToString() == bytes.fromhex("2001" + "62020201")
    # a BucketSpan with a negative offset: sint32 -3 -> 5
    assert prompb.BucketSpan(offset=-3, length=2).SerializeToString() == bytes.fromhex("08051002")
    # count_int = 0 set in its oneof is still sent (a histogram with no observations)
    assert prompb.Histogram(count_int=0).SerializeToString() == bytes.fromhex("0800")
    # WriteRequest.timeseries is field 1; metadata field 3
    w = prompb.WriteRequest()
    w.timeseries.add()
    w.metadata.add(metric_family_name="x")
    assert w.SerializeToString() == bytes.fromhex("0a00" + "1a03" + "120178")


def test_write_request_round_trip():
    w = prompb.WriteRequest()
    ts = w.timeseries.add()
    for k, v in (("__name__", "lbh_harness_latency_seconds"), ("instance", "h"), ("job", "harness")):
        ts.labels.add(name=k, value=v)
    ts.samples.add(value=math.pi, timestamp=1_700_000_000_123)
    ts.samples.add(value=-0.0, timestamp=1_700_000_001_123)
    ex = ts.exemplars.add(value=0.153, timestamp=1_700_000_000_100)
    ex.labels.add(name="trace_id", value="0af7651916cd43dd8448eb211c80319c")
    h = ts.histograms.add(count_int=7, sum=1.25, schema=5, zero_threshold=2.938735877055719e-39, zero_count_int=1,
                          timestamp=1_700_000_000_123, reset_hint=prompb.Histogram.ResetHint.Value("NO"))
    h.positive_spans.add(offset=-96, length=2)
    h.positive_spans.add(offset=3, length=1)
    h.positive_deltas.extend([2, 1, -2])
    h.negative_spans.add(offset=0, length=1)
    h.negative_deltas.append(1)
    fh = ts.histograms.add(count_float=2.5, sum=0.5, schema=0, zero_count_float=0.5, timestamp=1)
    fh.positive_spans.add(offset=1, length=1)
    fh.positive_counts.append(2.0)
    w.metadata.add(type=prompb.MetricMetadata.MetricType.Value("HISTOGRAM"), metric_family_name="m", help="h",
                   unit="seconds")
    data = w.SerializeToString()
    back = prompb.WriteRequest.FromString(data)
    assert back == w and back.SerializeToString() == data
    hb = back.timeseries[0].histograms[0]
    assert hb.WhichOneof("count") == "count_int" and hb.count_int == 7
    assert list(hb.positive_deltas) == [2, 1, -2] and hb.positive_spans[0].offset == -96
    assert back.timeseries[0].histograms[1].WhichOneof("zero_count") == "zero_count_float"
    assert back.timeseries[0].exemplars[0].labels[0].value == "0af7651916cd43dd8448eb211c80319c"
