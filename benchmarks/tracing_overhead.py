"""What tracing costs the real service: p50/p99 of ``POST /v1/features`` untraced, at 1 %
and at 100 % sampling, exporting over OTLP/HTTP to a protocol-level receiver on loopback
(a child process that decodes every ExportTraceServiceRequest and counts its spans), and
at 100 % against a dead collector endpoint; then how long SIGTERM -> exit takes.

Every configuration runs in this one invocation against ``workloads serve`` (a process
each) at the same fixed open-loop rate on loopback, with the cache bypassed so every
request runs the model. All services are up at once and take the load in turns of
``--slice`` seconds, rotated over ``--slices`` rounds, so drift in machine load hits the
configurations alike; a second untraced service (the A/A control) shows how far two
identical services differ in the same run. Rounds in which the load generator itself
woke up late (the machine busy with other work) are also left out, for all alike, in
the "quiet" columns. Ratios are against the untraced p99 of the same run.
``--compare-tree DIR`` runs every configuration a second time with the service from
another source tree (the code before a change), in the same rounds.

    .venv/bin/python benchmarks/tracing_overhead.py [--rate 50] [--slice 2] [--slices 20]
    .venv/bin/python benchmarks/tracing_overhead.py --compare-tree /tmp/before   # before/after
    .venv/bin/python benchmarks/tracing_overhead.py --quick                      # a smoke run

Targets (issue 15, item 8): p99 at 100 % <= 1.5x untraced, at 1 % <= 1.1x; shutdown with
a dead collector well inside the Kubernetes grace period (the export bound,
``OTEL_BSP_EXPORT_TIMEOUT``, default 5 s, plus the service's drain).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Mapping, Optional, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


# --- a protocol-level OTLP/HTTP receiver ------------------------------------------------


class _Receiver(BaseHTTPRequestHandler):
    """Accepts ``POST /v1/traces`` protobuf bodies, counts spans, answers 200 (an empty
    ``ExportTraceServiceResponse``), as a collector's OTLP/HTTP receiver does."""

    protocol_version = "HTTP/1.1"
    spans = 0
    requests = 0
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        n = 0
        try:
            from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

            req = ExportTraceServiceRequest.FromString(body)
            n = sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
        except Exception:  # noqa: BLE001 - a body we cannot parse is still counted as a request
            pass
        with _Receiver.lock:
            _Receiver.requests += 1
            _Receiver.spans += n
        self.send_response(200 if self.path == "/v1/traces" else 404)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


    def do_GET(self) -> None:  # noqa: N802 - the benchmark reads the span count here
        body = str(_Receiver.spans).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve_receiver() -> None:
    """Run the receiver in this process (a child of the benchmark, so that decoding what
    the service exports never competes with the load generator for one GIL)."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    srv.daemon_threads = True
    print(srv.server_port, flush=True)
    srv.serve_forever()


class Receiver:
    """The OTLP/HTTP receiver in a child process; ``spans()`` asks it how many it decoded."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve-receiver"],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.url = f"http://127.0.0.1:{self.port}"

    def spans(self) -> int:
        with urllib.request.urlopen(self.url + "/count", timeout=10) as r:
            return int(r.read())

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def dead_endpoint() -> str:
    """A loopback port nobody listens on (bound, then closed): connections are refused."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


# --- a tiny open-loop HTTP/1.1 load generator ---------------------------------------------


async def _one(pool: "asyncio.Queue[Tuple[asyncio.StreamReader, asyncio.StreamWriter]]", host: str, port: int,
               request: bytes, out: List[float], statuses: Dict[int, int]) -> None:
    reader, writer = await pool.get()
    t0 = time.perf_counter()
    try:
        writer.write(request)
        status_line = await reader.readline()
        length = 0
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        await reader.readexactly(length)
        out.append(time.perf_counter() - t0)
        status = int(status_line.split()[1])
        statuses[status] = statuses.get(status, 0) + 1
    except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
        statuses[-1] = statuses.get(-1, 0) + 1
        writer.close()
        reader, writer = await asyncio.open_connection(host, port)
    pool.put_nowait((reader, writer))


async def _lag_probe(stop: asyncio.Event, worst: List[float]) -> None:
    """How late a 2 ms sleep wakes up in the load generator: a stall of the whole machine
    (other programs' load) shows here, since the generator is idle most of the time."""
    while not stop.is_set():
        t0 = time.perf_counter()
        await asyncio.sleep(0.002)
        worst[0] = max(worst[0], time.perf_counter() - t0 - 0.002)


async def _drive(host: str, port: int, requests: List[bytes], rate: float, duration: float,
                 connections: int) -> Tuple[List[float], Dict[int, int], float]:
    """``rate`` requests/s for ``duration`` s: (latencies, status counts, the generator's
    worst wake-up lag in that time)."""
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection(host, port))
    out: List[float] = []
    statuses: Dict[int, int] = {}
    worst = [0.0]
    stop = asyncio.Event()
    probe = asyncio.ensure_future(_lag_probe(stop, worst))
    loop = asyncio.get_running_loop()
    start = loop.time()
    n = int(rate * duration)
    tasks = []
    for i in range(n):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(_one(pool, host, port, requests[i % len(requests)], out, statuses)))
    await asyncio.gather(*tasks)
    stop.set()
    await probe
    while not pool.empty():
        _, w = pool.get_nowait()
        w.close()
    return out, statuses, worst[0]


