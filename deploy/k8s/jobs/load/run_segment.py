"""One pod of the load Job (``python run_segment.py [harness run flags...]``).

1. Barrier: touch ``ready-<index>`` in the run's directory on the shared volume and wait
   until all N pods have, so that the N segments start together (pods are scheduled and
   pull images at different times; without this the offered rate would be wrong at the
   start and end of the run).
2. Run this pod's segment: ``harness run SCENARIO --segment INDEX/N --out ...``; the
   result (with its encoded HDR histograms) is renamed into place when complete. A
   segment's own verdict (exit 99/98) is not the test's verdict: the merge judges.
3. Pod 0 waits for the N results and runs ``harness merge``: exact global percentiles,
   thresholds judged on the whole run. Its exit code (0 passed, 99 thresholds failed,
   98 invalid) becomes the Job's outcome.

Environment: ``JOB_COMPLETION_INDEX`` (set by Kubernetes for an Indexed Job),
``LBH_SEGMENTS`` (N), ``LBH_RUN_ID`` (the Job's uid: one directory per run),
``LBH_RESULTS_DIR`` (default /results/load), ``LBH_SCENARIO`` (default
/etc/lbh/load/scenario.yaml), ``LBH_WAIT_TIMEOUT`` (seconds for the barrier and for
the other results after this pod's segment, default 900), ``LBH_REMOTE_WRITE_URL``
(empty: off; else ``harness run --remote-write URL``: each pod pushes its live series
there) with ``LBH_REMOTE_WRITE_HEADERS`` (``Name: value`` lines, each a
``--remote-write-header``). Only the standard library.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Mapping, Optional

#: harness run exit codes after which this segment's result file is complete.
SEGMENT_DONE = (0, 98, 99)


def _wait_for(paths: List[Path], timeout: float, what: str) -> bool:
    end = time.monotonic() + timeout
    while True:
        missing = [p.name for p in paths if not p.exists()]
        if not missing:
            return True
        if time.monotonic() > end:
            print(f"run_segment: gave up waiting for {what}: missing {', '.join(missing)}", file=sys.stderr, flush=True)
            return False
        time.sleep(0.1)


def remote_write_flags(env: Mapping[str, str]) -> List[str]:
    """The ``harness run`` flags of ``LBH_REMOTE_WRITE_URL`` and ``LBH_REMOTE_WRITE_HEADERS``
    (none when the URL is empty: remote write is off by default)."""
    url = (env.get("LBH_REMOTE_WRITE_URL") or "").strip()
    if not url:
        return []
    flags = ["--remote-write", url]
    for line in (env.get("LBH_REMOTE_WRITE_HEADERS") or "").splitlines():
        if line.strip():
            flags += ["--remote-write-header", line.strip()]
    return flags


def main(argv: Optional[List[str]] = None) -> int:
    extra = list(sys.argv[1:] if argv is None else argv)
    index = int(os.environ["JOB_COMPLETION_INDEX"])
    count = int(os.environ["LBH_SEGMENTS"])
    if not 0 <= index < count:
        print(f"run_segment: JOB_COMPLETION_INDEX={index} outside 0..{count - 1} (LBH_SEGMENTS={count})", file=sys.stderr)
        return 2
    run_dir = Path(os.environ.get("LBH_RESULTS_DIR", "/results/load")) / (os.environ.get("LBH_RUN_ID") or "run")
    scenario = os.environ.get("LBH_SCENARIO", "/etc/lbh/load/scenario.yaml")
    timeout = float(os.environ.get("LBH_WAIT_TIMEOUT", "900"))
    harness = [sys.executable, "-m", "harness.cli.main"]
    run_dir.mkdir(parents=True, exist_ok=True)

    (run_dir / f"ready-{index}").touch()
    print(f"run_segment: segment {index}/{count}, waiting for {count} pods in {run_dir}", flush=True)
    if not _wait_for([run_dir / f"ready-{i}" for i in range(count)], timeout, "the other pods to start"):
        return 1

    result = run_dir / f"result-{index}.json"
    partial = run_dir / f".result-{index}.json.partial"
    cmd = [*harness, "run", scenario, "--segment", f"{index}/{count}", "--out", str(partial), *extra]
    remote_write = remote_write_flags(os.environ)  # not logged: its headers may hold a token
    print("run_segment: " + " ".join(cmd) + (" --remote-write ... (LBH_REMOTE_WRITE_*)" if remote_write else ""),
          flush=True)
    rc = subprocess.call(cmd + remote_write)
    if rc not in SEGMENT_DONE or not partial.exists():
        print(f"run_segment: harness run exited {rc} without a result", file=sys.stderr, flush=True)
        return rc or 1
    os.replace(partial, result)
    if index != 0:
        return 0

    results = [run_dir / f"result-{i}.json" for i in range(count)]
    if not _wait_for(results, timeout, "the other segments' results"):
        return 1
    merged = run_dir / "merged.json"
    cmd = [*harness, "merge", *map(str, results), "--out", str(merged)]
    print("run_segment: " + " ".join(cmd), flush=True)
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
