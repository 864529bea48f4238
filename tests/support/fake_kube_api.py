"""A fake Kubernetes API server on loopback for the scale test.

It serves, in the API's own JSON, an ``autoscaling/v2`` HorizontalPodAutoscaler, an
``apps/v1`` Deployment and the ``v1`` Pods of its selector, all changing over time along a
*schedule* of keyframes (seconds since :meth:`FakeKubeAPI.start_clock`): the HPA's metrics
rise past their targets, ``desiredReplicas`` goes up, new Pods start Pending and turn
Ready a little later, the Deployment's ready/updated/available counts follow.  Unknown
names answer 404 with a ``Status`` object, names in ``forbidden`` answer 403, and the
``unavailable`` time windows answer 500, like the real API server.  Every request is
logged (method, path, query, headers, and a PATCH's body and Content-Type).

The Deployment's **scale subresource** (``GET``/``PATCH
/apis/apps/v1/namespaces/NS/deployments/NAME/scale``, an ``autoscaling/v1`` Scale; a merge,
strategic-merge or JSON patch of ``spec.replicas``) overrides the schedule from the PATCH
on, on a wall clock of its own: ``spec.replicas`` and the HPA's desired count become the
patched count at once, new Pods turn Ready one every ``ready_delay_s`` (never more than
``max_ready``: a quota, for timeouts), surplus Pods go away one every ``ready_delay_s``
(``status.replicas`` counts them until then). :meth:`FakeKubeAPI.ready_now` is the
number of Ready Pods, for a loopback target whose capacity follows it.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Sequence, Tuple
from urllib.parse import parse_qs, urlsplit

__all__ = ["FakeKubeAPI", "Keyframe", "DEFAULT_SCHEDULE", "write_kubeconfig"]


@dataclass(frozen=True)
class Keyframe:
    """The cluster's state from ``t`` seconds on (until the next keyframe)."""

    t: float
    cpu_utilization: Optional[int]      # percent of request, averaged over pods; None: metrics unavailable
    in_flight: Optional[str]            # Pods metric lbh_http_requests_in_flight, averageValue (quantity)
    desired: int                        # HPA status.desiredReplicas (= Deployment spec.replicas)
    ready: int                          # Pods Ready (Deployment readyReplicas / availableReplicas)


#: metric crosses its target at 2.0 s, scale-up to 3 at 4.0 s, ready 2 at 5.0 s, ready 3 at 6.0 s
DEFAULT_SCHEDULE: Tuple[Keyframe, ...] = (
    Keyframe(0.0, None, None, 1, 1),             # the metrics server has no sample yet
    Keyframe(0.5, 35, "1500m", 1, 1),
    Keyframe(2.0, 92, "6", 1, 1),                # cpu 92 % > 70 %, in-flight 6 > 4
    Keyframe(4.0, 95, "6500m", 3, 1),            # the HPA scales 1 -> 3
    Keyframe(5.0, 80, "5", 3, 2),
    Keyframe(6.0, 55, "3", 3, 3),
)

CPU_TARGET = 70
IN_FLIGHT_TARGET = "4"


