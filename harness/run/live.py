"""The harness's live view: its /metrics (read from the recorder at scrape time, so the
hot path pays nothing for it) and a progress display.

Metric names (Prometheus conventions, base units):
``lbh_harness_latency_seconds`` (from intended start), ``lbh_harness_service_time_seconds``,
``lbh_harness_schedule_lag_seconds`` — histograms by target and outcome on the
instrumentation's budget-edged buckets; ``lbh_harness_requests_total{target,outcome}``;
``lbh_harness_intended_requests_total`` and ``lbh_harness_intended_rate`` (what the
schedule asked for) beside ``lbh_harness_achieved_rate``; ``lbh_harness_in_flight``;
``lbh_harness_run_info{run_id,scenario,target,profile}``.

The same three histograms are also served as Prometheus **native** histograms, converted
exactly from HDR (:mod:`harness.record.native`, schema 5: quantiles within 2.2 % of HDR's),
under their own names ``lbh_harness_latency_native_seconds``,
``lbh_harness_service_time_native_seconds``, ``lbh_harness_schedule_lag_native_seconds``.
Why not under the classic names: Prometheus 2.42 with native histograms on ingests *only*
the native part of a histogram that has both (``scrape_classic_histograms`` came in 2.45),
so the ``_bucket`` series the alert rules and dashboards read would vanish the moment the
feature is turned on. Under distinct names both are ingested side by side; the text formats
(no native histograms there) leave the native ones out (:mod:`instrumentation.server`). The
latency histograms of outcome ``ok`` carry the recorder's exemplar (the latest sampled
request's trace id), on the classic bucket holding it and in the native histogram.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, TextIO

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Exemplar
from prometheus_client.registry import Collector

from instrumentation import DEFAULT_BUCKETS
from harness.engine.base import LAG_BUCKET_NS
from harness.record.native import from_hdr
from harness.record.recorder import METRICS, OUTCOMES, Recorder, counts_view, histogram_mean

__all__ = ["LiveCollector", "Progress", "RunState", "p95_budget_ms", "p95_level", "NEAR_BUDGET"]

_NAMES = {"latency": "latency_seconds", "service_time": "service_time_seconds", "lag": "schedule_lag_seconds"}
_NATIVE_NAMES = {"latency": "latency_native_seconds", "service_time": "service_time_native_seconds",
                 "lag": "schedule_lag_native_seconds"}
_HELP = {
    "latency": "Request latency measured from the intended start (no coordinated omission).",
    "service_time": "Request time from actual start to end (what the target took).",
    "lag": "Actual start minus intended start (generator lateness plus waiting for a free slot).",
}


class RunState:
    """What the progress display and the live metrics read about the run in progress."""

    def __init__(self, run_id: str, scenario: str, target: str, profile: Any, duration_s: float) -> None:
        self.run_id = run_id
        self.scenario = scenario
        self.target = target
        self.profile = profile
        self.duration_s = duration_s
        self.t0_ns: Optional[int] = None
        self.finished = False
        self.phase = ""
        self.in_flight: Callable[[], int] = lambda: 0
        self.lag_counts: Callable[[], List[int]] = lambda: []
        #: the scenario's p95 latency budget in ms (the live display's colours); None: no colour
        self.p95_budget_ms: Optional[float] = None

    def elapsed_s(self) -> float:
        return 0.0 if self.t0_ns is None else (time.perf_counter_ns() - self.t0_ns) / 1e9

    def intended_rate(self) -> Optional[float]:
        """Requests/s the schedule asks for now; None for closed-loop users (no schedule)."""
        t = self.elapsed_s()
        rate = self.profile.rate_at(min(t, self.duration_s))
        return None if rate is None else (float(rate) if t < self.duration_s else 0.0)

    def intended_rate_over(self, seconds: float) -> Optional[float]:
        """The schedule's mean rate over its first ``seconds`` (None for closed-loop users)."""
        if seconds <= 0 or self.profile.rate_at(0.0) is None:
            return None
        count = self.profile.count(0.0, min(seconds, self.duration_s))
        return None if count is None else float(count) / seconds

    def intended_so_far(self) -> int:
        count = self.profile.count(0.0, min(self.elapsed_s(), self.duration_s))
        return 0 if count is None else int(count)


