"""Compare a run with a baseline run: a CI gate that knows its uncertainty.

Why intervals: two runs of identical code differ.  On 2–3 ms latencies a 50 rps, 10 s run
moved p50 by +29 % and p95 by +22 % against its twin, and a gate that compared the point
estimates failed unchanged code.  So every gated metric gets the relative change
``new / base − 1`` *with a confidence interval*, and the seeds' lines (1 %, 10 %) apply to
the interval, never to the point estimate alone.

**How the interval is estimated** (from data every result already holds): the result's
encoded per-window histograms (``result["histograms"]["targets"][t]["windows"]``: per
window of ``window_s`` seconds the outcome counts and a coarse latency histogram, ≤ 0.8 %
bucket error).  A *circular block bootstrap* over windows, independently for each run:
draw blocks of ``L`` consecutive windows (wrapping round) until the run's length is
covered, add their histograms and counts, and compute the statistic (mean, percentile,
rate, throughput) on the sum; ``resamples`` (default 400) times, seeded, so the same two
files always give the same verdict.  Blocks, not single windows, because seconds are not
independent (a GC pause, a CPU-frequency step or a noisy neighbour lasts several seconds):
``L`` is the larger of ``n^(1/3)`` (the usual rate for the block bootstrap) and the lag at
which the autocorrelation of the per-window mean latency falls inside the ±2/√n noise
band, at most ``n/4``.  The interval is the percentile interval of the per-replicate ratio
(``confidence``, default 90 %, two-sided, so each end is a one-sided 95 % bound: the gate
fails only when it is 95 % sure the change is worse than the line).  The point estimate is
the summary's exact (3-digit HDR) figure; the interval is shifted in log space by the
difference between the exact ratio and the coarse one, so the point always lies inside it.
Why a bootstrap and not a t-interval: percentiles have no simple standard error, and the
windows' histograms let every statistic be resampled the same way.  Cost: one matrix
product per run (resamples × windows × buckets): tens of ms for a 60-window pair.

**Run-to-run noise.**  Within-run windows cannot see how much a whole run's level moves
between runs (another process on the machine, CPU frequency, caches): two runs of the same
code on a loaded 2-core machine can differ by tens of percent.  Two remedies: ``--repeat N``
(below), whose pooled windows feed a *two-stage* bootstrap (repeats drawn with replacement,
then blocks within each), and ``run_noise`` (``--run-noise``, default 0): a relative sd per
run of the latency level, added in quadrature (log space, × √2 for the two runs) to the
latency and service-time intervals; ``benchmarks/gate_calibration.py`` estimates it for a
machine from A/A pairs.

*Service time* has no per-window histograms (the recorder keeps latency only); service time
is latency minus the generator's lag, so its interval borrows the relative spread of the
matching latency statistic around its own exact point (``method: "borrowed from
latency"``).

**Absolute floors** (``floors``; per unit): latency and service time differences under
0.5 ms, rate differences under 0.1 percentage point and throughput differences under 1
request/s never regress, whatever the ratio.

**Verdict of one gated metric.**  Orient the interval so that positive is worse: ``[a, b]``
relative, ``[A, B]`` absolute, ``F = fail_above`` (10 %), ``U = unchanged_below`` (1 %):

1. ``regressed`` — ``a > F`` and ``A > floor``: the *whole* interval is worse than the 10 %
   line and than the floor.  The gate fails (exit 97).
2. ``improved`` — ``b < −U`` and ``B < −floor``: the whole interval is better by more than
   1 % and by more than the floor.
3. ``unchanged`` — ``b ≤ F`` or ``B ≤ floor``: it cannot be worse by more than the
   tolerance (or than the floor).  The note says when the whole interval is worse than
   1 % (a real slowdown within the tolerance).
4. ``inconclusive`` — otherwise: the interval straddles the 10 % line.  It does not fail
   the gate; the note and ``decide_after_s`` estimate how long both runs would have to be
   for the interval to clear the line if the point estimate held (the width shrinks as
   1/√windows).

Ungated rows (max, cache-hit and fallback rates, process CPU, peak RSS) are classified on
the point estimate with the 1 % line (:func:`classify`) and never fail the gate.

**No verdict from too few samples.** A percentile is only judged when both runs have at
least ``min_tail`` (default 10) requests beyond it (p99 needs 1,000 requests, p95 200), any
metric needs ``min_samples`` (default 100) requests and ``min_windows`` (default 5)
windows in both runs; otherwise its status is ``insufficient samples``.  A gate where *no*
gated metric had enough samples fails (it proved nothing), like a threshold with no data.

**Repeats** (``harness run --baseline FILE --repeat N``): :func:`pool_results` makes one
result of N runs of the same scenario: exact summary over all their requests (HDR
histograms add), the windows *concatenated* (repeat k's windows follow repeat k−1's, their
offsets in ``repeats.window_offsets``), so the two-stage bootstrap sees the run-to-run
differences as well as the second-to-second ones; throughput divides by the summed durations.

Exit code of the gate: :attr:`ExitCode.REGRESSED <harness.exitcodes.ExitCode>` (97) when it
fails; ``harness run --baseline`` keeps the run's own non-zero code (99 thresholds, 98
invalid, 105 interrupted) and uses 97 only when the run itself passed (see
:func:`gate_exit_code`).
"""

from __future__ import annotations

import copy
import math
from statistics import NormalDist
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from harness.exitcodes import ExitCode
from harness.record.recorder import OUTCOMES, Recorder, window_latency
from harness.result.summary import run_duration

