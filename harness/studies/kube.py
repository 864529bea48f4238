"""A thin wrapper over the official ``kubernetes`` client for the scale test.

It reads three things (the Role it needs: ``get`` on ``horizontalpodautoscalers`` in group
``autoscaling``, ``get`` on ``deployments`` in group ``apps``, ``list`` on ``pods``;
``watch`` is not used) and changes one (the replica sweep, ``--replicas``: ``patch`` on
``deployments/scale`` in group ``apps``, for the one Deployment, by ``resourceNames``):

* an ``autoscaling/v2`` HorizontalPodAutoscaler's status: desired and current replicas,
  each metric's current value next to its target (from ``spec.metrics``), conditions;
* an ``apps/v1`` Deployment's status: spec replicas, replicas, ready, updated, available;
* the Pods of a label selector (phase and readiness);
* a Deployment's replica count, set through its ``scale`` subresource (a merge patch of
  ``spec.replicas``: nothing else of the Deployment is touched or needs a permission).

Objects are read through the client's typed API calls (so its own deserialisation checks
the JSON) and turned back into plain API JSON with ``sanitize_for_serialization``, so the
code below reads the same field names as ``kubectl get -o json`` on every client version.

Problems a user must fix (no kubeconfig, object not found, RBAC) raise :class:`KubeError`
with a message naming the object and namespace; anything else is an API hiccup the caller
may record and retry (:class:`KubeUnavailable`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Dict, List, Mapping, Optional, Tuple

__all__ = [
    "KubeError",
    "KubeUnavailable",
    "Kube",
    "MetricStatus",
    "HpaStatus",
    "DeploymentStatus",
    "PodInfo",
    "parse_quantity",
    "selector_string",
    "IN_CLUSTER_NAMESPACE_FILE",
]

IN_CLUSTER_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

#: what each read needs from RBAC, for the error messages (group, resource, verb)
_RBAC = {
    "HorizontalPodAutoscaler": ("autoscaling", "horizontalpodautoscalers", "get"),
    "Deployment": ("apps", "deployments", "get"),
    "Pod": ("", "pods", "list"),
    "Scale": ("apps", "deployments/scale", "patch"),
}


class KubeError(Exception):
    """A problem the user must fix: configuration, a missing object, a forbidden read."""


class KubeUnavailable(Exception):
    """The API server could not answer this time (connection, timeout, 5xx)."""


def _client():
    try:  # lazy: the Kubernetes client is an optional extra ([k8s]); only the scale test needs it
        import kubernetes  # noqa: F401
        from kubernetes import client, config
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise KubeError("the scale test needs the official Kubernetes client: pip install kubernetes") from exc
    return client, config


# ----------------------------------------------------------------------------- values


_SUFFIX = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9, "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}


def parse_quantity(value: Any) -> Optional[float]:
    """A Kubernetes quantity (``"250m"``, ``"1.5k"``, ``"128Mi"``, ``"1e3"``, ``4``) as a float."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    for suffix in sorted(_SUFFIX, key=len, reverse=True):
        if suffix and text.endswith(suffix):
            number, mult = text[: -len(suffix)], _SUFFIX[suffix]
            break
    else:
        number, mult = text, Decimal(1)
    try:
        return float(Decimal(number) * mult)
    except (InvalidOperation, ValueError):
        raise ValueError(f"not a Kubernetes quantity: {value!r}") from None


def selector_string(selector: Optional[Mapping[str, Any]]) -> Optional[str]:
    """A ``LabelSelector`` (matchLabels + matchExpressions) as a ``labelSelector`` query."""
    if not selector:
        return None
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts) or None


# ----------------------------------------------------------------------------- records


@dataclass
class MetricStatus:
    """One HPA metric: what it is, its current value and its target, in the same unit."""

    type: str                       # Resource | ContainerResource | Pods | Object | External
    name: str                       # cpu, memory, or the custom/external metric's name
    target_type: Optional[str]      # Utilization | AverageValue | Value
    target: Optional[float]         # percent for Utilization, else the quantity as a number
    current: Optional[float]        # None while the HPA cannot read the metric
    container: Optional[str] = None

    @property
    def key(self) -> str:
        base = f"{self.type}/{self.name}"
        return f"{base}[{self.container}]" if self.container else base

    @property
    def ratio(self) -> Optional[float]:
        if self.current is None or not self.target:
            return None
        return self.current / self.target

    @property
    def above_target(self) -> bool:
        return self.current is not None and self.target is not None and self.current > self.target

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["key"] = self.key
        d["ratio"] = None if self.ratio is None else round(self.ratio, 4)
        return d


