"""How long a generator far behind its schedule takes to account its backlog.

A schedule of ``--rate`` requests/s for ``--duration`` seconds is started ``--late``
seconds in the past, so every request is already more than ``drop_after`` late: each must
be recorded as ``dropped``. Measured in this run, same recorder type, same schedule:

* **bulk** — :class:`harness.engine.threads.ThreadExecutor` as the runner builds it (one
  label): the overdue part of each 4,096-request batch is taken off the schedule and
  recorded in one call;
* **one by one** — the previous rule, walked here as it ran: claim the next request under
  the lock, ask ``dispatch`` for its label, record it.

Prints both times and their ratio; nothing is asserted.

    .venv/bin/python benchmarks/backlog_drop.py                      # 1e6/s for 3 s
    .venv/bin/python benchmarks/backlog_drop.py --rate 200000 --duration 10
"""

from __future__ import annotations

import argparse
import threading
import time

from harness.config import profiles
from harness.engine.threads import ThreadExecutor
from harness.record.recorder import Recorder


def _noop() -> None:
    return None


def bulk(rate: float, duration: float, late_s: float) -> tuple[float, int]:
    rec = Recorder()
    ex = ThreadExecutor(profiles.constant(rate, duration).arrival_batches(), lambda k: ("t", _noop, ()), rec,
                        threads=4, timeout_s=1.0, labels=("t",))
    t = time.perf_counter()
    ex.run(time.perf_counter_ns() - int(late_s * 1e9))
    return time.perf_counter() - t, rec.counts()["dropped"]


def one_by_one(rate: float, duration: float, late_s: float) -> tuple[float, int]:
    rec = Recorder()
    lock = threading.Lock()
    schedule = profiles.constant(rate, duration).arrivals()
    dispatch = lambda k: ("t", _noop, ())  # noqa: E731 - the target's dispatch, as the executor saw it
    t0 = time.perf_counter_ns() - int(late_s * 1e9)
    t = time.perf_counter()
    while True:
        with lock:
            req = next(schedule, None)
        if req is None:
            break
        ordinal, offset = req
        now = time.perf_counter_ns()
        rec.record(dispatch(ordinal)[0], "dropped", t0 + offset, None, now)
    return time.perf_counter() - t, rec.counts()["dropped"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=1e6)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--late", type=float, default=30.0, help="how far in the past the schedule starts (s)")
    a = ap.parse_args()
    tb, nb = bulk(a.rate, a.duration, a.late)
    to, no = one_by_one(a.rate, a.duration, a.late)
    print(f"backlog of {nb:,} overdue requests ({a.rate:g}/s for {a.duration:g} s, {a.late:g} s late)")
    print(f"  bulk (per batch):   {tb:8.3f} s   {nb / tb / 1e6:7.2f} M requests/s accounted")
    print(f"  one by one:         {to:8.3f} s   {no / to / 1e6:7.2f} M requests/s accounted  ({no:,} dropped)")
    print(f"  one-by-one / bulk:  {to / tb:8.1f}x")


if __name__ == "__main__":
    main()
