"""One signal and cleanup story (issue 15, items 5 and 6), with the real binaries:
SIGTERM/SIGINT at each phase of ``harness run --stack local`` and to ``harness stack up``
end with exit 105, a result whenever something was measured, no child left (checked by
pid, collected before the signal) and no stack folder; ``kill -9`` of the harness takes
Prometheus, Alertmanager and worker processes with it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

import psutil
import pytest

from tests.support.ci import require_binary
from tests.support.processes import ENV, HarnessProcess, all_gone


@pytest.fixture
def stack_binaries():
    require_binary("prometheus", "prometheus")
    require_binary("prometheus-alertmanager", "prometheus-alertmanager")


@pytest.fixture(autouse=True)
def _nothing_left_behind():
    """A failing test still kills what it started."""
    yield
    HarnessProcess.kill_started()


class Harness(HarnessProcess):
    """``harness ARGS`` in ``tmp_path``, with the result file a run writes there."""

    def __init__(self, tmp_path: Path, *args: str, ignore_sigint: bool = False) -> None:
        self.out = tmp_path / "result.json"
        preexec = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None
        super().__init__(tmp_path, args, preexec_fn=preexec)

    def wait_child(self, word: str, timeout: float = 90.0) -> None:
        """Until a descendant whose command line holds ``word`` exists."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in self.descendants():
                try:
                    if any(word in part for part in p.cmdline()):
                        return
                except psutil.Error:
                    pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.kill()
        pytest.fail(f"no child running {word!r} (rc {self.proc.poll()}):\n{self.text()}")

    def result(self) -> Optional[dict]:
        return json.loads(self.out.read_text()) if self.out.exists() else None


def _run_args(out: Path, *extra: str) -> List[str]:
    return ["run", "--target", "tests.support.targets_for_tests:noop", "--rate", "10", "--progress", "plain",
            "--out", str(out), "-q", *extra]


def _assert_clean(h: Harness, children: List[psutil.Process], timeout: float = 15.0) -> None:
    assert children, "no child process was collected before the signal"
    left = all_gone(children, timeout)
    assert left == [], f"children alive after the harness exited: {left}\n{h.text()}"
    deadline = time.monotonic() + timeout
    while h.stack_folders() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert h.stack_folders() == [], h.text()


SIGNALS = [signal.SIGTERM, signal.SIGINT]


@pytest.mark.parametrize("sig", [*SIGNALS, signal.SIGHUP], ids=lambda s: s.name)
def test_signal_while_the_stack_starts(tmp_path, stack_binaries, sig):
    h = Harness(tmp_path, *_run_args(tmp_path / "result.json", "--stack", "local", "--duration", "3s"))
    h.wait_child("alertmanager")
    children = h.interrupt(sig)
    rc = h.finish()
    assert rc == 105, h.text()
    assert "Traceback" not in h.text()
    assert h.result() is None  # nothing was measured
    _assert_clean(h, children)


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_signal_during_the_run(tmp_path, stack_binaries, sig):
    h = Harness(tmp_path, *_run_args(tmp_path / "result.json", "--stack", "local", "--duration", "30s"))
    h.wait_line(r"harness: run \S+:")  # the banner: request 0 is about to start
    h.wait_line(r"done [1-9]")         # and some requests ran
    children = h.interrupt(sig)
    rc = h.finish()
    assert rc == 105, h.text()
    result = h.result()
    assert result is not None and result["status"] == "interrupted", h.text()
    assert 0 < result["summary"]["all"]["count"] < 300
    assert result["verdict"]["exit_code"] == 105
    assert "Traceback" not in h.text()
    _assert_clean(h, children)


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_signal_during_the_settle(tmp_path, stack_binaries, sig):
    h = Harness(tmp_path, *_run_args(tmp_path / "result.json", "--stack", "local", "--duration", "2s"))
    h.wait_line(r"\] done in ")  # the measured window is over: the settle (3 s) begins
    children = h.interrupt(sig)
    rc = h.finish()
    assert rc == 105, h.text()
    result = h.result()
    assert result is not None and result["status"] == "interrupted", h.text()
    assert result["summary"]["all"]["count"] == 20  # the whole run was measured
    assert result["stack"]["settle"].startswith("interrupted")
    assert "Traceback" not in h.text()
    _assert_clean(h, children)