def build_requests(n: int) -> List[bytes]:
    from workloads.market_data import MarketDataGenerator

    reqs = []
    for seed in range(n):
        body = json.dumps({"window": MarketDataGenerator(seed).window(30).astype(float).tolist()}).encode()
        reqs.append(b"POST /v1/features HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    return reqs


# --- the service under test -----------------------------------------------------------

LISTENING = re.compile(r"workloads serve: listening on http://127\.0\.0\.1:(\d+)")


class Service:
    """``workloads serve`` from a source tree (this checkout, or ``--compare-tree``) on a
    free loopback port; ready when ``/readyz`` answers 200."""

    def __init__(self, tree: str, env: Mapping[str, str]) -> None:
        self.tree = tree
        # PYTHONSAFEPATH: ``-m`` must not put the caller's folder first; the tree decides.
        self.env = {**os.environ, **env, "PYTHONPATH": tree, "PYTHONSAFEPATH": "1",
                    "LBH_SERVICE_DRAIN_DELAY": "0"}  # nothing routes by readiness here
        self.proc: Optional[subprocess.Popen] = None
        self.port = 0
        self.log: List[str] = []

    def start(self, timeout: float = 180.0) -> "Service":
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "workloads.cli", "serve", "--host", "127.0.0.1", "--port", "0",
             "--log-level", "warning", "--max-concurrency", "16"],
            cwd=self.tree, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        found = threading.Event()

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.log.append(line.rstrip())
                m = LISTENING.search(line)
                if m and not self.port:
                    self.port = int(m.group(1))
                    found.set()
            found.set()

        threading.Thread(target=pump, daemon=True).start()
        end = time.monotonic() + timeout
        found.wait(timeout)
        while self.port:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=5) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > end:
                break
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"workloads serve ({self.tree}) did not become ready:\n" + "\n".join(self.log[-20:]))

    def stop(self) -> float:
        """SIGTERM; seconds until the process exited."""
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.kill()
        return time.monotonic() - t0

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


# --- the run: every configuration's service up at once, load in rotating slices ---------


