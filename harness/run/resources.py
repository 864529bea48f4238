"""Once-a-second resource samples (psutil): the process's CPU and RSS, system memory, and
the network bytes the OS counted over the measured window.

The harness's own CPU is part of its self-check: a generator that saturates the CPU
measures its own queueing, not the target.

Network bytes come from the OS's per-interface counters (``psutil.net_io_counters``): read
when the sampler starts and when it stops, the difference is the traffic of the measured
window, per interface and in all. They count every process on the machine (the target too,
when it runs here: loopback traffic is counted once sent and once received on ``lo``), so
they are the wire's view, next to the HTTP client's own bytes in the summary. Where psutil
cannot read them (no /proc/net/dev, a sandbox), ``network`` says ``source: unavailable``.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import psutil

__all__ = ["ResourceSampler", "net_counters", "network_delta"]


NetCounters = Optional[Dict[str, Tuple[int, int]]]


def net_counters() -> NetCounters:
    """``{interface: (bytes_sent, bytes_received)}`` from the OS now; None when unreadable."""
    try:
        counters = psutil.net_io_counters(pernic=True)
    except (OSError, RuntimeError, psutil.Error):
        return None
    if not counters:
        return None
    return {nic: (int(c.bytes_sent), int(c.bytes_recv)) for nic, c in counters.items()}


def network_delta(before: NetCounters, after: NetCounters) -> Dict[str, Any]:
    """The ``network`` section of a result: bytes sent/received between two readings, in
    all and per interface (an interface present in both; a counter that went backwards,
    a wrapped or reset one, counts 0)."""
    if before is None or after is None:
        return {"source": "unavailable"}
    interfaces: Dict[str, Dict[str, int]] = {}
    for nic in sorted(set(before) & set(after)):
        (s0, r0), (s1, r1) = before[nic], after[nic]
        interfaces[nic] = {"bytes_sent": max(s1 - s0, 0), "bytes_received": max(r1 - r0, 0)}
    return {"source": "interface",
            "bytes_sent": sum(v["bytes_sent"] for v in interfaces.values()),
            "bytes_received": sum(v["bytes_received"] for v in interfaces.values()),
            "interfaces": interfaces}


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
        self._net0: NetCounters = None
        self._net1: NetCounters = None

    def start(self) -> "ResourceSampler":
        self._t0 = self._clock()
        for proc in [self._proc, *self._extra]:
            try:
                proc.cpu_percent(None)  # prime: the first reading is always 0
            except psutil.Error:
                pass
        psutil.cpu_percent(None)
        self._cpu_t0 = self._proc.cpu_times()
        self._net0 = net_counters()
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
        self._net1 = net_counters()
        self.sample()
        self._cpu_seconds = self.cpu_seconds()
        self._wall_seconds = self._clock() - self._t0

    def cpu_seconds(self) -> float:
        """This process's CPU seconds (user + system) since ``start()`` (workers excluded)."""
        now = self._proc.cpu_times()
        return (now.user + now.system) - (self._cpu_t0.user + self._cpu_t0.system)

    def network(self) -> Dict[str, Any]:
        """Bytes the OS counted from ``start()`` to ``stop()`` (until now while running):
        :func:`network_delta`."""
        return network_delta(self._net0, self._net1 if self._net1 is not None else net_counters())

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
