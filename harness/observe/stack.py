"""A local Prometheus + Alertmanager for one run: the project's rules evaluated on the
run, alerts delivered to the harness's own webhook, everything removed afterwards.

Why real binaries: "this run would have paged" is only true if the real rule engine
evaluated the real rules on the real series. Ports are free loopback ports; data lives in
a temporary directory that is deleted when the stack stops (also on Ctrl-C and errors).

Nothing outlives the harness: both programs run under a parent-death signal
(:func:`harness.lifecycle.spawn`), a :class:`~harness.lifecycle.Guardian` removes the folder
if the harness is killed with -9, and a later start removes any folder whose owner (the pid
in its ``owner`` file) is gone. The webhook listens on loopback only, on its own port, and
records only posts to its per-run secret path.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml

from harness.lifecycle import Guardian, held_signals, pid_alive, spawn
from harness.observe import shipped

__all__ = ["LocalStack", "StackError", "StackConfigError", "WebhookReceiver", "PrometheusClient", "find_binaries",
           "missing_binaries_message", "remove_stale_stacks", "STACK_PREFIX", "OWNER_FILE"]

WEBHOOK_PATH = "/alertmanager"
STACK_PREFIX = "lbh-stack-"
OWNER_FILE = "owner"


class StackError(RuntimeError):
    """The local stack cannot start; the message says what to install or fix."""


class StackConfigError(StackError):
    """A rule or Alertmanager file is missing or unreadable (a usage error: exit 2)."""


def find_binaries() -> Dict[str, Optional[str]]:
    return {
        "prometheus": shutil.which("prometheus"),
        "alertmanager": shutil.which("prometheus-alertmanager") or shutil.which("alertmanager"),
    }


def missing_binaries_message(found: Dict[str, Optional[str]]) -> Optional[str]:
    missing = [k for k, v in found.items() if not v]
    if not missing:
        return None
    pkgs = " ".join(sorted({"prometheus" if m == "prometheus" else "prometheus-alertmanager" for m in missing}))
    return (f"--stack local needs {' and '.join(missing)} on PATH. Install them: "
            f"`sudo apt-get install -y --no-install-recommends {pkgs}` (Debian/Ubuntu), or put the release "
            "binaries from prometheus.io on PATH. Without them, run without --stack.")


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# -- the webhook ----------------------------------------------------------------------------


class WebhookReceiver:
    """Receives Alertmanager's webhook notifications (JSON) and keeps them, timestamped.

    Always on loopback (Alertmanager runs next to us), never on the ``--metrics-addr`` a
    user opened, and only at ``/alertmanager/<token>``, a per-run secret: anything else
    gets 404 and is not recorded, so nobody can forge a "page" into a result."""

    def __init__(self, port: int = 0) -> None:
        self.notifications: List[Dict[str, Any]] = []
        self.rejected = 0
        self._lock = threading.Lock()
        self._event = threading.Condition(self._lock)
        self._path = f"{WEBHOOK_PATH}/{secrets.token_urlsafe(18)}"
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _refuse(self) -> None:
                with receiver._lock:
                    receiver.rejected += 1
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                self._refuse()

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                if not hmac.compare_digest(self.path.encode(), receiver._path.encode()):
                    self._refuse()
                    return
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    length = -1
                if length < 0 or length > 10_000_000:
                    self.send_response(413)
                    self.end_headers()
                    return
                body = self.rfile.read(length)
                try:
                    payload = json.loads(body)
                except ValueError:
                    self.send_response(400)
                    self.end_headers()
                    return
                with receiver._lock:
                    receiver.notifications.append({"received_at": time.time(), "path": self.path,
                                                   "payload": payload})
                    receiver._event.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="lbh-webhook", daemon=True)
        self._thread.start()
        self.port = self._server.server_port
        self.url = f"http://127.0.0.1:{self.port}{self._path}"

    def wait_for(self, predicate, timeout_s: float) -> bool:
        """Wait until ``predicate(notifications)`` is true (or the timeout passes)."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while not predicate(self.notifications):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._event.wait(left)
            return True

    def summary(self) -> List[Dict[str, Any]]:
        out = []
        with self._lock:
            items = list(self.notifications)
        for n in items:
            p = n["payload"]
            out.append({
                "received_at": n["received_at"],
                "receiver": p.get("receiver"),
                "status": p.get("status"),
                "group_labels": p.get("groupLabels", {}),
                "alerts": [{"alertname": a.get("labels", {}).get("alertname"),
                            "severity": a.get("labels", {}).get("severity"),
                            "status": a.get("status"),
                            "startsAt": a.get("startsAt"),
                            "summary": a.get("annotations", {}).get("summary")} for a in p.get("alerts", [])],
            })
        return out

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# -- Prometheus HTTP API ----------------------------------------------------------------------


