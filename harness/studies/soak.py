"""Soak analysis: is memory flat, is latency stable?  A verdict with its uncertainty that
holds both ways: a healthy run is not called a leak, a leaking one is not called flat.

**Memory (leak verdict).** Input: the RSS samples a run keeps
(``result["resources"]["samples"]``, one a second).

1. *Warm-up excluded.* Allocators, caches, thread stacks and malloc arenas grow at the
   start of any run, so the first ``max(warmup_fraction × span, min_warmup_s)`` seconds are
   dropped (default 20 %, at least 5 s).
2. *Minimum duration.* Fewer than ``min_duration_s`` seconds (default 20 s) or
   ``min_samples`` samples left after the warm-up: ``inconclusive``, never ``leak`` or
   ``flat``, and the reason says how long to run.
3. *Two slope estimates, each with a Newey–West (HAC) standard error.* RSS is strongly
   autocorrelated and may behave like a trend-stationary series (flat ± noise) or like a
   random walk (it steps up and down and stays there).  No single least-squares interval
   is valid for both: the level fit's error, even HAC-corrected, shrinks with run length
   on a random walk (a *spurious regression*: the old lag-1 AR correction called
   trendless walks leaks), while the mean of the increments is a valid drift estimate
   under either model.  So:

   * *levels*: OLS ``rss = a + b·t`` with a Newey–West (Bartlett kernel) standard error;
     efficient when the noise is stationary;
   * *increments*: ``b = Σ Δrss / Σ Δt`` (the drift of a random walk) with a Newey–West
     standard error of the mean increment; valid under a unit root, and under stationary
     noise too (there it is merely wider).

   Bandwidth ``L = ⌊4 (n/100)^{2/9}⌋ + 1`` (Newey & West 1994's rule of thumb).  The
   verdict uses the **union** of the two ~95 % intervals (``± z·SE``, ``z`` = 2, or a
   Student-t quantile below 30 samples), so it is only as confident as the less
   favourable model allows: a random walk keeps its increments' wide interval
   (inconclusive, or flat if even that is far below the budget); a single step (one
   allocation that stays) is one large increment and widens the interval instead of
   looking like a trend.  (A block bootstrap would need a block length too and costs
   thousands of refits; a unit-root pre-test adds its own decision error.)

4. *The gate is the budget per request* — the seeds' "< 1 GB per 10,000 extractions",
   ``budget_bytes_per_request`` = 100 kB: the interval (bytes/s) is divided by the
   request rate over the analysed span (from the run's per-second windows).  A per-hour
   tolerance (``tolerance_bytes_per_hour``) gates too only when given (``harness soak
   --tolerance-mib-per-hour``): a leak on either is a leak, flat needs both.  Without
   requests and without a per-hour tolerance there is nothing to judge against:
   inconclusive.

Verdicts: ``leak`` (interval above the budget), ``flat`` (below), ``inconclusive``
(straddles it, or too short; the reason says for about how long to run).

For in-process targets the RSS is the harness's plus the target's.  The harness bounds its
own memory (recorder windows coarsen beyond ``max_windows``, resource samples thin beyond
``max_samples``, the schedule is generated lazily, recorder buffers are folded on one
thread), and the per-request budget is three orders of magnitude above what the
harness itself allocates per request.

**Latency stability.** The levels fit (HAC error) on the per-window p95 (ms per minute),
judged against ``latency_drift_ms_per_min`` (default 1 ms/min): ``stable`` /
``drifting`` / ``inconclusive``.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from harness.exitcodes import ExitCode
from harness.result.summary import run_duration

__all__ = ["Trend", "fit_trend", "fit_increments", "nw_bandwidth", "rss_trend", "leak_verdict",
           "latency_stability", "analyze", "format_soak", "soak_exit_code", "MIB", "GB", "SOAK_SCHEMA",
           "BUDGET_BYTES_PER_REQUEST", "LEAK", "FLAT", "INCONCLUSIVE"]

MIB = 2**20
GB = 10**9
SOAK_SCHEMA = "harness.studies.soak/2"
BUDGET_BYTES_PER_REQUEST = GB / 10_000  # the seeds: < 1 GB per 10,000 extractions
LEAK, FLAT, INCONCLUSIVE = "leak", "flat", "inconclusive"

# two-sided 97.5 % Student-t quantiles for small samples (df: value); z = 2 from 30 on
_T975 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23,
         12: 2.18, 15: 2.13, 20: 2.09, 25: 2.06, 30: 2.04}


def _crit(df: int) -> float:
    if df >= 30:
        return 2.0
    keys = [k for k in sorted(_T975) if k <= max(df, 1)]
    return _T975[keys[-1]]


class Trend(dict):
    """``slope``, ``stderr``, ``intercept``, ``n``, ``bandwidth``, ``crit``, ``low``,
    ``high`` (slope ± crit·SE), ``method``."""


def nw_bandwidth(n: int) -> int:
    """Newey–West (1994) rule of thumb, ``⌊4 (n/100)^{2/9}⌋``, plus one so that even a
    short series counts its lag-1 correlation."""
    return int(4 * (max(n, 1) / 100.0) ** (2.0 / 9.0)) + 1


def _long_run_var(u: Sequence[float], lags: int) -> float:
    """Bartlett-kernel long-run variance of ``u`` (mean already removed): γ0 + 2 Σ w_j γ_j."""
    n = len(u)
    s = sum(x * x for x in u) / n
    for j in range(1, min(lags, n - 1) + 1):
        w = 1.0 - j / (lags + 1.0)
        s += 2.0 * w * sum(u[i] * u[i - j] for i in range(j, n)) / n
    return max(s, 0.0)


def _clean(ts: Sequence[Any], ys: Sequence[Any]) -> List[Tuple[float, float]]:
    return [(float(t), float(y)) for t, y in zip(ts, ys)
            if t is not None and y is not None and math.isfinite(float(y)) and math.isfinite(float(t))]


def fit_trend(ts: Sequence[float], ys: Sequence[float], *, z: Optional[float] = None) -> Optional[Trend]:
    """OLS slope of ``ys`` on ``ts`` with a Newey–West (HAC) standard error; None below 3
    points.  Valid when the noise is stationary (see the module docstring for why not alone)."""
    pts = _clean(ts, ys)
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
    lags = nw_bandwidth(n)
    # HAC variance of the slope: (Σ x_i e_i)'s long-run variance over Sxx²
    score = [(t - mt) * e for (t, _), e in zip(pts, res)]
    var = n * _long_run_var(score, lags) / (sxx * sxx) * n / (n - 2)
    se = math.sqrt(var)
    crit = _crit(n - 2) if z is None else z
    return Trend(slope=slope, stderr=se, intercept=intercept, n=n, bandwidth=lags, crit=crit,
                 low=slope - crit * se, high=slope + crit * se, method="levels")


def fit_increments(ts: Sequence[float], ys: Sequence[float], *, z: Optional[float] = None) -> Optional[Trend]:
    """Drift ``Σ Δy / Σ Δt`` with a Newey–West standard error of the mean increment; None
    below 3 points.  Valid whether ``ys`` is trend-stationary or a random walk with drift."""
    pts = sorted(_clean(ts, ys))
    if len(pts) < 3:
        return None
    dts = [b[0] - a[0] for a, b in zip(pts, pts[1:])]
    dys = [b[1] - a[1] for a, b in zip(pts, pts[1:])]
    total_t = sum(dts)
    if total_t <= 0:
        return None
    m = len(dts)
    slope = sum(dys) / total_t
    dt_mean = total_t / m
    # Δy_i − b·Δt_i: the increments' deviations from the drift (ratio estimator's linearisation)
    u = [dy - slope * dt for dy, dt in zip(dys, dts)]
    lags = nw_bandwidth(m)
    se = math.sqrt(_long_run_var(u, lags) / m * m / max(m - 1, 1)) / dt_mean
    crit = _crit(m - 1) if z is None else z
    return Trend(slope=slope, stderr=se, intercept=pts[0][1] - slope * pts[0][0], n=len(pts), bandwidth=lags,
                 crit=crit, low=slope - crit * se, high=slope + crit * se, method="increments")


def _judge(low: float, high: float, tolerance: float, words: Tuple[str, str]) -> str:
    if low > tolerance:
        return words[0]
    if high < tolerance:
        return words[1]
    return INCONCLUSIVE


def rss_trend(samples: Sequence[Mapping[str, Any]], *, warmup_fraction: float = 0.2, min_warmup_s: float = 5.0
              ) -> Tuple[Optional[Trend], Optional[Trend], List[Tuple[float, float]], float]:
    """(levels fit, increments fit, the points used, warm-up seconds dropped) of RSS (bytes/s)."""
    pts = sorted((float(s["t_s"]), float(s["process_rss_bytes"])) for s in samples
                 if s.get("t_s") is not None and s.get("process_rss_bytes") is not None)
    if not pts:
        return None, None, [], 0.0
    span = pts[-1][0] - pts[0][0]
    warm = max(warmup_fraction * span, min_warmup_s if span > 0 else 0.0)
    cut = pts[0][0] + warm
    used = [p for p in pts if p[0] >= cut]
    ts, ys = [p[0] for p in used], [p[1] for p in used]
    return fit_trend(ts, ys), fit_increments(ts, ys), used, warm


def _request_rate(result: Mapping[str, Any], t_lo: float, t_hi: float) -> float:
    """Requests completed per second over ``[t_lo, t_hi]`` (the analysed span) from the
    run's windows; the whole run's rate when it has none."""
    ts = result.get("timeseries") or []
    n = 0.0
    covered = 0.0
    for w in ts:
        a, b = float(w.get("start_s", 0)), float(w.get("end_s", 0))
        overlap = min(b, t_hi) - max(a, t_lo)
        if b > a and overlap > 0:
            done = w.get("completed")
            if done is None:
                done = sum(w.get(o, 0) or 0 for o in ("ok", "error", "timeout"))
            n += done * overlap / (b - a)
            covered += overlap
    if covered >= 0.5 * (t_hi - t_lo) > 0:
        return n / covered
    summ = (result.get("summary") or {}).get("all") or {}
    duration = run_duration(result)
    return (summ.get("count") or 0) / duration if duration else 0.0


def _more_seconds(slope: float, se: float, crit: float, tol: float, span: float) -> Optional[float]:
    """Seconds of analysed run after which the interval would clear ``tol``, assuming the
    increments' error shrinks as 1/√duration (a random walk's; stationary noise shrinks
    faster, so this errs long).  None when the estimate sits on the tolerance."""
    gap = abs(slope - tol)
    if gap <= 0 or se <= 0 or span <= 0:
        return None
    need = span * (crit * se / gap) ** 2
    return need if math.isfinite(need) else None


def leak_verdict(result: Mapping[str, Any], *, budget_bytes_per_request: float = BUDGET_BYTES_PER_REQUEST,
                 tolerance_bytes_per_hour: Optional[float] = None, warmup_fraction: float = 0.2,
                 min_warmup_s: float = 5.0, min_duration_s: float = 20.0, min_samples: int = 15) -> Dict[str, Any]:
    """The memory verdict of one run result (see the module docstring)."""
    samples = (result.get("resources") or {}).get("samples") or []
    levels, incr, used, warm = rss_trend(samples, warmup_fraction=warmup_fraction, min_warmup_s=min_warmup_s)
    n = len(used)
    span = used[-1][0] - used[0][0] if n >= 2 else 0.0
    out: Dict[str, Any] = {"samples_used": n, "span_s": span, "warmup_s": warm,
                           "warmup_fraction": warmup_fraction, "min_duration_s": min_duration_s,
                           "budget_bytes_per_request": budget_bytes_per_request,
                           "tolerance_bytes_per_hour": tolerance_bytes_per_hour,
                           "gate": "bytes per request" + (" and per hour" if tolerance_bytes_per_hour else "")}
    if n < min_samples or span < min_duration_s or levels is None or incr is None:
        need = max(min_duration_s, float(min_samples))  # samples come one a second
        total_needed = max(need / max(1e-9, 1.0 - warmup_fraction), need + min_warmup_s) + 1
        out.update(verdict=INCONCLUSIVE, too_short=True, run_at_least_s=math.ceil(total_needed),
                   reason=f"too short to judge: {span:.0f} s ({n} samples) after a {warm:.0f} s warm-up; "
                          f"need ≥ {min_duration_s:g} s and ≥ {min_samples} samples — run at least "
                          f"~{math.ceil(total_needed)} s")
        return out
    low, high = min(levels["low"], incr["low"]), max(levels["high"], incr["high"])
    rps = _request_rate(result, used[0][0], used[-1][0])
    judged: Dict[str, str] = {}
    per_req: Optional[Dict[str, float]] = None
    tol_by: Dict[str, float] = {}
    if rps > 0:
        per_req = {"slope": levels["slope"] / rps, "slope_increments": incr["slope"] / rps,
                   "low": low / rps, "high": high / rps}
        judged["by_request"] = _judge(low, high, budget_bytes_per_request * rps, (LEAK, FLAT))
        tol_by["by_request"] = budget_bytes_per_request * rps
    if tolerance_bytes_per_hour is not None:
        judged["by_time"] = _judge(low, high, tolerance_bytes_per_hour / 3600.0, (LEAK, FLAT))
        tol_by["by_time"] = tolerance_bytes_per_hour / 3600.0
    if not judged:
        verdict = INCONCLUSIVE
    elif LEAK in judged.values():
        verdict = LEAK
    elif all(v == FLAT for v in judged.values()):
        verdict = FLAT
    else:
        verdict = INCONCLUSIVE
    out.update(
        verdict=verdict,
        too_short=False,
        slope_bytes_per_s=levels["slope"],
        stderr_bytes_per_s=levels["stderr"],
        slope_increments_bytes_per_s=incr["slope"],
        stderr_increments_bytes_per_s=incr["stderr"],
        interval_bytes_per_s=[low, high],
        slope_mib_per_hour=levels["slope"] * 3600 / MIB,
        interval_mib_per_hour=[low * 3600 / MIB, high * 3600 / MIB],
        bandwidth=levels["bandwidth"],
        by_request=judged.get("by_request"),
        by_time=judged.get("by_time"),
        bytes_per_request=per_req,
        requests_per_s=rps,
        rss_first_bytes=samples[0].get("process_rss_bytes") if samples else None,
        rss_last_bytes=samples[-1].get("process_rss_bytes") if samples else None,
    )
    parts = [f"RSS slope {out['slope_mib_per_hour']:+.1f} MiB/h, 95 % interval "
             f"[{out['interval_mib_per_hour'][0]:+.1f}, {out['interval_mib_per_hour'][1]:+.1f}] MiB/h "
             f"({n} samples over {span:.0f} s after a {warm:.0f} s warm-up; levels and increments, HAC)"]
    if per_req:
        parts.append(f"per request {per_req['slope'] / 1024:+.2f} KiB, interval [{per_req['low'] / 1024:+.2f}, "
                     f"{per_req['high'] / 1024:+.2f}] KiB vs budget {budget_bytes_per_request / 1000:g} kB/request "
                     f"(gates, at {rps:.1f} rps)")
    else:
        parts.append("no completed requests: the per-request budget cannot be judged")
    if tolerance_bytes_per_hour is not None:
        parts.append(f"vs tolerance {tolerance_bytes_per_hour / MIB:g} MiB/h (gates)")
    if verdict == INCONCLUSIVE and tol_by:
        # how long until the increments' (the wider, slower-shrinking) interval clears every straddled line
        needs = [_more_seconds(incr["slope"], max(incr["stderr"], levels["stderr"]), incr["crit"], tol, span)
                 for k, tol in tol_by.items() if judged[k] == INCONCLUSIVE]
        if needs and all(x is not None for x in needs):
            need = max(x for x in needs if x is not None)
            out["run_at_least_s"] = math.ceil(max(need / max(1e-9, 1 - warmup_fraction), need + min_warmup_s))
            parts.append(f"straddles the gate: run ~{out['run_at_least_s']} s to decide")
        else:
            parts.append("straddles the gate: the growth sits at the budget")
    out["reason"] = "; ".join(parts)
    return out


def latency_stability(result: Mapping[str, Any], *, drift_ms_per_min: float = 1.0,
                      warmup_fraction: float = 0.2, min_windows: int = 10) -> Dict[str, Any]:
    """Trend of the per-window p95 (ms/min): stable / drifting / inconclusive."""
    ts = result.get("timeseries") or []
    pts = [((w["start_s"] + w["end_s"]) / 2, w.get("p95_ms")) for w in ts if w.get("p95_ms") is not None]
    pts = pts[int(len(pts) * warmup_fraction):]
    if len(pts) < min_windows:
        return {"verdict": INCONCLUSIVE, "windows_used": len(pts), "too_short": True,
                "reason": f"too short to judge: {len(pts)} windows after the warm-up; need ≥ {min_windows}"}
    tr = fit_trend([p[0] for p in pts], [p[1] for p in pts])
    if tr is None:
        return {"verdict": INCONCLUSIVE, "windows_used": len(pts), "reason": "no spread in time to fit"}
    verdict = _judge(tr["low"] * 60, tr["high"] * 60, drift_ms_per_min, ("drifting", "stable"))
    return {"verdict": verdict, "windows_used": len(pts), "tolerance_ms_per_min": drift_ms_per_min,
            "slope_ms_per_min": tr["slope"] * 60, "stderr_ms_per_min": tr["stderr"] * 60,
            "reason": (f"p95 slope {tr['slope'] * 60:+.3f} ± {tr['crit'] * tr['stderr'] * 60:.3f} ms/min (95 %, HAC) "
                       f"vs tolerance {drift_ms_per_min:g} ms/min")}


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
    verdict too); otherwise OK."""
    verdicts = (a["memory"]["verdict"], a["latency"]["verdict"])
    if LEAK in verdicts or "drifting" in verdicts:
        return ExitCode.THRESHOLDS_FAILED
    if strict and INCONCLUSIVE in verdicts:
        return ExitCode.THRESHOLDS_FAILED
    return ExitCode.OK
