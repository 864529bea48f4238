"""One signal and cleanup story for every command, and child processes that die with us.

Signals. ``harness run``, ``stack up`` and ``search`` install one :class:`SignalScope`
at the start of the command (SIGINT, SIGTERM, SIGHUP; also when a script started us with
SIGINT ignored). What a signal does depends on the moment, not on which handler happened
to be installed then:

- before anything is measured (stack starting, warm-up): :class:`Interrupted` is raised in
  the main thread; the ``finally`` paths stop what was started and the command exits 105
  with no result (there is nothing to report);
- while measuring and after (settle, report): a *soft* stop, the run ends early and writes
  its partial result, exit 105;
- in a *held* section (spawning a child, cleaning up) the signal waits until it ends, so a
  half-spawned child or a half-removed folder never escapes the bookkeeping.

Only the first signal acts; later ones are recorded and ignored, so a second Ctrl-C cannot
interrupt the cleanup of the first.

Children. :func:`spawn` starts a program that dies with the harness, even on ``kill -9``:
on Linux it runs under ``PR_SET_PDEATHSIG`` (set by a tiny exec wrapper, never by a
``preexec_fn``, which is unsafe with threads), forked from a thread that lives as long as
the process (the signal fires when the *forking thread* exits). Worker processes call
:func:`die_with_parent` first thing. :class:`Guardian` is a tiny process that outlives a
killed harness just long enough to stop its programs and remove their folder.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Iterator, List, Optional, Sequence

__all__ = ["Interrupted", "SignalScope", "signal_scope", "active_scope", "signal_name", "held_signals", "HANDLED_SIGNALS",
           "spawn",
           "in_long_lived_thread", "die_with_parent", "pid_alive", "Guardian"]

HANDLED_SIGNALS = tuple(s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGHUP")) if s)

_PR_SET_PDEATHSIG = 1


class Interrupted(KeyboardInterrupt):
    """The first SIGINT/SIGTERM/SIGHUP outside a soft window. A KeyboardInterrupt, so no
    ``except Exception`` on the way up swallows it and every ``finally`` runs."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal_name(signum))


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


# -- the signal scope ------------------------------------------------------------------------

_RAISE, _SOFT, _HOLD = "raise", "soft", "hold"


class SignalScope:
    """What the first signal does now: raise (default), call a soft-stop callback, or wait
    (held). ``signum`` is the first signal received (None: none yet)."""

    def __init__(self, installed: bool) -> None:
        self.installed = installed
        self.signum: Optional[int] = None
        self.raised = False
        self._modes: List[Any] = [(_RAISE, None)]
        self._pending = False  # a signal arrived while held

    @property
    def interrupted(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, _frame: Any = None) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
            try:  # os.write, not print: the main thread may be inside a write to stderr right now
                os.write(2, f"harness: {signal_name(signum)} received: stopping and cleaning up\n".encode())
            except OSError:
                pass
        mode, callback = self._modes[-1]
        if mode == _HOLD:
            self._pending = True
            return
        self._dispatch(mode, callback)

    def _dispatch(self, mode: str, callback: Optional[Callable[[], None]]) -> None:
        assert self.signum is not None
        if mode == _SOFT:
            if callback is not None:
                callback()
        elif mode == _RAISE and not self.raised:
            self.raised = True
            raise Interrupted(self.signum)

    def check(self) -> None:
        """Raise :class:`Interrupted` now if a signal came and none was raised yet (in the
        raise mode); for loops that ran held."""
        if self.signum is not None and self._modes[-1][0] == _RAISE and not self.raised:
            self.raised = True
            raise Interrupted(self.signum)

    @contextlib.contextmanager
    def soft(self, callback: Optional[Callable[[], None]] = None) -> Iterator["SignalScope"]:
        """While inside, a signal calls ``callback`` (a clean stop) instead of raising; a
        signal that came before is passed on at once."""
        self._modes.append((_SOFT, callback))
        try:
            if self.signum is not None:
                self._pending = False  # acted on here: the held section around has nothing left
                if callback is not None:
                    callback()
            yield self
        finally:
            self._modes.pop()

    @contextlib.contextmanager
    def held(self) -> Iterator["SignalScope"]:
        """While inside, a signal only waits; at the end it acts as it would have then."""
        self._modes.append((_HOLD, None))
        pending_before, self._pending = self._pending, False
        try:
            yield self
        finally:
            self._modes.pop()
            arrived, self._pending = self._pending, pending_before
            if arrived:
                mode, callback = self._modes[-1]
                if mode == _HOLD:
                    self._pending = True
                else:
                    self._dispatch(mode, callback)


_active: Optional[SignalScope] = None
_lock = threading.Lock()


def active_scope() -> Optional[SignalScope]:
    """The scope a command installed, or None."""
    return _active


@contextlib.contextmanager
def signal_scope(install: bool = True) -> Iterator[SignalScope]:
    """The command's :class:`SignalScope`: installs the handlers (main thread only) for its
    duration, or joins the one already installed. ``install=False`` (library use, tests
    that run in-process) gives an inert scope: signals keep whatever handler they had."""
    global _active
    if not install or threading.current_thread() is not threading.main_thread():
        yield SignalScope(installed=False)  # signals reach the main thread only: not ours to act on
        return
    if _active is not None:
        yield _active
        return
    scope = SignalScope(installed=True)
    previous = {}
    with _lock:
        _active = scope
    try:
        for sig in HANDLED_SIGNALS:
            previous[sig] = signal.signal(sig, scope._handle)
        yield scope
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        with _lock:
            _active = None