class PrometheusClient:
    """The few Prometheus HTTP API calls the harness needs."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def _get(self, path: str, params: Optional[Dict[str, Any]] = None) -> Any:
        q = ("?" + urllib.parse.urlencode(params)) if params else ""
        with urllib.request.urlopen(self.url + path + q, timeout=self.timeout_s) as resp:
            body = json.loads(resp.read())
        if body.get("status") != "success":
            raise StackError(f"Prometheus {path}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, at: Optional[float] = None) -> List[Dict[str, Any]]:
        params: Dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = at
        return self._get("/api/v1/query", params)["result"]

    def query_range(self, expr: str, start: float, end: float, step: float = 1.0) -> List[Dict[str, Any]]:
        return self._get("/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": step})["result"]

    def alerts(self) -> List[Dict[str, Any]]:
        return self._get("/api/v1/alerts")["alerts"]

    def targets(self) -> List[Dict[str, Any]]:
        return self._get("/api/v1/targets")["activeTargets"]

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False


# -- the stack ---------------------------------------------------------------------------------


def _process_start(pid: int) -> Optional[str]:
    """The start time of ``pid`` (clock ticks since boot, /proc), against pid reuse."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def remove_stale_stacks(parent: Optional[Path] = None) -> List[Path]:
    """Remove the stack folders under ``parent`` (the temp dir) whose owner is gone: a
    harness killed before it could clean up. A folder without a readable owner file, or
    owned on another host (a temp dir shared with a container), is left alone."""
    parent = Path(parent or tempfile.gettempdir())
    removed = []
    try:
        folders = [p for p in parent.glob(STACK_PREFIX + "*") if p.is_dir()]
    except OSError:
        return removed
    for folder in folders:
        try:
            pid_s, started, host = ((folder / OWNER_FILE).read_text().split() + ["", "", ""])[:3]
            pid = int(pid_s)
        except (OSError, ValueError):
            continue
        started = "" if started == "-" else started
        if pid == os.getpid() or (host and host != socket.gethostname()):
            continue
        alive = pid_alive(pid) and (not started or _process_start(pid) in (None, started))
        if not alive:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


