"""Faulty clients against the real service on loopback: slow bodies and headers, big bodies,
oversized headers, connection floods, session floods, and the drain's readiness period.

Each bound must hold while the fault lasts: real requests keep being answered, the faulty
connections are cut within their deadline, and nothing holds a concurrency slot it does not
compute with."""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import pytest

from tests.support.service import require_service, sample, slow_env

httpx = require_service()

from prometheus_client import CollectorRegistry  # noqa: E402

from workloads import MarketDataGenerator  # noqa: E402
from workloads.service import ServiceConfig, ServiceProcess, ServiceThread  # noqa: E402

WINDOW = MarketDataGenerator(7).window(30).astype(float).tolist()
FEATURES = json.dumps({"window": WINDOW}).encode()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float | None]:
    """Everything the server sends until it closes: (bytes, seconds it took), or None for
    the time if the connection was still open after ``limit`` seconds."""
    t0 = time.monotonic()
    data = b""
    while time.monotonic() - t0 < limit:
        sock.settimeout(max(0.01, limit - (time.monotonic() - t0)))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        except OSError:  # reset: closed too
            return data, time.monotonic() - t0
        if not chunk:
            return data, time.monotonic() - t0
        data += chunk
    return data, None


def timed_post(client, path: str, body: bytes) -> tuple[int, float]:
    t = time.perf_counter()
    r = client.post(path, content=body, headers={"content-type": "application/json"})
    return r.status_code, time.perf_counter() - t


@pytest.fixture(scope="module")
def guarded():
    """A service with short read deadlines and few slots (in-process: stalled sockets cost
    the test nothing)."""
    config = ServiceConfig(
        max_concurrency=2,
        warmup_inferences=1,
        body_read_timeout_seconds=1.0,
        header_read_timeout_seconds=1.0,
        max_header_bytes=8192,
        max_headers=50,
    )
    with ServiceThread(config, registry=CollectorRegistry()) as svc:
        yield svc


def test_slow_bodies_hold_no_slot_and_are_cut_at_the_body_deadline(guarded):
    # 16 clients announce 1000 bytes, send 5, and stall: 8 times as many as there are slots
    stalled = []
    for _ in range(16):
        s = connect(guarded.port)
        s.sendall(b"POST /v1/features HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000\r\n\r\n{\"win")
        stalled.append((s, time.monotonic()))
    time.sleep(0.3)
    assert guarded.state.pool.busy == 0  # reading a body takes no slot
    with httpx.Client(base_url=guarded.url, timeout=10) as c:
        for _ in range(3):
            status, took = timed_post(c, "/v1/features", FEATURES)
            assert status == 200 and took < 2.0
    for s, sent_at in stalled:
        data, took = read_until_closed(s, 5.0)
        s.close()
        assert took is not None, "a stalled body kept its connection open past the deadline"
        assert time.monotonic() - sent_at < 1.0 + 1.5  # the deadline (1 s) plus scheduling slack
        assert data.startswith(b"HTTP/1.1 408"), data[:80]
        assert b'"request_timeout"' in data
    text = httpx.get(guarded.url + "/metrics").text
    assert sample(text, "lbh_http_body_read_timeouts_total") >= 16


def test_slow_and_silent_header_clients_are_cut_at_the_header_deadline(guarded):
    partial, silent = [], []
    for _ in range(8):
        s = connect(guarded.port)
        s.sendall(b"GET /readyz HTTP/1.1\r\nHost: t\r\nX-Slow: a")  # headers never end
        partial.append(s)
        silent.append(connect(guarded.port))  # says nothing at all
    t0 = time.monotonic()
    with httpx.Client(base_url=guarded.url, timeout=10) as c:
        status, took = timed_post(c, "/v1/features", FEATURES)
        assert status == 200 and took < 2.0
    for s in partial:
        data, took = read_until_closed(s, 5.0)
        s.close()
        assert took is not None and data.startswith(b"HTTP/1.1 408"), data[:80]
    for s in silent:
        data, took = read_until_closed(s, 5.0)
        s.close()
        assert took is not None and data == b""  # nothing asked, nothing answered: closed
    assert time.monotonic() - t0 < 1.0 + 1.5
    text = httpx.get(guarded.url + "/metrics").text
    assert sample(text, "lbh_http_connections_rejected_total", reason="header_timeout") >= 16