def _quantile(sorted_values: List[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def run(configs: List[Tuple[str, str, Dict[str, str]]], requests: List[bytes], rate: float, slice_s: float,
        slices: int, connections: int, receiver: "Receiver", lag_limit_s: float) -> Dict[str, Dict[str, float]]:
    """One service process per configuration, all started first; then ``slices`` rounds
    in which each service in turn gets ``slice_s`` seconds of load (only one is loaded at
    a time, so none takes CPU from another, and a burst of machine load lands on the
    configurations alike instead of on whichever ran at that minute). A round in which
    the load generator itself woke up late by ``lag_limit_s`` or more (the machine was
    busy with something else) is left out of the "quiet" figures for every configuration
    alike. Then SIGTERM to each, timed to its exit."""
    services: List[Tuple[str, Service]] = []
    try:
        for label, tree, env in configs:
            svc = Service(tree, env)
            services.append((label, svc))
            svc.start()
        for label, svc in services:  # warm-up: model, pools, keep-alive connections
            asyncio.run(_drive("127.0.0.1", svc.port, requests, rate, 2.0, connections))
        latencies: Dict[str, List[float]] = {label: [] for label, _, _ in configs}
        quiet: Dict[str, List[float]] = {label: [] for label, _, _ in configs}
        errors: Dict[str, int] = {label: 0 for label, _, _ in configs}
        quiet_rounds = 0
        spans_before = receiver.spans()
        for i in range(slices):
            order = services[i % len(services):] + services[:i % len(services)]
            this_round: Dict[str, List[float]] = {}
            worst_lag = 0.0
            for label, svc in order:
                lat, statuses, lag = asyncio.run(_drive("127.0.0.1", svc.port, requests, rate, slice_s, connections))
                this_round[label] = lat
                worst_lag = max(worst_lag, lag)
                latencies[label] += lat
                errors[label] += sum(v for k, v in statuses.items() if k != 200)
            if worst_lag < lag_limit_s:  # a round the rest of the machine left alone: kept for all alike
                quiet_rounds += 1
                for label, lat in this_round.items():
                    quiet[label] += lat
            print(f"  round {i + 1}/{slices}: worst generator lag {worst_lag * 1e3:6.1f} ms"
                  f"{'' if worst_lag < lag_limit_s else '  (disturbed: left out of the quiet figures)'}",
                  flush=True)
        spans = receiver.spans() - spans_before
        # SIGTERM right after a second of load, with spans still queued for export (the
        # case where an unreachable collector held the exit for 30 s)
        shutdown: Dict[str, float] = {}
        for label, svc in services:
            asyncio.run(_drive("127.0.0.1", svc.port, requests, rate, 1.0, connections))
            shutdown[label] = svc.stop()
    finally:
        for _, svc in services:
            svc.kill()
    out = {}
    for label, _, _ in configs:
        lat = sorted(latencies[label])
        q = sorted(quiet[label])
        out[label] = {"p50_ms": _quantile(lat, 0.50) * 1e3, "p99_ms": _quantile(lat, 0.99) * 1e3,
                      "p999_ms": _quantile(lat, 0.999) * 1e3, "n": float(len(lat)),
                      "quiet_n": float(len(q)), "quiet_p50_ms": _quantile(q, 0.50) * 1e3,
                      "quiet_p99_ms": _quantile(q, 0.99) * 1e3,
                      "errors": float(errors[label]), "shutdown_s": shutdown[label]}
    out["_run"] = {"spans": float(spans), "quiet_rounds": float(quiet_rounds)}
    return out


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=50.0, help="requests per second (open loop)")
    ap.add_argument("--slice", type=float, default=2.0, help="seconds of load per configuration per round")
    ap.add_argument("--slices", type=int, default=20, help="rounds (each configuration gets --slice s per round)")
    ap.add_argument("--connections", type=int, default=16, help="keep-alive connections of the load generator")
    ap.add_argument("--lag-limit-ms", type=float, default=10.0,
                    help="a round whose load generator woke up this late is left out of the quiet figures")
    ap.add_argument("--compare-tree", metavar="DIR",
                    help="also run every configuration with the service from this source tree (say, "
                         "`git worktree add /tmp/before HEAD~1`), in the same rounds: before/after in one run")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 3 rounds")
    ap.add_argument("--serve-receiver", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve_receiver:
        serve_receiver()
        return 0
    if args.quick:
        args.slices = 3

    receiver = Receiver()
    live = receiver.url
    dead = dead_endpoint()
    base = {"LBH_FAULT_CACHE_OUTAGE": "1", "OTEL_SERVICE_NAME": "lbh-bench", "OTEL_SDK_DISABLED": "false"}
    for k in list(os.environ):
        if k.startswith("OTEL_") and k not in base:
            base[k] = ""  # this run decides what is traced, not the caller's shell
    variants: List[Tuple[str, Dict[str, str]]] = [
        ("untraced", {**base, "OTEL_TRACES_EXPORTER": "none"}),
        # the same again: how far two identical services differ in this run (the noise floor)
        ("untraced again (A/A control)", {**base, "OTEL_TRACES_EXPORTER": "none"}),
        ("1 % sampled, live collector", {**base, "OTEL_EXPORTER_OTLP_ENDPOINT": live,
                                          "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                                          "OTEL_TRACES_SAMPLER_ARG": "0.01"}),
        ("100 % sampled, live collector", {**base, "OTEL_EXPORTER_OTLP_ENDPOINT": live,
                                            "OTEL_TRACES_SAMPLER": "parentbased_always_on"}),
        ("100 % sampled, dead collector", {**base, "OTEL_EXPORTER_OTLP_ENDPOINT": dead,
                                            "OTEL_TRACES_SAMPLER": "parentbased_always_on"}),
    ]
    trees = [("", REPO)] + ([("before: ", os.path.abspath(args.compare_tree))] if args.compare_tree else [])
    configs = [(prefix + label, tree, env) for prefix, tree in trees for label, env in variants]
    try:
        res = run(configs, build_requests(64), args.rate, args.slice, args.slices, args.connections, receiver,
                  args.lag_limit_ms / 1e3)
    finally:
        receiver.close()

    def untraced(label: str, key: str) -> float:
        return res[label.split(": ")[0] + ": untraced" if ": " in label else "untraced"][key]

    print(f"\nPOST /v1/features, {args.rate:g} rps open loop on loopback, cache bypassed; "
          f"{args.slices} rounds x {args.slice:g} s per configuration, rotated; "
          f"{res['_run']['quiet_rounds']:.0f} quiet rounds (generator lag < {args.lag_limit_ms:g} ms)")
    print(f"{'':<40} {'--------- all rounds ---------':>38}   {'------ quiet rounds ------':>34}")
    print(f"{'configuration':<40} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'p99/untr.':>10}   "
          f"{'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'p99/untr.':>10} {'errors':>6} {'SIGTERM->exit s':>16}")
    for label, _, _ in configs:
        r = res[label]
        bq = untraced(label, "quiet_p99_ms")
        print(f"{label:<40} {r['n']:6.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
              f"{r['p99_ms'] / untraced(label, 'p99_ms'):9.2f}x   {r['quiet_n']:6.0f} {r['quiet_p50_ms']:8.2f} "
              f"{r['quiet_p99_ms']:8.2f} {r['quiet_p99_ms'] / bq if bq == bq and bq else float('nan'):9.2f}x "
              f"{r['errors']:6.0f} {r['shutdown_s']:16.2f}")
    print(f"spans received by the OTLP/HTTP receiver: {res['_run']['spans']:.0f}")
    print("the A/A control is a second untraced service: its ratio is the noise floor of this run")
    print("targets: p99 at 1 % <= 1.10x, at 100 % <= 1.50x the untraced p99; SIGTERM->exit with a dead "
          "collector well inside terminationGracePeriodSeconds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
