"""The progress display: its last line (the run's achieved vs intended rate, not the idle
second after the load, which read ``0.0/s of 0.0/s``) and the terminal display (bar,
rates, p95 against the budget in colour, failures; drawn without reading the recorder)."""

from __future__ import annotations

import io
import re
import time

import pytest
from rich.console import Console

from harness.config import profiles
from harness.config.scenario import load_scenario
from harness.run.live import Progress, RunState, p95_budget_ms, p95_level


class FakeRecorder:
    def __init__(self, counts):
        self._counts = counts

    def counts(self, target=None):
        return dict(self._counts)

    def windows(self, target=None, last=None):
        return []


def finished_state(rate=20.0, duration=2.0, elapsed=2.6):
    st = RunState("r1", "demo", "features", profiles.from_spec({"type": "constant", "rate": rate},
                                                                default_duration=duration), duration)
    st.t0_ns = time.perf_counter_ns() - int(elapsed * 1e9)
    st.finished = True
    return st


def test_final_line_shows_the_runs_achieved_and_intended_rate():
    rec = FakeRecorder({"ok": 36, "error": 0, "timeout": 0, "dropped": 4})
    stream = io.StringIO()
    progress = Progress(lambda: rec, finished_state(), stream=stream, mode="plain")
    line = progress.line(final=True)
    # 36 requests ran in the 2 s load (4 dropped): 18/s of the 20/s the schedule asked for
    assert "rate 18.0/s of 20.0/s intended over 2.0s" in line, line
    assert " 0.0/s" not in line
    progress._thread = None
    progress.stop()  # not started: no final line
    assert stream.getvalue() == ""


def test_stop_prints_the_final_line(monkeypatch):
    rec = FakeRecorder({"ok": 40, "error": 0, "timeout": 0, "dropped": 0})
    stream = io.StringIO()
    progress = Progress(lambda: rec, finished_state(), stream=stream, mode="plain", plain_every_s=3600).start()
    progress.stop()
    last = stream.getvalue().strip().splitlines()[-1]
    assert "rate 20.0/s of 20.0/s intended" in last, last


def test_closed_loop_final_line_has_no_intended_rate():
    st = RunState("r1", "users", "features", profiles.from_spec({"type": "users", "vus": 2}, default_duration=2.0),
                  2.0)
    st.t0_ns = time.perf_counter_ns() - int(2.1e9)
    line = Progress(lambda: FakeRecorder({"ok": 10, "error": 0, "timeout": 0, "dropped": 0}), st,
                    stream=io.StringIO(), mode="plain").line(final=True)
    assert "(closed loop)" in line and "rate 5.0/s" in line


def test_a_run_stopped_early_divides_by_its_elapsed_time():
    rec = FakeRecorder({"ok": 10, "error": 0, "timeout": 0, "dropped": 0})
    line = Progress(lambda: rec, finished_state(elapsed=1.0), stream=io.StringIO(), mode="plain").line(final=True)
    assert "rate 10.0/s of 20.0/s intended over 1.0s" in line, line


# -- the terminal display (rich) ---------------------------------------------------------


SGR = re.compile(r"\x1b\[([0-9;]*)m")


class CountingRecorder(FakeRecorder):
    def __init__(self, counts, p95s):
        super().__init__(counts)
        self._p95s = p95s
        self.reads = 0

    def counts(self, target=None):
        self.reads += 1
        return super().counts(target)

    def windows(self, target=None, last=None):
        self.reads += 1
        return [{"p95_ms": p} for p in self._p95s]


def running_state(elapsed=12.0, budget=100.0):
    st = RunState("r1", "demo", "features", profiles.from_spec({"type": "constant", "rate": 20.0},
                                                                default_duration=30.0), 30.0)
    st.t0_ns = time.perf_counter_ns() - int(elapsed * 1e9)
    st.phase = "steady"
    st.p95_budget_ms = budget
    return st


def render(progress, width=120, no_color=False):
    buf = io.StringIO()
    Console(file=buf, width=width, force_terminal=True, color_system="standard", no_color=no_color,
            legacy_windows=False).print(progress.renderable())
    return buf.getvalue()


def test_budget_is_the_scenarios_p95_latency_threshold():
    assert p95_budget_ms(load_scenario().parsed_thresholds) == 100.0  # the default scenario: p(95)<100ms
    assert p95_budget_ms(load_scenario(overrides={"thresholds": {"latency": ["p(99)<50ms"]}}).parsed_thresholds) \
        is None