def _cumulative(hist: Any, bounds_us: List[int]) -> List[float]:
    counts = counts_view(hist)[: hist.counts_len]
    cum = np.cumsum(counts, dtype=np.int64)
    idx = [min(hist.get_counts_array_index(b), len(cum) - 1) for b in bounds_us]
    return [float(cum[i]) for i in idx]


class LiveCollector(Collector):
    """Reads the recorder when Prometheus scrapes (about once a second)."""

    def __init__(self, recorder: Callable[[], Any], state: RunState, buckets=DEFAULT_BUCKETS) -> None:
        self._get_recorder = recorder  # a callable: the recorder exists only once the run starts
        self._state = state
        self._bounds = list(buckets)
        self._bounds_us = [int(round(b * 1e6)) for b in self._bounds]
        self._lock = threading.Lock()
        self._last = (time.monotonic(), 0)
        self._achieved = 0.0

    def describe(self) -> Iterator[Any]:
        return iter(())  # collected lazily; nothing to check at registration

    def collect(self) -> Iterator[Any]:
        st = self._state
        info = GaugeMetricFamily("lbh_harness_run_info", "The run in progress (value 1).",
                                 labels=["run_id", "scenario", "target", "profile"])
        info.add_metric([st.run_id, st.scenario, st.target, st.profile.kind], 1)
        yield info
        rec = self._get_recorder()
        if rec is None:
            return
        counts = CounterMetricFamily("lbh_harness_requests", "Requests recorded, by target and outcome.",
                                     labels=["target", "outcome"])
        total = 0
        fams = {m: HistogramMetricFamily(f"lbh_harness_{_NAMES[m]}", _HELP[m], labels=["target", "outcome"])
                for m in METRICS}
        natives = {m: Metric(f"lbh_harness_{_NATIVE_NAMES[m]}", _HELP[m] + " Native histogram (exact from HDR).",
                             "histogram") for m in METRICS}
        for target in rec.targets():
            c = rec.counts(target)
            ex = rec.exemplar(target)
            exemplar = None if ex is None else Exemplar({"trace_id": ex[0]}, float(ex[1]), float(ex[2]))
            for outcome in OUTCOMES:
                counts.add_metric([target, outcome], c[outcome])
                total += c[outcome]
                if not c[outcome]:
                    continue
                for metric in METRICS:
                    if outcome == "dropped" and metric != "latency":
                        continue
                    h = rec.histogram(metric, target, (outcome,))
                    cum = _cumulative(h, self._bounds_us)
                    n = h.get_total_count()
                    buckets: List[Any] = [(_fmt(b), v) for b, v in zip(self._bounds, cum)] + [("+Inf", float(n))]
                    ex_here = exemplar if (metric == "latency" and outcome == "ok") else None
                    if ex_here is not None:  # on the bucket that holds it
                        i = next((j for j, b in enumerate(self._bounds) if ex_here.value <= b), len(self._bounds))
                        buckets[i] = (buckets[i][0], buckets[i][1], ex_here)
                    fams[metric].add_metric([target, outcome], buckets, sum_value=histogram_mean(h) * n / 1e6)
                    nh = from_hdr(h, exemplars=None if ex_here is None else [ex_here])
                    natives[metric].add_sample(natives[metric].name, {"target": target, "outcome": outcome},
                                               None, native_histogram=nh)  # type: ignore[arg-type]
        yield counts
        yield from fams.values()
        yield from (m for m in natives.values() if m.samples)
        with self._lock:
            now = time.monotonic()
            t_prev, n_prev = self._last
            if now - t_prev >= 0.5:
                self._achieved = (total - n_prev) / (now - t_prev)
                self._last = (now, total)
            achieved = self._achieved
        yield GaugeMetricFamily("lbh_harness_achieved_rate", "Completed requests per second (since the last scrape).",
                                value=achieved)
        yield GaugeMetricFamily("lbh_harness_intended_rate", "Requests per second the schedule asks for now.",
                                value=st.intended_rate() or 0.0)
        yield CounterMetricFamily("lbh_harness_intended_requests", "Requests whose intended start has passed.",
                                  value=st.intended_so_far())
        yield GaugeMetricFamily("lbh_harness_in_flight", "Calls in flight now.", value=st.in_flight())
        yield self._generator_lag(st.lag_counts())
        yield GaugeMetricFamily("lbh_harness_elapsed_seconds", "Seconds since the run started.", value=st.elapsed_s())


    def _generator_lag(self, counts: List[int]) -> HistogramMetricFamily:
        fam = HistogramMetricFamily(
            "lbh_harness_generator_lag_seconds",
            "Scheduling lateness of the generator itself, where a worker was free (its health signal).",
            labels=[])
        cum = 0
        buckets = []
        total_s = 0.0
        edges = iter(_GEN_LAG_BUCKETS)
        edge = next(edges)
        for i, c in enumerate(counts):
            upper_s = (i + 1) * LAG_BUCKET_NS / 1e9
            while edge is not None and upper_s > edge + 1e-12:
                buckets.append((_fmt(edge), float(cum)))
                edge = next(edges, None)
            cum += c
            total_s += c * (i + 0.5) * LAG_BUCKET_NS / 1e9
        while edge is not None:
            buckets.append((_fmt(edge), float(cum)))
            edge = next(edges, None)
        buckets.append(("+Inf", float(cum)))
        fam.add_metric([], buckets, sum_value=total_s)
        return fam


