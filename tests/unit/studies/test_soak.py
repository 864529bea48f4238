"""Soak: a leak verdict that holds both ways (flat noise is not a leak, a random walk is
not a leak, a linear leak is), a minimum duration, the per-request budget as the gate;
and the harness's own memory stays bounded on long runs."""

from __future__ import annotations

import collections
import json
import threading

import numpy as np
import pytest

from tests.support import targets_capacity
from harness.engine.threads import ThreadExecutor
from harness.record.recorder import Recorder
from harness.run.resources import ResourceSampler
from harness.run.runner import Run, RunOptions
from harness.config.scenario import scenario_from_dict
from harness.cli.soak import handle as cmd_soak
from harness.studies.soak import (BUDGET_BYTES_PER_REQUEST, MIB, analyze, fit_increments, fit_trend,
                                  latency_stability, leak_verdict, soak_exit_code)
from harness.result.schema import write_result

SEEDS = range(60)


def result_of(rss, rps: float = 20.0, p95=None) -> dict:
    """A result holding one RSS sample a second (and, optionally, per-second p95s)."""
    n = len(rss)
    res = {"scenario": {"duration": float(n)}, "summary": {"all": {"count": int(rps * n)}},
           "resources": {"samples": [{"t_s": float(i), "process_rss_bytes": float(v)} for i, v in enumerate(rss)]}}
    if p95 is not None:
        res["timeseries"] = [{"start_s": i, "end_s": i + 1, "p95_ms": float(v), "completed": rps}
                             for i, v in enumerate(p95)]
    return res


def flat(seed: int, n: int = 60, noise: float = 2 * MIB) -> np.ndarray:
    return 300 * MIB + np.random.default_rng(seed).normal(0, noise, n)


def walk(seed: int, n: int = 600, step: float = 2 * MIB) -> np.ndarray:
    return 300 * MIB + np.cumsum(np.random.default_rng(seed).normal(0, step, n))


def linear(seed: int, bytes_per_s: float, n: int = 30, noise: float = 1 * MIB) -> np.ndarray:
    return 300 * MIB + bytes_per_s * np.arange(n) + np.random.default_rng(seed).normal(0, noise, n)


def verdicts(series, **kw) -> collections.Counter:
    return collections.Counter(leak_verdict(result_of(s, **kw))["verdict"] for s in series)


def test_levels_fit_recovers_slope_and_white_noise_error():
    rng = np.random.default_rng(1)
    t = np.arange(200.0)
    tr = fit_trend(t, 5.0 + 0.5 * t + rng.normal(0, 1.0, t.size))
    assert tr["slope"] == pytest.approx(0.5, abs=3 * tr["stderr"])
    # white noise: the HAC error is close to the OLS one, sigma / sqrt(Sxx)
    assert tr["stderr"] == pytest.approx(1.0 / np.sqrt(((t - t.mean()) ** 2).sum()), rel=0.35)
    assert fit_trend([1, 2], [3, 4]) is None and fit_increments([1, 2], [3, 4]) is None


def test_flat_noise_is_flat_never_a_leak():
    c = verdicts([flat(s) for s in SEEDS])
    assert c["leak"] == 0 and c["flat"] >= 0.9 * len(SEEDS), c
    # a long run too
    c = verdicts([flat(s, n=900) for s in range(20)])
    assert c == {"flat": 20}, c


def test_random_walk_is_never_a_leak():
    # steps of 2 MiB/s at 1 request/s: the drift's interval (± ~0.2 MB/s) straddles the 100 kB/s budget
    c = verdicts([walk(s) for s in SEEDS], rps=1.0)
    assert c["leak"] == 0 and c["inconclusive"] >= 0.6 * len(SEEDS), c
    # why the increments are needed: on a walk, the level fit's interval is far too narrow
    v = leak_verdict(result_of(walk(3), rps=1.0))
    inc = v["stderr_increments_bytes_per_s"]
    assert v["stderr_bytes_per_s"] < inc
    assert v["interval_bytes_per_s"][1] - v["interval_bytes_per_s"][0] >= 2 * 1.9 * inc


def test_random_walk_never_leaks_against_a_per_hour_tolerance_either():
    c = collections.Counter(leak_verdict(result_of(walk(s, step=0.5 * MIB), rps=1000.0),
                                         tolerance_bytes_per_hour=50 * MIB)["verdict"] for s in SEEDS)
    assert c["leak"] <= 2 and c["inconclusive"] >= 0.8 * len(SEEDS), c   # ~2.5 % one-sided at most


