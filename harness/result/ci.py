"""A result in the formats CI systems read: JUnit XML, CSV and Markdown.

Why these three: a CI server shows JUnit as test results (a failed threshold is a failed
test, with the observed value against the limit), spreadsheets and plotting steps read
CSV, and a Markdown verdict goes straight into ``$GITHUB_STEP_SUMMARY`` or a PR comment.
Every format is rendered from the ``harness.result/1`` document alone (``harness report
RESULT --format …`` on an old file gives the same as ``harness run --junit …`` did), with
the regression gate's rows when a comparison (:func:`harness.result.compare.compare`) is
given.

JUnit: one ``<testsuite>`` per run with a ``<testcase>`` per threshold (``<failure>``
when it failed: observed vs limit, with units; no data counts as failed), one for the
generator's self-check (``<error>`` when the run is invalid, exit 98: the numbers are
the generator's, neither a pass nor the target's failure) and one for the run itself
(``<error>`` when it was interrupted, exit 105, or a worker died); with a comparison, a
second suite with a testcase per gated metric (``<failure>`` when regressed, exit 97).

CSV: :func:`to_csv` one row per target (and ``all``) × metric: latency, service time and
lag percentiles in ms, the rates as fractions, throughput in requests/s;
:func:`to_csv_series` the per-second windows (``timeseries``).
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any, Iterable, List, Mapping, Optional, Sequence, Union
from xml.etree import ElementTree as ET

from harness.config.thresholds import format_observed
from harness.exitcodes import ExitCode
from harness.result.summary import run_duration

__all__ = ["FORMATS", "CSV_COLUMNS", "SERIES_COLUMNS", "to_junit", "to_csv", "to_csv_series", "to_markdown",
           "render", "write_ci"]

#: ``harness report --format`` names (besides html) -> renderer
FORMATS = ("junit", "csv", "csv-series", "markdown")

_STATS = ("min", "mean", "p50", "p90", "p95", "p99", "p99.9", "max")
#: columns of :func:`to_csv`
CSV_COLUMNS = ("target", "metric", "unit", "count", "value") + _STATS
_RATES = ("failed_rate", "error_rate", "timeout_rate", "dropped_rate", "cache_hit_rate", "fallback_rate")
#: columns of :func:`to_csv_series` (a window's other keys follow these, sorted)
SERIES_COLUMNS = ("start_s", "end_s", "intended", "completed", "ok", "error", "timeout", "dropped", "rate",
                  "cache_hit", "fallback", "p50_ms", "p95_ms", "p99_ms", "max_ms")


# ----------------------------------------------------------------------------- JUnit


def _limit(th: Mapping[str, Any]) -> str:
    value = th.get("value")
    if not isinstance(value, (int, float)):
        return th.get("expression", "?")
    return f"{th.get('op', '')} {format_observed(th['metric'], th.get('aggregation', ''), float(value))}".strip()


def _observed(th: Mapping[str, Any]) -> str:
    if th.get("observed") is None:
        return "no data"
    return format_observed(th["metric"], th.get("aggregation", ""), float(th["observed"]))


def _suite(name: str, cases: List[ET.Element], time_s: float, timestamp: Optional[str],
           properties: Mapping[str, Any]) -> ET.Element:
    suite = ET.Element("testsuite", {
        "name": name,
        "tests": str(len(cases)),
        "failures": str(sum(1 for c in cases if c.find("failure") is not None)),
        "errors": str(sum(1 for c in cases if c.find("error") is not None)),
        "skipped": str(sum(1 for c in cases if c.find("skipped") is not None)),
        "time": f"{time_s:.3f}",
    })
    if timestamp:
        suite.set("timestamp", str(timestamp).replace("Z", "").split("+")[0])
    if properties:
        props = ET.SubElement(suite, "properties")
        for k, v in properties.items():
            ET.SubElement(props, "property", {"name": k, "value": str(v)})
    suite.extend(cases)
    return suite


def _case(classname: str, name: str, time_s: float = 0.0) -> ET.Element:
    return ET.Element("testcase", {"classname": classname, "name": name, "time": f"{time_s:.3f}"})


def _fail(case: ET.Element, tag: str, kind: str, message: str, text: str = "") -> None:
    el = ET.SubElement(case, tag, {"type": kind, "message": message})
    el.text = text or message


def to_junit(result: Mapping[str, Any], comparison: Optional[Mapping[str, Any]] = None) -> str:
    """JUnit XML (``<testsuites>``) of ``result``; see the module docstring."""
    sc = result.get("scenario") or {}
    name = str(sc.get("name", "run"))
    cls = f"harness.{name}"
    elapsed = float(result.get("elapsed_s") or 0.0)
    verdict = result.get("verdict") or {}
    gen = result.get("generator") or {}
    cases: List[ET.Element] = []
    for th in result.get("thresholds") or []:
        case = _case(f"{cls}.thresholds", f"{th['metric']}: {th['expression']}")
        covers = f" ({th['covers']})" if th.get("covers") else ""
        if not th.get("ok"):
            msg = f"{th['metric']} {th['expression']}: observed {_observed(th)}, limit {_limit(th)}{covers}"
            detail = msg + (f"\n{th['reason']}" if th.get("reason") else "")
            if f"{th['metric']} {th['expression']}" in (verdict.get("aborted_by") or []):
                detail += "\nthe run was aborted by this threshold (abortOnFail)"
            _fail(case, "failure", "ThresholdFailed", msg, detail)
        else:
            ET.SubElement(case, "system-out").text = f"observed {_observed(th)}, limit {_limit(th)}{covers}"
        cases.append(case)
    case = _case(f"{cls}.run", "generator self-check")
    if gen and not gen.get("valid", True):
        reasons = list(gen.get("reasons") or []) or ["the generator was the bottleneck"]
        _fail(case, "error", "InvalidRun",
              f"invalid run (exit {int(ExitCode.INVALID_RUN)}): " + "; ".join(reasons),
              "the figures describe the load generator, not the target:\n" + "\n".join(reasons))
    elif gen:
        ET.SubElement(case, "system-out").text = (
            f"schedule lag p99 {gen.get('schedule_lag_p99_ms')} ms (bound {gen.get('lag_bound_ms')} ms)")
    cases.append(case)
    status = str(result.get("status", "completed"))
    case = _case(f"{cls}.run", "run completed", elapsed)
    if status == "interrupted" or verdict.get("exit_code") == ExitCode.INTERRUPTED:
        _fail(case, "error", "Interrupted", f"the run was interrupted after {elapsed:.1f}s "
                                            f"(exit {int(ExitCode.INTERRUPTED)}): its figures cover only part of it")
    elif status in ("failed", "partial"):
        errs = list(gen.get("worker_errors") or [])
        _fail(case, "error", "RunFailed", f"run status {status}" + (": " + "; ".join(errs) if errs else ""))
    else:
        ET.SubElement(case, "system-out").text = f"status {status}, exit {verdict.get('exit_code')}"
    cases.append(case)
    props = {"run_id": result.get("run_id", ""), "target": sc.get("target", ""), "status": status,
             "exit_code": verdict.get("exit_code", "")}
    root = ET.Element("testsuites", {"name": f"harness {name}"})
    root.append(_suite(f"harness: {name}", cases, elapsed, result.get("started_at"), props))
    if comparison is not None:
        gcases = []
        for row in comparison.get("metrics") or []:
            if not row.get("gated"):
                continue
            case = _case(f"{cls}.regression", str(row["metric"]))
            text = _gate_text(row)
            if row.get("status") == "regressed":
                _fail(case, "failure", "Regressed", f"{row['metric']}: {text}")
            elif row.get("status") in ("insufficient samples", "no data"):
                ET.SubElement(case, "skipped", {"message": f"{row['status']}: {row.get('note') or ''}".rstrip(": ")})
            else:
                ET.SubElement(case, "system-out").text = text
            gcases.append(case)
        g = comparison.get("gate") or {}
        case = _case(f"{cls}.regression", "regression gate")
        if not g.get("passed", True):
            _fail(case, "failure", "Regressed", f"gate failed (exit {g.get('exit_code')}): {g.get('reason', '')}")
        gcases.append(case)
        root.append(_suite(f"harness: {name} vs baseline {(comparison.get('base') or {}).get('run_id', '')}",
                           gcases, 0.0, None, {}))
    for attr in ("tests", "failures", "errors", "skipped"):
        root.set(attr, str(sum(int(s.get(attr, "0")) for s in root)))
    root.set("time", f"{elapsed:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _gate_text(row: Mapping[str, Any]) -> str:
    unit = row.get("unit") or ""
    chg = row.get("change_percent")
    iv = row.get("interval_percent")
    parts = [f"baseline {_num(row.get('base'))} {unit}, new {_num(row.get('new'))} {unit}".replace("  ", " "),
             "change " + ("-" if chg is None else f"{chg:+.1f}%")]
    if iv:
        parts.append(f"interval [{iv[0]:+.1f}%, {iv[1]:+.1f}%]")
    parts.append(str(row.get("status")))
    return ", ".join(parts)


def _num(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


# ----------------------------------------------------------------------------- CSV


def _cell(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return v


def _blocks(result: Mapping[str, Any]) -> List[tuple]:
    summ = result.get("summary") or {}
    blocks = list((summ.get("targets") or {}).items())
    if summ.get("all") is not None:
        blocks.append(("all", summ["all"]))
    return blocks


def to_csv(result: Mapping[str, Any]) -> str:
    """One row per target (and ``all``) × metric (:data:`CSV_COLUMNS`): latency,
    service_time and lag with their statistics in ms; the rates in ``value`` as fractions;
    throughput in requests/s (completed requests over the run's duration)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    duration = run_duration(result)
    for target, t in _blocks(result):
        count = t.get("count", 0)
        for metric in ("latency", "service_time", "lag"):
            s = t.get(metric) or {}
            w.writerow([target, metric, "ms", s.get("count", count), ""] + [_cell(s.get(k)) for k in _STATS])
        for metric in _RATES:
            if metric in t:
                w.writerow([target, metric, "fraction", count, _cell(t[metric])] + [""] * len(_STATS))
        done = count - (t.get("outcomes") or {}).get("dropped", 0)
        w.writerow([target, "throughput", "requests/s", done, done / duration if duration else ""]
                   + [""] * len(_STATS))
    return buf.getvalue()


def to_csv_series(result: Mapping[str, Any]) -> str:
    """The per-second windows (``timeseries``), one row each (:data:`SERIES_COLUMNS` first)."""
    rows = list(result.get("timeseries") or [])
    extra = sorted({k for r in rows for k in r} - set(SERIES_COLUMNS))
    cols = list(SERIES_COLUMNS) + extra
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in cols])
    return buf.getvalue()


