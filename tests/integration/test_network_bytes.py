"""A real HTTP run on loopback: the result's ``network`` holds the OS's interface bytes of
the measured window, at least the bytes the responses carried, and the summary prints them."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
import pytest
from prometheus_client import CollectorRegistry

from harness.config.scenario import load_scenario
from harness.result.summary import format_summary
from harness.run.runner import Run, RunOptions

BODY = b"y" * 20_000


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *a):
        pass


def test_http_run_reports_loopback_bytes():
    if "lo" not in (psutil.net_io_counters(pernic=True) or {}):
        pytest.skip("no loopback interface counters on this machine")
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        sc = load_scenario(None, {"target": f"http://127.0.0.1:{srv.server_port}/blob", "duration": "1s",
                                  "profile.rate": 40, "thresholds": {}}, env={})
        r = Run(sc, RunOptions(metrics_port=None, progress="off", install_signal_handlers=False),
                registry=CollectorRegistry()).execute()
    finally:
        srv.shutdown()
        srv.server_close()
    ok = r["summary"]["all"]["outcomes"]["ok"]
    assert ok == 40
    net = r["network"]
    assert net["source"] == "interface"
    lo = net["interfaces"]["lo"]
    # every response body crossed loopback once (sent by the server, received by the client)
    assert lo["bytes_received"] >= ok * len(BODY) and lo["bytes_sent"] >= ok * len(BODY)
    assert net["bytes_received"] == sum(v["bytes_received"] for v in net["interfaces"].values())
    assert "network (OS interface counters" in format_summary(r)
