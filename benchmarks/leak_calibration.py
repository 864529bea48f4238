"""Calibrate the leak verdict (``harness soak``, :mod:`harness.studies.soak`) on this machine
with real runs.

* **False leaks**: ``pairs`` healthy runs of the embedded ``features`` target (in-process,
  ``rate`` rps, ``duration_s`` each); the share judged ``leak`` (goal: ≤ 5 %).
* **Detection**: ``pairs`` runs of the same extractor behind a target that also keeps
  200 kB per call (``leaky_features``: ``_LEAK.append(b"x" * 200_000)``, every page
  written, so resident at once) — 2× the budget of 1 GB per 10,000 extractions; the share
  judged ``leak`` (goal: ≥ 90 %).

Each run is a fresh Python process (this script with ``--child``), as a real soak would
be: the warm-up (imports, the model, allocator arenas) is part of what the verdict must see
through, and memory freed by an earlier run cannot hide the next run's leak. Healthy and
leaky runs alternate. Every figure is measured in this run; nothing is asserted.

    .venv/bin/python benchmarks/leak_calibration.py --pairs 2 --duration 30   # a smoke run
    .venv/bin/python benchmarks/leak_calibration.py                           # 20 + 20 runs of 30 s (~30 min)

``run(pairs, duration_s)`` is what ``benchmarks/gate_calibration.py`` calls.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

_HERE = os.path.dirname(os.path.abspath(__file__))
_SELF = os.path.abspath(__file__)
LEAK_BYTES_PER_CALL = 200_000
DEFAULT_RATE = 20.0

# ----------------------------------------------------------------------------- the leaky target

_LEAK: List[bytes] = []
_state: Dict[str, Any] = {}
_lock = threading.Lock()


def window(k: int) -> Tuple[Any]:
    """Payload: request ``k``'s market window, as the ``features`` target picks it."""
    from workloads.plugin.payloads import pool_index, window_pool
    pool = _state.get("pool")
    if pool is None:
        pool = _state["pool"] = window_pool(0)
    return (pool[pool_index(k, len(pool))],)


def leaky_features(win: Any) -> Any:
    """The features extraction, plus 200 kB kept per call (a cache that never evicts)."""
    extractor = _state.get("extractor")
    if extractor is None:
        with _lock:
            extractor = _state.get("extractor")
            if extractor is None:
                from workloads.extractor import build_extractor
                extractor = _state["extractor"] = build_extractor()
    out = extractor.extract(win)
    _LEAK.append(b"x" * LEAK_BYTES_PER_CALL)
    return out


# ----------------------------------------------------------------------------- one run (child)


def _child(kind: str, duration_s: float, rate: float, seed: int) -> Dict[str, Any]:
    sys.path.insert(0, os.path.join(_HERE, ".."))
    import dataclasses
    import io

    from harness.config.scenario import load_scenario
    from harness.run.runner import Run, RunOptions
    from harness.studies.soak import leak_verdict

    ov: Dict[str, Any] = {"profile.type": "constant", "profile.rate": rate, "duration": f"{duration_s}s",
                          "seed": seed, "thresholds": {}}
    if kind == "healthy":
        ov["target"] = "features"
    else:
        ov["target"] = f"{_SELF}:leaky_features"
        ov["payload"] = f"{_SELF}:window"
    scenario = load_scenario(None, ov, env={})
    wanted = {"metrics_port": None, "progress": "off", "stream": io.StringIO(), "install_signal_handlers": False}
    known = {f.name for f in dataclasses.fields(RunOptions)}
    result = Run(scenario, RunOptions(**{k: v for k, v in wanted.items() if k in known})).execute()
    v = leak_verdict(result)
    samples = (result.get("resources") or {}).get("samples") or []
    return {"kind": kind, "verdict": v["verdict"], "reason": v["reason"],
            "bytes_per_request": (v.get("bytes_per_request") or {}).get("slope"),
            "rss_first_mib": samples[0]["process_rss_bytes"] / 2**20 if samples else None,
            "rss_last_mib": samples[-1]["process_rss_bytes"] / 2**20 if samples else None,
            "requests": (result.get("summary") or {}).get("all", {}).get("count"),
            "generator_valid": (result.get("generator") or {}).get("valid")}


def _one(kind: str, duration_s: float, rate: float, seed: int) -> Dict[str, Any]:
    cmd = [sys.executable, _SELF, "--child", kind, "--duration", str(duration_s), "--rate", str(rate),
           "--seed", str(seed)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 300)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"kind": kind, "verdict": "error", "reason": (proc.stderr or proc.stdout).strip()[-400:]}
    return json.loads(lines[-1])


