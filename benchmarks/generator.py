"""How fast and how honest is the generator itself?

Prints, measured now on this machine:
  1. for a no-op target, lag p50/p99 (actual start − intended) at each tried rate, and the
     highest rate one process sustains with lag p99 <= 1 ms;
  2. lag p50/p99 at 1,000 and 10,000 requests/s;
  3. the harness's own CPU share while it drives the reference extractor at 50 rps:
     (process CPU during the run − CPU of the same calls paced by a bare loop) / wall;
  4. what a request body costs the HTTP target: JSON-encoding one 60 x 15 feature window
     per request against ``workloads.plugin.payloads.feature_window`` (encoded once, per request a
     lookup), and the bytes the target writes for each.

    .venv/bin/python benchmarks/generator.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from prometheus_client import CollectorRegistry  # noqa: E402

from harness.run.runner import Run, RunOptions  # noqa: E402
from harness.config.scenario import load_scenario  # noqa: E402


def run(target: str, rate: float, seconds: float, threads: int) -> dict:
    sc = load_scenario(None, {"target": target, "profile.rate": rate, "duration": seconds,
                              "executor.threads": threads, "executor.max_in_flight": threads,
                              "thresholds": {}}, env={})
    opts = RunOptions(metrics_port=None, progress="off", install_signal_handlers=False)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    result = Run(sc, opts, registry=CollectorRegistry()).execute()
    wall = time.perf_counter() - t0
    result["_cpu_s"] = time.process_time() - cpu0
    result["_wall_s"] = wall
    return result


def lag_row(result: dict) -> tuple:
    a = result["summary"]["all"]
    n = a["count"]
    achieved = a["outcomes"]["ok"] / result["scenario"]["duration"]
    g = result["generator"]
    return n, achieved, a["lag"]["p50"], a["lag"]["p99"], g["schedule_lag_p99_ms"], a["outcomes"]["dropped"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter steps (a smoke run)")
    ap.add_argument("--threads", type=int, default=4, help="worker threads for the no-op runs")
    args = ap.parse_args()
    step_s = 2.0 if args.quick else 5.0

    print(f"no-op target, one process, {args.threads} worker threads, {step_s:g} s per step")
    print(f"{'rate/s':>8} {'sent':>8} {'achieved/s':>11} {'lag p50 ms':>11} {'lag p99 ms':>11} "
          f"{'sched p99':>10} {'dropped':>8}")
    best = None
    rates = [1_000, 2_000, 5_000, 10_000, 15_000, 20_000, 25_000, 30_000, 40_000]
    at = {}
    for rate in rates:
        res = run("noop", rate, step_s, args.threads)
        n, achieved, p50, p99, sched, dropped = lag_row(res)
        at[rate] = (p50, p99)
        print(f"{rate:>8,} {n:>8,} {achieved:>11,.0f} {p50:>11.3f} {p99:>11.3f} {sched or 0:>10.3f} {dropped:>8}")
        if p99 is not None and p99 <= 1.0 and achieved >= 0.99 * rate:
            best = rate
        elif rate > 10_000:
            break  # past the knee: further steps only measure the backlog
    print(f"\nhighest rate with lag p99 <= 1 ms: {best:,} rps" if best else "\nno tried rate kept lag p99 <= 1 ms")
    for r in (1_000, 10_000):
        if r in at:
            print(f"lag at {r:>6,} rps: p50 {at[r][0]:.3f} ms, p99 {at[r][1]:.3f} ms")

    # harness CPU share at 50 rps against the extractor
    from workloads.extractor import ExtractorConfig, build_extractor
    from workloads.market_data import MarketDataGenerator

    seconds = 6.0 if args.quick else 20.0
    res = run("features", 50.0, seconds, 32)
    calls = res["summary"]["all"]["count"]
    windows = MarketDataGenerator(0).windows(2048)
    bare_ext = build_extractor(ExtractorConfig(seed=0), CollectorRegistry())
    for w in windows[:4]:
        bare_ext.extract(w)
    # The baseline paces the same calls at the same rate with a plain sleep loop: calls
    # spaced 20 ms apart cost more CPU than back-to-back ones (cold caches), and that is
    # the target's cost, not the harness's.
    c0 = time.process_time()
    start = time.perf_counter()
    for i in range(calls):
        delay = start + i / 50.0 - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        bare_ext.extract(windows[(i * 7919) % len(windows)])
    bare_cpu = time.process_time() - c0
    rs = res["resources"]["summary"]  # CPU of the measured phase only (no model load, no report)
    share = (rs["process_cpu_seconds"] - bare_cpu) / rs["wall_seconds"]
    print(f"\nextractor at 50 rps for {seconds:g} s: {calls} calls, CPU during the run "
          f"{rs['process_cpu_seconds']:.2f} s, the same calls paced by a bare loop {bare_cpu:.2f} s, wall {rs['wall_seconds']:.1f} s")
    print(f"harness's own CPU share: {share * 100:.1f} % of one core (origin documents ask < 5 %)")
    a = res["summary"]["all"]
    print(f"  (that run: p95 {a['latency']['p95']:.2f} ms, p99 {a['latency']['p99']:.2f} ms, "
          f"lag p99 {a['lag']['p99']:.3f} ms)")
    payload_cost()


def payload_cost(n: int = 300) -> None:
    """Encoding a feature window per request vs the pre-encoded pool (same bodies)."""
    import json
    import timeit

    from harness.targets.http import _Request
    from workloads.plugin.payloads import feature_window, window_pool

    pool = window_pool(0)
    feature_window(0)  # build the encoded pool before timing
    req = _Request("POST", "http://127.0.0.1:8000/v1/features", {})
    per_call = min(timeit.repeat(lambda: req.encode({"window": pool[7].tolist()}), number=n, repeat=3)) / n
    cached = min(timeit.repeat(lambda: req.encode(feature_window(7)), number=n, repeat=3)) / n
    size = len(json.dumps({"window": pool[7].tolist()}, separators=(",", ":")))
    print(f"\nrequest body, one 60 x 15 window ({size:,} bytes of JSON):")
    print(f"  encoded per request     {per_call * 1e3:8.3f} ms")
    print(f"  pre-encoded pool        {cached * 1e3:8.3f} ms   ({per_call / cached:,.0f}x less)")


if __name__ == "__main__":
    main()
