"""The end-of-run terminal summary (k6-like) and the run's duration as the readers divide by it.

Writing and reading the JSON result is :mod:`harness.result.schema`'s."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

from harness.config.thresholds import coverage, format_observed, metric_key
from harness.exitcodes import ExitCode
from harness.observe.remote_write import summary_line as remote_write_line

__all__ = ["format_summary", "run_duration"]

_VERDICT_WORDS = {ExitCode.OK: "PASSED", ExitCode.INVALID_RUN: "INVALID RUN",
                  ExitCode.THRESHOLDS_FAILED: "THRESHOLDS FAILED", ExitCode.INTERRUPTED: "INTERRUPTED"}


def run_duration(result: Mapping[str, Any]) -> Optional[float]:
    """Seconds the load of ``result`` lasted: the scheduled duration, or the elapsed time of
    a run stopped early (dividing by the full schedule would under-report its rate)."""
    d = (result.get("scenario") or {}).get("duration")
    if result.get("status") in ("interrupted", "aborted") or not d:
        d = result.get("elapsed_s")
    return float(d) if d else None


def _ms(v: Any) -> str:
    return "-" if v is None else (f"{v:.2f}" if v < 100 else f"{v:.1f}")


def format_summary(result: Dict[str, Any], result_path: str | None = None) -> str:
    """k6-like: per target the three histograms, outcomes and rates, then thresholds,
    the generator's self-check and the verdict."""
    lines: List[str] = []
    sc = result["scenario"]
    lines.append(f"run {result['run_id']}  scenario {sc['name']}  target {sc['target']}  "
                 f"status {result['status']}  elapsed {result['elapsed_s']:.1f}s")
    summ = result["summary"]
    blocks = list(summ["targets"].items())
    if len(blocks) > 1:
        blocks.append(("all", summ["all"]))
    head = f"  {'':<14}{'p50':>9}{'p90':>9}{'p95':>9}{'p99':>9}{'p99.9':>9}{'max':>9}  ms"
    for name, t in blocks:
        o = t["outcomes"]
        lines.append(f"\n{name}: {t['count']} requests  ok {o['ok']}  error {o['error']}  "
                     f"timeout {o['timeout']}  dropped {o['dropped']}")
        lines.append(head)
        for metric, label in (("latency", "latency*"), ("service_time", "service time"), ("lag", "start lag†")):
            s = t[metric]
            lines.append(f"  {label:<14}" + "".join(f"{_ms(s.get(k)):>9}" for k in
                                                   ("p50", "p90", "p95", "p99", "p99.9", "max")))
        rates = []
        for key in ("failed_rate", "error_rate", "timeout_rate", "dropped_rate", "cache_hit_rate", "fallback_rate"):
            if t.get(key) is not None:
                rates.append(f"{key} {t[key]:.2%}")
        if rates:
            lines.append("  " + "  ".join(rates))
        if t.get("status_codes"):
            lines.append("  status codes: " + ", ".join(f"{k} {v}" for k, v in sorted(t["status_codes"].items())))
        if "bytes_sent" in t or "bytes_received" in t:
            lines.append(f"  HTTP bytes on the wire: sent {_bytes(t.get('bytes_sent') or 0)}, "
                         f"received {_bytes(t.get('bytes_received') or 0)}")
        if t.get("stream"):
            lines.append("  stream: " + ", ".join(f"{k} {v}" for k, v in t["stream"].items()))
        if t.get("errors"):
            lines.append("  errors: " + ", ".join(f"{k} {v}" for k, v in sorted(t["errors"].items())))
            if name != "all":
                lines.extend(_error_sample_lines(result.get("error_details") or [], name))
    lines.append("  (* latency is measured from each request's intended start: stalls are not hidden)")
    lines.append("  († start lag: each request's actual start minus its intended start, waiting for a free worker "
                 "included; the generator's own lateness is below)")
    if result["thresholds"]:
        lines.append("\nthresholds:")
        for th in result["thresholds"]:
            lines.append(_threshold_line(th))
    lines.append(_failures_line(sc))
    stack = result.get("stack")
    if stack:
        lines.extend(_stack_lines(stack))
    g = result["generator"]
    lines.append(f"\ngenerator: own lateness (where a worker was free) p50 {_ms(g['schedule_lag_p50_ms'])} ms, p99 "
                 f"{_ms(g['schedule_lag_p99_ms'])} ms (bound {g['lag_bound_ms']:g} ms); process CPU "
                 f"{g['cpu_percent_mean']:.0f} % of {g['cpu_count']} core(s)")
    if g.get("closed_loop"):
        lines.append("  closed-loop virtual users: latency is measured from actual start (coordinated omission applies)")
    for reason in g["reasons"]:
        lines.append(f"  INVALID: {reason}")
    if result.get("network"):
        lines.append(_network_line(result["network"]))
    if result.get("remote_write"):
        lines.append(remote_write_line(result["remote_write"]))
    v = result["verdict"]
    if v.get("aborted_by"):
        lines.append(f"aborted by threshold(s): {', '.join(v['aborted_by'])}")
    word = _VERDICT_WORDS.get(v["exit_code"], "FAILED")
    lines.append(f"\nverdict: {word} (exit {v['exit_code']})")
    if result_path:
        lines.append(f"result: {result_path}")
    return "\n".join(lines)


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def _network_line(net: Mapping[str, Any]) -> str:
    """The OS's interface counters over the window (the whole machine's traffic)."""
    if net.get("source") != "interface":
        return "network: OS interface counters unavailable"
    busy = [(k, v) for k, v in sorted((net.get("interfaces") or {}).items())
            if v.get("bytes_sent") or v.get("bytes_received")]
    per = ", ".join(f"{k} {_bytes(v['bytes_sent'])}/{_bytes(v['bytes_received'])}" for k, v in busy)
    return (f"network (OS interface counters, whole machine): sent {_bytes(net['bytes_sent'])}, received "
            f"{_bytes(net['bytes_received'])}" + (f" (sent/received: {per})" if per else ""))


