"""``harness scale-test --replicas``: the replica sweep against the fake Kubernetes API
(tests/support/fake_kube_api.py, its scale subresource and Pods turning Ready), through the
official ``kubernetes`` client, with real load on a loopback Service whose capacity follows
the number of Ready Pods (PER_REPLICA_RPS each: an M/D/k queue with one server per Pod).
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, List

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
try:
    import kubernetes  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    if IN_CI:
        pytest.fail("the official kubernetes client is not installed: pip install kubernetes", pytrace=False)
    pytest.skip("the official kubernetes client is not installed: pip install kubernetes", allow_module_level=True)

from tests.support.cli import run_subcommand  # noqa: E402
from tests.support.fake_kube_api import FakeKubeAPI, Keyframe, write_kubeconfig  # noqa: E402

from harness.cli import scale_test as scale_test_cli  # noqa: E402
from harness.lifecycle import Interrupted  # noqa: E402
from harness.studies.kube import Kube  # noqa: E402
from harness.studies.replica_sweep import (SweepConfig, build_sweep_scenario, efficiency,  # noqa: E402
                                           parse_replicas, run_sweep)
from harness.studies.search import SearchSettings  # noqa: E402

NS, DEP = "lbh", "feature-service"
SCALE_PATH = f"/apis/apps/v1/namespaces/{NS}/deployments/{DEP}/scale"
ORIGINAL = 3
SERVICE_S = 0.025                     # one request per Pod at a time, 25 ms each: 40 rps per Ready Pod
PER_REPLICA_RPS = 1 / SERVICE_S
AT_THREE = (Keyframe(0.0, 40, "1", ORIGINAL, ORIGINAL),)


def _run_cli(argv: List[str]) -> int:
    return run_subcommand(scale_test_cli, ["scale-test", *argv])


class ReplicatedService:
    """The Service: as many servers as the fake cluster has Ready Pods; a request waits for
    a free one (FIFO enough for a knee), holds it SERVICE_S, answers 200."""

    def __init__(self, api: FakeKubeAPI) -> None:
        svc = self
        self.api = api
        self.busy = 0
        self.served = 0
        self.cond = threading.Condition()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                with svc.cond:
                    while svc.busy >= max(svc.api.ready_now(), 1):
                        svc.cond.wait(0.005)   # the limit follows the Pods: re-read it
                    svc.busy += 1
                try:
                    deadline = time.perf_counter() + SERVICE_S
                    while (left := deadline - time.perf_counter()) > 0:
                        time.sleep(left if left > 0.002 else 0.0002)
                finally:
                    with svc.cond:
                        svc.busy -= 1
                        svc.served += 1
                        svc.cond.notify()
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: 11\r\n\r\n{\"ok\":true}")

            def log_message(self, *a: Any) -> None:
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.srv.daemon_threads = True
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.srv.server_port}/v1/features"

    def busy_seen(self) -> bool:
        """Whether the load reached the Service."""
        return self.served > 0

    def close(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()


def _patches(api: FakeKubeAPI) -> List[dict]:
    return [r for r in api.requests if r["method"] == "PATCH"]


# ----------------------------------------------------------------------------- the full sweep


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Replicas 1, 2, 4 from an original 3; short search steps (a wide lag bound: this
    judges the sweep, not the shared 2-core machine)."""
    tmp = tmp_path_factory.mktemp("sweep")
    api = FakeKubeAPI(namespace=NS, deployment=DEP, schedule=AT_THREE, ready_delay_s=0.1).start()
    svc = ReplicatedService(api)
    out = tmp / "sweep.json"
    err = io.StringIO()
    old, sys.stderr = sys.stderr, err  # the progress lines: the CLI writes them to sys.stderr
    try:
        code = _run_cli(["--replicas", "4,1,2", "--deployment", DEP, "--kubeconfig",
                         write_kubeconfig(tmp / "kubeconfig", api.url, namespace=NS), "--target", svc.url,
                         "--interval", "0.05s", "--ready-timeout", "20s", "--start-rate", "20", "--precision", "0.2",
                         "--step", "1s", "--budget-ms", "150", "--lag-bound-ms", "1000", "--out", str(out)])
    finally:
        sys.stderr = old
        svc.close()
        api.stop()
    return {"code": code, "doc": json.loads(out.read_text()), "api": api, "stderr": err.getvalue()}


