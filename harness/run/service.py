"""A scenario's ``service``: the target started in its own process for the length of a run
(or of a whole knee search), so the generator and the target do not share one interpreter.

Why: with an in-process target on a small machine the generator's threads and the target's
Python share one GIL and the same cores; when the target saturates the CPU the self-check
(rightly) calls the run invalid, and no knee can be told from the generator's limit.  The
reference HTTP service in its own process is measured the way it is deployed, and its CPU
is sampled on its own (:meth:`ManagedService.cpu_seconds`).

The scenario says what to start::

    service:
      command: ["{python}", "-m", "workloads.cli", "serve", "--port", "{port}"]
      ready: "http://127.0.0.1:{port}/readyz"      # polled until it answers 2xx
      start_timeout: 60s
    target: "http://127.0.0.1:{port}/v1/features"

``{port}`` is a free loopback port picked at start, ``{python}`` this interpreter. Without
``ready`` the service is ready when the port accepts connections.  The process gets its own
process group, dies with the harness (:func:`harness.lifecycle.spawn`), and is stopped
with SIGTERM (then SIGKILL after 10 s).  Its output goes to an anonymous temporary file
(unlinked from the start, so nothing is left behind even on kill -9); when the service fails
to start, the tail is quoted and the whole log is kept in a named file the error gives.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import replace
from typing import Any, Iterator, List, Mapping, Optional

from harness.config.scenario import Scenario
from harness.lifecycle import spawn
from harness.targets import TargetError

__all__ = ["ManagedService", "ServiceError", "apply", "served"]


class ServiceError(TargetError):
    """The scenario's service could not be started (the message quotes its log)."""


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ManagedService:
    """One started service process (see the module docstring)."""

    def __init__(self, spec: Mapping[str, Any], *, port: Optional[int] = None) -> None:
        self.spec = dict(spec)
        self.port = port or _free_port()
        self.command: List[str] = [self.fill(str(a)) for a in self.spec["command"]]
        self.ready_url: Optional[str] = self.fill(self.spec["ready"]) if self.spec.get("ready") else None
        self.proc: Optional[subprocess.Popen] = None
        # anonymous: no path to clean up; the child writes through the inherited descriptor
        self._log = tempfile.TemporaryFile(prefix="lbh-service-", suffix=".log")
        #: where the whole log was kept when the service failed (None otherwise)
        self.log_path: Optional[str] = None

    def fill(self, text: str) -> str:
        """``{port}`` and ``{python}`` substituted."""
        return text.replace("{port}", str(self.port)).replace("{python}", sys.executable)

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> "ManagedService":
        try:
            # dies with the harness even on kill -9 (harness.lifecycle.spawn)
            self.proc = spawn(self.command, stdout=self._log, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            raise ServiceError(f"service: cannot start {' '.join(self.command)!r}: {exc}") from None
        deadline = time.monotonic() + float(self.spec.get("start_timeout") or 60.0)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._fail(f"exited with code {self.proc.returncode} before it was ready")
            if self._ready():
                return self
            time.sleep(0.2)
        self._fail(f"not ready after {float(self.spec.get('start_timeout') or 60.0):g}s")
        return self  # not reached

    def _ready(self) -> bool:
        if self.ready_url is None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
            return False
        try:
            with urllib.request.urlopen(self.ready_url, timeout=1.0) as r:  # noqa: S310 (loopback, from the scenario)
                return 200 <= r.status < 300
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def _fail(self, why: str) -> None:
        text = self.log_text()
        self.stop()
        fd, self.log_path = tempfile.mkstemp(prefix="lbh-service-", suffix=".log")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        tail = "".join(text.splitlines(keepends=True)[-15:])
        raise ServiceError(f"service {' '.join(self.command)!r} {why}; its log (kept at {self.log_path}) ends:\n"
                           + tail)

    def log_text(self) -> str:
        """What the service wrote so far (read with pread: the child shares the file offset)."""
        try:
            fd = self._log.fileno()
            return os.pread(fd, os.fstat(fd).st_size, 0).decode("utf-8", errors="replace")
        except (OSError, ValueError):  # closed
            return ""

    def cpu_seconds(self) -> Optional[float]:
        """User + system CPU seconds the service process (and its threads) used so far."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        try:
            import psutil

            t = psutil.Process(self.proc.pid).cpu_times()
            return float(t.user + t.system)
        except Exception:
            return None

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM to its process group, SIGKILL after ``grace_s``; idempotent."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        with contextlib.suppress(OSError):
            self._log.close()

    def __enter__(self) -> "ManagedService":
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def apply(scenario: Scenario, service: ManagedService) -> Scenario:
    """``scenario`` aimed at the started ``service`` (``{port}`` in its target filled)."""
    return replace(scenario, target=service.fill(scenario.target))


@contextlib.contextmanager
def served(scenario: Scenario) -> Iterator[tuple[Scenario, Optional[ManagedService]]]:
    """Start the scenario's service (if it has one) and yield the scenario aimed at it and
    the service (None without one); the service stops on leaving."""
    if scenario.service is None:
        yield scenario, None
        return
    with ManagedService(scenario.service) as svc:
        yield apply(scenario, svc), svc
