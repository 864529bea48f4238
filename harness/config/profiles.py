"""Open-loop arrival profiles: the schedule of *intended* start times.

Why open-loop: a closed-loop generator waits for a reply before sending the next request,
so a stalled target also stalls the measurement and the stall disappears from the numbers
(coordinated omission).  Every profile here is a pure function of its parameters (and a
seed); nothing in it ever looks at replies.

Model
-----
A profile is a piecewise-linear *rate* ``r(t)`` (requests per second) on ``[0, duration)``
seconds.  ``N(t) = ∫₀ᵗ r`` is the expected cumulative count.  Arrivals:

* ``arrival="uniform"`` (default, deterministic): request ``k`` (``k = 0, 1, 2, …``) is
  intended at the time ``N(t) = k + ½`` — the midpoint rule.  The ``½`` means that any
  interval ``[a, b)`` whose ``N(a)`` and ``N(b)`` are whole numbers holds *exactly*
  ``N(b) − N(a)`` arrivals (so 100 rps for 10 s is exactly 1,000 requests, 100 in every
  second), and a profile that starts at rate 0 does not fire a request at ``t = 0``.
  Within a linear piece ``N`` is quadratic, and the inverse is solved in closed form
  (numerically stable form ``τ = 2Δ / (r₀ + √(r₀² + 2aΔ))``).
* ``arrival="poisson"``: a non-homogeneous Poisson process with the same rate, by time
  change: ``N(t_k) = E₁ + … + E_k`` with ``Eᵢ ~ Exp(1)`` from a seeded numpy generator.

Units: public arguments and ``rate_at``/``expected_count``/``phases`` use **seconds**
(floats); the hot-loop schedule (:meth:`Profile.times`, :meth:`Profile.batches`) yields
**int nanoseconds from run start**, so the runner adds them to a ``perf_counter_ns()``
origin without float rounding.

Segments (for ``--workers N`` processes/pods, like k6 execution segments): worker ``i`` of
``n`` takes every request whose global ordinal ``k`` satisfies ``k % n == i`` (striding, not
contiguous time slices), so each worker carries ``1/n`` of every phase and the union of
the ``n`` segments is the whole schedule, exactly, ordinals and times alike.  Segments
nest: segment ``j`` of ``m`` of segment ``i`` of ``n`` is ordinals ``≡ i + n·j (mod n·m)``.

Limits: a rate is at most :data:`MAX_RATE` requests/s (far beyond what one machine's
generator sends: the harness measures ~20,000/s per process), a schedule holds at most
:data:`MAX_REQUESTS` requests, closed-loop users are at most :data:`MAX_VUS` (one thread
each), and every duration is at most 30 days
(:data:`harness.config.durations.MAX_DURATION_S`). Beyond them a profile is refused with
the field and the limit, before anything is scheduled.

Memory: ``times()``/``batches()`` generate the schedule lazily in numpy chunks (4,096 by
default), so a 24-hour run never materialises its millions of timestamps.
"""

from __future__ import annotations

import bisect
import inspect
import math
import random
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

import numpy as np

from harness.config.durations import format_duration, parse_duration
from harness.config.problems import MISSING, Problems, suggest

__all__ = [
    "NS_PER_S",
    "MAX_RATE",
    "MAX_REQUESTS",
    "MAX_VUS",
    "MAX_SPIKE_PERIODS",
    "ARRIVALS",
    "PROFILE_TYPES",
    "DEFAULT_STEPS",
    "ProfileError",
    "Phase",
    "Profile",
    "Schedule",
    "Users",
    "constant",
    "ramp",
    "spike",
    "step",
    "stages",
    "users",
    "from_spec",
]

NS_PER_S = 1_000_000_000
ARRIVALS = ("uniform", "poisson")
DEFAULT_STEPS: tuple[float, ...] = (0.25, 0.5, 1.0, 0.5)
_CHUNK = 4096
#: the highest rate (requests/s) a profile accepts
MAX_RATE = 1_000_000.0
#: the most requests one schedule may hold (a day at 115,000/s; 30 days at 3,800/s)
MAX_REQUESTS = 10_000_000_000
#: the most closed-loop virtual users (each is a thread or a task)
MAX_VUS = 10_000
#: the most periods of a spike profile (each period is two phases)
MAX_SPIKE_PERIODS = 100_000

