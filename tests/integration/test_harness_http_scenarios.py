"""HTTP scenarios users write: several weighted endpoints with their own figures and
thresholds, gzip, opt-in redirects, a CA bundle and a client certificate, errors named in
words with the first answers' bodies in the result and the summary, and the client's own
status codes and bytes per endpoint."""

from __future__ import annotations

import gzip
import json
import socket

import pytest
from prometheus_client import CollectorRegistry

from harness.config.scenario import ScenarioError, load_scenario
from harness.result.summary import format_summary
from harness.run.runner import Run, RunOptions
from harness.targets import TargetError
from harness.targets.http import build_http_target
from tests.support.ci import require_binary
from tests.support.http_recording_server import RecordingServer, make_tls_files

OK = (200, {"Content-Type": "application/json"}, b'{"ok":true}')


def run(overrides, env=None):
    sc = load_scenario(None, {"thresholds": {}, "failures": {"threshold": "off"}, **overrides}, env={})
    return Run(sc, RunOptions(metrics_port=None, progress="off", install_signal_handlers=False),
               registry=CollectorRegistry()).execute()


def test_weighted_endpoints_each_with_their_own_label_method_body_headers_and_thresholds():
    with RecordingServer({"/a": OK, "/b": OK, "/slow": OK}) as srv:
        r = run({"target": srv.url, "duration": "1s", "profile.rate": 40,
                 "thresholds": {"latency{target:search}": ["p(95)<5s"], "throughput{target:POST /b}": ["count>=10"],
                                "throughput{target:search}": ["count>100"]},
                 "http": {"headers": {"X-Run": "r1"}, "endpoints": [
                     {"url": "/a?q=1", "name": "search", "weight": 3, "headers": {"X-Ep": "a"}},
                     {"url": "/b", "method": "POST", "body": {"x": 1}},
                     {"url": "/never", "weight": 0},
                 ]}})
    targets = r["summary"]["targets"]
    assert set(targets) == {"search", "POST /b"}
    assert targets["search"]["outcomes"]["ok"] == 30 and targets["POST /b"]["outcomes"]["ok"] == 10
    by_path = {}
    for s in srv.seen:
        by_path.setdefault(s.path, []).append(s)
    assert set(by_path) == {"/a?q=1", "/b"}
    a, b = by_path["/a?q=1"][0], by_path["/b"][0]
    assert (a.method, a.headers["x-run"], a.headers["x-ep"]) == ("GET", "r1", "a")
    assert (b.method, b.headers["content-type"], json.loads(b.body)) == ("POST", "application/json", {"x": 1})
    assert "x-ep" not in b.headers
    verdicts = {t["metric"]: t["ok"] for t in r["thresholds"]}
    assert {k: verdicts[k] for k in ("latency{target:search}", "throughput{target:POST /b}",
                                     "throughput{target:search}")} == {
        "latency{target:search}": True, "throughput{target:POST /b}": True, "throughput{target:search}": False}


def test_status_codes_and_the_clients_own_bytes_per_endpoint():
    with RecordingServer({"/ok": OK, "/gone": (410, {}, b"gone")}) as srv:
        r = run({"target": srv.url, "duration": "1s", "profile.rate": 20,
                 "http": {"endpoints": [{"url": "/ok"}, {"url": "/gone"}]}})
        sent, received = srv.bytes_in, srv.bytes_out
    ok, gone = r["summary"]["targets"]["GET /ok"], r["summary"]["targets"]["GET /gone"]
    assert ok["status_codes"] == {"200": 10} and gone["status_codes"] == {"410": 10}
    assert ok["bytes_sent"] + gone["bytes_sent"] == sent
    assert ok["bytes_received"] + gone["bytes_received"] == received
    assert "status_codes" not in r["summary"]["all"]


def test_error_bodies_are_in_the_result_and_the_summary():
    body = b'{"detail":[{"loc":["body","window"],"msg":"must have 30 rows"}]}'
    with RecordingServer({"/f": (422, {}, body)}) as srv:
        r = run({"target": srv.url + "/f", "duration": "1s", "profile.rate": 10})
    (d,) = r["error_details"]
    assert (d["target"], d["type"], d["count"]) == ("GET /f", "HTTP 422", 10)
    assert d["samples"] == [body.decode()] * 3 and 0 <= d["first_s"] <= d["last_s"] <= 2
    text = format_summary(r)
    assert "HTTP 422" in text and "must have 30 rows" in text


def test_long_bodies_are_truncated():
    with RecordingServer({"/f": (500, {}, b"E" * 5000)}) as srv:
        r = run({"target": srv.url + "/f", "duration": "1s", "profile.rate": 3})
    (d,) = r["error_details"]
    assert all(len(s) == 300 for s in d["samples"])


