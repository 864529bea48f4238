"""Arrival-profile arithmetic: requests per second in every phase, segments, laziness."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from harness.config import profiles as P
from harness.config.profiles import NS_PER_S, ProfileError


def schedule(profile: P.Profile) -> np.ndarray:
    return np.fromiter(profile.times(), dtype=np.int64)


def per_second(profile: P.Profile) -> list[int]:
    ts = schedule(profile)
    return np.bincount(ts // NS_PER_S, minlength=math.ceil(profile.duration)).tolist()


def test_constant_exact_per_second_and_spacing():
    p = P.constant(100, 10)
    ts = schedule(p)
    assert len(ts) == 1000 == p.count()
    assert per_second(p) == [100] * 10
    assert ts[0] == 5_000_000  # midpoint rule: first arrival half an interval in
    assert set(np.diff(ts).tolist()) == {10_000_000}
    assert ts[-1] < p.duration_ns
    assert p.rate_at(3.2) == 100 and p.rate_at(10) == 0 and p.rate_at(-1) == 0
    assert p.expected_count(2, 4.5) == pytest.approx(250)


def test_step_quarter_half_full_half():
    p = P.step(100, 40)
    assert per_second(p) == [25] * 10 + [50] * 10 + [100] * 10 + [50] * 10
    phases = p.phases()
    assert [(ph.name, ph.start_s, ph.end_s, ph.start_rate) for ph in phases] == [
        ("step 1", 0, 10, 25),
        ("step 2", 10, 20, 50),
        ("step 3", 20, 30, 100),
        ("step 4", 30, 40, 50),
    ]
    for ph in phases:
        assert p.count(ph.start_s, ph.end_s) == ph.expected_count


def test_step_explicit_rates():
    p = P.step(None, 9, rates=[10, 0, 30])
    assert per_second(p) == [10, 10, 10, 0, 0, 0, 30, 30, 30]


def test_ramp_count_is_area_under_rate():
    p = P.ramp(0, 100, 10, 20)
    assert p.expected_count() == pytest.approx(0.5 * 100 * 10 + 100 * 10)
    assert len(schedule(p)) == 1500 == p.count()
    counts = per_second(p)
    # second i of the ramp holds the area of a trapezoid: 10*i + 5
    assert counts[:10] == [10 * i + 5 for i in range(10)]
    assert counts[10:] == [100] * 10
    assert [ph.name for ph in p.phases()] == ["ramp", "hold"]
    assert p.rate_at(5) == pytest.approx(50)


def test_ramp_down_and_fractional_areas():
    p = P.ramp(50, 10, 8)
    ts = schedule(p)
    assert len(ts) == p.count() == round(p.expected_count()) == 240
    assert np.all(np.diff(ts) >= 0)
    # any window: count within 1 of the area under the rate
    for a, b in [(0, 1.3), (2.7, 5.1), (7.5, 8)]:
        n = int(np.count_nonzero((ts >= a * NS_PER_S) & (ts < b * NS_PER_S)))
        assert abs(n - p.expected_count(a, b)) <= 1
        assert n == p.count(a, b)


def test_stages_integrate_like_k6_ramping_arrival_rate():
    p = P.stages(
        [
            {"duration": "10s", "target": 50},
            {"duration": "10s", "target": 50},
            {"duration": "0s", "target": 200},  # instant jump
            {"duration": "5s", "target": 200},
            {"duration": "10s", "target": 0, "name": "cool-down"},
        ],
        start_rate=0,
    )
    assert p.duration == 35
    assert p.expected_count() == pytest.approx(250 + 500 + 1000 + 1000)
    assert len(schedule(p)) == 2750 == p.count()
    counts = per_second(p)
    # second i of the first ramp holds 2.5 * (2i + 1) = 5i + 2.5 expected: 2 or 3 more than 5i
    assert all(5 * i + 2 <= counts[i] <= 5 * i + 3 for i in range(10))
    assert sum(counts[:10]) == 250
    assert counts[10:20] == [50] * 10
    assert counts[20:25] == [200] * 5
    assert sum(counts[25:]) == 1000
    assert [ph.name for ph in p.phases()] == ["stage 1", "stage 2", "stage 4", "cool-down"]
    assert p.rate_at(5) == pytest.approx(25)
    assert p.rate_at(30) == pytest.approx(100)


def test_spike_base_then_spike_each_period():
    p = P.spike(10, 100, 2, 10, 30)
    counts = per_second(p)
    assert counts == ([10] * 8 + [100] * 2) * 3
    names = [ph.name for ph in p.phases()]
    assert names == ["base 1", "spike 1", "base 2", "spike 2", "base 3", "spike 3"]
    assert p.count() == 3 * (80 + 200)


def test_spike_partial_last_period():
    p = P.spike(10, 100, 2, 10, 15)
    assert per_second(p) == [10] * 8 + [100] * 2 + [10] * 5
    assert [ph.name for ph in p.phases()][-1] == "base 2"


@pytest.mark.parametrize(
    "profile",
    [
        P.constant(97, 3),
        P.ramp(3, 71, 2.5, 4),
        P.spike(5, 40, 1, 3, 7),
        P.step(33, 4),
        P.stages([{"duration": 2, "target": 40}, {"duration": 1.5, "target": 3}], start_rate=7),
        P.constant(500, 2, arrival="poisson", seed=7),
        P.ramp(0, 300, 3, arrival="poisson", seed=3),
    ],
)
@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_segments_union_is_the_whole_schedule(profile, n):
    whole = list(profile.arrivals())
    parts = [list(profile.segment(i, n).arrivals()) for i in range(n)]
    assert sorted(itertools.chain.from_iterable(parts)) == sorted(whole)
    for i, part in enumerate(parts):
        assert all(k % n == i for k, _ in part)
        assert len(part) == profile.segment(i, n).count()
    sizes = [len(part) for part in parts]
    assert max(sizes) - min(sizes) <= 1 or profile.arrival == "poisson"
    seg = profile.segment(0, n)
    assert seg.rate_at(0.5) == pytest.approx(profile.rate_at(0.5) / n)
    assert seg.expected_count() == pytest.approx(profile.expected_count() / n)


def test_nested_segments_partition_too():
    p = P.constant(300, 1)
    whole = sorted(p.times())
    parts = [p.segment(i, 2).segment(j, 3) for i in range(2) for j in range(3)]
    assert sorted(itertools.chain.from_iterable(q.times() for q in parts)) == whole


def test_poisson_is_seeded_and_close_to_the_rate():
    a = P.constant(1000, 5, arrival="poisson", seed=42)
    b = P.constant(1000, 5, arrival="poisson", seed=42)
    c = P.constant(1000, 5, arrival="poisson", seed=43)
    ta, tb, tc = schedule(a), schedule(b), schedule(c)
    assert ta.tolist() == tb.tolist()
    assert ta.tolist() != tc.tolist()
    assert abs(len(ta) - 5000) < 5 * math.sqrt(5000)
    assert np.all(np.diff(ta) >= 0) and ta[-1] < a.duration_ns
    assert a.count(1, 3) == int(np.count_nonzero((ta >= 1 * NS_PER_S) & (ta < 3 * NS_PER_S)))
    unseeded = P.constant(10, 1, arrival="poisson")
    assert unseeded.seed is not None  # fixed at construction so segments agree


def test_times_is_lazy():
    p = P.constant(1_000_000, 3600)  # 3.6 billion arrivals: must not be materialised
    it = p.times()
    first = list(itertools.islice(it, 5))
    assert first == [500, 1500, 2500, 3500, 4500]
    assert p.count() == 3_600_000_000
    assert next(iter(p.batches(size=16))).size == 16


def test_from_spec_builds_every_type():
    assert P.from_spec({"type": "constant", "rate": 5, "duration": "2s"}).count() == 10
    assert P.from_spec({"type": "constant", "rate": 5}, default_duration=3).count() == 15
    assert P.from_spec({"type": "ramp", "from_rate": 0, "to_rate": 10, "ramp_duration": "2s"}).count() == 10
    assert P.from_spec(
        {"type": "spike", "base_rate": 1, "spike_rate": 9, "spike_duration": 1, "period": 2, "duration": 4}
    ).count() == 20
    assert P.from_spec({"type": "step", "target_rate": 8, "duration": "4s"}).count() == 2 + 4 + 8 + 4
    assert P.from_spec({"type": "stages", "stages": [{"duration": "2s", "target": 10}]}).count() == 10
    u = P.from_spec({"type": "users", "vus": 4, "ramp_up": "2s", "think_time": ["10ms", "20ms"]}, default_duration=10)
    assert isinstance(u, P.Users) and u.duration == 10 and u.think_time == (0.01, 0.02)
    assert P.constant(5, 2).to_dict() == {"type": "constant", "rate": 5.0, "duration": 2.0, "arrival": "uniform"}


@pytest.mark.parametrize(
    "spec, expected",
    [
        ({"type": "constant", "rate": -5, "duration": "10s"}, ["rate: must be > 0, got -5"]),
        ({"type": "constant", "rate": 5, "duration": "0s"}, ["duration: must be > 0, got '0s'"]),
        ({"type": "constnat", "rate": 5}, ["type: unknown profile type 'constnat' (did you mean 'constant'?)"]),
        (
            {"type": "constant", "rat": 5, "duration": 1},
            ["rat: unknown key for a constant profile (did you mean 'rate'?)", "rate: is required for a constant profile"],
        ),
        (
            {"type": "ramp", "from_rate": 1, "to_rate": 5, "ramp_duration": "2m", "duration": "1m"},
            ["ramp_duration: must be within duration (1m), got 2m"],
        ),
        (
            {"type": "ramp", "from_rate": 0, "to_rate": 0, "ramp_duration": 5},
            ["to_rate: from_rate and to_rate are both 0: the profile would send nothing"],
        ),
        (
            {"type": "spike", "base_rate": 1, "spike_rate": 5, "spike_duration": 10, "period": 10, "duration": 60},
            ["spike_duration: must be shorter than period (10s), got 10s"],
        ),
        (
            {"type": "stages", "stages": [{"duration": "1s", "targt": 3}]},
            ["stages[0].targt: unknown key (did you mean 'target'?)", "stages[0].target: is required"],
        ),
        ({"type": "step", "duration": 4}, ["target_rate: is required for a step profile (or give rates)"]),
        ({"type": "step", "duration": 4, "target_rate": 10, "steps": [0.5, -1]}, ["steps[1]: must be >= 0, got -1"]),
        ({"type": "constant", "rate": 5, "duration": 1, "arrival": "random"}, ["arrival: must be one of uniform, poisson, got 'random'"]),
        ({"type": "users", "vus": 0}, ["vus: must be an integer >= 1, got 0", "duration: give a duration or iterations (or both) so the users stop"]),
    ],
)
def test_validation_messages_name_the_field(spec, expected):
    with pytest.raises(ProfileError) as info:
        P.from_spec(spec)
    assert info.value.problems == expected


def test_users_closed_loop_description():
    u = P.users(10, "1m", ramp_up="10s", think_time="100ms", iterations=50)
    assert u.start_offset_ns(0) == 0 and u.start_offset_ns(5) == 5 * NS_PER_S
    assert u.think_ns() == 100_000_000
    assert [ph.name for ph in u.phases()] == ["ramp-up", "steady"]
    segs = [u.segment(i, 3) for i in range(3)]
    assert sorted(itertools.chain.from_iterable(s.user_ids for s in segs)) == list(range(10))
    assert u.to_dict()["iterations"] == 50
    with pytest.raises(ProfileError, match="ramp_up: must be within duration"):
        P.users(2, "5s", ramp_up="10s")


@pytest.mark.parametrize("arrival", ["uniform", "poisson"])
def test_arrival_batches_are_the_arrivals_in_array_pairs(arrival):
    profile = P.ramp(10, 500, "3s", "4s", arrival=arrival, seed=5).segment(1, 3)
    pairs = [(k, t) for ks, ts in profile.arrival_batches(size=100) for k, t in zip(ks.tolist(), ts.tolist())]
    assert pairs == list(profile.arrivals()) and len(pairs) == profile.count()