def wilson(k: int, n: int, z: float = 1.96) -> Tuple[float, float]:
    """95 % Wilson interval of a proportion k/n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def _line(label: str, k: int, n: int, goal: str) -> str:
    lo, hi = wilson(k, n)
    return f"{label}: {k}/{n} = {100 * k / max(n, 1):.1f} %  (95 % CI {100 * lo:.0f}–{100 * hi:.0f} %; goal {goal})"


def run(pairs: int, duration_s: float, rate: float = DEFAULT_RATE) -> Dict[str, Any]:
    """``pairs`` healthy and ``pairs`` leaky runs of ``duration_s`` (alternating, each in a
    fresh process); prints each verdict and the two rates, returns them."""
    t0 = time.perf_counter()
    print(f"leak calibration: features target in-process, {rate:g} rps, {duration_s:g} s per run, {pairs} healthy + "
          f"{pairs} leaky ({LEAK_BYTES_PER_CALL / 1000:g} kB/call) runs; gate: 1 GB per 10,000 requests "
          f"(100 kB/request)", flush=True)
    got: Dict[str, List[Dict[str, Any]]] = {"healthy": [], "leaky": []}
    for i in range(pairs):
        order = ("healthy", "leaky") if i % 2 == 0 else ("leaky", "healthy")
        for kind in order:
            r = _one(kind, duration_s, rate, seed=100 + i)
            got[kind].append(r)
            per = r.get("bytes_per_request")
            print(f"  {kind:>7} {len(got[kind]):>2}/{pairs}: {r['verdict'].upper():<12} "
                  + (f"{per / 1000:+8.2f} kB/request  " if per is not None else "")
                  + (f"RSS {r['rss_first_mib']:.0f} -> {r['rss_last_mib']:.0f} MiB  "
                     if r.get("rss_first_mib") is not None else "")
                  + ("" if r["verdict"] != "error" else r["reason"]), flush=True)
    healthy, leaky = got["healthy"], got["leaky"]
    h_ok = [r for r in healthy if r["verdict"] != "error"]
    l_ok = [r for r in leaky if r["verdict"] != "error"]
    false_leaks = sum(r["verdict"] == "leak" for r in h_ok)
    detected = sum(r["verdict"] == "leak" for r in l_ok)
    out = {
        "rate_rps": rate, "duration_s": duration_s, "leak_bytes_per_call": LEAK_BYTES_PER_CALL,
        "healthy_runs": len(h_ok), "false_leaks": false_leaks,
        "false_leak_rate": false_leaks / len(h_ok) if h_ok else None,
        "healthy_flat": sum(r["verdict"] == "flat" for r in h_ok),
        "healthy_inconclusive": sum(r["verdict"] == "inconclusive" for r in h_ok),
        "leaky_runs": len(l_ok), "detected": detected,
        "detection_rate": detected / len(l_ok) if l_ok else None,
        "leaky_inconclusive": sum(r["verdict"] == "inconclusive" for r in l_ok),
        "errors": (len(healthy) - len(h_ok)) + (len(leaky) - len(l_ok)),
        "elapsed_s": round(time.perf_counter() - t0, 1),
    }
    print("\nleak verdict, this machine:")
    print("  " + _line("false-leak rate (healthy runs judged LEAK)", false_leaks, len(h_ok), "≤ 5 %"))
    print(f"    healthy: {out['healthy_flat']} flat, {out['healthy_inconclusive']} inconclusive, {false_leaks} leak")
    print("  " + _line(f"detection rate ({LEAK_BYTES_PER_CALL / 1000:g} kB/call leak judged LEAK)", detected,
                       len(l_ok), "≥ 90 %"))
    print(f"    leaky: {detected} leak, {out['leaky_inconclusive']} inconclusive, "
          f"{sum(r['verdict'] == 'flat' for r in l_ok)} flat; runs that failed to run: {out['errors']}; "
          f"elapsed {out['elapsed_s']:.0f} s", flush=True)
    return out


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=20, help="healthy runs and leaky runs (default 20 each)")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds per run (default 30)")
    ap.add_argument("--rate", type=float, default=DEFAULT_RATE, help="requests/s (default 20)")
    ap.add_argument("--child", choices=("healthy", "leaky"), help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.pairs < 1 or args.duration <= 0 or args.rate <= 0:
        ap.error("--pairs ≥ 1, --duration > 0 and --rate > 0 are needed")
    if args.child:
        print(json.dumps(_child(args.child, args.duration, args.rate, args.seed)), flush=True)
        return 0
    run(args.pairs, args.duration, args.rate)
    return 0


if __name__ == "__main__":
    sys.exit(main())