def test_p95_levels_against_the_budget():
    assert p95_level(10.0, 100.0) == "ok"
    assert p95_level(85.0, 100.0) == "near"
    assert p95_level(100.0, 100.0) == "over"  # p(95)<100ms fails at 100
    assert p95_level(10.0, None) == "" and p95_level(None, 100.0) == ""


@pytest.mark.parametrize("p95, colour", [(12.0, "32"), (85.0, "33"), (140.0, "31")])
def test_display_shows_bar_rates_p95_against_budget_in_colour_and_failures(p95, colour):
    rec = CountingRecorder({"ok": 230, "error": 2, "timeout": 1, "dropped": 0}, [p95, 1.0])
    progress = Progress(lambda: rec, running_state(), stream=io.StringIO(), mode="tty")
    progress._prev = (11.0, 213)
    progress.sample()
    out = render(progress)
    text = SGR.sub("", out)
    assert "━" in text and "12.0s / 30s" in text and "phase steady" in text, text
    assert "of 20.0/s intended" in text and "/s of" in text
    assert f"p95(1s) {p95:.1f} ms of 100 ms budget" in text, text
    assert "failed 3 (err 2 · timeout 1 · dropped 0)" in text, text
    # the p95 figure carries its level's colour (green / yellow / red)
    m = re.search(r"\x1b\[([0-9;]*)m" + re.escape(f"{p95:.1f} ms"), out)
    assert m and colour in m.group(1).split(";"), out
    assert all(len(line) <= 120 for line in text.splitlines())


def test_no_color_drops_the_colour_not_the_display():
    rec = CountingRecorder({"ok": 10, "error": 0, "timeout": 0, "dropped": 0}, [140.0, 1.0])
    progress = Progress(lambda: rec, running_state(), stream=io.StringIO(), mode="tty")
    progress.sample()
    out = render(progress, no_color=True)
    assert "p95(1s) 140.0 ms of 100 ms budget  OVER" in SGR.sub("", out)  # over budget says so in words
    assert not re.search(r"\x1b\[[0-9;]*3[0-7]m", out), repr(out)


def test_drawing_never_reads_the_recorder():
    rec = CountingRecorder({"ok": 10, "error": 0, "timeout": 0, "dropped": 0}, [5.0, 1.0])
    progress = Progress(lambda: rec, running_state(), stream=io.StringIO(), mode="tty")
    progress.sample()
    reads = rec.reads
    for _ in range(20):
        render(progress)
    assert rec.reads == reads  # the 4 Hz redraw uses the once-a-second sample


def test_display_fits_a_narrow_terminal_without_wrapping():
    rec = CountingRecorder({"ok": 10, "error": 0, "timeout": 0, "dropped": 0}, [5.0, 1.0])
    progress = Progress(lambda: rec, running_state(), stream=io.StringIO(), mode="tty")
    progress.sample()
    lines = SGR.sub("", render(progress, width=60)).splitlines()
    assert len(lines) == 3 and all(len(line) <= 60 for line in lines), lines


def test_tty_mode_ends_with_the_whole_run_line():
    rec = CountingRecorder({"ok": 40, "error": 0, "timeout": 0, "dropped": 0}, [5.0, 1.0])
    stream = io.StringIO()
    progress = Progress(lambda: rec, finished_state(), stream=stream, mode="tty", interval_s=3600).start()
    progress.stop()
    text = SGR.sub("", stream.getvalue())
    assert "rate 20.0/s of 20.0/s intended over 2.0s" in text, text
    assert "0.0/s of 0.0/s" not in text


def test_auto_is_plain_off_a_terminal():
    assert Progress(lambda: None, running_state(), stream=io.StringIO(), mode="auto").mode == "plain"


def test_past_the_schedules_end_the_display_says_draining_not_zero_intended():
    rec = CountingRecorder({"ok": 600, "error": 0, "timeout": 0, "dropped": 0}, [5.0, 1.0])
    st = running_state(elapsed=30.4)
    progress = Progress(lambda: rec, st, stream=io.StringIO(), mode="tty")
    progress.sample()
    text = SGR.sub("", render(progress))
    assert "schedule done, draining" in text and "of 0.0/s" not in text, text
    plain = Progress(lambda: rec, st, stream=io.StringIO(), mode="plain").line()
    assert "(schedule done, draining)" in plain and "of 0.0/s" not in plain, plain
