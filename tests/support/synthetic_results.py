"""Small results as ``harness run`` writes them (summary, windows, encoded histograms), built
from a recorder with known latencies: the trend and compare-page tests need several runs
with chosen start times, figures and scenarios, in milliseconds rather than seconds of load."""

from __future__ import annotations

import json

from harness.record.recorder import Recorder

__all__ = ["result"]


def result(run_id: str, started_at: str, *, ms: float = 10.0, n: int = 200, errors: int = 0, dropped: int = 0,
           duration: float = 10.0, name: str = "nightly", target: str = "features", **extra) -> dict:
    """A result of ``n`` requests of ``ms`` latency (the last ``errors`` of them failed,
    ``dropped`` more never ran) over ``duration`` s, as ``harness run`` writes it."""
    rec = Recorder()
    step = int(duration * 1e9 / (n + dropped))
    for i in range(n + dropped):
        t = i * step
        if i >= n:
            rec.record(target, "dropped", t, None, t + int(ms * 1e6))
        elif i >= n - errors:
            rec.record(target, "error", t, t, t + int(ms * 1e6), error_type="ValueError")
        else:
            rec.record(target, "ok", t, t, t + int(ms * 1e6))
    doc = {"schema": "harness.result/1", "run_id": run_id, "status": "completed", "started_at": started_at,
           "elapsed_s": duration, "scenario": {"name": name, "target": target, "duration": duration},
           "summary": rec.summary(), "timeseries": rec.windows(), "generator": {"valid": True},
           "verdict": {"exit_code": 0}, "histograms": rec.encode()}
    doc.update(extra)
    return json.loads(json.dumps(doc))
