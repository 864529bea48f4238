"""HTTP targets: the same open-loop schedule and three-time recording, over keep-alive pools.

A status outside 2xx is an ``error`` outcome with type ``HTTP <status>`` (so a shedding
server's 503s are counted, not hidden); the first few answers' bodies of each error type
(truncated) go to the result's ``error_details``, so a 422 says why. Redirects are not
followed unless asked (``follow_redirects: N``), so a 3xx shows too. Connection failures
are errors named in words (``DNS: cannot resolve host 'x'``, ``connection refused``, see
``http_client.describe_failure``); the per-call timeout aborts the request's connection
and records ``timeout``. Each pool holds at most ``max_in_flight`` connections, so it never
queues silently: waiting for a free slot happens in the executor, where it shows as lag.

One scenario may name several **endpoints** (``http.endpoints``: URL or path, method,
weight, headers, a fixed ``body`` or a ``payload`` generator, ``name``); each is its own
target label, so it has its own figures and thresholds (``latency{target:<name>}``).
Requests spread over them by weight in a fixed sequence of 1,000 slots (as a ``mixed``
target's do), so every run with the same weights sends the same shares.

Every request carries W3C ``traceparent`` (``harness.targets.tracecontext``; sampled per
``OTEL_TRACES_SAMPLER*``; ``traceparent: false`` turns it off); a sampled one gets a client
span and its trace id becomes the latency's exemplar. ``gzip: true`` asks for gzip answers
(``Accept-Encoding: gzip``) and reads them decompressed; bytes are counted on the wire.
``ca_file`` (a CA bundle), ``cert_file``/``key_file`` (a client certificate) for https.
Per label the target counts answers by status (every answer, a redirect's too) and bytes
sent/received (the recorder reads them: ``status_codes``, ``bytes_sent``, ``bytes_received``
in the summary): HTTP bytes, head and body as on the wire (compressed when gzip), without
TCP/IP or TLS framing.

The executor drives the target through callbacks (``astart``/``acancel``, see
``harness.engine.aio``); ``dispatch`` gives the same request as a coroutine for callers
that want one.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import ssl
import zlib
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple
from urllib.parse import urljoin, urlsplit

from harness import __version__
from harness.record.recorder import FLAG_CACHE_HIT, FLAG_FALLBACK
from harness.targets.base import JsonBody, NamedFailure, Target, TargetError
from harness.targets.http_client import ConnectionPool
from harness.targets.tracecontext import TraceContext, TraceSettingsError, build_trace_context, end_span

__all__ = ["build_http_target", "HttpError", "CallFailed", "HttpAnswer", "METHODS", "flags_of_body",
           "HTTP_SETTINGS", "ENDPOINT_SETTINGS", "REDIRECT_STATUSES"]

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
#: keys of a scenario's ``http`` mapping
HTTP_SETTINGS = ("method", "headers", "verify", "endpoints", "gzip", "follow_redirects", "ca_file", "cert_file",
                 "key_file", "traceparent")
#: keys of one ``http.endpoints`` entry
ENDPOINT_SETTINGS = ("url", "name", "method", "weight", "headers", "body", "payload")
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
_MAX_REDIRECTS = 20
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 header name
_CACHE_HIT = re.compile(rb'"cache_hit"\s*:\s*true')
_FALLBACK = re.compile(rb'"fallback(?:_used)?"\s*:\s*true')
_SLOTS = 1000


class HttpError(NamedFailure):
    """A non-2xx answer; its outcome's error type is ``HTTP <status>``; ``body`` is the answer's."""

    def __init__(self, status: int, body: bytes = b"") -> None:
        text = body[:300].decode("utf-8", "replace").strip() if body else ""
        super().__init__(f"HTTP {status}", f"HTTP {status}: {text}" if text else f"HTTP {status}")
        self.status = status
        self.body = body


class CallFailed(NamedFailure, ConnectionError):
    """The exchange failed (``connection refused``, ``DNS: cannot resolve host 'x'`` …); the
    outcome's error type is that name, as on the callback path."""


class HttpAnswer(NamedTuple):
    """A 2xx answer as the coroutine face returns it (``targets.flags_of`` reads the flags)."""

    flags: int

    @property
    def cache_hit(self) -> bool:
        return bool(self.flags & FLAG_CACHE_HIT)

    @property
    def fallback_used(self) -> bool:
        return bool(self.flags & FLAG_FALLBACK)


