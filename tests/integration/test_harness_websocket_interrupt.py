"""SIGINT to ``harness run`` with a ws:// target (hold=30s) against the real reference
service: open streams are cut at once (exit 105 within seconds, not after hold + timeout),
the partial result is written, and its message counts have no phantom losses for messages
that were not yet due at the cut."""

from __future__ import annotations

import json
import signal
import time

from prometheus_client import CollectorRegistry

from tests.support.processes import HarnessProcess
from workloads.service.config import ServiceConfig
from workloads.service.server import ServiceThread

RATE = 20  # messages/s per subscription


def test_sigint_cuts_open_streams_at_once_and_counts_only_due_messages(tmp_path):
    out = tmp_path / "ws.json"
    with ServiceThread(ServiceConfig(), registry=CollectorRegistry()) as svc:
        url = svc.url.replace("http://", "ws://") + f"/v1/stream?symbols=AAPL,MSFT&rate={RATE}&hold=30s&timeout=5s"
        h = HarnessProcess(tmp_path, ["run", "--target", url, "--duration", "2s", "--set", "profile.rate=2",
                                      "--no-metrics", "--progress", "off", "--quiet", "--out", str(out)])
        h.wait_line(r"^harness: run ")  # the banner: the run has started
        time.sleep(3.0)  # the schedule (2 s) is over; the streams (30 s) are open
        sent = time.monotonic()
        h.interrupt(signal.SIGINT)
        code = h.finish(30)
        took = time.monotonic() - sent
    err = h.text()
    assert code == 105, err
    assert took < 5, (took, err)              # not hold (30 s) + timeout
    r = json.loads(out.read_text())
    assert r["status"] == "interrupted"
    targets = r["summary"]["targets"]
    subs = targets["ws subscribe"]["outcomes"]["ok"]
    assert subs >= 3, targets["ws subscribe"]
    elapsed = float(r["elapsed_s"])
    total = errors = 0
    for sym in ("AAPL", "MSFT"):
        o = targets[f"ws {sym}"]["outcomes"]
        assert o["timeout"] == 0 and o["dropped"] == 0, o   # nothing waited for, nothing skipped
        total += sum(o.values())
        errors += o["error"]
    # only messages due by the cut have an outcome: far fewer than subscriptions × 600
    assert total <= subs * RATE * (elapsed + 1), (total, subs, elapsed)
    assert total < subs * RATE * 30 / 2
    # due but not arrived at the cut: the few in flight per stream, not the rest of the stream
    assert errors <= subs * RATE * 1.0, (errors, subs)
    assert total - errors > 0
    # the cut in the stream's own counts: messages not yet due (no outcome) and those lost to the cut
    stream = targets["ws subscribe"]["stream"]
    assert stream["not_due"] > 0 and stream["cut_short"] == errors, (stream, errors)
