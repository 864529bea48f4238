"""What one remote-write batch costs the harness, against what one scrape of the same
``/metrics`` costs, measured in this run on the same registry.

A recorder holding ``--requests`` requests spread over ``--targets`` targets (latencies
1..300 ms, a few errors) behind the run's :class:`harness.run.live.LiveCollector`; then,
``--repeat`` times each:

* **scrape** — what a scrape of ``/metrics`` makes the harness produce (the baselines):
  the protobuf exposition with the native histograms (Prometheus with native histograms
  on), and the text exposition of the classic series (everyone else);
* **remote write** — what the sender's collector thread does each second: collect the
  same registry, build the ``prometheus.WriteRequest`` (native histograms included) and
  snappy-compress it (:mod:`harness.observe.remote_write`).

Prints milliseconds per batch, the ratio to a scrape, the compressed size, and the share
of one core at one batch a second; nothing is asserted.

    .venv/bin/python benchmarks/remote_write.py
    .venv/bin/python benchmarks/remote_write.py --targets 8 --requests 200000
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest

from instrumentation.proto_exposition import encode_delimited
from instrumentation.server import ClassicOnly

from harness.config import profiles
from harness.observe.remote_write import build_write_request, encode_write_request
from harness.record.recorder import Recorder
from harness.run.live import LiveCollector, RunState


def _registry(targets: int, requests: int) -> CollectorRegistry:
    rec = Recorder()
    rng = np.random.default_rng(1)
    lat_ns = (rng.uniform(1, 300, requests) * 1e6).astype(np.int64)
    for k in range(requests):
        target = f"t{k % targets}"
        outcome = "error" if k % 97 == 0 else "ok"
        start = k * 1_000_000
        rec.record(target, outcome, start, start, start + int(lat_ns[k]),
                   error_type="E" if outcome == "error" else None)
    rec.flush()
    state = RunState("bench", "bench", "t", profiles.constant(100, 60), 60.0)
    state.t0_ns = time.perf_counter_ns()
    reg = CollectorRegistry()
    reg.register(LiveCollector(lambda: rec, state))
    return reg


def _time(fn, repeat: int) -> float:
    fn()  # warm
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", type=int, default=4)
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=50)
    a = ap.parse_args()
    reg = _registry(a.targets, a.requests)
    labels = {"job": "harness", "instance": "bench"}

    def batch() -> bytes:
        return encode_write_request(build_write_request(reg.collect(), int(time.time() * 1000), labels))

    proto_s = _time(lambda: encode_delimited(reg), a.repeat)
    text_s = _time(lambda: generate_latest(ClassicOnly(reg)), a.repeat)
    rw_s = _time(batch, a.repeat)
    collect_s = _time(lambda: list(reg.collect()), a.repeat)
    families = list(reg.collect())
    enc_s = _time(lambda: encode_write_request(build_write_request(families, 0, labels)), a.repeat)
    body = batch()
    req = build_write_request(reg.collect(), 0, labels)
    n_hist = sum(len(ts.histograms) for ts in req.timeseries)
    print(f"{a.targets} targets, {a.requests} requests: {len(req.timeseries)} series, {n_hist} of them native "
          f"histograms (median of {a.repeat})")
    print(f"scrape, protobuf with native histograms: {proto_s * 1e3:7.2f} ms")
    print(f"scrape, text (classic series only):      {text_s * 1e3:7.2f} ms")
    print(f"remote-write batch (build + snappy):     {rw_s * 1e3:7.2f} ms = {rw_s / proto_s:.2f} x the protobuf "
          f"scrape, {rw_s / text_s:.2f} x the text one; {len(body) / 1024:.1f} KiB on the wire; "
          f"{rw_s * 100:.2f} % of one core at 1 batch/s")
    print(f"  of which reading the recorder (registry.collect(), as any scrape): {collect_s * 1e3:.2f} ms; "
          f"the remote-write encoding alone: {enc_s * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
