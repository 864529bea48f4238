"""A /metrics endpoint that speaks OpenMetrics when asked, so exemplars reach Prometheus."""

from __future__ import annotations

from typing import Optional

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

__all__ = ["MetricsServer", "serve_metrics"]


class MetricsServer:
    """A running /metrics server; ``close()`` (or ``with``) stops it and frees the port."""

    def __init__(self, httpd, thread) -> None:
        self._httpd = httpd
        self._thread = thread
        host, port = httpd.server_address[:2]
        self.host = host
        self.port = port
        h = f"[{host}]" if ":" in host else host
        self.url = f"http://{h}:{port}/metrics"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "MetricsServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def serve_metrics(port: int = 0, addr: str = "127.0.0.1", registry: Optional[CollectorRegistry] = None) -> MetricsServer:
    """Serve ``registry`` on ``addr:port`` (0 = a free port) in a daemon thread.

    prometheus_client negotiates the format from the Accept header: Prometheus asks for
    ``application/openmetrics-text`` and gets exemplars; curl gets the text format.
    """
    if not 0 <= port <= 65535:
        raise ValueError(f"port: must be within 0..65535, got {port}")
    httpd, thread = start_http_server(port, addr=addr, registry=REGISTRY if registry is None else registry)
    return MetricsServer(httpd, thread)
