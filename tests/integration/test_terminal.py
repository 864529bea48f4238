"""The terminal as people see it: ``harness run`` on a pseudo-terminal draws the live
display (a bar of the schedule, achieved vs intended rate, last-second p95 against the
budget in colour, failures) and ends with the whole run's rates; ``NO_COLOR`` keeps the
display without colour; ``--progress plain`` prints lines; the installed commands'
``--help`` has no ``(default: None)`` and no reStructuredText markup."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time

import pytest

from tests.support import REPO_ROOT

SGR = re.compile(r"\x1b\[[0-9;]*m")
CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
FINAL = re.compile(r"\[noop-live\] done in [0-9.]+s  rate ([0-9.]+)/s of ([0-9.]+)/s intended over ([0-9.]+)s")


def run_on_pty(tmp_path, *args, env_extra=None, cols=120, timeout=60):
    """``harness run`` with stderr (where the display goes) on a pty of ``cols`` columns;
    returns (exit code, raw bytes the terminal got, stdout)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, cols, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES")}
    env.update({"PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "TERM": "xterm-256color",
                **(env_extra or {})})
    cmd = [sys.executable, "-m", "harness.cli.main", "run", "--target", "tests.support.targets_for_tests:noop",
           "--set", "name=noop-live", "--rate", "20", "--no-metrics",
           # not a test of the generator self-check: a loaded test machine must not make it exit 98
           "--lag-bound-ms", "1000", "--out", str(tmp_path / "result.json"), *args]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=slave)
    os.close(slave)
    raw = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed its end
                    break
                if not chunk:
                    break
                raw += chunk
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
            pytest.fail(f"harness run did not finish in {timeout}s; the terminal got: {raw[-2000:]!r}")
        stdout = proc.communicate(timeout=10)[0].decode()
    finally:
        os.close(master)
    return proc.returncode, raw.decode("utf-8", "replace"), stdout


def frames(raw: str) -> str:
    """What the terminal showed, colour and cursor movement removed (one line per drawn line)."""
    return CONTROL.sub("", SGR.sub("", raw)).replace("\r", "\n")


def test_live_display_on_a_terminal(tmp_path):
    code, raw, stdout = run_on_pty(tmp_path, "--duration", "3s")
    assert code == 0, f"exit {code}: " + raw[-3000:] + stdout
    text = frames(raw)
    # redrawn in place several times (about 4 Hz), not printed as a scrolling log
    assert raw.count("\x1b[1A") >= 4, "not redrawn in place: " + raw[-2000:]
    assert "━" in text and re.search(r"\d\.\ds / 3s", text), text[-2000:]
    assert re.search(r"rate [0-9.]+/s of 20\.0/s intended", text), text[-2000:]
    p95 = re.search(r"p95\(1s\) ([0-9.]+) ms of 100 ms budget", text)
    assert p95, text[-2000:]
    # the p95 figure is coloured by its level: a no-op target is far under budget, so green (32)
    assert re.search(r"\x1b\[[0-9;]*\b32m" + re.escape(p95.group(1)) + " ms", raw), "p95 not green: " + raw[-2000:]
    assert "failed 0 (err 0 · timeout 0 · dropped 0)" in text
    # the last thing drawn is the whole run's line: achieved vs intended over the load, never 0.0/s
    finals = FINAL.findall(text)
    assert finals, text[-2000:]
    achieved, intended, load_s = map(float, finals[-1])
    assert intended == 20.0 and achieved > 0 and load_s == 3.0, finals[-1]
    assert not re.search(r"(?<![0-9])0\.0/s of 0\.0/s", text), text[-2000:]
    assert not re.search(r"of 0\.0/s intended", text), "past the schedule's end the display says so"
    assert all(len(line) <= 120 for line in text.splitlines()), "a line wider than the terminal"
    assert "verdict: PASSED" in stdout


def test_no_color_keeps_the_display_without_colour(tmp_path):
    code, raw, _out = run_on_pty(tmp_path, "--duration", "2s", env_extra={"NO_COLOR": "1"})
    assert code == 0, raw[-3000:]
    text = frames(raw)
    assert "━" in text and "p95(1s)" in text and FINAL.search(text), text[-2000:]
    assert not re.search(r"\x1b\[[0-9;]*(?:3[0-7]|38;[0-9;]+)m", raw), raw[-2000:]


def test_progress_plain_prints_lines_on_a_terminal_too(tmp_path):
    code, raw, _out = run_on_pty(tmp_path, "--duration", "2s", "--progress", "plain")
    assert code == 0, raw[-3000:]
    assert "\x1b[" not in raw and "━" not in raw, raw[-2000:]
    finals = FINAL.findall(raw)
    assert finals and float(finals[-1][0]) > 0 and float(finals[-1][1]) == 20.0, raw[-2000:]


@pytest.mark.parametrize("argv", [["harness", "--help"], ["harness", "run", "--help"],
                                  ["harness", "compare", "--help"], ["workloads", "serve", "--help"]])
def test_installed_commands_help_is_clean(argv):
    exe = os.path.join(os.path.dirname(sys.executable), argv[0])  # the installed entry point
    module = {"harness": "harness.cli.main", "workloads": "workloads.cli"}[argv[0]]
    cmd = [exe, *argv[1:]] if os.path.exists(exe) else [sys.executable, "-m", module, *argv[1:]]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "100"})
    assert proc.returncode == 0, proc.stderr
    assert "(default: None)" not in proc.stdout, proc.stdout
    assert not re.search(r"``|:(?:func|class|mod|meth|data|attr):`", proc.stdout), proc.stdout