def test_sigterm_while_workers_start(tmp_path):
    """The audit's case: SIGTERM while ``--workers 2`` start left two workers and a
    resource tracker behind."""
    h = Harness(tmp_path, *_run_args(tmp_path / "result.json", "--workers", "2", "--duration", "3s",
                                      "--no-metrics"))
    h.wait_child("multiprocessing")
    time.sleep(0.3)
    children = h.interrupt(signal.SIGTERM)
    rc = h.finish()
    assert rc == 105, h.text()
    assert "Traceback" not in h.text()
    left = all_gone(children, 10.0)
    assert left == [], left


def test_kill_9_with_the_stack_takes_its_children_and_folder(tmp_path, stack_binaries):
    h = Harness(tmp_path, *_run_args(tmp_path / "result.json", "--stack", "local", "--duration", "30s"))
    h.wait_line(r"harness: run \S+:")
    children = h.descendants()
    assert any("prometheus" in " ".join(p.cmdline()) for p in children)
    assert h.stack_folders()
    h.proc.send_signal(signal.SIGKILL)
    h.proc.wait(timeout=10)
    _assert_clean(h, children, timeout=10.0)


def test_kill_9_with_two_workers_takes_them(tmp_path):
    h = Harness(tmp_path, *_run_args(tmp_path / "result.json", "--workers", "2", "--duration", "30s",
                                      "--no-metrics"))
    h.wait_line(r"done [1-9]")
    children = h.descendants()
    assert sum("multiprocessing" in " ".join(p.cmdline()) for p in children) >= 2, children
    h.proc.send_signal(signal.SIGKILL)
    h.proc.wait(timeout=10)
    left = all_gone(children, 8.0)  # workers and multiprocessing's resource tracker
    assert left == [], left


def test_workers_are_gone_soon_after_a_normal_run(tmp_path):
    h = Harness(tmp_path, *_run_args(tmp_path / "result.json", "--workers", "2", "--duration", "2s",
                                      "--no-metrics"))
    h.wait_line(r"done [1-9]")
    children = [p for p in h.descendants() if "multiprocessing" in " ".join(p.cmdline())]
    assert h.finish() in (0, 98), h.text()
    assert all_gone(children, 1.0) == []


@pytest.mark.parametrize("sig, ignore_sigint", [(signal.SIGTERM, False), (signal.SIGINT, True),
                                                (signal.SIGHUP, False)], ids=["SIGTERM", "SIGINT-bg", "SIGHUP"])
def test_stack_up_signal_stops_both_programs(tmp_path, stack_binaries, sig, ignore_sigint):
    """``ignore_sigint``: started the way a script's ``&`` starts it (SIGINT ignored)."""
    h = Harness(tmp_path, "stack", "up", "--scrape", "svc=127.0.0.1:9", ignore_sigint=ignore_sigint)
    h.wait_line(r"^alertmanager:", stdout=True)
    children = h.descendants()
    assert len([p for p in children if "prometheus" in " ".join(p.cmdline())]) >= 2  # both programs
    h.proc.send_signal(sig)
    assert h.finish() == 105, h.text()
    _assert_clean(h, children)


def test_stack_up_exits_when_its_prometheus_dies(tmp_path, stack_binaries):
    h = Harness(tmp_path, "stack", "up")
    h.wait_line(r"^alertmanager:", stdout=True)
    children = h.descendants()
    prom = [p for p in children if any("--storage.tsdb.path" in a for a in p.cmdline())]
    assert len(prom) == 1, children
    prom[0].kill()
    rc = h.finish(timeout=30)
    assert rc == 1, h.text()
    assert "prometheus exited" in h.text()
    _assert_clean(h, children)


