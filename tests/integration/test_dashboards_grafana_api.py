"""grafana-client calls (dashboard push, run annotations) against a stand-in Grafana.

Grafana itself cannot run here. The stand-in is a local HTTP server that accepts only what
Grafana's HTTP API accepts for the calls we make -- paths, methods, the auth header, and
the JSON bodies' keys and types (``POST /api/folders``, ``GET /api/folders/:uid``,
``POST /api/dashboards/db``, ``POST /api/annotations``) -- records every request, and
answers like Grafana. Anything else gets a 4xx and is recorded as a violation.
"""

from __future__ import annotations

import argparse
import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional

import pytest

from harness.observe import annotations as ha
from harness.observe import dashboards as hd
from harness.cli import dashboards as dashboards_cli
from harness.cli import run as run_cli

TOKEN = "glsa_test_token"
USER, PASSWORD = "admin", "s3cret"


class FakeGrafana:
    """Records requests; checks each against the Grafana HTTP API's shape."""

    def __init__(self, *, folders: Optional[Dict[str, str]] = None, fail_with: Optional[int] = None) -> None:
        self.requests: List[Dict[str, Any]] = []
        self.violations: List[str] = []
        self.folders = dict(folders or {})
        self.fail_with = fail_with
        self._ids = iter(range(1, 10_000))
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if not raw:
                    return None
                try:
                    return json.loads(raw)
                except ValueError:
                    fake.violations.append(f"{self.command} {self.path}: body is not JSON")
                    return None

            def _answer(self, status: int, doc: Any) -> None:
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                body = self._body() if self.command in ("POST", "PUT") else None
                auth = self.headers.get("Authorization", "")
                fake.requests.append({"method": self.command, "path": self.path, "auth": auth, "body": body,
                                      "content_type": self.headers.get("Content-Type", "")})
                if not fake._auth_ok(auth):
                    self._answer(401, {"message": "Unauthorized"})
                    return
                if fake.fail_with:
                    self._answer(fake.fail_with, {"message": "injected failure"})
                    return
                status, doc = fake.route(self.command, self.path, body, self.headers.get("Content-Type", ""))
                self._answer(status, doc)

            do_GET = do_POST = do_PUT = do_DELETE = _handle  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def _auth_ok(self, header: str) -> bool:
        if header == f"Bearer {TOKEN}":
            return True
        if header.startswith("Basic "):
            return base64.b64decode(header[6:]).decode() == f"{USER}:{PASSWORD}"
        return False

    def _check_keys(self, where: str, body: Any, required: Dict[str, tuple], optional: Dict[str, tuple]) -> bool:
        if not isinstance(body, dict):
            self.violations.append(f"{where}: body must be a JSON object")
            return False
        ok = True
        for key, types in required.items():
            if key not in body or not isinstance(body[key], types):
                self.violations.append(f"{where}: {key!r} missing or not {types}")
                ok = False
        for key, value in body.items():
            if key in required:
                continue
            if key not in optional:
                self.violations.append(f"{where}: unknown key {key!r}")
                ok = False
            elif not isinstance(value, optional[key]):
                self.violations.append(f"{where}: {key!r} has type {type(value).__name__}")
                ok = False
        return ok

    def route(self, method: str, path: str, body: Any, ctype: str) -> tuple:
        if method in ("POST", "PUT") and not ctype.startswith("application/json"):
            self.violations.append(f"{method} {path}: Content-Type {ctype!r}")
        if method == "GET" and path.startswith("/api/folders/"):
            uid = path.rsplit("/", 1)[1]
            if uid in self.folders:
                return 200, {"uid": uid, "title": self.folders[uid], "id": 1}
            return 404, {"message": "folder not found", "status": "not-found"}
        if method == "POST" and path == "/api/folders":
            if self._check_keys("POST /api/folders", body, {"title": (str,)}, {"uid": (str,), "parentUid": (str,)}):
                self.folders[body.get("uid") or "generated"] = body["title"]
                return 200, {"id": next(self._ids), "uid": body.get("uid"), "title": body["title"]}
            return 400, {"message": "bad request"}
        if method == "POST" and path == "/api/dashboards/db":
            ok = self._check_keys("POST /api/dashboards/db", body, {"dashboard": (dict,)},
                                  {"overwrite": (bool,), "folderUid": (str,), "folderId": (int,), "message": (str,)})
            dash = (body or {}).get("dashboard") or {}
            if ok and not (isinstance(dash.get("uid"), str) and isinstance(dash.get("title"), str)):
                self.violations.append("POST /api/dashboards/db: dashboard.uid/title missing")
                ok = False
            if ok and dash.get("id") not in (None,):
                self.violations.append("POST /api/dashboards/db: dashboard.id set (a new dashboard has none)")
            if ok and body.get("folderUid") and body["folderUid"] not in self.folders:
                return 400, {"message": "folder not found"}
            if not ok:
                return 400, {"message": "bad request"}
            return 200, {"id": next(self._ids), "uid": dash["uid"], "url": f"/d/{dash['uid']}/slug",
                         "status": "success", "version": 1, "slug": "slug"}
        if method == "POST" and path == "/api/annotations":
            ok = self._check_keys("POST /api/annotations", body, {"time": (int,), "tags": (list,), "text": (str,)},
                                  {"timeEnd": (int, type(None)), "dashboardUID": (str, type(None)),
                                   "dashboardId": (int, type(None)), "panelId": (int, type(None))})
            if ok and not all(isinstance(t, str) for t in body["tags"]):
                self.violations.append("POST /api/annotations: tags must be strings")
                ok = False
            if ok and body.get("timeEnd") is not None and body["timeEnd"] < body["time"]:
                self.violations.append("POST /api/annotations: timeEnd before time")
                ok = False
            if ok and not (1e12 < body["time"] < 1e14):
                self.violations.append("POST /api/annotations: time is not epoch milliseconds")
                ok = False
            if not ok:
                return 400, {"message": "bad request"}
            return 200, {"message": "Annotation added", "id": next(self._ids)}
        self.violations.append(f"unexpected {method} {path}")
        return 404, {"message": "Not found"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def calls(self, method: str, path: str) -> List[Dict[str, Any]]:
        return [r for r in self.requests if r["method"] == method and r["path"] == path]


@pytest.fixture
def grafana():
    servers: List[FakeGrafana] = []

    def make(**kw: Any) -> FakeGrafana:
        servers.append(FakeGrafana(**kw))
        return servers[-1]
    yield make
    for s in servers:
        s.close()


# --------------------------------------------------------------------------- push


def test_push_creates_the_folder_and_uploads_every_dashboard_with_a_token(grafana) -> None:
    g = grafana()
    answers = hd.push(g.url, TOKEN)
    assert g.violations == []
    assert [r["path"] for r in g.requests[:2]] == ["/api/folders/lbh", "/api/folders"]
    assert g.calls("POST", "/api/folders")[0]["body"] == {"title": "Latency budget", "uid": "lbh"}
    posts = g.calls("POST", "/api/dashboards/db")
    committed = {d["uid"]: d for d in hd.load_dashboards()}
    assert sorted(p["body"]["dashboard"]["uid"] for p in posts) == sorted(committed)
    for p in posts:
        assert p["auth"] == f"Bearer {TOKEN}"
        assert p["body"]["overwrite"] is True and p["body"]["folderUid"] == "lbh"
        assert p["body"]["dashboard"] == committed[p["body"]["dashboard"]["uid"]]
    assert [a["status"] for a in answers] == ["success"] * len(committed)


def test_push_with_user_and_password_into_an_existing_folder(grafana) -> None:
    g = grafana(folders={"lbh": "Latency budget"})
    hd.push(g.url, (USER, PASSWORD))
    assert g.violations == []
    assert g.calls("POST", "/api/folders") == []
    assert all(r["auth"].startswith("Basic ") for r in g.requests)
    assert len(g.calls("POST", "/api/dashboards/db")) == 3


def test_push_reports_grafanas_refusal(grafana) -> None:
    g = grafana()
    with pytest.raises(hd.GrafanaPushError, match="HTTP 401"):
        hd.push(g.url, "wrong-token")
    g2 = grafana(fail_with=500)
    with pytest.raises(hd.GrafanaPushError, match="HTTP 500"):
        hd.push(g2.url, TOKEN)


def test_push_reports_an_unreachable_grafana() -> None:
    with pytest.raises(hd.GrafanaPushError, match="Grafana at http://127.0.0.1:9"):
        hd.push("http://127.0.0.1:9", TOKEN, timeout_s=2)


def test_credentials_come_from_the_environment() -> None:
    assert hd.credential_from_env({"GRAFANA_TOKEN": "t"}) == "t"
    assert hd.credential_from_env({"GRAFANA_USER": "u", "GRAFANA_PASSWORD": "p"}) == ("u", "p")
    assert hd.credential_from_env({"GRAFANA_ADMIN_PASSWORD": "p"}) == ("admin", "p")
    assert hd.credential_from_env({}) is None


def _cli(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(prog="harness")
    dashboards_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_cli_push_and_generate_check(grafana, monkeypatch, capsys, tmp_path) -> None:
    g = grafana()
    monkeypatch.setenv("GRAFANA_TOKEN", TOKEN)
    assert _cli(["dashboards", "push", "--grafana-url", g.url]) == 0
    out = capsys.readouterr().out
    assert f"Latency budget: {g.url}/d/lbh-latency-budget/slug" in out
    assert g.violations == []
    monkeypatch.delenv("GRAFANA_URL", raising=False)
    assert _cli(["dashboards", "push"]) == 2
    assert _cli(["dashboards", "generate", "--check"]) == 0
    assert _cli(["dashboards", "generate", "--out", str(tmp_path)]) == 0
    (tmp_path / "scaling.json").write_text("{}\n")
    assert _cli(["dashboards", "generate", "--check", "--out", str(tmp_path)]) == 1
    assert "scaling.json (differs)" in capsys.readouterr().err


# --------------------------------------------------------------------------- annotations


def _stages_run(annotations: Any = None):
    from harness.run.runner import Run, RunOptions
    from harness.config.scenario import load_scenario

    sc = load_scenario(None, {"target": "noop", "duration": "3s",
                              "profile": {"type": "stages", "stages": [
                                  {"duration": "1s", "target": 20, "name": "ramp"},
                                  {"duration": "1s", "target": 20, "name": "hold"},
                                  {"duration": "1s", "target": 40, "name": "peak"}]}}, env={})
    options = RunOptions(metrics_port=None, progress="off", install_signal_handlers=False)
    if annotations is not None:
        annotations.subscribe(options.events)
    return Run(sc, options)


def test_run_annotations_start_phases_and_end(grafana) -> None:
    g = grafana()
    ann = ha.RunAnnotations(ha.GrafanaAnnotator(g.url, TOKEN))
    run = _stages_run(ann)
    result = run.execute()
    errors = ann.finish(result)
    assert errors == [] and g.violations == []
    posts = [r["body"] for r in g.calls("POST", "/api/annotations")]
    kinds = [next(t for t in p["tags"] if t in ("start", "phase", "end")) for p in posts]
    assert kinds == ["start", "phase", "phase", "phase", "end"]
    for p in posts:
        assert {"lbh-run", f"run:{run.run_id}", "scenario:default"} <= set(p["tags"])
        assert "dashboardUID" not in p or p["dashboardUID"] is None  # org-wide: the dashboards query the tag
    start, *phases, end = posts
    assert [t for p in phases for t in p["tags"] if t.startswith("phase:")] == ["phase:ramp", "phase:hold",
                                                                                 "phase:peak"]
    # phases 1 s apart, the first at the run's start; the end is a region over the whole run
    assert abs(phases[0]["time"] - start["time"]) < 50
    assert abs((phases[2]["time"] - phases[0]["time"]) - 2000) < 50
    assert end["time"] == start["time"] and end["timeEnd"] - end["time"] >= 2900
    verdict = result["verdict"]
    assert end["text"].startswith(f"run {run.run_id} completed: thresholds ")
    assert end["text"].endswith(f"exit {verdict['exit_code']}")
    assert ("passed" if verdict["thresholds_passed"] else "failed") in end["text"]


def test_annotations_to_named_dashboards(grafana) -> None:
    g = grafana()
    annotator = ha.GrafanaAnnotator(g.url, (USER, PASSWORD), dashboard_uids=["lbh-load-run", "lbh-latency-budget"])
    annotator.annotate("hello", ["lbh-run", "test"], 1_700_000_000.0, 1_700_000_005.5)
    posts = [r["body"] for r in g.calls("POST", "/api/annotations")]
    assert g.violations == []
    assert [p["dashboardUID"] for p in posts] == ["lbh-load-run", "lbh-latency-budget"]
    assert posts[0]["time"] == 1_700_000_000_000 and posts[0]["timeEnd"] == 1_700_000_005_500


def test_a_failing_grafana_never_fails_the_run(grafana) -> None:
    g = grafana(fail_with=500)
    ann = ha.RunAnnotations(ha.GrafanaAnnotator(g.url, TOKEN))
    result = _stages_run(ann).execute()
    assert result["status"] == "completed"
    errors = ann.finish(result)
    assert errors and all("HTTP 500" in e for e in errors)


def test_run_arguments_and_from_args(grafana) -> None:
    parser = argparse.ArgumentParser()
    run_cli.add_grafana_arguments(parser)
    args = parser.parse_args([])
    args.grafana_url = None
    assert run_cli.annotations_from_args(args) is None
    g = grafana()
    args = parser.parse_args(["--grafana-url", g.url, "--grafana-dashboard", "lbh-load-run"])
    ann = run_cli.annotations_from_args(args, env={"GRAFANA_TOKEN": TOKEN})
    assert ann is not None and ann.annotator.dashboard_uids == ["lbh-load-run"]
    ann.finish()  # no run: nothing posted, nothing hangs
    assert g.requests == []