def test_one_step_is_not_a_leak():
    # an allocation that stays (a cache filled once): +30 MiB mid-run, at a rate whose budget is 0.2 MB/s
    def stepped(seed):
        rss = flat(seed, n=60, noise=0.3 * MIB)
        rss[35:] += 30 * MIB
        return rss
    c = verdicts([stepped(s) for s in SEEDS], rps=2.0)
    assert c["leak"] == 0 and c["inconclusive"] >= 0.9 * len(SEEDS), c


def test_linear_leak_is_a_leak():
    # 200 kB per call at 20 rps = 4 MB/s, twice the budget, in a 30 s run
    c = verdicts([linear(s, 200_000 * 20) for s in SEEDS])
    assert c == {"leak": len(SEEDS)}, c
    v = leak_verdict(result_of(linear(0, 200_000 * 20, n=120)))
    assert v["bytes_per_request"]["slope"] == pytest.approx(200_000, rel=0.05)
    assert v["by_request"] == "leak" and v["gate"] == "bytes per request"
    # the same leak on a random walk of 1 MiB steps: still a leak
    noisy = [linear(s, 200_000 * 20) + np.cumsum(np.random.default_rng(s + 99).normal(0, MIB, 30)) for s in SEEDS]
    assert verdicts(noisy)["leak"] >= 0.9 * len(SEEDS)


def test_too_short_is_inconclusive_and_says_how_long():
    v = leak_verdict(result_of(linear(0, 10 * MIB, n=12)))   # a huge leak, but 12 s
    assert v["verdict"] == "inconclusive" and v["too_short"]
    assert v["run_at_least_s"] >= 25 and "run at least" in v["reason"]
    v = leak_verdict(result_of(flat(0, n=20)))
    assert v["verdict"] == "inconclusive" and v["too_short"]


def test_warmup_is_excluded():
    # +40 MiB in the first 10 s (caches, arenas), flat after: flat on a 60 s run
    rss = flat(1, n=60, noise=0.2 * MIB)
    rss[:10] -= np.linspace(40 * MIB, 0, 10)
    v = leak_verdict(result_of(rss, rps=2.0))
    assert v["verdict"] == "flat" and v["warmup_s"] >= 10, v["reason"]
    assert leak_verdict(result_of(rss, rps=2.0), warmup_fraction=0.0, min_warmup_s=0.0)["verdict"] != "flat"


def test_budget_gates_and_the_per_hour_tolerance_only_when_given():
    # 40 KiB/s at 20 rps = 2 KiB/request: far inside the 100 kB budget, but 140 MiB/h
    rss = linear(0, 40 * 1024, n=600, noise=0.1 * MIB)
    v = leak_verdict(result_of(rss))
    assert v["verdict"] == "flat" and v["by_time"] is None and "per hour" not in v["gate"]
    v = leak_verdict(result_of(rss), tolerance_bytes_per_hour=50 * MIB)
    assert v["by_request"] == "flat" and v["by_time"] == "leak" and v["verdict"] == "leak"
    # no requests and no per-hour tolerance: nothing to judge against
    assert leak_verdict(result_of(rss, rps=0.0))["verdict"] == "inconclusive"
    assert BUDGET_BYTES_PER_REQUEST == 100_000


def test_inconclusive_says_how_much_longer():
    # 150 kB/request with heavy noise: straddles the 100 kB budget on 30 s
    v = leak_verdict(result_of(linear(2, 150_000 * 5, n=30, noise=4 * MIB), rps=5.0))
    if v["verdict"] == "inconclusive":
        assert v["run_at_least_s"] > 30 and "run ~" in v["reason"]
    else:
        assert v["verdict"] == "leak"


def test_latency_stability():
    rng = np.random.default_rng(0)
    t = np.arange(600)
    assert latency_stability(result_of(flat(0, 600), p95=30 + rng.normal(0, 1, 600)))["verdict"] == "stable"
    drifting = result_of(flat(0, 600), p95=30 + 0.1 * t + rng.normal(0, 1, 600))  # 6 ms/min
    assert latency_stability(drifting)["verdict"] == "drifting"
    assert latency_stability(result_of(flat(0, 5), p95=[1] * 5))["verdict"] == "inconclusive"


def test_exit_codes():
    leak = analyze(result_of(linear(0, 200_000 * 20, n=60), p95=[30.0] * 60))
    assert leak["memory"]["verdict"] == "leak" and int(soak_exit_code(leak)) == 99
    short = analyze(result_of(flat(0, 10), p95=[30.0] * 10))
    assert int(soak_exit_code(short)) == 0 and int(soak_exit_code(short, strict=True)) == 99


