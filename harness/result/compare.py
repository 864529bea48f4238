"""Compare a run with a baseline run: improved / regressed / unchanged per metric, and a CI gate.

The lines come from the origin documents: a change smaller than **1 %** is *unchanged*; a
metric worse than the baseline by more than **10 %** *fails the gate*.  Between the two a
metric is reported as *regressed* (or *improved*) but does not fail the gate.

What is compared (for ``all`` and for every target both runs have):

* latency and service time: mean, p50, p90, p95, p99, p99.9 (lower is better), max
  (shown, never gated: it is one sample);
* error and timeout rates (lower is better; changes smaller than 0.1 percentage point
  count as unchanged, so 0.10 % → 0.12 % is not a "20 % regression");
* achieved throughput (requests that ran per second of the scenario; higher is better);
* cache-hit and fallback rates, process CPU and peak RSS: shown, not gated.

**No verdict from too few samples.** A percentile is only compared when both runs have at
least ``min_tail`` (default 10) requests beyond it (p99 needs 1,000 requests, p95 200), and
any metric needs ``min_samples`` (default 100) requests in both runs; otherwise its status
is ``insufficient samples``.  A gate where *no* gated metric had enough samples fails (it
proved nothing), like a threshold with no data.

Exit code of the gate: :attr:`ExitCode.REGRESSED <harness.exitcodes.ExitCode>` (97) when it
fails; ``harness run --baseline`` keeps the run's own non-zero code (99 thresholds, 98
invalid, 105 interrupted) and uses 97 only when the run itself passed (see
:func:`gate_exit_code`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

from harness.exitcodes import ExitCode
from harness.result.summary import run_duration

__all__ = [
    "UNCHANGED_BELOW",
    "FAIL_ABOVE",
    "COMPARE_SCHEMA",
    "Line",
    "compare",
    "classify",
    "gate_exit_code",
    "format_comparison",
]

COMPARE_SCHEMA = "harness.result.compare/1"
UNCHANGED_BELOW = 0.01
FAIL_ABOVE = 0.10
RATE_ABS_UNCHANGED = 0.001  # 0.1 percentage point

_PCTS = (("p50", 50.0), ("p90", 90.0), ("p95", 95.0), ("p99", 99.0), ("p99.9", 99.9))


@dataclass(frozen=True)
class Line:
    """One comparable figure: how to read it and which way is better."""

    name: str                 # "latency p95"
    lower_is_better: bool
    gated: bool
    percentile: Optional[float] = None
    kind: str = "value"       # value | rate | throughput | info


def classify(base: Optional[float], new: Optional[float], *, lower_is_better: bool,
             unchanged_below: float = UNCHANGED_BELOW, fail_above: float = FAIL_ABOVE,
             abs_unchanged: float = 0.0) -> Dict[str, Any]:
    """``{"status", "change_percent", "beyond_tolerance", "note"}`` for one pair of values.

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


def _figures(result: Mapping[str, Any], block: Mapping[str, Any]) -> Dict[str, tuple]:
    """name -> (value, samples, Line)."""
    out: Dict[str, tuple] = {}
    n = int(block.get("count") or 0)
    for metric, label in (("latency", "latency"), ("service_time", "service time")):
        s = block.get(metric) or {}
        cnt = int(s.get("count") or 0)
        out[f"{label} mean"] = (s.get("mean"), cnt, Line(f"{label} mean", True, True))
        for key, p in _PCTS:
            out[f"{label} {key}"] = (s.get(key), cnt, Line(f"{label} {key}", True, True, p))
        out[f"{label} max"] = (s.get("max"), cnt, Line(f"{label} max", True, False, kind="info"))
    out["error rate"] = (block.get("error_rate"), n, Line("error rate", True, True, kind="rate"))
    out["timeout rate"] = (block.get("timeout_rate"), n, Line("timeout rate", True, True, kind="rate"))
    d = run_duration(result)
    ran = n - int((block.get("outcomes") or {}).get("dropped", 0))
    out["throughput (rps)"] = (ran / d if d and n else None, n, Line("throughput (rps)", False, True, kind="throughput"))
    ok = int((block.get("outcomes") or {}).get("ok", 0))
    out["cache-hit rate"] = (block.get("cache_hit_rate"), ok, Line("cache-hit rate", False, False, kind="rate"))
    out["fallback rate"] = (block.get("fallback_rate"), ok, Line("fallback rate", True, False, kind="rate"))
    return out


