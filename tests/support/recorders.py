"""A recorder that keeps every record: tests of the executors need per-request times, not
histograms."""

from __future__ import annotations

import threading


class ListRecorder:
    """Keeps every record: the tests need per-request times, not histograms."""

    def __init__(self) -> None:
        self.rows = []
        self._lock = threading.Lock()

    def record(self, target, outcome, intended, start, end, error_type=None, flags=0):
        with self._lock:
            self.rows.append((target, outcome, intended, start, end, error_type, flags))
