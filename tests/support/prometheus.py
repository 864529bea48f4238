"""The real Prometheus for integration tests: a free loopback port, its own storage folder,
dies with the test (``harness.lifecycle.spawn``), restartable on the same storage."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Sequence

from harness.lifecycle import spawn
from tests.support.ci import require_binary

__all__ = ["PrometheusProcess", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrometheusProcess:
    """``prometheus`` with ``config`` (YAML text) and extra ``flags``; ``start``/``stop`` or a
    context manager; ``query``/``wait_for``/``value`` ask its HTTP API."""

    def __init__(self, folder: Path, config: str, flags: Sequence[str] = ()) -> None:
        self.binary = require_binary("prometheus", "prometheus")
        self.folder = folder
        (folder / "prometheus.yml").write_text(config)
        self.flags = list(flags)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(folder / "prometheus.log", "ab")
        self.proc: Any = None

    def start(self) -> "PrometheusProcess":
        self.proc = spawn([self.binary, f"--config.file={self.folder / 'prometheus.yml'}",
                           f"--storage.tsdb.path={self.folder / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
                           *self.flags], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            assert self.proc.poll() is None, (self.folder / "prometheus.log").read_text()[-2000:]
            time.sleep(0.1)
        raise AssertionError("Prometheus did not become ready")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def close(self) -> None:
        self.stop()
        self.log.close()

    def __enter__(self) -> "PrometheusProcess":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def query(self, expr: str) -> List[Dict[str, Any]]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def wait_for(self, expr: str, timeout_s: float = 15.0) -> List[Dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            res = self.query(expr)
            if res:
                return res
            time.sleep(0.2)
        raise AssertionError(f"no result for {expr}")

    def value(self, expr: str) -> float:
        res = self.query(expr)
        assert len(res) == 1, (expr, res)
        return float(res[0]["value"][1])
