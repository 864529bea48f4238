"""Environment sessions: bounded in number and in idle time.

A session is one :class:`~workloads.TradingEnv` behind an id. Bounds, and why:

* ``max_sessions`` alive at once: each session holds its episode's feature columns, and
  an unbounded table is a memory leak any client can trigger. When the table is full,
  idle-expired sessions are swept first; if it is still full the reset is refused
  (:class:`SessionsFull`, answered 503 with Retry-After = when the oldest session
  expires). Live sessions are never evicted to make room: an agent mid-episode would
  lose its state with no way to know why.
* ``idle_timeout`` without a call closes a session (a sweeper runs in the background
  and on every create). A session whose step is running is never swept.
* one step at a time per session (a non-blocking lock): a second concurrent step on the
  same session is a client bug, answered 409 rather than queued.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Session", "SessionStore", "SessionsFull", "SessionNotFound", "SessionBusy"]


class SessionsFull(Exception):
    """No room for another session; ``retry_after`` seconds until the oldest may expire."""

    def __init__(self, limit: int, retry_after: int) -> None:
        super().__init__(f"session_id: all {limit} sessions are in use; retry after {retry_after} s or DELETE one")
        self.retry_after = retry_after


class SessionNotFound(KeyError):
    def __init__(self, session_id: str) -> None:
        super().__init__(session_id)
        self.message = f"session_id: no session {session_id!r} (never created, deleted, or closed after idling)"

    def __str__(self) -> str:
        return self.message


class SessionBusy(Exception):
    def __init__(self, session_id: str) -> None:
        super().__init__(f"session_id: session {session_id!r} is already running a step; steps are sequential")


@dataclass
class Session:
    id: str
    env: Any
    created: float
    last_used: float
    steps: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class SessionStore:
    """Thread-safe table of sessions. ``clock`` is injectable for tests."""

    def __init__(
        self,
        max_sessions: int,
        idle_timeout: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_evict: Callable[[str, int], None] | None = None,
    ) -> None:
        self.max_sessions = max_sessions
        self.idle_timeout = idle_timeout
        self._clock = clock
        self._on_evict = on_evict
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def _sweep_locked(self, now: float) -> int:
        expired = [
            s for s in self._sessions.values() if now - s.last_used >= self.idle_timeout and not s.lock.locked()
        ]
        for s in expired:
            del self._sessions[s.id]
        if expired and self._on_evict is not None:
            self._on_evict("idle", len(expired))
        return len(expired)

    def sweep(self) -> int:
        """Close idle-expired sessions; returns how many."""
        with self._lock:
            return self._sweep_locked(self._clock())

    def check_room(self) -> None:
        """Raise :class:`SessionsFull` if a create would fail now (sweeping first)."""
        with self._lock:
            self._full_locked(self._clock())

    def _full_locked(self, now: float) -> None:
        if len(self._sessions) < self.max_sessions:
            return
        self._sweep_locked(now)
        if len(self._sessions) >= self.max_sessions:
            oldest = min(s.last_used for s in self._sessions.values())
            retry = max(1, math.ceil(oldest + self.idle_timeout - now))
            raise SessionsFull(self.max_sessions, retry)

    def create(self, env: Any) -> Session:
        """Store ``env`` under a new unguessable id, or raise :class:`SessionsFull`."""
        with self._lock:
            now = self._clock()
            self._full_locked(now)
            sid = secrets.token_urlsafe(16)
            session = self._sessions[sid] = Session(sid, env, now, now)
            return session

    def acquire(self, session_id: str) -> Session:
        """The session, locked for one step (release with :meth:`release`); raises
        :class:`SessionNotFound` or :class:`SessionBusy`."""
        with self._lock:
            session = self._sessions.get(session_id)
            now = self._clock()
            if session is not None and now - session.last_used >= self.idle_timeout and not session.lock.locked():
                del self._sessions[session_id]  # expired but not swept yet: same answer as swept
                if self._on_evict is not None:
                    self._on_evict("idle", 1)
                session = None
            if session is None:
                raise SessionNotFound(session_id)
            if not session.lock.acquire(blocking=False):
                raise SessionBusy(session_id)
            session.last_used = now
            return session

    def release(self, session: Session) -> None:
        """End a step (any thread may call it)."""
        session.last_used = self._clock()
        session.steps += 1
        session.lock.release()

    def delete(self, session_id: str) -> bool:
        with self._lock:
            return self._sessions.pop(session_id, None) is not None

    def clear(self) -> None:
        with self._lock:
            self._sessions.clear()
