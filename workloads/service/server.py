"""Running the app on uvicorn: in the foreground with graceful SIGTERM (``serve``), or in a
background thread on a free loopback port (``ServiceThread``, for tests and embedding).

Shutdown on SIGTERM/SIGINT, in order (uvicorn's sequence, plus the readiness period):

1. ``/readyz`` starts answering 503 ``draining`` and keeps doing so for ``drain_delay``
   while the listener still serves everything that arrives, each response with
   ``Connection: close`` (a readiness probe and the load balancer see the pod leave before
   any connection is refused; idle keep-alive connections time out meanwhile). A second
   signal ends the delay at once;
2. the listening socket closes: new connections are refused, never answered 500;
3. idle keep-alive connections close; requests in progress run to completion (each
   bounded by ``request_timeout``; the whole drain by ``drain_timeout``);
4. the app's lifespan waits for computations still holding a slot (timed-out ones),
   shuts the work pool down and logs how many work requests it served.

The connection-level bounds (header deadline and size, connection cap, keep-alive) are
set here on uvicorn, through :mod:`.protocol`.

One process, one event loop: scale with replicas (Kubernetes) rather than uvicorn
workers, so each pod's /metrics describes one process and its budget.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry

from .app import ServiceApp, create_app
from .config import ServiceConfig
from .protocol import REJECT_REASONS, ConnectionLimits, protocol_class

__all__ = ["DrainingServer", "ServiceProcess", "ServiceThread", "serve", "uvicorn_config"]

log = logging.getLogger("workloads.service")

#: ``serve`` prints this and the URL on stderr once the socket is bound (at any log level).
LISTENING_PREFIX = "workloads serve: listening on "


class DrainingServer(uvicorn.Server):
    """uvicorn's server, flipping the app to not-ready the moment the signal arrives and
    closing the listener only ``drain_delay`` seconds later (a second signal: at once)."""

    def __init__(self, config: uvicorn.Config, app: ServiceApp, *, drain_delay: float = 0.0) -> None:
        super().__init__(config)
        self._service_app = app
        self._drain_delay = drain_delay
        self._drain_signal: int | None = None
        self._drain_until = 0.0

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._service_app.state.lbh.begin_drain()
        if self._drain_delay > 0 and self._drain_signal is None and not self.should_exit:
            self._drain_signal = sig
            self._drain_until = time.monotonic() + self._drain_delay
            log.info("draining: the listener closes in %g s (drain_delay); a second signal closes it now",
                     self._drain_delay)
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self._drain_signal is not None and not self.should_exit and time.monotonic() >= self._drain_until:
            super().handle_exit(self._drain_signal, None)
        return await super().on_tick(counter)


def _fit_fd_limit(max_connections: int) -> int:
    """Raise the soft file-descriptor limit to fit ``max_connections`` (+ headroom for the
    process's own files); if the hard limit is lower, lower the cap instead (logged)."""
    headroom = 128
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):  # pragma: no cover - not on this platform
        return max_connections
    want = max_connections + headroom
    if soft != resource.RLIM_INFINITY and soft < want:
        new_soft = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
            soft = new_soft
        except (OSError, ValueError):
            pass
    if soft != resource.RLIM_INFINITY and soft < want:
        fitted = max(1, soft - headroom)
        log.warning("max_connections=%d does not fit the file-descriptor limit (%d): using %d",
                    max_connections, soft, fitted)
        return fitted
    return max_connections


def uvicorn_config(app: ServiceApp, config: ServiceConfig, *, log_level: str = "info",
                   access_log: bool = False) -> uvicorn.Config:
    metrics = app.state.lbh.metrics
    for reason in REJECT_REASONS:
        metrics.connections_rejected.labels(reason)
    limits = ConnectionLimits(
        header_read_timeout=config.header_read_timeout_seconds,
        max_header_bytes=config.max_header_bytes,
        max_connections=_fit_fd_limit(config.max_connections),
        on_reject=lambda reason: metrics.connections_rejected.labels(reason).inc(),
    )
    return uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        lifespan="on",
        log_level=log_level,
        access_log=access_log,
        timeout_graceful_shutdown=config.drain_timeout_seconds,
        server_header=False,
        # the header deadline and size limit and the connection cap live in this protocol
        http=protocol_class(limits),
        # uvicorn's own limit_concurrency would answer 503 outside our metrics; the app sheds.
        limit_concurrency=None,
        timeout_keep_alive=config.keep_alive_timeout_seconds,  # type: ignore[arg-type]
    )


