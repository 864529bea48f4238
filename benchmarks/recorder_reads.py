"""What reading the recorder costs at scrape time, measured now against the reference.

    .venv/bin/python benchmarks/recorder_reads.py [--requests N] [--reps R]

A live scrape and each remote-write batch read every histogram's mean and percentiles.
Prints, for one HDR histogram of N lognormal latencies: hdrhistogram's own
``get_mean_value`` / ``get_value_at_percentile`` (Python loops over the counts) beside the
recorder's numpy versions, with the ratio, and checks they agree.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from hdrh.histogram import HdrHistogram  # noqa: E402

from harness.record.recorder import (  # noqa: E402
    HIST_HIGHEST_US, HIST_LOWEST_US, HIST_SIGNIFICANT_FIGURES, histogram_mean, value_at_percentile,
)


def _time(fn, reps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=50)
    args = ap.parse_args()
    h = HdrHistogram(HIST_LOWEST_US, HIST_HIGHEST_US, HIST_SIGNIFICANT_FIGURES)  # the recorder's layout
    for v in np.random.default_rng(1).lognormal(9, 1, args.requests).astype(np.int64):
        h.record_value(int(max(1, v)))
    pairs = [
        ("mean", lambda: h.get_mean_value(), lambda: histogram_mean(h)),
        ("p99", lambda: h.get_value_at_percentile(99.0), lambda: value_at_percentile(h, 99.0)),
    ]
    print(f"recorder reads: one histogram of {args.requests} latencies, {args.reps} reps each")
    print(f"{'figure':8} {'hdrhistogram us':>16} {'recorder us':>12} {'speed-up':>9}  agree")
    for name, ref, ours in pairs:
        a, b = ref(), ours()
        agree = abs(a - b) <= 1e-9 * max(1.0, abs(a))
        t_ref, t_ours = _time(ref, args.reps), _time(ours, args.reps)
        print(f"{name:8} {t_ref:16.1f} {t_ours:12.1f} {t_ref / t_ours:8.1f}x  {agree} ({a:.6g} vs {b:.6g})")


if __name__ == "__main__":
    main()
