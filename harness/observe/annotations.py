"""Grafana annotations for a harness run: its start, each phase change, and its end.

``harness run --grafana-url URL`` posts them with grafana-client (``POST /api/annotations``),
tagged ``lbh-run`` (every provisioned dashboard has an annotation query on that tag, so
one post shows on all of them), ``run:<id>``, ``scenario:<name>`` and the event kind. With
``--grafana-dashboard UID`` (repeatable) each event is posted to those dashboards instead
(``dashboardUID``), for a Grafana whose dashboards lack the tag query.

Posting never slows or fails the run: calls go through one background thread with a
bounded queue, errors are kept (``errors``) and reported once at the end.

Use::

    ann = RunAnnotations(GrafanaAnnotator(url, credential))
    opts = RunOptions(on_started=chain_on_started(existing_callback, ann.on_started))
    result = Run(scenario, opts).execute()
    ann.finish(result)          # the end annotation (a region over the whole run); flushes
"""

from __future__ import annotations

import argparse
import os
import queue
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

__all__ = ["GrafanaAnnotator", "RunAnnotations", "chain_on_started", "add_run_arguments", "from_args",
           "RUN_TAG"]

RUN_TAG = "lbh-run"  # dashboards/definitions.py: RUN_ANNOTATION_TAG

Credential = Union[str, Tuple[str, str], None]


def _ms(t: float) -> int:
    return int(round(t * 1000))


class GrafanaAnnotator:
    """Posts annotations to one Grafana (``POST /api/annotations``) through grafana-client."""

    def __init__(self, url: str, credential: Credential = None, dashboard_uids: Sequence[str] = (),
                 timeout_s: float = 5.0, api: Any = None) -> None:
        self.url = url.rstrip("/")
        self.dashboard_uids = list(dashboard_uids)
        if api is None:
            from harness.observe.dashboards import grafana_api

            api = grafana_api(self.url, credential, timeout_s)
        self.api = api

    def annotate(self, text: str, tags: Sequence[str], start: float, end: Optional[float] = None) -> List[Any]:
        """One annotation (a region when ``end`` is given); times are Unix seconds."""
        answers = []
        for uid in self.dashboard_uids or [None]:
            answers.append(self.api.annotations.add_annotation(
                dashboard_uid=uid, time_from=_ms(start), time_to=_ms(end) if end is not None else None,
                tags=list(tags), text=text))
        return answers


