"""What trace context costs the harness's HTTP path: requests/s with no ``traceparent``, with
``traceparent`` at 1 % sampling, and at 100 % (each sampled request exports a client span over
OTLP/HTTP to a receiver process on loopback), all in this one invocation.

Two figures:

1. **Header cost, in-process** (no network): ns per request of ``TraceContext.next()`` at 0 %,
   1 % and 100 % sampling, with and without a tracer provider exporting spans. This is the
   whole per-request cost that tracing adds to the request path (the head is prebuilt; the
   header line is spliced in with one bytes concatenation).
2. **Requests/s end to end**: the HTTP target's callback face driven closed-loop (``--conc``
   requests always in flight) against a minimal ASGI server (``benchmarks/servers.py ok``,
   uvicorn, its own process) for ``--slice`` seconds per configuration, the configurations
   rotated over ``--rounds`` rounds so drift in machine load hits them alike. Ratios are
   against the untraced figure of the same run. On a small shared machine the server and
   the client share the cores; read the ratios, not the absolute numbers.

    .venv/bin/python benchmarks/http_tracing.py [--slice 3] [--rounds 3] [--conc 32]
    .venv/bin/python benchmarks/http_tracing.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any, Dict, List, Mapping, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from harness.engine.base import run_loop  # noqa: E402
from harness.targets.http import build_http_target  # noqa: E402
from harness.targets.tracecontext import Sampler, TraceContext  # noqa: E402

CONFIGS = (("no tracing", None), ("traceparent, 1 % sampled", "0.01"), ("traceparent, 100 % sampled", "1"))

_SINK = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
srv = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
print("ready", flush=True)
srv.serve_forever()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def header_cost(n: int) -> Dict[str, float]:
    """ns per ``next()`` call for each sampling share, without and with an exporting provider."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans):  # type: ignore[override]
            return SpanExportResult.SUCCESS

    out: Dict[str, float] = {}
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    for name, ratio, prov in (("0 %", 0.0, None), ("1 %, no exporter", 0.01, None), ("100 %, no exporter", 1.0, None),
                              ("1 %, spans exported", 0.01, provider), ("100 %, spans exported", 1.0, provider)):
        tc = TraceContext(Sampler("traceidratio", ratio), prov, rng=random.Random(1))
        nxt = tc.next
        reps = n if ratio < 1 or prov is None else n // 10
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter_ns()
            for _ in range(reps):
                _line, _tid, span = nxt("GET /")
                if span is not None:
                    span.end()
            best = min(best, (time.perf_counter_ns() - t0) / reps)
        out[name] = best
    base = b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: lbh\r\nAccept: */*\r\n"
    t0 = time.perf_counter_ns()
    line = b"traceparent: 00-" + b"0" * 55 + b"\r\n"
    for _ in range(n):
        _ = base + line + b"\r\n"
    out["splice (one concat)"] = (time.perf_counter_ns() - t0) / n
    provider.shutdown()
    return out


class _Call:
    __slots__ = ("handle", "finished", "label", "trace", "extra", "_done")

    def __init__(self, done) -> None:
        self.handle = None
        self.finished = False
        self.label = ""
        self.trace = None
        self.extra = None
        self._done = done

    def done(self, error: Optional[str] = None, flags: int = 0, detail: Any = None) -> None:
        if not self.finished:
            self.finished = True
            self._done(error)


async def _drive(target: Any, seconds: float, conc: int) -> Dict[str, float]:
    await target.aopen()
    counts = {"ok": 0, "error": 0}
    end = time.perf_counter() + seconds
    k = [0]
    finished = asyncio.get_running_loop().create_future()
    live = [0]

    def start() -> None:
        k[0] += 1
        live[0] += 1
        target.astart(k[0], _Call(on_done))

    def on_done(error: Optional[str]) -> None:
        live[0] -= 1
        counts["ok" if error is None else "error"] += 1
        if time.perf_counter() < end:
            start()
        elif live[0] == 0 and not finished.done():
            finished.set_result(None)

    t0 = time.perf_counter()
    cpu0 = time.thread_time()
    for _ in range(conc):
        start()
    await finished
    wall = time.perf_counter() - t0
    cpu = time.thread_time() - cpu0
    await target.aclose()
    return {"rps": counts["ok"] / wall, "errors": counts["error"], "cpu_us_per_req": 1e6 * cpu / max(counts["ok"], 1)}


def one_slice(url: str, ratio: Optional[str], otlp: str, seconds: float, conc: int) -> Dict[str, float]:
    env: Mapping[str, str] = {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": ratio or "0",
                              "OTEL_EXPORTER_OTLP_ENDPOINT": otlp, "OTEL_SERVICE_NAME": "lbh-bench"}
    target = build_http_target(url, payload=None, settings={"traceparent": ratio is not None}, max_in_flight=conc,
                               env=env)
    out: Dict[str, float] = {}

    async def main() -> None:
        out.update(await _drive(target, seconds, conc))

    try:
        run_loop(main())
    finally:
        t0 = time.perf_counter()
        target.close()  # flushes the spans still queued (not timed in the slice)
        out["flush_s"] = time.perf_counter() - t0
    return out


def wait_http(url: str, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer within 20 s")


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slice", type=float, default=3.0, help="seconds per configuration per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conc", type=int, default=32, help="requests in flight")
    ap.add_argument("--quick", action="store_true", help="a smoke run (1 s slices, 1 round)")
    args = ap.parse_args(argv)
    if args.quick:
        args.slice, args.rounds = 1.0, 1

    print("1. header cost per request, in-process (best of 3):")
    for name, ns in header_cost(20_000 if args.quick else 200_000).items():
        print(f"   {name:<24} {ns:8.0f} ns")

    port, sink_port = free_port(), free_port()
    tmp = tempfile.mkdtemp(prefix="lbh-bench-tracing-")
    server = subprocess.Popen([sys.executable, os.path.join(HERE, "servers.py"), "ok", str(port)],
                              stdout=open(os.path.join(tmp, "server.log"), "w"), stderr=subprocess.STDOUT)
    sink = subprocess.Popen([sys.executable, "-c", _SINK, str(sink_port)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_http(url, server, "the server")
        if sink.stdout.readline().strip() != "ready":
            raise RuntimeError("the OTLP receiver did not start")
        otlp = f"http://127.0.0.1:{sink_port}"
        one_slice(url, None, otlp, 0.5, args.conc)  # warm-up: connections, imports
        rows: Dict[str, List[Dict[str, float]]] = {name: [] for name, _ in CONFIGS}
        for r in range(args.rounds):
            order = list(CONFIGS) if r % 2 == 0 else list(reversed(CONFIGS))
            for name, ratio in order:
                rows[name].append(one_slice(url, ratio, otlp, args.slice, args.conc))
        print(f"\n2. requests/s, closed loop, {args.conc} in flight, {args.rounds} round(s) x {args.slice:g} s "
              f"(median of rounds; server: benchmarks/servers.py ok):")
        base = statistics.median(x["rps"] for x in rows[CONFIGS[0][0]])
        base_cpu = statistics.median(x["cpu_us_per_req"] for x in rows[CONFIGS[0][0]])
        for name, _ in CONFIGS:
            rps = statistics.median(x["rps"] for x in rows[name])
            cpu = statistics.median(x["cpu_us_per_req"] for x in rows[name])
            errs = sum(x["errors"] for x in rows[name])
            print(f"   {name:<28} {rps:9,.0f} req/s  ({rps / base:5.1%} of untraced)   "
                  f"loop CPU {cpu:6.1f} us/req (+{cpu - base_cpu:5.1f})" + (f"   errors {errs}" if errs else ""))
    finally:
        for p in (server, sink):
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
