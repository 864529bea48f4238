"""A recorder that keeps every record: tests of the executors need per-request times, not
histograms."""

from __future__ import annotations

import threading


class ListRecorder:
    """Keeps every record: the tests need per-request times, not histograms."""

    def __init__(self) -> None:
        self.rows = []
        self.details = []  # (target, error type, detail) of errors recorded with one
        self.exemplars = {}
        self._lock = threading.Lock()

    def record(self, target, outcome, intended, start, end, error_type=None, flags=0, detail=None):
        with self._lock:
            self.rows.append((target, outcome, intended, start, end, error_type, flags))
            if detail is not None:
                self.details.append((target, error_type, detail))

    def record_dropped(self, target, intended_ns, end_ns):
        """The bulk form the executors use for a backlog (one row each, as :meth:`record`)."""
        with self._lock:
            self.rows.extend((target, "dropped", int(t), None, end_ns, None, 0) for t in intended_ns)

    def wants_detail(self, target, error_type):
        return True

    def set_exemplar(self, target, trace_id, latency_s, unix_time):
        self.exemplars[target] = (trace_id, latency_s, unix_time)
