"""Per-call cost of ``instrument(..., native=True)`` against ``instrument`` (classic only),
and of serving the native histograms (HDR → native conversion, protobuf encoding).

Prints ns per call (best of several repeats) for a bare call, the classic-only decorator
and the classic + native decorator, in this run, and the ratios native / classic and the
native histogram's added ns; then the cost of one scrape's work for the harness's live
histograms (``harness.record.native.from_hdr`` on an HDR histogram of a 150 ms run, and
the protobuf encoding of the registry).

    .venv/bin/python benchmarks/native_histogram_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import timeit

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from harness.record.native import from_hdr  # noqa: E402
from harness.record.recorder import Recorder  # noqa: E402
from instrumentation import instrument  # noqa: E402
from instrumentation.proto_exposition import encode_delimited  # noqa: E402


def ns_per_call(fn, number: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    args = ap.parse_args()
    number, rep = (20_000, 3) if args.quick else (200_000, 7)

    def bare():
        return 1

    classic = instrument("classic", registry=CollectorRegistry())(bare)
    native = instrument("native", registry=CollectorRegistry(), native=True)(bare)
    # interleaved rounds: both see the same machine state
    t_bare, t_classic, t_native = [], [], []
    for _ in range(rep):
        t_bare.append(ns_per_call(bare, number, 1))
        t_classic.append(ns_per_call(classic, number, 1))
        t_native.append(ns_per_call(native, number, 1))
    b, c, n = min(t_bare), min(t_classic), min(t_native)
    print(f"bare call                         {b:8.0f} ns")
    print(f"instrument() classic              {c:8.0f} ns")
    print(f"instrument(native=True)           {n:8.0f} ns")
    print(f"native / classic                  {n / c:8.2f} x   (+{n - c:.0f} ns per call for the native histogram)")

    rec = Recorder(origin_ns=0)
    rng = np.random.default_rng(1)
    lat = rng.lognormal(np.log(150e6), 0.2, 50_000).astype(np.int64)
    for i, d in enumerate(lat.tolist()):
        t = i * 1_000_000
        rec.record("api", "ok", t, t, t + d)
    h = rec.histogram("latency", "api", ("ok",))
    conv = ns_per_call(lambda: from_hdr(h), 200 if args.quick else 2000, rep) / 1e3
    nh = from_hdr(h)
    print(f"from_hdr (50k requests, {sum(s.length for s in nh.pos_spans)} buckets)  {conv:8.1f} µs per histogram")
    reg = CollectorRegistry()
    f = instrument("op", registry=reg, native=True)(bare)
    for _ in range(1000):
        f()
    enc = ns_per_call(lambda: encode_delimited(reg), 200 if args.quick else 2000, rep) / 1e3
    print(f"protobuf exposition (1 operation)  {enc:8.1f} µs per scrape")


if __name__ == "__main__":
    main()
