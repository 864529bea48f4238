"""A loopback HTTP/1.1 server for HTTP target tests: keep-alive, routes answer fixed
(status, headers, body), every request is recorded (method, path, headers, body) with the
bytes read and written, optionally over TLS (with client certificates required)."""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

__all__ = ["RecordingServer", "Seen", "make_tls_files"]

Answer = Tuple[int, Dict[str, str], bytes]


@dataclass
class Seen:
    method: str
    path: str
    headers: Dict[str, str]  # lower-case names
    body: bytes


@dataclass
class RecordingServer:
    routes: Dict[str, Answer | Callable[[Seen], Answer]] = field(default_factory=dict)
    tls: Optional[ssl.SSLContext] = None
    seen: List[Seen] = field(default_factory=list)
    bytes_in: int = 0
    bytes_out: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self.port = self._sock.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._stop = True
        try:
            self._sock.close()
        except OSError:
            pass

    def __enter__(self) -> "RecordingServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                    with self._lock:
                        self.bytes_in += len(chunk)
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _v = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
                n = int(headers.get("content-length") or 0)
                while len(buf) < n:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                    with self._lock:
                        self.bytes_in += len(chunk)
                body, buf = buf[:n], buf[n:]
                seen = Seen(method, path, headers, body)
                with self._lock:
                    self.seen.append(seen)
                route = self.routes.get(path.split("?")[0], (404, {}, b'{"detail":"no such route"}'))
                status, extra, out = route(seen) if callable(route) else route
                resp = (f"HTTP/1.1 {status} X\r\nContent-Length: {len(out)}\r\n"
                        + "".join(f"{k}: {v}\r\n" for k, v in extra.items()) + "\r\n").encode("latin-1") + out
                conn.sendall(resp)
                with self._lock:
                    self.bytes_out += len(resp)
        except (OSError, ssl.SSLError, ValueError):
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass


def make_tls_files(folder: str) -> Dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, both signed by the
    CA, made with the ``openssl`` binary: {ca, server_cert, server_key, client_cert, client_key}."""
    import os
    import subprocess

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=lbh-test-ca")
    with open(os.path.join(folder, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\nauthorityKeyIdentifier=keyid\n")
    with open(os.path.join(folder, "client.ext"), "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n"
                "authorityKeyIdentifier=keyid\n")
    for who in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{who}.key", "-out", f"{who}.csr",
            "-subj", "/CN=127.0.0.1" if who == "server" else "/CN=lbh-client")
        run("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{who}.pem", "-days", "2", "-extfile", f"{who}.ext")
    p = lambda name: os.path.join(folder, name)  # noqa: E731
    return {"ca": p("ca.pem"), "server_cert": p("server.pem"), "server_key": p("server.key"),
            "client_cert": p("client.pem"), "client_key": p("client.key")}
