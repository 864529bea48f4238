"""Once-a-second resource samples (psutil): the process's CPU and RSS, system memory.

The harness's own CPU is part of its self-check: a generator that saturates the CPU
measures its own queueing, not the target.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, List, Optional

import psutil

__all__ = ["ResourceSampler"]


class ResourceSampler:
    """Samples in a daemon thread until ``stop()``; ``samples`` is bounded (``max_samples``)."""

    def __init__(self, interval_s: float = 1.0, max_samples: int = 7_200, clock=time.monotonic,
                 extra_pids=()) -> None:
        self.interval_s = interval_s
        self.max_samples = max_samples
        self.samples: List[Dict[str, Any]] = []
        self._proc = psutil.Process()
        self._extra = []
        for pid in extra_pids:  # worker processes: their CPU and memory are the generator's too
            try:
                self._extra.append(psutil.Process(pid))
            except psutil.Error:
                pass
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._clock = clock
        self._t0 = clock()
        self.cpu_count = psutil.cpu_count() or 1

    def start(self) -> "ResourceSampler":
        self._t0 = self._clock()
        for proc in [self._proc, *self._extra]:
            try:
                proc.cpu_percent(None)  # prime: the first reading is always 0
            except psutil.Error:
                pass
        psutil.cpu_percent(None)
        self._cpu_t0 = self._proc.cpu_times()
        self._thread = threading.Thread(target=self._loop, name="lbh-resources", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def sample(self) -> Dict[str, Any]:
        vm = psutil.virtual_memory()
        cpu = rss = threads = 0
        for proc in [self._proc, *self._extra]:
            try:
                with proc.oneshot():
                    cpu += proc.cpu_percent(None)
                    rss += proc.memory_info().rss
                    threads += proc.num_threads()
            except psutil.Error:
                pass  # a worker that already exited
        s = {
            "t_s": round(self._clock() - self._t0, 3),
            "process_cpu_percent": cpu,
            "process_rss_bytes": rss,
            "process_threads": threads,
            "system_cpu_percent": psutil.cpu_percent(None),
            "system_memory_used_percent": vm.percent,
            "system_memory_available_bytes": vm.available,
        }
        if len(self.samples) >= self.max_samples:
            del self.samples[: len(self.samples) // 2 : 2]  # thin the oldest half, keep the span
        self.samples.append(s)
        return s

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.sample()
        self._cpu_seconds = self.cpu_seconds()
        self._wall_seconds = self._clock() - self._t0

    def cpu_seconds(self) -> float:
        """This process's CPU seconds (user + system) since ``start()`` (workers excluded)."""
        now = self._proc.cpu_times()
        return (now.user + now.system) - (self._cpu_t0.user + self._cpu_t0.system)

    def summary(self) -> Dict[str, Any]:
        cpu = [s["process_cpu_percent"] for s in self.samples[1:]] or [0.0]
        rss = [s["process_rss_bytes"] for s in self.samples] or [0]
        return {
            "cpu_count": self.cpu_count,
            "process_cpu_percent_mean": sum(cpu) / len(cpu),
            "process_cpu_percent_max": max(cpu),
            "process_rss_bytes_max": max(rss),
            "process_rss_bytes_first": rss[0],
            "process_rss_bytes_last": rss[-1],
            "samples": len(self.samples),
            "process_cpu_seconds": getattr(self, "_cpu_seconds", None),
            "wall_seconds": getattr(self, "_wall_seconds", None),
        }
