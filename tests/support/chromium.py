"""Render a local HTML file in headless Chromium with the network blocked, and report what
happened: the DOM after the page's scripts ran, console errors and exceptions, every network
request the page attempted, values of JavaScript expressions, and a full-page screenshot.

Why the DevTools protocol (over ``websockets``) rather than ``--dump-dom``: one browser session gives the DOM,
the console (errors are events, not log lines to grep) and the requests (``Network.
requestWillBeSent`` sees an attempt even when the blocked network makes it fail).

The network is blocked twice: every host name resolves to nothing
(``--host-resolver-rules``) and every request goes to a proxy that does not exist
(``--proxy-server=127.0.0.1:9``), so a report that tried to load a CDN script would fail
to draw *and* be listed in ``Rendered.requests``.

Under CI=true a missing ``chromium`` fails the test (:func:`tests.support.ci.require_binary`);
elsewhere it skips with the install line. Artifacts (screenshots, the HTML) go to
:func:`artifacts_dir`: ``$HARNESS_TEST_ARTIFACTS`` (default ``results/test-artifacts/``, which
git ignores) / the test's name.

Usage::

    from tests.support.chromium import render, artifacts_dir
    out = artifacts_dir("test_report_in_chromium")
    page = render(html_path, screenshot=out / "report.png",
                  evaluate={"canvases": "document.querySelectorAll('.lbh-chart canvas').length"})
    assert not page.problems(), page.problems()        # console errors + network attempts
    assert page.values["canvases"] > 0 and "RuntimeError" in page.dom
"""

from __future__ import annotations

import base64
import contextlib
import inspect
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from tests.support import REPO_ROOT
from tests.support.ci import require_binary

__all__ = ["Rendered", "chromium_binary", "render", "artifacts_dir", "png_size", "BLOCK_NETWORK_FLAGS"]

#: flags that leave the page no way out: no name resolves, every request goes to a dead proxy
BLOCK_NETWORK_FLAGS = (
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-domain-reliability",
    "--no-pings",
    "--disable-quic",
)

#: wait until this is truthy (the chart renderer sets it after drawing)
DEFAULT_READY = "document.body && document.body.hasAttribute('data-charts-rendered')"


@dataclass
class Rendered:
    """What one page load produced."""

    url: str
    dom: str
    console_errors: List[str] = field(default_factory=list)  # console.error/assert, exceptions, error logs
    console_messages: List[str] = field(default_factory=list)  # every console call ("type: text")
    requests: List[str] = field(default_factory=list)  # URLs the page asked for, other than itself
    values: Dict[str, Any] = field(default_factory=dict)  # evaluate={name: expression} results (promises awaited)
    screenshot: Optional[Path] = None
    ready: bool = False  # the ready expression became truthy before the timeout

    def problems(self) -> List[str]:
        """Console errors and network attempts, one line each: empty for a clean page."""
        return ([f"console error: {e}" for e in self.console_errors]
                + [f"network request: {u}" for u in self.requests]
                + ([] if self.ready else ["the page never became ready"]))


def chromium_binary() -> str:
    """Path of Debian's ``chromium``: a failure under CI=true, a skip elsewhere."""
    return require_binary("chromium", "chromium")


def artifacts_dir(name: str) -> Path:
    """``$HARNESS_TEST_ARTIFACTS/<name>`` (default ``results/test-artifacts/<name>``), created."""
    base = Path(os.environ.get("HARNESS_TEST_ARTIFACTS", REPO_ROOT / "results" / "test-artifacts"))
    path = base / re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    path.mkdir(parents=True, exist_ok=True)
    return path


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


