"""Faulty clients against the real service, re-measuring the audit of issue 15 (items 1, 2, 3
and 10): each measurement starts ``workloads serve`` in its own process on loopback (service
defaults unless a line says otherwise) and prints one line of figures; nothing is asserted.

1. **slow body** — 16 raw connections send ``POST /v1/features`` headers announcing 1000
   bytes, send 5, and stall; meanwhile real feature requests are sent one after another.
   Prints how many got 200 and how fast, then when and how the server closed each stalled
   connection (the body read deadline, default 2 s: expect 408).
2. **big bodies** — 8 clients post valid ~1 MiB bodies to ``/v1/risk/var`` in a loop next to
   an open-loop stream of ``--rate`` feature requests/s: counts (200 / refused 503+429 /
   504) and the admitted latency.
3. **headers** — (a) 8 connections each send one unterminated header, up to 100 MB, until the
   server answers or closes: bytes sent, the answer, the service's RSS before/after.
   (b) **flood** — ``--flood`` idle TCP connections: the service's open file descriptors
   before, at the peak and some seconds later, what happened to our sockets, and whether
   ``/readyz`` answered during the flood.
4. **drain** (item 10) — ``--drain-delay 2`` and a steady stream of keep-alive requests, then
   SIGTERM: how long ``/readyz`` said 503 before the listener closed, how many requests
   completed or were cut (reset), how new connections were refused.

The audit's figures before the fixes, for comparison: (1) every real request 503 for as
long as the 16 stalled (20 s tried); (2) 686 of 1,000 feature requests refused, admitted p99
3.3 s against a 2 s request timeout, no 504; (3) 100 MB of headers accepted per connection,
RSS 320 -> 1,121 MB for 8; 20,000 idle connections exhausted the fds and /readyz stopped
answering; (10) a few ConnectionResets when the listener closed, /readyz draining for only
15-170 ms before.

Client and service share this machine's CPUs (the header line gives their count and the
load average); latencies include the client's own scheduling.

    .venv/bin/python benchmarks/service_faults.py                 # under a minute
    .venv/bin/python benchmarks/service_faults.py --quick         # a smoke run (~30 s)
    .venv/bin/python benchmarks/service_faults.py --only flood,drain --flood 3000
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import re
import resource
import select
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import httpx  # noqa: E402

from workloads import MarketDataGenerator  # noqa: E402
from workloads.service import ServiceProcess  # noqa: E402

WINDOW = MarketDataGenerator(7).window(30).astype(float).tolist()
FEATURES = json.dumps({"window": WINDOW}).encode()
JSON = {"content-type": "application/json"}
SERVE = ["--log-level", "warning"]
HOST = "127.0.0.1"
MEASUREMENTS = ("slow-body", "big-bodies", "headers", "flood", "drain")


# --- small helpers ---------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.0f} ms"


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in [0, 1]); NaN for no values."""
    if not values:
        return math.nan
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(q * len(v)) - 1))]


def tally(items: Iterable[object]) -> str:
    c = Counter(items)
    return ", ".join(f"{n}x {k}" for k, n in c.most_common()) or "none"


def size(n: float) -> str:
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:.0f} B"


def proc_status_mb(pid: int, field: str) -> float:
    """``VmRSS``/``VmHWM`` of a process, in MB (NaN if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def status_line(data: bytes) -> str:
    return data.split(b"\r\n", 1)[0].decode("latin-1") if data else "(closed, no answer)"


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection((HOST, port), timeout=timeout)


def probe(port: int, path: str, timeout: float = 5.0) -> tuple[str, float]:
    """``GET path`` on a new connection (as a Kubernetes probe does), without building an
    httpx client per call: ("<status> <json status field>" or what went wrong, seconds)."""
    t = time.perf_counter()
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
        try:
            field = json.loads(body).get("status", "")
        except (ValueError, AttributeError):
            field = ""
        out = f"{r.status} {field}".strip()
    except ConnectionRefusedError:
        out = "refused"
    except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected) as exc:
        out = f"cut ({type(exc).__name__})"
    except socket.timeout:
        out = "timeout"
    except OSError as exc:
        out = type(exc).__name__
    finally:
        conn.close()
    return out, time.perf_counter() - t


def rejected(url: str) -> dict[str, float]:
    """``lbh_http_connections_rejected_total`` per reason, from the service's /metrics."""
    out: dict[str, float] = {}
    try:
        text = httpx.get(url + "/metrics", timeout=10).text
    except httpx.HTTPError:
        return out
    for m in re.finditer(r'^lbh_http_connections_rejected_total\{reason="(\w+)"\} (\S+)', text, re.M):
        out[m.group(1)] = float(m.group(2))
    return out


