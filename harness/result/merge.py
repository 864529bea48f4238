"""``harness merge``: N results (worker processes, Kubernetes pods) into one, with exact
global percentiles and thresholds judged on the union.

k6-operator cannot judge thresholds across pods because each pod only knows its own
percentiles; we ship the encoded HDR histograms in every result, and HDR histograms add
exactly, so the merged p99 is the p99 of all requests, not an average of p99s.

The union is only one run if the parts are distinct segments of one schedule
(``harness run --segment i/n`` records ``scenario.profile.segment``): the same file twice
counted every request twice and passed, a 40 rps part merged with a 5 rps one, and two
segments plus the whole run made 200 %. :func:`check_parts` refuses those with one line
per problem naming the files; ``force`` merges anyway and the result's ``merge`` entry
records that it was forced and why.
"""

from __future__ import annotations

import json
from typing import Any, List, Mapping, Sequence

from harness.exitcodes import ExitCode
from harness.config.thresholds import evaluate, exit_code, parse_thresholds
from harness.record.recorder import Recorder
from harness.result.schema import RESULT_SCHEMA, Result

__all__ = ["merge_results", "check_parts", "segment_of", "MergeError", "SCHEDULE_KEYS"]

#: scenario keys that must agree for parts to be segments of one schedule (``profile`` is
#: compared without its ``segment``); executor settings may differ between pods
SCHEDULE_KEYS: tuple[str, ...] = ("name", "target", "mix", "payload", "duration", "profile", "timeout",
                                  "thresholds", "failures", "faults", "workload", "seed")


class MergeError(ValueError):
    """Results that cannot be merged; the message names the file and the problem. (A file
    that is not a result at all is :class:`harness.result.schema.ResultError`.)"""


def segment_of(result: Mapping[str, Any]) -> tuple[int, int]:
    """``(offset, stride)`` of the part of the schedule a result ran: ``scenario.profile.segment``
    (``harness run --segment i/n``), ``(0, 1)`` — the whole schedule — when absent."""
    seg = ((result.get("scenario") or {}).get("profile") or {}).get("segment") or {}
    try:
        offset, stride = int(seg.get("offset", 0)), int(seg.get("stride", 1))
    except (TypeError, ValueError, AttributeError):
        raise MergeError(f"scenario.profile.segment: expected {{offset, stride}} integers, got {seg!r}") from None
    if stride < 1 or not 0 <= offset < stride:
        raise MergeError(f"scenario.profile.segment: offset must be in [0, stride), got {offset}/{stride}")
    return offset, stride


def _schedule(result: Mapping[str, Any]) -> dict[str, Any]:
    sc = result.get("scenario") or {}
    out = {k: sc.get(k) for k in SCHEDULE_KEYS if k in sc}
    if isinstance(out.get("profile"), Mapping):
        out["profile"] = {k: v for k, v in out["profile"].items() if k != "segment"}
    return out


