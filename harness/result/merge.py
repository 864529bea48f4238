"""``harness merge``: N results (worker processes, Kubernetes pods) into one, with exact
global percentiles and thresholds judged on the union.

k6-operator cannot judge thresholds across pods because each pod only knows its own
percentiles; we ship the encoded HDR histograms in every result, and HDR histograms add
exactly, so the merged p99 is the p99 of all requests, not an average of p99s.
"""

from __future__ import annotations

from typing import Any, List, Mapping, Sequence

from harness.exitcodes import ExitCode
from harness.config.thresholds import evaluate, exit_code, parse_thresholds
from harness.record.recorder import Recorder
from harness.result.schema import RESULT_SCHEMA, Result

__all__ = ["merge_results", "MergeError"]


class MergeError(ValueError):
    """Results that cannot be merged; the message names the file and the problem. (A file
    that is not a result at all is :class:`harness.result.schema.ResultError`.)"""


def merge_results(results: Sequence[Mapping[str, Any]], names: Sequence[str] | None = None) -> Result:
    """One result over the union. Parts must come from the same scenario (same name and
    thresholds) and carry their encoded histograms; the merged run lasted as long as its
    longest part (parts run side by side). Returns a new document; the parts are not changed."""
    if not results:
        raise MergeError("nothing to merge")
    names = list(names or [f"result {i}" for i in range(len(results))])
    for name, r in zip(names, results):
        if "histograms" not in r:
            raise MergeError(f"{name}: has no encoded histograms to merge")
    first = results[0]
    for name, r in zip(names[1:], results[1:]):
        if r["scenario"].get("name") != first["scenario"].get("name"):
            raise MergeError(f"{name}: scenario {r['scenario'].get('name')!r} differs from "
                             f"{first['scenario'].get('name')!r}")
        if r["scenario"].get("thresholds") != first["scenario"].get("thresholds"):
            raise MergeError(f"{name}: thresholds differ from {names[0]}'s; merged thresholds would be ambiguous")
    merged = Recorder.decode(first["histograms"])
    for r in results[1:]:
        merged.merge(Recorder.decode(r["histograms"]))
    duration = max(float(r["scenario"].get("duration") or 0.0) for r in results)
    if any(r.get("status") != "completed" for r in results):
        duration = max(float(r.get("elapsed_s") or 0.0) for r in results) or duration
    thresholds = parse_thresholds(first["scenario"].get("thresholds") or {})
    judged = evaluate(thresholds, merged.threshold_source(max(duration, 1e-9)))
    valid = all(r["verdict"].get("valid", True) for r in results)
    interrupted = any(r.get("status") == "interrupted" for r in results)
    code = exit_code(judged, invalid=not valid, interrupted=interrupted)
    reasons: List[str] = []
    for name, r in zip(names, results):
        reasons += [f"{name}: {why}" for why in r.get("generator", {}).get("reasons", [])]
    lag99 = [r["generator"].get("schedule_lag_p99_ms") for r in results if r.get("generator")]
    lag99 = [x for x in lag99 if x is not None]
    return {
        "schema": RESULT_SCHEMA,
        "run_id": "merged-" + "+".join(str(r.get("run_id")) for r in results)[:200],
        "status": "interrupted" if interrupted else ("completed" if all(r.get("status") == "completed"
                                                                        for r in results) else "partial"),
        "started_at": min(r["started_at"] for r in results),
        "finished_at": max(r["finished_at"] for r in results),
        "elapsed_s": max(float(r.get("elapsed_s") or 0) for r in results),
        "scenario": first["scenario"],
        "scenario_sources": first.get("scenario_sources", {}),
        "environment": {"merged_from": [{"name": n, "run_id": r.get("run_id"),
                                         "hostname": r.get("environment", {}).get("hostname")}
                                        for n, r in zip(names, results)]},
        "metrics_url": None,
        "summary": merged.summary(),
        "timeseries": merged.windows(),
        "resources": {"summary": {"parts": [r["resources"]["summary"] for r in results]}, "samples": []},
        "generator": {
            "valid": valid, "reasons": reasons, "parts": len(results),
            "schedule_lag_p50_ms": None,
            "schedule_lag_p99_ms": max(lag99) if lag99 else None,  # the worst part: never flattering
            "lag_bound_ms": first["generator"].get("lag_bound_ms"),
            "cpu_percent_mean": sum(r["generator"].get("cpu_percent_mean", 0.0) for r in results),
            "cpu_count": first["generator"].get("cpu_count"),
            "cpu_bound_fraction": first["generator"].get("cpu_bound_fraction"),
            "abandoned_calls": sum(r["generator"].get("abandoned_calls", 0) for r in results),
            "closed_loop": first["generator"].get("closed_loop", False),
        },
        "thresholds": [t.to_dict() for t in judged],
        "verdict": {"passed": code == ExitCode.OK, "exit_code": int(code), "thresholds_passed": all(t.ok for t in judged),
                    "valid": valid, "aborted_by": []},
        "stack": None,
        "histograms": merged.encode(),
    }
