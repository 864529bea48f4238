"""HTTP targets: statuses and connection failures become outcomes, timeouts cancel, and the
schedule stays open-loop (a slow server shows in latency from intended start)."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import CollectorRegistry

from harness.run.runner import Run, RunOptions
from harness.config.scenario import ScenarioError, load_scenario
from harness.targets import TargetError


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    bodies: list = []

    def _send(self, status, body=b'{"ok":true}'):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        if self.path == "/ok":
            self._send(200)
        elif self.path == "/busy":
            self._send(503, b'{"detail":"overloaded"}')
        elif self.path == "/slow":
            time.sleep(1.0)
            self._send(200)
        elif self.path == "/cached":
            self._send(200, b'{"cache_hit":true,"fallback_used":false}')
        else:
            self._send(404)

    def do_HEAD(self):  # noqa: N802 - the headers of GET /ok (Content-Length 11), no body
        self.send_response(200)
        self.send_header("Content-Length", "11")
        self.end_headers()

    def do_POST(self):  # noqa: N802
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        type(self).bodies.append((self.headers.get("Content-Type"), self.headers.get("X-Run"), json.loads(body)))
        self._send(200)

    def log_message(self, *a):
        pass


@pytest.fixture(scope="module")
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()
    srv.server_close()


def run(overrides):
    sc = load_scenario(None, {"thresholds": {}, **overrides}, env={})
    return Run(sc, RunOptions(metrics_port=None, progress="off", install_signal_handlers=False),
               registry=CollectorRegistry()).execute()


def test_ok_and_flags_from_json_answers(server):
    r = run({"target": server + "/cached", "duration": "1s", "profile.rate": 50})
    t = r["summary"]["targets"]["GET /cached"]
    assert t["outcomes"]["ok"] == 50
    assert t["cache_hit_rate"] == 1.0


def test_http_status_is_an_error_outcome_named_by_status(server):
    r = run({"target": server + "/busy", "duration": "1s", "profile.rate": 20})
    t = r["summary"]["targets"]["GET /busy"]
    assert t["outcomes"]["error"] == 20 and t["errors"] == {"HTTP 503": 20}


def test_timeout_cancels_and_records_at_the_deadline(server):
    t0 = time.monotonic()
    r = run({"target": server + "/slow", "duration": "1s", "profile.rate": 5, "timeout": "200ms"})
    assert time.monotonic() - t0 < 30  # returns (a ~1.2 s run; 30 s so a busy machine cannot miss it)
    t = r["summary"]["targets"]["GET /slow"]
    assert t["outcomes"]["timeout"] == 5
    assert 199 <= t["service_time"]["max"] <= 201


def test_connection_refused_is_an_error(server):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = run({"target": f"http://127.0.0.1:{port}/x", "duration": "1s", "profile.rate": 10})
    (t,) = r["summary"]["targets"].values()
    assert t["outcomes"]["error"] == 10
    assert "connection refused" in t["errors"]


def test_post_with_payload_generator_and_headers(server):
    Handler.bodies = []
    r = run({"target": server + "/echo", "duration": "1s", "profile.rate": 10,
             "payload": "tests.support.targets_for_tests:ordinal_payload", "http": {"headers": {"X-Run": "t1"}}})
    assert r["summary"]["targets"]["POST /echo"]["outcomes"]["ok"] == 10
    assert len(Handler.bodies) == 10
    ctype, xrun, body = Handler.bodies[0]
    assert ctype == "application/json" and xrun == "t1" and isinstance(body, list)


def test_http_settings_are_validated():
    with pytest.raises(ScenarioError, match="http.metod"):
        load_scenario(None, {"target": "http://127.0.0.1:1/", "http": {"metod": "GET"}}, env={})
    sc = load_scenario(None, {"target": "http://127.0.0.1:1/", "http": {"method": "BREW"}}, env={})
    with pytest.raises(TargetError, match="http.method"):
        Run(sc, RunOptions(metrics_port=None, progress="off")).execute()


def test_head_requests_complete_without_a_body(server):
    r = run({"target": server + "/ok", "duration": "1s", "profile.rate": 10, "http": {"method": "HEAD"}})
    assert r["summary"]["targets"]["HEAD /ok"]["outcomes"]["ok"] == 10


def test_the_coroutine_face_gives_flags_and_raises_http_errors(server):
    import asyncio

    from harness.targets.http import HttpError, build_http_target

    async def main():
        ok = build_http_target(server + "/cached", payload=None, settings={}, max_in_flight=2)
        busy = build_http_target(server + "/busy", payload=None, settings={}, max_in_flight=2)
        await ok.aopen()
        await busy.aopen()
        try:
            _label, fn, args = ok.dispatch(0)
            answer = await fn(*args)
            _label, fn, args = busy.dispatch(0)
            with pytest.raises(HttpError) as err:
                await fn(*args)
            return answer.flags, answer.cache_hit, err.value.status
        finally:
            await ok.aclose()
            await busy.aclose()

    assert asyncio.run(main()) == (1, True, 503)


def test_flags_come_from_the_answer_without_parsing_all_of_it():
    from harness.targets.http import flags_of_body

    assert flags_of_body(b'{"features":[0.1,0.2],"cache_hit":true,"fallback_used":false}') == 1
    assert flags_of_body(b'{"cache_hit": false, "fallback_used": true}') == 2
    assert flags_of_body(b'{"fallback":true,"cache_hit":true}') == 3
    assert flags_of_body(b'{"ok":true}') == 0


@pytest.mark.parametrize("settings, field", [
    ({"headers": {"Bad Name": "x"}}, "http.headers.Bad Name"),
    ({"headers": {"X-A": "1\r\nX-Injected: 1"}}, "http.headers.X-A"),
    ({"headers": {"Content-Length": "5"}}, "http.headers.Content-Length"),
    ({"headers": ["X-A"]}, "http.headers"),
    ({"verify": "no"}, "http.verify"),
])
def test_bad_http_settings_name_the_field(settings, field):
    from harness.targets.http import build_http_target

    with pytest.raises(TargetError, match=field.replace(".", r"\.")):
        build_http_target("http://127.0.0.1:1/x", payload=None, settings=settings, max_in_flight=1)


def test_closed_loop_users_over_http(server):
    # 3 users x 4 iterations: every call counted; /slow times out (cancelled, recorded at the deadline)
    r = run({"target": server + "/cached", "duration": "2s",
             "profile": {"type": "users", "vus": 3, "iterations": 4}})
    t = r["summary"]["targets"]["GET /cached"]
    assert t["outcomes"]["ok"] == 12 and t["cache_hit_rate"] == 1.0
    t0 = time.monotonic()
    r = run({"target": server + "/slow", "duration": "1s", "timeout": "200ms",
             "profile": {"type": "users", "vus": 2, "iterations": 2}})
    assert time.monotonic() - t0 < 30  # returns (a ~0.5 s run; 30 s so a busy machine cannot miss it)
    t = r["summary"]["targets"]["GET /slow"]
    assert t["outcomes"]["timeout"] == 4 and 199 <= t["service_time"]["max"] <= 201


def test_pre_encoded_json_bodies_are_sent_as_json(server):
    Handler.bodies = []
    r = run({"target": server + "/echo", "duration": "1s", "profile.rate": 5,
             "payload": "feature_window_hot"})
    assert r["summary"]["targets"]["POST /echo"]["outcomes"]["ok"] == 5
    ctype, _xrun, body = Handler.bodies[0]
    assert ctype == "application/json" and len(body["window"]) == 60


def test_closed_loop_users_name_transport_failures_like_the_open_loop():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = run({"target": f"http://127.0.0.1:{port}/x", "duration": "1s",
             "profile": {"type": "users", "vus": 2, "iterations": 3}})
    (t,) = r["summary"]["targets"].values()
    assert t["errors"] == {"connection refused": 6}
