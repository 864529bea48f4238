"""Minimal ASGI apps for the HTTP benchmarks, each run by uvicorn with one worker.

    .venv/bin/python benchmarks/servers.py ok PORT        # answers every request 200 "ok"
    .venv/bin/python benchmarks/servers.py freeze PORT    # same, but frozen 1 s out of every 5 s

``freeze``: time is cut into periods of ``LBH_FREEZE_PERIOD_S`` (default 5) seconds counted
from the server's start; the first ``LBH_FREEZE_S`` (default 1) seconds of each period are a
freeze. A request that arrives during a freeze is held until the freeze ends and then
answered; a request arriving outside a freeze is answered at once. (This is the pause of a
stop-the-world GC or a stalled dependency, without blocking the event loop, so the hold is
exact whatever the concurrency.)

Both apps are raw ASGI (no framework) so the server costs as little as possible and the
load generators, not the app, are what the benchmark compares.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

_BODY = b"ok"
_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"2")]

FREEZE_PERIOD_S = float(os.environ.get("LBH_FREEZE_PERIOD_S", "5"))
FREEZE_S = float(os.environ.get("LBH_FREEZE_S", "1"))
_T0 = time.monotonic()


async def _drain(receive) -> None:
    while True:
        msg = await receive()
        if msg["type"] != "http.request" or not msg.get("more_body", False):
            return


async def _answer(send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})


async def ok_app(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    await _drain(receive)
    await _answer(send)


def freeze_remaining(now: float) -> float:
    """Seconds until the current freeze ends (0 outside a freeze), ``now`` on the server clock."""
    phase = (now - _T0) % FREEZE_PERIOD_S
    return FREEZE_S - phase if phase < FREEZE_S else 0.0


async def freeze_app(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    await _drain(receive)
    hold = freeze_remaining(time.monotonic())
    if hold > 0:
        await asyncio.sleep(hold)
    await _answer(send)


APPS = {"ok": ok_app, "freeze": freeze_app}


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in APPS:
        raise SystemExit(f"usage: servers.py {{{'|'.join(APPS)}}} PORT")
    import uvicorn

    global _T0
    _T0 = time.monotonic()
    uvicorn.run(APPS[argv[0]], host="127.0.0.1", port=int(argv[1]), workers=1, access_log=False,
                log_level="warning", lifespan="off")


if __name__ == "__main__":
    main()
