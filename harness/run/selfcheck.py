"""The generator's self-check (thresholds are judged by ``Recorder.threshold_source``).

A run is *invalid* (exit 98) when its numbers describe the generator rather than the
target: the scheduler woke more than ``lag_bound_ms`` late at p99 (measured only where a
worker was free, so waiting for a busy target is not blamed on the generator), or the
process kept the machine's CPUs saturated.

In a short run p99 is the single worst start (60 requests: rank 60 of 60), so one
hiccup would void it; the lag rule therefore also needs at least ``MIN_LATE_STARTS``
starts over the bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from harness.engine.base import LAG_BUCKET_NS

__all__ = ["GeneratorHealth", "judge_generator", "MIN_LATE_STARTS"]

MIN_LATE_STARTS = 2

@dataclass
class GeneratorHealth:
    """The generator's self-check, kept in the result."""

    schedule_lag_p50_ms: Optional[float]
    schedule_lag_p99_ms: Optional[float]
    lag_bound_ms: float
    cpu_percent_mean: float
    cpu_count: int
    cpu_bound_fraction: float
    reasons: List[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.reasons

    def to_dict(self) -> Dict[str, Any]:
        return {
            "valid": self.valid,
            "reasons": list(self.reasons),
            "schedule_lag_p50_ms": self.schedule_lag_p50_ms,
            "schedule_lag_p99_ms": self.schedule_lag_p99_ms,
            "lag_bound_ms": self.lag_bound_ms,
            "cpu_percent_mean": self.cpu_percent_mean,
            "cpu_count": self.cpu_count,
            "cpu_bound_fraction": self.cpu_bound_fraction,
        }


def judge_generator(
    sched_lag_percentile,
    *,
    cpu_percent_mean: float,
    cpu_count: int,
    lag_bound_ms: float = 5.0,
    cpu_bound_fraction: float = 0.9,
    samples: int = 0,
    loop_cpu_fraction: Optional[float] = None,
    lag_counts: Optional[Sequence[int]] = None,
) -> GeneratorHealth:
    """``sched_lag_percentile(p) -> ms or None`` over the requests that found a free worker;
    ``lag_counts``: the same lag in ``LAG_BUCKET_NS`` buckets (to count the late starts)."""
    p50 = sched_lag_percentile(50.0)
    p99 = sched_lag_percentile(99.0)
    reasons = []
    late = MIN_LATE_STARTS
    if lag_counts:
        # the buckets whose upper edge is over the bound (the edge the percentile reports)
        late = sum(lag_counts[int(lag_bound_ms * 1e6 // LAG_BUCKET_NS):])
    if p99 is not None and p99 > lag_bound_ms and late >= MIN_LATE_STARTS:
        reasons.append(
            f"schedule lag p99 {p99:.2f} ms > {lag_bound_ms:g} ms: the generator started requests late "
            "(this run measures the generator, not the target); lower the rate, add --workers, or "
            "give the generator its own CPU"
        )
    if samples >= 3 and cpu_percent_mean >= cpu_bound_fraction * 100.0 * cpu_count:
        reasons.append(
            f"process CPU averaged {cpu_percent_mean:.0f} % of {cpu_count} core(s): generator and in-process "
            "target saturated the machine, so latencies include CPU queueing in the generator"
        )
    if loop_cpu_fraction is not None and loop_cpu_fraction >= cpu_bound_fraction:
        reasons.append(
            f"the event loop was busy {loop_cpu_fraction:.0%} of the run: the generator's own client was the "
            "bottleneck (requests waited in it, not in the target); lower the rate or add --workers"
        )
    return GeneratorHealth(p50, p99, lag_bound_ms, cpu_percent_mean, cpu_count, cpu_bound_fraction, reasons)