def serve(
    config: ServiceConfig,
    *,
    registry: CollectorRegistry | None = None,
    tracer_provider: Any = None,
    log_level: str = "info",
    access_log: bool = False,
) -> int:
    """Run in the foreground until SIGTERM/SIGINT, drain, return 0 (1 if it never started)."""
    app = create_app(config, registry=registry, tracer_provider=tracer_provider)
    uv_config = uvicorn_config(app, config, log_level=log_level, access_log=access_log)
    server = DrainingServer(uv_config, app, drain_delay=config.drain_delay_seconds)
    try:
        sock = uv_config.bind_socket()  # bound here, so the real port (for --port 0) is known
    except OSError as exc:
        print(f"workloads serve: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"{LISTENING_PREFIX}http://{shown}:{port}", file=sys.stderr, flush=True)
    # uvicorn re-raises the captured signal after shutting down, with the handler it found
    # on entry; a no-op one makes a drained shutdown exit 0 instead of dying by SIGTERM.
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if server.started else 1


class ServiceThread:
    """The service on ``127.0.0.1:<free port>`` in a daemon thread::

        with ServiceThread(ServiceConfig(), registry=reg) as svc:
            httpx.get(svc.url + "/readyz")

    ``wait_ready`` (default) blocks until ``/readyz`` would say ready. ``stop()`` runs the
    same graceful shutdown as SIGTERM (readiness flip, drain, lifespan shutdown).
    """

    def __init__(
        self,
        config: ServiceConfig | None = None,
        *,
        registry: CollectorRegistry | None = None,
        tracer_provider: Any = None,
        app: ServiceApp | None = None,
        log_level: str = "warning",
    ) -> None:
        self.config = (config or ServiceConfig()).replace(host="127.0.0.1", port=0)
        self.app = app or create_app(self.config, registry=registry, tracer_provider=tracer_provider)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = DrainingServer(uvicorn_config(self.app, self.config, log_level=log_level), self.app)
        self._thread = threading.Thread(target=self._run, name=f"lbh-service-{self.port}", daemon=True)
        self.error: BaseException | None = None

    @property
    def state(self) -> Any:
        return self.app.state.lbh

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self._sock])
        except BaseException as exc:  # surfaced by start()
            self.error = exc

    def start(self, *, wait_ready: bool = True, timeout: float = 60.0) -> ServiceThread:
        self._thread.start()
        end = time.monotonic() + timeout
        while not self.server.started:
            if self.error is not None or not self._thread.is_alive():
                raise RuntimeError(f"the service did not start: {self.error!r}")
            if time.monotonic() > end:
                raise TimeoutError("the service did not start in time")
            time.sleep(0.005)
        if wait_ready:
            while not self.state.model_ready:
                if self.state.startup_error is not None:
                    raise RuntimeError(f"the service failed to warm up: {self.state.startup_error}")
                if time.monotonic() > end:
                    raise TimeoutError("the service did not become ready in time")
                time.sleep(0.005)
        return self

    def stop(self, timeout: float = 30.0, *, drain_delay: float = 0.0) -> None:
        """Drain: not ready at once, the listener closed after ``drain_delay`` seconds
        (0 here by default: a test has no load balancer to wait for)."""
        self.state.begin_drain()
        if drain_delay > 0:
            time.sleep(drain_delay)
        self.server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> ServiceThread:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class ServiceProcess:
    """``workloads serve`` in a child process on a free loopback port (``--port 0``; the
    port is read from uvicorn's startup line), with ``--drain-delay 0`` unless ``args``
    give one (a test has no load balancer to wait for)::

        with ServiceProcess(["--max-concurrency", "1"], env={"LBH_FAULT_EXTRA_LATENCY_MS": "300"}) as svc:
            ...  # svc.url; svc.terminate() sends SIGTERM; svc.log holds the output lines

    ``env`` is added to a copy of this process's environment.
    """

    _RUNNING = re.compile(re.escape(LISTENING_PREFIX) + r"http://127\.0\.0\.1:(\d+)")

    def __init__(self, args: Sequence[str] = (), *, env: Mapping[str, str] | None = None,
                 python: str = sys.executable) -> None:
        self.args = [python, "-m", "workloads.cli", "serve", "--host", "127.0.0.1", "--port", "0",
                     "--drain-delay", "0", *args]
        self.env = {**os.environ, **(env or {})}
        self.log: list[str] = []
        self.port: int | None = None
        self.url = ""
        self.proc: subprocess.Popen[str] | None = None
        self._port_found = threading.Event()

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line.rstrip("\n"))
            m = self._RUNNING.search(line)
            if m and self.port is None:
                self.port = int(m.group(1))
                self.url = f"http://127.0.0.1:{self.port}"
                self._port_found.set()
        self._port_found.set()

    def start(self, *, wait_ready: bool = True, timeout: float = 60.0) -> ServiceProcess:
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1)
        threading.Thread(target=self._pump, name="lbh-service-log", daemon=True).start()
        end = time.monotonic() + timeout
        self._port_found.wait(timeout)
        if self.port is None:
            self.kill()
            raise RuntimeError("workloads serve did not start:\n" + "\n".join(self.log[-30:]))
        while wait_ready:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    conn.close()
                    break
                conn.close()
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > end:
                self.kill()
                raise RuntimeError("workloads serve did not become ready:\n" + "\n".join(self.log[-30:]))
            time.sleep(0.02)
        return self

    def terminate(self) -> None:
        """SIGTERM: the graceful drain."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float | None = None) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.terminate()
        try:
            self.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()