def test_sweep_reports_knee_per_replica_and_efficiency(sweep):
    doc = sweep["doc"]
    assert sweep["code"] == 0, sweep["stderr"][-3000:]
    assert doc["schema"] == "harness.studies.replica_sweep/1" and doc["status"] == "completed"
    counts = doc["counts"]
    assert [c["replicas"] for c in counts] == [1, 2, 4]           # ascending, whatever the flag's order
    knees = {c["replicas"]: c["knee_rps"] for c in counts}
    assert all(c["search_status"] == "found" for c in counts), [c["message"] for c in counts]
    # the capacity is 40 rps per Ready Pod: each knee is under its capacity and grows with the Pods
    for n, knee in knees.items():
        assert 0.4 * n * PER_REPLICA_RPS <= knee <= 1.15 * n * PER_REPLICA_RPS, knees
    assert knees[1] < knees[2] < knees[4]
    base = counts[0]
    assert base["efficiency"] == 1.0 and base["efficiency_bound"] == "exact"
    for c in counts:
        assert c["knee_per_replica_rps"] == pytest.approx(c["knee_rps"] / c["replicas"], rel=1e-3)
        assert c["efficiency"] == pytest.approx(c["knee_rps"] / (c["replicas"] * knees[1]), rel=1e-3)
        assert 0.5 < c["efficiency"] < 1.5
        assert c["steps"] and all(st["rate"] > 0 for st in c["steps"])
    assert doc["efficiency"] == {str(c["replicas"]): c["efficiency"] for c in counts}
    assert doc["summary"]["min_efficiency"] == min(c["efficiency"] for c in counts[1:])
    assert doc["kubernetes"]["original_replicas"] == ORIGINAL


def test_sweep_patched_the_scale_subresource_and_restored_the_count(sweep):
    api, doc = sweep["api"], sweep["doc"]
    assert api.patches == [1, 2, 4, ORIGINAL]
    for r in _patches(api):
        assert r["path"] == SCALE_PATH
        assert r["content_type"].startswith("application/merge-patch+json")
        assert set(json.loads(r["body"])) == {"spec"}               # nothing but spec.replicas
    assert doc["restored"] == {"replicas": ORIGINAL, "ok": True}
    # no other write: every other request is a read
    assert {r["method"] for r in api.requests} == {"GET", "PATCH"}


def test_sweep_waited_for_the_pods_with_progress_lines(sweep):
    err, counts = sweep["stderr"], sweep["doc"]["counts"]
    assert "replicas 1: waiting for ready pods:" in err        # 3 -> 1: surplus pods still there at first
    assert "replicas 4: waiting for ready pods: 2/4 ready" in err
    assert "replicas 4: 4/4 ready" in err
    # 2 -> 4 at one pod per 0.1 s: at least 0.2 s
    assert counts[2]["ready_after_s"] >= 0.15
    assert f"restored Deployment {NS}/{DEP} to {ORIGINAL} replica(s)" in err


def test_summary_prints_a_line_per_count(sweep):
    from harness.studies.replica_sweep import format_sweep

    text = format_sweep(sweep["doc"])
    assert "efficiency" in text and f"replicas restored to {ORIGINAL}" in text
    rows = [li.split() for li in text.splitlines() if li.strip() and li.split()[0] in ("1", "2", "4")]
    assert [r[0] for r in rows] == ["1", "2", "4"]
    assert rows[0][4] == "1.00"


# ----------------------------------------------------------------------------- failures