def _ts(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeKubeAPI:
    """``with FakeKubeAPI(...) as api:`` serves on ``api.url`` until the block ends."""

    def __init__(self, *, namespace: str = "lbh", hpa: str = "feature-service",
                 deployment: str = "feature-service", labels: Optional[Dict[str, str]] = None,
                 schedule: Sequence[Keyframe] = DEFAULT_SCHEDULE, min_replicas: int = 1, max_replicas: int = 5,
                 forbidden: Sequence[str] = (), unavailable: Sequence[Tuple[float, float]] = (),
                 ready_delay_s: float = 0.2, max_ready: Optional[int] = None) -> None:
        self.namespace = namespace
        self.hpa_name = hpa
        self.deployment_name = deployment
        self.labels = labels or {"app.kubernetes.io/name": "feature-service"}
        self.schedule = sorted(schedule, key=lambda k: k.t)
        self.min_replicas, self.max_replicas = min_replicas, max_replicas
        self.forbidden = set(forbidden)
        self.unavailable = list(unavailable)   # [t1, t2) windows answering 500 (an API server hiccup)
        self.requests: List[Dict[str, Any]] = []
        self.ready_delay_s = ready_delay_s      # after a scale PATCH: one Pod turns Ready (or goes) per this
        self.max_ready = max_ready              # Pods beyond this never turn Ready (a quota)
        self._scale: Optional[Tuple[int, float, int]] = None   # (replicas, monotonic time of the PATCH, ready then)
        self.patches: List[int] = []            # every replica count PATCHed, in order
        self._lock = threading.Lock()
        self._t0: Optional[float] = None
        self._created = datetime.now(timezone.utc) - timedelta(hours=2)
        self._wall0 = datetime.now(timezone.utc)
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    # -- lifecycle ------------------------------------------------------------------

    def __enter__(self) -> "FakeKubeAPI":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> "FakeKubeAPI":
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            wbufsize = 1 << 16                  # headers and body in one write (flushed per request)
            disable_nagle_algorithm = True      # no delayed-ACK stalls on a keep-alive connection

            def do_GET(self) -> None:  # noqa: N802
                api._handle(self)

            def do_PATCH(self) -> None:  # noqa: N802
                api._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-kube-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start_clock(self) -> None:
        """Keyframe times count from now (before this: the first keyframe holds)."""
        with self._lock:
            self._t0 = time.monotonic()
            self._wall0 = datetime.now(timezone.utc)

    def elapsed(self) -> float:
        return 0.0 if self._t0 is None else time.monotonic() - self._t0

    def paths(self) -> List[str]:
        with self._lock:
            return [r["path"] for r in self.requests]

    # -- state ----------------------------------------------------------------------

    def state(self, t: Optional[float] = None) -> Keyframe:
        t = self.elapsed() if t is None else t
        current = self.schedule[0]
        for k in self.schedule:
            if k.t <= t:
                current = k
        with self._lock:
            scale = self._scale
        if scale is None:
            return current
        n, t_patch, ready0 = scale
        steps = int((time.monotonic() - t_patch) / self.ready_delay_s) if self.ready_delay_s > 0 else 1 << 30
        if n >= ready0:                      # scaling up: one more Pod Ready per delay
            ready = min(n, ready0 + steps)
            if self.max_ready is not None:
                ready = min(ready, max(self.max_ready, ready0))
        else:                                # scaling down: one surplus Pod gone per delay
            ready = max(n, ready0 - steps)
        return Keyframe(current.t, current.cpu_utilization, current.in_flight, n, ready)

    def ready_now(self) -> int:
        """Ready Pods now (for a target whose capacity follows the replicas)."""
        return self.state().ready

    def scale(self) -> Dict[str, Any]:
        """The Deployment's ``autoscaling/v1`` Scale."""
        k = self.state()
        return {"apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {"name": self.deployment_name, "namespace": self.namespace,
                             "uid": "0b8f3f8e-58b0-4d3e-8a1e-2f0d1c7e9a42",
                             "resourceVersion": str(2000 + len(self.patches)),
                             "creationTimestamp": _ts(self._created)},
                "spec": {"replicas": k.desired},
                "status": {"replicas": max(k.desired, k.ready),
                           "selector": ",".join(f"{a}={b}" for a, b in sorted(self.labels.items()))}}

    def _patch_scale(self, content_type: str, body: bytes) -> Tuple[int, Dict[str, Any]]:
        ctype = (content_type or "").split(";")[0].strip()
        try:
            doc = json.loads(body or b"null")
        except ValueError:
            return 400, self._status(400, "BadRequest", "the body of the request was in an unknown format", {})
        replicas: Any = None
        if ctype in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            replicas = ((doc or {}).get("spec") or {}).get("replicas") if isinstance(doc, dict) else None
        elif ctype == "application/json-patch+json" and isinstance(doc, list):
            replicas = next((op.get("value") for op in doc if isinstance(op, dict)
                             and op.get("op") in ("replace", "add") and op.get("path") == "/spec/replicas"), None)
        else:
            return 415, self._status(415, "UnsupportedMediaType", f"the body of the request was in an unknown "
                                     f"format - accepted media types include: application/json-patch+json, "
                                     f"application/merge-patch+json (got {ctype!r})", {})
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            return 422, self._status(422, "Invalid", f'Scale.autoscaling "{self.deployment_name}" is invalid: '
                                     f"spec.replicas: Invalid value: {replicas!r}: must be greater than or equal "
                                     "to 0", {"name": self.deployment_name, "group": "autoscaling", "kind": "Scale"})
        ready_before = self.state().ready
        with self._lock:
            self._scale = (replicas, time.monotonic(), ready_before)
            self.patches.append(replicas)
        return 200, self.scale()

    def _scale_time(self, t: float) -> Optional[str]:
        last = None
        prev = self.schedule[0].desired
        for k in self.schedule:
            if k.t > t:
                break
            if k.desired != prev:
                last = k.t
            prev = k.desired
        if last is None:
            return _ts(self._created + timedelta(minutes=5))
        return _ts(self._wall0 + timedelta(seconds=last))

    def hpa(self) -> Dict[str, Any]:
        t = self.elapsed()
        k = self.state(t)
        metrics_ok = k.cpu_utilization is not None
        status: Dict[str, Any] = {
            "observedGeneration": 1,
            "lastScaleTime": self._scale_time(t),
            "currentReplicas": max(k.ready, 1),   # the scale subresource lags the decision
            "desiredReplicas": k.desired,
        }
        if metrics_ok:
            status["currentMetrics"] = [
                {"type": "Resource", "resource": {"name": "cpu", "current": {
                    "averageUtilization": k.cpu_utilization, "averageValue": f"{k.cpu_utilization * 5}m"}}},
                {"type": "Pods", "pods": {"metric": {"name": "lbh_http_requests_in_flight"},
                                          "current": {"averageValue": k.in_flight}}},
            ]
        now = _ts(self._wall0 + timedelta(seconds=t))
        status["conditions"] = [
            {"type": "AbleToScale", "status": "True", "lastTransitionTime": _ts(self._created),
             "reason": "SucceededRescale" if k.desired > 1 else "ReadyForNewScale",
             "message": (f"the HPA controller was able to update the target scale to {k.desired}" if k.desired > 1
                         else "recommended size matches current size")},
            ({"type": "ScalingActive", "status": "True", "lastTransitionTime": now, "reason": "ValidMetricFound",
              "message": "the HPA was able to successfully calculate a replica count from cpu resource "
                         "utilization (percentage of request)"} if metrics_ok else
             {"type": "ScalingActive", "status": "False", "lastTransitionTime": now,
              "reason": "FailedGetResourceMetric",
              "message": "the HPA was unable to compute the replica count: failed to get cpu utilization: "
                         "unable to get metrics for resource cpu: no metrics returned from resource metrics API"}),
            {"type": "ScalingLimited", "status": "False", "lastTransitionTime": _ts(self._created),
             "reason": "DesiredWithinRange", "message": "the desired count is within the acceptable range"},
        ]
        return {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {
                "name": self.hpa_name, "namespace": self.namespace,
                "uid": "6f1c1f0e-3c2a-4c59-9a43-0d5b9e0b1a11", "resourceVersion": str(1000 + int(t * 10)),
                "creationTimestamp": _ts(self._created), "labels": dict(self.labels),
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
            },
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": self.deployment_name},
                "minReplicas": self.min_replicas, "maxReplicas": self.max_replicas,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {
                        "type": "Utilization", "averageUtilization": CPU_TARGET}}},
                    {"type": "Pods", "pods": {"metric": {"name": "lbh_http_requests_in_flight"},
                                              "target": {"type": "AverageValue", "averageValue": IN_FLIGHT_TARGET}}},
                ],
                "behavior": {
                    "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
                        {"type": "Percent", "value": 100, "periodSeconds": 15},
                        {"type": "Pods", "value": 4, "periodSeconds": 15}]},
                    "scaleDown": {"stabilizationWindowSeconds": 300, "selectPolicy": "Max", "policies": [
                        {"type": "Percent", "value": 50, "periodSeconds": 60}]},
                },
            },
            "status": status,
        }

    def deployment(self) -> Dict[str, Any]:
        t = self.elapsed()
        k = self.state(t)
        generation = 1 + sum(1 for f in self.schedule if f.t <= t and f.desired != self.schedule[0].desired) \
            + len(self.patches)
        conditions = [
            {"type": "Available", "status": "True" if k.ready >= 1 else "False",
             "lastUpdateTime": _ts(self._created), "lastTransitionTime": _ts(self._created),
             "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability."},
            {"type": "Progressing", "status": "True", "lastUpdateTime": _ts(self._created),
             "lastTransitionTime": _ts(self._created), "reason": "NewReplicaSetAvailable",
             "message": f'ReplicaSet "{self.deployment_name}-7d9c8b6f5d" has successfully progressed.'},
        ]
        status: Dict[str, Any] = {
            "observedGeneration": generation, "replicas": max(k.desired, k.ready), "updatedReplicas": k.desired,
            "readyReplicas": k.ready, "availableReplicas": k.ready, "conditions": conditions,
        }
        if k.desired > k.ready:
            status["unavailableReplicas"] = k.desired - k.ready
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": self.deployment_name, "namespace": self.namespace,
                "uid": "0b8f3f8e-58b0-4d3e-8a1e-2f0d1c7e9a42", "resourceVersion": str(2000 + int(t * 10)),
                "generation": generation, "creationTimestamp": _ts(self._created), "labels": dict(self.labels),
                "annotations": {"deployment.kubernetes.io/revision": "1"},
            },
            "spec": {
                "replicas": k.desired,
                "selector": {"matchLabels": dict(self.labels)},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
                "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
                "template": {
                    "metadata": {"labels": dict(self.labels)},
                    "spec": {"containers": [{
                        "name": "service", "image": "ghcr.io/example/feature-service:0.1.0",
                        "ports": [{"name": "http", "containerPort": 8000, "protocol": "TCP"}],
                        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"},
                                      "limits": {"cpu": "1", "memory": "1Gi"}},
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http", "scheme": "HTTP"},
                                           "periodSeconds": 5, "timeoutSeconds": 1, "successThreshold": 1,
                                           "failureThreshold": 3},
                        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                        "imagePullPolicy": "IfNotPresent"}],
                        "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
                        "schedulerName": "default-scheduler", "securityContext": {"runAsNonRoot": True}},
                },
            },
            "status": status,
        }

    def pods(self, selector: Optional[str]) -> Dict[str, Any]:
        t = self.elapsed()
        k = self.state(t)
        wanted = dict(p.split("=", 1) for p in (selector or "").split(",") if "=" in p)
        items = []
        if all(self.labels.get(key) == value for key, value in wanted.items()):
            for i in range(max(k.desired, k.ready)):
                ready = i < k.ready
                name = f"{self.deployment_name}-7d9c8b6f5d-{'abcdefgh'[i % 8]}{i:04x}"
                items.append({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "namespace": self.namespace, "labels": dict(self.labels),
                                 "uid": f"00000000-0000-4000-8000-{i:012d}", "resourceVersion": str(3000 + i),
                                 "creationTimestamp": _ts(self._created if i == 0 else self._wall0),
                                 "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                      "name": f"{self.deployment_name}-7d9c8b6f5d",
                                                      "uid": "11111111-2222-4333-8444-555555555555",
                                                      "controller": True, "blockOwnerDeletion": True}]},
                    "spec": {"nodeName": f"node-{i % 2}", "containers": [
                        {"name": "service", "image": "ghcr.io/example/feature-service:0.1.0"}]},
                    "status": {
                        "phase": "Running" if ready else "Pending",
                        "startTime": _ts(self._wall0),
                        "conditions": [
                            {"type": "PodScheduled", "status": "True", "lastTransitionTime": _ts(self._wall0)},
                            {"type": "Initialized", "status": "True", "lastTransitionTime": _ts(self._wall0)},
                            {"type": "ContainersReady", "status": "True" if ready else "False",
                             "lastTransitionTime": _ts(self._wall0)},
                            {"type": "Ready", "status": "True" if ready else "False",
                             "lastTransitionTime": _ts(self._wall0)},
                        ],
                    },
                })
        return {"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": str(4000 + int(t * 10))},
                "items": items}

    # -- HTTP -----------------------------------------------------------------------

    def _status(self, code: int, reason: str, message: str, details: Dict[str, Any]) -> Dict[str, Any]:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
                "reason": reason, "details": details, "code": code}

    def _route(self, path: str, query: Dict[str, List[str]], method: str = "GET", content_type: str = "",
               body: bytes = b"") -> Tuple[int, Dict[str, Any]]:
        parts = path.strip("/").split("/")
        ns = self.namespace
        if len(parts) == 8 and parts[:6] == ["apis", "apps", "v1", "namespaces", ns, "deployments"] \
                and parts[7] == "scale":
            name, verb = parts[6], "patch" if method == "PATCH" else "get"
            if "deployments/scale" in self.forbidden or f"deployments/scale:{verb}" in self.forbidden:
                return 403, self._status(403, "Forbidden",
                                         f'deployments.apps "{name}" is forbidden: User '
                                         f'"system:serviceaccount:{ns}:scale-test" cannot {verb} resource '
                                         f'"deployments/scale" in API group "apps" in the namespace "{ns}"',
                                         {"name": name, "group": "apps", "kind": "deployments"})
            if name != self.deployment_name:
                return 404, self._status(404, "NotFound", f'deployments.apps "{name}" not found',
                                         {"name": name, "group": "apps", "kind": "deployments"})
            return self._patch_scale(content_type, body) if method == "PATCH" else (200, self.scale())
        if method != "GET":
            return 405, self._status(405, "MethodNotAllowed", f"the server does not allow this method on the "
                                     "requested resource", {})
        routes = {
            ("apis", "autoscaling", "v2", "namespaces", ns, "horizontalpodautoscalers"):
                ("autoscaling", "horizontalpodautoscalers", self.hpa_name, self.hpa),
            ("apis", "apps", "v1", "namespaces", ns, "deployments"):
                ("apps", "deployments", self.deployment_name, self.deployment),
        }
        if len(parts) == 7 and tuple(parts[:6]) in routes:
            group, resource, known, build = routes[tuple(parts[:6])]
            name = parts[6]
            if name in self.forbidden or resource in self.forbidden:
                return 403, self._status(403, "Forbidden",
                                         f'{resource}.{group} "{name}" is forbidden: User '
                                         f'"system:serviceaccount:{ns}:scale-test" cannot get resource '
                                         f'"{resource}" in API group "{group}" in the namespace "{ns}"',
                                         {"name": name, "group": group, "kind": resource})
            if name != known:
                return 404, self._status(404, "NotFound", f'{resource}.{group} "{name}" not found',
                                         {"name": name, "group": group, "kind": resource})
            return 200, build()
        if parts == ["api", "v1", "namespaces", ns, "pods"]:
            if "pods" in self.forbidden:
                return 403, self._status(403, "Forbidden", f'pods is forbidden: User "system:serviceaccount:{ns}:'
                                         f'scale-test" cannot list resource "pods" in API group "" in the '
                                         f'namespace "{ns}"', {"kind": "pods"})
            return 200, self.pods((query.get("labelSelector") or [None])[0])
        return 404, self._status(404, "NotFound", "the server could not find the requested resource", {})

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        split = urlsplit(h.path)
        query = parse_qs(split.query)
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0)) if h.command == "PATCH" else b""
        with self._lock:
            self.requests.append({"method": h.command, "path": split.path, "query": query,
                                  "accept": h.headers.get("Accept"), "user_agent": h.headers.get("User-Agent"),
                                  "authorization": h.headers.get("Authorization"), "t": self.elapsed(),
                                  "content_type": h.headers.get("Content-Type"), "body": body.decode(errors="replace")})
        t = self.elapsed()
        if self._t0 is not None and any(a <= t < b for a, b in self.unavailable):
            code, answer = 500, self._status(500, "InternalError",
                                           "Internal error occurred: etcdserver: request timed out",
                                           {"causes": [{"message": "etcdserver: request timed out"}]})
        else:
            code, answer = self._route(split.path, query, h.command, h.headers.get("Content-Type") or "", body)
        data = json.dumps(answer).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.send_header("Audit-Id", "c0ffee00-0000-4000-8000-000000000000")
        h.end_headers()
        h.wfile.write(data)


def write_kubeconfig(path: Any, server: str, *, namespace: str = "lbh", context: str = "fake") -> str:
    """A kubeconfig for ``server`` with no credentials, its context's namespace set."""
    import yaml

    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "users": [{"name": "nobody", "user": {}}],
        "contexts": [{"name": context, "context": {"cluster": "fake", "user": "nobody", "namespace": namespace}}],
    }
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(doc, fh)
    return str(path)
