"""Environment sessions: bounded in number, per client, and in idle time.

A session is one :class:`~workloads.TradingEnv` behind an id. Bounds, and why:

* ``max_sessions`` alive at once: each session holds its episode's feature columns, and
  an unbounded table is a memory leak any client can trigger.
* ``max_per_client`` per client address: one client (or one flood of unauthenticated
  resets) cannot take the whole table; beyond it the reset is refused
  (:class:`ClientSessionsFull`, answered 429).
* When the table is full, idle-expired sessions are swept first; then the least recently
  used session idle at least ``evict_idle`` seconds is closed to make room (an agent
  mid-episode steps far more often than that, so it keeps its state; sessions nobody
  steps cannot hold the table). If every session was used more recently the reset is
  refused (:class:`SessionsFull`, answered 503 with Retry-After = when the first one
  becomes evictable).
* ``idle_timeout`` without a call closes a session (a sweeper runs in the background
  and on every create). A session whose step is running is never swept nor evicted.
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

__all__ = ["ClientSessionsFull", "Session", "SessionStore", "SessionsFull", "SessionNotFound", "SessionBusy"]


class SessionsFull(Exception):
    """No room for another session; ``retry_after`` seconds until one may be freed."""

    def __init__(self, limit: int, retry_after: int) -> None:
        super().__init__(f"session_id: all {limit} sessions are in use; retry after {retry_after} s or DELETE one")
        self.retry_after = retry_after


class ClientSessionsFull(SessionsFull):
    """This client already holds ``max_per_client`` sessions."""

    def __init__(self, limit: int, retry_after: int) -> None:
        Exception.__init__(
            self, f"session_id: this client already holds {limit} sessions (max_sessions_per_client); "
            f"DELETE one or retry after {retry_after} s"
        )
        self.retry_after = retry_after


class SessionNotFound(KeyError):
    def __init__(self, session_id: str) -> None:
        super().__init__(session_id)
        self.message = (f"session_id: no session {session_id!r} (never created, deleted, or closed after idling "
                        "or evicted idle from a full table)")

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
    client: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


class SessionStore:
    """Thread-safe table of sessions. ``clock`` is injectable for tests. ``max_per_client``
    defaults to ``max_sessions`` (no per-client bound), ``evict_idle`` to ``idle_timeout``."""

    def __init__(
        self,
        max_sessions: int,
        idle_timeout: float,
        *,
        max_per_client: int | None = None,
        evict_idle: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_evict: Callable[[str, int], None] | None = None,
    ) -> None:
        self.max_sessions = max_sessions
        self.idle_timeout = idle_timeout
        self.max_per_client = min(max_per_client or max_sessions, max_sessions)
        self.evict_idle = min(evict_idle if evict_idle is not None else idle_timeout, idle_timeout)
        self._clock = clock
        self._on_evict = on_evict
        self._sessions: dict[str, Session] = {}
        self._per_client: dict[str, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def _remove_locked(self, session: Session) -> None:
        if self._sessions.pop(session.id, None) is None:
            return
        n = self._per_client.get(session.client, 0) - 1
        if n > 0:
            self._per_client[session.client] = n
        else:
            self._per_client.pop(session.client, None)

    def _sweep_locked(self, now: float) -> int:
        expired = [
            s for s in self._sessions.values() if now - s.last_used >= self.idle_timeout and not s.lock.locked()
        ]
        for s in expired:
            self._remove_locked(s)
        if expired and self._on_evict is not None:
            self._on_evict("idle", len(expired))
        return len(expired)

    def sweep(self) -> int:
        """Close idle-expired sessions; returns how many."""
        with self._lock:
            return self._sweep_locked(self._clock())

    def held_by(self, client: str) -> int:
        return self._per_client.get(client, 0)

    def check_room(self, client: str = "") -> None:
        """Raise :class:`SessionsFull` / :class:`ClientSessionsFull` if a create by ``client``
        would fail now (sweeping first; evicts nothing)."""
        with self._lock:
            self._room_locked(self._clock(), client, evict=False)

    def _room_locked(self, now: float, client: str, *, evict: bool) -> None:
        if self.max_per_client < self.max_sessions and self._per_client.get(client, 0) >= self.max_per_client:
            self._sweep_locked(now)
            mine = [s.last_used for s in self._sessions.values() if s.client == client]
            if len(mine) >= self.max_per_client:
                raise ClientSessionsFull(self.max_per_client, max(1, math.ceil(min(mine) + self.idle_timeout - now)))
        if len(self._sessions) < self.max_sessions:
            return
        self._sweep_locked(now)
        if len(self._sessions) < self.max_sessions:
            return
        idle = [s for s in self._sessions.values() if not s.lock.locked()]
        victim = min(idle, key=lambda s: s.last_used, default=None)
        if victim is not None and now - victim.last_used >= self.evict_idle:
            if evict:
                self._remove_locked(victim)
                if self._on_evict is not None:
                    self._on_evict("evicted", 1)
            return
        first = min(s.last_used for s in self._sessions.values())
        raise SessionsFull(self.max_sessions, max(1, math.ceil(first + self.evict_idle - now)))

    def create(self, env: Any, client: str = "") -> Session:
        """Store ``env`` under a new unguessable id for ``client``, or raise
        :class:`SessionsFull` (evicting one long-idle session if that makes room)."""
        with self._lock:
            now = self._clock()
            self._room_locked(now, client, evict=True)
            sid = secrets.token_urlsafe(16)
            session = self._sessions[sid] = Session(sid, env, now, now, client=client)
            self._per_client[client] = self._per_client.get(client, 0) + 1
            return session

    def acquire(self, session_id: str) -> Session:
        """The session, locked for one step (release with :meth:`release`); raises
        :class:`SessionNotFound` or :class:`SessionBusy`."""
        with self._lock:
            session = self._sessions.get(session_id)
            now = self._clock()
            if session is not None and now - session.last_used >= self.idle_timeout and not session.lock.locked():
                self._remove_locked(session)  # expired but not swept yet: same answer as swept
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
            session = self._sessions.get(session_id)
            if session is None:
                return False
            self._remove_locked(session)
            return True

    def clear(self) -> None:
        with self._lock:
            self._sessions.clear()
            self._per_client.clear()