def test_header_size_and_count_are_bounded(guarded):
    # an unterminated header past max_header_bytes: 431 and closed before it is buffered
    s = connect(guarded.port)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ")
    try:
        for _ in range(64):
            s.sendall(b"a" * 4096)
    except OSError:
        pass  # closed while we were still sending: that is the point
    data, took = read_until_closed(s, 5.0)
    s.close()
    assert took is not None and data.startswith(b"HTTP/1.1 431"), data[:80]
    with httpx.Client(base_url=guarded.url, timeout=10) as c:
        many = c.get("/healthz", headers={f"x-h{i}": "1" for i in range(60)})
        assert many.status_code == 431 and many.json()["error"] == "too_many_headers"
        fine = c.get("/healthz", headers={"x-fine": "a" * 4000})
        assert fine.status_code == 200
    text = httpx.get(guarded.url + "/metrics").text
    assert sample(text, "lbh_http_connections_rejected_total", reason="header_too_large") >= 1


def test_large_bodies_get_the_answers_small_ones_get(guarded):
    """Bodies over 64 KiB are parsed off the event loop, with the same errors as inline."""
    pad = [0.01] * 12000
    with httpx.Client(base_url=guarded.url, timeout=10) as c:
        def post(raw: bytes) -> httpx.Response:
            return c.post("/v1/risk/var", content=raw, headers={"content-type": "application/json"})

        small_nan = post(b'{"returns": [0.1, NaN, 0.2]}').json()
        large_nan = post(('{"returns": [0.1, NaN, ' + json.dumps(pad)[1:] + "}").encode()).json()
        assert small_nan == large_nan and large_nan["field"] == "returns[1]"
        small_extra = post(b'{"returns": [0.1, 0.2], "x": 1}').json()
        large_extra = post(json.dumps({"returns": pad, "x": 1}).encode()).json()
        assert small_extra == large_extra and large_extra["field"] == "x"
        broken = post(json.dumps({"returns": pad}).encode()[:-5])
        assert broken.status_code == 400 and broken.json()["error"] == "invalid_json"
        bad_utf8 = post(b'{"returns": [0.1], "c": "' + b"\xff" * 70000 + b'"}')
        assert bad_utf8.status_code == 400
        ok = post(json.dumps({"returns": pad, "confidence": 0.95}).encode())
        assert ok.status_code == 200 and ok.json()["confidence"] == 0.95