class _Cdp:
    """A minimal DevTools-protocol client over one page's websocket (``websockets``' sync
    client: a core dependency, so no test-only package is needed)."""

    def __init__(self, ws_url: str, timeout: float, stack: contextlib.ExitStack) -> None:
        from websockets.sync.client import connect

        kw: Dict[str, Any] = {"max_size": None, "compression": None, "open_timeout": timeout,
                              "ping_interval": None}
        if "proxy" in inspect.signature(connect).parameters:  # websockets >= 15 reads proxies from the env
            kw["proxy"] = None
        self.ws = stack.enter_context(connect(ws_url, **kw))  # closed with the stack
        self.next_id = 0
        self.events: List[Dict[str, Any]] = []

    def call(self, method: str, params: Optional[Mapping[str, Any]] = None, timeout: float = 30.0) -> Dict[str, Any]:
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": dict(params or {})}))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer to {method} in {timeout} s")
            msg = json.loads(self.ws.recv(timeout=left))
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def pump(self, seconds: float) -> None:
        """Read events for ``seconds``."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                self.events.append(json.loads(self.ws.recv(timeout=left)))
            except TimeoutError:
                return


def _no_proxy_get(url: str, timeout: float) -> Any:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as r:
        return json.loads(r.read().decode())


def _remote_text(obj: Mapping[str, Any]) -> str:
    if "value" in obj:
        return str(obj["value"])
    return str(obj.get("description") or obj.get("unserializableValue") or obj.get("type"))


def render(
    path: Path,
    *,
    screenshot: Optional[Path] = None,
    evaluate: Optional[Mapping[str, str]] = None,
    ready: str = DEFAULT_READY,
    width: int = 1400,
    height: int = 1000,
    timeout: float = 60.0,
    settle_s: float = 0.5,
) -> Rendered:
    """Open ``path`` (a local file) in headless Chromium with the network blocked, wait
    until ``ready`` (a JS expression) is truthy, let it settle ``settle_s``, then collect
    the DOM, console errors, network attempts, ``evaluate``'s values and (when
    ``screenshot`` is given) a full-page PNG there."""
    binary = chromium_binary()
    url = Path(path).resolve().as_uri()
    profile = Path(tempfile.mkdtemp(prefix="lbh-chromium-"))
    cmd = [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
           "--disable-dev-shm-usage", "--remote-debugging-port=0", "--remote-allow-origins=*",
           f"--user-data-dir={profile}", f"--window-size={width},{height}", "--hide-scrollbars",
           *BLOCK_NETWORK_FLAGS, "about:blank"]
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    cdp: Optional[_Cdp] = None
    stack = contextlib.ExitStack()
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None:
                raise RuntimeError(f"chromium exited ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError("chromium did not open its DevTools port")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        pages = []
        while not pages:
            pages = [t for t in _no_proxy_get(f"http://127.0.0.1:{port}/json/list", 10) if t.get("type") == "page"]
            if not pages:
                if time.monotonic() > deadline:
                    raise TimeoutError("chromium opened no page")
                time.sleep(0.05)
        cdp = _Cdp(pages[0]["webSocketDebuggerUrl"], timeout, stack)
        for domain in ("Runtime", "Log", "Network", "Page"):
            cdp.call(f"{domain}.enable")
        cdp.call("Emulation.setDeviceMetricsOverride",
                 {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        cdp.call("Page.navigate", {"url": url})
        is_ready = False
        while time.monotonic() < deadline:
            r = cdp.call("Runtime.evaluate", {"expression": f"!!({ready})", "returnByValue": True})
            if r.get("result", {}).get("value") is True:
                is_ready = True
                break
            time.sleep(0.1)
        cdp.pump(settle_s)
        values = {}
        for name, expr in (evaluate or {}).items():
            r = cdp.call("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True})
            if "exceptionDetails" in r:
                values[name] = RuntimeError(str(r["exceptionDetails"].get("exception", r["exceptionDetails"])))
            else:
                values[name] = r.get("result", {}).get("value")
        dom = cdp.call("Runtime.evaluate", {"expression": "document.documentElement.outerHTML",
                                            "returnByValue": True})["result"].get("value", "")
        shot_path = None
        if screenshot is not None:
            metrics = cdp.call("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            full_h = int(min(max(height, size["height"]), 16000))
            cdp.call("Emulation.setDeviceMetricsOverride",
                     {"width": width, "height": full_h, "deviceScaleFactor": 1, "mobile": False})
            cdp.pump(0.3)
            shot = cdp.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, timeout=60)
            shot_path = Path(screenshot)
            shot_path.parent.mkdir(parents=True, exist_ok=True)
            shot_path.write_bytes(base64.b64decode(shot["data"]))
        cdp.pump(0.1)
        out = Rendered(url=url, dom=dom, values=values, screenshot=shot_path, ready=is_ready)
        for ev in cdp.events:
            method, p = ev.get("method"), ev.get("params", {})
            if method == "Runtime.consoleAPICalled":
                text = " ".join(_remote_text(a) for a in p.get("args", []))
                out.console_messages.append(f"{p.get('type')}: {text}")
                if p.get("type") in ("error", "assert"):
                    out.console_errors.append(text)
            elif method == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.console_errors.append(f"exception: {d.get('text')} {_remote_text(d.get('exception', {}))}")
            elif method == "Log.entryAdded":
                entry = p.get("entry", {})
                if entry.get("level") == "error":
                    out.console_errors.append(f"log: {entry.get('text')} {entry.get('url', '')}".strip())
            elif method == "Network.requestWillBeSent":
                req_url = p.get("request", {}).get("url", "")
                if req_url != url:
                    out.requests.append(req_url)
        return out
    finally:
        if cdp is not None:
            try:
                cdp.call("Browser.close", timeout=5)
            except Exception:  # noqa: BLE001 - it may close the socket before answering
                pass
        try:
            stack.close()
        except Exception:  # noqa: BLE001 - the browser may have gone first
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()
        shutil.rmtree(profile, ignore_errors=True)