def flags_of_body(body: bytes) -> int:
    """Cache-hit / fallback bits from a JSON answer, without parsing all of it (the reference
    service's feature answers carry 256 floats; a full parse per answer would cost more than
    the request)."""
    if b'"cache_hit"' not in body and b'"fallback' not in body:
        return 0
    return (FLAG_CACHE_HIT if _CACHE_HIT.search(body) else 0) | (FLAG_FALLBACK if _FALLBACK.search(body) else 0)


def _headers(raw: Any, field: str) -> Dict[str, str]:
    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise TargetError(f"{field}: expected a mapping of name -> value, got {raw!r}")
    out: Dict[str, str] = {}
    for k, v in raw.items():
        name, value = str(k), str(v)
        if not _TOKEN.match(name):
            raise TargetError(f"{field}.{name}: not a valid header name")
        if "\r" in value or "\n" in value:
            raise TargetError(f"{field}.{name}: a header value cannot contain a line break")
        if name.lower() in ("content-length", "transfer-encoding", "connection", "host", "traceparent"):
            raise TargetError(f"{field}.{name}: set by the harness (keep-alive connection, exact length, "
                              "trace context)")
        out[name] = value
    return out


class _Origin(NamedTuple):
    scheme: str
    host: str
    port: int


def _origin(url: str, field: str) -> Tuple[_Origin, str]:
    """(origin, path with query) of an absolute http(s) URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetError(f"{field}: not an http(s) URL: {url!r}")
    try:
        port = parts.port
    except ValueError as exc:
        raise TargetError(f"{field}: bad port in {url!r}: {exc}") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Origin(parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)), path


class _Request:
    """Bytes on the wire for one endpoint: the head is built once, the body per request (or
    once, when it is fixed); a trace context header line is spliced in after the head."""

    def __init__(self, method: str, url: str, headers: Mapping[str, str], *, gzip: bool = False,
                 field: str = "target") -> None:
        origin, path = _origin(url, field)
        self.origin, self.url, self.method = origin, url, method
        parts = urlsplit(url)
        host = origin.host
        host_header = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            host_header += f":{parts.port}"
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host_header}", f"User-Agent: lbh-harness/{__version__}",
                 "Accept: */*"]
        if gzip and not any(k.lower() == "accept-encoding" for k in headers):
            lines.append("Accept-Encoding: gzip")
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.user_ctype = any(k.lower() == "content-type" for k in headers)
        self.head = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        self.tail = b"Content-Length: 0\r\n\r\n" if method in ("POST", "PUT", "PATCH") else b"\r\n"
        self.bare = self.head + self.tail
        self.head_only = method == "HEAD"
        self.idempotent = method in ("GET", "HEAD", "PUT", "DELETE", "OPTIONS")  # RFC 9110 9.2.2

    def body_tail(self, body: Any) -> bytes:
        """Everything after the head for ``body``: content type, length, blank line, body."""
        if body is None:
            return self.tail
        if isinstance(body, JsonBody):
            data, ctype = body, b"" if self.user_ctype else b"Content-Type: application/json\r\n"
        elif isinstance(body, (bytes, bytearray, memoryview)):
            data, ctype = bytes(body), b""
        elif isinstance(body, str):
            data, ctype = body.encode(), b""
        else:
            data = json.dumps(body, separators=(",", ":")).encode()
            ctype = b"" if self.user_ctype else b"Content-Type: application/json\r\n"
        return b"%sContent-Length: %d\r\n\r\n%s" % (ctype, len(data), data)

    def encode(self, body: Any, extra: bytes = b"") -> bytes:
        if body is None:
            return self.head + extra + self.tail if extra else self.bare
        return self.head + extra + self.body_tail(body)


class _Endpoint:
    """One endpoint: its label, request bytes and body source."""

    __slots__ = ("label", "request", "make_body", "fixed_tail", "whole", "weight", "origin")

    def __init__(self, label: str, request: _Request, make_body: Optional[Callable[[int], Any]],
                 body: Any, weight: float) -> None:
        self.label, self.request, self.make_body, self.weight = label, request, make_body, weight
        self.origin = request.origin
        self.fixed_tail = request.body_tail(body) if make_body is None else b""
        self.whole = request.head + self.fixed_tail

    def data(self, k: int, extra: bytes) -> bytes:
        if self.make_body is not None:
            return self.request.encode(self.make_body(k), extra)
        return self.request.head + extra + self.fixed_tail if extra else self.whole


def _setting_bool(settings: Mapping[str, Any], key: str, default: bool) -> bool:
    value = settings.get(key, default)
    if not isinstance(value, bool):
        raise TargetError(f"http.{key}: expected true or false, got {value!r}")
    return value


def _readable_file(settings: Mapping[str, Any], key: str) -> Optional[str]:
    value = settings.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise TargetError(f"http.{key}: expected a file path, got {value!r}")
    path = os.path.expanduser(value)
    if not os.path.isfile(path):
        raise TargetError(f"http.{key}: no such file: {value!r}")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise TargetError(f"http.{key}: cannot read {value!r}: {exc.strerror or exc}") from None
    return path


def _tls_context(settings: Mapping[str, Any], verify: bool) -> ssl.SSLContext:
    ca_file = _readable_file(settings, "ca_file")
    cert_file = _readable_file(settings, "cert_file")
    key_file = _readable_file(settings, "key_file")
    if key_file and not cert_file:
        raise TargetError("http.key_file: goes with http.cert_file (the client certificate)")
    try:
        tls = ssl.create_default_context(cafile=ca_file)
    except (ssl.SSLError, OSError) as exc:
        raise TargetError(f"http.ca_file: not a CA bundle (PEM): {ca_file!r}: {exc}") from None
    if cert_file:
        try:
            tls.load_cert_chain(cert_file, key_file)
        except (ssl.SSLError, OSError) as exc:
            field = "http.key_file" if key_file else "http.cert_file"
            raise TargetError(f"{field}: cannot load the client certificate {cert_file!r}"
                              + (f" with key {key_file!r}" if key_file else "") + f": {exc}") from None
    if not verify:
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
    return tls


def _slots(weights: Sequence[float]) -> List[int]:
    """A fixed, evenly spread sequence of ``_SLOTS`` endpoint indices by weight."""
    total = sum(weights)
    acc = [0.0] * len(weights)
    out: List[int] = []
    for _ in range(_SLOTS):
        for i, w in enumerate(weights):
            acc[i] += w / total
        j = max(range(len(weights)), key=lambda i: acc[i])
        acc[j] -= 1.0
        out.append(j)
    return out


def _method(value: Any, field: str, default: str) -> str:
    method = str(value or default).upper()
    if method not in METHODS:
        raise TargetError(f"{field}: expected one of {', '.join(METHODS)}, got {value!r}")
    return method


def _endpoints(url: str, payload: Optional[Callable[[int], Any]], settings: Mapping[str, Any],
               resolve_payload: Optional[Callable[[str], Callable[[int], Any]]], gzip: bool) -> List[_Endpoint]:
    common = _headers(settings.get("headers"), "http.headers")
    spec = settings.get("endpoints")
    if spec is None:
        method = _method(settings.get("method"), "http.method", "POST" if payload else "GET")
        request = _Request(method, url, common, gzip=gzip)
        if payload is not None:
            request.encode(payload(0))  # a generator that builds a pool on first use does it now, not on the clock
        return [_Endpoint(f"{method} {urlsplit(url).path or '/'}", request, payload, None, 1.0)]
    if payload is not None:
        raise TargetError("payload: with http.endpoints, give each endpoint its own body or payload")
    if "method" in settings:
        raise TargetError("http.method: with http.endpoints, set each endpoint's method")
    if not isinstance(spec, Sequence) or isinstance(spec, (str, bytes)) or not spec:
        raise TargetError(f"http.endpoints: expected a non-empty list of endpoints (url, method, weight, ...), "
                          f"got {spec!r}")
    out: List[_Endpoint] = []
    labels: Dict[str, int] = {}
    for i, ep in enumerate(spec):
        f = f"http.endpoints[{i}]"
        if not isinstance(ep, Mapping):
            raise TargetError(f"{f}: expected a mapping with url (and method, weight, headers, body, payload, "
                              f"name), got {ep!r}")
        unknown = sorted(str(k) for k in ep if k not in ENDPOINT_SETTINGS)
        if unknown:
            raise TargetError(f"{f}.{unknown[0]}: unknown key (known: {', '.join(ENDPOINT_SETTINGS)})")
        raw_url = ep.get("url")
        if not isinstance(raw_url, str) or not raw_url:
            raise TargetError(f"{f}.url: expected a path (/v1/x, joined to the target URL) or an http(s) URL, "
                              f"got {raw_url!r}")
        full = raw_url if raw_url.startswith(("http://", "https://")) else urljoin(url, raw_url)
        if not raw_url.startswith(("http://", "https://", "/")):
            raise TargetError(f"{f}.url: expected a path starting with / or an http(s) URL, got {raw_url!r}")
        weight = ep.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
            raise TargetError(f"{f}.weight: expected a number >= 0, got {weight!r}")
        if "body" in ep and "payload" in ep:
            raise TargetError(f"{f}.payload: give a body or a payload, not both")
        make_body: Optional[Callable[[int], Any]] = None
        body = ep.get("body")
        if body is not None and not isinstance(body, (str, Mapping, list)):
            raise TargetError(f"{f}.body: expected a string or a JSON mapping/list, got {body!r}")
        if ep.get("payload") is not None:
            if not isinstance(ep["payload"], str) or resolve_payload is None:
                raise TargetError(f"{f}.payload: expected a registered payload generator or module:function, "
                                  f"got {ep['payload']!r}")
            try:
                make_body = resolve_payload(ep["payload"])
            except TargetError as exc:
                raise TargetError(f"{f}.payload: {exc}") from None
        has_body = body is not None or make_body is not None
        method = _method(ep.get("method"), f"{f}.method", "POST" if has_body else "GET")
        headers = {**common, **_headers(ep.get("headers"), f"{f}.headers")}
        request = _Request(method, full, headers, gzip=gzip, field=f"{f}.url")
        if make_body is not None:
            try:
                request.encode(make_body(0))
            except TargetError:
                raise
            except Exception as exc:
                raise TargetError(f"{f}.payload: its first call failed: {type(exc).__name__}: {exc}") from None
        name = ep.get("name")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise TargetError(f"{f}.name: expected a non-empty string, got {name!r}")
        label = name or f"{method} {urlsplit(full).path or '/'}"
        if label in labels:
            raise TargetError(f"{f}.name: the label {label!r} is already endpoint {labels[label]}'s; "
                              "give one of them a name")
        labels[label] = i
        if weight > 0:
            out.append(_Endpoint(label, request, make_body, body, float(weight)))
    if not out:
        raise TargetError("http.endpoints: all weights are zero")
    return out


class _State:
    """Per-call state the target keeps in ``call.extra`` (only for sampled or redirected calls)."""

    __slots__ = ("span", "hops", "url", "method", "ep", "line")

    def __init__(self, ep: _Endpoint, line: bytes = b"") -> None:
        self.line = line  # the traceparent header line: every hop of a redirected call carries it
        self.span: Any = None
        self.hops = 0
        self.url = ep.request.url
        self.method = ep.request.method
        self.ep = ep


def build_http_target(url: str, *, payload: Optional[Callable[[int], Any]], settings: Mapping[str, Any],
                      max_in_flight: int, tracer_provider: Any = None,
                      resolve_payload: Optional[Callable[[str], Callable[[int], Any]]] = None,
                      env: Optional[Mapping[str, str]] = None) -> Target:
    """``settings``: ``method`` (GET unless a payload is given, then POST), ``headers``, ``verify``
    (check the server's TLS certificate; default true), ``endpoints``, ``gzip``,
    ``follow_redirects``, ``ca_file``, ``cert_file``, ``key_file``, ``traceparent`` (see the
    module docstring). ``env``: where ``OTEL_*`` is read (default ``os.environ``)."""
    _origin(url, "target")
    unknown = sorted(set(settings) - set(HTTP_SETTINGS))
    if unknown:
        raise TargetError(f"http.{unknown[0]}: unknown setting (known: {', '.join(HTTP_SETTINGS)})")
    verify = _setting_bool(settings, "verify", True)
    gzip = _setting_bool(settings, "gzip", False)
    trace_on = _setting_bool(settings, "traceparent", True)
    follow = settings.get("follow_redirects", 0)
    if isinstance(follow, bool) or not isinstance(follow, int) or not 0 <= follow <= _MAX_REDIRECTS:
        raise TargetError(f"http.follow_redirects: expected a number of redirects 0..{_MAX_REDIRECTS} "
                          f"(0: none followed), got {follow!r}")
    endpoints = _endpoints(url, payload, settings, resolve_payload, gzip)
    any_https = any(ep.origin.scheme == "https" for ep in endpoints) or follow > 0
    for key in ("ca_file", "cert_file", "key_file"):
        if settings.get(key) is not None and not any_https:
            raise TargetError(f"http.{key}: only for https:// targets")
    tls = _tls_context(settings, verify) if any_https else None
    try:
        tc: Optional[TraceContext] = build_trace_context(env, tracer_provider, enabled=trace_on)
    except TraceSettingsError as exc:
        raise TargetError(str(exc)) from None
    by_label = {ep.label: ep for ep in endpoints}
    labels = tuple(ep.label for ep in endpoints)
    name = labels[0] if len(labels) == 1 else "http"
    want = frozenset((["content-encoding"] if gzip else []) + (["location"] if follow else []))
    pools: Dict[_Origin, ConnectionPool] = {}
    #: per label: status:<code>, bytes_sent, bytes_received (the recorder reads copies)
    stats: Dict[str, Dict[str, int]] = {ep.label: {"bytes_sent": 0, "bytes_received": 0} for ep in endpoints}
    status_keys = {s: f"status:{s}" for s in range(100, 600)}
    redirect_cache: Dict[Tuple[str, str], _Request] = {}

    def pool_for(origin: _Origin) -> ConnectionPool:
        pool = pools.get(origin)
        if pool is None:
            box: List[ConnectionPool] = []
            pool = pools[origin] = ConnectionPool(
                origin.host, origin.port, limit=max_in_flight, ssl=tls if origin.scheme == "https" else None,
                on_response=on_response, on_error=lambda call, err: on_error(call, err, box[0]), want_headers=want)
            box.append(pool)
        return pool

    def finish_span(call: Any, status: Optional[int], error: Optional[str]) -> None:
        st = call.extra
        if st is not None and st.span is not None:
            span, st.span = st.span, None
            end_span(span, method=st.method, url=st.url, status=status, error=error, label=call.label)

    def on_response(call: Any, status: int, body: bytes) -> None:
        pool = call.handle.pool  # the connection that carried it (it stays the call's handle)
        st = stats[call.label]
        key = status_keys.get(status) or f"status:{status}"
        st[key] = st.get(key, 0) + 1
        st["bytes_received"] += pool.answer_bytes
        hdrs = pool.answer_headers
        if hdrs is not None:
            if body and hdrs.get("content-encoding", "").strip().lower() == "gzip":
                try:
                    body = zlib.decompress(body, 47)  # gzip or zlib header
                except zlib.error as exc:
                    finish_span(call, status, "bad gzip body")
                    call.done("bad gzip body", 0, f"the {status} answer's gzip body did not decompress: {exc}")
                    return
            if follow and status in REDIRECT_STATUSES and "location" in hdrs and redirect(call, status, hdrs):
                return
        if 200 <= status < 300:
            if call.extra is not None:
                finish_span(call, status, None)
            call.done(None, flags_of_body(body) if body else 0)
        else:
            error = f"HTTP {status}"
            finish_span(call, status, error)
            call.done(error, 0, body or f"HTTP {status} with an empty body")

    def redirect(call: Any, status: int, hdrs: Mapping[str, str]) -> bool:
        """Send the call on to the answer's Location; False when it cannot (the answer stands)."""
        st = call.extra
        if st is None:
            st = call.extra = _State(by_label[call.label])
        if st.hops >= follow:
            finish_span(call, status, "too many redirects")
            call.done("too many redirects", 0, f"more than {follow} redirects; the last to {hdrs['location']!r}")
            return True
        target_url = urljoin(st.url, hdrs["location"])
        method = st.method
        body_kept = status in (307, 308)
        if not body_kept and method not in ("GET", "HEAD"):
            method = "GET"  # 303 (and 301/302 as every browser does): the body is dropped
        if body_kept and st.ep.make_body is not None:
            finish_span(call, status, "redirect with a body")
            call.done("redirect with a body", 0, f"HTTP {status} to {target_url!r} asks to send a generated body "
                                                  "again; the harness keeps only fixed bodies (http.endpoints[].body)")
            return True
        key = (method, target_url)
        req = redirect_cache.get(key)
        if req is None:
            try:
                req = _Request(method, target_url, _headers_of(st.ep), gzip=gzip, field="Location")
            except TargetError:
                finish_span(call, status, "bad redirect")
                call.done("bad redirect", 0, f"HTTP {status} Location {hdrs['location']!r} is not an http(s) URL")
                return True
            if len(redirect_cache) < 64:
                redirect_cache[key] = req
        if req.origin.scheme == "https" and tls is None:
            return False
        st.hops += 1
        st.url, st.method = target_url, method
        data = req.head + st.line + (st.ep.fixed_tail if body_kept else req.tail)
        stats[call.label]["bytes_sent"] += len(data)
        pool_for(req.origin).send(call, data, req.head_only, req.idempotent)
        return True

    def on_error(call: Any, name: str, pool: ConnectionPool) -> None:
        finish_span(call, None, name)
        call.done(name, 0, pool.error_detail or name)

    async def open_() -> None:
        for ep in endpoints:
            pool_for(ep.origin)

    async def close_() -> None:
        ps = list(pools.values())
        pools.clear()
        for pool in ps:
            await pool.close()

    def close() -> None:
        if tc is not None:
            tc.close()

    def counters() -> Dict[str, Dict[str, int]]:
        return {label: dict(d) for label, d in stats.items()}

    single = endpoints[0] if len(endpoints) == 1 else None
    slots = _slots([ep.weight for ep in endpoints])
    table = [endpoints[j] for j in slots]

    if tc is None:
        def astart(k: int, call: Any) -> None:
            ep = single or table[k % _SLOTS]
            call.label = ep.label
            data = ep.data(k, b"")
            stats[ep.label]["bytes_sent"] += len(data)
            pools[ep.origin].send(call, data, ep.request.head_only, ep.request.idempotent)
    else:
        nxt = tc.next

        def astart(k: int, call: Any) -> None:
            ep = single or table[k % _SLOTS]
            call.label = ep.label
            line, trace_id, span = nxt(ep.label)
            if trace_id is not None:
                call.trace = trace_id
            if span is not None or follow:
                st = call.extra = _State(ep, line)
                st.span = span
            try:
                data = ep.data(k, line)
            except BaseException as exc:  # the payload generator failed: the span ends with it
                finish_span(call, None, type(exc).__name__)
                raise
            stats[ep.label]["bytes_sent"] += len(data)
            pools[ep.origin].send(call, data, ep.request.head_only, ep.request.idempotent)

    def acancel(call: Any) -> None:
        if call.extra is not None:
            finish_span(call, None, "timeout")
        handle = call.handle  # None while it waits for a connection: its finished flag skips it
        if handle is not None:
            handle.pool.cancel(call)

    async def call_once(k: int) -> HttpAnswer:
        """One request as a coroutine (closed-loop users call it); raises ``HttpError`` for a
        non-2xx answer and ``CallFailed`` when the exchange failed. Cancelling it aborts the
        request's connection."""
        fut = asyncio.get_running_loop().create_future()
        box = _FutureCall(fut)
        try:
            astart(k, box)
            return await fut
        except BaseException:
            box.finished = True
            acancel(box)
            raise

    def dispatch(k: int):
        return (single or table[k % _SLOTS]).label, call_once, (k,)

    return Target(name, labels, dispatch, is_async=True, close=close, aopen=open_, aclose=close_,
                  astart=astart, acancel=acancel, counters=counters)


def _headers_of(ep: _Endpoint) -> Dict[str, str]:
    """The user's headers of an endpoint's request, read back from its head (for a redirect)."""
    out: Dict[str, str] = {}
    for line in ep.request.head.decode("latin-1").split("\r\n")[1:]:
        if not line:
            continue
        k, _, v = line.partition(": ")
        if k.lower() not in ("host", "user-agent", "accept", "accept-encoding"):
            out[k] = v
    return out


class _FutureCall:
    """A call whose end resolves a future (the coroutine face of the callback target)."""

    __slots__ = ("fut", "handle", "finished", "label", "trace", "extra")

    def __init__(self, fut: "asyncio.Future[HttpAnswer]") -> None:
        self.fut, self.handle, self.finished = fut, None, False
        self.label, self.trace, self.extra = "", None, None

    def done(self, error: Optional[str], flags: int, detail: Any = None) -> None:
        if self.finished or self.fut.done():
            return
        self.finished = True
        if error is None:
            self.fut.set_result(HttpAnswer(flags))
        elif error.startswith("HTTP ") and error[5:].isdigit():
            self.fut.set_exception(HttpError(int(error[5:]), detail if isinstance(detail, bytes) else b""))
        else:
            self.fut.set_exception(CallFailed(error, detail if isinstance(detail, str) else ""))