def _error_sample_lines(details: Any, target: str) -> List[str]:
    """Per error type of ``target``: when it was first and last seen and its first sample
    (a response body, an exception's message), so a 422 says why."""
    out: List[str] = []
    for d in details if isinstance(details, list) else []:
        if not isinstance(d, Mapping) or d.get("target") != target:
            continue
        sample = (d.get("samples") or [""])[0]
        sample = " ".join(str(sample).split())  # one line: bodies carry newlines
        if len(sample) > 160:
            sample = sample[:159] + "\u2026"
        when = ""
        if isinstance(d.get("first_s"), (int, float)) and isinstance(d.get("last_s"), (int, float)):
            when = f" (first at {d['first_s']:.1f}s, last at {d['last_s']:.1f}s)"
        out.append(f"    {d.get('type')}{when}" + (f": {sample}" if sample else ""))
    return out


def _threshold_line(th: Mapping[str, Any]) -> str:
    """``PASS  latency: p(95)<100ms  (observed 3.699 ms; all outcomes)``: the observed value
    with its unit, and for latency which outcomes it covered."""
    mark = "PASS" if th["ok"] else "FAIL"
    obs = "no data" if th["observed"] is None else format_observed(th["metric"], th.get("aggregation", ""),
                                                                   th["observed"])
    covers = th.get("covers")
    if covers is None and "covers" not in th:  # an older result: derive it
        key = metric_key(th["metric"])
        covers = coverage(key[0], dict(key[1])) if isinstance(key, tuple) else None
    extra = f"; {covers}" if covers else ""
    if th["observed"] is None and th.get("reason"):
        extra += f"; {th['reason']}"
    return f"  {mark}  {th['metric']}: {th['expression']}  (observed {obs}{extra})"


def _failures_line(sc: Mapping[str, Any]) -> str:
    """Whether failed requests were judged, said on every summary (turning it off is visible)."""
    f = sc.get("failures")
    if not f:
        return "failures: not judged (a result from before failed_rate)"
    if f.get("threshold") == "off":
        return (f"failures: NOT JUDGED (failures.threshold: off, set by {f.get('source', '?')}); a run with no "
                "successful request still fails")
    judged = ", ".join(f.get("judged") or [f.get("threshold", "?")])
    return (f"failures: judged, failed_rate {judged} (errors + timeouts + dropped over all requests; "
            f"turn off with --failure-threshold off)")


def _stack_lines(stack: Dict[str, Any]) -> List[str]:
    lines = [f"\nPrometheus ({stack.get('prometheus_url')}):"]
    if stack.get("error"):
        lines.append(f"  could not query it: {stack['error']}")
    fired = stack.get("alerts_fired") or []
    if fired:
        lines.append("  alerts that fired:")
        for a in fired:
            op = a["labels"].get("operation") or a["labels"].get("target") or ""
            lines.append(f"    {a['alertname']:<26} {a.get('severity') or '-':<9} {op:<20} "
                         f"for {a['firing_s']:.0f}s" + ("  (still firing)" if a["still_firing_at_end"] else ""))
    elif "alerts_fired" in stack:
        lines.append("  no alert fired")
    notes = stack.get("notifications") or []
    if notes:
        kinds = {}
        for n in notes:
            for al in n["alerts"]:
                kinds[(al["alertname"], al["status"])] = kinds.get((al["alertname"], al["status"]), 0) + 1
        lines.append(f"  notifications received: {len(notes)} ("
                     + ", ".join(f"{k[0]} {k[1]} x{v}" for k, v in sorted(kinds.items())) + ")")
    rows = stack.get("quantiles") or []
    if rows:
        lines.append("  latency percentiles, Prometheus histogram_quantile vs exact HDR (ms):")
        for r in rows:
            if r.get("prometheus_ms") is None or r.get("hdr_ms") is None:
                continue
            mark = "ok" if r.get("within_bucket") else "OUTSIDE BUCKET"
            lo, hi = r["bucket_s"]
            lines.append(f"    {r['target']:<12} p{round(r['quantile'] * 100):d}  prometheus {r['prometheus_ms']:>9.2f}  "
                         f"hdr {r['hdr_ms']:>9.2f}  diff {r['difference_ms']:>+8.2f}  bucket "
                         f"({lo * 1000:g}, {'inf' if hi is None else f'{hi * 1000:g}'}] {mark}"
                         + (f"  native {r['native_ms']:.2f} ({r['native_error_pct']:.2f} % off, "
                            f"{'ok' if r.get('native_within_goal') else 'OVER'} 2.5 % goal)"
                            if r.get("native_error_pct") is not None else ""))
    for op, qs in sorted((stack.get("server_quantiles") or {}).items()):
        lines.append(f"    server {op:<22} " + "  ".join(f"{k} {v:.2f}" for k, v in sorted(qs.items())))
    return lines
