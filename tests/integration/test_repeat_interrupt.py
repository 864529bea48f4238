"""``harness run --repeat N`` interrupted while repeat 2 is starting (its payload generator's
first call, made while the target is built, is slow on purpose): the pooled result of the
repeat that completed is written, marked interrupted, exit 105."""

from __future__ import annotations

import json
import signal
import textwrap
import time

from tests.support.processes import HarnessProcess

_HOOKS = textwrap.dedent('''
    import os, sys, time

    def target(k):
        return None

    def payload(k):
        """gen(0) is called while the target is built (the file is imported afresh each
        repeat, so the state is a file): once a measured call (k > 0) was seen, gen(0) is
        repeat 2's setup: announce it and be slow, so a signal lands there."""
        if k > 0:
            open("measured", "w").close()
        elif os.path.exists("measured"):
            print("HOOK: repeat setup", file=sys.stderr, flush=True)
            time.sleep(30)
        return {"k": k}
''')


def test_signal_while_repeat_2_starts_writes_pooled_result(tmp_path):
    (tmp_path / "hooks.py").write_text(_HOOKS)
    out = tmp_path / "pooled.json"
    h = HarnessProcess(tmp_path, ["run", "--target", "hooks.py:target", "--set", "payload=hooks.py:payload",
                                  "--duration", "1s", "--rate", "50", "--no-metrics", "--progress", "off",
                                  "--lag-bound-ms", "1000", "--quiet", "--repeat", "3", "--out", str(out)])
    h.wait_line(r"^HOOK: repeat setup", timeout=60)
    sent = time.monotonic()
    h.interrupt(signal.SIGINT)
    code = h.finish(20)
    took = time.monotonic() - sent
    err = h.text()
    assert code == 105, err
    assert took < 10, took                         # not after the 30 s sleep
    assert (tmp_path / "pooled.repeat-1.json").exists() and not (tmp_path / "pooled.repeat-2.json").exists()
    pooled = json.loads(out.read_text())
    part = json.loads((tmp_path / "pooled.repeat-1.json").read_text())
    assert pooled["status"] == "interrupted" and pooled["verdict"]["exit_code"] == 105
    assert pooled["verdict"]["passed"] is False
    assert pooled["summary"]["all"]["count"] == part["summary"]["all"]["count"] > 0
