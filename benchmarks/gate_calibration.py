"""Calibrate the regression gate (``harness compare``) on this machine with real runs.

* **False regressions**: ``--pairs`` A/A pairs of short in-process runs of the embedded
  ``features`` target (same scenario twice, back to back) compared with the gate; the share
  of pairs where the gate failed (goal ≤ 5 %).
* **Detection**: ``--pairs`` A/B pairs where B carries the fault knob
  ``faults: {extra_latency_seconds: X}`` (every call sleeps X more, inside the timed call),
  X = 20 % of the A/A runs' median latency ``--basis`` (p95 by default; see below); the share
  of pairs where the gate failed (goal ≥ 90 %).  A and B alternate which runs first.

Why p95 as the basis by default: the features target answers in 2–3 ms at 40–50 rps, so
20 % of its *mean* (≈ 0.4 ms) is under the gate's 0.5 ms latency floor: by design such a
change never regresses and the detection rate would measure the floor, not the statistics.
20 % of p95 (≈ 0.6 ms) is +20 % at p95 and about +30 % at the mean and median, just over
the floor.  The script prints the floor next to the injected change either way, and says
when the change lies within twice the floor: then a pair regresses only when its whole
interval clears the floor too, and the detection rate measures the floor as much as the
statistics.  ``--base-ms`` adds the same extra latency to A and B (a slower model, nearer
the seeds' budgets than a 2–3 ms target) so that +20 % lies clear of the floor.

Then the leak verdict's two rates from ``benchmarks/leak_calibration.py`` (``run(pairs,
duration_s)``; another change adds it) unless ``--skip-leak``.

Every figure is measured in this run; nothing is asserted.  One warm-up run (discarded)
first, so the first A is not the one that loads the model; the A/A pairs run first and give
the reference latency for the injected change.

    .venv/bin/python benchmarks/gate_calibration.py --quick          # a smoke run (3 + 3 pairs)
    .venv/bin/python benchmarks/gate_calibration.py                  # 20 + 20 pairs, 6 s each (~10 min)
    .venv/bin/python benchmarks/gate_calibration.py --base-ms 5      # the same with a 5 ms slower model in A and B
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import io
import math
import os
import statistics
import sys
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_HERE, ".."))  # not _HERE itself: benchmarks/workloads.py would shadow the package

from harness.config.scenario import load_scenario  # noqa: E402
from harness.result.compare import FLOORS, MIN_WINDOWS, compare  # noqa: E402
from harness.run.runner import Run, RunOptions  # noqa: E402


def _options() -> RunOptions:
    wanted = {"metrics_port": None, "progress": "off", "stream": io.StringIO(), "install_signal_handlers": False}
    known = {f.name for f in dataclasses.fields(RunOptions)}
    return RunOptions(**{k: v for k, v in wanted.items() if k in known})


def one_run(rate: float, duration_s: float, seed: int, extra_latency_s: float = 0.0) -> Dict[str, Any]:
    """One in-process run of the features target at ``rate`` rps (no /metrics, no progress)."""
    ov: Dict[str, Any] = {"target": "features", "profile.type": "constant", "profile.rate": rate,
                          "duration": f"{duration_s}s", "seed": seed}
    if extra_latency_s > 0:
        ov["faults"] = {"extra_latency_seconds": extra_latency_s}
    scenario = load_scenario(None, ov, env={})
    return Run(scenario, _options()).execute()


def _worst(c: Mapping[str, Any]) -> str:
    """The gated row that came closest to failing: its change and interval."""
    rows = [r for r in c["metrics"] if r["gated"] and r.get("interval_percent") and r.get("change_percent") is not None
            and all(math.isfinite(x) for x in r["interval_percent"])]
    if not rows:
        return "no interval"

    def worse_low(r: Mapping[str, Any]) -> float:
        lo, hi = r["interval_percent"]
        return lo if r["lower_is_better"] else -hi

    r = max(rows, key=worse_low)
    lo, hi = r["interval_percent"]
    return f"{r['metric']} {r['change_percent']:+.1f}% [{lo:+.1f}%, {hi:+.1f}%] {r['status']}"


def _noise_terms(c: Mapping[str, Any]) -> Optional[Tuple[float, float]]:
    """(log ratio of the mean latency, its bootstrap sd) of a comparison made without run noise."""
    r = next((r for r in c["metrics"] if r["metric"] == "latency mean"), None)
    if not r or not r.get("interval_percent") or not r.get("base") or not r.get("new"):
        return None
    lo, hi = r["interval_percent"]
    z = statistics.NormalDist().inv_cdf(0.5 + c["lines"]["confidence"] / 2)
    return math.log(r["new"] / r["base"]), (math.log1p(hi / 100) - math.log1p(lo / 100)) / (2 * z)


def run_noise_estimate(terms: List[Tuple[float, float]]) -> Optional[float]:
    """Relative sd of one run's latency level beyond what the windows show: A/A log ratios
    have variance 2·σ² + bootstrap variance, so σ² = (mean L² − mean sd²) / 2 (≥ 0)."""
    if len(terms) < 2:
        return None
    excess = statistics.fmean(x * x for x, _ in terms) - statistics.fmean(sd * sd for _, sd in terms)
    return math.sqrt(max(0.0, excess) / 2)


def _pairs(kind: str, pairs: int, rate: float, duration_s: float, extra_s: float, floors: Mapping[str, float],
           seed0: int, run_noise: float = 0.0, base_s: float = 0.0) -> Dict[str, Any]:
    fails = inconclusive_pairs = invalid = valid_pairs = valid_fails = no_verdict = 0
    cost: List[float] = []
    basis: List[Dict[str, float]] = []
    terms: List[Tuple[float, float]] = []
    for i in range(pairs):
        extra_b = extra_s if kind == "A/B" else 0.0
        order = ("A", "B") if i % 2 == 0 else ("B", "A")
        got: Dict[str, Dict[str, Any]] = {}
        for who in order:
            extra = base_s + (extra_b if who == "B" else 0.0)
            got[who] = one_run(rate, duration_s, seed0 + 2 * i + (who == "B"), extra)
        a, b = got["A"], got["B"]
        basis += [r["summary"]["all"]["latency"] for r in (a, b)]
        bad = sum(1 for r in (a, b) if not (r.get("generator") or {}).get("valid", True))
        invalid += bad
        t0 = time.perf_counter()
        c = compare(a, b, floors=floors, run_noise=run_noise)
        cost.append(time.perf_counter() - t0)
        if kind == "A/A":
            t = _noise_terms(compare(a, b, floors=floors) if run_noise else c)
            if t is not None:
                terms.append(t)
        failed = bool(c["gate"]["regressions"])   # failed on a regressed metric, not for want of data
        no_verdict += not c["gate"]["passed"] and not failed
        fails += failed
        if not bad:
            valid_pairs += 1
            valid_fails += failed
        inconclusive_pairs += bool(c["gate"]["inconclusive"])
        la, lb = a["summary"]["all"]["latency"], b["summary"]["all"]["latency"]
        print(f"  {kind} pair {i + 1:>2}/{pairs}: gate {'passed' if c['gate']['passed'] else 'FAILED'}  "
              f"mean {la['mean']:.2f} -> {lb['mean']:.2f} ms, p95 {la['p95']:.2f} -> {lb['p95']:.2f} ms;  "
              f"closest: {_worst(c)}" + (f";  inconclusive: {len(c['gate']['inconclusive'])}"
                                         if c["gate"]["inconclusive"] else ""), flush=True)
    return {"fails": fails, "pairs": pairs, "no_verdict": no_verdict, "valid_pairs": valid_pairs,
            "valid_fails": valid_fails, "inconclusive_pairs": inconclusive_pairs, "invalid_runs": invalid,
            "compare_s": statistics.median(cost) if cost else None, "latency": basis, "noise_terms": terms}


def _leak_calibration() -> Any:
    """benchmarks/leak_calibration.py, loaded by path (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("leak_calibration", os.path.join(_HERE, "leak_calibration.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wilson(k: int, n: int) -> Tuple[float, float]:
    """95 % Wilson interval of a proportion k/n (the leak calibration's, one definition)."""
    return _leak_calibration().wilson(k, n)


def _rate_line(label: str, k: int, n: int, goal: str) -> str:
    lo, hi = wilson(k, n)
    return f"{label}: {k}/{n} = {100 * k / n:.1f} %  (95 % CI {100 * lo:.0f}–{100 * hi:.0f} %; goal {goal})"


def leak_rates(pairs: int, duration_s: float) -> None:
    """The leak verdict's false-leak and detection rates, from benchmarks/leak_calibration.py."""
    leak_calibration = _leak_calibration()
    print(f"\nleak verdict ({pairs} pairs, {duration_s:g} s runs, benchmarks/leak_calibration.py):", flush=True)
    out = leak_calibration.run(pairs, duration_s)
    if isinstance(out, str):   # the module prints its own lines; a returned dict is for programs
        print(out)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=None, help="A/A pairs and A/B pairs (default 20; --quick 3)")
    ap.add_argument("--duration", type=float, default=None, help="seconds per run (default 6; --quick 5)")
    ap.add_argument("--rate", type=float, default=45.0, help="requests/s (default 45)")
    ap.add_argument("--basis", choices=("p95", "mean"), default="p95",
                    help="the injected extra latency is 20 %% of the reference run's p95 (default) or mean")
    ap.add_argument("--change", type=float, default=0.20, help="injected change as a fraction of the basis")
    ap.add_argument("--floor-ms", type=float, default=FLOORS["ms"], help="the gate's latency floor (default 0.5)")
    ap.add_argument("--run-noise", type=float, default=0.0, help="the gate's --run-noise (default 0)")
    ap.add_argument("--base-ms", type=float, default=0.0,
                    help="extra latency in A and B alike (a slower model: +20 %% then lies clear of the floor)")
    ap.add_argument("--quick", action="store_true", help="3 + 3 pairs of 5 s: a smoke run")
    ap.add_argument("--skip-leak", action="store_true", help="do not measure the leak verdict's rates")
    ap.add_argument("--leak-pairs", type=int, default=None, help="runs per leak case (default: --pairs)")
    ap.add_argument("--leak-duration", type=float, default=None, help="seconds per leak run (default 30; --quick 10)")
    args = ap.parse_args(argv)
    pairs = args.pairs or (3 if args.quick else 20)
    duration = args.duration or (5.0 if args.quick else 6.0)
    if pairs < 1 or duration < MIN_WINDOWS or args.rate <= 0 or args.base_ms < 0:
        ap.error(f"--pairs ≥ 1, --duration ≥ {MIN_WINDOWS} (the gate needs {MIN_WINDOWS} windows) and --rate > 0 "
                 "and --base-ms ≥ 0 are needed")
    floors = {**FLOORS, "ms": args.floor_ms}
    t_start = time.perf_counter()
    base_s = args.base_ms / 1000.0
    base = f" + {args.base_ms:g} ms in A and B" if base_s else ""
    print(f"gate calibration: features target{base}, {args.rate:g} rps, {duration:g} s per run, {pairs} A/A + "
          f"{pairs} A/B pairs; gate: 90 % block-bootstrap intervals, fail when the whole interval is > 10 % worse "
          f"and beyond the floor ({args.floor_ms:g} ms, {100 * floors['rate']:g} pp, {floors['rps']:g} rps), run noise "
          f"{args.run_noise:g}; cpu count {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}", flush=True)
    one_run(args.rate, duration, seed=999, extra_latency_s=base_s)   # warm-up: loads the model, fills the caches
    print("A/A pairs (identical scenario):", flush=True)
    aa = _pairs("A/A", pairs, args.rate, duration, 0.0, floors, seed0=1000, run_noise=args.run_noise, base_s=base_s)
    lat = {k: statistics.median(x[k] for x in aa["latency"]) for k in ("mean", "p50", "p95")}
    extra_ms = args.change * float(lat[args.basis])
    print(f"reference (median over the A/A runs): mean {lat['mean']:.2f} ms, p50 {lat['p50']:.2f} ms, "
          f"p95 {lat['p95']:.2f} ms -> injected extra latency {extra_ms:.3f} ms = {100 * args.change:.0f} % of "
          f"{args.basis} (+{100 * extra_ms / lat['mean']:.0f} % of the mean, +{100 * extra_ms / lat['p95']:.0f} % of "
          f"p95); latency floor {args.floor_ms:g} ms", flush=True)
    if extra_ms <= args.floor_ms:
        print(f"  note: the injected change ({extra_ms:.2f} ms) is under the latency floor ({args.floor_ms:g} ms): "
              "by design the gate does not fail on it", flush=True)
    elif extra_ms < 2 * args.floor_ms:
        print(f"  note: the injected change ({extra_ms:.2f} ms) is within 2x the latency floor ({args.floor_ms:g} ms): "
              "a pair regresses only when its whole interval clears the floor too, so the detection rate measures "
              "the floor as much as the statistics (--base-ms moves the change clear of it)", flush=True)
    print("A/B pairs (B with the extra latency):", flush=True)
    ab = _pairs("A/B", pairs, args.rate, duration, extra_ms / 1000.0, floors, seed0=2000, run_noise=args.run_noise,
                base_s=base_s)
    print("\nregression gate, this machine:")
    print("  " + _rate_line("false-regression rate (A/A pairs the gate failed on a regressed metric)",
                            aa["fails"], aa["pairs"], "≤ 5 %"))
    print("  " + _rate_line(f"detection rate (A/B, +{extra_ms:.2f} ms = +{100 * args.change:.0f} % of {args.basis})",
                            ab["fails"], ab["pairs"], "≥ 90 %"))
    if aa["valid_pairs"] < pairs or ab["valid_pairs"] < pairs:
        print("  over the pairs where both runs were valid (the generator kept its schedule): "
              + ", ".join(f"{k} {d['valid_fails']}/{d['valid_pairs']} failed on a regression" for k, d in
                          (("A/A", aa), ("A/B", ab))))
    if aa["no_verdict"] or ab["no_verdict"]:
        print(f"  gates with no verdict (too few samples; not counted above): A/A {aa['no_verdict']}, "
              f"A/B {ab['no_verdict']}")
    print(f"  pairs with an inconclusive metric: A/A {aa['inconclusive_pairs']}/{pairs}, "
          f"A/B {ab['inconclusive_pairs']}/{pairs}; invalid runs (generator-limited): "
          f"{aa['invalid_runs'] + ab['invalid_runs']}/{4 * pairs}")
    sigma = run_noise_estimate(aa["noise_terms"])
    print("  run-to-run noise of the mean latency beyond the windows' own spread: "
          + ("not enough A/A pairs" if sigma is None else
             f"{100 * sigma:.1f} % per run (from {len(aa['noise_terms'])} A/A pairs; the gate's --run-noise "
             f"{sigma:.2f} would cover it; this run used --run-noise {args.run_noise:g})"))
    cost = [x for x in (aa["compare_s"], ab["compare_s"]) if x is not None]
    print(f"  compare() cost: median {1000 * statistics.median(cost):.0f} ms per pair "
          f"(~{duration:g} windows per run, 400 resamples)")
    print(f"  settings: rate {args.rate:g} rps, {duration:g} s per run, {pairs} + {pairs} pairs, "
          f"elapsed {time.perf_counter() - t_start:.0f} s")
    if not args.skip_leak:
        leak_rates(args.leak_pairs or pairs, args.leak_duration or (10.0 if args.quick else 30.0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
