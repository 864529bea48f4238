"""What the Prometheus stack saw during a run: alerts that fired, notifications received,
and Prometheus's own percentiles next to the harness's exact HDR figures.

The cross-check catches bucket layouts that lie: ``histogram_quantile`` interpolates
inside the bucket holding the quantile, so it must land in the same bucket as the exact
value; when it does not, the buckets (or the scrape) are wrong. When Prometheus scraped the
native histograms too (``--enable-feature=native-histograms``, as ``--stack local``
starts it), each row also has the native ``histogram_quantile`` and its distance from HDR
in percent, against the goal of :data:`NATIVE_GOAL_PCT` (schema 5 buckets are 2.19 %
wide, :mod:`harness.record.native`).
"""

from __future__ import annotations

import bisect
import math
from typing import Any, Dict, List, Optional, Sequence

from instrumentation import DEFAULT_BUCKETS
from harness.record.recorder import histogram_stats

__all__ = ["fired_alerts", "quantile_crosscheck", "server_quantiles", "bucket_of", "NATIVE_GOAL_PCT"]

#: how far (percent) the native histogram's quantile may sit from HDR's
NATIVE_GOAL_PCT = 2.5


def fired_alerts(client: Any, start: float, end: float) -> List[Dict[str, Any]]:
    """Every alert that was firing at some point in [start, end] (1 s resolution)."""
    series = client.query_range('ALERTS{alertstate="firing"}', start, end, 1.0)
    out = []
    for s in series:
        labels = dict(s["metric"])
        labels.pop("__name__", None)
        labels.pop("alertstate", None)
        times = [float(t) for t, _v in s["values"]]
        if not times:
            continue
        out.append({
            "alertname": labels.get("alertname"),
            "severity": labels.get("severity"),
            "labels": labels,
            "first_seen": min(times),
            "last_seen": max(times),
            "firing_s": round(max(times) - min(times) + 1.0, 1),
            "still_firing_at_end": max(times) >= end - 2.0,
        })
    out.sort(key=lambda a: (a["first_seen"], a["alertname"] or ""))
    return out


def bucket_of(value_s: float, bounds: Sequence[float] = DEFAULT_BUCKETS) -> List[Optional[float]]:
    """[lower, upper] of the histogram bucket holding ``value_s`` (upper None = +Inf)."""
    i = bisect.bisect_left(list(bounds), value_s)
    lower = bounds[i - 1] if i > 0 else 0.0
    upper = bounds[i] if i < len(bounds) else None
    return [lower, upper]


def _scalar_by(result: List[Dict[str, Any]], label: str) -> Dict[str, float]:
    out = {}
    for r in result:
        v = float(r["value"][1])
        if not math.isnan(v):
            out[r["metric"].get(label, "")] = v
    return out


def quantile_crosscheck(client: Any, recorder: Any, job: str, at: float,
                        quantiles: Sequence[float] = (0.95, 0.99)) -> List[Dict[str, Any]]:
    """Per target: Prometheus's ``histogram_quantile`` over the harness's latency histogram
    (the whole run: the counters started at zero with the run) against the HDR value; the
    native histogram's too when Prometheus has it (``native_ms``, ``native_error_pct``,
    ``native_within_goal``)."""
    rows = []
    for q in quantiles:
        expr = (f'histogram_quantile({q}, sum by (le, target) '
                f'(lbh_harness_latency_seconds_bucket{{job="{job}"}}))')
        prom = _scalar_by(client.query(expr, at), "target")
        native = _scalar_by(client.query(
            f'histogram_quantile({q}, sum by (target) (lbh_harness_latency_native_seconds{{job="{job}"}}))', at),
            "target")
        for target in recorder.targets():
            stats = histogram_stats(recorder.histogram("latency", target))
            key = f"p{round(q * 100):d}"
            hdr_ms = stats.get(key)
            p_s = prom.get(target)
            row: Dict[str, Any] = {"target": target, "quantile": q, "hdr_ms": hdr_ms,
                                   "prometheus_ms": None if p_s is None else round(p_s * 1000, 3)}
            if hdr_ms is not None and p_s is not None:
                lo, hi = bucket_of(hdr_ms / 1000.0)
                # HDR values are exact to 0.1 %: a value on a bucket edge may sit either side
                lo_ok = lo * 0.999 if lo else 0.0
                hi_ok = math.inf if hi is None else hi * 1.001
                row["bucket_s"] = [lo, hi]
                row["difference_ms"] = round(p_s * 1000 - hdr_ms, 3)
                row["within_bucket"] = lo_ok <= p_s <= hi_ok
            n_s = native.get(target)
            if n_s is not None:  # absent: Prometheus without native histograms
                row["native_ms"] = round(n_s * 1000, 3)
                if hdr_ms:
                    err = abs(n_s * 1000 - hdr_ms) / hdr_ms * 100
                    row["native_error_pct"] = round(err, 3)
                    row["native_within_goal"] = err <= NATIVE_GOAL_PCT
            rows.append(row)
    return rows


def server_quantiles(client: Any, job: str, at: float, quantiles: Sequence[float] = (0.95, 0.99),
                     window_s: Optional[float] = None) -> Dict[str, Dict[str, float]]:
    """Per instrumented operation, Prometheus's p95/p99 of ``lbh_operation_duration_seconds``
    (the target's own, server-side view). ``window_s`` None = the counters' whole life."""
    out: Dict[str, Dict[str, float]] = {}
    for q in quantiles:
        sel = f'lbh_operation_duration_seconds_bucket{{job="{job}"}}'
        inner = f"increase({sel}[{int(window_s)}s])" if window_s else sel
        expr = f"histogram_quantile({q}, sum by (le, operation) ({inner}))"
        for op, v in _scalar_by(client.query(expr, at), "operation").items():
            out.setdefault(op, {})[f"p{round(q * 100):d}_ms"] = round(v * 1000, 3)
    return out