@pytest.mark.slow  # a real 7 s run
def test_real_leaky_target_is_found(tmp_path, capsys):
    """256 KiB kept per call at 25 rps: RSS must grow ~6.25 MiB/s, and the verdict say leak."""
    targets_capacity.leak_reset()
    sc = scenario_from_dict({"name": "leaky", "target": "tests.support.targets_capacity:leaky", "duration": "7s",
                             "profile": {"type": "constant", "rate": 25}, "thresholds": {}}, env={})
    try:
        result = Run(sc, RunOptions(metrics_port=None, progress="off", install_signal_handlers=False)).execute()
    finally:
        targets_capacity.leak_reset()
    short = dict(min_samples=4, min_duration_s=3.0, min_warmup_s=1.0)
    v = leak_verdict(result, **short)
    assert v["verdict"] == "leak", v
    assert v["slope_bytes_per_s"] == pytest.approx(25 * 256 * 1024, rel=0.35)
    assert leak_verdict(result)["verdict"] == "inconclusive"  # 7 s is below the default minimum
    path = write_result(json.loads(json.dumps(result)), tmp_path / "leaky.json")
    args = type("A", (), dict(result=str(path), tolerance_mib_per_hour=None, budget_bytes_per_request=1e5,
                             warmup_fraction=0.2, min_warmup_s=1.0, min_duration_s=3.0, min_samples=4,
                             strict=False))()
    assert cmd_soak(args) == 99
    assert "memory: LEAK" in capsys.readouterr().out
    assert analyze(result, **short)["memory"]["verdict"] == "leak"


def test_recorder_memory_is_bounded_by_count():
    """Hours of 1 s windows, each with a wide latency spread: the windows kept (and their
    bytes) stop growing at ``max_windows``; the counts stay exact."""
    rec = Recorder(max_windows=64, background_flush=False)
    sizes = {}
    lat = [10_000, 200_000, 5_000_000, 80_000_000]  # 10 µs .. 80 ms: a wide dense span per window
    for s in range(64 * 16):
        t = s * 1_000_000_000
        for k, d in enumerate(lat):
            rec.record("x", "ok", t + k, t + k, t + k + d)
        if s + 1 in (64, 64 * 4, 64 * 16):
            rec.flush()
            sizes[s + 1] = rec.memory_bytes()
    wins = rec.windows()
    assert len(wins) <= 64 and wins[-1]["end_s"] >= 64 * 16 and sum(w["ok"] for w in wins) == 4 * 64 * 16
    assert sizes[64 * 16] <= 1.25 * sizes[64] and sizes[64 * 4] <= 1.25 * sizes[64], sizes
    sampler = ResourceSampler(max_samples=50)
    for _ in range(400):
        sampler.sample()
    assert len(sampler.samples) <= 50
    assert sampler.samples[0]["t_s"] <= sampler.samples[-1]["t_s"]


def test_recorder_folds_on_its_own_thread_not_the_recording_ones():
    """Folding allocates ~100 kB temporaries: done by 32 workers, each worker's malloc arena
    grows to that mark (RSS crept up on a no-op target). It runs on one flusher thread."""
    rec = Recorder(flush_every=16)
    folded_by = set()
    real = rec._flush_all_locked

    def spy():
        folded_by.add(threading.current_thread().name)
        real()

    rec._flush_all_locked = spy

    def writer():
        for k in range(32):  # 96 records in all: past flush_every (16), below the inline limit (8 x 16)
            rec.record("x", "ok", k, k, k + 1000)

    workers = [threading.Thread(target=writer, name=f"writer-{i}") for i in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    done = threading.Event()
    for _ in range(200):  # the flusher wakes at once; wait on its work, not on a clock
        if "lbh-recorder-flush" in folded_by:
            done.set()
            break
        done.wait(0.01)
    assert done.is_set(), folded_by
    assert not any(name.startswith("writer") for name in folded_by), folded_by
    assert rec.counts()["ok"] == 3 * 32


def test_thread_executor_generates_the_schedule_on_one_thread():
    made_on = set()

    def schedule():
        for b in range(6):
            made_on.add(threading.current_thread().name)
            ks = np.arange(b * 50, (b + 1) * 50, dtype=np.int64)
            yield ks, np.zeros(50, dtype=np.int64)

    rec = Recorder()
    ex = ThreadExecutor(schedule(), lambda k: ("x", lambda: None, ()), rec, threads=8, timeout_s=5.0)
    ex.run()
    assert rec.counts()["ok"] == 300
    assert made_on == {"lbh-schedule"}, made_on
