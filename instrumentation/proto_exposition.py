"""The Prometheus protobuf exposition format (the only one Prometheus 2.42 scrapes native
histograms from), for any prometheus_client registry.

``Content-Type: application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily;
encoding=delimited``: a sequence of ``io.prometheus.client.MetricFamily`` messages, each
preceded by its length as a varint. The message definitions are written here (no
maintained Python package ships them), from prometheus/client_model's ``metrics.proto``
(field numbers as there; ``Histogram`` with the native fields ``schema`` 5 …
``positive_delta`` 13 and native ``exemplars`` 16), built into a private descriptor pool
at import so they cannot clash with anyone else's definitions.

Mapping from prometheus_client's families (the text format's munging, in protobuf):
counter → ``COUNTER`` named ``<name>_total`` (its ``_created`` dropped); gauge, info
(``<name>_info`` = 1) and stateset → ``GAUGE``; unknown → ``UNTYPED``; summary →
``SUMMARY``; histogram / gaugehistogram → ``HISTOGRAM`` / ``GAUGE_HISTOGRAM`` with the
classic buckets (the ``+Inf`` bucket left implicit, as Go clients do: Prometheus adds it
from the count) and, for a sample carrying a ``NativeHistogram``, the native fields of the
same ``Metric`` (label set). Exemplars go on the counter and on the buckets.
"""

from __future__ import annotations

import math
import threading
from typing import Any, Dict, Iterable, List, Tuple


__all__ = ["CONTENT_TYPE_PROTOBUF", "accepts_protobuf", "encode_delimited", "metric_families",
           "MetricFamily", "Metric", "Histogram", "decode_delimited"]

CONTENT_TYPE_PROTOBUF = ("application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; "
                         "encoding=delimited")

def _file() -> Any:
    from google.protobuf import descriptor_pb2

    _T = descriptor_pb2.FieldDescriptorProto
    _OPT, _REP = _T.LABEL_OPTIONAL, _T.LABEL_REPEATED
    f = descriptor_pb2.FileDescriptorProto(name="lbh/io/prometheus/client/metrics.proto",
                                           package="io.prometheus.client", syntax="proto2",
                                           dependency=["google/protobuf/timestamp.proto"])

    def msg(name: str, *fields: Tuple[str, int, int, int, str]) -> None:
        m = f.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            fd = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                fd.type_name = type_name

    P = ".io.prometheus.client."
    msg("LabelPair", ("name", 1, _T.TYPE_STRING, _OPT, ""), ("value", 2, _T.TYPE_STRING, _OPT, ""))
    msg("Gauge", ("value", 1, _T.TYPE_DOUBLE, _OPT, ""))
    msg("Counter", ("value", 1, _T.TYPE_DOUBLE, _OPT, ""), ("exemplar", 2, _T.TYPE_MESSAGE, _OPT, P + "Exemplar"))
    msg("Quantile", ("quantile", 1, _T.TYPE_DOUBLE, _OPT, ""), ("value", 2, _T.TYPE_DOUBLE, _OPT, ""))
    msg("Summary", ("sample_count", 1, _T.TYPE_UINT64, _OPT, ""), ("sample_sum", 2, _T.TYPE_DOUBLE, _OPT, ""),
        ("quantile", 3, _T.TYPE_MESSAGE, _REP, P + "Quantile"))
    msg("Untyped", ("value", 1, _T.TYPE_DOUBLE, _OPT, ""))
    msg("Histogram",
        ("sample_count", 1, _T.TYPE_UINT64, _OPT, ""),
        ("sample_count_float", 4, _T.TYPE_DOUBLE, _OPT, ""),
        ("sample_sum", 2, _T.TYPE_DOUBLE, _OPT, ""),
        ("bucket", 3, _T.TYPE_MESSAGE, _REP, P + "Bucket"),
        ("schema", 5, _T.TYPE_SINT32, _OPT, ""),
        ("zero_threshold", 6, _T.TYPE_DOUBLE, _OPT, ""),
        ("zero_count", 7, _T.TYPE_UINT64, _OPT, ""),
        ("zero_count_float", 8, _T.TYPE_DOUBLE, _OPT, ""),
        ("negative_span", 9, _T.TYPE_MESSAGE, _REP, P + "BucketSpan"),
        ("negative_delta", 10, _T.TYPE_SINT64, _REP, ""),
        ("negative_count", 11, _T.TYPE_DOUBLE, _REP, ""),
        ("positive_span", 12, _T.TYPE_MESSAGE, _REP, P + "BucketSpan"),
        ("positive_delta", 13, _T.TYPE_SINT64, _REP, ""),
        ("positive_count", 14, _T.TYPE_DOUBLE, _REP, ""),
        ("exemplars", 16, _T.TYPE_MESSAGE, _REP, P + "Exemplar"))
    msg("Bucket", ("cumulative_count", 1, _T.TYPE_UINT64, _OPT, ""),
        ("cumulative_count_float", 4, _T.TYPE_DOUBLE, _OPT, ""),
        ("upper_bound", 2, _T.TYPE_DOUBLE, _OPT, ""),
        ("exemplar", 3, _T.TYPE_MESSAGE, _OPT, P + "Exemplar"))
    msg("BucketSpan", ("offset", 1, _T.TYPE_SINT32, _OPT, ""), ("length", 2, _T.TYPE_UINT32, _OPT, ""))
    msg("Exemplar", ("label", 1, _T.TYPE_MESSAGE, _REP, P + "LabelPair"), ("value", 2, _T.TYPE_DOUBLE, _OPT, ""),
        ("timestamp", 3, _T.TYPE_MESSAGE, _OPT, ".google.protobuf.Timestamp"))
    msg("Metric", ("label", 1, _T.TYPE_MESSAGE, _REP, P + "LabelPair"),
        ("gauge", 2, _T.TYPE_MESSAGE, _OPT, P + "Gauge"),
        ("counter", 3, _T.TYPE_MESSAGE, _OPT, P + "Counter"),
        ("summary", 4, _T.TYPE_MESSAGE, _OPT, P + "Summary"),
        ("untyped", 5, _T.TYPE_MESSAGE, _OPT, P + "Untyped"),
        ("histogram", 7, _T.TYPE_MESSAGE, _OPT, P + "Histogram"),
        ("timestamp_ms", 6, _T.TYPE_INT64, _OPT, ""))
    msg("MetricFamily", ("name", 1, _T.TYPE_STRING, _OPT, ""), ("help", 2, _T.TYPE_STRING, _OPT, ""),
        ("type", 3, _T.TYPE_ENUM, _OPT, P + "MetricType"),
        ("metric", 4, _T.TYPE_MESSAGE, _REP, P + "Metric"))
    enum = f.enum_type.add(name="MetricType")
    for i, name in enumerate(("COUNTER", "GAUGE", "SUMMARY", "UNTYPED", "HISTOGRAM", "GAUGE_HISTOGRAM")):
        enum.value.add(name=name, number=i)
    return f


