"""Measure the reference workloads on this machine and print what was measured, now.

    .venv/bin/python benchmarks/workloads.py [--iterations N] [--json results.json]

Extractor figures are for the full instrumented call (validation, chain, metrics) with a
warm model, the cache off and the fallback off, so every timed call runs the CNN+LSTM:
with the fallback on, one slow call (say, torch creating its thread pool) could open
the circuit breaker and the figure would silently become the fallback's. The script
checks the sources of the answers and prints them. The Monte-Carlo VaR is
compared with a naive numpy version of the same algorithm (fresh arrays every call, a
full percentile) in interleaved calls, so both see the same machine state. The agent's
action, the VaR, the (instrumented) limit check and the model's load time (what the service
does at start: ``build_extractor`` from its config, seeded weights and from a weights file;
the first build in this process, then the median of the next ones) are printed beside the
seeds' budgets.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from workloads import (  # noqa: E402
    ExtractorConfig,
    FallbackExtractor,
    MarketDataGenerator,
    MonteCarloVaR,
    TradingEnv,
    build_extractor,
)
from workloads.model import MODEL_LOAD_BUDGET_SECONDS  # noqa: E402
from workloads.risk import RiskEngine, RiskLimits  # noqa: E402
from workloads.agent import AGENT_BUDGET_SECONDS, PolicyArchitecture, TradingAgent  # noqa: E402

# The seeds' budgets for the risk calls (the packaged risk-var and risk-limits scenarios'
# thresholds): p95 of one Monte-Carlo VaR < 1 s, of one limit check < 10 ms.
VAR_BUDGET_MS = 1000.0
LIMIT_CHECK_BUDGET_MS = 10.0


def timed(fn: Callable[[], object], n: int, warmup: int = 50) -> np.ndarray:
    """Seconds per call for ``n`` calls after ``warmup`` unrecorded ones."""
    for _ in range(warmup):
        fn()
    out = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter_ns()
        fn()
        out[i] = (time.perf_counter_ns() - t0) / 1e9
    return out


def summary(seconds: np.ndarray, per: int = 1) -> dict[str, float]:
    ms = seconds * 1000 / per
    return {
        "n": int(ms.size),
        "mean_ms": float(ms.mean()),
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


def cycle(items: np.ndarray) -> Callable[[], np.ndarray]:
    state = {"i": 0}

    def nxt() -> np.ndarray:
        state["i"] = (state["i"] + 1) % len(items)
        return items[state["i"]]

    return nxt


def model_load_seconds(config: ExtractorConfig, repeats: int) -> dict[str, float]:
    """Seconds to build the extractor (its model and weights) as the service does at start:
    the first build in this process (cold: torch's first module, allocator) and the median
    of ``repeats`` more."""
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        build_extractor(config, registry=CollectorRegistry())
        times.append(time.perf_counter() - t0)
    return {"first_s": times[0], "median_s": float(np.median(times[1:])), "max_s": max(times), "n": len(times)}


def naive_mc_var(mean: np.ndarray, cov: np.ndarray, w: np.ndarray, rng: np.random.Generator, n: int) -> float:
    chol = np.linalg.cholesky(cov)
    scenarios = mean + rng.standard_normal((n, mean.shape[0])) @ chol.T
    return -float(np.percentile(scenarios @ w, 1.0))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=300, help="timed calls per figure (default 300)")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    n = args.iterations
    results: dict[str, object] = {
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
        }
    }

    # The model's load time first: the first build in this process is the one a starting service pays.
    results["model_load_seeded"] = model_load_seconds(ExtractorConfig(), repeats=5)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "model.pt"
        build_extractor(ExtractorConfig(), registry=CollectorRegistry()).model.model.save(weights)
        results["model_load_weights_file"] = model_load_seconds(ExtractorConfig(weights_path=str(weights)), repeats=5)
    # Not part of the load the service times (it imports torch before it starts), but part of a cold start.
    probe = "import time; t = time.perf_counter(); import torch; print(time.perf_counter() - t)"
    results["torch_import_fresh_process_s"] = float(subprocess.run([sys.executable, "-c", probe], check=True,
                                                                   capture_output=True, text=True).stdout)

    windows = MarketDataGenerator(1).windows(64)
    nxt = cycle(windows)
    config = ExtractorConfig(enable_caching=False, enable_fallback=False, torch_threads=1)
    extractor = build_extractor(config, registry=CollectorRegistry())
    sources: dict[str, int] = {}

    def extract() -> None:
        source = extractor.extract(nxt()).source
        sources[source] = sources.get(source, 0) + 1

    results["extract_batch1"] = summary(timed(extract, n))
    batches = [windows[:32], windows[32:]]
    nb = cycle(np.arange(2))
    batch_calls = timed(lambda: extractor.extract_batch(batches[nb()]), max(n // 10, 20), warmup=5)
    results["extract_batch32_per_sample"] = summary(batch_calls, per=32)

    torch.set_num_threads(2)
    results["extract_batch1_torch_threads_2"] = summary(timed(extract, n))
    torch.set_num_threads(1)

    cached = build_extractor(ExtractorConfig(), registry=CollectorRegistry(), model=extractor.model.model)
    for w in windows:
        cached.extract(w)
    results["extract_cache_hit"] = summary(timed(lambda: cached.extract(nxt()), n))

    fallback = FallbackExtractor(config, registry=CollectorRegistry())
    results["fallback"] = summary(timed(lambda: fallback.extract(nxt()), n))

    env = TradingEnv(extractor, n_steps=n + 100, registry=CollectorRegistry())  # + warm-up steps
    env.reset(seed=0)
    results["env_step"] = summary(timed(lambda: env.step(1), n))
    assert env.last_result is not None and env.last_result.source == "model"
    results["extract_sources"] = sources

    # The RL agent: act() alone on real observations, then one whole decision (act + step,
    # the step extracting the next observation through the model) as the trading-loop target runs it.
    agent = TradingAgent(PolicyArchitecture(feature_dim=config.fused_feature_dim), registry=CollectorRegistry())
    loop_env = TradingEnv(extractor, n_steps=2 * n + 200, registry=CollectorRegistry())
    obs, _ = loop_env.reset(seed=1)
    pool = [obs]
    for k in range(127):
        pool.append(loop_env.step(k % 3)[0])
    no = cycle(np.stack(pool))
    results["agent_action"] = summary(timed(lambda: agent.act(no()), n))
    loop = {"obs": obs}

    def decide() -> None:
        loop["obs"] = loop_env.step(agent.act(loop["obs"]).action)[0]

    results["trading_decision"] = summary(timed(decide, n))

    d, n_scen = 50, 10_000
    rng = np.random.default_rng(0)
    a = rng.normal(size=(d, d))
    cov = a @ a.T / d * 1e-4 + np.eye(d) * 1e-5
    mean, weights = np.full(d, 1e-4), np.full(d, 1.0 / d)
    engine = MonteCarloVaR(n_scen, seed=0)
    naive_rng = np.random.default_rng(1)
    for _ in range(5):
        engine.run(mean, cov, weights)
        naive_mc_var(mean, cov, weights, naive_rng, n_scen)
    runs = max(n // 3, 30)
    opt, naive = np.empty(runs), np.empty(runs)
    for i in range(runs):  # interleaved: both see the same machine state
        t0 = time.perf_counter_ns()
        engine.run(mean, cov, weights)
        t1 = time.perf_counter_ns()
        naive_mc_var(mean, cov, weights, naive_rng, n_scen)
        t2 = time.perf_counter_ns()
        opt[i], naive[i] = (t1 - t0) / 1e9, (t2 - t1) / 1e9
    results["mc_var_10k_x_50"] = summary(opt)
    results["mc_var_10k_x_50_naive"] = summary(naive)
    results["mc_var_speedup_p50"] = float(np.median(naive) / np.median(opt))

    # Limit checks on 50-asset books, sized so some calls breach (the breach path is timed too).
    lrng = np.random.default_rng(2)
    books = [(lrng.normal(0.0, 300.0, d), lrng.uniform(10.0, 200.0, d), float(lrng.uniform(0.0, 2e5)))
             for _ in range(256)]
    limits = RiskLimits(max_position=2e5, max_gross_exposure=5e6, max_net_exposure=1e6, max_var=1.5e5)
    nbook = cycle(np.arange(len(books)))
    check_limits = RiskEngine(n_scenarios=100, registry=CollectorRegistry()).check_limits  # instrumented, as served

    def limit_check() -> None:
        qty, px, var = books[int(nbook())]
        check_limits(qty, px, limits, var=var)

    results["limit_check_50"] = summary(timed(limit_check, n))

    m = results["machine"]
    print(f"workloads benchmark: python {m['python']}, torch {m['torch']}, numpy {m['numpy']}, {m['cpus']} CPUs")
    print(f"{'figure':<44}{'n':>6}{'mean ms':>10}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}")
    labels = {
        "extract_batch1": "extract, batch 1, cache off, 1 torch thread",
        "extract_batch32_per_sample": "extract_batch 32, per sample",
        "extract_batch1_torch_threads_2": "extract, batch 1, 2 torch threads",
        "extract_cache_hit": "extract, warm cache hit",
        "fallback": "fallback extraction",
        "env_step": "env step (model path, cache off)",
        "agent_action": "agent act (actor MLP, 1 torch thread)",
        "trading_decision": "trading decision: act + env step",
        "mc_var_10k_x_50": "MC VaR 10K x 50 (workspace)",
        "mc_var_10k_x_50_naive": "MC VaR 10K x 50 (naive numpy)",
        "limit_check_50": "limit check, 50 assets",
    }
    for key, label in labels.items():
        s = results[key]
        assert isinstance(s, dict)
        print(f"{label:<44}{s['n']:>6}{s['mean_ms']:>10.3f}{s['p50_ms']:>10.3f}{s['p95_ms']:>10.3f}{s['p99_ms']:>10.3f}")
    print(f"answers behind the extract figures, by source: {sources}")
    agent_p95 = results["agent_action"]["p95_ms"]  # type: ignore[index]
    budget_ms = AGENT_BUDGET_SECONDS * 1000
    verdict = "within" if agent_p95 < budget_ms else "OVER"
    print(f"agent action p95 {agent_p95:.3f} ms vs budget < {budget_ms:g} ms: {verdict} "
          f"({agent_p95 / budget_ms:.1%} of the budget)")
    for label, key, budget in (("MC VaR 10K x 50", "mc_var_10k_x_50", VAR_BUDGET_MS),
                               ("limit check", "limit_check_50", LIMIT_CHECK_BUDGET_MS)):
        p95 = results[key]["p95_ms"]  # type: ignore[index]
        print(f"{label} p95 {p95:.3f} ms vs budget < {budget:g} ms: {'within' if p95 < budget else 'OVER'} "
              f"({p95 / budget:.1%} of the budget)")
    for label, key in (("model load (seeded weights)", "model_load_seeded"),
                       ("model load (weights file)", "model_load_weights_file")):
        ml = results[key]
        assert isinstance(ml, dict)
        worst = ml["max_s"]
        verdict = "within" if worst < MODEL_LOAD_BUDGET_SECONDS else "OVER"
        print(f"{label}: first {ml['first_s'] * 1000:.1f} ms, median {ml['median_s'] * 1000:.1f} ms of {ml['n']} "
              f"vs budget < {MODEL_LOAD_BUDGET_SECONDS:g} s: {verdict} (worst {worst / MODEL_LOAD_BUDGET_SECONDS:.1%} "
              "of the budget)")
    print(f"  (the service times the build after its imports; `import torch` in a fresh process took "
          f"{results['torch_import_fresh_process_s'] * 1000:.0f} ms more)")
    print(f"MC VaR speed-up over naive (p50 ratio): {results['mc_var_speedup_p50']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
