"""Payloads for ``tests.support.targets_for_tests:sleep_ms`` giving a known latency spread."""

from __future__ import annotations


def around_150ms(k: int) -> tuple:
    """Request k sleeps 120..179 ms, spread evenly (37 is prime to 60): a run at ~150 ms."""
    return (120 + (37 * k) % 60,)