class RunAnnotations:
    """Hooks for one :class:`harness.run.runner.Run`: ``on_started`` then ``finish(result)``."""

    def __init__(self, annotator: GrafanaAnnotator, extra_tags: Sequence[str] = (), queue_size: int = 256,
                 clock: Callable[[], float] = time.time) -> None:
        self.annotator = annotator
        self.extra_tags = list(extra_tags)
        self.errors: List[str] = []
        self.posted: List[Dict[str, Any]] = []
        self._clock = clock
        self._queue: "queue.Queue[Optional[Dict[str, Any]]]" = queue.Queue(maxsize=queue_size)
        self._sender = threading.Thread(target=self._send_loop, name="lbh-grafana-annotations", daemon=True)
        self._sender.start()
        self._stop = threading.Event()
        self._phase_thread: Optional[threading.Thread] = None
        self._run: Any = None
        self._start_wall: Optional[float] = None
        self._tags: List[str] = []

    # sending ---------------------------------------------------------------------------------

    def _send_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self.annotator.annotate(item["text"], item["tags"], item["start"], item.get("end"))
                self.posted.append(item)
            except Exception as exc:  # never into the run
                status = getattr(exc, "status_code", None)
                self.errors.append(f"{item['kind']}: " + (f"HTTP {status}: " if status else "")
                                   + (getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"))

    def _post(self, kind: str, text: str, start: float, end: Optional[float] = None,
              tags: Sequence[str] = ()) -> None:
        item = {"kind": kind, "text": text, "start": start, "end": end,
                "tags": [*self._tags, kind, *tags, *self.extra_tags]}
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.errors.append(f"{kind}: dropped (annotation queue full)")

    # run hooks -------------------------------------------------------------------------------

    def on_started(self, run: Any) -> None:
        """Post the start annotation and follow the profile's phases while the run lasts."""
        self._run = run
        sc = run.scenario
        self._tags = [RUN_TAG, f"run:{run.run_id}", f"scenario:{sc.name}"]
        t0_ns = getattr(run.state, "t0_ns", None)
        now = self._clock()
        self._start_wall = now + ((t0_ns - time.perf_counter_ns()) / 1e9 if t0_ns is not None else 0.0)
        profile = sc.profile
        describe = profile.describe()
        self._post("start", f"run {run.run_id} started: {sc.name} -> {sc.target}, {describe}", self._start_wall)
        phases = profile.phases() if hasattr(profile, "phases") else []
        if len(phases) > 1:
            self._phase_thread = threading.Thread(target=self._follow_phases, args=(phases,),
                                                  name="lbh-grafana-phases", daemon=True)
            self._phase_thread.start()

    def _follow_phases(self, phases: Sequence[Any]) -> None:
        assert self._start_wall is not None
        for ph in phases:
            at = self._start_wall + ph.start_s
            while not self._stop.is_set() and self._clock() < at:
                self._stop.wait(min(0.5, max(0.0, at - self._clock())))
            if self._stop.is_set():
                return
            self._post("phase", f"phase {ph.name}: {ph.start_rate:g} -> {ph.end_rate:g} req/s "
                                f"for {ph.duration_s:g} s", at, tags=[f"phase:{ph.name}"])

    def finish(self, result: Optional[Mapping[str, Any]] = None, timeout_s: float = 10.0) -> List[str]:
        """Post the end (a region from the start), wait for the queue to drain; returns errors."""
        self._stop.set()
        if self._phase_thread is not None:
            self._phase_thread.join(timeout=2)
        end = self._clock()
        if self._run is not None:
            status = (result or {}).get("status", "finished")
            verdict = (result or {}).get("verdict") or {}
            parts = []
            if "thresholds_passed" in verdict:
                parts.append(f"thresholds {'passed' if verdict['thresholds_passed'] else 'failed'}")
            if verdict.get("valid") is False:
                parts.append("run invalid (the generator was the bottleneck)")
            if "exit_code" in verdict:
                parts.append(f"exit {verdict['exit_code']}")
            text = f"run {self._run.run_id} {status}" + (": " + ", ".join(parts) if parts else "")
            self._post("end", text, self._start_wall if self._start_wall is not None else end, end)
        self._queue.put(None)
        self._sender.join(timeout=timeout_s)
        if self._sender.is_alive():
            self.errors.append(f"Grafana at {self.annotator.url}: annotations still unsent after {timeout_s:g} s")
        return list(self.errors)


def chain_on_started(*callbacks: Optional[Callable[[Any], None]]) -> Callable[[Any], None]:
    """One ``on_started`` that calls each given callback in order."""
    cbs = [c for c in callbacks if c is not None]

    def both(run: Any) -> None:
        for cb in cbs:
            cb(run)
    return both


# --------------------------------------------------------------------------- CLI glue


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """``--grafana-url`` and ``--grafana-dashboard`` for ``harness run``."""
    g = parser.add_argument_group("Grafana annotations (run start, end and phase changes)")
    g.add_argument("--grafana-url", default=os.environ.get("GRAFANA_URL"),
                   help="annotate this Grafana (GRAFANA_URL; auth: GRAFANA_TOKEN, or GRAFANA_USER + "
                        "GRAFANA_PASSWORD)")
    g.add_argument("--grafana-dashboard", action="append", default=[], metavar="UID",
                   help="post to this dashboard only (repeatable); default: organisation-wide, tagged lbh-run")


def from_args(args: argparse.Namespace, env: Optional[Mapping[str, str]] = None) -> Optional[RunAnnotations]:
    """A :class:`RunAnnotations` when ``--grafana-url`` was given, else None."""
    if not getattr(args, "grafana_url", None):
        return None
    from harness.observe.dashboards import credential_from_env

    return RunAnnotations(GrafanaAnnotator(args.grafana_url, credential_from_env(env),
                                           dashboard_uids=getattr(args, "grafana_dashboard", []) or []))