def test_dns_and_connection_errors_are_named_in_words():
    r = run({"target": "http://lbh-test.invalid:8080/x", "duration": "1s", "profile.rate": 5})
    (t,) = r["summary"]["targets"].values()
    assert t["errors"] == {"DNS: cannot resolve host 'lbh-test.invalid'": 5}
    (d,) = r["error_details"]
    assert "lbh-test.invalid" in d["samples"][0] and "gaierror" not in format_summary(r)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = run({"target": f"http://127.0.0.1:{port}/x", "duration": "1s", "profile.rate": 5})
    (t,) = r["summary"]["targets"].values()
    assert t["errors"] == {"connection refused": 5}
    assert f"127.0.0.1:{port}" in r["error_details"][0]["samples"][0]


def test_gzip_is_asked_for_when_opted_in_read_decompressed_and_counted_on_the_wire():
    plain = json.dumps({"cache_hit": True, "pad": "x" * 2000}).encode()
    packed = gzip.compress(plain)
    route = (200, {"Content-Encoding": "gzip"}, packed)
    with RecordingServer({"/z": route}) as srv:
        r = run({"target": srv.url + "/z", "duration": "1s", "profile.rate": 10, "http": {"gzip": True}})
        assert all(s.headers.get("accept-encoding") == "gzip" for s in srv.seen)
        received = srv.bytes_out
    t = r["summary"]["targets"]["GET /z"]
    assert t["outcomes"]["ok"] == 10 and t["cache_hit_rate"] == 1.0  # flags read from the decompressed body
    assert t["bytes_received"] == received < 10 * len(plain)
    with RecordingServer({"/z": OK}) as srv:
        run({"target": srv.url + "/z", "duration": "1s", "profile.rate": 3})
        assert all("accept-encoding" not in s.headers for s in srv.seen)


def test_a_bad_gzip_body_is_a_named_error():
    with RecordingServer({"/z": (200, {"Content-Encoding": "gzip"}, b"not gzip")}) as srv:
        r = run({"target": srv.url + "/z", "duration": "1s", "profile.rate": 3, "http": {"gzip": True}})
    assert r["summary"]["targets"]["GET /z"]["errors"] == {"bad gzip body": 3}


def test_redirects_are_followed_only_when_asked_and_only_so_far():
    routes = {"/old": (301, {"Location": "/new"}, b""), "/new": OK,
              "/loop": (302, {"Location": "/loop"}, b""),
              "/form": (303, {"Location": "/new"}, b"")}
    with RecordingServer(routes) as srv:
        r = run({"target": srv.url + "/old", "duration": "1s", "profile.rate": 4})
        assert r["summary"]["targets"]["GET /old"]["errors"] == {"HTTP 301": 4}
        r = run({"target": srv.url + "/old", "duration": "1s", "profile.rate": 4, "http": {"follow_redirects": 1}})
        t = r["summary"]["targets"]["GET /old"]
        assert t["outcomes"]["ok"] == 4 and t["status_codes"] == {"200": 4, "301": 4}
        r = run({"target": srv.url + "/loop", "duration": "1s", "profile.rate": 2, "http": {"follow_redirects": 3}})
        assert r["summary"]["targets"]["GET /loop"]["errors"] == {"too many redirects": 2}
        srv.seen.clear()
        r = run({"target": srv.url, "duration": "1s", "profile.rate": 2, "http": {
            "follow_redirects": 1, "endpoints": [{"url": "/form", "method": "POST", "body": "a=1"}]}})
        assert r["summary"]["targets"]["POST /form"]["outcomes"]["ok"] == 2
        hops = [(s.method, s.path) for s in srv.seen]
        assert hops.count(("POST", "/form")) == 2 and hops.count(("GET", "/new")) == 2  # 303: GET, no body
        # every hop of a call carries the same trace context
        tps = [s.headers.get("traceparent") for s in srv.seen]
        assert all(tps) and len(set(tps)) == 2


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    require_binary("openssl", "openssl")
    return make_tls_files(str(tmp_path_factory.mktemp("tls")))


def _tls_server(files, *, client_cert: bool):
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(files["server_cert"], files["server_key"])
    if client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(files["ca"])
    return RecordingServer({"/s": OK}, tls=ctx)


