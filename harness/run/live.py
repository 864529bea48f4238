"""The harness's live view: its /metrics (read from the recorder at scrape time, so the
hot path pays nothing for it) and a progress display.

Metric names (Prometheus conventions, base units):
``lbh_harness_latency_seconds`` (from intended start), ``lbh_harness_service_time_seconds``,
``lbh_harness_schedule_lag_seconds`` — histograms by target and outcome on the
instrumentation's budget-edged buckets; ``lbh_harness_requests_total{target,outcome}``;
``lbh_harness_intended_requests_total`` and ``lbh_harness_intended_rate`` (what the
schedule asked for) beside ``lbh_harness_achieved_rate``; ``lbh_harness_in_flight``;
``lbh_harness_run_info{run_id,scenario,target,profile}``.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, TextIO

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from instrumentation import DEFAULT_BUCKETS
from harness.engine.base import LAG_BUCKET_NS
from harness.record.recorder import METRICS, OUTCOMES, Recorder, counts_view, histogram_mean

__all__ = ["LiveCollector", "Progress", "RunState"]

_NAMES = {"latency": "latency_seconds", "service_time": "service_time_seconds", "lag": "schedule_lag_seconds"}
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
        for target in rec.targets():
            c = rec.counts(target)
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
                    buckets = [(_fmt(b), v) for b, v in zip(self._bounds, cum)] + [("+Inf", float(n))]
                    fams[metric].add_metric([target, outcome], buckets, sum_value=histogram_mean(h) * n / 1e6)
        yield counts
        yield from fams.values()
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


class Progress:
    """Elapsed/remaining, intended vs achieved rate, live p95, errors: a live line on a
    terminal (rich), plain periodic lines otherwise (CI logs, pipes)."""

    def __init__(self, recorder: Callable[[], Optional[Recorder]], state: RunState, *, stream: TextIO = sys.stderr,
                 mode: str = "auto", interval_s: float = 1.0, plain_every_s: float = 5.0) -> None:
        self._get_recorder = recorder  # a callable: with worker processes the merged view changes
        self._state = state
        self._stream = stream
        if mode == "auto":
            mode = "tty" if stream.isatty() else "plain"
        self.mode = mode
        self._interval = interval_s if mode == "tty" else plain_every_s
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._prev = (0.0, 0)
        self._live: Any = None

    def line(self, final: bool = False) -> str:
        """The progress line; ``final``: the run's whole-run figures (achieved rate over the
        load's duration against the rate the schedule asked for over it), not the last second's."""
        st = self._state
        el = st.elapsed_s()
        rec = self._get_recorder()
        if rec is None:
            return f"[{st.scenario}] starting"
        c = rec.counts()
        done = sum(c.values())
        if final:
            return self._final_line(st, el, c, done)
        t_prev, n_prev = self._prev
        achieved = (done - n_prev) / (el - t_prev) if el > t_prev else 0.0
        self._prev = (el, done)
        wins = rec.windows(last=3)  # the last complete window's p95 (a long run has thousands)
        p95 = next((w["p95_ms"] for w in reversed(wins[:-1] or wins) if w.get("p95_ms") is not None), None)
        remaining = max(0.0, st.duration_s - el)
        bad = c["error"] + c["timeout"] + c["dropped"]
        p95_s = f"{p95:.1f} ms" if p95 is not None else "-"
        # closed-loop users have no intended rate: say how many users are busy instead
        intended = st.intended_rate()
        target = f"of {intended:.1f}/s" if intended is not None else f"({st.in_flight()} users busy)"
        return (f"[{st.scenario}] {el:5.1f}s / {st.duration_s:.0f}s (-{remaining:.0f}s)  "
                f"rate {achieved:7.1f}/s {target}  p95(1s) {p95_s}  "
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

    def start(self) -> "Progress":
        if self.mode == "off":
            return self
        if self.mode == "tty":  # rich costs tens of ms at import: loaded only for a terminal
            from rich.console import Console
            from rich.live import Live
            from rich.text import Text

            self._text = Text
            self._live = Live(Text(""), console=Console(file=self._stream), refresh_per_second=4, transient=False)
            self._live.start()
        self._thread = threading.Thread(target=self._loop, name="lbh-progress", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._emit()

    def _emit(self, final: bool = False) -> None:
        text = self.line(final=final)
        if self._live is not None:
            self._live.update(self._text(text))
        else:
            print(text, file=self._stream, flush=True)

    def stop(self) -> None:
        """Stop, leaving one last line with the final counts (also in plain mode)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._emit(final=True)
        if self._live is not None:
            self._live.stop()