@dataclass
class LocalStack:
    """Prometheus + Alertmanager on free loopback ports. Use as a context manager."""

    scrape_targets: Dict[str, Sequence[str]] = field(default_factory=dict)  # job -> ["host:port", ...]
    webhook_url: Optional[str] = None
    #: rules + alertmanager.yml; None: the ones shipped in the package
    alerts_dir: Optional[Path] = None
    scrape_interval_s: float = 1.0
    host: str = "127.0.0.1"
    start_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        self.dir: Optional[Path] = None
        self.prometheus_url = ""
        self.alertmanager_url = ""
        self._procs: List[subprocess.Popen] = []
        self._names: List[str] = []
        self._logs: Dict[str, Path] = {}
        self._guardian: Optional[Guardian] = None

    # configuration ---------------------------------------------------------------------------

    def _alertmanager_config(self) -> Dict[str, Any]:
        folder = shipped.alerts_dir() if self.alerts_dir is None else self.alerts_dir
        try:
            cfg = yaml.safe_load(shipped.read_text(folder, shipped.ALERTMANAGER_FILE))
        except (shipped.AssetError, yaml.YAMLError) as exc:
            raise StackConfigError(f"Alertmanager config: {exc}") from None
        if not isinstance(cfg, dict):
            raise StackConfigError(f"{folder / shipped.ALERTMANAGER_FILE}: expected a mapping, got {type(cfg).__name__}")
        # Every receiver becomes the harness's webhook: the run itself is the pager here;
        # secrets for real Slack/PagerDuty receivers never leave the user's own config.
        receivers = []
        for r in cfg.get("receivers", []) or [{"name": "harness"}]:
            entry: Dict[str, Any] = {"name": r["name"]}
            if self.webhook_url:
                entry["webhook_configs"] = [{"url": self.webhook_url, "send_resolved": True}]
            receivers.append(entry)
        cfg["receivers"] = receivers
        route = cfg.setdefault("route", {})
        # A test run lasts seconds: deliver the first notification at once, repeat quickly.
        self._shorten_timers(route)
        cfg.pop("templates", None)
        return cfg

    def _shorten_timers(self, route: Dict[str, Any], top: bool = True) -> None:
        if top:
            route.update(group_wait="1s", group_interval="2s", repeat_interval="1m")
        else:  # children inherit the short timers from the top route
            for key in ("group_wait", "group_interval", "repeat_interval"):
                route.pop(key, None)
        for child in route.get("routes", []) or []:
            self._shorten_timers(child, top=False)

    def _write_rules(self, into: Path) -> List[str]:
        """Copy every rule file into the stack's folder (Prometheus reads paths; the shipped
        rules may sit inside a zip); all must exist, never an empty ``rule_files``."""
        try:
            texts = shipped.rule_texts(self.alerts_dir)
        except shipped.AssetError as exc:
            raise StackConfigError(f"alert rules: {exc}") from None
        paths = []
        for name, text in texts.items():
            path = into / name
            path.write_text(text)
            paths.append(str(path))
        return paths

    def _prometheus_config(self, am_port: int, rules: Sequence[str] = ()) -> Dict[str, Any]:
        interval = f"{int(self.scrape_interval_s * 1000)}ms"
        return {
            "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
            "rule_files": list(rules),
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"{self.host}:{am_port}"]}]}]},
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": list(targets)}]}
                for job, targets in self.scrape_targets.items()
            ],
        }

    # lifecycle ---------------------------------------------------------------------------------

    def start(self) -> "LocalStack":
        found = find_binaries()
        msg = missing_binaries_message(found)
        if msg:
            raise StackError(msg)
        remove_stale_stacks()
        self.dir = Path(tempfile.mkdtemp(prefix=STACK_PREFIX))
        try:
            (self.dir / OWNER_FILE).write_text(
                f"{os.getpid()} {_process_start(os.getpid()) or '-'} {socket.gethostname()}\n")
            self._guardian = Guardian(str(self.dir))
            am_port = _free_port(self.host)
            prom_port = _free_port(self.host)
            (self.dir / "alertmanager.yml").write_text(yaml.safe_dump(self._alertmanager_config(), sort_keys=False))
            rules = self._write_rules(self.dir)
            (self.dir / "prometheus.yml").write_text(yaml.safe_dump(self._prometheus_config(am_port, rules),
                                                                    sort_keys=False))
            self._spawn("alertmanager", [
                found["alertmanager"], f"--config.file={self.dir / 'alertmanager.yml'}",
                f"--storage.path={self.dir / 'am-data'}", f"--web.listen-address={self.host}:{am_port}",
                "--cluster.listen-address=",  # no gossip port: several stacks may run side by side
            ])
            self._spawn("prometheus", [
                found["prometheus"], f"--config.file={self.dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.dir / 'prom-data'}", f"--web.listen-address={self.host}:{prom_port}",
                "--rules.alert.resend-delay=1s",  # the 1 m default hides the first alert from a late Alertmanager
                # native histograms: scraped over protobuf (harness.record.native; the classic series stay)
                "--enable-feature=exemplar-storage,native-histograms",  # no --web.enable-lifecycle: nobody may /-/quit it
            ])
            self.prometheus_url = f"http://{self.host}:{prom_port}"
            self.alertmanager_url = f"http://{self.host}:{am_port}"
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str, argv: List[str]) -> None:
        assert self.dir is not None
        log = self.dir / f"{name}.log"
        self._logs[name] = log
        # Signals are held from the start until the child is tracked: a SIGTERM that cut in
        # between would leave a running program nobody stops, writing into a removed folder.
        with held_signals():
            fh = open(log, "wb")
            try:
                # dies with us even on kill -9; its own session: Ctrl-C goes to us, not to it
                proc = spawn(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
            finally:
                fh.close()
            self._procs.append(proc)
            self._names.append(name)
            if self._guardian is not None:
                self._guardian.watch(proc.pid)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        for name, url in (("alertmanager", self.alertmanager_url), ("prometheus", self.prometheus_url)):
            while True:
                proc = self._procs[0 if name == "alertmanager" else 1]
                if proc.poll() is not None:
                    raise StackError(f"{name} exited with code {proc.returncode}: {self.log_tail(name)}")
                try:
                    with urllib.request.urlopen(url + "/-/ready", timeout=1) as resp:
                        if resp.status == 200:
                            break
                except (urllib.error.URLError, OSError):
                    pass
                if time.monotonic() > deadline:
                    raise StackError(f"{name} not ready after {self.start_timeout_s:.0f} s: {self.log_tail(name)}")
                time.sleep(0.1)

    def exited(self) -> Optional[str]:
        """None while both programs run; else which one exited, with its code and log tail."""
        for name, proc in zip(self._names, self._procs):
            code = proc.poll()
            if code is not None:
                return f"{name} exited with code {code}: {self.log_tail(name)}"
        return None

    @property
    def pids(self) -> Dict[str, int]:
        return {name: proc.pid for name, proc in zip(self._names, self._procs)}

    def log_tail(self, name: str, lines: int = 5) -> str:
        log = self._logs.get(name)
        if log is None or not log.exists():
            return "(no log)"
        return " | ".join(log.read_text(errors="replace").strip().splitlines()[-lines:])

    def stop(self) -> None:
        with held_signals():  # a signal now must not leave one program or the folder behind
            self._stop()

    def _stop(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
        # one deadline for all (not 10 s each): a loaded machine must not turn Ctrl-C into
        # a half-minute wait; what has not flushed by then is killed (its data is temporary)
        deadline = time.monotonic() + 8.0
        for proc in self._procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
        for proc in self._procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass  # unkillable (D state): nothing more a parent can do
        self._procs = []
        self._names = []
        if self.dir is not None:
            for _ in range(3):  # a child's last write may race the first pass
                shutil.rmtree(self.dir, ignore_errors=True)
                if not self.dir.exists():
                    break
                time.sleep(0.1)
            self.dir = None
        if self._guardian is not None:
            self._guardian.release()
            self._guardian = None

    def __enter__(self) -> "LocalStack":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def client(self) -> PrometheusClient:
        return PrometheusClient(self.prometheus_url)