__all__ = [
    "UNCHANGED_BELOW",
    "FAIL_ABOVE",
    "CONFIDENCE",
    "RESAMPLES",
    "MIN_WINDOWS",
    "FLOORS",
    "COMPARE_SCHEMA",
    "Line",
    "compare",
    "classify",
    "judge",
    "gate_exit_code",
    "format_comparison",
    "pool_results",
]

COMPARE_SCHEMA = "harness.result.compare/2"
UNCHANGED_BELOW = 0.01
FAIL_ABOVE = 0.10
CONFIDENCE = 0.90
RESAMPLES = 400
MIN_WINDOWS = 5
#: absolute floors per unit: differences smaller than these never regress
FLOORS: Mapping[str, float] = {"ms": 0.5, "rate": 0.001, "rps": 1.0}
RATE_ABS_UNCHANGED = FLOORS["rate"]  # 0.1 percentage point (ungated rates too)

_PCTS = (("p50", 50.0), ("p90", 90.0), ("p95", 95.0), ("p99", 99.0), ("p99.9", 99.9))
_MAX_FACTOR = 100.0  # beyond this "decide after" says "≥ 100× longer"


@dataclass(frozen=True)
class Line:
    """One comparable figure: how to read it, which way is better, and how it is resampled."""

    name: str                 # "latency p95"
    lower_is_better: bool
    gated: bool
    percentile: Optional[float] = None
    kind: str = "value"       # value | rate | throughput | info
    unit: str = "ms"          # ms | rate | rps | "" (the key of FLOORS)
    stat: Optional[str] = None  # what the bootstrap computes: "mean", "p95", "rate:error", "throughput"
    borrow: bool = False      # service time: the interval borrows latency's spread


# ----------------------------------------------------------------------------- point classification


def classify(base: Optional[float], new: Optional[float], *, lower_is_better: bool,
             unchanged_below: float = UNCHANGED_BELOW, fail_above: float = FAIL_ABOVE,
             abs_unchanged: float = 0.0) -> Dict[str, Any]:
    """Point-estimate classification, for the rows that are shown but not gated:
    ``{"status", "change_percent", "beyond_tolerance", "note"}``.

    ``change_percent`` is (new − base) / base × 100 (None when base is 0); *worse* means
    higher for lower-is-better metrics.  ``abs_unchanged``: differences up to this absolute
    amount are unchanged whatever the ratio (for rates near zero)."""
    if base is None or new is None:
        return {"status": "no data", "change_percent": None, "beyond_tolerance": False,
                "note": "missing in the " + ("baseline" if base is None else "new run")}
    diff = new - base
    if abs(diff) <= abs_unchanged or (base == 0 and new == 0):
        return {"status": "unchanged", "change_percent": 0.0 if base == 0 else 100.0 * diff / base,
                "beyond_tolerance": False, "note": None}
    worse = diff > 0 if lower_is_better else diff < 0
    if base == 0:
        return {"status": "regressed" if worse else "improved", "change_percent": None,
                "beyond_tolerance": worse, "note": "baseline was 0"}
    rel = diff / abs(base)
    if abs(rel) < unchanged_below:
        return {"status": "unchanged", "change_percent": 100.0 * rel, "beyond_tolerance": False, "note": None}
    beyond = worse and abs(rel) > fail_above
    note = f"worse by more than {fail_above:.0%}" if beyond else (
        f"within the {fail_above:.0%} tolerance" if worse else None)
    return {"status": "regressed" if worse else "improved", "change_percent": 100.0 * rel,
            "beyond_tolerance": beyond, "note": note}


def judge(rel: Tuple[float, float], diff: Tuple[float, float], *, lower_is_better: bool, floor: float,
          fail_above: float = FAIL_ABOVE, unchanged_below: float = UNCHANGED_BELOW) -> str:
    """The verdict of one gated metric from its intervals (module docstring, rules 1–4):
    ``rel`` = (low, high) of new/base − 1, ``diff`` = (low, high) of new − base."""
    sign = 1.0 if lower_is_better else -1.0
    a, b = sorted((sign * rel[0], sign * rel[1]))
    lo_abs, hi_abs = sorted((sign * diff[0], sign * diff[1]))
    if a > fail_above and lo_abs > floor:
        return "regressed"
    if b < -unchanged_below and hi_abs < -floor:
        return "improved"
    if b <= fail_above or hi_abs <= floor:
        return "unchanged"
    return "inconclusive"


# ----------------------------------------------------------------------------- figures


def _failed_rate(block: Mapping[str, Any]) -> Optional[float]:
    if block.get("failed_rate") is not None:
        return block.get("failed_rate")
    n = int(block.get("count") or 0)
    o = block.get("outcomes") or {}
    return (int(o.get("error", 0)) + int(o.get("timeout", 0)) + int(o.get("dropped", 0))) / n if n else None


def _duration(result: Mapping[str, Any]) -> Optional[float]:
    pooled = (result.get("repeats") or {}).get("duration_s")
    return float(pooled) if pooled else run_duration(result)


