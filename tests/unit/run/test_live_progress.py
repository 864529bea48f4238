"""The progress display's last line: the run's achieved vs intended rate, not the idle
second after the load (which read ``0.0/s of 0.0/s``)."""

from __future__ import annotations

import io
import time

from harness.config import profiles
from harness.run.live import Progress, RunState


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
