"""Targets with a known capacity and known flags, for the report, search and soak tests.

``k_servers`` is an M/D/k queue's servers: a semaphore of ``K`` permits, each call holds one
for ``SERVICE_S`` seconds (sleeping, so the GIL is free), so the target serves at most
``K / SERVICE_S`` calls per second, whatever the harness's thread count.
"""

from __future__ import annotations

import mmap
import threading
import time

K = 4
SERVICE_S = 0.02  # capacity K / SERVICE_S = 200 requests/s
_sem = threading.Semaphore(K)


def capacity_rps() -> float:
    return K / SERVICE_S


def k_servers() -> None:
    with _sem:
        deadline = time.perf_counter() + SERVICE_S
        # sleep most of it, then spin briefly: a plain sleep overshoots by the timer slack
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                return
            time.sleep(left if left > 0.002 else 0.0002)


def flagged(k: int) -> dict:
    """About 1 ms; every 3rd a cache hit, every 7th a fallback, every 50th an error."""
    if k % 50 == 49:
        raise RuntimeError("every fiftieth call fails")
    time.sleep(0.001)
    return {"cache_hit": k % 3 == 0, "fallback_used": k % 7 == 0}


def ordinal(k: int) -> tuple:
    return (k,)


_leak: list = []


def leaky() -> None:
    """Keeps 256 KiB per call: a leak the soak verdict must see. Anonymous mmap, every page
    written: resident at once, and never memory the allocator freed earlier (which would
    hide the growth from RSS)."""
    m = mmap.mmap(-1, 256 * 1024)
    m[::4096] = b"x" * (256 * 1024 // 4096)
    _leak.append(m)


def leak_reset() -> None:
    for m in _leak:
        m.close()
    _leak.clear()
