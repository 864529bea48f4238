"""Soak analysis: is memory flat, is latency stable?  A verdict with its uncertainty.

**Memory (leak verdict).** The RSS samples a run keeps (``result["resources"]["samples"]``,
one a second) are fitted with ordinary least squares, ``rss = a + b·t``, after dropping a
warm-up (default: the first 20 % of samples — allocators, caches and thread stacks grow
at the start of any run).  The slope's standard error is the OLS one, inflated for the
samples' autocorrelation (RSS this second is RSS last second plus a little): with lag-1
autocorrelation ``ρ`` of the residuals, ``n_eff = n·(1−ρ)/(1+ρ)`` so the error grows by
``√((1+ρ)/(1−ρ))``.  With a ~95 % interval ``b ± 2·SE``:

* ``leak``: the interval lies above the tolerance — the growth is real and too large;
* ``flat``: the interval lies below the tolerance;
* ``inconclusive``: it straddles the tolerance — run longer;
* ``insufficient data``: fewer than ``min_samples`` samples after the warm-up.

Tolerances (the SPEC's figures): ``tolerance_bytes_per_hour`` (default 50 MiB/h, "flat over
a 1-hour soak") and, when the run's throughput is known, bytes per request against
``budget_bytes_per_request`` = 1 GB / 10,000 extractions.  A leak on either is a leak.

For in-process targets the RSS is the harness's plus the target's. The harness's own
memory is bounded on purpose (recorder windows coarsen beyond ``max_windows``, resource
samples thin beyond ``max_samples``, the schedule is generated lazily), so a sustained
trend is the target's.

**Latency stability.** The same fit on the per-window p95 (ms per minute), judged against
``latency_drift_ms_per_min`` (default 1 ms/min): ``stable`` / ``drifting`` /
``inconclusive``.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from harness.exitcodes import ExitCode
from harness.result.summary import run_duration

__all__ = ["Trend", "fit_trend", "rss_trend", "leak_verdict", "latency_stability", "analyze", "format_soak",
           "soak_exit_code", "MIB", "GB", "SOAK_SCHEMA"]

MIB = 2**20
GB = 10**9
SOAK_SCHEMA = "harness.studies.soak/1"


class Trend(dict):
    """``slope``, ``stderr``, ``intercept``, ``n``, ``n_eff``, ``rho``, ``low``, ``high`` (slope ± z·SE)."""


def fit_trend(ts: Sequence[float], ys: Sequence[float], *, z: float = 2.0) -> Optional[Trend]:
    """OLS slope with an autocorrelation-corrected standard error; None below 3 points."""
    pts = [(float(t), float(y)) for t, y in zip(ts, ys) if t is not None and y is not None
           and math.isfinite(float(y))]
    n = len(pts)
    if n < 3:
        return None
    mt = sum(t for t, _ in pts) / n
    my = sum(y for _, y in pts) / n
    sxx = sum((t - mt) ** 2 for t, _ in pts)
    if sxx <= 0:
        return None
    slope = sum((t - mt) * (y - my) for t, y in pts) / sxx
    intercept = my - slope * mt
    res = [y - (intercept + slope * t) for t, y in pts]
    ssr = sum(r * r for r in res)
    se = math.sqrt(ssr / (n - 2) / sxx) if n > 2 else float("inf")
    den = sum(r * r for r in res)
    rho = (sum(res[i] * res[i - 1] for i in range(1, n)) / den) if den > 0 else 0.0
    rho = min(max(rho, 0.0), 0.95)  # only positive autocorrelation widens; cap keeps it finite
    inflate = math.sqrt((1 + rho) / (1 - rho))
    se *= inflate
    return Trend(slope=slope, stderr=se, intercept=intercept, n=n, n_eff=n * (1 - rho) / (1 + rho), rho=rho,
                 low=slope - z * se, high=slope + z * se)


def _judge(trend: Optional[Trend], tolerance: float, words: Tuple[str, str]) -> str:
    if trend is None:
        return "insufficient data"
    if trend["low"] > tolerance:
        return words[0]
    if trend["high"] < tolerance:
        return words[1]
    return "inconclusive"


def rss_trend(samples: Sequence[Mapping[str, Any]], *, warmup_fraction: float = 0.2,
              min_samples: int = 10) -> Tuple[Optional[Trend], int]:
    """Trend of RSS (bytes/s) over the samples after the warm-up; (None, n) when too few."""
    pts = [(s.get("t_s"), s.get("process_rss_bytes")) for s in samples
           if s.get("t_s") is not None and s.get("process_rss_bytes") is not None]
    skip = int(len(pts) * warmup_fraction)
    pts = pts[skip:]
    if len(pts) < max(3, min_samples):
        return None, len(pts)
    return fit_trend([p[0] for p in pts], [p[1] for p in pts]), len(pts)


def leak_verdict(result: Mapping[str, Any], *, tolerance_bytes_per_hour: float = 50 * MIB,
                 budget_bytes_per_request: float = GB / 10_000, warmup_fraction: float = 0.2,
                 min_samples: int = 10) -> Dict[str, Any]:
    """The memory verdict of one run result (see the module docstring)."""
    samples = (result.get("resources") or {}).get("samples") or []
    trend, n = rss_trend(samples, warmup_fraction=warmup_fraction, min_samples=min_samples)
    tol_per_s = tolerance_bytes_per_hour / 3600.0
    out: Dict[str, Any] = {"samples_used": n, "warmup_fraction": warmup_fraction,
                           "tolerance_bytes_per_hour": tolerance_bytes_per_hour,
                           "budget_bytes_per_request": budget_bytes_per_request}
    if trend is None:
        out.update(verdict="insufficient data", reason=f"{n} RSS samples after the warm-up; need ≥ {min_samples} "
                                                        "(one a second: run longer)")
        return out
    by_time = _judge(trend, tol_per_s, ("leak", "flat"))
    summ = (result.get("summary") or {}).get("all") or {}
    duration = run_duration(result)
    rps = (summ.get("count") or 0) / duration if duration else 0.0
    by_req = None
    per_req: Optional[Dict[str, float]] = None
    if rps > 0:
        per_req = {"slope": trend["slope"] / rps, "low": trend["low"] / rps, "high": trend["high"] / rps}
        by_req = _judge(Trend(low=per_req["low"], high=per_req["high"]), budget_bytes_per_request, ("leak", "flat"))
    verdicts = [v for v in (by_time, by_req) if v is not None]
    if "leak" in verdicts:
        verdict = "leak"
    elif all(v == "flat" for v in verdicts):
        verdict = "flat"
    else:
        verdict = "inconclusive"
    out.update(
        verdict=verdict,
        slope_bytes_per_s=trend["slope"],
        stderr_bytes_per_s=trend["stderr"],
        interval_bytes_per_s=[trend["low"], trend["high"]],
        slope_mib_per_hour=trend["slope"] * 3600 / MIB,
        stderr_mib_per_hour=trend["stderr"] * 3600 / MIB,
        autocorrelation=trend["rho"],
        effective_samples=trend["n_eff"],
        by_time=by_time,
        bytes_per_request=per_req,
        by_request=by_req,
        requests_per_s=rps,
        rss_first_bytes=samples[0].get("process_rss_bytes") if samples else None,
        rss_last_bytes=samples[-1].get("process_rss_bytes") if samples else None,
    )
    out["reason"] = (f"RSS slope {out['slope_mib_per_hour']:+.1f} ± {2 * out['stderr_mib_per_hour']:.1f} MiB/h "
                     f"(95 %, {n} samples, ρ={trend['rho']:.2f}) vs tolerance {tolerance_bytes_per_hour / MIB:g} MiB/h"
                     + (f"; {per_req['slope'] / 1024:+.1f} KiB/request vs budget "
                        f"{budget_bytes_per_request / 1024:g} KiB/request" if per_req else ""))
    return out


def latency_stability(result: Mapping[str, Any], *, drift_ms_per_min: float = 1.0,
                      warmup_fraction: float = 0.2, min_windows: int = 10) -> Dict[str, Any]:
    """Trend of the per-window p95 (ms/min): stable / drifting / inconclusive."""
    ts = result.get("timeseries") or []
    pts = [((w["start_s"] + w["end_s"]) / 2, w.get("p95_ms")) for w in ts if w.get("p95_ms") is not None]
    pts = pts[int(len(pts) * warmup_fraction):]
    if len(pts) < min_windows:
        return {"verdict": "insufficient data", "windows_used": len(pts),
                "reason": f"{len(pts)} windows after the warm-up; need ≥ {min_windows}"}
    tr = fit_trend([p[0] for p in pts], [p[1] for p in pts])
    verdict = _judge(Trend(low=tr["low"] * 60, high=tr["high"] * 60), drift_ms_per_min, ("drifting", "stable")) \
        if tr else "insufficient data"
    return {"verdict": verdict, "windows_used": len(pts), "tolerance_ms_per_min": drift_ms_per_min,
            "slope_ms_per_min": tr["slope"] * 60 if tr else None, "stderr_ms_per_min": tr["stderr"] * 60 if tr else None,
            "reason": (f"p95 slope {tr['slope'] * 60:+.3f} ± {2 * tr['stderr'] * 60:.3f} ms/min (95 %) vs "
                       f"tolerance {drift_ms_per_min:g} ms/min") if tr else "flat series"}


def analyze(result: Mapping[str, Any], **kw: Any) -> Dict[str, Any]:
    """``{"memory": leak_verdict, "latency": latency_stability}``."""
    lat_kw = {k: kw.pop(k) for k in ("drift_ms_per_min", "min_windows") if k in kw}
    return {"schema": SOAK_SCHEMA, "run_id": result.get("run_id"), "memory": leak_verdict(result, **kw),
            "latency": latency_stability(result, **lat_kw)}


def format_soak(a: Mapping[str, Any]) -> str:
    m, lt = a["memory"], a["latency"]
    return (f"memory: {m['verdict'].upper()} — {m['reason']}\n"
            f"latency: {lt['verdict'].upper()} — {lt['reason']}")


def soak_exit_code(a: Mapping[str, Any], *, strict: bool = False) -> ExitCode:
    """THRESHOLDS_FAILED on a leak or drifting latency (with ``strict``, on an inconclusive
    verdict or too little data too); otherwise OK."""
    verdicts = (a["memory"]["verdict"], a["latency"]["verdict"])
    if "leak" in verdicts or "drifting" in verdicts:
        return ExitCode.THRESHOLDS_FAILED
    if strict and any(v in ("inconclusive", "insufficient data") for v in verdicts):
        return ExitCode.THRESHOLDS_FAILED
    return ExitCode.OK
