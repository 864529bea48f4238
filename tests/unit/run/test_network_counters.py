"""Network bytes from the OS's interface counters (harness.run.resources): the delta over
the measured window, per interface and in all; ``unavailable`` where psutil cannot read
them; the summary line; the result shape check."""

from __future__ import annotations

import socket
import threading
from collections import namedtuple

import psutil
import pytest

from harness.result.summary import format_summary
from harness.run import resources
from harness.run.resources import ResourceSampler, net_counters, network_delta

Snet = namedtuple("Snet", "bytes_sent bytes_recv packets_sent packets_recv errin errout dropin dropout")


def _snet(sent: int, recv: int) -> Snet:
    return Snet(sent, recv, 0, 0, 0, 0, 0, 0)


def test_delta_per_interface_and_in_all():
    before = {"lo": (1000, 1000), "eth0": (50, 7000)}
    after = {"lo": (1500, 1500), "eth0": (80, 7100), "veth9": (5, 5)}  # veth9 appeared: no baseline
    net = network_delta(before, after)
    assert net == {"source": "interface", "bytes_sent": 530, "bytes_received": 600,
                   "interfaces": {"eth0": {"bytes_sent": 30, "bytes_received": 100},
                                  "lo": {"bytes_sent": 500, "bytes_received": 500}}}


def test_a_counter_that_went_backwards_counts_zero():
    net = network_delta({"eth0": (10_000, 10_000)}, {"eth0": (5, 20_000)})
    assert net["interfaces"]["eth0"] == {"bytes_sent": 0, "bytes_received": 10_000}


def test_unreadable_counters_say_unavailable(monkeypatch):
    def broken(pernic=False):
        raise PermissionError("/proc/net/dev")

    monkeypatch.setattr(resources.psutil, "net_io_counters", broken)
    assert net_counters() is None
    s = ResourceSampler(interval_s=10).start()
    s.stop()
    assert s.network() == {"source": "unavailable"}
    monkeypatch.setattr(resources.psutil, "net_io_counters", lambda pernic=False: {})
    assert net_counters() is None


def test_sampler_counts_loopback_bytes_of_its_window():
    if "lo" not in (psutil.net_io_counters(pernic=True) or {}):
        pytest.skip("no loopback interface counters on this machine")
    srv = socket.create_server(("127.0.0.1", 0))
    payload = b"x" * 200_000

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            got = 0
            while got < len(payload):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                got += len(chunk)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    s = ResourceSampler(interval_s=10).start()
    with socket.create_connection(srv.getsockname()) as c:
        c.sendall(payload)
    t.join(5)
    s.stop()
    srv.close()
    net = s.network()
    assert net["source"] == "interface"
    lo = net["interfaces"]["lo"]
    assert lo["bytes_sent"] >= len(payload) and lo["bytes_received"] >= len(payload)
    assert net["bytes_sent"] >= lo["bytes_sent"]
    # the window is the sampler's: a later transfer is not counted
    assert s.network() == net


def _result(network):
    hist = {"count": 1, "p50": 1.0, "p90": 1.0, "p95": 1.0, "p99": 1.0, "p99.9": 1.0, "max": 1.0}
    target = {"count": 1, "outcomes": {"ok": 1, "error": 0, "timeout": 0, "dropped": 0}, "latency": hist,
              "service_time": hist, "lag": hist}
    r = {"schema": "harness.result/1", "run_id": "r", "status": "completed", "elapsed_s": 1.0,
         "scenario": {"name": "n", "target": "http://x/", "failures": {"threshold": "rate<0.01", "judged": []}},
         "summary": {"targets": {"GET /": target}, "all": target}, "thresholds": [],
         "generator": {"schedule_lag_p50_ms": 0.1, "schedule_lag_p99_ms": 0.2, "lag_bound_ms": 5.0,
                       "cpu_percent_mean": 10.0, "cpu_count": 2, "reasons": []},
         "verdict": {"exit_code": 0}}
    if network is not None:
        r["network"] = network
    return r


def test_summary_line():
    net = network_delta({"lo": (0, 0), "eth0": (0, 0)}, {"lo": (3 * 1024 * 1024, 3 * 1024 * 1024), "eth0": (0, 0)})
    text = format_summary(_result(net))
    line = next(li for li in text.splitlines() if li.startswith("network"))
    assert "sent 3.0 MiB, received 3.0 MiB" in line and "lo 3.0 MiB/3.0 MiB" in line and "eth0" not in line
    assert "network: OS interface counters unavailable" in format_summary(_result({"source": "unavailable"}))
    assert "network" not in format_summary(_result(None))  # an older result: no line


def test_result_shape_checks_the_network_field(tmp_path):
    import json

    from harness.result.schema import ResultError, load_result

    good = _result(network_delta({"lo": (0, 0)}, {"lo": (5, 5)}))
    p = tmp_path / "r.json"
    p.write_text(json.dumps(good))
    assert load_result(p)["network"]["bytes_sent"] == 5
    bad = _result({"source": "interface", "bytes_sent": "5"})
    p.write_text(json.dumps(bad))
    with pytest.raises(ResultError, match="network.bytes_sent"):
        load_result(p)