def _figures(result: Mapping[str, Any], block: Mapping[str, Any]) -> Dict[str, tuple]:
    """name -> (value, samples, Line)."""
    out: Dict[str, tuple] = {}
    n = int(block.get("count") or 0)
    for metric, label in (("latency", "latency"), ("service_time", "service time")):
        s = block.get(metric) or {}
        cnt = int(s.get("count") or 0)
        borrow = metric == "service_time"
        out[f"{label} mean"] = (s.get("mean"), cnt, Line(f"{label} mean", True, True, stat="mean", borrow=borrow))
        for key, p in _PCTS:
            out[f"{label} {key}"] = (s.get(key), cnt, Line(f"{label} {key}", True, True, p, stat=key, borrow=borrow))
        out[f"{label} max"] = (s.get("max"), cnt, Line(f"{label} max", True, False, kind="info"))
    for key, label in (("error", "error rate"), ("timeout", "timeout rate")):
        out[label] = (block.get(f"{key}_rate"), n,
                      Line(label, True, True, kind="rate", unit="rate", stat=f"rate:{key}"))
    out["failed rate"] = (_failed_rate(block), n, Line("failed rate", True, True, kind="rate", unit="rate",
                                                       stat="rate:failed"))
    d = _duration(result)
    ran = n - int((block.get("outcomes") or {}).get("dropped", 0))
    out["throughput (rps)"] = (ran / d if d and n else None, n,
                               Line("throughput (rps)", False, True, kind="throughput", unit="rps", stat="throughput"))
    ok = int((block.get("outcomes") or {}).get("ok", 0))
    out["cache-hit rate"] = (block.get("cache_hit_rate"), ok, Line("cache-hit rate", False, False, kind="rate",
                                                                  unit="rate"))
    out["fallback rate"] = (block.get("fallback_rate"), ok, Line("fallback rate", True, False, kind="rate",
                                                                unit="rate"))
    return out


def _resource_figures(result: Mapping[str, Any]) -> Dict[str, tuple]:
    rs = (result.get("resources") or {}).get("summary") or {}
    n = int(rs.get("samples") or 0)
    rss = rs.get("process_rss_bytes_max")
    return {
        "process CPU % (mean)": (rs.get("process_cpu_percent_mean"), n,
                                 Line("process CPU % (mean)", True, False, kind="info", unit="")),
        "process RSS MiB (max)": (None if rss is None else rss / 2**20, n,
                                  Line("process RSS MiB (max)", True, False, kind="info", unit="")),
    }


def _enough(line: Line, nb: int, nn: int, min_samples: int, min_tail: int) -> Optional[str]:
    need = min_samples
    if line.percentile is not None:
        need = max(need, math.ceil(min_tail / (1.0 - line.percentile / 100.0) - 1e-9))
    if line.kind == "info" and line.name.startswith("process"):
        need = 3  # resource samples, once a second
    if min(nb, nn) < need:
        return f"needs ≥ {need} samples in each run, has {nb} / {nn}"
    return None


# ----------------------------------------------------------------------------- windows and the bootstrap


@dataclass
class _Series:
    """One run's windows for one scope: per-window latency histograms on a shared bucket
    grid, outcome counts, and the window width."""

    values: np.ndarray        # (K,) bucket values, µs (shared by both runs of a comparison)
    hist: np.ndarray          # (n, K) counts
    outcomes: np.ndarray      # (n, 4) counts in OUTCOMES order
    window_s: float
    segments: List[Tuple[int, int]]  # (first window, count) of each repeat; one segment for a single run

    @property
    def n(self) -> int:
        return int(self.hist.shape[0])


