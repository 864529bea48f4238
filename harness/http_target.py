"""HTTP targets: the same open-loop schedule and three-time recording, over aiohttp.

A status outside 2xx is an ``error`` outcome with type ``HTTP <status>`` (so a shedding
server's 503s are counted, not hidden); connection failures are errors named by their
exception type; the per-call timeout cancels the request and records ``timeout``. The
connection pool is sized to ``max_in_flight`` so the pool never queues silently: waiting
for a free slot happens in the executor, where it shows as lag.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, Mapping, Optional
from urllib.parse import urlsplit

import aiohttp  # imported here, before the run's clock starts (the import takes ~0.1 s)

from harness.targets import Target, TargetError, _import

__all__ = ["build_http_target", "HttpError", "METHODS"]

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")


class HttpError(Exception):
    """A non-2xx answer; the class name is replaced by ``HTTP <status>`` in the outcome."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


def build_http_target(url: str, *, payload: Optional[str], settings: Mapping[str, Any], max_in_flight: int,
                      timeout_s: float) -> Target:
    """``settings``: ``method`` (GET unless a payload is given, then POST) and ``headers``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise TargetError(f"target: not an http(s) URL: {url!r}")
    unknown = sorted(set(settings) - {"method", "headers"})
    if unknown:
        raise TargetError(f"http.{unknown[0]}: unknown setting (known: method, headers)")
    method = str(settings.get("method") or ("POST" if payload else "GET")).upper()
    if method not in METHODS:
        raise TargetError(f"http.method: expected one of {', '.join(METHODS)}, got {method!r}")
    headers: Dict[str, str] = {str(k): str(v) for k, v in dict(settings.get("headers") or {}).items()}
    make_body: Optional[Callable[[int], Any]] = _import(payload, "payload") if payload else None
    if make_body is not None:
        make_body(0)  # a generator that builds a pool on first use does it now, not on the clock
    label = f"{method} {parts.path or '/'}"
    state: Dict[str, Any] = {}

    async def open_() -> None:
        connector = aiohttp.TCPConnector(limit=max_in_flight, limit_per_host=max_in_flight, ttl_dns_cache=300)
        # The executor enforces the timeout (and records it at the deadline); this is a backstop.
        state["session"] = aiohttp.ClientSession(connector=connector, headers=headers,
                                                 timeout=aiohttp.ClientTimeout(total=timeout_s * 2))

    async def close_() -> None:
        session = state.pop("session", None)
        if session is not None:
            await session.close()

    async def call(body: Any) -> Any:
        session = state["session"]
        kwargs: Dict[str, Any] = {}
        if body is not None:
            if isinstance(body, (bytes, bytearray)):
                kwargs["data"] = bytes(body)
            elif isinstance(body, str):
                kwargs["data"] = body.encode()
            else:
                kwargs["data"] = json.dumps(body, separators=(",", ":")).encode()
                kwargs["headers"] = {"Content-Type": "application/json"}
        async with session.request(method, url, **kwargs) as resp:
            data = await resp.read()
            if not 200 <= resp.status < 300:
                raise HttpError(resp.status)
            ctype = resp.headers.get("Content-Type", "")
            if ctype.startswith("application/json") and data:
                try:
                    return json.loads(data)
                except ValueError:
                    return None
            return None

    if make_body is None:
        def dispatch(k: int):
            return label, call, (None,)
    else:
        def dispatch(k: int):
            return label, call, (make_body(k),)

    return Target(label, (label,), dispatch, is_async=True, aopen=open_, aclose=close_)