@pytest.mark.parametrize("value, needle", [("1,x", "'x' is not a whole number"), ("0,2", "between 1 and"),
                                           ("2,2", "2 is listed twice"), ("", "comma-separated"),
                                           ("1,,2", "'' is not a whole number")])
def test_bad_replicas_flag_is_a_usage_error(tmp_path, capsys, value, needle):
    with pytest.raises(ValueError, match="--replicas"):
        parse_replicas(value)
    code = _run_cli(["--replicas", value, "--deployment", DEP, "--server", "http://127.0.0.1:9",
                     "--target", "http://127.0.0.1:9/x", "--out", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert code == 2 and "--replicas" in err and needle in err and "Traceback" not in err
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("argv, needle", [
    (["--replicas", "1,2"], "needs --deployment"),
    (["--replicas", "1,2", "--deployment", DEP, "--hpa", "x"], "--replicas and --hpa"),
    (["--deployment", DEP], "--hpa NAME (watch an autoscaler) or --replicas"),
    (["--replicas", "1", "--deployment", DEP, "--watch-scale-down", "1m"], "--watch-scale-down: only for --hpa"),
    (["--replicas", "1", "--deployment", DEP, "--step", "0s"], "--step"),
    (["--replicas", "1", "--deployment", DEP, "--factor", "1"], "factor must be > 1"),
])
def test_sweep_flag_combinations(capsys, argv, needle):
    code = _run_cli([*argv, "--server", "http://127.0.0.1:9", "--target", "http://127.0.0.1:9/x"])
    err = capsys.readouterr().err
    assert code == 2 and needle in err, err


def test_forbidden_patch_is_a_usage_error_before_any_load(tmp_path, capsys):
    api = FakeKubeAPI(namespace=NS, deployment=DEP, schedule=AT_THREE, forbidden=["deployments/scale:patch"]).start()
    try:
        code = _run_cli(["--replicas", "1,2", "--deployment", DEP, "-n", NS, "--server", api.url,
                         "--target", "http://127.0.0.1:9/x", "--out", str(tmp_path / "r.json")])
    finally:
        api.stop()
    err = capsys.readouterr().err
    assert code == 2
    assert "'patch' on deployments/scale.apps" in err and f"for {DEP!r} (resourceNames)" in err
    assert api.patches == [] and not (tmp_path / "r.json").exists()


def test_pods_that_never_get_ready_end_the_sweep_and_restore(tmp_path, capsys):
    """A quota: never more than 1 Ready Pod. Counting 2 times out (exit 1), nothing is
    searched, the count goes back to the original, and the file says why."""
    api = FakeKubeAPI(namespace=NS, deployment=DEP, schedule=(Keyframe(0.0, None, None, 1, 1),),
                      ready_delay_s=0.05, max_ready=1).start()
    out = tmp_path / "r.json"
    try:
        code = _run_cli(["--replicas", "2", "--deployment", DEP, "-n", NS, "--server", api.url,
                         "--target", "http://127.0.0.1:9/x", "--interval", "0.1s", "--ready-timeout", "0.6s",
                         "--out", str(out)])
    finally:
        api.stop()
    captured = capsys.readouterr()
    assert code == 1
    doc = json.loads(out.read_text())
    assert doc["status"] == "failed" and "not ready at 2 replicas after 0.6s" in doc["error"]
    assert "1/2 ready" in doc["error"] and doc["counts"] == []
    assert api.patches == [2, 1] and doc["restored"] == {"replicas": 1, "ok": True}
    assert "status: failed" in captured.out


def test_an_interrupt_mid_search_restores_the_count():
    """Ctrl-C during a step (the CLI's signal scope raises Interrupted at the next step):
    the original count is put back, the document says interrupted."""
    api = FakeKubeAPI(namespace=NS, deployment=DEP, schedule=AT_THREE, ready_delay_s=0.02).start()
    kube = Kube.from_host(api.url, namespace=NS)
    cfg = SweepConfig(deployment=DEP, namespace=NS, replicas=[1, 2], poll_s=0.02, ready_timeout_s=10,
                      search=SearchSettings(step_duration_s=0.5))
    sc = build_sweep_scenario(None, {"target": "http://127.0.0.1:9/x"})
    doc: dict = {}

    def interrupted(_sc):
        raise Interrupted(signal.SIGINT)

    try:
        with pytest.raises(Interrupted):
            run_sweep(sc, kube, cfg, run_step=interrupted, doc=doc)
    finally:
        kube.close()
        api.stop()
    assert api.patches == [1, ORIGINAL]
    assert doc["status"] == "interrupted" and doc["restored"] == {"replicas": ORIGINAL, "ok": True}


def test_someone_else_scaling_stops_the_wait():
    """An HPA still attached changes spec.replicas back: the sweep says so instead of
    measuring the wrong count."""
    api = FakeKubeAPI(namespace=NS, deployment=DEP, schedule=AT_THREE, ready_delay_s=5).start()
    kube = Kube.from_host(api.url, namespace=NS)
    cfg = SweepConfig(deployment=DEP, namespace=NS, replicas=[2], poll_s=0.05, ready_timeout_s=10)
    sc = build_sweep_scenario(None, {"target": "http://127.0.0.1:9/x"})

    def hpa() -> None:
        while not api.patches:
            time.sleep(0.01)
        time.sleep(0.1)
        Kube.from_host(api.url, namespace=NS).set_replicas(DEP, 5)

    t = threading.Thread(target=hpa, daemon=True)
    t.start()
    try:
        doc = run_sweep(sc, kube, cfg)
    finally:
        kube.close()
        api.stop()
    assert doc["status"] == "failed" and "something else scales it" in doc["error"]
    assert api.patches[-1] == ORIGINAL


def test_efficiency_bounds():
    counts = [{"replicas": 1, "knee_rps": 40.0, "knee_is_lower_bound": False},
              {"replicas": 2, "knee_rps": 60.0, "knee_is_lower_bound": False},
              {"replicas": 4, "knee_rps": 150.0, "knee_is_lower_bound": True},
              {"replicas": 8, "knee_rps": None, "knee_is_lower_bound": False}]
    efficiency(counts)
    assert [c["efficiency"] for c in counts] == [1.0, 0.75, 0.9375, None]
    assert [c["efficiency_bound"] for c in counts] == ["exact", "exact", "lower", None]
    assert counts[2]["knee_per_replica_rps"] == 37.5
    # relative to the smallest count when it is not 1
    two = [{"replicas": 2, "knee_rps": 80.0}, {"replicas": 4, "knee_rps": 120.0}]
    efficiency(two)
    assert two[1]["efficiency"] == 0.75


def test_ctrl_c_of_the_command_restores_the_count_and_writes_the_file(tmp_path):
    """The real command in its own process: SIGINT while the first count is being searched
    -> the step stops, the count goes back to the original, the file says interrupted, 105."""
    import subprocess

    from tests.support import REPO_ROOT

    api = FakeKubeAPI(namespace=NS, deployment=DEP, schedule=AT_THREE, ready_delay_s=0.02).start()
    svc = ReplicatedService(api)
    out = tmp_path / "sweep.json"
    proc = None
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness.cli.main", "scale-test", "--replicas", "1,2", "--deployment", DEP,
             "-n", NS, "--server", api.url, "--target", svc.url, "--interval", "0.05s", "--step", "3s",
             "--lag-bound-ms", "1000", "--out", str(out)],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not (api.patches == [1] and svc.busy_seen()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        time.sleep(0.5)                       # inside the first step
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        svc.close()
        api.stop()
    assert proc.returncode == 105, stderr[-2000:]
    assert api.patches == [1, ORIGINAL]
    doc = json.loads(out.read_text())
    assert doc["status"] == "interrupted" and doc["restored"] == {"replicas": ORIGINAL, "ok": True}
    assert "interrupted (SIGINT)" in stderr and "replicas restored to 3" in stdout
