"""Deterministic targets the harness tests drive (importable as ``tests.support.targets_for_tests:...``)."""

from __future__ import annotations

import asyncio
import threading
import time

_state = {"blocked": False}
_lock = threading.Lock()


def noop() -> None:
    return None


def block_once(seconds: float = 0.5, after_s: float = 1.0, t0: list = []) -> None:  # noqa: B006
    """Blocks exactly once, for ``seconds``, on the first call made ``after_s`` after the first call."""
    now = time.monotonic()
    with _lock:
        if not t0:
            t0.append(now)
        fire = not _state["blocked"] and now - t0[0] >= after_s
        if fire:
            _state["blocked"] = True
    if fire:
        time.sleep(seconds)


def reset() -> None:
    _state["blocked"] = False
    block_once.__defaults__[2].clear()  # type: ignore[index]


def sleep_ms(ms: float) -> None:
    time.sleep(ms / 1000.0)


def fail_every_tenth(k: int) -> int:
    if k % 10 == 0:
        raise ValueError("every tenth call fails")
    return k


def ordinal_payload(k: int) -> tuple:
    return (k,)


async def async_sleep_ms(ms: float = 2.0) -> str:
    await asyncio.sleep(ms / 1000.0)
    return "ok"


async def async_hang() -> None:
    await asyncio.sleep(3600)
