"""The harness CLI as a subprocess, watched the way a CI job sees it: one wrapper for the tests
that signal it or check what it leaves behind (tests/integration/test_harness_suite.py,
test_lifecycle_signals.py), so that reading its output, listing its children and killing
what a failing test started are done, and fixed, in one place."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence

import psutil
import pytest

from tests.support import REPO_ROOT

__all__ = ["ENV", "HarnessProcess", "all_gone"]

#: the environment a ``python -m harness...`` subprocess needs to import this checkout
ENV = {**os.environ, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


class HarnessProcess:
    """``harness ARGV`` in ``cwd``, TMPDIR ``cwd/tmp`` (its stack folder the only one there), output read by line."""

    #: every instance, for an autouse fixture to kill (``kill_started``)
    started: List["HarnessProcess"] = []
    #: seconds ``finish()`` waits by default
    finish_timeout = 60.0

    def __init__(self, cwd: Path, argv: Sequence[str], preexec_fn: Optional[Callable[[], object]] = None) -> None:
        self.command = argv[0] if argv else ""
        self.tmp = cwd / "tmp"
        self.tmp.mkdir(exist_ok=True)
        self.proc = subprocess.Popen([sys.executable, "-m", "harness.cli.main", *argv], cwd=cwd,
                                     env={**ENV, "TMPDIR": str(self.tmp)}, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn)
        HarnessProcess.started.append(self)  # once there is a process to kill
        self.lines: List[str] = []
        self.out_lines: List[str] = []
        self._cv = threading.Condition()
        for stream, into in ((self.proc.stderr, self.lines), (self.proc.stdout, self.out_lines)):
            threading.Thread(target=self._read, args=(stream, into), daemon=True).start()

    @classmethod
    def kill_started(cls) -> None:
        """Kill every instance started so far (a failing test still stops what it started)."""
        while HarnessProcess.started:
            HarnessProcess.started.pop().kill()

    def _read(self, stream, into: List[str]) -> None:
        for line in stream:
            with self._cv:
                into.append(line)
                self._cv.notify_all()

    def descendants(self) -> List[psutil.Process]:
        """Its children and theirs, now (empty once it is gone)."""
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            return []

    def interrupt(self, sig: int) -> List[psutil.Process]:
        """Send ``sig``; the descendants just before it, which must all be gone afterwards."""
        children = self.descendants()
        self.proc.send_signal(sig)
        return children

    def wait_line(self, pattern: str, timeout: float = 90.0, after: int = 0, stdout: bool = False) -> int:
        """The index of the first stderr (or stdout) line from ``after`` on matching ``pattern``."""
        deadline = time.monotonic() + timeout
        lines = self.out_lines if stdout else self.lines
        with self._cv:
            while True:
                for i, line in enumerate(lines[after:], after):
                    if re.search(pattern, line):
                        return i
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    pytest.fail(f"no line matching {pattern!r} (rc {self.proc.poll()}):\n{self.text()}")
                self._cv.wait(0.1)

    def finish(self, timeout: Optional[float] = None) -> int:
        """Its exit code, within ``timeout`` s (``finish_timeout`` by default) or the test fails."""
        timeout = self.finish_timeout if timeout is None else timeout
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"harness {self.command} did not exit within {timeout} s:\n{self.text()}")

    def kill(self) -> None:
        """Kill it and every descendant it has now."""
        for p in self.descendants():
            try:
                p.kill()
            except psutil.Error:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def text(self) -> str:
        """All it wrote so far, stderr then stdout (for failure messages)."""
        time.sleep(0.1)
        return "".join(self.lines) + "".join(self.out_lines)

    def stack_folders(self) -> List[Path]:
        """The ``--stack local`` folders in its TMPDIR."""
        return list(self.tmp.glob("lbh-stack-*"))


def all_gone(procs: Iterable[psutil.Process], timeout: float) -> List[str]:
    """Those of ``procs`` still alive after ``timeout`` s (psutil checks pid and start time: a reused pid is gone)."""
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for p in procs:
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
            except psutil.Error:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)