def test_the_request_deadline_covers_reading_the_body():
    """The deadline runs from the end of the headers: a body that takes most of it leaves
    the computation the rest, and the answer is 504 at the deadline, not after the model."""
    from workloads import ExtractorConfig, FaultConfig

    config = ServiceConfig(
        request_timeout_seconds=1.0, body_read_timeout_seconds=5.0, warmup_inferences=1,
        extractor=ExtractorConfig(enable_caching=False, model_budget_seconds=10,
                                  faults=FaultConfig(extra_latency_seconds=2.0)),
    )
    with ServiceThread(config, registry=CollectorRegistry()) as svc:
        s = connect(svc.port)
        s.sendall(b"POST /v1/features HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(FEATURES) + FEATURES[:100])
        t0 = time.monotonic()
        time.sleep(0.6)
        s.sendall(FEATURES[100:])
        data, _ = read_until_closed(s, 0.1)  # nothing yet
        while b"\r\n\r\n" not in data and time.monotonic() - t0 < 5:
            s.settimeout(5)
            data += s.recv(65536)
        took = time.monotonic() - t0
        s.close()
        assert data.startswith(b"HTTP/1.1 504"), data[:80]
        assert 0.9 <= took < 1.0 + 0.8  # at the deadline, well before the 2 s model call ends


def test_big_valid_bodies_do_not_stall_small_requests():
    """8 clients posting ~1 MiB valid bodies: small requests are neither refused nor late."""
    rows = [[round(((i * 7919 + j * 104729) % 20011) / 1e6 - 0.01, 6) for j in range(4)] for i in range(22000)]
    big = json.dumps({"returns": rows, "confidence": 0.99}).encode()
    assert 0.8 * 2**20 < len(big) < 2**20
    with ServiceProcess(["--log-level", "warning", "--max-concurrency", "4"]) as svc:
        stop = time.monotonic() + 3.0
        big_statuses: list[int] = []

        def big_client() -> None:
            with httpx.Client(base_url=svc.url, timeout=30) as c:
                while time.monotonic() < stop:
                    big_statuses.append(timed_post(c, "/v1/risk/var", big)[0])

        threads = [threading.Thread(target=big_client) for _ in range(8)]
        for t in threads:
            t.start()
        small: list[tuple[int, float]] = []
        with httpx.Client(base_url=svc.url, timeout=30) as c:
            time.sleep(0.5)  # the big bodies are flowing
            while time.monotonic() < stop:
                small.append(timed_post(c, "/v1/features", FEATURES))
                time.sleep(0.05)
        for t in threads:
            t.join(30)
    assert small and big_statuses
    assert all(status == 200 for status, _ in small), small  # no refusal, no timeout
    # answered within the request deadline (2 s) plus scheduling slack on a loaded machine
    assert max(took for _, took in small) < 3.0, small
    # the big ones are served, or answered 504 at their deadline: never refused for slots
    assert set(big_statuses) <= {200, 504} and 200 in big_statuses, big_statuses


def test_a_connection_flood_is_bounded_and_probes_keep_answering():
    with ServiceProcess(["--log-level", "warning", "--max-connections", "100",
                         "--header-read-timeout", "2"]) as svc:
        pid = svc.proc.pid
        flood = []
        for _ in range(300):
            flood.append(connect(svc.port))
        time.sleep(0.3)
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        t = time.perf_counter()
        ready = httpx.get(svc.url + "/readyz", timeout=5)
        took = time.perf_counter() - t
        assert ready.status_code == 200 and took < 1.0
        assert fds < 100 + 64, fds  # the cap, plus the process's own files
        closed = [read_until_closed(s, 4.0)[1] for s in flood]
        for s in flood:
            s.close()
        assert all(c is not None for c in closed)  # idle ones evicted or cut at the header deadline
        text = httpx.get(svc.url + "/metrics").text
        assert sample(text, "lbh_http_connections_rejected_total", reason="evicted_idle") >= 200


def test_a_session_flood_cannot_lock_others_out():
    config = ServiceConfig(max_sessions=8, max_sessions_per_client=4, session_evict_idle_seconds=0.5,
                           warmup_inferences=1)
    with ServiceThread(config, registry=CollectorRegistry()) as svc, \
            httpx.Client(base_url=svc.url, timeout=10) as c:

        def reset(client: str) -> httpx.Response:
            # the service trusts X-Forwarded-For from loopback only (uvicorn's default)
            return c.post("/v1/env/reset", json={"n_steps": 2}, headers={"x-forwarded-for": client})

        flood = [reset("10.0.0.66").status_code for _ in range(16)]
        assert flood.count(200) == 4 and flood.count(429) == 12
        assert reset("10.0.0.1").status_code == 200  # another client still gets in
        # a flood from many addresses fills the table...
        assert [reset(f"10.0.1.{i}").status_code for i in range(3)] == [200, 200, 200]
        full = reset("10.0.0.2")
        assert full.status_code == 503 and full.json()["error"] == "sessions_full"
        assert int(full.headers["retry-after"]) >= 1
        # ...but cannot hold it: sessions nobody steps are evicted for new ones
        time.sleep(0.6)
        fresh = reset("10.0.0.2")
        assert fresh.status_code == 200
        sid = fresh.json()["session_id"]
        assert c.post(f"/v1/env/{sid}/step", json={"action": 1}).status_code == 200
        text = c.get("/metrics").text
        assert sample(text, "lbh_env_sessions_closed_total", reason="evicted") >= 1
        assert sample(text, "lbh_env_sessions") == 8


def test_drain_keeps_readyz_false_for_the_delay_then_refuses_cleanly():
    delay = 1.5
    svc = ServiceProcess(["--log-level", "info", "--drain-delay", str(delay), "--max-concurrency", "8"],
                         env=slow_env(400))
    svc.start()
    try:
        in_flight: list[int] = []

        def one() -> None:
            with httpx.Client(base_url=svc.url, timeout=30) as c:
                in_flight.append(c.post("/v1/features", json={"window": WINDOW}).status_code)

        threads = [threading.Thread(target=one) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.2)
        sigterm_at = time.monotonic()
        svc.terminate()
        polls: list[tuple[float, str]] = []
        during: list[tuple[int, str | None]] = []
        while time.monotonic() - sigterm_at < 15:
            try:
                r = httpx.get(svc.url + "/readyz", timeout=5)
                polls.append((time.monotonic() - sigterm_at, f"{r.status_code} {r.json()['status']}"))
                if len(during) < 3 and r.status_code == 503:  # work still served while draining
                    w = httpx.post(svc.url + "/v1/features", json={"window": WINDOW}, timeout=10)
                    during.append((w.status_code, w.headers.get("connection")))
            except httpx.ConnectError:
                polls.append((time.monotonic() - sigterm_at, "refused"))
                break
            except httpx.TransportError as exc:  # a reset or a cut response: what must not happen
                polls.append((time.monotonic() - sigterm_at, type(exc).__name__))
            time.sleep(0.02)
        for t in threads:
            t.join(30)
        code = svc.wait(30)
    finally:
        svc.kill()
    outcomes = {o for _, o in polls}
    assert outcomes <= {"503 draining", "refused"}, polls  # never a reset, never "ready"
    assert polls[-1][1] == "refused"
    first_refused = polls[-1][0]
    assert first_refused >= delay, polls  # not-ready for the whole delay before closing
    assert first_refused < delay + 5, polls
    assert in_flight == [200] * 4
    assert during and all(d == (200, "close") for d in during), during
    assert code == 0, "\n".join(svc.log)
