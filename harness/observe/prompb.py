"""Prometheus remote-write 1.0 messages (``prometheus.WriteRequest`` and what it holds).

No maintained PyPI package ships them, so they are declared here, once, as a
``FileDescriptorProto`` built at import and turned into message classes by the
``protobuf`` runtime: the bytes on the wire come from protobuf itself, not from a
hand-written encoder. Field numbers and types are those of prometheus/prometheus
``prompb/types.proto`` and ``prompb/remote.proto`` (the subset remote write 1.0 sends:
``WriteRequest.timeseries = 1``, ``metadata = 3``; a ``Histogram`` with integer counts is
delta-encoded, ``sint64`` deltas per bucket and ``sint32`` span offsets).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

__all__ = ["WriteRequest", "TimeSeries", "Label", "Sample", "Exemplar", "Histogram", "BucketSpan",
           "MetricMetadata", "FILE_DESCRIPTOR", "PACKAGE"]

PACKAGE = "prometheus"

_F = descriptor_pb2.FieldDescriptorProto
_OPT, _REP = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
_T = {"double": _F.TYPE_DOUBLE, "int64": _F.TYPE_INT64, "uint64": _F.TYPE_UINT64, "sint32": _F.TYPE_SINT32,
      "sint64": _F.TYPE_SINT64, "uint32": _F.TYPE_UINT32, "string": _F.TYPE_STRING, "enum": _F.TYPE_ENUM,
      "message": _F.TYPE_MESSAGE}

# (message, [(field, number, label, type, type_name or None, oneof index or None)], oneofs, enums)
_Field = Tuple[str, int, int, str, Optional[str], Optional[int]]
_MESSAGES: List[Tuple[str, List[_Field], Sequence[str], Dict[str, Sequence[Tuple[str, int]]]]] = [
    ("Label", [("name", 1, _OPT, "string", None, None), ("value", 2, _OPT, "string", None, None)], (), {}),
    ("Sample", [("value", 1, _OPT, "double", None, None), ("timestamp", 2, _OPT, "int64", None, None)], (), {}),
    ("Exemplar", [("labels", 1, _REP, "message", "Label", None), ("value", 2, _OPT, "double", None, None),
                  ("timestamp", 3, _OPT, "int64", None, None)], (), {}),
    ("BucketSpan", [("offset", 1, _OPT, "sint32", None, None), ("length", 2, _OPT, "uint32", None, None)], (), {}),
    ("Histogram", [
        ("count_int", 1, _OPT, "uint64", None, 0), ("count_float", 2, _OPT, "double", None, 0),
        ("sum", 3, _OPT, "double", None, None),
        ("schema", 4, _OPT, "sint32", None, None),
        ("zero_threshold", 5, _OPT, "double", None, None),
        ("zero_count_int", 6, _OPT, "uint64", None, 1), ("zero_count_float", 7, _OPT, "double", None, 1),
        ("negative_spans", 8, _REP, "message", "BucketSpan", None),
        ("negative_deltas", 9, _REP, "sint64", None, None),
        ("negative_counts", 10, _REP, "double", None, None),
        ("positive_spans", 11, _REP, "message", "BucketSpan", None),
        ("positive_deltas", 12, _REP, "sint64", None, None),
        ("positive_counts", 13, _REP, "double", None, None),
        ("reset_hint", 14, _OPT, "enum", "Histogram.ResetHint", None),
        ("timestamp", 15, _OPT, "int64", None, None),
    ], ("count", "zero_count"), {"ResetHint": (("UNKNOWN", 0), ("YES", 1), ("NO", 2), ("GAUGE", 3))}),
    ("TimeSeries", [("labels", 1, _REP, "message", "Label", None), ("samples", 2, _REP, "message", "Sample", None),
                    ("exemplars", 3, _REP, "message", "Exemplar", None),
                    ("histograms", 4, _REP, "message", "Histogram", None)], (), {}),
    ("MetricMetadata", [("type", 1, _OPT, "enum", "MetricMetadata.MetricType", None),
                        ("metric_family_name", 2, _OPT, "string", None, None),
                        ("help", 4, _OPT, "string", None, None), ("unit", 5, _OPT, "string", None, None)], (),
     {"MetricType": (("UNKNOWN", 0), ("COUNTER", 1), ("GAUGE", 2), ("HISTOGRAM", 3), ("GAUGEHISTOGRAM", 4),
                     ("SUMMARY", 5), ("INFO", 6), ("STATESET", 7))}),
    ("WriteRequest", [("timeseries", 1, _REP, "message", "TimeSeries", None),
                      ("metadata", 3, _REP, "message", "MetricMetadata", None)], (), {}),
]


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    fd = descriptor_pb2.FileDescriptorProto(name="lbh/prometheus_remote.proto", package=PACKAGE, syntax="proto3")
    for name, fields, oneofs, enums in _MESSAGES:
        msg = fd.message_type.add(name=name)
        for oneof in oneofs:
            msg.oneof_decl.add(name=oneof)
        for enum_name, values in enums.items():
            enum = msg.enum_type.add(name=enum_name)
            for value_name, number in values:
                enum.value.add(name=value_name, number=number)
        for fname, number, label, ftype, type_name, oneof_index in fields:
            field = msg.field.add(name=fname, number=number, label=label, type=_T[ftype])
            if type_name:
                field.type_name = f".{PACKAGE}.{type_name}"
            if oneof_index is not None:
                field.oneof_index = oneof_index
    return fd


FILE_DESCRIPTOR = _file_descriptor()
_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(FILE_DESCRIPTOR)


def _cls(name: str) -> Any:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))


Label = _cls("Label")
Sample = _cls("Sample")
Exemplar = _cls("Exemplar")
BucketSpan = _cls("BucketSpan")
Histogram = _cls("Histogram")
TimeSeries = _cls("TimeSeries")
MetricMetadata = _cls("MetricMetadata")
WriteRequest = _cls("WriteRequest")