def _resource_figures(result: Mapping[str, Any]) -> Dict[str, tuple]:
    rs = (result.get("resources") or {}).get("summary") or {}
    n = int(rs.get("samples") or 0)
    rss = rs.get("process_rss_bytes_max")
    return {
        "process CPU % (mean)": (rs.get("process_cpu_percent_mean"), n,
                                 Line("process CPU % (mean)", True, False, kind="info")),
        "process RSS MiB (max)": (None if rss is None else rss / 2**20, n,
                                  Line("process RSS MiB (max)", True, False, kind="info")),
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


def compare(base: Mapping[str, Any], new: Mapping[str, Any], *, unchanged_below: float = UNCHANGED_BELOW,
            fail_above: float = FAIL_ABOVE, min_samples: int = 100, min_tail: int = 10,
            targets: bool = True) -> Dict[str, Any]:
    """Compare two ``harness.result/1`` documents; see the module docstring."""
    rows: List[Dict[str, Any]] = []
    blocks = [("all", (base.get("summary") or {}).get("all") or {}, (new.get("summary") or {}).get("all") or {})]
    if targets:
        bt = (base.get("summary") or {}).get("targets") or {}
        nt = (new.get("summary") or {}).get("targets") or {}
        if len(bt) > 1 or len(nt) > 1 or set(bt) != set(nt):
            blocks += [(t, bt[t], nt[t]) for t in sorted(set(bt) & set(nt))]
    warnings: List[str] = []
    for scope, b, n in blocks:
        fb, fn = _figures(base, b), _figures(new, n)
        if scope == "all":
            fb.update(_resource_figures(base))
            fn.update(_resource_figures(new))
        for name, (vb, nb, line) in fb.items():
            vn, nn, _ = fn[name]
            short = _enough(line, nb, nn, min_samples, min_tail)
            abs_tol = RATE_ABS_UNCHANGED if line.kind == "rate" else 0.0
            c = classify(vb, vn, lower_is_better=line.lower_is_better, unchanged_below=unchanged_below,
                         fail_above=fail_above, abs_unchanged=abs_tol)
            if short and c["status"] != "no data":
                c = {**c, "status": "insufficient samples", "beyond_tolerance": False, "note": short}
            rows.append({"scope": scope, "metric": name if scope == "all" else f"{name} [{scope}]",
                         "name": name, "base": vb, "new": vn, "samples": [nb, nn],
                         "lower_is_better": line.lower_is_better, "gated": line.gated, **c})
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
    judged = [r for r in gated if r["status"] in ("improved", "regressed", "unchanged")]
    failing = [r for r in gated if r["beyond_tolerance"]]
    if failing:
        passed, reason = False, (f"{len(failing)} metric(s) worse than the baseline by more than {fail_above:.0%}: "
                                 + ", ".join(f"{r['metric']} {_chg(r)}" for r in failing))
    elif not judged:
        passed, reason = False, "no gated metric had enough samples in both runs: no verdict"
    else:
        passed, reason = True, (f"no gated metric worse by more than {fail_above:.0%} "
                                f"({len(judged)} judged, {len(gated) - len(judged)} without enough samples)")
    return {
        "schema": COMPARE_SCHEMA,
        "base": _ident(base),
        "new": _ident(new),
        "lines": {"unchanged_below": unchanged_below, "fail_above": fail_above, "min_samples": min_samples,
                  "min_tail": min_tail, "rate_abs_unchanged": RATE_ABS_UNCHANGED},
        "metrics": rows,
        "counts": counts,
        "warnings": warnings,
        "gate": {"passed": passed, "exit_code": int(ExitCode.OK if passed else ExitCode.REGRESSED), "reason": reason,
                 "regressions": [r["metric"] for r in failing]},
    }


def _ident(r: Mapping[str, Any]) -> Dict[str, Any]:
    sc = r.get("scenario") or {}
    return {"run_id": r.get("run_id"), "scenario": sc.get("name"), "target": sc.get("target"),
            "started_at": r.get("started_at"), "exit_code": (r.get("verdict") or {}).get("exit_code")}


def _chg(r: Mapping[str, Any]) -> str:
    c = r.get("change_percent")
    return "(from 0)" if c is None else f"{c:+.1f} %"


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
    """A terminal table.  Without ``all_rows`` only the ``all`` scope and changed rows of targets."""
    lines = [f"baseline {c['base']['run_id']} ({c['base']['scenario']})  vs  new {c['new']['run_id']} "
             f"({c['new']['scenario']});  unchanged below {c['lines']['unchanged_below']:.0%}, "
             f"gate fails above {c['lines']['fail_above']:.0%} worse",
             f"  {'metric':<34}{'baseline':>12}{'new':>12}{'change':>10}  status"]
    for r in c["metrics"]:
        if not all_rows and r["scope"] != "all" and r["status"] in ("unchanged", "insufficient samples", "no data"):
            continue
        flag = "  FAIL" if r["beyond_tolerance"] and r["gated"] else ""
        gated = "" if r["gated"] else " (not gated)"
        note = f"  ({r['note']})" if r.get("note") and r["status"] != "unchanged" else ""
        lines.append(f"  {r['metric']:<34}{_v(r['base']):>12}{_v(r['new']):>12}"
                     f"{'-' if r['change_percent'] is None else format(r['change_percent'], '+.1f') + '%':>10}  "
                     f"{r['status']}{gated}{flag}{note}")
    cnt = c["counts"]
    lines.append("  " + ", ".join(f"{k} {v}" for k, v in sorted(cnt.items())))
    for w in c["warnings"]:
        lines.append(f"  warning: {w}")
    g = c["gate"]
    lines.append(f"gate: {'PASSED' if g['passed'] else 'FAILED'} (exit {g['exit_code']}): {g['reason']}")
    return "\n".join(lines)
