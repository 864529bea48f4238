"""A /metrics endpoint that speaks OpenMetrics when asked, so exemplars reach Prometheus,
and the protobuf exposition when asked, so native histograms do.

Format negotiation (the ``Accept`` header):

* ``application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily;
  encoding=delimited`` preferred (Prometheus with ``--enable-feature=native-histograms``
  asks for it first): :mod:`instrumentation.proto_exposition`, native histograms included;
* anything else: what prometheus_client serves (OpenMetrics 1.0 for Prometheus, with
  exemplars; the text format for curl), gzip when accepted, ``name[]`` filters. Samples
  carrying a native histogram have no place in those formats and are left out (the text
  format's writer would fail on them); a family left with no sample is left out whole.
"""

from __future__ import annotations

import gzip
import socket
import threading
from typing import Any, Callable, Iterator, List, Optional
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer, gzip_accepted
from prometheus_client.metrics_core import Metric

from .proto_exposition import CONTENT_TYPE_PROTOBUF, accepts_protobuf, encode_delimited

__all__ = ["MetricsServer", "serve_metrics", "ClassicOnly", "metrics_app"]


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


class ClassicOnly:
    """A view of a registry without native-histogram samples (for the text formats)."""

    def __init__(self, registry: Any) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for metric in self._registry.collect():
            if not any(s.native_histogram is not None for s in metric.samples):
                yield metric
                continue
            samples = [s for s in metric.samples if s.native_histogram is None]
            if not samples:
                continue
            copy = Metric(metric.name, metric.documentation, metric.type, metric.unit)
            copy.samples = samples
            yield copy

    def restricted_registry(self, names: List[str]) -> "ClassicOnly":
        return ClassicOnly(self._registry.restricted_registry(names))


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Scrapes are not logged."""


def metrics_app(registry: Any) -> Callable:
    """The WSGI app: protobuf for a scraper that prefers it, prometheus_client's otherwise."""
    text_app = make_wsgi_app(ClassicOnly(registry))

    def app(environ, start_response):
        if environ.get("REQUEST_METHOD") == "GET" and environ.get("PATH_INFO") != "/favicon.ico" \
                and accepts_protobuf(environ.get("HTTP_ACCEPT", "")):
            body = encode_delimited(registry)
            headers = [("Content-Type", CONTENT_TYPE_PROTOBUF)]
            if gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", "")):
                body = gzip.compress(body)
                headers.append(("Content-Encoding", "gzip"))
            start_response("200 OK", headers)
            return [body]
        return text_app(environ, start_response)

    return app


def serve_metrics(port: int = 0, addr: str = "127.0.0.1",
                  registry: Optional[CollectorRegistry] = None) -> MetricsServer:
    """Serve ``registry`` on ``addr:port`` (0 = a free port) in a daemon thread.

    The format follows the Accept header: Prometheus with native histograms on gets the
    protobuf exposition; Prometheus asks otherwise for ``application/openmetrics-text``
    and gets exemplars; curl gets the text format.
    """
    if not 0 <= port <= 65535:
        raise ValueError(f"port: must be within 0..65535, got {port}")
    reg = REGISTRY if registry is None else registry
    infos = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]

    class _Server(ThreadingWSGIServer):
        address_family = family

    httpd = make_server(sockaddr[0], port, metrics_app(reg), _Server, handler_class=_Quiet)
    thread = threading.Thread(target=httpd.serve_forever, name="lbh-metrics", daemon=True)
    thread.start()
    return MetricsServer(httpd, thread)