@dataclass
class HpaStatus:
    namespace: str
    name: str
    min_replicas: Optional[int]
    max_replicas: Optional[int]
    current_replicas: Optional[int]
    desired_replicas: Optional[int]
    last_scale_time: Optional[str]
    scale_target: Dict[str, Optional[str]]          # apiVersion, kind, name
    metrics: List[MetricStatus] = field(default_factory=list)
    conditions: List[Dict[str, Any]] = field(default_factory=list)


@dataclass
class DeploymentStatus:
    namespace: str
    name: str
    spec_replicas: Optional[int]
    replicas: int
    ready: int
    updated: int
    available: int
    unavailable: int
    selector: Optional[str]
    observed_generation: Optional[int] = None
    generation: Optional[int] = None


@dataclass
class PodInfo:
    name: str
    phase: Optional[str]
    ready: bool
    node: Optional[str]
    started_at: Optional[str]


# ----------------------------------------------------------------------------- HPA metrics

_SOURCE_FIELD = {
    "Resource": "resource",
    "ContainerResource": "containerResource",
    "Pods": "pods",
    "Object": "object",
    "External": "external",
}
_TARGET_FIELD = {"Utilization": "averageUtilization", "AverageValue": "averageValue", "Value": "value"}


def _metric_identity(entry: Mapping[str, Any]) -> Tuple[str, str, Optional[str]]:
    mtype = str(entry.get("type") or "")
    source = entry.get(_SOURCE_FIELD.get(mtype, ""), None) or {}
    if mtype in ("Resource", "ContainerResource"):
        return mtype, str(source.get("name") or ""), source.get("container")
    metric = source.get("metric") or {}
    return mtype, str(metric.get("name") or ""), None


def hpa_metrics(spec_metrics: List[Mapping[str, Any]], current_metrics: List[Mapping[str, Any]]) -> List[MetricStatus]:
    """Pair each ``spec.metrics`` target with its ``status.currentMetrics`` value."""
    current: Dict[Tuple[str, str, Optional[str]], Mapping[str, Any]] = {}
    for entry in current_metrics or []:
        mtype = str(entry.get("type") or "")
        source = entry.get(_SOURCE_FIELD.get(mtype, ""), None) or {}
        current[_metric_identity(entry)] = source.get("current") or {}
    out: List[MetricStatus] = []
    for entry in spec_metrics or []:
        ident = _metric_identity(entry)
        source = entry.get(_SOURCE_FIELD.get(ident[0], ""), None) or {}
        target = source.get("target") or {}
        ttype = target.get("type")
        tfield = _TARGET_FIELD.get(str(ttype))
        cur = current.get(ident)
        out.append(MetricStatus(
            type=ident[0], name=ident[1], container=ident[2], target_type=ttype,
            target=parse_quantity(target.get(tfield)) if tfield else None,
            current=parse_quantity(cur.get(tfield)) if (cur and tfield) else None,
        ))
    return out


# ----------------------------------------------------------------------------- the wrapper


