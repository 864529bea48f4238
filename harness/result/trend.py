"""Many runs in time order: the figures a team watches from one run to the next.

``harness trend RESULTS… [--baseline FILE]`` (:mod:`harness.cli.trend`) reads result files
and folders of them, orders the runs by their start time (``started_at``; a result's file
name or modification time says nothing about when it ran) and keeps, per run, the exact
summary figures the verdict used: latency p50/p95/p99 (from the intended start), throughput
(requests that ran over the run's duration, as :mod:`harness.result.compare` counts it) and
the failed rate (errors + timeouts + dropped over all requests, k6's ``http_req_failed``).

Why these and not a per-window view: a trend answers "did the nightly run drift", and the
summary figures are the ones the gate and the thresholds judged; the per-second detail of
one pair of runs is ``harness compare A B --report``.

Inputs are strict where a silent guess would draw the wrong history:

- a file named on the command line that is not a result is an error naming the file; in a
  folder, JSON documents of another kind (a comparison, a knee search) are skipped and listed;
- runs of different scenarios (name and target) are not drawn on one line unless asked
  (``allow_mixed``); ``scenario`` keeps one of them;
- a run without a readable ``started_at`` cannot be placed in time: an error naming the file;
- the same run (``run_id``) read twice (a baseline copied next to the runs) is shown once;
- a pooled ``--repeat`` result whose repeats are all present is dropped (its repeats are
  the runs), so a folder written by ``run --repeat`` is not counted twice; the segments'
  results of a merged distributed run (``harness merge``) are dropped when the merged
  result is present (it is the run).

The baseline: ``baseline`` (a path), else a result carrying a top-level ``"baseline": true``
(set it with ``jq '.baseline = true'``); two flagged results are an error.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from harness.result.schema import RESULT_SCHEMA, Result, ResultError, load_result
from harness.result.summary import run_duration

__all__ = [
    "TREND_SCHEMA",
    "TrendError",
    "TrendRun",
    "Trend",
    "expand_inputs",
    "trend_point",
    "build_trend",
    "load_trend",
    "format_trend",
]

TREND_SCHEMA = "harness.trend/1"

PathLike = Union[str, Path]


class TrendError(ValueError):
    """Inputs a trend cannot be drawn from; the message names the file or the clash."""


@dataclass
class TrendRun:
    """One run's point on every trend line (ms, requests/s, fractions)."""

    run_id: str
    path: str
    started_at: str
    start_ts: float                 # unix seconds, for ordering and the time axis
    scenario: Optional[str]
    target: Optional[str]
    status: Optional[str]
    exit_code: Optional[int]
    valid: bool                     # the generator's self-check
    count: int
    duration_s: Optional[float]
    p50_ms: Optional[float]
    p95_ms: Optional[float]
    p99_ms: Optional[float]
    rps: Optional[float]
    failed_rate: Optional[float]
    baseline: bool = False


@dataclass
class Trend:
    """The ordered runs, which one is the baseline, and what was left out and why."""

    runs: List[TrendRun]
    baseline_index: Optional[int] = None
    skipped: List[Tuple[str, str]] = field(default_factory=list)   # (path, reason)
    notes: List[str] = field(default_factory=list)
    thresholds: List[Dict[str, Any]] = field(default_factory=list)  # the newest run's, for the budget lines

    @property
    def baseline(self) -> Optional[TrendRun]:
        return None if self.baseline_index is None else self.runs[self.baseline_index]

    def to_dict(self) -> Dict[str, Any]:
        """The ``--json`` document (``harness.trend/1``)."""
        return {"schema": TREND_SCHEMA,
                "baseline": None if self.baseline is None else self.baseline.run_id,
                "runs": [asdict(r) for r in self.runs],
                "skipped": [{"path": p, "reason": why} for p, why in self.skipped],
                "notes": list(self.notes)}


# ----------------------------------------------------------------------------- inputs


def expand_inputs(paths: Sequence[PathLike]) -> List[Tuple[Path, bool]]:
    """``(file, named)`` for each input: a file as given (``named`` True), a folder's
    ``*.json`` files in name order, not recursive (``named`` False). A path that does not
    exist, or a folder without JSON files, is a :class:`TrendError`."""
    out: List[Tuple[Path, bool]] = []
    seen: set = set()
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files = sorted(f for f in p.glob("*.json") if f.is_file())
            if not files:
                raise TrendError(f"{p}: a folder without result files (*.json)")
            items = [(f, False) for f in files]
        elif p.exists():
            items = [(p, True)]
        else:
            raise TrendError(f"{p}: no such file or folder")
        for f, named in items:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                out.append((f, named))
    return out


def _schema_of(path: Path) -> Any:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("schema") if isinstance(data, dict) else None