def _raw_windows(result: Mapping[str, Any], scope: str) -> Tuple[Dict[int, Tuple[np.ndarray, np.ndarray, np.ndarray]],
                                                                  float]:
    """index -> (values µs, counts, outcome counts) merged over the scope's targets."""
    enc = result.get("histograms") or {}
    targets = enc.get("targets") or {}
    names = list(targets) if scope == "all" else [scope] if scope in targets else []
    out: Dict[int, List[Any]] = {}
    for t in names:
        for w in targets[t].get("windows") or []:
            vals, cnts = window_latency(w)
            oc = np.asarray([int(c) for c in w["counts"][: len(OUTCOMES)]], dtype=np.int64)
            i = int(w["index"])
            if i in out:
                out[i][0].append(vals)
                out[i][1].append(cnts)
                out[i][2] = out[i][2] + oc
            else:
                out[i] = [[vals], [cnts], oc]
    merged: Dict[int, Tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for i, (vals, cnts, oc) in out.items():
        merged[i] = (np.concatenate(vals), np.concatenate(cnts), oc)
    return merged, float(enc.get("window_s") or 1.0)


def _series_pair(base: Mapping[str, Any], new: Mapping[str, Any], scope: str) -> Tuple[Optional[_Series],
                                                                                       Optional[_Series]]:
    rb, wb = _raw_windows(base, scope)
    rn, wn = _raw_windows(new, scope)
    if not rb or not rn:
        return None, None
    grid = np.unique(np.concatenate([v for r in (rb, rn) for v, _, _ in r.values()] or [np.zeros(0, np.int64)]))
    out = []
    for raw, width, r in ((rb, wb, base), (rn, wn, new)):
        lo, hi = min(raw), max(raw)
        n = hi - lo + 1  # gaps (a stall with nothing ending) are windows too
        hist = np.zeros((n, grid.size), dtype=np.float64)
        oc = np.zeros((n, len(OUTCOMES)), dtype=np.float64)
        for i, (vals, cnts, o) in raw.items():
            if vals.size:
                np.add.at(hist[i - lo], np.searchsorted(grid, vals), cnts)
            oc[i - lo] = o
        out.append(_Series(grid.astype(np.float64), hist, oc, width, _segments(r, lo, n)))
    return out[0], out[1]


def _segments(result: Mapping[str, Any], lo: int, n: int) -> List[Tuple[int, int]]:
    """The repeats' window ranges of a pooled result (relative to ``lo``), else the whole run."""
    offsets = (result.get("repeats") or {}).get("window_offsets") or []
    segs = []
    for i, start in enumerate(offsets):
        end = offsets[i + 1] if i + 1 < len(offsets) else lo + n
        a, b = max(int(start), lo) - lo, min(int(end), lo + n) - lo
        if b > a:
            segs.append((a, b - a))
    return segs if len(segs) > 1 else [(0, n)]


def _block_length(s: _Series) -> int:
    """max(n^(1/3), the lag where the per-window mean latency's autocorrelation enters the
    ±2/√n band), at most n/4."""
    n = s.n
    base = max(1, int(math.ceil(n ** (1.0 / 3.0))))
    tot = s.hist.sum(axis=1)
    ok = tot > 0
    if ok.sum() < 8:
        return min(base, max(1, n // 4))
    m = (s.hist[ok] @ s.values) / tot[ok]
    x = m - m.mean()
    var = float(x @ x)
    lag = 1
    if var > 0:
        band = 2.0 / math.sqrt(x.size)
        while lag < x.size // 4 and float(x[:-lag] @ x[lag:]) / var > band:
            lag += 1
    return max(1, min(max(base, lag), max(1, n // 4)))


def _resample_counts(s: _Series, block: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples + 1, n): how often each window is drawn; row 0 is the sample itself.

    One run: a circular block bootstrap over its windows.  Pooled repeats: a two-stage
    bootstrap — draw the repeats with replacement, then blocks of windows within each drawn
    repeat — so the spread between runs counts, not only the spread between seconds."""
    n = s.n
    if len(s.segments) == 1:
        nb = -(-n // block)
        starts = rng.integers(0, n, size=(resamples, nb))
        idx = ((starts[:, :, None] + np.arange(block)) % n).reshape(resamples, nb * block)[:, :n]
        flat = (np.arange(resamples)[:, None] * n + idx).ravel()
        c = np.bincount(flat, minlength=resamples * n).reshape(resamples, n).astype(np.float64)
        return np.vstack([np.ones((1, n)), c])
    c = np.zeros((resamples, n))
    picks = rng.integers(0, len(s.segments), size=(resamples, len(s.segments)))
    for r in range(resamples):
        for j in picks[r]:
            first, m = s.segments[int(j)]
            b = max(1, min(block, m))
            nb = -(-m // b)
            idx = ((rng.integers(0, m, size=nb)[:, None] + np.arange(b)) % m).ravel()[:m]
            np.add.at(c[r], first + idx, 1.0)
    return np.vstack([np.ones((1, n)), c])


def _stats(s: _Series, counts: np.ndarray, wanted: Sequence[str]) -> Dict[str, np.ndarray]:
    """Each wanted statistic on every resample (row 0: the sample itself); NaN where undefined."""
    h = counts @ s.hist                      # (R, K) merged latency histograms
    oc = counts @ s.outcomes                 # (R, 4)
    total = h.sum(axis=1)
    req = oc.sum(axis=1)
    out: Dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        cum = None
        for key in wanted:
            if key == "mean":
                out[key] = np.where(total > 0, (h @ s.values) / np.where(total > 0, total, 1), np.nan) / 1000.0
            elif key.startswith("p"):
                if cum is None:
                    cum = np.cumsum(h, axis=1)
                p = float(key[1:])
                target = np.maximum(np.ceil(p / 100.0 * total - 1e-9), 1.0)
                i = np.minimum((cum < target[:, None]).sum(axis=1), s.values.size - 1)
                out[key] = np.where(total > 0, s.values[i] / 1000.0, np.nan)
            elif key.startswith("rate:"):
                what = key[5:]
                if what == "failed":
                    num = oc[:, OUTCOMES.index("error")] + oc[:, OUTCOMES.index("timeout")] + \
                        oc[:, OUTCOMES.index("dropped")]
                else:
                    num = oc[:, OUTCOMES.index(what)]
                out[key] = np.where(req > 0, num / np.where(req > 0, req, 1), np.nan)
            elif key == "throughput":
                ran = req - oc[:, OUTCOMES.index("dropped")]
                out[key] = ran / (counts.sum(axis=1) * s.window_s)
    return out


def _interval(b: np.ndarray, nw: np.ndarray, vb: float, vn: float, confidence: float, run_noise: float = 0.0
              ) -> Optional[Tuple[Tuple[float, float], Tuple[float, float]]]:
    """(relative interval, absolute interval) from resampled statistics (row 0 = sample),
    re-centred on the exact point (vb, vn); None when too many resamples are undefined.
    ``run_noise`` > 0 widens both (see :func:`_widen`)."""
    bs, ns = b[1:], nw[1:]
    ok = np.isfinite(bs) & np.isfinite(ns)
    if ok.sum() < 0.9 * bs.size or not (np.isfinite(b[0]) and np.isfinite(nw[0])):
        return None
    bs, ns = bs[ok], ns[ok]
    q = ((1.0 - confidence) / 2.0, 1.0 - (1.0 - confidence) / 2.0)
    diff = np.quantile(ns - bs + ((vn - vb) - (nw[0] - b[0])), q)
    if vb > 0 and b[0] > 0 and nw[0] > 0 and vn > 0 and np.all(bs > 0) and np.all(ns > 0):
        lr = np.log(ns / bs) + (math.log(vn / vb) - math.log(nw[0] / b[0]))
        ql, qh = (float(x) for x in np.quantile(lr, q))
        if run_noise > 0:
            return _widen(ql, qh, (float(diff[0]), float(diff[1])), vb, vn, confidence, run_noise)
        rel = np.expm1([ql, qh])
    elif vb > 0:
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(bs > 0, ns / np.where(bs > 0, bs, 1) - 1.0, np.where(ns > 0, 1e18, 0.0))
        rel = np.quantile(r, q)   # a resample whose baseline rate is 0: "infinitely" worse if any appeared
        rel = np.where(rel >= 1e17, math.inf, rel)
    else:  # the baseline was 0: relative change is infinite if anything appeared
        r = np.where(bs > 0, ns / np.where(bs > 0, bs, 1) - 1.0, np.where(ns > 0, math.inf, 0.0))
        rel = np.quantile(np.nan_to_num(r, posinf=1e18), q)
        rel = np.where(rel >= 1e17, math.inf, rel)
    return (float(rel[0]), float(rel[1])), (float(diff[0]), float(diff[1]))


def _widen(ql: float, qh: float, diff: Tuple[float, float], vb: float, vn: float, confidence: float,
           run_noise: float) -> Tuple[Tuple[float, float], Tuple[float, float]]:
    """Add the run-to-run noise a single pair of runs cannot see: each run's level is off by a
    factor exp(N(0, run_noise²)), so the log ratio gets variance 2·run_noise², added in
    quadrature to each half of the bootstrap interval (log space; the absolute interval by
    the same amount times the baseline)."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    extra = z * math.sqrt(2.0) * run_noise
    c = math.log(vn / vb)
    lo, hi = c - math.hypot(c - ql, extra), c + math.hypot(qh - c, extra)
    d, e = vn - vb, vb * extra
    return ((math.expm1(lo), math.expm1(hi)),
            (d - math.hypot(d - diff[0], e), d + math.hypot(diff[1] - d, e)))


def _decide_after(rel: Tuple[float, float], diff: Tuple[float, float], point_rel: float, point_diff: float,
                  lower_is_better: bool, floor: float, fail_above: float, seconds: float) -> Optional[float]:
    """Seconds per run after which the interval would clear the fail line (width ∝ 1/√n),
    assuming the point estimate holds; None when it never would (the point is on the line)."""
    sign = 1.0 if lower_is_better else -1.0
    p, lo, hi = sign * point_rel, min(sign * rel[0], sign * rel[1]), max(sign * rel[0], sign * rel[1])
    pa, la, ha = sign * point_diff, min(sign * diff[0], sign * diff[1]), max(sign * diff[0], sign * diff[1])
    if p > fail_above and pa > floor:   # would become regressed: the low ends must clear both lines
        need = [(p - lo) / (p - fail_above), (pa - la) / (pa - floor)]
    elif p < fail_above or pa < floor:  # would become unchanged: the high end under the line or the floor
        need = []
        if p < fail_above:
            need.append((hi - p) / (fail_above - p))
        if pa < floor:
            need.append((ha - pa) / (floor - pa))
        need = [min(need)]
    else:
        return None
    factor = max(1.0, max(need)) ** 2
    return seconds * factor if math.isfinite(factor) else None


# ----------------------------------------------------------------------------- compare


def compare(base: Mapping[str, Any], new: Mapping[str, Any], *, unchanged_below: float = UNCHANGED_BELOW,
            fail_above: float = FAIL_ABOVE, min_samples: int = 100, min_tail: int = 10,
            min_windows: int = MIN_WINDOWS, confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
            floors: Optional[Mapping[str, float]] = None, run_noise: float = 0.0, seed: int = 0,
            targets: bool = True) -> Dict[str, Any]:
    """Compare two ``harness.result/1`` documents; see the module docstring."""
    if not 0.5 <= confidence < 1.0:
        raise ValueError(f"confidence must be in [0.5, 1), got {confidence!r}")
    if resamples < 50:
        raise ValueError(f"resamples must be ≥ 50, got {resamples!r}")
    if not 0.0 <= run_noise < 1.0:
        raise ValueError(f"run_noise must be in [0, 1), got {run_noise!r}")
    fl = {**FLOORS, **(floors or {})}
    rows: List[Dict[str, Any]] = []
    blocks = [("all", (base.get("summary") or {}).get("all") or {}, (new.get("summary") or {}).get("all") or {})]
    if targets:
        bt = (base.get("summary") or {}).get("targets") or {}
        nt = (new.get("summary") or {}).get("targets") or {}
        if len(bt) > 1 or len(nt) > 1 or set(bt) != set(nt):
            blocks += [(t, bt[t], nt[t]) for t in sorted(set(bt) & set(nt))]
    warnings: List[str] = []
    methods: Dict[str, Any] = {}
    for k, (scope, b, n) in enumerate(blocks):
        fb, fn = _figures(base, b), _figures(new, n)
        if scope == "all":
            fb.update(_resource_figures(base))
            fn.update(_resource_figures(new))
        sb, sn = _series_pair(base, new, scope)
        boot: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
        if sb is not None and sn is not None and min(sb.n, sn.n) >= min_windows:
            wanted = sorted({line.stat for _, _, line in fb.values() if line.stat})
            lb, ln = _block_length(sb), _block_length(sn)
            cb = _resample_counts(sb, lb, resamples, np.random.default_rng([seed, k, 0]))
            cn = _resample_counts(sn, ln, resamples, np.random.default_rng([seed, k, 1]))
            xb, xn = _stats(sb, cb, wanted), _stats(sn, cn, wanted)
            boot = {key: (xb[key], xn[key]) for key in wanted}
            methods[scope] = {"windows": [sb.n, sn.n], "window_s": [sb.window_s, sn.window_s],
                              "block_length": [lb, ln], "repeats": [len(sb.segments), len(sn.segments)]}
        nwin = [sb.n if sb is not None else 0, sn.n if sn is not None else 0]
        seconds = min(nwin[0] * (sb.window_s if sb is not None else 1.0),
                      nwin[1] * (sn.window_s if sn is not None else 1.0))
        for name, (vb, nb, line) in fb.items():
            vn, nn, _ = fn[name]
            row = {"scope": scope, "metric": name if scope == "all" else f"{name} [{scope}]", "name": name,
                   "base": vb, "new": vn, "samples": [nb, nn], "windows": nwin, "unit": line.unit,
                   "lower_is_better": line.lower_is_better, "gated": line.gated}
            if not line.gated:
                abs_tol = RATE_ABS_UNCHANGED if line.kind == "rate" else 0.0
                c = classify(vb, vn, lower_is_better=line.lower_is_better, unchanged_below=unchanged_below,
                             fail_above=fail_above, abs_unchanged=abs_tol)
                short = _enough(line, nb, nn, min_samples, min_tail)
                if short and c["status"] != "no data":
                    c = {**c, "status": "insufficient samples", "note": short}
                row.update({**c, "beyond_tolerance": False, "interval_percent": None, "method": "point estimate"})
            else:
                row.update(_judge_row(line, vb, vn, nb, nn, boot, nwin, seconds, fl, min_samples=min_samples,
                                      min_tail=min_tail, min_windows=min_windows, confidence=confidence,
                                      fail_above=fail_above, unchanged_below=unchanged_below, run_noise=run_noise))
            rows.append(row)
    bs, ns = base.get("scenario") or {}, new.get("scenario") or {}
    for key in ("target", "profile", "duration", "executor", "faults", "workload"):
        if bs.get(key) != ns.get(key):
            warnings.append(f"the scenarios differ in {key}: {bs.get(key)!r} vs {ns.get(key)!r}")
    for label, r in (("baseline", base), ("new run", new)):
        g = r.get("generator") or {}
        if g and not g.get("valid", True):
            warnings.append(f"the {label} is an invalid run (the generator was the limit): its figures are the "
                            "generator's, not the target's")
    counts: Dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    gated = [r for r in rows if r["gated"]]
    judged = [r for r in gated if r["status"] in ("improved", "regressed", "unchanged", "inconclusive")]
    failing = [r for r in gated if r["status"] == "regressed"]
    undecided = [r for r in gated if r["status"] == "inconclusive"]
    longest = max((r["decide_after_s"] or math.inf for r in undecided), default=None)
    if failing:
        passed, reason = False, (f"{len(failing)} metric(s) worse than the baseline by more than {fail_above:.0%} "
                                 f"over the whole {confidence:.0%} interval: "
                                 + ", ".join(f"{r['metric']} {_chg(r)}" for r in failing))
    elif not judged:
        passed, reason = False, "no gated metric had enough samples in both runs: no verdict"
    else:
        decided = len(judged) - len(undecided)
        passed, reason = True, (f"no gated metric worse by more than {fail_above:.0%} with {confidence:.0%} "
                                f"confidence ({decided} decided, {len(undecided)} inconclusive, "
                                f"{len(gated) - len(judged)} without enough samples)")
        if undecided:
            reason += "; " + _longer(longest, _seconds_of(rows))
    return {
        "schema": COMPARE_SCHEMA,
        "base": _ident(base),
        "new": _ident(new),
        "lines": {"unchanged_below": unchanged_below, "fail_above": fail_above, "min_samples": min_samples,
                  "min_tail": min_tail, "min_windows": min_windows, "confidence": confidence,
                  "resamples": resamples, "seed": seed, "floors": dict(fl), "run_noise": run_noise,
                  "rate_abs_unchanged": RATE_ABS_UNCHANGED,
                  "method": "circular block bootstrap over windows"},
        "bootstrap": methods,
        "metrics": rows,
        "counts": counts,
        "warnings": warnings,
        "gate": {"passed": passed, "exit_code": int(ExitCode.OK if passed else ExitCode.REGRESSED), "reason": reason,
                 "regressions": [r["metric"] for r in failing],
                 "inconclusive": [r["metric"] for r in undecided],
                 "decide_after_s": None if longest is None or not math.isfinite(longest) else longest},
    }


def _seconds_of(rows: Sequence[Mapping[str, Any]]) -> float:
    """The compared runs' length in seconds (the shorter one), from the rows' window counts."""
    return min((r.get("seconds") or math.inf for r in rows if r.get("seconds")), default=math.inf)


def _longer(seconds_needed: Optional[float], now: float) -> str:
    if seconds_needed is None or not math.isfinite(seconds_needed):
        return "a longer run would not decide them (a change right on the line)"
    if math.isfinite(now) and seconds_needed >= _MAX_FACTOR * now:
        return f"deciding them needs runs ≥ {_MAX_FACTOR:.0f}× longer (changes close to the line)"
    return f"runs of about {_dur(seconds_needed)} each would decide them" + (
        f" (now {_dur(now)})" if math.isfinite(now) else "")


def _dur(s: float) -> str:
    """Seconds for a reader, rounded up (a run must be at least this long)."""
    return f"{math.ceil(s)} s" if s < 120 else (f"{math.ceil(s / 60)} min" if s < 7200 else f"{s / 3600:.1f} h")


def _judge_row(line: Line, vb: Optional[float], vn: Optional[float], nb: int, nn: int,
               boot: Mapping[str, Tuple[np.ndarray, np.ndarray]], nwin: List[int], seconds: float,
               floors: Mapping[str, float], *, min_samples: int, min_tail: int, min_windows: int,
               confidence: float, fail_above: float, unchanged_below: float, run_noise: float = 0.0
               ) -> Dict[str, Any]:
    floor = float(floors.get(line.unit, 0.0))
    noise = run_noise if line.kind == "value" else 0.0
    out: Dict[str, Any] = {"beyond_tolerance": False, "interval_percent": None, "difference": None,
                           "difference_interval": None, "floor": floor, "decide_after_s": None,
                           "seconds": seconds if math.isfinite(seconds) and seconds > 0 else None,
                           "method": "circular block bootstrap"}
    if vb is None or vn is None:
        return {**out, "status": "no data", "change_percent": None,
                "note": "missing in the " + ("baseline" if vb is None else "new run")}
    change = None if vb == 0 else 100.0 * (vn / vb - 1.0)
    out.update({"change_percent": change, "difference": vn - vb})
    short = _enough(line, nb, nn, min_samples, min_tail)
    if short is None and min(nwin) < min_windows:
        short = f"needs ≥ {min_windows} windows in each run for an interval, has {nwin[0]} / {nwin[1]}"
    if short:
        return {**out, "status": "insufficient samples", "note": short}
    if line.stat not in boot:
        return {**out, "status": "insufficient samples", "note": "no per-window histograms in the result"}
    xb, xn = boot[line.stat]
    if line.borrow:  # service time: the latency statistic's relative spread, around service time's own point
        iv = _interval(xb, xn, float(xb[0]), float(xn[0]), confidence, noise)
        if iv is not None and vb > 0:
            lat_rel = (xn[0] / xb[0] - 1.0) if xb[0] > 0 else 0.0
            r0 = vn / vb - 1.0
            lo = (1 + r0) * (1 + iv[0][0]) / (1 + lat_rel) - 1.0
            hi = (1 + r0) * (1 + iv[0][1]) / (1 + lat_rel) - 1.0
            iv = ((lo, hi), (vb * lo, vb * hi))
        out["method"] = "borrowed from latency"
    else:
        iv = _interval(xb, xn, float(vb), float(vn), confidence, noise)
    if iv is None:
        return {**out, "status": "insufficient samples", "note": "too many resamples without data"}
    rel, diff = iv
    status = judge(rel, diff, lower_is_better=line.lower_is_better, floor=floor, fail_above=fail_above,
                   unchanged_below=unchanged_below)
    out.update({"status": status, "interval_percent": [100.0 * rel[0], 100.0 * rel[1]],
                "difference_interval": [diff[0], diff[1]], "beyond_tolerance": status == "regressed"})
    sign = 1.0 if line.lower_is_better else -1.0
    worse_lo = min(sign * rel[0], sign * rel[1])
    note = None
    if status == "regressed":
        note = f"worse by more than {fail_above:.0%} over the whole interval" + (
            " (baseline was 0)" if vb == 0 else "")
    elif status == "unchanged":
        if max(sign * diff[0], sign * diff[1]) <= floor and max(sign * rel[0], sign * rel[1]) > fail_above:
            note = f"under the floor ({_floor_text(line.unit, floor)})"
        elif worse_lo > unchanged_below:
            note = f"worse, within the {fail_above:.0%} tolerance"
    elif status == "inconclusive":
        point_rel = (vn / vb - 1.0) if vb else math.inf
        need = _decide_after(rel, diff, point_rel, vn - vb, line.lower_is_better, floor, fail_above, seconds)
        out["decide_after_s"] = need
        note = f"the interval straddles the {fail_above:.0%} line; " + _longer(need, seconds)
    out["note"] = note
    return out


def _floor_text(unit: str, floor: float) -> str:
    return {"ms": f"{floor:g} ms", "rate": f"{100 * floor:g} pp", "rps": f"{floor:g} rps"}.get(unit, f"{floor:g}")


def _ident(r: Mapping[str, Any]) -> Dict[str, Any]:
    sc = r.get("scenario") or {}
    out = {"run_id": r.get("run_id"), "scenario": sc.get("name"), "target": sc.get("target"),
           "started_at": r.get("started_at"), "exit_code": (r.get("verdict") or {}).get("exit_code")}
    if r.get("repeats"):
        out["repeats"] = (r.get("repeats") or {}).get("count")
    return out


def _chg(r: Mapping[str, Any]) -> str:
    c = r.get("change_percent")
    iv = r.get("interval_percent")
    s = "(from 0)" if c is None else f"{c:+.1f} %"
    if iv:
        s += f" [{_pct(iv[0])}, {_pct(iv[1])}]"
    return s


def _pct(x: float) -> str:
    return "+inf" if x == math.inf else ("-inf" if x == -math.inf else f"{x:+.1f}%")


def gate_exit_code(run_exit_code: int, comparison: Mapping[str, Any]) -> int:
    """``harness run --baseline``: the run's own failure wins; otherwise 97 if the gate failed."""
    if run_exit_code != ExitCode.OK:
        return int(run_exit_code)
    return int(ExitCode.OK if comparison["gate"]["passed"] else ExitCode.REGRESSED)


def _v(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def format_comparison(c: Mapping[str, Any], *, all_rows: bool = False) -> str:
    """A terminal table: point change, interval, verdict.  Without ``all_rows`` only the
    ``all`` scope and the targets' rows that are not unchanged."""
    ln = c["lines"]
    lines = [f"baseline {c['base']['run_id']} ({c['base']['scenario']})  vs  new {c['new']['run_id']} "
             f"({c['new']['scenario']})",
             f"  gate fails when a whole {ln.get('confidence', CONFIDENCE):.0%} interval is worse than "
             f"{ln['fail_above']:.0%} and than the floor ("
             + ", ".join(f"{_floor_text(u, f)}" for u, f in (ln.get("floors") or {}).items()) + ")",
             f"  {'metric':<30}{'baseline':>10}{'new':>10}{'change':>9}  {'interval':<19}verdict"]
    for r in c["metrics"]:
        if not all_rows and r["scope"] != "all" and r["status"] in ("unchanged", "insufficient samples", "no data"):
            continue
        flag = "  FAIL" if r["beyond_tolerance"] and r["gated"] else ""
        gated = "" if r["gated"] else " (not gated)"
        iv = r.get("interval_percent")
        ivs = f"[{_pct(iv[0])}, {_pct(iv[1])}]" if iv else "-"
        note = f"  ({r['note']})" if r.get("note") else ""
        lines.append(f"  {r['metric']:<30}{_v(r['base']):>10}{_v(r['new']):>10}"
                     f"{'-' if r['change_percent'] is None else format(r['change_percent'], '+.1f') + '%':>9}  "
                     f"{ivs:<19}{r['status']}{gated}{flag}{note}")
    cnt = c["counts"]
    lines.append("  " + ", ".join(f"{k} {v}" for k, v in sorted(cnt.items())))
    for w in c["warnings"]:
        lines.append(f"  warning: {w}")
    g = c["gate"]
    lines.append(f"gate: {'PASSED' if g['passed'] else 'FAILED'} (exit {g['exit_code']}): {g['reason']}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- repeats


def pool_results(results: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """One result from N runs of the same scenario, for the gate (``run --repeat``).

    The summary is exact over every request (the encoded HDR histograms add); the windows
    are concatenated in run order (repeat k's window i gets index ``offset_k + i``), so
    ``timeseries`` shows the repeats one after another and the gate's block bootstrap sees
    the differences between runs; ``repeats`` records the parts, their exit codes and the
    summed duration that throughput divides by.  Everything else (scenario, generator,
    thresholds, verdict, resources …) is the *last* repeat's, except that the verdict is the
    first failing repeat's when one failed.  A single result is returned as a copy."""
    if not results:
        raise ValueError("nothing to pool")
    if any("histograms" not in r for r in results):
        raise ValueError("every repeat needs its encoded histograms")
    if len(results) == 1:
        return copy.deepcopy(dict(results[0]))
    widths = {int((r["histograms"] or {}).get("window_s") or 1) for r in results}
    if len(widths) > 1:
        raise ValueError(f"the repeats' windows differ in width ({sorted(widths)} s): cannot pool them")
    merged = Recorder.decode(results[0]["histograms"])
    for r in results[1:]:
        merged.merge(Recorder.decode(r["histograms"]))
    enc = merged.encode()
    offset = 0
    offsets: List[int] = []
    windows: Dict[str, List[Dict[str, Any]]] = {t: [] for t in enc["targets"]}
    for r in results:
        tgs = r["histograms"].get("targets") or {}
        idx = [int(w["index"]) for t in tgs.values() for w in t.get("windows") or []]
        if not idx:
            continue
        offsets.append(offset)
        lo, hi = min(idx), max(idx)
        for t, body in tgs.items():
            windows.setdefault(t, []).extend({**w, "index": int(w["index"]) - lo + offset}
                                             for w in body.get("windows") or [])
        offset += hi - lo + 1
    for t in enc["targets"]:
        enc["targets"][t]["windows"] = windows.get(t, [])
    enc["max_windows"] = max(int(enc.get("max_windows") or 0), offset)
    pooled_rec = Recorder.decode(enc)
    last = results[-1]
    out = copy.deepcopy(dict(last))
    failing = next((r for r in results if int((r.get("verdict") or {}).get("exit_code", 0)) != 0), None)
    if failing is not None:
        out["verdict"] = copy.deepcopy(failing["verdict"])
    durations = [run_duration(r) or 0.0 for r in results]
    out.update({
        "run_id": "pooled-" + "+".join(str(r.get("run_id")) for r in results)[:200],
        "started_at": results[0].get("started_at"),
        "elapsed_s": sum(float(r.get("elapsed_s") or 0.0) for r in results),
        "summary": pooled_rec.summary(),
        "timeseries": pooled_rec.windows(),
        "histograms": enc,
        "repeats": {"count": len(results), "run_ids": [r.get("run_id") for r in results],
                    "exit_codes": [int((r.get("verdict") or {}).get("exit_code", 0)) for r in results],
                    "durations_s": durations, "duration_s": sum(durations), "window_offsets": offsets,
                    "note": "summary over all repeats; windows concatenated in run order; the rest is the "
                            "last repeat's"},
    })
    return out