def test_stale_stack_folder_of_a_dead_owner_is_removed_by_the_next_start(tmp_path, stack_binaries):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp / "lbh-stack-stale"
    stale.mkdir()
    (stale / "owner").write_text(f"{dead.pid}\n")
    foreign = tmp / "lbh-stack-noowner"  # not ours to judge: no owner file
    foreign.mkdir()
    h = Harness(tmp_path, "stack", "up")
    h.wait_line(r"^alertmanager:", stdout=True)
    assert not stale.exists()
    assert foreign.exists()
    h.proc.send_signal(signal.SIGTERM)
    assert h.finish() == 105


_PARENT = """
import sys, time
from harness.lifecycle import Guardian, spawn
folder = sys.argv[1]
guardian = Guardian(folder)
child = spawn([sys.executable, "-c", "import time; time.sleep(300)", folder])
guardian.watch(child.pid)
print(child.pid, guardian.pid, flush=True)
time.sleep(300)
"""


def test_kill_9_takes_a_spawned_child_and_the_guardian_removes_the_folder(tmp_path):
    """The mechanism alone (no binaries needed): a child started with ``lifecycle.spawn``
    dies with its parent on kill -9, and the guardian removes the folder then exits."""
    folder = tmp_path / "lbh-stack-x"
    folder.mkdir()
    (folder / "data").write_text("x")
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, str(folder)], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        child_pid, guardian_pid = map(int, parent.stdout.readline().split())
        procs = [psutil.Process(child_pid), psutil.Process(guardian_pid)]
        deadline = time.monotonic() + 10
        # /proc/PID/cmdline reads empty for a moment while the wrapper execs the program
        while procs[0].cmdline()[1:2] != ["-c"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert procs[0].cmdline()[1:3] == ["-c", "import time; time.sleep(300)"]  # the wrapper became it
        parent.kill()
        parent.wait(timeout=10)
        assert all_gone(procs, 10.0) == []
        assert not folder.exists()
    finally:
        if parent.poll() is None:
            parent.kill()


def test_search_stops_at_a_signal_and_keeps_its_steps(tmp_path):
    out = tmp_path / "search.json"
    h = Harness(tmp_path, "search", "constant-50", "--set", "target=tests.support.targets_for_tests:noop",
                "--step", "2s", "--start-rate", "10", "--max-rate", "1000", "--out", str(out))
    h.wait_line(r"step 10 rps")  # the first step is done, the second one runs
    h.proc.send_signal(signal.SIGTERM)
    assert h.finish() == 105, h.text()
    doc = json.loads(out.read_text())
    assert doc["status"] == "interrupted" and len(doc["steps"]) >= 1
    assert "Traceback" not in h.text()


def test_sigterm_while_stack_up_starts(tmp_path, stack_binaries):
    h = Harness(tmp_path, "stack", "up")
    h.wait_child("alertmanager")
    children = h.interrupt(signal.SIGTERM)
    assert h.finish() == 105, h.text()
    assert "Traceback" not in h.text()
    _assert_clean(h, children)


# In-process: the signal lands exactly in the phase named, through the phase's own code.

def _run_main(tmp_path, monkeypatch, module, name, sig=signal.SIGTERM):
    from harness.cli.main import main

    real = getattr(module, name)

    def signalled(*args, **kwargs):
        os.kill(os.getpid(), sig)
        time.sleep(0.2)  # the handler runs in this (the main) thread meanwhile
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, signalled)
    out = tmp_path / "result.json"
    code = main(["run", "--target", "tests.support.targets_for_tests:noop", "--duration", "1s", "--rate", "10",
                 "--no-metrics", "--progress", "off", "-q", "--out", str(out)])
    return code, (json.loads(out.read_text()) if out.exists() else None)


def test_signal_during_warm_up_exits_105_with_nothing_written(tmp_path, monkeypatch, capsys):
    from harness.run import runner

    code, result = _run_main(tmp_path, monkeypatch, runner, "warm_up")
    assert code == 105 and result is None
    assert "nothing measured" in capsys.readouterr().err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_signal_while_writing_the_result_keeps_it_whole(tmp_path, monkeypatch, sig):
    from harness.cli import run as cli_run

    code, result = _run_main(tmp_path, monkeypatch, cli_run, "write_result", sig)
    assert code == 105
    assert result is not None and result["summary"]["all"]["count"] == 10  # the whole run, written