def _start_ts(started_at: Any, path: str) -> float:
    if not isinstance(started_at, str) or not started_at:
        raise TrendError(f"{path}: started_at: missing: cannot place the run in time")
    try:
        t = datetime.fromisoformat(started_at.replace("Z", "+00:00"))
    except ValueError:
        raise TrendError(f"{path}: started_at: not an ISO 8601 time: {started_at!r}") from None
    if t.tzinfo is None:  # the harness writes UTC
        t = t.replace(tzinfo=timezone.utc)
    return t.timestamp()


def _failed_rate(block: Mapping[str, Any]) -> Optional[float]:
    if block.get("failed_rate") is not None:
        return float(block["failed_rate"])
    n = int(block.get("count") or 0)
    o = block.get("outcomes") or {}
    return (int(o.get("error", 0)) + int(o.get("timeout", 0)) + int(o.get("dropped", 0))) / n if n else None


def trend_point(result: Mapping[str, Any], path: PathLike = "") -> TrendRun:
    """One run's figures from its summary (``summary.all``); throughput counts the requests
    that ran (not the dropped ones) over the run's duration, as the comparison does."""
    where = str(path) or str(result.get("run_id"))
    sc = result.get("scenario") or {}
    block = (result.get("summary") or {}).get("all") or {}
    lat = block.get("latency") or {}
    n = int(block.get("count") or 0)
    pooled = (result.get("repeats") or {}).get("duration_s")
    d = float(pooled) if pooled else run_duration(result)
    ran = n - int((block.get("outcomes") or {}).get("dropped", 0))
    verdict = result.get("verdict") or {}
    code = verdict.get("exit_code")
    return TrendRun(
        run_id=str(result.get("run_id")), path=str(path), started_at=str(result.get("started_at") or ""),
        start_ts=_start_ts(result.get("started_at"), where), scenario=sc.get("name"), target=sc.get("target"),
        status=result.get("status"), exit_code=None if code is None else int(code),
        valid=bool((result.get("generator") or {}).get("valid", True)), count=n, duration_s=d,
        p50_ms=_num(lat.get("p50")), p95_ms=_num(lat.get("p95")), p99_ms=_num(lat.get("p99")),
        rps=ran / d if d and n else None, failed_rate=_failed_rate(block))


def _num(v: Any) -> Optional[float]:
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)


def build_trend(results: Iterable[Tuple[Result, str]], *, baseline: Optional[Tuple[Result, str]] = None,
                scenario: Optional[str] = None, allow_mixed: bool = False,
                skipped: Sequence[Tuple[str, str]] = ()) -> Trend:
    """The trend of already-loaded results (``(result, path)``); see the module docstring
    for what is refused, dropped and marked."""
    skipped = list(skipped)
    notes: List[str] = []
    items = list(results)
    if baseline is not None:
        items.append(baseline)
    # one point per run_id (a baseline copied next to the runs is the same run)
    by_id: Dict[str, Tuple[Result, str]] = {}
    for res, path in items:
        rid = str(res.get("run_id"))
        if rid in by_id:
            if Path(by_id[rid][1]).resolve() != Path(path).resolve():
                notes.append(f"run {rid} is in {by_id[rid][1]} and {path}: shown once")
            continue
        by_id[rid] = (res, path)
    # a pooled --repeat result whose repeats are all here: its repeats are the runs
    for rid, (res, path) in list(by_id.items()):
        parts = [str(x) for x in (res.get("repeats") or {}).get("run_ids") or []]
        if parts and all(x in by_id for x in parts):
            del by_id[rid]
            skipped.append((path, f"pooled result of repeats {', '.join(parts)}, which are drawn themselves"))
    # a merged distributed run (``harness merge``) is the run; its segments' own results are parts of it
    for rid, (res, path) in list(by_id.items()):
        for part in (res.get("merge") or {}).get("parts") or []:
            pid = str((part or {}).get("run_id"))
            if pid in by_id and pid != rid:
                skipped.append((by_id.pop(pid)[1], f"a segment of the merged run {rid}, which is drawn"))
    if scenario is not None:
        kept = {}
        for rid, (res, path) in by_id.items():
            name = (res.get("scenario") or {}).get("name")
            if name == scenario:
                kept[rid] = (res, path)
            else:
                skipped.append((path, f"scenario {name!r}, not {scenario!r}"))
        by_id = kept
        if not by_id:
            raise TrendError(f"no result of scenario {scenario!r} among the inputs")
    if not by_id:
        raise TrendError("no results to draw")
    runs = [trend_point(res, path) for res, path in by_id.values()]
    kinds: Dict[Tuple[Any, Any], int] = {}
    for r in runs:
        kinds[(r.scenario, r.target)] = kinds.get((r.scenario, r.target), 0) + 1
    if len(kinds) > 1:
        listing = ", ".join(f"{n!r} (target {t}) ×{c}" for (n, t), c in sorted(kinds.items(), key=str))
        if not allow_mixed:
            raise TrendError(f"the results are runs of {len(kinds)} different scenarios: {listing}; keep one with "
                             "--scenario NAME, or draw them together with --allow-mixed")
        notes.append(f"runs of {len(kinds)} scenarios drawn together: {listing}")
    runs.sort(key=lambda r: (r.start_ts, r.run_id))
    base_id: Optional[str] = None
    if baseline is not None:
        base_id = str(baseline[0].get("run_id"))
    else:
        flagged = [(res, path) for res, path in by_id.values() if res.get("baseline") is True]
        if len(flagged) > 1:
            raise TrendError("more than one result is flagged as the baseline (\"baseline\": true): "
                             + ", ".join(p for _, p in flagged) + "; choose one with --baseline FILE")
        if flagged:
            base_id = str(flagged[0][0].get("run_id"))
    index = None
    if base_id is not None:
        index = next((i for i, r in enumerate(runs) if r.run_id == base_id), None)
        if index is None:  # filtered out by --scenario
            raise TrendError(f"the baseline (run {base_id}) is not of scenario {scenario!r}")
        runs[index].baseline = True
    if len(runs) == 1:
        notes.append("one run: a trend needs more than one to show a change")
    newest = by_id[runs[-1].run_id][0]
    return Trend(runs=runs, baseline_index=index, skipped=skipped, notes=notes,
                 thresholds=[dict(t) for t in newest.get("thresholds") or [] if isinstance(t, Mapping)])


