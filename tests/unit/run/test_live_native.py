"""The live /metrics: native histograms beside the classic ones, exemplars, and each
exposition format getting what it can carry."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as om_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from harness.config import profiles
from harness.record.native import native_quantile
from harness.record.recorder import Recorder, value_at_percentile
from harness.run.live import LiveCollector, RunState
from instrumentation import serve_metrics
from instrumentation.proto_exposition import CONTENT_TYPE_PROTOBUF, decode_delimited
from instrumentation.server import ClassicOnly

PROM_ACCEPT = ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.5,"
               "application/openmetrics-text;version=1.0.0;q=0.4,application/openmetrics-text;version=0.0.1;q=0.3,"
               "text/plain;version=0.0.4;q=0.2,*/*;q=0.1")
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def _registry():
    rec = Recorder(origin_ns=0)
    for i in range(200):
        t = i * 1_000_000
        rec.record("api", "ok", t, t + 5_000, t + 150_000_000 + i * 100_000)  # 150..170 ms
    rec.record("api", "error", 0, 0, 30_000_000, error_type="boom")
    rec.set_exemplar("api", TRACE, 0.16, 1_700_000_000.5)
    st = RunState("r1", "demo", "api", profiles.from_spec({"type": "constant", "rate": 10}, default_duration=5), 5)
    reg = CollectorRegistry()
    reg.register(LiveCollector(lambda: rec, st))
    return reg, rec


def _native_samples(reg):
    out = {}
    for fam in reg.collect():
        for s in fam.samples:
            if s.native_histogram is not None:
                out[(s.name, s.labels["target"], s.labels["outcome"])] = s
    return out


def test_collector_yields_native_histograms_under_their_own_names():
    reg, rec = _registry()
    nat = _native_samples(reg)
    assert set(nat) == {(f"lbh_harness_{m}_native_seconds", "api", o)
                        for m in ("latency", "service_time", "schedule_lag") for o in ("ok", "error")}
    nh = nat[("lbh_harness_latency_native_seconds", "api", "ok")].native_histogram
    assert nh.count_value == 200 and nh.schema == 5
    hdr = value_at_percentile(rec.histogram("latency", "api", ("ok",)), 95.0) / 1e6
    assert abs(native_quantile(0.95, nh) - hdr) / hdr <= 0.025
    assert nh.nh_exemplars[0].labels == {"trace_id": TRACE}
    # the error outcome carries no exemplar (the exemplar is of an ok request)
    assert nat[("lbh_harness_latency_native_seconds", "api", "error")].native_histogram.nh_exemplars is None


def test_classic_latency_bucket_carries_the_exemplar_in_openmetrics():
    reg, _ = _registry()
    text = om_latest(ClassicOnly(reg)).decode()
    line = next(ln for ln in text.splitlines() if TRACE in ln)
    assert line.startswith('lbh_harness_latency_seconds_bucket{') and 'outcome="ok"' in line
    assert "native" not in text.replace("Native histogram", "")  # no native family in the text formats
    fams = {f.name for f in text_string_to_metric_families(text)}
    assert "lbh_harness_latency_seconds" in fams


def test_text_format_leaves_native_samples_out():
    reg, _ = _registry()
    with pytest.raises(Exception):
        generate_latest(reg)  # prometheus_client's text writer cannot write them ...
    text = generate_latest(ClassicOnly(reg)).decode()  # ... so the server leaves them out
    assert "lbh_harness_latency_seconds_bucket" in text and "_native_" not in text


def _get(url, accept):
    req = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.headers["Content-Type"], resp.read()


def test_server_negotiates_protobuf_openmetrics_and_text():
    reg, rec = _registry()
    with serve_metrics(registry=reg) as srv:
        ctype, body = _get(srv.url, PROM_ACCEPT)
        assert ctype == CONTENT_TYPE_PROTOBUF
        fams = {f.name: f for f in decode_delimited(body)}
        ctype_om, om = _get(srv.url, "application/openmetrics-text;version=1.0.0,text/plain;q=0.5")
        ctype_txt, txt = _get(srv.url, "*/*")
    assert ctype_om.startswith("application/openmetrics-text") and b"_native_" not in om
    assert ctype_txt.startswith("text/plain") and b"_native_" not in txt
    native = fams["lbh_harness_latency_native_seconds"]
    assert native.type == 4  # HISTOGRAM
    m = next(m for m in native.metric if {(lp.name, lp.value) for lp in m.label} >= {("outcome", "ok")})
    h = m.histogram
    assert h.schema == 5 and h.sample_count == 200 and len(h.positive_span) >= 1 and not h.bucket
    counts, c = [], 0
    for d in h.positive_delta:
        c += d
        counts.append(c)
    assert sum(counts) + h.zero_count == 200
    assert h.exemplars[0].label[0].value == TRACE and h.exemplars[0].timestamp.seconds == 1_700_000_000
    classic = fams["lbh_harness_latency_seconds"].metric
    ok = next(m for m in classic if {(lp.name, lp.value) for lp in m.label} >= {("outcome", "ok")}).histogram
    assert ok.sample_count == 200 and ok.bucket and not ok.positive_span and ok.schema == 0
    assert all(b.upper_bound != float("inf") for b in ok.bucket)
    assert any(b.exemplar.label and b.exemplar.label[0].value == TRACE for b in ok.bucket)
    assert fams["lbh_harness_requests_total"].type == 0  # COUNTER, named as in the text format
    assert fams["lbh_harness_run_info"].metric[0].gauge.value == 1


@pytest.mark.parametrize("accept, proto", [
    (PROM_ACCEPT, True),
    ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited", True),
    ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text", False),
    ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.1,"
     "application/openmetrics-text;version=1.0.0;q=0.9", False),
    ("application/openmetrics-text;version=1.0.0", False),
    ("", False),
])
def test_accept_negotiation(accept, proto):
    from instrumentation.proto_exposition import accepts_protobuf
    assert accepts_protobuf(accept) is proto