def sample_max(fn: Callable[[], float], stop: threading.Event, every: float = 0.05) -> list[float]:
    """Start a thread that keeps the max of ``fn()`` in the returned one-item list until ``stop``."""
    peak = [fn()]

    def loop() -> None:
        while not stop.wait(every):
            peak[0] = max(peak[0], fn())

    threading.Thread(target=loop, name="sampler", daemon=True).start()
    return peak


def close_all(socks: Iterable[socket.socket]) -> None:
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


# --- 1. slow body -------------------------------------------------------------------------------


def read_to_close(sock: socket.socket, limit: float) -> tuple[bytes, float | None]:
    """Everything the server sends until it closes, and when (monotonic); None if still open."""
    end = time.monotonic() + limit
    data = b""
    while time.monotonic() < end:
        sock.settimeout(max(0.01, end - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        except OSError:  # reset: closed too
            return data, time.monotonic()
        if not chunk:
            return data, time.monotonic()
        data += chunk
    return data, None


def timed_post(client: httpx.Client, path: str, body: bytes) -> tuple[int | str, float]:
    """(status, or the exception's name; seconds) of one JSON POST."""
    t = time.perf_counter()
    try:
        return client.post(path, content=body, headers=JSON).status_code, time.perf_counter() - t
    except httpx.HTTPError as exc:
        return type(exc).__name__, time.perf_counter() - t


def slow_body(n_stalled: int, n_requests: int) -> None:
    with ServiceProcess(SERVE) as svc:
        assert svc.port is not None
        stalled: list[tuple[socket.socket, float]] = []
        results: list[tuple[bytes, float | None]] = [(b"", None)] * n_stalled
        try:
            for _ in range(n_stalled):
                s = connect(svc.port)
                s.sendall(b"POST /v1/features HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                          b'Content-Length: 1000\r\n\r\n{"win')
                stalled.append((s, time.monotonic()))
            t_stall = stalled[0][1]

            def watch(i: int) -> None:
                results[i] = read_to_close(stalled[i][0], 15.0)

            readers = [threading.Thread(target=watch, args=(i,), daemon=True) for i in range(n_stalled)]
            for reader in readers:
                reader.start()
            real: list[tuple[int | str, float]] = []
            with httpx.Client(base_url=svc.url, timeout=10) as c:
                for _ in range(n_requests):
                    real.append(timed_post(c, "/v1/features", FEATURES))
            real_done = time.monotonic() - t_stall
            for reader in readers:
                reader.join(20)
        finally:
            close_all(s for s, _ in stalled)
    took = [lat for _, lat in real]
    closed = [(at - sent) for (_, sent), (_, at) in zip(stalled, results) if at is not None]
    first_close = min(closed) if closed else math.nan
    print(f"1 slow body: {n_stalled} connections stalled (Content-Length 1000, 5 B sent); {n_requests} feature "
          f"requests sent meanwhile: {sum(1 for st, _ in real if st == 200)}/{n_requests} got 200 "
          f"({tally(st for st, _ in real)}), latency p50 {ms(pct(took, 0.5))} max {ms(max(took))}; "
          f"all done {real_done:.2f} s after the stall began", flush=True)
    print(f"  stalled connections closed by the server: {len(closed)}/{n_stalled}, "
          f"{first_close:.2f}-{max(closed, default=math.nan):.2f} s after their headers; "
          f"answers: {tally(status_line(data) for data, _ in results)}", flush=True)


# --- 2. big bodies ------------------------------------------------------------------------------


def big_var_body() -> bytes:
    """A valid /v1/risk/var body just under the default max_body_bytes (1 MiB): 22,000
    observations of 4 assets (max_assets 64)."""
    rows = [[round(((i * 7919 + j * 104729) % 20011) / 1e6 - 0.01, 6) for j in range(4)] for i in range(22000)]
    return json.dumps({"returns": rows, "confidence": 0.99}).encode()


def big_bodies(duration: float, rate: float, n_big: int = 8) -> None:
    big = big_var_body()
    big_res: list[tuple[int | str, float]] = []
    feats: list[tuple[int | str, float, float]] = []  # status, latency, client lag
    clients: list[httpx.Client] = []
    local = threading.local()
    stop = threading.Event()
    with ServiceProcess(SERVE) as svc:
        def big_client() -> None:
            with httpx.Client(base_url=svc.url, timeout=30) as c:
                while not stop.is_set():
                    big_res.append(timed_post(c, "/v1/risk/var", big))
                    if not isinstance(big_res[-1][0], int):  # a connection error: do not spin
                        stop.wait(0.05)

        def one(scheduled: float) -> None:
            c = getattr(local, "client", None)
            if c is None:
                c = local.client = httpx.Client(base_url=svc.url, timeout=30)
                clients.append(c)
            lag = time.perf_counter() - scheduled
            status, took = timed_post(c, "/v1/features", FEATURES)
            feats.append((status, took, lag))

        threads = [threading.Thread(target=big_client, name=f"big-{i}", daemon=True) for i in range(n_big)]
        try:
            for t in threads:
                t.start()
            time.sleep(0.5)  # the big bodies are flowing
            n = int(rate * duration)
            with ThreadPoolExecutor(max_workers=32, thread_name_prefix="features") as pool:
                t0 = time.perf_counter()
                for i in range(n):
                    at = t0 + i / rate
                    delay = at - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    pool.submit(one, at)
        finally:
            stop.set()
            for t in threads:
                t.join(35)
            for c in clients:
                c.close()
    statuses = [st for st, _, _ in feats]
    refused = sum(1 for st in statuses if st in (503, 429))
    admitted = [lat for st, lat, _ in feats if st not in (503, 429) and isinstance(st, int)]
    errors = sum(1 for st in statuses if isinstance(st, str))
    print(f"2 big bodies: {n_big} clients posting {size(len(big))} valid bodies to /v1/risk/var "
          f"({len(big_res)} sent: {tally(st for st, _ in big_res)}; p50 {ms(pct([x for _, x in big_res], 0.5))}) "
          f"next to {rate:g} rps of features for {duration:g} s: {len(feats)} sent, "
          f"{statuses.count(200)} 200, {refused} refused (503/429), {statuses.count(504)} 504, {errors} errors; "
          f"admitted p50 {ms(pct(admitted, 0.5))} p99 {ms(pct(admitted, 0.99))} max {ms(max(admitted, default=0))} "
          f"(client lag p99 {ms(pct([lag for _, _, lag in feats], 0.99))})", flush=True)


# --- 3a. unterminated headers -----------------------------------------------------------------


def header_bomb(port: int, limit: int, until: float) -> tuple[int, str, float]:
    """Send one header that never ends, up to ``limit`` bytes, until the server answers or
    closes: (bytes sent, what happened, seconds)."""
    s = connect(port)
    t0 = time.monotonic()
    out = memoryview(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nX-Big: ")
    chunk = memoryview(b"a" * 65536)
    sent, answer, err, still_open = 0, b"", "", False
    limit_at = math.inf  # when the limit was reached: the server then gets 5 s more to answer
    try:
        s.setblocking(False)
        while True:
            if time.monotonic() >= min(until, limit_at + 5.0):
                still_open = True
                break
            r, w, _ = select.select([s], [s] if sent < limit else [], [], 0.2)
            if r:
                try:
                    data = s.recv(65536)
                except OSError as exc:
                    err = type(exc).__name__
                    break
                answer += data
                if not data or b"\r\n" in answer:
                    break
                continue
            if w:
                try:
                    n = s.send(out[: min(len(out), limit - sent)])
                except BlockingIOError:
                    continue
                except OSError as exc:  # closed while we were sending: read what it said
                    err = f"{type(exc).__name__} while sending"
                    break
                sent += n
                out = out[n:] if n < len(out) else chunk
                if sent >= limit:
                    limit_at = time.monotonic()
        took = time.monotonic() - t0
        if still_open:
            return sent, f"still open after {size(sent)}", took
        s.settimeout(1.0)
        try:
            while b"\r\n" not in answer:
                data = s.recv(65536)
                if not data:
                    break
                answer += data
        except OSError as exc:
            err = err or type(exc).__name__
        how = status_line(answer) if answer else f"no answer ({err or 'closed'})"
        return sent, how, took
    finally:
        s.close()


def headers(n_conns: int, limit: int, time_limit: float) -> None:
    with ServiceProcess(SERVE) as svc:
        assert svc.proc is not None and svc.port is not None
        pid, port = svc.proc.pid, svc.port
        rss_before = proc_status_mb(pid, "VmRSS")
        stop = threading.Event()
        peak = sample_max(lambda: proc_status_mb(pid, "VmRSS"), stop)
        res: list[tuple[int, str, float]] = []
        until = time.monotonic() + time_limit
        try:
            threads = [threading.Thread(target=lambda: res.append(header_bomb(port, limit, until)), daemon=True)
                       for _ in range(n_conns)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(time_limit + 10)
            time.sleep(0.2)
            rss_after = proc_status_mb(pid, "VmRSS")
            hwm = proc_status_mb(pid, "VmHWM")
        finally:
            stop.set()
        ok = probe(port, "/healthz")[0]
    sent = sorted(n for n, _, _ in res) or [0]
    slowest = max((t for *_, t in res), default=0.0)
    print(f"3a headers: {n_conns} connections each sending one unterminated header (up to {limit / 1e6:g} MB): "
          f"sent before the server answered {size(sent[0])}-{size(sent[-1])} per connection (client side, "
          f"socket buffers included); answers: {tally(h for _, h, _ in res)}; within {ms(slowest)}; "
          f"service RSS {rss_before:,.0f} -> {rss_after:,.0f} MB (peak sampled {peak[0]:,.0f}, VmHWM {hwm:,.0f}); "
          f"/healthz after: {ok}", flush=True)


# --- 3b. idle connection flood -----------------------------------------------------------------


def raise_nofile(want: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        except (OSError, ValueError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def sock_state(s: socket.socket) -> str:
    """What the server did with one of our idle connections (without waiting: a socket in
    timeout mode would wait its timeout for data first)."""
    s.setblocking(False)
    try:
        data = s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return "open"
    except ConnectionResetError:
        return "reset"
    except OSError as exc:
        return type(exc).__name__
    return "closed" if not data else "answered"


def flood(n_conns: int, wait_after: float, extra: Sequence[str]) -> None:
    soft = raise_nofile(n_conns + 512)
    if soft != resource.RLIM_INFINITY and soft < n_conns + 64:
        n_conns = int(soft) - 64
        print(f"  (RLIMIT_NOFILE soft limit {soft}: flooding with {n_conns} connections)")
    socks: list[socket.socket] = []
    with ServiceProcess([*SERVE, *extra]) as svc:
        assert svc.proc is not None and svc.port is not None
        pid = svc.proc.pid
        stop = threading.Event()
        try:
            fds_before = open_fds(pid)
            peak = sample_max(lambda: float(open_fds(pid)), stop, every=0.02)
            failed: Counter[str] = Counter()
            t0 = time.monotonic()
            for _ in range(n_conns):
                try:
                    socks.append(connect(svc.port, timeout=5))
                except OSError as exc:
                    failed[type(exc).__name__] += 1
            opened_in = time.monotonic() - t0
            flood_end = time.monotonic()
            time.sleep(0.3)
            probes = []
            for _ in range(3):
                out, took = probe(svc.port, "/readyz")
                probes.append(f"{out} in {ms(took)}")
                time.sleep(0.1)
            states = [sock_state(s) for s in socks]
            at_peak = tally(states)
            time.sleep(max(0.0, flood_end + wait_after - time.monotonic()))
            fds_after = open_fds(pid)
            later = [st if st != "open" else sock_state(s) for s, st in zip(socks, states)]
            reasons = rejected(svc.url)
        finally:
            stop.set()
            close_all(socks)
    print(f"3b flood: {len(socks)} idle connections opened in {opened_in:.1f} s ({sum(failed.values())} failed"
          f"{': ' + tally(failed.elements()) if failed else ''}){' with ' + ' '.join(extra) if extra else ''}: "
          f"service fds {fds_before} -> peak {peak[0]:.0f} -> {fds_after} {wait_after:g} s after the flood; "
          f"/readyz during the flood: {', '.join(probes)}", flush=True)
    print(f"  our sockets right after the flood: {at_peak}; {wait_after:g} s later: {tally(later)}; "
          f"the service counted connections cut off: "
          f"{', '.join(f'{k} {v:.0f}' for k, v in reasons.items() if v) or 'no rejections'}", flush=True)


# --- 4. drain ---------------------------------------------------------------------------------------


def outcome(fn: Callable[[], httpx.Response], read: Callable[[httpx.Response], str]) -> str:
    try:
        return read(fn())
    except httpx.ConnectError as exc:
        return "refused" if "refused" in str(exc).lower() else f"ConnectError ({exc})"
    except httpx.TimeoutException as exc:
        return f"timeout ({type(exc).__name__})"
    except httpx.TransportError as exc:  # reset / cut mid-response
        return f"cut ({type(exc).__name__})"


def drain(delay: float, n_streams: int = 4) -> None:
    stream: list[tuple[float, float, str]] = []  # start, end, outcome
    polls: list[tuple[float, str]] = []
    stop = threading.Event()
    with ServiceProcess([*SERVE, "--drain-delay", f"{delay:g}"]) as svc:
        def keep_alive_stream() -> None:
            with httpx.Client(base_url=svc.url, timeout=10) as c:
                while not stop.is_set():
                    t = time.monotonic()
                    out = outcome(lambda: c.post("/v1/features", content=FEATURES, headers=JSON),
                                  lambda r: f"{r.status_code}" + (" close" if r.headers.get("connection") == "close"
                                                                  else ""))
                    stream.append((t, time.monotonic(), out))
                    stop.wait(0.01)

        def poll_readyz() -> None:  # a new connection each time, as a probe does
            while not stop.is_set():
                t = time.monotonic()
                polls.append((t, probe(svc.port or 1, "/readyz", timeout=2)[0]))
                stop.wait(0.02)

        threads = [threading.Thread(target=keep_alive_stream, daemon=True) for _ in range(n_streams)]
        threads.append(threading.Thread(target=poll_readyz, daemon=True))
        code: int | None = None
        try:
            for t in threads:
                t.start()
            time.sleep(1.0)
            sigterm = time.monotonic()
            svc.terminate()
            try:
                code = svc.wait(delay + 40)
            except subprocess.TimeoutExpired:
                pass
            exited = time.monotonic() - sigterm
            time.sleep(0.3)
            after_exit: list[str] = []
            for _ in range(5):
                try:
                    connect(svc.port or 1, timeout=2).close()
                    after_exit.append("accepted")
                except OSError as exc:
                    after_exit.append(type(exc).__name__)
        finally:
            stop.set()
            for t in threads:
                t.join(15)
    rel = [(t - sigterm, o) for t, o in polls]
    draining = [t for t, o in rel if t >= 0 and o.startswith("503")]
    refused = [t for t, o in rel if t >= 0 and o == "refused"]
    before_ok = sum(1 for t, o in rel if t < 0 and o.startswith("200"))
    other = Counter(o for t, o in rel if t >= 0 and not o.startswith("503") and o != "refused")
    first_503, last_503 = min(draining, default=math.nan), max(draining, default=math.nan)
    first_refused = min(refused, default=math.nan)
    alive_refused = sum(1 for t in refused if t < exited)
    pre = [o for s, _, o in stream if s < sigterm]
    # finished after SIGTERM (in flight at the signal or sent later), sent before the service exited
    post = [o for s, e, o in stream if e >= sigterm and s - sigterm < exited]
    completed = [o for o in post if o[0].isdigit()]
    failed = [o for o in post if not o[0].isdigit()]
    cut = [o for o in failed if o.startswith("cut")]
    unusual = [o for o in failed if not (o == "refused" or o.startswith(("cut", "timeout")))]
    print(f"4 drain: --drain-delay {delay:g}, {n_streams} keep-alive feature streams + a /readyz probe every 20 ms "
          f"({before_ok} x 200 before SIGTERM): /readyz answered 503 draining for {ms(first_refused - first_503)} "
          f"before the listener closed (polls from +{ms(first_503)} to +{ms(last_503)} after SIGTERM, "
          f"{len(draining)} of them{', other: ' + tally(other.elements()) if other else ''}), refused from "
          f"+{ms(first_refused)}; service exited {code} at +{exited:.2f} s", flush=True)
    print(f"  keep-alive requests: before SIGTERM {tally(pre)}; finishing after it (sent before exit): "
          f"{len(completed)} completed ({tally(completed)}), {len(cut)} cut "
          f"(reset), {failed.count('refused')} refused (new connection), "
          f"{sum(1 for o in failed if o.startswith('timeout'))} timed out"
          f"{', other: ' + tally(unusual) if unusual else ''}{'; cut: ' + tally(cut) if cut else ''}", flush=True)
    print(f"  new connections after the listener closed: {alive_refused} probes refused (ECONNREFUSED) while the "
          f"process was still draining, after exit {tally(after_exit)}", flush=True)


# --- main -------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="shorter durations, fewer requests (a smoke run)")
    ap.add_argument("--only", default=",".join(MEASUREMENTS),
                    help=f"comma-separated subset of {', '.join(MEASUREMENTS)} (default: all)")
    ap.add_argument("--requests", type=int, default=None, help="feature requests during the slow-body stall (30)")
    ap.add_argument("--duration", type=float, default=None, help="seconds of the big-bodies load (10)")
    ap.add_argument("--rate", type=float, default=100.0, help="feature requests/s next to the big bodies")
    ap.add_argument("--header-limit", type=float, default=100e6, help="bytes of header per connection (100 MB)")
    ap.add_argument("--flood", type=int, default=1500, help="idle connections in the flood")
    ap.add_argument("--drain-delay", type=float, default=2.0, help="the service's --drain-delay for item 10")
    a = ap.parse_args()
    only = [m.strip() for m in a.only.split(",") if m.strip()]
    unknown = sorted(set(only) - set(MEASUREMENTS))
    if unknown:
        ap.error(f"--only: unknown measurement {unknown[0]!r} (choose from {', '.join(MEASUREMENTS)})")
    requests = a.requests or (10 if a.quick else 30)
    duration = a.duration or (3.0 if a.quick else 10.0)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"service faults (issue 15 items 1, 2, 3, 10): {os.cpu_count()} CPU(s), load average {load}; "
          f"Python {sys.version.split()[0]}, httpx {httpx.__version__}; loopback; service defaults unless stated"
          f"{'; --quick' if a.quick else ''}", flush=True)
    t0 = time.monotonic()
    if "slow-body" in only:
        slow_body(16, requests)
    if "big-bodies" in only:
        big_bodies(duration, a.rate)
    if "headers" in only:
        headers(8, int(a.header_limit), 20.0 if a.quick else 60.0)
    if "flood" in only:
        # quick: a shorter header deadline (default 5 s) so the idle connections close sooner
        flood(a.flood, 3.5 if a.quick else 7.0, ["--header-read-timeout", "2"] if a.quick else [])
    if "drain" in only:
        drain(a.drain_delay)
    print(f"done in {time.monotonic() - t0:.0f} s; load average now {', '.join(f'{x:.2f}' for x in os.getloadavg())}",
          flush=True)


if __name__ == "__main__":
    main()