def load_trend(paths: Sequence[PathLike], *, baseline: Optional[PathLike] = None, scenario: Optional[str] = None,
               allow_mixed: bool = False) -> Trend:
    """Read the inputs (files and folders, :func:`expand_inputs`) and :func:`build_trend`.
    A named file that is not a result, or a broken result anywhere, raises
    :class:`TrendError` naming the file; a folder's other JSON documents are skipped."""
    results: List[Tuple[Result, str]] = []
    skipped: List[Tuple[str, str]] = []
    base_res: Optional[Tuple[Result, str]] = None
    if baseline is not None:
        try:
            base_res = (load_result(baseline), str(baseline))
        except ResultError as exc:
            raise TrendError(f"--baseline: {exc}") from None
    for path, named in expand_inputs(paths):
        try:
            results.append((load_result(path), str(path)))
        except ResultError as exc:
            schema = None if named else _schema_of(path)
            if named or schema in (None, RESULT_SCHEMA):
                raise TrendError(str(exc)) from None
            skipped.append((str(path), f"not a result (schema {schema!r})"))
    return build_trend(results, baseline=base_res, scenario=scenario, allow_mixed=allow_mixed, skipped=skipped)


# ----------------------------------------------------------------------------- text


def _f(v: Optional[float], fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _when(r: TrendRun) -> str:
    return datetime.fromtimestamp(r.start_ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def format_trend(trend: Trend) -> str:
    """The terminal table, oldest run first; ``*`` marks the baseline, the last columns
    the change of p95 and throughput against it."""
    b = trend.baseline
    rid_w = max(8, *(len(r.run_id) for r in trend.runs))
    head = (f"  {'run id':<{rid_w}}  {'started (UTC)':<19}  {'p95 ms':>8}  {'p99 ms':>8}  {'rps':>8}  "
            f"{'failed %':>8}  {'exit':>4}")
    if b is not None:
        head += f"  {'p95 vs base':>11}  {'rps vs base':>11}"
    lines = [f"trend of {len(trend.runs)} run(s)" + (f", baseline {b.run_id}" if b else ", no baseline"), head]
    for r in trend.runs:
        row = (f"{'*' if r.baseline else ' '} {r.run_id:<{rid_w}}  {_when(r):<19}  {_f(r.p95_ms, '.2f'):>8}  "
               f"{_f(r.p99_ms, '.2f'):>8}  {_f(r.rps, '.1f'):>8}  "
               f"{_f(None if r.failed_rate is None else 100 * r.failed_rate, '.2f'):>8}  "
               f"{'-' if r.exit_code is None else r.exit_code:>4}")
        if b is not None:
            row += f"  {_rel(r.p95_ms, b.p95_ms):>11}  {_rel(r.rps, b.rps):>11}"
        if not r.valid:
            row += "  (invalid run: the generator was the limit)"
        lines.append(row)
    if b is not None:
        lines.append("  * baseline")
    for path, why in trend.skipped:
        lines.append(f"  skipped {path}: {why}")
    for note in trend.notes:
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def _rel(v: Optional[float], base: Optional[float]) -> str:
    if v is None or not base:
        return "-"
    return f"{100.0 * (v / base - 1.0):+.1f} %"