@contextlib.contextmanager
def held_signals() -> Iterator[None]:
    """Hold signals in the command's scope (main thread) for a section that must not be
    cut in half: spawning a child, stopping the stack, writing a file."""
    scope = _active
    if scope is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    with scope.held():
        yield


# -- children that die with us ---------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def _set_pdeathsig(sig: int = signal.SIGKILL) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


# The exec wrapper: set the parent-death signal, make sure the parent did not die before
# that, then become the program (the pid stays the same, the setting survives exec).
_WRAPPER = (
    "import ctypes,os,sys\n"
    "ctypes.CDLL(None).prctl(1, 9, 0, 0, 0)\n"
    "if os.getppid() != int(sys.argv[1]): os._exit(1)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


class _Spawner:
    """A thread that lives as long as the process and forks the children asked of it from
    other threads (``PR_SET_PDEATHSIG`` fires when the forking *thread* exits)."""

    def __init__(self) -> None:
        self._jobs: "queue.Queue[Any]" = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="lbh-spawner", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            fn, box, done = self._jobs.get()
            try:
                box.append((True, fn()))
            except BaseException as exc:  # handed back to the caller
                box.append((False, exc))
            done.set()

    def call(self, fn: Callable[[], Any]) -> Any:
        box: List[Any] = []
        done = threading.Event()
        self._jobs.put((fn, box, done))
        done.wait()
        ok, value = box[0]
        if not ok:
            raise value
        return value


_spawner: Optional[_Spawner] = None


def in_long_lived_thread(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in the main thread (held from signals) or, from another thread, in the
    spawner thread: the children it forks then die with the process, not with a thread."""
    global _spawner
    if threading.current_thread() is threading.main_thread():
        with held_signals():
            return fn()
    with _lock:
        if _spawner is None:
            _spawner = _Spawner()
    return _spawner.call(fn)


def spawn(argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen:
    """``subprocess.Popen(argv)`` for a child that dies with this process, even on kill -9
    (Linux: ``PR_SET_PDEATHSIG`` through a tiny exec wrapper; elsewhere a plain start)."""
    argv = [str(a) for a in argv]
    if sys.platform.startswith("linux"):
        argv = [sys.executable, "-I", "-S", "-c", _WRAPPER, str(os.getpid()), *argv]
    return in_long_lived_thread(lambda: subprocess.Popen(argv, **popen_kwargs))


def die_with_parent(parent_pid: int, poll_s: float = 0.25) -> None:
    """For a worker process, first thing: die when ``parent_pid`` dies, even on kill -9:
    the parent-death signal where there is one, and a watchdog thread that exits the process
    as soon as its parent changes (no queue or pipe write can then keep it alive)."""
    _set_pdeathsig(signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="lbh-parent-watch", daemon=True).start()


# -- the guardian ------------------------------------------------------------------------------

# Reads pids from stdin until EOF. "release" means the harness cleaned up itself. EOF
# without it means the harness died: stop the pids still running this folder's programs
# (checked by their command line, against pid reuse), then remove the folder.
_GUARDIAN = r"""
import os, shutil, signal, sys, time
for s in (signal.SIGINT, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)
folder = sys.argv[1]
pids, released = [], False
def ours(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return folder.encode() in f.read()
    except FileNotFoundError:
        return not os.path.isdir("/proc")
    except OSError:
        return False
def cleanup(*_):
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
        left = [p for p in pids if ours(p)]
        for p in left:
            try:
                os.kill(p, sig)
            except OSError:
                pass
        end = time.monotonic() + wait
        while left and time.monotonic() < end:
            time.sleep(0.05)
            left = [p for p in left if ours(p)]
        if not left:
            break
    shutil.rmtree(folder, ignore_errors=True)
    os._exit(0)
signal.signal(signal.SIGTERM, cleanup)
for line in sys.stdin:
    line = line.strip()
    if line == "release":
        released = True
    elif line.isdigit():
        pids.append(int(line))
if not released:
    cleanup()
"""


class Guardian:
    """A tiny process that outlives a killed harness just long enough to stop the programs
    it was told about and remove their folder. It learns of our death by its stdin pipe
    closing (the kernel closes it even on kill -9); :meth:`release` tells it that we
    cleaned up ourselves."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self._proc: Optional[subprocess.Popen] = in_long_lived_thread(lambda: subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _GUARDIAN, folder], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, text=True))

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc is not None else None

    def watch(self, pid: int) -> None:
        """Stop ``pid`` too if we die (its command line must name the folder)."""
        if self._proc is None or self._proc.stdin is None:
            return
        try:
            self._proc.stdin.write(f"{pid}\n")
            self._proc.stdin.flush()
        except (OSError, ValueError):
            pass

    def release(self, timeout_s: float = 5.0) -> None:
        """We stopped the programs and removed the folder: the guardian just exits."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            assert proc.stdin is not None
            proc.stdin.write("release\n")
            proc.stdin.close()
        except (OSError, ValueError):
            pass
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout_s)