def _describe(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def check_parts(results: Sequence[Mapping[str, Any]], names: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """Why ``results`` are not distinct segments of one schedule (one line each, naming the
    files), and the segment their union covers (``{"offset", "stride"}``; None if unknown).

    Rules: the same scenario (every :data:`SCHEDULE_KEYS` key equal, the profile apart from
    its segment), not the same run twice, one stride for all parts, each offset exactly once,
    and every offset of that stride present (missing ones are named; when the parts are
    exactly the residues of one coarser segment, e.g. 0/4 + 2/4 = 0/2, that is what they
    cover, else ``covers`` is None).
    """
    problems: list[str] = []
    first = _schedule(results[0])
    for name, r in zip(names[1:], results[1:]):
        mine = _schedule(r)
        for key in SCHEDULE_KEYS:
            if mine.get(key) != first.get(key):
                what = "profile (apart from its segment)" if key == "profile" else key
                problems.append(f"{name}: scenario {what} {_describe(mine.get(key))} differs from {names[0]}'s "
                                f"{_describe(first.get(key))}: not parts of one schedule")
    seen_ids: dict[str, str] = {}
    for name, r in zip(names, results):
        rid = r.get("run_id")
        if rid is not None and str(rid) in seen_ids:
            problems.append(f"{name}: the same run as {seen_ids[str(rid)]} (run_id {rid}): merging it twice "
                            "would count its requests twice")
        elif rid is not None:
            seen_ids[str(rid)] = name
    segs = []
    for name, r in zip(names, results):
        try:
            segs.append(segment_of(r))
        except MergeError as exc:
            raise MergeError(f"{name}: {exc}") from None
    strides = sorted({s for _, s in segs})
    covered: dict[str, Any] = {"offset": None, "stride": None}
    if len(strides) > 1:
        listing = ", ".join(f"{n}: {o}/{s}" for n, (o, s) in zip(names, segs))
        problems.append(f"parts have different strides ({listing}): segments of one schedule split it the same "
                        "way (harness run --segment i/n with one n)")
        return problems, covered
    stride = strides[0]
    by_offset: dict[int, list[str]] = {}
    for name, (o, _) in zip(names, segs):
        by_offset.setdefault(o, []).append(name)
    for o, who in sorted(by_offset.items()):
        if len(who) > 1:
            problems.append(f"segment {o}/{stride} appears {len(who)} times ({', '.join(who)}): each segment once, "
                            "or its requests count twice")
    offsets = sorted(by_offset)
    k = len(offsets)
    if stride % k == 0:
        coarse = stride // k  # k parts of stride S cover one segment of stride S/k ...
        base = offsets[0] % coarse
        if offsets == [base + coarse * j for j in range(k)]:  # ... if they are its residues
            covered = {"offset": base, "stride": coarse}
    missing = [o for o in range(stride) if o not in by_offset]
    if missing:
        shown = ", ".join(f"{o}/{stride}" for o in missing[:12]) + (f" and {len(missing) - 12} more"
                                                                    if len(missing) > 12 else "")
        nested = (f"; together they are segment {covered['offset']}/{covered['stride']}"
                  if covered["stride"] is not None else "")
        problems.append(f"segments missing: {shown} (have {', '.join(f'{o}/{stride}' for o in offsets)}{nested}): "
                        "the merge would not be the whole schedule")
    return problems, covered


def merge_results(results: Sequence[Mapping[str, Any]], names: Sequence[str] | None = None, *,
                  force: bool = False, allow_partial: bool = False) -> Result:
    """One result over the union of distinct segments of one schedule (:func:`check_parts`;
    ``allow_partial``: missing segments are reported, not refused; ``force``: merge anyway,
    and say so in the result's ``merge`` entry). Parts carry their encoded histograms; the
    merged run lasted as long as its longest part (parts run side by side). Returns a new
    document; the parts are not changed."""
    if not results:
        raise MergeError("nothing to merge")
    names = list(names or [f"result {i}" for i in range(len(results))])
    for name, r in zip(names, results):
        if "histograms" not in r:
            raise MergeError(f"{name}: has no encoded histograms to merge")
    first = results[0]
    problems, covered = check_parts(results, names)
    partial = [p for p in problems if p.startswith("segments missing")]
    refusing = [p for p in problems if not (allow_partial and p in partial)]
    if refusing and not force:
        hint = "--allow-partial to merge some segments only, " if refusing == partial else ""
        raise MergeError("parts are not distinct segments of one schedule:\n  " + "\n  ".join(refusing)
                         + f"\n({hint}--force to merge anyway, recorded in the result)")
    scenario = json.loads(json.dumps(first["scenario"], default=str))
    profile = scenario.get("profile")
    if isinstance(profile, dict):  # the merged result ran the segment the parts cover together
        profile.pop("segment", None)
        if covered["stride"] not in (None, 1):
            profile["segment"] = dict(covered)
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
        "scenario": scenario,
        "scenario_sources": first.get("scenario_sources", {}),
        "environment": {"merged_from": [{"name": n, "run_id": r.get("run_id"),
                                         "hostname": r.get("environment", {}).get("hostname")}
                                        for n, r in zip(names, results)]},
        "metrics_url": None,
        "summary": merged.summary(),
        "error_details": merged.error_details(),
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
        # what was merged and whether it was checked: forced/partial merges say so here
        "merge": {
            "parts": [{"name": n, "run_id": r.get("run_id"), "segment": {"offset": o, "stride": st}}
                      for n, r, (o, st) in zip(names, results, (segment_of(r) for r in results))],
            "covers": covered,
            "forced": bool(force and refusing),
            "partial": bool(partial),
            "problems": problems,
        },
    }