def _build() -> Dict[str, Any]:
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2

    pool = descriptor_pool.DescriptorPool()
    ts = descriptor_pb2.FileDescriptorProto()
    timestamp_pb2.DESCRIPTOR.CopyToProto(ts)
    pool.Add(ts)
    pool.Add(_file())
    names = ("LabelPair", "Gauge", "Counter", "Quantile", "Summary", "Untyped", "Histogram", "Bucket",
             "BucketSpan", "Exemplar", "Metric", "MetricFamily")
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"io.prometheus.client.{n}"))
            for n in names}


_CLASSES: Dict[str, Any] = {}
_CLASSES_LOCK = threading.Lock()


def _classes() -> Dict[str, Any]:
    """The message classes, built on first use (``import instrumentation`` stays ~20 ms
    lighter for services that are never scraped over protobuf)."""
    if not _CLASSES:
        with _CLASSES_LOCK:
            if not _CLASSES:
                _CLASSES.update(_build())
    return _CLASSES


def __getattr__(name: str) -> Any:  # MetricFamily, Metric, Histogram, ...: the message classes
    if name in ("MetricFamily", "Metric", "Histogram", "Bucket", "BucketSpan", "Exemplar", "LabelPair"):
        return _classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

COUNTER, GAUGE, SUMMARY, UNTYPED, HISTOGRAM, GAUGE_HISTOGRAM = range(6)


def accepts_protobuf(accept: str) -> bool:
    """Whether ``accept`` (an HTTP Accept header) prefers the delimited MetricFamily
    protobuf to every text format it also lists (by q-value; ties go to protobuf, the
    first choice of the scrapers that ask for it)."""
    best_proto, best_other = -1.0, -1.0
    for part in (accept or "").split(","):
        fields = [p.strip() for p in part.split(";")]
        media = fields[0].lower()
        params = {}
        for p in fields[1:]:
            if "=" in p:
                k, v = p.split("=", 1)
                params[k.strip().lower()] = v.strip().strip('"')
        try:
            q = float(params.get("q", "1"))
        except ValueError:
            q = 0.0
        if media == "application/vnd.google.protobuf":
            if (params.get("proto") == "io.prometheus.client.MetricFamily"
                    and params.get("encoding", "delimited") == "delimited"):
                best_proto = max(best_proto, q)
        elif media:
            best_other = max(best_other, q)
    return best_proto > 0 and best_proto >= best_other


def _labels(target: Any, labels: Dict[str, str]) -> None:
    for k, v in sorted(labels.items()):
        target.add(name=k, value=v)


def _exemplar(msg: Any, ex: Any) -> None:
    _labels(msg.label, ex.labels)
    msg.value = float(ex.value)
    if ex.timestamp is not None:
        t = float(ex.timestamp)
        sec = math.floor(t)
        msg.timestamp.seconds = int(sec)
        msg.timestamp.nanos = int(round((t - sec) * 1e9)) % 1_000_000_000