_GEN_LAG_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1)


def _fmt(b: float) -> str:
    return repr(float(b))


def p95_budget_ms(thresholds: Iterable[Any]) -> Optional[float]:
    """The p95 latency budget the live display colours against: the scenario's
    ``latency`` ``p(95)<X`` threshold with the fewest tags, in ms; None without one."""
    best: Any = None
    for th in thresholds:
        agg = getattr(th, "aggregation", None)
        if (getattr(th, "name", None) == "latency" and agg is not None and agg.kind == "p"
                and agg.percentile == 95 and th.op in ("<", "<=")):
            if best is None or len(th.tags) < len(best.tags):
                best = th
    return None if best is None else float(best.value)


#: p95 at or above this share of the budget shows yellow ("near"), at or above it red
NEAR_BUDGET = 0.8


def p95_level(p95_ms: Optional[float], budget_ms: Optional[float]) -> str:
    """``ok`` (green), ``near`` (yellow), ``over`` (red), or ``""`` (nothing to compare)."""
    if p95_ms is None or not budget_ms:
        return ""
    if p95_ms >= budget_ms:
        return "over"
    return "near" if p95_ms >= NEAR_BUDGET * budget_ms else "ok"


_LEVEL_STYLE = {"ok": "bold green", "near": "bold yellow", "over": "bold red", "": "bold"}


class _Sample:
    """One read of the recorder (about once a second): what the display shows besides the clock."""

    __slots__ = ("done", "counts", "achieved", "intended", "busy", "p95_ms")

    def __init__(self, done: int = 0, counts: Optional[Dict[str, int]] = None, achieved: float = 0.0,
                 intended: Optional[float] = None, busy: int = 0, p95_ms: Optional[float] = None) -> None:
        self.done = done
        self.counts = counts or {"ok": 0, "error": 0, "timeout": 0, "dropped": 0}
        self.achieved = achieved
        self.intended = intended
        self.busy = busy
        self.p95_ms = p95_ms


