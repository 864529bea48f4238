"""A fake remote-write receiver on loopback: records each request (headers, decoded
``WriteRequest``, arrival time) and answers with the statuses it is told to."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional

from harness.observe import prompb
from harness.observe.remote_write import decompress


@dataclass
class Received:
    at: float
    headers: Dict[str, str]  # names in lower case (HTTP header names are case-insensitive)
    request: Any  # prompb.WriteRequest, or None when the body did not decode
    status: int


class FakeReceiver:
    """``statuses``: the answer to each request in turn, then ``default`` (204).
    ``delay_s``: how long each answer takes (a stalled receiver)."""

    def __init__(self, statuses: Optional[List[int]] = None, default: int = 204, delay_s: float = 0.0) -> None:
        self.statuses = list(statuses or [])
        self.default = default
        self.delay_s = delay_s
        self.received: List[Received] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    req = prompb.WriteRequest.FromString(decompress(body))
                except Exception:
                    req = None
                with receiver._lock:
                    status = receiver.statuses.pop(0) if receiver.statuses else receiver.default
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    receiver.received.append(Received(time.monotonic(), headers, req, status))
                if receiver.delay_s:
                    receiver._release.wait(receiver.delay_s)
                self.send_response(status)
                payload = b"" if status < 300 else f"status {status} as told".encode()
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/api/v1/write"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def requests(self, where: Callable[[Received], bool] = lambda r: True) -> List[Received]:
        with self._lock:
            return [r for r in self.received if where(r)]

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "FakeReceiver":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