def _native(h: Any, nh: Any) -> None:
    h.sample_count = int(nh.count_value)
    h.sample_sum = float(nh.sum_value)
    h.schema = int(nh.schema)
    h.zero_threshold = float(nh.zero_threshold)
    h.zero_count = int(nh.zero_count)
    for spans, deltas, span_field, delta_field in ((nh.pos_spans, nh.pos_deltas, h.positive_span, h.positive_delta),
                                                   (nh.neg_spans, nh.neg_deltas, h.negative_span, h.negative_delta)):
        for s in spans or ():
            span_field.add(offset=int(s.offset), length=int(s.length))
        delta_field.extend(int(d) for d in deltas or ())
    if not h.positive_span and not h.negative_span:
        h.positive_span.add(offset=0, length=0)  # the format's marker of a native histogram with no buckets
    for ex in nh.nh_exemplars or ():
        _exemplar(h.exemplars.add(), ex)


def _family(metric: Any) -> List[Any]:
    """One prometheus_client family as MetricFamily messages (a counter's ``_total``; the
    rest under the family's name)."""
    typ = metric.type
    name = metric.name
    out_type = {"counter": COUNTER, "gauge": GAUGE, "info": GAUGE, "stateset": GAUGE, "unknown": UNTYPED,
                "untyped": UNTYPED, "summary": SUMMARY, "histogram": HISTOGRAM,
                "gaugehistogram": GAUGE_HISTOGRAM}.get(typ, UNTYPED)
    fam_name = name + "_total" if typ == "counter" else name + "_info" if typ == "info" else name
    fam = _classes()["MetricFamily"](name=fam_name, help=metric.documentation, type=out_type)
    by_labels: Dict[Tuple[Tuple[str, str], ...], Any] = {}

    def metric_for(labels: Dict[str, str], drop: str = "") -> Any:
        key = tuple(sorted((k, v) for k, v in labels.items() if k != drop))
        m = by_labels.get(key)
        if m is None:
            m = by_labels[key] = fam.metric.add()
            _labels(m.label, dict(key))
        return m

    for s in metric.samples:
        suffix = s.name[len(name):] if s.name.startswith(name) else None
        if typ in ("histogram", "gaugehistogram"):
            if suffix == "_bucket":
                m = metric_for(s.labels, "le")
                le = float(s.labels["le"])
                if math.isinf(le) and le > 0:
                    if not m.histogram.HasField("sample_count"):
                        m.histogram.sample_count = int(s.value)
                    continue
                b = m.histogram.bucket.add(cumulative_count=int(s.value), upper_bound=le)
                if s.exemplar is not None:
                    _exemplar(b.exemplar, s.exemplar)
            elif suffix in ("_count", "_gcount"):
                metric_for(s.labels).histogram.sample_count = int(s.value)
            elif suffix in ("_sum", "_gsum"):
                metric_for(s.labels).histogram.sample_sum = float(s.value)
            elif suffix == "" and s.native_histogram is not None:
                _native(metric_for(s.labels).histogram, s.native_histogram)
            else:
                continue  # _created: not in the 2.42 format
        elif typ == "summary":
            if suffix == "_count":
                metric_for(s.labels).summary.sample_count = int(s.value)
            elif suffix == "_sum":
                metric_for(s.labels).summary.sample_sum = float(s.value)
            elif suffix == "" and "quantile" in s.labels:
                metric_for(s.labels, "quantile").summary.quantile.add(quantile=float(s.labels["quantile"]),
                                                                      value=float(s.value))
            else:
                continue
        elif typ == "counter":
            if suffix != "_total":
                continue
            m = metric_for(s.labels)
            m.counter.value = float(s.value)
            if s.exemplar is not None:
                _exemplar(m.counter.exemplar, s.exemplar)
        elif out_type == GAUGE:
            metric_for(s.labels).gauge.value = float(s.value)
        else:
            metric_for(s.labels).untyped.value = float(s.value)
        if s.timestamp is not None:
            metric_for(s.labels, "le" if typ in ("histogram", "gaugehistogram") else "quantile").timestamp_ms = \
                int(float(s.timestamp) * 1000)
    return [fam] if len(fam.metric) else []


def metric_families(registry: Any) -> List[Any]:
    """Every family of ``registry`` (anything with ``collect()``) as MetricFamily messages."""
    out: List[Any] = []
    for metric in registry.collect():
        out.extend(_family(metric))
    return out


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_delimited(registry: Any) -> bytes:
    """The registry in the delimited protobuf exposition format."""
    parts = []
    for fam in metric_families(registry):
        body = fam.SerializeToString()
        parts.append(_varint(len(body)))
        parts.append(body)
    return b"".join(parts)


def decode_delimited(data: bytes) -> Iterable[Any]:
    """The MetricFamily messages of a delimited body (tests and debugging)."""
    pos = 0
    while pos < len(data):
        n = shift = 0
        while True:
            b = data[pos]
            pos += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        fam = _classes()["MetricFamily"]()
        fam.ParseFromString(data[pos:pos + n])
        pos += n
        yield fam