class Schedule(Protocol):
    """What an arrival profile and closed-loop users both answer (the runner, the live
    view and the studies read any schedule through this, never by probing)."""

    kind: str

    @property
    def closed_loop(self) -> bool: ...

    def rate_at(self, t: float) -> float | None: ...             # None: closed loop

    def count(self, t0: float = 0.0, t1: float | None = None) -> int | None: ...

    def phases(self) -> list["Phase"]: ...

    def segment(self, index: int, count: int) -> "Schedule": ...

    def describe(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


class ProfileError(ValueError):
    """Invalid profile parameters; ``problems`` holds one ``"field: message"`` per problem."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class Phase:
    """A named stretch of the schedule, for annotations and per-phase arithmetic.

    Rates are this schedule's share (a segment's phases carry ``1/n`` of the whole rate).
    """

    name: str
    start_s: float
    end_s: float
    start_rate: float
    end_rate: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def start_ns(self) -> int:
        return round(self.start_s * NS_PER_S)

    @property
    def end_ns(self) -> int:
        return round(self.end_s * NS_PER_S)

    @property
    def expected_count(self) -> float:
        """Area under the (linear) rate over the phase."""
        return (self.start_rate + self.end_rate) / 2.0 * self.duration_s


# ----------------------------------------------------------------------------- validation


def _rate(p: Problems, path: str, value: Any, *, strict: bool = False) -> float | None:
    """A rate: a finite number >= 0 (> 0 with ``strict``) and at most :data:`MAX_RATE`."""
    r = p.number(path, value, strict=strict)
    if r is not None and r > MAX_RATE:
        p.add(path, f"must be at most {MAX_RATE:g} requests/s (beyond what a run can schedule; split the load "
                    f"over several generators with --segment), got {r:g}")
        return None
    return r


def _check_arrival(p: Problems, arrival: Any, seed: Any) -> None:
    if arrival not in ARRIVALS:
        p.add("arrival", f"must be one of {', '.join(ARRIVALS)}, got {arrival!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        p.add("seed", f"must be a non-negative integer, got {seed!r}")


# ----------------------------------------------------------------------------- profile


class Profile:
    """A piecewise-linear open-loop schedule (see the module docstring for the model).

    Build one with :func:`constant`, :func:`ramp`, :func:`spike`, :func:`step`,
    :func:`stages` or :func:`from_spec`; the constructor itself takes already-validated
    pieces ``(start_s, end_s, start_rate, end_rate)`` that tile ``[0, duration)``.
    """

    def __init__(
        self,
        kind: str,
        pieces: Sequence[tuple[float, float, float, float]],
        phase_names: Sequence[str],
        params: Mapping[str, Any],
        *,
        arrival: str = "uniform",
        seed: int | None = None,
        offset: int = 0,
        stride: int = 1,
    ) -> None:
        if not pieces:
            raise ProfileError(["profile: has no pieces"])
        if arrival not in ARRIVALS:
            raise ProfileError([f"arrival: must be one of {', '.join(ARRIVALS)}, got {arrival!r}"])
        if arrival == "poisson" and seed is None:
            # Fix a seed now so that every segment() of this object draws the same process.
            seed = int(np.random.SeedSequence().entropy % (2**63))
        self.kind = kind
        self.params: dict[str, Any] = dict(params)
        self.arrival = arrival
        self.seed = seed
        self.offset = offset
        self.stride = stride
        self._pieces = [tuple(map(float, pc)) for pc in pieces]
        self._phase_names = list(phase_names)
        ts = np.array([pc[0] for pc in self._pieces], dtype=np.float64)
        te = np.array([pc[1] for pc in self._pieces], dtype=np.float64)
        r0 = np.array([pc[2] for pc in self._pieces], dtype=np.float64)
        r1 = np.array([pc[3] for pc in self._pieces], dtype=np.float64)
        length = te - ts
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = np.where(length > 0, (r1 - r0) / np.where(length > 0, length, 1.0), 0.0)
        area = (r0 + r1) / 2.0 * length
        ce = np.cumsum(area)
        cs = np.concatenate(([0.0], ce[:-1]))
        self._ts, self._te, self._r0, self._slope = ts, te, r0, slope
        self._len, self._cs, self._ce = length, cs, ce
        self._ts_ns = np.rint(ts * NS_PER_S).astype(np.int64)
        self._ts_list = ts.tolist()
        self.duration: float = float(te[-1])
        self.duration_ns: int = round(self.duration * NS_PER_S)
        self._total = float(ce[-1])
        if not self._total <= MAX_REQUESTS:
            raise ProfileError([f"duration: {format_duration(self.duration)} at these rates schedules "
                                f"{self._total:.3g} requests, more than the {MAX_REQUESTS:.0e} one run may "
                                "(lower the rate or shorten the duration)"])
        # Deterministic arrivals k = 0..M-1 with k + ½ < N(duration).
        self._m_total = max(0, math.ceil(self._total - 0.5))

    # -- description -----------------------------------------------------------------
    @property
    def share(self) -> float:
        """Fraction of the whole schedule this (segment of a) profile carries."""
        return 1.0 / self.stride

    def to_dict(self) -> dict[str, Any]:
        """The spec this profile was built from (``type`` + params), JSON-serialisable."""
        out: dict[str, Any] = {"type": self.kind, **self.params}
        out["arrival"] = self.arrival
        if self.seed is not None:
            out["seed"] = self.seed
        if self.stride != 1:
            out["segment"] = {"offset": self.offset, "stride": self.stride}
        return out

    def describe(self) -> str:
        peak = float(max(self._r0.max(), (self._r0 + self._slope * self._len).max())) * self.share
        seg = f", segment {self.offset}/{self.stride}" if self.stride != 1 else ""
        return (
            f"{self.kind} for {format_duration(self.duration)}, peak {peak:g} rps, "
            f"{self.expected_count():g} requests expected ({self.arrival}{seg})"
        )

    def __repr__(self) -> str:
        return f"<Profile {self.describe()}>"

    # -- rate arithmetic -------------------------------------------------------------
    def _piece(self, t: float) -> int:
        j = bisect.bisect_right(self._ts_list, t) - 1
        return min(max(j, 0), len(self._ts_list) - 1)

    @property
    def closed_loop(self) -> bool:
        return False

    def rate_at(self, t: float) -> float:
        """Intended rate (requests/s) at ``t`` seconds; 0 outside ``[0, duration)``."""
        if t < 0 or t >= self.duration:
            return 0.0
        j = self._piece(t)
        return float(self._r0[j] + self._slope[j] * (t - self._ts[j])) * self.share

    def _cumulative(self, t: float) -> float:
        """Whole-schedule ``N(t)`` (not scaled by the segment share)."""
        if t <= 0:
            return 0.0
        if t >= self.duration:
            return self._total
        j = self._piece(t)
        tau = t - self._ts[j]
        return float(self._cs[j] + self._r0[j] * tau + self._slope[j] * tau * tau / 2.0)

    def expected_count(self, t0: float = 0.0, t1: float | None = None) -> float:
        """Area under the rate between ``t0`` and ``t1`` seconds (this schedule's share)."""
        if t1 is None:
            t1 = self.duration
        return (self._cumulative(t1) - self._cumulative(t0)) * self.share

    def count(self, t0: float = 0.0, t1: float | None = None) -> int:
        """Exact number of arrivals of this schedule intended in ``[t0, t1)`` seconds.

        Arithmetic for ``uniform`` arrivals; ``poisson`` has to walk the schedule.
        """
        if t1 is None:
            t1 = self.duration
        if self.arrival == "poisson":
            lo, hi = round(t0 * NS_PER_S), round(t1 * NS_PER_S)
            n = 0
            for b in self.batches():
                n += int(np.count_nonzero((b >= lo) & (b < hi)))
                if len(b) and b[-1] >= hi:
                    break
            return n
        k_lo = max(0, math.ceil(self._cumulative(t0) - 0.5)) if t0 > 0 else 0
        k_hi = self._m_total if t1 >= self.duration else max(0, math.ceil(self._cumulative(t1) - 0.5))
        return _count_congruent(k_lo, k_hi, self.offset, self.stride)

    def phases(self) -> list[Phase]:
        """Named phases (one per piece) with start/end in seconds and this share's rates."""
        s = self.share
        out = []
        for (t0, t1, r0, r1), name in zip(self._pieces, self._phase_names):
            out.append(Phase(name, t0, t1, r0 * s, r1 * s))
        return out

    # -- schedule --------------------------------------------------------------------
    def _solve(self, u: np.ndarray) -> np.ndarray:
        """Times (int ns) at which ``N(t) = u`` for sorted ``u`` in ``(0, N(duration))``."""
        j = np.searchsorted(self._ce, u, side="left")
        np.minimum(j, len(self._ce) - 1, out=j)
        d = u - self._cs[j]
        r = self._r0[j]
        disc = np.maximum(r * r + 2.0 * self._slope[j] * d, 0.0)
        tau = 2.0 * d / (r + np.sqrt(disc))
        np.minimum(tau, self._len[j], out=tau)
        t = self._ts_ns[j] + np.rint(tau * NS_PER_S).astype(np.int64)
        np.minimum(t, self.duration_ns - 1, out=t)
        return t

    def batches(self, size: int = _CHUNK) -> Iterator[np.ndarray]:
        """The schedule as non-decreasing int64 ns arrays of at most ``size`` elements."""
        for ks, ts in self._ordinal_batches(size):
            yield ts

    def _ordinal_batches(self, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if self.arrival == "uniform":
            first = self.offset
            step = self.stride
            n_total = _count_congruent(0, self._m_total, self.offset, self.stride)
            q = 0
            while q < n_total:
                n = min(size, n_total - q)
                ks = first + step * (q + np.arange(n, dtype=np.int64))
                yield ks, self._solve(ks.astype(np.float64) + 0.5)
                q += n
            return
        rng = np.random.default_rng(self.seed)
        carry = 0.0
        base = 0
        raw = max(size, 1) * self.stride if self.stride <= 64 else max(size, 4096)
        while True:
            e = np.cumsum(rng.standard_exponential(raw)) + carry
            carry = float(e[-1])
            ks = base + np.arange(raw, dtype=np.int64)
            base += raw
            keep = e < self._total
            if self.stride != 1:
                keep &= (ks - self.offset) % self.stride == 0
            if keep.any():
                yield ks[keep], self._solve(e[keep])
            if carry >= self._total:
                return

    def arrival_batches(self, size: int = _CHUNK) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(global ordinals, intended ns)`` as int64 array pairs of at most ``size``: what
        the executors read, so a backlog can be skipped a batch at a time."""
        return self._ordinal_batches(size)

    def times(self) -> Iterator[int]:
        """Intended start times, int ns from run start, non-decreasing, lazily generated."""
        for b in self.batches():
            yield from b.tolist()

    def arrivals(self) -> Iterator[tuple[int, int]]:
        """``(global ordinal, intended ns)`` pairs; the ordinal is stable across segments
        (useful as a request id or to seed a per-request payload)."""
        for ks, ts in self._ordinal_batches(_CHUNK):
            yield from zip(ks.tolist(), ts.tolist())

    def __iter__(self) -> Iterator[int]:
        return self.times()

    def segment(self, index: int, count: int) -> "Profile":
        """Worker ``index`` of ``count``: ordinals ``k`` with ``k % count == index`` (of this
        schedule's ordinals; segments nest).  The union over ``index`` is exactly this
        schedule."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"segment count must be an integer >= 1, got {count!r}")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
            raise ValueError(f"segment index must be in [0, {count}), got {index!r}")
        return Profile(
            self.kind,
            self._pieces,
            self._phase_names,
            self.params,
            arrival=self.arrival,
            seed=self.seed,
            offset=self.offset + self.stride * index,
            stride=self.stride * count,
        )


def _count_congruent(lo: int, hi: int, offset: int, stride: int) -> int:
    """#{k in [lo, hi) : k ≡ offset (mod stride)}."""
    if hi <= lo:
        return 0

    def upto(x: int) -> int:  # #{k in [0, x) : k ≡ offset}
        return 0 if x <= offset else (x - offset - 1) // stride + 1

    return upto(hi) - upto(lo)


# ----------------------------------------------------------------------------- builders


def constant(rate: float, duration: float | str, *, arrival: str = "uniform", seed: int | None = None) -> Profile:
    """``rate`` requests per second for ``duration``."""
    p = Problems()
    r = _rate(p, "rate", rate, strict=True)
    d = p.duration("duration", duration)
    _check_arrival(p, arrival, seed)
    p.raise_if_any(ProfileError)
    assert r is not None and d is not None
    return Profile(
        "constant", [(0.0, d, r, r)], ["steady"], {"rate": r, "duration": d}, arrival=arrival, seed=seed
    )


def ramp(
    from_rate: float,
    to_rate: float,
    ramp_duration: float | str,
    duration: float | str | None = None,
    *,
    arrival: str = "uniform",
    seed: int | None = None,
) -> Profile:
    """Linear change ``from_rate → to_rate`` over ``ramp_duration``, then hold ``to_rate``
    until ``duration`` (default: no hold)."""
    p = Problems()
    r0 = _rate(p, "from_rate", from_rate)
    r1 = _rate(p, "to_rate", to_rate)
    rd = p.duration("ramp_duration", ramp_duration)
    d = rd if duration is None else p.duration("duration", duration)
    _check_arrival(p, arrival, seed)
    if r0 is not None and r1 is not None and r0 == 0 and r1 == 0:
        p.add("to_rate", "from_rate and to_rate are both 0: the profile would send nothing")
    if rd is not None and d is not None and rd > d:
        p.add("ramp_duration", f"must be within duration ({format_duration(d)}), got {format_duration(rd)}")
    p.raise_if_any(ProfileError)
    assert r0 is not None and r1 is not None and rd is not None and d is not None
    pieces = [(0.0, rd, r0, r1)]
    names = ["ramp"]
    if d > rd:
        pieces.append((rd, d, r1, r1))
        names.append("hold")
    params = {"from_rate": r0, "to_rate": r1, "ramp_duration": rd, "duration": d}
    return Profile("ramp", pieces, names, params, arrival=arrival, seed=seed)


def spike(
    base_rate: float,
    spike_rate: float,
    spike_duration: float | str,
    period: float | str,
    duration: float | str,
    *,
    arrival: str = "uniform",
    seed: int | None = None,
) -> Profile:
    """Square wave: each ``period`` runs ``base_rate`` for ``period − spike_duration`` and
    then ``spike_rate`` for ``spike_duration`` (base first, so each spike hits a warm
    target).  A last partial period is cut at ``duration``.  Phases: ``base 1``,
    ``spike 1``, ``base 2``, …"""
    p = Problems()
    b = _rate(p, "base_rate", base_rate)
    s = _rate(p, "spike_rate", spike_rate, strict=True)
    sd = p.duration("spike_duration", spike_duration)
    per = p.duration("period", period)
    d = p.duration("duration", duration)
    _check_arrival(p, arrival, seed)
    if sd is not None and per is not None and sd >= per:
        p.add("spike_duration", f"must be shorter than period ({format_duration(per)}), got {format_duration(sd)}")
    elif sd is not None and per is not None and d is not None and per - sd >= d:
        p.add(
            "period",
            f"the first spike starts at {format_duration(per - sd)}, not within duration ({format_duration(d)})",
        )
    if per is not None and d is not None and d / per > MAX_SPIKE_PERIODS:
        p.add("period", f"{format_duration(d)} of {format_duration(per)} periods is more than {MAX_SPIKE_PERIODS:,} "
                        f"periods (each one is a phase), got {format_duration(per)}")
    p.raise_if_any(ProfileError)
    assert b is not None and s is not None and sd is not None and per is not None and d is not None
    pieces: list[tuple[float, float, float, float]] = []
    names: list[str] = []
    n_periods = math.ceil(d / per)
    for i in range(n_periods):
        t0 = i * per
        t_spike = min(t0 + per - sd, d)
        t1 = min(t0 + per, d)
        if t_spike > t0:
            pieces.append((t0, t_spike, b, b))
            names.append(f"base {i + 1}")
        if t1 > t_spike:
            pieces.append((t_spike, t1, s, s))
            names.append(f"spike {i + 1}")
    params = {"base_rate": b, "spike_rate": s, "spike_duration": sd, "period": per, "duration": d}
    return Profile("spike", pieces, names, params, arrival=arrival, seed=seed)


def step(
    target_rate: float | None = None,
    duration: float | str | None = None,
    steps: Sequence[float] = DEFAULT_STEPS,
    *,
    rates: Sequence[float] | None = None,
    arrival: str = "uniform",
    seed: int | None = None,
) -> Profile:
    """Equal-length constant steps over ``duration``: ``steps`` are fractions of
    ``target_rate`` (default ¼, ½, 1, ½), or ``rates`` gives the steps' rates directly."""
    p = Problems()
    d = p.duration("duration", MISSING if duration is None else duration)
    if duration is None:
        p.add("duration", "is required for a step profile")
    _check_arrival(p, arrival, seed)
    values: list[float] = []
    if rates is not None:
        if target_rate is not None:
            p.add("rates", "give either rates or target_rate (+ steps), not both")
        if isinstance(rates, (str, bytes)) or not isinstance(rates, Sequence) or not rates:
            p.add("rates", f"must be a non-empty list of rates, got {rates!r}")
        else:
            for i, r in enumerate(rates):
                v = _rate(p, f"rates[{i}]", r)
                if v is not None:
                    values.append(v)
    else:
        t = _rate(p, "target_rate", target_rate, strict=True) if target_rate is not None else None
        if target_rate is None:
            p.add("target_rate", "is required for a step profile (or give rates)")
        if isinstance(steps, (str, bytes)) or not isinstance(steps, Sequence) or not steps:
            p.add("steps", f"must be a non-empty list of fractions of target_rate, got {steps!r}")
        else:
            fr = [p.number(f"steps[{i}]", f) for i, f in enumerate(steps)]
            if t is not None and all(f is not None for f in fr):
                values = [t * f for f in fr if f is not None]
                if max(values) > MAX_RATE:
                    p.add("steps", f"the highest step is {max(values):g} requests/s, more than the {MAX_RATE:g} "
                                   "a run can schedule")
    if not p.items and values and max(values) <= 0:
        p.add("rates" if rates is not None else "steps", "every step has rate 0: the profile would send nothing")
    p.raise_if_any(ProfileError)
    assert d is not None
    n = len(values)
    pieces = [(d * i / n, d * (i + 1) / n, v, v) for i, v in enumerate(values)]
    names = [f"step {i + 1}" for i in range(n)]
    params: dict[str, Any] = {"duration": d}
    if rates is not None:
        params["rates"] = list(values)
    else:
        params["target_rate"] = float(target_rate)  # type: ignore[arg-type]
        params["steps"] = [float(f) for f in steps]
    return Profile("step", pieces, names, params, arrival=arrival, seed=seed)


def stages(
    stages: Sequence[Mapping[str, Any]],
    start_rate: float = 0.0,
    *,
    arrival: str = "uniform",
    seed: int | None = None,
) -> Profile:
    """k6 ``ramping-arrival-rate``: each ``{duration, target}`` moves the rate linearly from
    the previous stage's target (``start_rate`` for the first) to ``target`` over
    ``duration``.  A ``0s`` stage is an instant jump.  Optional ``name`` per stage."""
    p = Problems()
    r_prev = _rate(p, "start_rate", start_rate)
    _check_arrival(p, arrival, seed)
    pieces: list[tuple[float, float, float, float]] = []
    names: list[str] = []
    clean: list[dict[str, Any]] = []
    if isinstance(stages, (str, bytes, Mapping)) or not isinstance(stages, Sequence) or not stages:
        p.add("stages", f"must be a non-empty list of {{duration, target}}, got {stages!r}")
        p.raise_if_any(ProfileError)
    t = 0.0
    prev = r_prev if r_prev is not None else 0.0
    for i, st in enumerate(stages):
        path = f"stages[{i}]"
        if not isinstance(st, Mapping):
            p.add(path, f"must be a mapping {{duration, target}}, got {st!r}")
            continue
        for key in st:
            if key not in ("duration", "target", "name"):
                p.add(f"{path}.{key}", "unknown key" + _did_you_mean(str(key), ("duration", "target", "name")))
        for key in ("duration", "target"):
            if key not in st:
                p.add(f"{path}.{key}", "is required")
        d = p.duration(f"{path}.duration", st["duration"], allow_zero=True) if "duration" in st else None
        r = _rate(p, f"{path}.target", st["target"]) if "target" in st else None
        if d is None or r is None:
            continue
        name = str(st.get("name") or f"stage {i + 1}")
        if d > 0:
            pieces.append((t, t + d, prev, r))
            names.append(name)
        t += d
        prev = r
        item: dict[str, Any] = {"duration": d, "target": r}
        if "name" in st:
            item["name"] = name
        clean.append(item)
    if not p.items:
        if t <= 0:
            p.add("stages", "total duration must be > 0")
        elif sum((pc[2] + pc[3]) / 2 * (pc[1] - pc[0]) for pc in pieces) <= 0:
            p.add("stages", "every stage has rate 0: the profile would send nothing")
    p.raise_if_any(ProfileError)
    params = {"stages": clean, "start_rate": float(start_rate)}
    return Profile("stages", pieces, names, params, arrival=arrival, seed=seed)


# ----------------------------------------------------------------------------- closed loop


@dataclass(frozen=True)
class Users:
    """Closed-loop load: ``vus`` virtual users, each calling, waiting for the reply,
    thinking, and calling again.

    Kept because the origin documents use it, but it *is* subject to coordinated omission
    (a slow reply delays the next request), so the runner should measure its latency from
    actual start and say so.  User ``i`` (global id) starts at ``i · ramp_up / vus``
    seconds; think time is a constant or a uniform ``(min, max)`` range; a user stops after
    ``iterations`` calls or at ``duration``, whichever comes first.
    """

    vus: int
    duration: float | None = None
    ramp_up: float = 0.0
    think_time: float | tuple[float, float] = 0.0
    iterations: int | None = None
    ids: tuple[int, ...] | None = field(default=None)
    kind: str = field(default="users", init=False)

    @property
    def closed_loop(self) -> bool:
        return True

    def rate_at(self, t: float) -> None:
        """Closed loop: no schedule, so no intended rate (the users' replies set the pace)."""
        return None

    def count(self, t0: float = 0.0, t1: float | None = None) -> None:
        """Closed loop: how many calls is not known in advance."""
        return None

    @property
    def user_ids(self) -> tuple[int, ...]:
        return self.ids if self.ids is not None else tuple(range(self.vus))

    def start_offset_ns(self, user_id: int) -> int:
        return round(user_id * self.ramp_up / self.vus * NS_PER_S)

    def think_ns(self, rng: Any = None) -> int:
        """One think time in ns; ``rng`` (``random.Random`` or numpy Generator) for ranges."""
        tt = self.think_time
        if isinstance(tt, tuple):
            lo, hi = tt
            if rng is None:
                rng = random
            u = rng.uniform(lo, hi)
            return round(u * NS_PER_S)
        return round(tt * NS_PER_S)

    def phases(self) -> list[Phase]:
        out = []
        end = self.duration
        if self.ramp_up > 0:
            out.append(Phase("ramp-up", 0.0, self.ramp_up, 0.0, float(self.vus)))
        if end is not None and end > self.ramp_up:
            out.append(Phase("steady", self.ramp_up, end, float(self.vus), float(self.vus)))
        return out  # "rates" of a closed-loop phase are user counts

    def segment(self, index: int, count: int) -> "Users":
        """Users whose global id ``i`` has ``i % count == index``; the union is all users."""
        if count < 1 or not 0 <= index < count:
            raise ValueError(f"segment {index} of {count} is out of range")
        return replace(self, ids=tuple(i for i in self.user_ids if i % count == index))

    def describe(self) -> str:
        tt = self.think_time
        think = f"{tt[0]:g}-{tt[1]:g} s" if isinstance(tt, tuple) else f"{tt:g} s"
        parts = [f"{len(self.user_ids)} closed-loop users", f"think {think}"]
        if self.ramp_up:
            parts.append(f"ramp-up {format_duration(self.ramp_up)}")
        if self.duration is not None:
            parts.append(f"for {format_duration(self.duration)}")
        if self.iterations is not None:
            parts.append(f"{self.iterations} iterations each")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "users", "vus": self.vus, "ramp_up": self.ramp_up}
        out["think_time"] = list(self.think_time) if isinstance(self.think_time, tuple) else self.think_time
        if self.duration is not None:
            out["duration"] = self.duration
        if self.iterations is not None:
            out["iterations"] = self.iterations
        return out


def users(
    vus: int,
    duration: float | str | None = None,
    *,
    ramp_up: float | str = 0.0,
    think_time: float | str | Sequence[float | str] = 0.0,
    iterations: int | None = None,
) -> Users:
    """Validated :class:`Users`; durations accept ``"30s"``-style strings."""
    p = Problems()
    if isinstance(vus, bool) or not isinstance(vus, int) or vus < 1:
        p.add("vus", f"must be an integer >= 1, got {vus!r}")
    elif vus > MAX_VUS:
        p.add("vus", f"must be at most {MAX_VUS} (one thread or task each), got {vus}")
    d = None if duration is None else p.duration("duration", duration)
    ru = p.duration("ramp_up", ramp_up, allow_zero=True)
    tt: float | tuple[float, float] | None = None
    if isinstance(think_time, Sequence) and not isinstance(think_time, str):
        if len(think_time) != 2:
            p.add("think_time", f"must be a duration or a [min, max] pair, got {think_time!r}")
        else:
            lo = p.duration("think_time[0]", think_time[0], allow_zero=True)
            hi = p.duration("think_time[1]", think_time[1], allow_zero=True)
            if lo is not None and hi is not None:
                if lo > hi:
                    p.add("think_time", f"min {lo:g}s is greater than max {hi:g}s")
                tt = (lo, hi)
    else:
        tt = p.duration("think_time", think_time, allow_zero=True)
    if iterations is not None and (isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1):
        p.add("iterations", f"must be an integer >= 1, got {iterations!r}")
    if duration is None and iterations is None:
        p.add("duration", "give a duration or iterations (or both) so the users stop")
    if ru is not None and d is not None and ru > d:
        p.add("ramp_up", f"must be within duration ({format_duration(d)}), got {format_duration(ru)}")
    p.raise_if_any(ProfileError)
    assert ru is not None and tt is not None
    return Users(vus=vus, duration=d, ramp_up=ru, think_time=tt, iterations=iterations)


# ----------------------------------------------------------------------------- from spec


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    return suggest(word, choices, otherwise="expected")


def from_spec(spec: Mapping[str, Any], *, default_duration: float | str | None = None) -> Profile | Users:
    """Build a profile from a mapping such as ``{"type": "constant", "rate": 50}``.

    ``default_duration`` (the scenario's top-level duration) fills in ``duration`` for types
    that need one.  Every problem is collected into one :class:`ProfileError` whose entries
    name the field (``"rate: must be > 0, got -5"``); the scenario prefixes ``profile.``.
    """
    if not isinstance(spec, Mapping):
        raise ProfileError([f"profile: must be a mapping with a 'type', got {spec!r}"])
    kind = spec.get("type")
    if kind not in PROFILE_TYPES:
        hint = _did_you_mean(str(kind), tuple(PROFILE_TYPES)) if kind is not None else (
            f" (one of: {', '.join(PROFILE_TYPES)})"
        )
        raise ProfileError([f"type: {'is required' if kind is None else f'unknown profile type {kind!r}'}{hint}"])
    allowed = PROFILE_TYPES[kind]
    problems = [
        f"{key}: unknown key for a {kind} profile{_did_you_mean(str(key), allowed)}"
        for key in spec
        if key != "type" and key not in allowed
    ]
    params = {k: v for k, v in spec.items() if k in allowed}
    if "duration" in allowed and "duration" not in params and default_duration is not None:
        params["duration"] = default_duration
    for key in _REQUIRED[kind]:
        if key not in params:
            problems.append(f"{key}: is required for a {kind} profile")
            params[key] = MISSING
    try:
        built = _build(kind, params)
    except ProfileError as exc:
        # Every problem at once: the missing keys and whatever was wrong with the rest.
        seen = {q.split(":")[0] for q in problems}
        problems += [pr for pr in exc.problems if pr.split(":")[0] not in seen]
        raise ProfileError(problems) from None
    if problems:
        raise ProfileError(problems)
    return built


def _build(kind: str, params: Mapping[str, Any]) -> Profile | Users:
    return BUILDERS[kind](**params)


#: profile type -> its builder. The keys a spec may give and the ones it must give are read
#: from each builder's signature (one source: a new parameter is a new key).
BUILDERS: dict[str, Callable[..., Profile | Users]] = {
    "constant": constant, "ramp": ramp, "spike": spike, "step": step, "stages": stages, "users": users,
}


def _keys(builder: Callable[..., Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    params = list(inspect.signature(builder).parameters.values())
    return (tuple(q.name for q in params),
            tuple(q.name for q in params if q.default is inspect.Parameter.empty))


#: spec keys accepted by :func:`from_spec`, per ``type`` (besides ``type`` itself)
PROFILE_TYPES: dict[str, tuple[str, ...]] = {kind: _keys(b)[0] for kind, b in BUILDERS.items()}
_REQUIRED: dict[str, tuple[str, ...]] = {kind: _keys(b)[1] for kind, b in BUILDERS.items()}
