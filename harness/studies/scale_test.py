"""``harness scale-test``: drive a ramp against a Service while watching its HPA scale.

The load runs in-process (:class:`harness.run.runner.Run`, open loop, the usual recorder and
verdict); from the run's ``started`` event (:mod:`harness.events`) a sampler thread reads,
every ``--interval``, the ``autoscaling/v2`` HorizontalPodAutoscaler, the ``apps/v1``
Deployment it scales and that Deployment's Pods through the Kubernetes API
(:mod:`harness.studies.kube`).  Each sample joins the load side (the
offered rate, the achieved rate since the previous sample, the p95 of the last complete
recorder window) with the cluster side (replicas desired / current / ready / updated /
available, each HPA metric's current value against its target), so the timeline shows
cause and effect on one clock: the run's elapsed seconds.

Verdicts, computed from the timeline (see :func:`analyse`):

* **time to scale up**: from the first sample where an HPA metric is above its target to
  the first sample where ``desiredReplicas`` exceeds its initial value — the replica count
  read *before* the run (the Deployment's ``spec.replicas`` at preflight), not the first
  sample's, which may already show a scale-up that happened in the first interval; fails when it is
  over ``--max-scale-up-seconds`` (default 300 s: "time to scale up < 5 min"), when no
  metric ever crossed its target (the ramp did not test scaling) or when the HPA never
  scaled up after the crossing;
* **p95 recovery**: from the first sample with p95 (of the last complete 1 s window) over
  ``--budget-ms`` to the sample from which it stays under budget to the end; every episode
  over budget is listed (gated only with ``--max-recovery-seconds``);
* **peak replicas** (desired, current, ready);
* **throughput per replica**: the achieved (ok) rate per ready replica over the last
  intervals at the final replica count, against the same over the last intervals at the
  initial count before more replicas were ready (under a ramp: the most one replica took),
  and their ratio, the scaling efficiency (gated only with ``--min-efficiency``).

* **time to scale down** (with ``--watch-scale-down DURATION``): after the load the
  sampler goes on until the desired and ready replicas are back to their initial count,
  or for at most DURATION; the time from the load's end to each (gated only with
  ``--max-scale-down-seconds``). The HPA's default scale-down stabilization window is
  300 s, so watch a little longer than that (or than your ``behavior.scaleDown``).

Sampling resolution is the interval: each time is exact to ± one interval.

Exit code (:class:`harness.exitcodes.ExitCode`): the harness's own (99 thresholds, 98
invalid generator, 105 interrupted) if it is not 0, else THRESHOLDS_FAILED (99) when a
gated scale verdict fails; USAGE (2) for usage errors (no kubeconfig, HPA or Deployment not
found, RBAC forbids a read, a non-HTTP target). The command is :mod:`harness.cli.scale_test`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, TextIO, Tuple

from harness.config import library
from harness.config.scenario import Scenario, ScenarioError, scenario_from_dict
from harness.events import RunHandle, RunStarted
from harness.exitcodes import ExitCode
from harness.result.schema import Result
from harness.run.runner import Run, RunOptions
from harness.run.service import served
from harness.studies.kube import HpaStatus, Kube, KubeError, KubeUnavailable

__all__ = [
    "ScaleTestConfig",
    "Sampler",
    "Preflight",
    "preflight",
    "analyse",
    "run_scale_test",
    "build_scenario",
    "format_sample",
    "format_verdicts",
    "SCALE_SCHEMA",
    "DEFAULT_DURATION",
    "DEFAULT_FROM_RATE",
    "DEFAULT_TO_RATE",
]

SCALE_SCHEMA = "harness.studies.scale_test/1"

DEFAULT_DURATION = "10m"
DEFAULT_FROM_RATE = 5.0
DEFAULT_TO_RATE = 100.0
END_SAMPLES = 3           # samples under load averaged for the end throughput per replica


@dataclass
class ScaleTestConfig:
    hpa: str
    namespace: str
    deployment: Optional[str] = None      # None: the HPA's scaleTargetRef
    interval_s: float = 5.0
    budget_ms: float = 100.0
    max_scale_up_s: float = 300.0
    max_recovery_s: Optional[float] = None
    min_efficiency: Optional[float] = None
    list_pods: bool = True
    watch_down_s: float = 0.0              # after the load: sample until replicas are back, at most this
    max_scale_down_s: Optional[float] = None


@dataclass
class Preflight:
    hpa: HpaStatus
    deployment: str
    selector: Optional[str]
    #: replicas before any load (the Deployment's spec.replicas, else the HPA's current/desired)
    initial_replicas: Optional[int] = None
    #: ready replicas before any load
    initial_ready: Optional[int] = None

    @property
    def baseline(self) -> Optional[Tuple[int, int]]:
        """``(replicas, ready)`` before the run, for :func:`analyse`; None when unknown."""
        if self.initial_replicas is None:
            return None
        return self.initial_replicas, int(self.initial_ready if self.initial_ready is not None
                                          else self.initial_replicas)


# ----------------------------------------------------------------------------- cluster side


def preflight(kube: Kube, cfg: ScaleTestConfig) -> Preflight:
    """Read every object once before any load: a missing object or a forbidden read is a
    usage error now, not a timeline full of errors later.  Raises :class:`KubeError`."""
    try:
        hpa = kube.hpa_status(cfg.hpa, cfg.namespace)
        deployment = cfg.deployment
        if deployment is None:
            ref = hpa.scale_target
            if ref.get("kind") != "Deployment" or not ref.get("name"):
                raise KubeError(f"HorizontalPodAutoscaler {cfg.hpa!r} in namespace {cfg.namespace!r} scales "
                                f"{ref.get('kind')} {ref.get('name')!r}, not a Deployment: pass --deployment")
            deployment = str(ref["name"])
        dep = kube.deployment_status(deployment, cfg.namespace)
        if cfg.list_pods:
            kube.list_pods(dep.selector, cfg.namespace)
    except KubeUnavailable as exc:
        raise KubeError(f"cannot reach the Kubernetes API ({kube.source}): {exc}") from None
    if not hpa.metrics:
        raise KubeError(f"HorizontalPodAutoscaler {cfg.hpa!r} in namespace {cfg.namespace!r} has no spec.metrics "
                        "(is it autoscaling/v2 with metrics?)")
    before = next((int(v) for v in (dep.spec_replicas, hpa.current_replicas, hpa.desired_replicas) if v is not None),
                  None)
    return Preflight(hpa=hpa, deployment=deployment, selector=dep.selector, initial_replicas=before,
                     initial_ready=dep.ready)


class Sampler:
    """Polls the HPA, the Deployment and its Pods every ``interval_s`` of the run's clock,
    from :meth:`start` (the run's ``started`` event) to :meth:`stop`."""

    def __init__(self, kube: Kube, cfg: ScaleTestConfig, pre: Preflight, *,
                 stream: Optional[TextIO] = None) -> None:
        self.kube = kube
        self.cfg = cfg
        self.pre = pre
        self.stream = stream
        self.timeline: List[Dict[str, Any]] = []
        self._run: Optional[RunHandle] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._prev_counts: Tuple[float, int, int] = (0.0, 0, 0)

    @property
    def started(self) -> bool:
        """Whether the run started (and so the sampler with it)."""
        return self._run is not None

    def on_started(self, event: RunStarted) -> None:
        """The ``started`` listener: sample alongside ``event.run``."""
        self.start(event.run)

    def start(self, run: RunHandle) -> "Sampler":
        self._run = run
        self._thread = threading.Thread(target=self._loop, name="lbh-scale-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self, final: bool = True) -> None:
        """Stop polling; with ``final``, take one last sample (the state as the load ends)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.kube.request_timeout_s * 3 + 5)
        if final and self._run is not None:
            self._take(after_load=True)

    def watch_down(self, seconds: float, back_to: int) -> str:
        """After the load: sample every interval until the desired and ready replicas are
        back to ``back_to``, or ``seconds`` passed. Returns ``"scaled_down"``, ``"timeout"``
        or ``"interrupted"`` (Ctrl-C ends the watch, not the result)."""
        assert self._run is not None
        end = self._run.elapsed_s() + seconds
        try:
            while True:
                s = self._take(after_load=True, cooldown=True)
                if (not s.get("error") and s.get("desired_replicas") is not None
                        and int(s["desired_replicas"]) <= back_to and int(s.get("ready_replicas") or 0) <= back_to):
                    return "scaled_down"
                now = self._run.elapsed_s()
                if now >= end:
                    return "timeout"
                time.sleep(min(self.cfg.interval_s, end - now))
        except KeyboardInterrupt:
            return "interrupted"

    def _loop(self) -> None:
        run = self._run
        assert run is not None
        k = 0
        while not self._stop.is_set():
            due = k * self.cfg.interval_s
            if due >= run.scenario.duration:
                return   # the sample after the load (stop(final=True)) closes the timeline
            wait = due - run.elapsed_s()
            if wait > 0 and self._stop.wait(wait):
                return
            if run.finished:
                return
            self._take(after_load=False)
            k += 1
            # a slow API may make us miss slots: skip to the next one in the future
            k = max(k, int(run.elapsed_s() // self.cfg.interval_s) + 1)

    # -- one sample -------------------------------------------------------------------

    def _load_side(self, t: float) -> Dict[str, Any]:
        run = self._run
        assert run is not None
        rec = run.recorder
        scenario = run.scenario
        offered = None
        if not scenario.closed_loop:   # virtual users have no arrival rate
            try:
                offered = float(scenario.profile.rate_at(t)) if t < scenario.duration else 0.0
            except Exception:
                offered = None
        out: Dict[str, Any] = {"offered_rps": None if offered is None else round(offered, 3),
                               "achieved_rps": None, "error_rps": None, "ok_total": None, "p95_ms": None,
                               "p95_window_s": None}
        if rec is None:
            return out
        counts = rec.counts()
        ok = counts.get("ok", 0)
        bad = counts.get("error", 0) + counts.get("timeout", 0)
        t_prev, ok_prev, bad_prev = self._prev_counts
        if t > t_prev:
            out["achieved_rps"] = round((ok - ok_prev) / (t - t_prev), 3)
            out["error_rps"] = round((bad - bad_prev) / (t - t_prev), 3)
        self._prev_counts = (t, ok, bad)
        out["ok_total"] = ok
        complete = [w for w in rec.windows() if w["end_s"] <= t + 1e-9]
        if complete:
            last = complete[-1]
            out["p95_ms"] = None if last["p95_ms"] is None else round(last["p95_ms"], 3)
            out["p95_window_s"] = [last["start_s"], last["end_s"]]
        return out

    def _cluster_side(self) -> Dict[str, Any]:
        cfg, kube = self.cfg, self.kube
        hpa = kube.hpa_status(cfg.hpa, cfg.namespace)
        dep = kube.deployment_status(self.pre.deployment, cfg.namespace)
        out: Dict[str, Any] = {
            "desired_replicas": hpa.desired_replicas,
            "current_replicas": hpa.current_replicas,
            "spec_replicas": dep.spec_replicas,
            "ready_replicas": dep.ready,
            "updated_replicas": dep.updated,
            "available_replicas": dep.available,
            "metrics": [m.to_dict() for m in hpa.metrics],
            "above_target": [m.key for m in hpa.metrics if m.above_target],
            "hpa_conditions": {c["type"]: f"{c['status']}/{c.get('reason') or ''}" for c in hpa.conditions},
            "last_scale_time": hpa.last_scale_time,
        }
        if cfg.list_pods:
            pods = kube.list_pods(dep.selector or self.pre.selector, cfg.namespace)
            out["pods"] = {"total": len(pods), "ready": sum(p.ready for p in pods),
                           "pending": sum(p.phase == "Pending" for p in pods)}
        return out

    def _take(self, *, after_load: bool, cooldown: bool = False) -> Dict[str, Any]:
        assert self._run is not None
        t = max(0.0, self._run.elapsed_s())
        sample: Dict[str, Any] = {"t_s": round(t, 3)}
        if after_load:
            sample["after_load"] = True
        if cooldown:
            sample["cooldown"] = True
        sample.update(self._load_side(t))
        started = time.perf_counter()
        try:
            sample.update(self._cluster_side())
            sample["error"] = None
        except (KubeError, KubeUnavailable) as exc:   # keep the load going; the gap shows
            sample["error"] = str(exc)
        sample["api_ms"] = round((time.perf_counter() - started) * 1000, 1)
        self.timeline.append(sample)
        if self.stream is not None:
            print(format_sample(sample), file=self.stream, flush=True)
        return sample


def _fmt(v: Any, spec: str = ".0f") -> str:
    return "-" if v is None else format(v, spec)


def format_sample(s: Dict[str, Any]) -> str:
    head = (f"scale-test t={s['t_s']:7.1f}s{' [after load]' if s.get('cooldown') else ''} offered {_fmt(s.get('offered_rps'))}/s "
            f"achieved {_fmt(s.get('achieved_rps'))}/s p95 {_fmt(s.get('p95_ms'), '.1f')}ms")
    if s.get("error"):
        return f"{head} | kubernetes: {s['error']}"
    metrics = " ".join(f"{m['name']} {_fmt(m['current'], '.4g')}/{_fmt(m['target'], '.4g')}"
                       f"{'%' if m['target_type'] == 'Utilization' else ''}" for m in s.get("metrics", []))
    return (f"{head} | replicas desired {_fmt(s.get('desired_replicas'))} current {_fmt(s.get('current_replicas'))} "
            f"ready {_fmt(s.get('ready_replicas'))} | {metrics}")


# ----------------------------------------------------------------------------- verdicts


def _first(samples: List[Dict[str, Any]], pred: Callable[[Dict[str, Any]], bool],
           after: float = float("-inf")) -> Optional[Dict[str, Any]]:
    return next((s for s in samples if s["t_s"] >= after and pred(s)), None)


def analyse(timeline: List[Dict[str, Any]], cfg: ScaleTestConfig,
            baseline: Optional[Tuple[int, int]] = None) -> Dict[str, Any]:
    """The verdicts of a timeline (see the module docstring). ``baseline``: ``(replicas,
    ready)`` read before the run (:attr:`Preflight.baseline`); without it the first sample's."""
    ok = [s for s in timeline if not s.get("error") and s.get("desired_replicas") is not None]
    under_load = [s for s in ok if not s.get("after_load")]
    res: Dict[str, Any] = {"resolution_s": cfg.interval_s, "samples": len(timeline),
                           "failed_samples": len(timeline) - len(ok)}
    if not ok:
        res["checks"] = [{"name": "scale_up", "passed": False, "gated": True,
                          "message": "no sample of the HPA and the Deployment could be read"}]
        res["passed"] = False
        return res

    first = ok[0]
    if baseline is not None:  # before the run: the HPA may have scaled before the first sample
        initial_desired, initial_ready = int(baseline[0]), int(baseline[1])
    else:
        initial_desired = int(first["desired_replicas"] or first.get("current_replicas") or 1)
        initial_ready = int(first.get("ready_replicas") or 0)
    res["initial_replicas"] = initial_desired
    res["initial_ready_replicas"] = initial_ready
    res["initial_replicas_from"] = "before the run" if baseline is not None else "the first sample"

    crossed = _first(ok, lambda s: bool(s.get("above_target")))
    scaled = _first(ok, lambda s: int(s["desired_replicas"] or 0) > initial_desired)
    res["metric_crossed_at_s"] = crossed["t_s"] if crossed else None
    res["metric_crossed"] = crossed["above_target"] if crossed else []
    res["scaled_up_at_s"] = scaled["t_s"] if scaled else None
    res["scaled_up_to"] = scaled["desired_replicas"] if scaled else None
    ready_up = _first(ok, lambda s: int(s.get("ready_replicas") or 0) > initial_ready)
    res["ready_up_at_s"] = ready_up["t_s"] if ready_up else None
    res["time_to_ready_s"] = (round(ready_up["t_s"] - scaled["t_s"], 3)
                              if (ready_up and scaled and ready_up["t_s"] >= scaled["t_s"]) else None)

    checks: List[Dict[str, Any]] = []
    last_t = ok[-1]["t_s"]
    tts: Optional[float] = None
    if crossed is None and scaled is None:
        check = {"passed": False, "message": "no HPA metric went above its target during the run: the load did not "
                                              "test scaling (raise the peak rate or lengthen the ramp)"}
    elif scaled is None:
        assert crossed is not None
        check = {"passed": False, "message": f"metric {', '.join(crossed['above_target'])} above target at "
                                              f"{crossed['t_s']:.1f}s but no scale-up in the "
                                              f"{last_t - crossed['t_s']:.1f}s "
                                              f"observed after it (limit {cfg.max_scale_up_s:g}s)"}
    elif crossed is None or crossed["t_s"] > scaled["t_s"]:
        tts = 0.0
        check = {"passed": True, "message": f"scaled up to {scaled['desired_replicas']} at {scaled['t_s']:.1f}s before "
                                             "any sample saw a metric above target (sampling too coarse?)"}
    else:
        tts = round(scaled["t_s"] - crossed["t_s"], 3)
        passed = tts <= cfg.max_scale_up_s
        check = {"passed": passed,
                 "message": f"metric above target at {crossed['t_s']:.1f}s, desired replicas "
                            f"{initial_desired} -> {scaled['desired_replicas']} at {scaled['t_s']:.1f}s: {tts:.1f}s "
                            f"{'<=' if passed else '>'} {cfg.max_scale_up_s:g}s"}
    res["time_to_scale_up_s"] = tts
    checks.append({"name": "scale_up", "gated": True, "value": tts, "limit": cfg.max_scale_up_s, **check})

    # p95 back under budget: episodes over budget; recovery = the end of the last one, when
    # p95 then stays under budget until the end (a blip that comes back does not count)
    with_p95 = [s for s in timeline if s.get("p95_ms") is not None]
    episodes: List[List[Optional[float]]] = []
    for s in with_p95:
        if s["p95_ms"] > cfg.budget_ms:
            if not episodes or episodes[-1][1] is not None:
                episodes.append([s["t_s"], None])
        elif episodes and episodes[-1][1] is None:
            episodes[-1][1] = s["t_s"]
    over_t = episodes[0][0] if episodes else None
    back_t = episodes[-1][1] if episodes else None
    res["p95_budget_ms"] = cfg.budget_ms
    res["p95_over_budget"] = episodes
    res["p95_over_budget_at_s"] = over_t
    res["p95_back_under_budget_at_s"] = back_t
    res["time_to_p95_recovery_s"] = round(back_t - over_t, 3) if (over_t is not None and back_t is not None) else None
    res["peak_p95_ms"] = max((s["p95_ms"] for s in with_p95), default=None)
    rec_gated = cfg.max_recovery_s is not None
    if over_t is None:
        rc = {"passed": True, "message": f"p95 stayed under {cfg.budget_ms:g} ms in every sample"}
    elif back_t is None:
        rc = {"passed": False, "message": f"p95 over {cfg.budget_ms:g} ms from {episodes[-1][0]:.1f}s to the end "
                                           "of the run"}
    else:
        t_rec = res["time_to_p95_recovery_s"]
        passed = not rec_gated or t_rec <= cfg.max_recovery_s
        rc = {"passed": passed, "message": f"p95 first over {cfg.budget_ms:g} ms at {over_t:.1f}s, back under for good "
                                           f"at {back_t:.1f}s: {t_rec:.1f}s ({len(episodes)} episode(s) over)"
                                           + (f" (limit {cfg.max_recovery_s:g}s)" if rec_gated else "")}
    checks.append({"name": "p95_recovery", "gated": rec_gated, "value": res["time_to_p95_recovery_s"],
                   "limit": cfg.max_recovery_s, **rc})

    # peaks
    res["peak_desired_replicas"] = max(int(s["desired_replicas"] or 0) for s in ok)
    res["peak_current_replicas"] = max(int(s.get("current_replicas") or 0) for s in ok)
    res["peak_ready_replicas"] = max(int(s.get("ready_replicas") or 0) for s in ok)
    res["peak_replicas"] = res["peak_ready_replicas"]

    # throughput per replica: the achieved rate over the last END_SAMPLES intervals at the
    # initial replica count (before more were ready: under a ramp, the most one replica
    # took) against the same over the last intervals at the final count
    measured = [s for s in under_load if s.get("ok_total") is not None and s.get("ready_replicas")]
    first_phase = [s for s in measured if int(s["ready_replicas"]) == initial_ready
                   and (ready_up is None or s["t_s"] < ready_up["t_s"])]
    last_ready = int(measured[-1]["ready_replicas"]) if measured else None
    final_phase: List[Dict[str, Any]] = []
    for s in reversed(measured):                  # the trailing run of samples at the final count
        if int(s["ready_replicas"]) != last_ready:
            break
        final_phase.insert(0, s)
    if last_ready == initial_ready:
        final_phase = []                          # the replicas never changed under load: nothing to compare
    base, base_span = _span_rate(first_phase)
    end, end_span = _span_rate(final_phase)
    base = None if base is None or not initial_ready else base / initial_ready
    end = None if end is None or not last_ready else end / last_ready
    res["throughput_per_replica"] = {
        "baseline_rps_per_replica": None if base is None else round(base, 3),
        "baseline_replicas": initial_ready,
        "baseline_span_s": base_span,
        "end_rps_per_replica": None if end is None else round(end, 3),
        "end_ready_replicas": last_ready,
        "end_span_s": end_span,
        "efficiency": round(end / base, 4) if (base and end is not None) else None,
    }
    eff = res["throughput_per_replica"]["efficiency"]
    eff_gated = cfg.min_efficiency is not None
    if eff is None:
        ec = {"passed": not eff_gated,
              "message": "no change of ready replicas under load to compare throughput per replica"
              if measured and last_ready == initial_ready else "not enough samples to compare throughput per replica"}
    else:
        passed = not eff_gated or eff >= cfg.min_efficiency
        ec = {"passed": passed,
              "message": f"{end:.1f} rps per replica at the end ({last_ready} ready) vs "
                         f"{base:.1f} at {initial_ready} replica(s): {eff:.2f}"
                         + (f" (min {cfg.min_efficiency:g})" if eff_gated else "")}
    checks.append({"name": "throughput_per_replica", "gated": eff_gated, "value": eff, "limit": cfg.min_efficiency,
                   **ec})
    checks.append(_scale_down_check(timeline, ok, cfg, res, initial_desired, initial_ready, scaled))
    res["checks"] = checks
    res["passed"] = all(c["passed"] for c in checks if c["gated"])
    return res


def _scale_down_check(timeline: List[Dict[str, Any]], ok: List[Dict[str, Any]], cfg: ScaleTestConfig,
                      res: Dict[str, Any], initial_desired: int, initial_ready: int,
                      scaled: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """Time from the load's end to the replicas back at their initial count (``res`` gets
    the figures); watched only with ``watch_down_s``."""
    load_end = next((s["t_s"] for s in timeline if s.get("after_load")), None)
    after = [s for s in ok if s.get("after_load")]
    down = _first(after, lambda s: int(s["desired_replicas"] or 0) <= initial_desired)
    ready_down = _first(after, lambda s: int(s.get("ready_replicas") or 0) <= initial_ready)
    watched = any(s.get("cooldown") for s in timeline)
    res["load_ended_at_s"] = load_end
    res["time_to_scale_down_s"] = (round(down["t_s"] - load_end, 3)
                                   if (watched and down and scaled and load_end is not None) else None)
    res["time_to_ready_down_s"] = (round(ready_down["t_s"] - load_end, 3)
                                   if (watched and ready_down and scaled and load_end is not None) else None)
    gated, limit = cfg.max_scale_down_s is not None, cfg.max_scale_down_s
    base = {"name": "scale_down", "gated": gated, "value": res["time_to_scale_down_s"], "limit": limit}
    if not watched:
        return {**base, "gated": False, "passed": True,
                "message": "not watched (--watch-scale-down DURATION samples the replicas after the load)"}
    if scaled is None:
        return {**base, "passed": True, "message": "no scale-up during the load, so none to undo"}
    if down is None or load_end is None:
        last = after[-1] if after else ok[-1]
        return {**base, "passed": False,
                "message": f"still {last['desired_replicas']} desired replicas (initial {initial_desired}) "
                           f"{last['t_s'] - (load_end or 0.0):.1f}s after the load ended (the HPA's default "
                           "scale-down stabilization is 300 s)"}
    t_down = res["time_to_scale_down_s"]
    passed = not gated or t_down <= limit
    ready = res["time_to_ready_down_s"]
    return {**base, "passed": passed,
            "message": f"desired replicas back to {initial_desired} {t_down:.1f}s after the load ended"
                       + (f", ready back to {initial_ready} after {ready:.1f}s" if ready is not None else "")
                       + (f" ({'<=' if passed else '>'} {limit:g}s)" if gated else "")}


def _span_rate(samples: List[Dict[str, Any]]) -> Tuple[Optional[float], Optional[List[float]]]:
    """ok/s over the last END_SAMPLES intervals of ``samples`` (from their cumulative counts);
    with a single sample, its own ``achieved_rps``."""
    if not samples:
        return None, None
    if len(samples) == 1:
        s = samples[0]
        return s.get("achieved_rps"), None
    a, b = samples[-min(len(samples), END_SAMPLES + 1)], samples[-1]
    if b["t_s"] <= a["t_s"]:
        return None, None
    return (b["ok_total"] - a["ok_total"]) / (b["t_s"] - a["t_s"]), [a["t_s"], b["t_s"]]


# ----------------------------------------------------------------------------- the run


def run_scale_test(scenario: Scenario, kube: Kube, cfg: ScaleTestConfig, options: Optional[RunOptions] = None, *,
                   stream: Optional[TextIO] = None, pre: Optional[Preflight] = None) -> Result:
    """Preflight, run the load with the sampler alongside, return a new result document:
    the harness result with a ``scale_test`` section, ``verdict`` including the scale
    verdict. The sampler listens to ``options.events.started`` for the length of the run.

    Raises :class:`KubeError` (usage) before any load is sent."""
    pre = pre or preflight(kube, cfg)
    sampler = Sampler(kube, cfg, pre, stream=stream)
    opts = options or RunOptions(metrics_port=None, progress="off")
    listener = opts.events.started.add_listener(sampler.on_started)
    try:
        with served(scenario) as (aimed, _service):  # a scenario's service: started for this run
            result = Run(aimed, opts).execute()
    finally:
        opts.events.started.remove_listener(listener)
        sampler.stop(final=sampler.started)
    watch_end = None
    if cfg.watch_down_s > 0 and sampler.started and result.get("status") == "completed":
        first_ok = next((s for s in sampler.timeline if not s.get("error") and s.get("desired_replicas") is not None),
                        None)
        back_to = (pre.initial_replicas if pre.initial_replicas is not None
                   else int(first_ok["desired_replicas"]) if first_ok else pre.hpa.min_replicas or 1)
        if stream is not None:
            print(f"harness: scale-test: load done; watching the replicas return to {back_to} "
                  f"(at most {cfg.watch_down_s:g}s, Ctrl-C ends the watch)", file=stream, flush=True)
        watch_end = sampler.watch_down(cfg.watch_down_s, back_to)
    verdicts = {**analyse(sampler.timeline, cfg, pre.baseline), "scale_down_watch": watch_end}
    scale = {
        "schema": SCALE_SCHEMA,
        "kubernetes": {"source": kube.source, "api_server": kube.host, "namespace": cfg.namespace,
                       "hpa": cfg.hpa, "deployment": pre.deployment, "selector": pre.selector,
                       "min_replicas": pre.hpa.min_replicas, "max_replicas": pre.hpa.max_replicas,
                       "metrics": [{k: v for k, v in m.to_dict().items() if k not in ("current", "ratio")}
                                   for m in pre.hpa.metrics]},
        "settings": {"interval_s": cfg.interval_s, "budget_ms": cfg.budget_ms,
                     "max_scale_up_s": cfg.max_scale_up_s, "max_recovery_s": cfg.max_recovery_s,
                     "min_efficiency": cfg.min_efficiency, "watch_down_s": cfg.watch_down_s,
                     "max_scale_down_s": cfg.max_scale_down_s},
        "timeline": sampler.timeline,
        "verdicts": verdicts,
    }
    code = ExitCode(int(result["verdict"]["exit_code"]))
    if code == ExitCode.OK and not verdicts["passed"]:
        code = ExitCode.THRESHOLDS_FAILED
    verdict = {**result["verdict"], "scale_test_passed": verdicts["passed"], "exit_code": int(code),
               "passed": code == ExitCode.OK}
    return {**result, "scale_test": scale, "verdict": verdict}  # type: ignore[typeddict-item]


def format_verdicts(result: Dict[str, Any]) -> str:
    st = result["scale_test"]
    v = st["verdicts"]
    k = st["kubernetes"]
    lines = [f"scale test: HPA {k['namespace']}/{k['hpa']} -> Deployment {k['deployment']} "
             f"({v['samples']} samples every {v['resolution_s']:g}s, {v['failed_samples']} failed)"]
    for c in v["checks"]:
        mark = "PASS" if c["passed"] else "FAIL"
        lines.append(f"  {mark if c['gated'] else 'info'} {c['name']}: {c['message']}")
    if "peak_replicas" in v:
        lines.append(f"  peak replicas: desired {v['peak_desired_replicas']}, current {v['peak_current_replicas']}, "
                     f"ready {v['peak_ready_replicas']}")
    lines.append(f"  verdict: {'passed' if result['verdict']['passed'] else 'FAILED'} "
                 f"(exit {result['verdict']['exit_code']})")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the load


def build_scenario(source: Optional[str] = None, overrides: Optional[Mapping[str, Any]] = None,
                   env: Optional[Mapping[str, str]] = None) -> Scenario:
    """The load: the scenario file or packaged name ``source``, or the scale-test default
    (a ramp from DEFAULT_FROM_RATE to DEFAULT_TO_RATE over the duration, no latency
    thresholds, unless ``overrides`` name another ``profile.type``), with ``overrides``
    (dotted paths: flags > ``HARNESS_*`` env > file > defaults) on top. The target must be
    an HTTP URL. Raises :class:`ScenarioError`."""
    ov = dict(overrides or {})
    if source:
        data, _library_keys = library.read(source)  # a file or a packaged scenario's name
        origin = str(library.resolve(source))
    else:
        data = {"name": "scale-test", "duration": DEFAULT_DURATION, "thresholds": {}}
        if ov.get("profile.type") in (None, "ramp"):
            data["profile"] = {"type": "ramp", "from_rate": DEFAULT_FROM_RATE, "to_rate": DEFAULT_TO_RATE,
                               "ramp_duration": ov.get("duration") or DEFAULT_DURATION}
        origin = "scale-test defaults"
    scenario = scenario_from_dict(data, overrides=ov, env=env, source=origin)
    if scenario.target_kind != "http":
        raise ScenarioError([f"target: the scale test drives the Service over HTTP: give --target "
                             f"http://SERVICE:PORT/PATH, got {scenario.target!r}"])
    return scenario