# ----------------------------------------------------------------------------- Markdown

_WORDS = {ExitCode.OK: ("✅", "passed"), ExitCode.THRESHOLDS_FAILED: ("❌", "thresholds failed"),
          ExitCode.INVALID_RUN: ("⚠️", "invalid run"), ExitCode.INTERRUPTED: ("⏹️", "interrupted"),
          ExitCode.REGRESSED: ("📉", "regressed")}


def _md(text: Any) -> str:
    """A table cell: pipes escaped, no line breaks."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]]) -> List[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(_md(c) for c in r) + " |" for r in rows]
    return out


def _ms(v: Any) -> str:
    return "-" if v is None else f"{v:.2f}" if v < 100 else f"{v:.1f}"


def to_markdown(result: Mapping[str, Any], comparison: Optional[Mapping[str, Any]] = None) -> str:
    """A Markdown verdict for a CI job summary or a PR comment: heading with the verdict
    and exit code, thresholds, per-target figures, the self-check and the gate."""
    sc = result.get("scenario") or {}
    verdict = result.get("verdict") or {}
    code = int(verdict.get("exit_code", 1))
    if comparison is not None and code == ExitCode.OK and not (comparison.get("gate") or {}).get("passed", True):
        code = int(ExitCode.REGRESSED)
    mark, word = _WORDS.get(code, ("❌", "failed"))  # type: ignore[call-overload]
    lines = [f"### {mark} {_md(sc.get('name', 'run'))}: {word} (exit {code})", "",
             f"Target `{sc.get('target', '?')}`, run `{result.get('run_id', '?')}`, status {result.get('status')}, "
             f"{float(result.get('elapsed_s') or 0):.1f} s. Latency is measured from each request's intended start.",
             ""]
    ths = result.get("thresholds") or []
    if ths:
        lines += _table(("", "metric", "threshold", "observed"),
                        (("✅" if th.get("ok") else "❌", f"`{th['metric']}`", f"`{th['expression']}`",
                          _observed(th) + (f" ({th['covers']})" if th.get("covers") else ""))
                         for th in ths))
        lines.append("")
    rows = []
    duration = run_duration(result)
    for target, t in _blocks(result):
        lat = t.get("latency") or {}
        done = t.get("count", 0) - (t.get("outcomes") or {}).get("dropped", 0)
        rows.append((target, t.get("count", 0), "-" if t.get("failed_rate") is None else f"{t['failed_rate']:.2%}",
                     _ms(lat.get("p50")), _ms(lat.get("p95")), _ms(lat.get("p99")), _ms(lat.get("max")),
                     f"{done / duration:.1f}" if duration else "-"))
    if len(rows) == 2:  # one target: its row and "all" are the same
        rows = rows[:1]
    if rows:
        lines += _table(("target", "requests", "failed", "p50 ms", "p95 ms", "p99 ms", "max ms", "req/s"), rows)
        lines.append("")
    gen = result.get("generator") or {}
    if gen and not gen.get("valid", True):
        lines.append("**Invalid run** (the generator was the limit; the figures are not the target's): "
                     + _md("; ".join(gen.get("reasons") or [])))
        lines.append("")
    if comparison is not None:
        g = comparison.get("gate") or {}
        lines.append(f"**Regression gate: {'passed' if g.get('passed') else 'FAILED'}** vs baseline "
                     f"`{(comparison.get('base') or {}).get('run_id', '?')}`: {_md(g.get('reason', ''))}")
        lines.append("")
        gated = [r for r in comparison.get("metrics") or [] if r.get("gated")]
        lines += _table(("metric", "baseline", "new", "change", "verdict"),
                        ((r["metric"], _num(r.get("base")), _num(r.get("new")),
                          "-" if r.get("change_percent") is None else f"{r['change_percent']:+.1f}%", r.get("status"))
                         for r in gated))
        lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- files


def render(result: Mapping[str, Any], fmt: str, comparison: Optional[Mapping[str, Any]] = None) -> str:
    """``fmt`` in :data:`FORMATS`; ValueError naming the known formats otherwise."""
    if fmt == "junit":
        return to_junit(result, comparison)
    if fmt == "csv":
        return to_csv(result)
    if fmt == "csv-series":
        return to_csv_series(result)
    if fmt == "markdown":
        return to_markdown(result, comparison)
    raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")


def write_ci(result: Mapping[str, Any], fmt: str, path: Union[str, "os.PathLike[str]"],
             comparison: Optional[Mapping[str, Any]] = None) -> Path:
    """Render and write ``fmt`` to ``path`` (folders made); Markdown is *appended* when
    ``path`` is ``$GITHUB_STEP_SUMMARY``, which GitHub expects to grow step by step."""
    text = render(result, fmt, comparison)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    mode = "a" if fmt == "markdown" and summary and p.resolve() == Path(summary).resolve() else "w"
    with open(p, mode, encoding="utf-8", newline="") as f:
        f.write(text)
    return p
