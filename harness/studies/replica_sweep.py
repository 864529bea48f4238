"""``harness scale-test --replicas 1,2,4,8``: the knee at fixed replica counts, and how
well the Service scales.

The HPA mode of the scale test (:mod:`harness.studies.scale_test`) watches what an
autoscaler decides; this one takes the autoscaler out of the question. For each count, in
ascending order, it:

1. sets the Deployment's ``spec.replicas`` through its **scale subresource** (``PATCH
   deployments/NAME/scale``; the Role grants ``patch`` on ``deployments/scale`` for that one
   Deployment and nothing else);
2. **waits for the Pods**: the Deployment has observed the change and has exactly that many
   Pods, all Ready (surplus Pods of a scale-down gone, since they would still take
   traffic), with a progress line per poll and a timeout (``--ready-timeout``). Something
   else changing ``spec.replicas`` meanwhile (an HPA still attached) stops the sweep: its
   knees would not be per replica count;
3. runs the **knee search** (:mod:`harness.studies.search`) against the Service URL.

It reports the knee per count, the knee per replica and the **scaling efficiency**
``knee(n) / (n / n0 * knee(n0))`` against the smallest count ``n0`` of the sweep (with
``n0 = 1``: ``knee(n) / (n * knee(1))``): 1.0 is linear scaling, 0.5 means half of each
added replica's share was lost (to a shared database, the load balancer, the generator).
A knee the search could only bound from below (generator-limited, above ``max_rate``) makes
the efficiency "at least" (``efficiency_bound: "lower"``).

The original replica count is **restored** at the end, also after an error or Ctrl-C (a
second signal waits for it); the result says what was restored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, TextIO

from harness.config import library
from harness.config.scenario import Scenario, ScenarioError, scenario_from_dict
from harness.exitcodes import ExitCode
from harness.lifecycle import held_signals
from harness.studies.kube import Kube, KubeError, KubeUnavailable
from harness.studies.search import SearchSettings, search, search_exit_code

__all__ = ["SWEEP_SCHEMA", "SweepConfig", "SweepError", "parse_replicas", "build_sweep_scenario", "wait_ready",
           "run_sweep", "efficiency", "sweep_exit_code", "format_sweep", "MAX_REPLICAS"]

SWEEP_SCHEMA = "harness.studies.replica_sweep/1"
MAX_REPLICAS = 1000


class SweepError(RuntimeError):
    """The sweep could not go on (Pods never ready, replicas changed by someone else)."""


@dataclass
class SweepConfig:
    deployment: str
    namespace: str
    replicas: List[int]
    ready_timeout_s: float = 300.0
    poll_s: float = 2.0
    settle_s: float = 0.0                 # after the Pods are ready: endpoints and connections catch up
    min_efficiency: Optional[float] = None
    list_pods: bool = True
    restore: bool = True
    search: SearchSettings = field(default_factory=SearchSettings)


def parse_replicas(text: str) -> List[int]:
    """``"1,2,4,8"`` -> ``[1, 2, 4, 8]``: whole numbers >= 1, no duplicates, returned in
    ascending order. Raises ValueError naming ``--replicas``."""
    items = [t.strip() for t in str(text).split(",")]
    if not text or not any(items):
        raise ValueError("--replicas: give a comma-separated list of replica counts, e.g. 1,2,4,8")
    counts: List[int] = []
    for item in items:
        try:
            n = int(item)
        except ValueError:
            raise ValueError(f"--replicas: {item!r} is not a whole number (e.g. --replicas 1,2,4,8)") from None
        if not 1 <= n <= MAX_REPLICAS:
            raise ValueError(f"--replicas: each count must be between 1 and {MAX_REPLICAS}, got {n}")
        if n in counts:
            raise ValueError(f"--replicas: {n} is listed twice")
        counts.append(n)
    return sorted(counts)


def build_sweep_scenario(source: Optional[str] = None, overrides: Optional[Mapping[str, Any]] = None, *,
                         budget_ms: float = 100.0, env: Optional[Mapping[str, str]] = None) -> Scenario:
    """What each search step runs: the scenario file or packaged name ``source`` (its
    thresholds are the knee's criteria), or the sweep's default (the Service URL, a p95
    under ``budget_ms``), with ``overrides`` (dotted paths) on top; the search sets each
    step's rate and duration. The target must be HTTP. Raises :class:`ScenarioError`."""
    ov = dict(overrides or {})
    if source:
        data, _library_keys = library.read(source)
        origin = str(library.resolve(source))
    else:
        data = {"name": "replica-sweep", "duration": "5s", "profile": {"type": "constant", "rate": 10.0},
                "thresholds": {"latency": [f"p(95)<{budget_ms:g}ms"]}}
        origin = "scale-test --replicas defaults"
    scenario = scenario_from_dict(data, overrides=ov, env=env, source=origin)
    if scenario.target_kind != "http":
        raise ScenarioError([f"target: the replica sweep drives the Service over HTTP: give --target "
                             f"http://SERVICE:PORT/PATH, got {scenario.target!r}"])
    return scenario


def _say(stream: Optional[TextIO], text: str) -> None:
    if stream is not None:
        print(f"harness: scale-test: {text}", file=stream, flush=True)


def wait_ready(kube: Kube, cfg: SweepConfig, replicas: int, *, stream: Optional[TextIO] = None,
               clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> float:
    """Poll until the Deployment has observed ``replicas``, has exactly that many Pods and
    all are Ready; seconds waited. Raises :class:`SweepError` on the timeout or when
    ``spec.replicas`` is changed by someone else; an API hiccup is retried until the timeout."""
    t0 = clock()
    last: Optional[str] = None
    problem = "no answer from the API server yet"
    while True:
        waited = clock() - t0
        try:
            dep = kube.deployment_status(cfg.deployment, cfg.namespace)
            if dep.spec_replicas is not None and int(dep.spec_replicas) != replicas:
                raise SweepError(f"Deployment {cfg.namespace}/{cfg.deployment}: spec.replicas is "
                                 f"{dep.spec_replicas}, not the {replicas} this sweep set: something else scales it "
                                 "(an HPA or KEDA ScaledObject? remove or pause it for the sweep)")
            pods_ready = None
            if cfg.list_pods:
                pods = kube.list_pods(dep.selector, cfg.namespace)
                pods_ready = sum(1 for p in pods if p.ready)
            observed = dep.observed_generation is None or dep.generation is None \
                or dep.observed_generation >= dep.generation
            done = observed and dep.ready == replicas and dep.replicas == replicas \
                and (pods_ready is None or pods_ready == replicas)
            state = (f"{dep.ready}/{replicas} ready, {dep.replicas} pod(s)"
                     + (f", {pods_ready} Ready by the pods' conditions" if pods_ready is not None else ""))
            problem = state
        except KubeUnavailable as exc:
            done, state = False, f"API server unavailable ({exc}); retrying"
            problem = state
        if done:
            _say(stream, f"replicas {replicas}: {state} after {waited:.1f}s")
            return round(waited, 3)
        if state != last:
            _say(stream, f"replicas {replicas}: waiting for ready pods: {state} ({waited:.1f}s)")
            last = state
        if waited >= cfg.ready_timeout_s:
            raise SweepError(f"Deployment {cfg.namespace}/{cfg.deployment}: not ready at {replicas} replicas after "
                             f"{cfg.ready_timeout_s:g}s ({problem}); raise --ready-timeout or look at the Pods "
                             "(kubectl describe pods: quota, scheduling, image, readiness probe)")
        sleep(min(cfg.poll_s, max(cfg.ready_timeout_s - waited, 0.01)))


def efficiency(counts: List[Dict[str, Any]]) -> None:
    """Fill each entry's ``knee_per_replica`` and ``efficiency`` (against the smallest count
    with a knee) in place; see the module docstring."""
    with_knee = [c for c in counts if c.get("knee_rps") is not None]
    base = with_knee[0] if with_knee else None
    for c in counts:
        knee = c.get("knee_rps")
        c["knee_per_replica_rps"] = None if knee is None else round(knee / c["replicas"], 4)
        if base is None or knee is None or not base["knee_rps"]:
            c["efficiency"] = None
            c["efficiency_bound"] = None
            continue
        ideal = base["knee_rps"] * c["replicas"] / base["replicas"]
        c["efficiency"] = round(knee / ideal, 4)
        lower = c.get("knee_is_lower_bound") and c is not base
        upper = base.get("knee_is_lower_bound") and c is not base
        c["efficiency_bound"] = None if (lower and upper) else "lower" if lower else "upper" if upper else "exact"
        if lower and upper:
            c["efficiency"] = None   # both only bounded below: the ratio is bounded neither way


def run_sweep(scenario: Scenario, kube: Kube, cfg: SweepConfig, *, stream: Optional[TextIO] = None,
              run_step: Optional[Callable[[Scenario], Dict[str, Any]]] = None,
              on_step: Optional[Callable[[Dict[str, Any]], None]] = None,
              doc: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The sweep (module docstring); returns its document, built in ``doc`` when given (so
    a caller interrupted meanwhile still has what was measured). Pods that never get ready
    end the sweep with ``status: failed`` and the ``error``.

    Raises :class:`KubeError` (usage: no Deployment, a forbidden read or patch) before any
    load, and ``Interrupted`` (after restoring the replica count)."""
    counts: List[Dict[str, Any]] = []
    doc = {} if doc is None else doc
    try:
        dep = kube.deployment_status(cfg.deployment, cfg.namespace)
    except KubeUnavailable as exc:
        raise KubeError(f"cannot reach the Kubernetes API ({kube.source}): {exc}") from None
    original = dep.spec_replicas
    doc.update({
        "schema": SWEEP_SCHEMA,
        "scenario": scenario.to_dict(),
        "kubernetes": {"source": kube.source, "api_server": kube.host, "namespace": cfg.namespace,
                       "deployment": cfg.deployment, "selector": dep.selector, "original_replicas": original},
        "settings": {"replicas": list(cfg.replicas), "ready_timeout_s": cfg.ready_timeout_s, "poll_s": cfg.poll_s,
                     "settle_s": cfg.settle_s, "min_efficiency": cfg.min_efficiency,
                     "search": {k: getattr(cfg.search, k) for k in ("start_rate", "max_rate", "factor", "precision",
                                                                    "step_duration_s", "min_achieved", "max_steps")}},
        "counts": counts,
        "status": "running",
    })
    _say(stream, f"{kube.source}; Deployment {cfg.namespace}/{cfg.deployment} at {original} replica(s); sweep "
                 f"{', '.join(map(str, cfg.replicas))} -> {scenario.target}")
    patched = False
    try:
        for n in cfg.replicas:
            stored = kube.set_replicas(cfg.deployment, n, cfg.namespace)
            patched = True
            _say(stream, f"replicas {n}: set (spec.replicas {stored})")
            ready_s = wait_ready(kube, cfg, n, stream=stream)
            if cfg.settle_s > 0:
                time.sleep(cfg.settle_s)
            _say(stream, f"replicas {n}: knee search")
            r = search(scenario, cfg.search, run_step=run_step, on_step=on_step)
            lower = r["status"] in ("generator-limited", "above-max-rate")
            knee = r["knee_rps"] if r["knee_rps"] is not None else (r.get("at_least_rps") if lower else None)
            counts.append({"replicas": n, "ready_after_s": ready_s, "knee_rps": knee, "knee_is_lower_bound": lower,
                           "search_status": r["status"], "message": r["message"], "limit": r.get("limit"),
                           "exit_code": int(search_exit_code(r)), "steps": r["steps"]})
            efficiency(counts)
            _say(stream, f"replicas {n}: {r['status']}: {r['message']}")
        doc["status"] = "completed"
    except SweepError as exc:
        doc["status"] = "failed"
        doc["error"] = str(exc)
        _say(stream, str(exc))
    except BaseException:
        doc["status"] = "interrupted"
        raise
    finally:
        doc["restored"] = _restore(kube, cfg, original, stream) if (cfg.restore and patched) else None
        efficiency(counts)
        doc["efficiency"] = {str(c["replicas"]): c["efficiency"] for c in counts}
        doc["summary"] = _summary(counts, cfg)
    return doc


def _restore(kube: Kube, cfg: SweepConfig, original: Optional[int], stream: Optional[TextIO]) -> Dict[str, Any]:
    """Put ``spec.replicas`` back; a signal waits meanwhile. Never raises (the sweep's own
    outcome is what the caller must see), says what happened instead."""
    if original is None:
        return {"replicas": None, "ok": False, "error": "the original count was unknown"}
    with held_signals():
        try:
            kube.set_replicas(cfg.deployment, int(original), cfg.namespace)
        except Exception as exc:
            _say(stream, f"could NOT restore {cfg.namespace}/{cfg.deployment} to {original} replicas: {exc}")
            return {"replicas": original, "ok": False, "error": str(exc)}
    _say(stream, f"restored Deployment {cfg.namespace}/{cfg.deployment} to {original} replica(s)")
    return {"replicas": original, "ok": True}


def _summary(counts: List[Dict[str, Any]], cfg: SweepConfig) -> Dict[str, Any]:
    base = next((c["replicas"] for c in counts if c.get("knee_rps") is not None), None)
    effs = [c["efficiency"] for c in counts if c.get("efficiency") is not None and c["replicas"] != base]
    worst = min(effs) if effs else None
    out: Dict[str, Any] = {"base_replicas": base, "min_efficiency": worst, "min_efficiency_limit": cfg.min_efficiency,
                           "efficiency_passed": None}
    if cfg.min_efficiency is not None and worst is not None:
        out["efficiency_passed"] = worst >= cfg.min_efficiency
    return out


def sweep_exit_code(doc: Mapping[str, Any]) -> ExitCode:
    """ERROR when the sweep could not finish (Pods never ready, replicas changed by someone
    else); THRESHOLDS_FAILED when a count has no knee or the efficiency is under its
    minimum; else INVALID_RUN when a count's search was generator-limited before any knee;
    else OK."""
    if doc.get("status") == "failed":
        return ExitCode.ERROR
    codes = [ExitCode(int(c["exit_code"])) for c in doc.get("counts") or []]
    if ExitCode.THRESHOLDS_FAILED in codes or (doc.get("summary") or {}).get("efficiency_passed") is False:
        return ExitCode.THRESHOLDS_FAILED
    if ExitCode.INVALID_RUN in codes:
        return ExitCode.INVALID_RUN
    return ExitCode.OK


def format_sweep(doc: Mapping[str, Any]) -> str:
    """The text summary: one line per replica count, then the verdict on efficiency."""
    k = doc["kubernetes"]
    lines = [f"replica sweep: Deployment {k['namespace']}/{k['deployment']} -> {doc['scenario']['target']} "
             f"(efficiency = knee(n) / (n / n0 x knee(n0)), n0 = the smallest count)",
             f"  {'replicas':>8}{'ready after':>13}{'knee rps':>11}{'per replica':>13}{'efficiency':>12}  search"]
    for c in doc.get("counts") or []:
        lb = ">=" if c.get("knee_is_lower_bound") else ""
        knee = "-" if c["knee_rps"] is None else f"{lb}{c['knee_rps']:.4g}"
        per = "-" if c["knee_per_replica_rps"] is None else f"{lb}{c['knee_per_replica_rps']:.4g}"
        bound = {"lower": ">=", "upper": "<="}.get(c.get("efficiency_bound") or "", "")
        eff = "-" if c["efficiency"] is None else f"{bound}{c['efficiency']:.2f}"
        lines.append(f"  {c['replicas']:>8}{c['ready_after_s']:>12.1f}s{knee:>11}{per:>13}{eff:>12}  "
                     f"{c['search_status']}")
    s = doc.get("summary") or {}
    if s.get("min_efficiency") is not None:
        gate = ""
        if s.get("min_efficiency_limit") is not None:
            gate = f" ({'PASS' if s['efficiency_passed'] else 'FAIL'}: minimum {s['min_efficiency_limit']:g})"
        lines.append(f"  lowest scaling efficiency {s['min_efficiency']:.2f}{gate}")
    if doc.get("error"):
        lines.append(f"  stopped: {doc['error']}")
    r = doc.get("restored")
    if r:
        lines.append(f"  replicas restored to {r['replicas']}" if r.get("ok") else
                     f"  replicas NOT restored to {r.get('replicas')}: {r.get('error')}")
    lines.append(f"  status: {doc['status']}")
    return "\n".join(lines)
