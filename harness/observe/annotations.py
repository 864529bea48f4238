"""Grafana annotations for a harness run: its start, each phase change, and its end.

``harness run --grafana-url URL`` (:mod:`harness.cli.run`) posts them with grafana-client (``POST /api/annotations``),
tagged ``lbh-run`` (every provisioned dashboard has an annotation query on that tag, so
one post shows on all of them), ``run:<id>``, ``scenario:<name>`` and the event kind. With
``--grafana-dashboard UID`` (repeatable) each event is posted to those dashboards instead
(``dashboardUID``), for a Grafana whose dashboards lack the tag query.

Posting never slows or fails the run: calls go through one background thread with a
bounded queue, errors are kept (``errors``) and reported once at the end.

Use (a listener of the run's events, :mod:`harness.events`)::

    ann = RunAnnotations(GrafanaAnnotator(url, credential)).subscribe(opts.events)
    result = Run(scenario, opts).execute()   # started: the start annotation; phase: each phase;
                                             # finished: the end (a region over the run), flushed
    ann.errors                               # what could not be posted
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from harness.events import PhaseStarted, RunEvents, RunFinished, RunHandle, RunStarted
from harness.observe.dashboards import credential_from_env, grafana_api

__all__ = ["GrafanaAnnotator", "RunAnnotations", "annotations_for", "RUN_TAG"]

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
    """Listeners for one run's events (:meth:`subscribe`): ``started`` posts the start,
    ``phase`` each phase change, ``finished`` the end, then flushes (:meth:`finish`)."""

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
        self._run: Optional[RunHandle] = None
        self._phases: List[Any] = []           # the profile's phases (harness.config.profiles.Phase)
        self._start_wall: Optional[float] = None
        self._tags: List[str] = []
        self._finished = False

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

    def subscribe(self, events: RunEvents) -> "RunAnnotations":
        """Listen to ``events.started``, ``events.phase`` and ``events.finished``; returns self."""
        events.started.add_listener(self.on_started)
        events.phase.add_listener(self.on_phase)
        events.finished.add_listener(self.on_finished)
        return self

    def on_started(self, event: RunStarted) -> None:
        """Post the start annotation, at request 0's intended start."""
        run = self._run = event.run
        sc = run.scenario
        self._tags = [RUN_TAG, f"run:{run.run_id}", f"scenario:{sc.name}"]
        self._start_wall = event.t0_wall
        self._phases = list(sc.profile.phases())
        self._post("start", f"run {run.run_id} started: {sc.name} -> {sc.target}, {sc.profile.describe()}",
                   self._start_wall)

    def on_phase(self, event: PhaseStarted) -> None:
        """Post a phase change (at its scheduled time), for a profile of more than one phase."""
        if self._start_wall is None or self._finished or len(self._phases) < 2:
            return
        ph = next((p for p in self._phases if p.name == event.phase and abs(p.start_s - event.at_s) < 1e-6), None)
        if ph is None:
            return
        self._post("phase", f"phase {ph.name}: {ph.start_rate:g} -> {ph.end_rate:g} req/s "
                            f"for {ph.duration_s:g} s", self._start_wall + ph.start_s, tags=[f"phase:{ph.name}"])

    def on_finished(self, event: RunFinished) -> None:
        """The end annotation; waits (bounded) for the queue to drain."""
        self.finish(event.result)

    def finish(self, result: Optional[Mapping[str, Any]] = None, timeout_s: float = 10.0) -> List[str]:
        """Post the end (a region from the start), wait for the queue to drain; returns the
        errors. Once only: a second call (after the ``finished`` event did it) just returns them."""
        if self._finished:
            return list(self.errors)
        self._finished = True
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
        if (result or {}).get("status") == "interrupted":
            timeout_s = min(timeout_s, 2.0)  # a Ctrl-C'd run exits promptly, even with Grafana down
        self._sender.join(timeout=timeout_s)
        if self._sender.is_alive():
            self.errors.append(f"Grafana at {self.annotator.url}: annotations still unsent after {timeout_s:g} s")
        return list(self.errors)


def annotations_for(grafana_url: Optional[str], dashboard_uids: Sequence[str] = (),
                    env: Optional[Mapping[str, str]] = None) -> Optional[RunAnnotations]:
    """A :class:`RunAnnotations` posting to ``grafana_url`` (credentials from ``env``:
    ``GRAFANA_TOKEN``, or ``GRAFANA_USER`` + ``GRAFANA_PASSWORD``), or None without a URL."""
    if not grafana_url:
        return None
    return RunAnnotations(GrafanaAnnotator(grafana_url, credential_from_env(env), dashboard_uids=dashboard_uids))
