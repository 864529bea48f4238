"""Per-call cost of ``instrument`` against a bare call and prometheus_client's own timer.

Prints ns per call (best of several repeats, so scheduler noise does not inflate it) and
ratios measured in this run: metrics-only against ``Histogram.time()`` (the anchor), the
span paths against OpenTelemetry's own ``start_as_current_span`` with the same sampler,
and the overhead as a fraction of one reference extractor call.

    .venv/bin/python benchmarks/instrumentation_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import timeit

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from prometheus_client import CollectorRegistry, Histogram  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult  # noqa: E402
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased  # noqa: E402

from instrumentation import DEFAULT_BUCKETS, instrument  # noqa: E402


class _DiscardExporter(SpanExporter):
    """Receives batches and drops them: we time the call path, not a network."""

    def export(self, spans):  # noqa: D401
        return SpanExportResult.SUCCESS

    def shutdown(self):
        pass


def _provider(sampler) -> TracerProvider:
    tp = TracerProvider(sampler=sampler)
    tp.add_span_processor(BatchSpanProcessor(_DiscardExporter(), max_queue_size=65536, max_export_batch_size=4096))
    return tp


def ns_per_call(fn, number: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    args = ap.parse_args()
    n_fast, n_span, rep = (20_000, 2_000, 3) if args.quick else (200_000, 20_000, 7)

    def bare():
        return 1

    reg = CollectorRegistry()
    anchor_hist = Histogram("anchor_seconds", "anchor", ["operation", "outcome"], buckets=DEFAULT_BUCKETS, registry=reg)
    anchored = anchor_hist.labels("bare", "ok").time()(bare)

    metrics_only = instrument("metrics_only", registry=CollectorRegistry(), tracer_provider=object())(bare)

    results = {}
    results["bare call"] = ns_per_call(bare, n_fast, rep)
    results["prometheus_client Histogram.time() (anchor)"] = ns_per_call(anchored, n_fast, rep)
    results["instrument, metrics only"] = ns_per_call(metrics_only, n_fast, rep)

    span_rows = []
    for label, sampler in (("sampled span (always on)", ALWAYS_ON),
                           ("1 % sampler (parent-based ratio)", ParentBased(TraceIdRatioBased(0.01)))):
        tp = _provider(sampler)
        tracer = tp.get_tracer("bench")

        def otel_own():
            with tracer.start_as_current_span("op"):
                return 1

        inst = instrument("span_" + label.split()[0], registry=CollectorRegistry(), tracer_provider=tp)(bare)
        otel_ns = ns_per_call(otel_own, n_span, rep)
        inst_ns = ns_per_call(inst, n_span, rep)
        tp.shutdown()
        results[f"OTel start_as_current_span, {label}"] = otel_ns
        results[f"instrument, {label}"] = inst_ns
        span_rows.append((label, inst_ns, otel_ns))

    width = max(len(k) for k in results)
    print(f"{'path':<{width}}  ns/call")
    for k, v in results.items():
        print(f"{k:<{width}}  {v:>9,.0f}")
    anchor = results["prometheus_client Histogram.time() (anchor)"]
    print()
    print(f"metrics-only / anchor: {results['instrument, metrics only'] / anchor:.2f}x   (target <= 1.5x)")
    for label, inst_ns, otel_ns in span_rows:
        print(f"{label}: instrument {inst_ns / 1000:.1f} us = {inst_ns / otel_ns:.2f}x OTel's own span")

    try:
        from workloads.extractor import ExtractorConfig, build_extractor
        from workloads.market_data import MarketDataGenerator
    except ImportError as exc:  # workloads not importable: say so, do not invent a figure
        print(f"\n(extractor fraction skipped: {exc})")
        return
    import numpy as np

    ext = build_extractor(ExtractorConfig(enable_caching=False), registry=CollectorRegistry())
    gen = MarketDataGenerator(seed=7)
    windows = [gen.window() for _ in range(64)]
    for w in windows[:8]:
        ext.extract(w)
    times = []
    import time
    for w in windows:
        t0 = time.perf_counter_ns()
        ext.extract(w)
        times.append(time.perf_counter_ns() - t0)
    ext_ns = float(np.median(times))
    print(f"\none extractor call (median, cache off): {ext_ns / 1e6:.2f} ms")
    for label, inst_ns in (("metrics only", results["instrument, metrics only"]),) + tuple((r[0], r[1]) for r in span_rows):
        overhead = inst_ns - results["bare call"]
        print(f"instrument overhead, {label}: {overhead / ext_ns * 100:.3f} % of one extractor call")


if __name__ == "__main__":
    main()