class Kube:
    """Read-only access to one cluster. Build it with :meth:`from_config` or :meth:`from_host`."""

    def __init__(self, api_client: Any, *, namespace: Optional[str] = None, source: str = "",
                 request_timeout_s: float = 5.0) -> None:
        client, _ = _client()
        self.api_client = api_client
        self.default_namespace = namespace or "default"
        self.source = source
        self.request_timeout_s = request_timeout_s
        self._autoscaling = client.AutoscalingV2Api(api_client)
        self._apps = client.AppsV1Api(api_client)
        self._core = client.CoreV1Api(api_client)

    @property
    def host(self) -> str:
        return str(self.api_client.configuration.host)

    # -- construction ----------------------------------------------------------------

    @classmethod
    def from_host(cls, host: str, *, namespace: Optional[str] = None, **kw: Any) -> "Kube":
        """An API server at ``host`` with no credentials (a proxy, ``kubectl proxy``, tests)."""
        client, _ = _client()
        cfg = client.Configuration()
        cfg.host = host.rstrip("/")
        cfg.retries = 0
        return cls(client.ApiClient(cfg), namespace=namespace, source=f"host {cfg.host}", **kw)

    @classmethod
    def from_config(cls, kubeconfig: Optional[str] = None, context: Optional[str] = None,
                    in_cluster: Optional[bool] = None, **kw: Any) -> "Kube":
        """In-cluster config (a Job's ServiceAccount) or a kubeconfig.

        ``in_cluster=None`` decides: in a pod (``KUBERNETES_SERVICE_HOST`` set) with no
        explicit ``kubeconfig`` and no ``KUBECONFIG``, use the ServiceAccount; otherwise the
        kubeconfig (``kubeconfig`` > ``$KUBECONFIG`` > ``~/.kube/config``).
        """
        client, config = _client()
        cfg = client.Configuration()
        if in_cluster is None:
            in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and not kubeconfig \
                and not os.environ.get("KUBECONFIG")
        namespace: Optional[str] = None
        if in_cluster:
            try:
                config.load_incluster_config(client_configuration=cfg)
            except config.ConfigException as exc:
                raise KubeError(f"in-cluster configuration: {exc} (is this a pod with a ServiceAccount token?)") \
                    from None
            try:
                with open(IN_CLUSTER_NAMESPACE_FILE, encoding="utf-8") as fh:
                    namespace = fh.read().strip() or None
            except OSError:
                namespace = None
            source = "in-cluster ServiceAccount"
        else:
            path = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
            first = path.split(os.pathsep)[0]
            if not os.path.exists(first):
                raise KubeError(f"no kubeconfig at {first} (pass --kubeconfig, set KUBECONFIG, or run in a pod "
                                "with --in-cluster)")
            try:
                config.load_kube_config(config_file=path, context=context, client_configuration=cfg,
                                        persist_config=False)
                _, active = config.list_kube_config_contexts(config_file=path)
                if context:
                    contexts, _ = config.list_kube_config_contexts(config_file=path)
                    active = next((c for c in contexts if c.get("name") == context), active)
                namespace = ((active or {}).get("context") or {}).get("namespace")
            except config.ConfigException as exc:
                raise KubeError(f"kubeconfig {path}: {exc}") from None
            except Exception as exc:  # malformed YAML and the like
                raise KubeError(f"kubeconfig {path}: cannot load: {type(exc).__name__}: {exc}") from None
            source = f"kubeconfig {path}" + (f" (context {context})" if context else "")
        cfg.retries = 0
        return cls(client.ApiClient(cfg), namespace=namespace, source=source, **kw)

    def close(self) -> None:
        try:
            self.api_client.close()
        except Exception:
            pass

    # -- reads ------------------------------------------------------------------------

    def _call(self, kind: str, namespace: str, name: str, fn: Any, *args: Any, **kwargs: Any) -> Dict[str, Any]:
        client, _ = _client()
        try:
            obj = fn(*args, _request_timeout=self.request_timeout_s, **kwargs)
        except client.ApiException as exc:
            raise _api_error(exc, kind, namespace, name, self.host) from None
        except Exception as exc:  # urllib3 connection errors, timeouts, bad JSON
            raise KubeUnavailable(f"{kind} {namespace}/{name}: {self.host}: {type(exc).__name__}: {exc}") from None
        return self.api_client.sanitize_for_serialization(obj)

    def read_hpa(self, name: str, namespace: Optional[str] = None) -> Dict[str, Any]:
        """The ``autoscaling/v2`` object as API JSON."""
        ns = namespace or self.default_namespace
        return self._call("HorizontalPodAutoscaler", ns, name,
                          self._autoscaling.read_namespaced_horizontal_pod_autoscaler, name, ns)

    def read_deployment(self, name: str, namespace: Optional[str] = None) -> Dict[str, Any]:
        ns = namespace or self.default_namespace
        return self._call("Deployment", ns, name, self._apps.read_namespaced_deployment, name, ns)

    def hpa_status(self, name: str, namespace: Optional[str] = None) -> HpaStatus:
        ns = namespace or self.default_namespace
        obj = self.read_hpa(name, ns)
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        ref = spec.get("scaleTargetRef") or {}
        return HpaStatus(
            namespace=ns, name=name,
            min_replicas=spec.get("minReplicas"), max_replicas=spec.get("maxReplicas"),
            current_replicas=status.get("currentReplicas"), desired_replicas=status.get("desiredReplicas"),
            last_scale_time=status.get("lastScaleTime"),
            scale_target={"apiVersion": ref.get("apiVersion"), "kind": ref.get("kind"), "name": ref.get("name")},
            metrics=hpa_metrics(spec.get("metrics") or [], status.get("currentMetrics") or []),
            conditions=[{k: c.get(k) for k in ("type", "status", "reason", "message")}
                        for c in status.get("conditions") or []],
        )

    def deployment_status(self, name: str, namespace: Optional[str] = None) -> DeploymentStatus:
        ns = namespace or self.default_namespace
        obj = self.read_deployment(name, ns)
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        return DeploymentStatus(
            namespace=ns, name=name, spec_replicas=spec.get("replicas"),
            replicas=int(status.get("replicas") or 0), ready=int(status.get("readyReplicas") or 0),
            updated=int(status.get("updatedReplicas") or 0), available=int(status.get("availableReplicas") or 0),
            unavailable=int(status.get("unavailableReplicas") or 0),
            selector=selector_string(spec.get("selector")),
            observed_generation=status.get("observedGeneration"),
            generation=(obj.get("metadata") or {}).get("generation"),
        )

    def set_replicas(self, name: str, replicas: int, namespace: Optional[str] = None) -> int:
        """Set Deployment ``name``'s ``spec.replicas`` through its scale subresource (a merge
        patch); returns the count the API server stored."""
        ns = namespace or self.default_namespace
        obj = self._call("Scale", ns, name, self._apps.patch_namespaced_deployment_scale, name, ns,
                         {"spec": {"replicas": int(replicas)}}, _content_type="application/merge-patch+json")
        return int((obj.get("spec") or {}).get("replicas") or 0)

    def list_pods(self, selector: Optional[str], namespace: Optional[str] = None) -> List[PodInfo]:
        ns = namespace or self.default_namespace
        kwargs = {"label_selector": selector} if selector else {}
        obj = self._call("Pod", ns, selector or "*", self._core.list_namespaced_pod, ns, **kwargs)
        pods = []
        for item in obj.get("items") or []:
            meta, status = item.get("metadata") or {}, item.get("status") or {}
            if meta.get("deletionTimestamp"):
                continue  # terminating: no longer serving
            ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
            pods.append(PodInfo(name=meta.get("name", ""), phase=status.get("phase"), ready=ready,
                                node=(item.get("spec") or {}).get("nodeName"), started_at=status.get("startTime")))
        return pods


def _api_error(exc: Any, kind: str, namespace: str, name: str, host: str) -> Exception:
    status = getattr(exc, "status", None)
    group, resource, verb = _RBAC[kind]
    gr = f"{resource}.{group}" if group else resource
    what = f"{kind} {name!r} in namespace {namespace!r}" if kind != "Pod" else \
        f"Pods (selector {name!r}) in namespace {namespace!r}"
    if kind == "Scale":
        what = f"the scale of Deployment {name!r} in namespace {namespace!r}"
    if status == 404:
        return KubeError(f"{what}: not found (API server {host})")
    if status in (401, 403):
        return KubeError(f"{what}: {'unauthorized' if status == 401 else 'forbidden'}: the scale test needs "
                         f"'{verb}' on {gr} in namespace {namespace!r}"
                         + (f" for {name!r} (resourceNames)" if kind == "Scale" else "")
                         + " (see docs/scale-test.md for the Role)")
    if status is not None and 400 <= int(status) < 500:
        return KubeError(f"{what}: HTTP {status} {getattr(exc, 'reason', '')}".rstrip())
    return KubeUnavailable(f"{what}: HTTP {status} {getattr(exc, 'reason', '')}".rstrip())