def test_a_ca_bundle_verifies_the_server_and_without_it_the_error_says_why(tls_files):
    with _tls_server(tls_files, client_cert=False) as srv:
        r = run({"target": srv.url + "/s", "duration": "1s", "profile.rate": 4, "http": {"ca_file": tls_files["ca"]}})
        assert r["summary"]["targets"]["GET /s"]["outcomes"]["ok"] == 4
        r = run({"target": srv.url + "/s", "duration": "1s", "profile.rate": 2})
    t = r["summary"]["targets"]["GET /s"]
    assert t["errors"] == {"TLS: certificate verify failed": 2}
    assert "certificate" in r["error_details"][0]["samples"][0]


def test_a_client_certificate_is_presented_when_given(tls_files):
    with _tls_server(tls_files, client_cert=True) as srv:
        r = run({"target": srv.url + "/s", "duration": "1s", "profile.rate": 4,
                 "http": {"ca_file": tls_files["ca"], "cert_file": tls_files["client_cert"],
                          "key_file": tls_files["client_key"]}})
        assert r["summary"]["targets"]["GET /s"]["outcomes"]["ok"] == 4
        r = run({"target": srv.url + "/s", "duration": "1s", "profile.rate": 2, "http": {"ca_file": tls_files["ca"]}})
    t = r["summary"]["targets"]["GET /s"]
    assert t["outcomes"]["ok"] == 0 and t["outcomes"]["error"] == 2


@pytest.mark.parametrize("settings, field", [
    ({"endpoints": []}, "http.endpoints"),
    ({"endpoints": [{"url": "no-slash"}]}, r"http.endpoints\[0\].url"),
    ({"endpoints": [{"url": "/a"}, {"url": "/a"}]}, r"http.endpoints\[1\].name"),
    ({"endpoints": [{"url": "/a", "weight": -1}]}, r"http.endpoints\[0\].weight"),
    ({"endpoints": [{"url": "/a", "method": "BREW"}]}, r"http.endpoints\[0\].method"),
    ({"endpoints": [{"url": "/a", "body": 3}]}, r"http.endpoints\[0\].body"),
    ({"endpoints": [{"url": "/a", "body": "x", "payload": "p"}]}, r"http.endpoints\[0\].payload"),
    ({"endpoints": [{"url": "/a", "headers": {"Bad Name": "1"}}]}, r"http.endpoints\[0\].headers.Bad Name"),
    ({"endpoints": [{"url": "/a", "weight": 0}]}, "http.endpoints"),
    ({"endpoints": [{"url": "/a"}], "method": "POST"}, "http.method"),
    ({"follow_redirects": -1}, "http.follow_redirects"),
    ({"follow_redirects": True}, "http.follow_redirects"),
    ({"gzip": "yes"}, "http.gzip"),
    ({"traceparent": 1}, "http.traceparent"),
    ({"ca_file": "/nonexistent/ca.pem"}, "http.ca_file"),
    ({"key_file": __file__}, "http.key_file"),
])
def test_bad_settings_name_the_field(settings, field):
    url = "https://127.0.0.1:1/x"
    with pytest.raises(TargetError, match=field):
        build_http_target(url, payload=None, settings=settings, max_in_flight=1)


def test_tls_files_on_a_plain_http_target_and_bad_pem_files_are_refused(tmp_path):
    with pytest.raises(TargetError, match="http.ca_file: only for https"):
        build_http_target("http://127.0.0.1:1/x", payload=None, settings={"ca_file": __file__}, max_in_flight=1)
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(TargetError, match="http.ca_file"):
        build_http_target("https://127.0.0.1:1/x", payload=None, settings={"ca_file": str(bad)}, max_in_flight=1)
    with pytest.raises(TargetError, match="http.cert_file"):
        build_http_target("https://127.0.0.1:1/x", payload=None, settings={"cert_file": str(bad)}, max_in_flight=1)


def test_scenario_files_are_checked_before_the_run():
    with pytest.raises(ScenarioError, match=r"http.endpoints\[0\].wieght"):
        load_scenario(None, {"target": "http://127.0.0.1:1/", "http": {"endpoints": [{"url": "/a", "wieght": 2}]}},
                      env={})
    with pytest.raises(ScenarioError, match="payload"):
        load_scenario(None, {"target": "http://127.0.0.1:1/", "payload": "feature_window_hot",
                             "http": {"endpoints": [{"url": "/a"}]}}, env={})


def test_closed_loop_users_get_the_same_error_details():
    with RecordingServer({"/f": (422, {}, b'{"detail":"no"}')}) as srv:
        r = run({"target": srv.url + "/f", "duration": "1s", "profile": {"type": "users", "vus": 2, "iterations": 3}})
    (d,) = r["error_details"]
    assert (d["type"], d["count"]) == ("HTTP 422", 6)
    assert d["samples"][0] == 'HTTP 422: {"detail":"no"}'