class Progress:
    """Elapsed/remaining, intended vs achieved rate, live p95 against the budget, errors:
    on a terminal a live display (rich: a bar of the schedule, colour), plain periodic
    lines otherwise (CI logs, pipes). ``NO_COLOR`` turns the colour off.

    Cost to the run: the recorder is read once a second (its last windows only); the
    display redraws at most 4 times a second from that cached read."""

    def __init__(self, recorder: Callable[[], Optional[Recorder]], state: RunState, *, stream: TextIO = sys.stderr,
                 mode: str = "auto", interval_s: float = 1.0, plain_every_s: float = 5.0) -> None:
        self._get_recorder = recorder  # a callable: with worker processes the merged view changes
        self._state = state
        self._stream = stream
        if mode == "auto":
            isatty = getattr(stream, "isatty", None)
            mode = "tty" if isatty is not None and isatty() and os.environ.get("TERM") != "dumb" else "plain"
        self.mode = mode
        self._interval = interval_s if mode == "tty" else plain_every_s
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._prev = (0.0, 0)
        self._live: Any = None
        self._sample_lock = threading.Lock()
        self._last = _Sample()
        self._final: Optional[str] = None

    # -- what is shown --------------------------------------------------------------------

    def sample(self) -> Optional[_Sample]:
        """Read the recorder now (counts and its last windows only); None before the run starts."""
        st = self._state
        rec = self._get_recorder()
        if rec is None:
            return None
        el = st.elapsed_s()
        c = rec.counts()
        done = sum(c.values())
        t_prev, n_prev = self._prev
        achieved = (done - n_prev) / (el - t_prev) if el > t_prev else 0.0
        self._prev = (el, done)
        wins = rec.windows(last=3)  # the last complete window's p95 (a long run has thousands)
        p95 = next((w["p95_ms"] for w in reversed(wins[:-1] or wins) if w.get("p95_ms") is not None), None)
        s = _Sample(done, dict(c), achieved, st.intended_rate(), st.in_flight(), p95)
        with self._sample_lock:
            self._last = s
        return s

    def line(self, final: bool = False) -> str:
        """The progress line; ``final``: the run's whole-run figures (achieved rate over the
        load's duration against the rate the schedule asked for over it), not the last second's."""
        st = self._state
        el = st.elapsed_s()
        if final:
            rec = self._get_recorder()
            if rec is None:
                return f"[{st.scenario}] starting"
            c = rec.counts()
            return self._final_line(st, el, c, sum(c.values()))
        s = self.sample()
        if s is None:
            return f"[{st.scenario}] starting"
        c, done = s.counts, s.done
        remaining = max(0.0, st.duration_s - el)
        bad = c["error"] + c["timeout"] + c["dropped"]
        p95_s = f"{s.p95_ms:.1f} ms" if s.p95_ms is not None else "-"
        # closed-loop users have no intended rate: say how many users are busy instead
        target = (f"({s.busy} users busy)" if s.intended is None
                  else "(schedule done, draining)" if el >= st.duration_s else f"of {s.intended:.1f}/s")
        return (f"[{st.scenario}] {el:5.1f}s / {st.duration_s:.0f}s (-{remaining:.0f}s)  "
                f"rate {s.achieved:7.1f}/s {target}  p95(1s) {p95_s}  "
                f"done {done}  err {c['error']} timeout {c['timeout']} dropped {c['dropped']}"
                + (f"  ({bad / done:.1%} bad)" if done else ""))

    def _final_line(self, st: RunState, el: float, c: Dict[str, int], done: int) -> str:
        # the schedule's duration, as the summary divides by; a run stopped early: its elapsed time
        load_s = st.duration_s if st.duration_s and el >= 0.9 * st.duration_s else el
        ran = done - c["dropped"]
        achieved = ran / load_s if load_s > 0 else 0.0
        intended = st.intended_rate_over(load_s)
        target = f"of {intended:.1f}/s intended" if intended is not None else "(closed loop)"
        bad = c["error"] + c["timeout"] + c["dropped"]
        return (f"[{st.scenario}] done in {el:.1f}s  rate {achieved:.1f}/s {target} over {load_s:.1f}s  "
                f"done {done}  err {c['error']} timeout {c['timeout']} dropped {c['dropped']}"
                + (f"  ({bad / done:.1%} bad)" if done else ""))

    def renderable(self) -> Any:
        """The terminal display (a rich renderable, drawn from the last sample and the clock)."""
        return _Display(self)

    def _render(self, width: int) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        st = self._state
        el = st.elapsed_s()
        with self._sample_lock:
            s = self._last
        dur = st.duration_s or 0.0
        head = Table.grid(padding=(0, 1))
        head.add_column(no_wrap=True, overflow="ellipsis", max_width=max(8, width // 4))
        head.add_column(no_wrap=True)
        head.add_column(no_wrap=True, overflow="ellipsis")
        bar = ProgressBar(total=max(dur, 1e-9), completed=min(el, dur) if dur else 0.0,
                          width=max(10, min(40, width - 45)))
        if self._final is not None:
            clock = Text(f"done in {el:.1f}s", style="bold")
        else:
            clock = Text(f"{el:5.1f}s / {dur:.0f}s")
            if el < dur:
                clock.append(f"  -{math.ceil(dur - el):d}s", style="dim")
            else:
                clock.append("  draining", style="yellow")
            if st.phase:
                clock.append(f"  phase {st.phase}", style="cyan")
        head.add_row(Text(st.scenario, style="bold"), bar, clock)
        if self._final is not None:
            c = s.counts
            bad = c["error"] + c["timeout"] + c["dropped"]
            return Group(head, Text(self._final, style="bold red" if bad else "bold"))
        rate = Text("rate ")
        rate_style = "bold"
        if s.intended:  # short of the schedule (past the first seconds): the target or the generator lags
            rate_style = "bold yellow" if el > 2.0 and s.achieved < 0.9 * s.intended else "bold"
        rate.append(f"{s.achieved:.1f}/s", style=rate_style)
        if s.intended is not None and el >= dur:  # past the schedule's end: only the in-flight calls finish
            rate.append(f"  schedule done, draining {s.busy} in flight", style="dim")
        elif s.intended is not None:
            rate.append(f" of {s.intended:.1f}/s intended")
        else:
            rate.append(f"  ({s.busy} users busy)")
        rate.append("   p95(1s) ")
        level = p95_level(s.p95_ms, st.p95_budget_ms)
        rate.append(f"{s.p95_ms:.1f} ms" if s.p95_ms is not None else "-", style=_LEVEL_STYLE[level])
        if st.p95_budget_ms:
            rate.append(f" of {st.p95_budget_ms:g} ms budget")
            if level == "over":
                rate.append("  OVER", style="bold red")
        rate.no_wrap, rate.overflow = True, "ellipsis"
        c = s.counts
        bad = c["error"] + c["timeout"] + c["dropped"]
        counts = Text(f"done {s.done}   ")
        counts.append(f"failed {bad}", style="bold red" if bad else "green")
        counts.append(f" (err {c['error']} · timeout {c['timeout']} · dropped {c['dropped']})"
                      + (f" {bad / s.done:.1%}" if s.done else ""), style="red" if bad else "dim")
        counts.append(f"   in flight {s.busy}", style="dim")
        counts.no_wrap, counts.overflow = True, "ellipsis"
        return Group(head, rate, counts)

    # -- running ----------------------------------------------------------------------------

    def start(self) -> "Progress":
        if self.mode == "off":
            return self
        if self.mode == "tty":  # rich costs tens of ms at import: loaded only for a terminal
            from rich.console import Console
            from rich.live import Live

            console = Console(file=self._stream, force_terminal=True)  # NO_COLOR: rich drops the colour
            # prints to a terminal stdout go above the display; a redirected stdout stays where it was sent
            out_tty = bool(getattr(sys.stdout, "isatty", None) and sys.stdout.isatty())
            self._live = Live(self.renderable(), console=console, refresh_per_second=4, transient=False,
                              redirect_stdout=out_tty)
            self._live.start()
        self._thread = threading.Thread(target=self._loop, name="lbh-progress", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._emit()

    def _emit(self, final: bool = False) -> None:
        if self._live is not None:  # the display redraws itself (4 Hz) from the last sample
            if final:
                self._final = self.line(final=True)
                self.sample()
                self._live.refresh()
            else:
                self.sample()
        else:
            print(self.line(final=final), file=self._stream, flush=True)

    def stop(self) -> None:
        """Stop, leaving one last line with the final counts (also in plain mode)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._emit(final=True)
        if self._live is not None:
            self._live.stop()


class _Display:
    """Rendered by rich's refresh thread (at most 4 Hz): reads the cached sample, never the recorder."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress

    def __rich_console__(self, console: Any, options: Any) -> Iterator[Any]:
        yield self._progress._render(options.max_width)
