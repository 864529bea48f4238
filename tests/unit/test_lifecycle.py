"""harness.lifecycle's signal scope: what the first signal does at each moment (raise,
soft stop, held), that later ones never interrupt the cleanup, and that the previous
handlers come back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from harness.lifecycle import Interrupted, active_scope, pid_alive, signal_scope


def _signal_self(sig: int = signal.SIGHUP) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(0.5)  # the handler runs at the next bytecode; the sleep is cut short by it


def test_outside_a_soft_window_the_first_signal_raises_interrupted():
    with signal_scope() as scope:
        assert scope.installed and active_scope() is scope
        with pytest.raises(Interrupted) as info:
            _signal_self(signal.SIGTERM)
        assert info.value.signum == signal.SIGTERM and scope.signum == signal.SIGTERM
        assert isinstance(info.value, KeyboardInterrupt)  # no `except Exception` swallows it
        _signal_self(signal.SIGINT)  # a second signal is recorded, never raised: cleanup runs
        assert scope.signum == signal.SIGTERM
    assert active_scope() is None


def test_a_soft_window_calls_the_stop_and_does_not_raise():
    calls = []
    with signal_scope() as scope, scope.soft(lambda: calls.append("stop")):
        _signal_self()
        assert calls == ["stop"] and scope.interrupted
    with signal_scope() as scope:
        assert not scope.interrupted  # a new command starts clean


def test_a_soft_window_entered_after_a_signal_stops_at_once():
    calls = []
    with signal_scope() as scope:
        with scope.held():
            _signal_self()
            with scope.soft(lambda: calls.append("stop")):
                assert calls == ["stop"]
        assert not scope.raised  # the soft window acted on it: nothing raised after


def test_a_held_section_defers_the_signal_to_its_end():
    with signal_scope() as scope:
        reached = False
        with pytest.raises(Interrupted):
            with scope.held():
                _signal_self()
                reached = True  # not cut in half
        assert reached and scope.raised


def test_handlers_come_back_and_an_inert_scope_installs_nothing():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    with signal_scope(install=False) as scope:
        assert not scope.installed and signal.getsignal(signal.SIGTERM) == before[signal.SIGTERM]
    with signal_scope() as outer:
        assert signal.getsignal(signal.SIGTERM) != before[signal.SIGTERM]
        with signal_scope() as inner:
            assert inner is outer  # a run inside a command joins the command's scope
    assert {s: signal.getsignal(s) for s in before} == before


def test_pid_alive_sees_a_reaped_child_as_gone():
    assert pid_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not pid_alive(child.pid)
    assert not pid_alive(0)


def test_a_run_in_another_thread_gets_an_inert_scope():
    import threading

    seen = []
    with signal_scope() as outer:
        def other() -> None:
            with signal_scope() as scope:
                seen.append(scope)
        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert seen[0] is not outer and not seen[0].installed
