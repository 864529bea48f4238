"""deploy/k8s checked offline (no cluster here): every kustomization builds with the real
kustomize (``kubectl kustomize``), every core object passes ``kubernetes-validate
--strict`` for current Kubernetes versions, the ServiceMonitor, PodMonitor,
PrometheusRule and ScaledObject pass the CRD schemas in ../shared/schemas/crds (made
strict: unknown fields rejected), the PrometheusRule equals the rules in alerts/, and
the objects refer to each other (labels, ports, names, RBAC) consistently, and promtool
evaluates the scaling queries (KEDA's, the adapter's) on per-pod series.

Under CI=true a missing kubectl/kustomize or kubernetes-validate fails, never skips.
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml

from tests.support import REPO_ROOT
from tests.support.k8s import K8S, adapter_rules, build, build_text, find, missing, pod_spec

ROOT = REPO_ROOT
CRD_DIR = Path(os.environ.get("LBH_CRD_SCHEMAS", ROOT.parent / "shared" / "schemas" / "crds"))
NAMESPACE = "lbh"

#: Every kustomization a user applies.
ENTRY_POINTS = (
    "base",
    "overlays/prometheus-adapter",
    "overlays/keda",
    "jobs/results",
    "jobs/load",
    "jobs/scale-test",
)
#: Kubernetes versions the core objects must validate against: the oldest we support
#: (preStop `sleep` is on by default from 1.30) and the newest the installed
#: kubernetes-validate knows.
OLDEST_K8S = "1.30.0"
#: apiVersion group -> CRD schema directory; kind -> file stem.
CRD_GROUPS = {"monitoring.coreos.com": "monitoring.coreos.com", "keda.sh": "keda.sh"}


def _require_module(name: str, install: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing(f"{name} is not importable ({exc}); {install}")


def kinds(objs: List[Dict[str, Any]]) -> List[str]:
    return sorted(o["kind"] for o in objs)


def is_core(obj: Dict[str, Any]) -> bool:
    group = obj["apiVersion"].rpartition("/")[0]
    return group not in CRD_GROUPS


def env_of(container: Dict[str, Any]) -> Dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


# ----------------------------------------------------------------------------- builds


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_kustomization_builds_into_one_namespace(entry):
    objs = build(entry)
    assert objs, f"deploy/k8s/{entry} renders nothing"
    for o in objs:
        if o["kind"] == "Namespace":
            assert o["metadata"]["name"] == NAMESPACE
        else:
            assert o["metadata"].get("namespace") == NAMESPACE, f"{o['kind']}/{o['metadata']['name']}"
        assert o["metadata"]["labels"]["app.kubernetes.io/part-of"] == "latency-budget-harness"
    images = {c["image"] for o in objs if "template" in o.get("spec", {}) for c in pod_spec(o)["containers"]}
    images |= {c["image"] for o in objs if o["kind"] == "Pod" for c in o["spec"]["containers"]}
    assert images <= {"ghcr.io/latency-budget/harness:0.1.0"}, images


def test_entry_points_hold_what_they_promise():
    assert kinds(build("base")) == ["Deployment", "HorizontalPodAutoscaler", "Namespace", "NetworkPolicy",
                                    "PodDisruptionBudget", "Service"]
    monitoring = ["ConfigMap", "PodMonitor", "PrometheusRule", "ServiceMonitor"]
    assert kinds(build("overlays/prometheus-adapter")) == sorted(kinds(build("base")) + monitoring)
    # KEDA owns the HPA: a second one on the same Deployment would fight it.
    keda = kinds(build("overlays/keda"))
    assert "HorizontalPodAutoscaler" not in keda and "ScaledObject" in keda
    assert kinds(build("jobs/load")) == ["ConfigMap", "ConfigMap", "Job", "NetworkPolicy"]
    assert kinds(build("jobs/scale-test")) == ["ConfigMap", "Job", "NetworkPolicy", "Role", "RoleBinding",
                                               "ServiceAccount"]
    assert kinds(build("jobs/results")) == ["PersistentVolumeClaim", "Pod"]


# ------------------------------------------------------------------ schema validation


def _kubernetes_validate():
    return _require_module("kubernetes_validate", "pip install kubernetes-validate")


def _k8s_versions() -> List[str]:
    kv = _kubernetes_validate()
    return sorted({OLDEST_K8S, kv.latest_version()})


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_core_objects_pass_kubernetes_validate_strict(entry):
    kv = _kubernetes_validate()
    core = [o for o in build(entry) if is_core(o)]
    assert core or entry == "overlays/keda"
    for version in _k8s_versions():
        for obj in core:
            try:
                kv.validate(obj, version, strict=True)
            except kv.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                pytest.fail(f"{entry}: {obj['kind']}/{obj['metadata']['name']} invalid for Kubernetes {version}: "
                            f"{path}: {exc.message}")
            except kv.SchemaNotFoundError as exc:  # an unknown kind is an error here, never a warning
                pytest.fail(f"{entry}: {exc.message}")


def test_strict_validation_is_not_vacuous():
    kv = _kubernetes_validate()
    deployment = find(build("base"), "Deployment")
    typo = copy.deepcopy(deployment)
    pod_spec(typo)["containers"][0]["readinessProbes"] = pod_spec(typo)["containers"][0].pop("readinessProbe")
    with pytest.raises(kv.ValidationError):
        kv.validate(typo, OLDEST_K8S, strict=True)
    hpa = copy.deepcopy(find(build("base"), "HorizontalPodAutoscaler"))
    up = hpa["spec"]["behavior"]["scaleUp"]
    up["stabilisationWindowSeconds"] = up.pop("stabilizationWindowSeconds")
    with pytest.raises(kv.ValidationError):
        kv.validate(hpa, OLDEST_K8S, strict=True)


def _strict(schema: Any) -> Any:
    """The schema with unknown properties rejected wherever properties are listed (as the
    API server's structural pruning effectively does), except where the CRD keeps unknown
    fields on purpose."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        pattern = out.get("pattern")
        if isinstance(pattern, str) and "(?i)" in pattern:  # Go's inline flag; Python wants it first
            out["pattern"] = "(?i)" + pattern.replace("(?i)", "")
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@lru_cache(maxsize=None)
def _crd_validator(api_version: str, kind: str) -> Any:
    jsonschema = _require_module("jsonschema", "pip install jsonschema")
    group, _, version = api_version.rpartition("/")
    path = CRD_DIR / CRD_GROUPS[group] / f"{kind.lower()}_{version}.json"
    if not path.exists():
        missing(f"CRD schema {path} not found (set LBH_CRD_SCHEMAS to the directory holding "
                 "monitoring.coreos.com/ and keda.sh/)")
    schema = _strict(json.loads(path.read_text()))
    # metadata is checked by the API server, not the CRD schema (which lists it as a bare object).
    schema["properties"]["metadata"] = {"type": "object"}
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _crd_errors(obj: Dict[str, Any]) -> List[str]:
    validator = _crd_validator(obj["apiVersion"], obj["kind"])
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_custom_resources_pass_the_crd_schemas(entry):
    for obj in build(entry):
        if is_core(obj):
            continue
        errors = _crd_errors(obj)
        assert not errors, f"{entry}: {obj['kind']}/{obj['metadata']['name']}:\n" + "\n".join(errors)


def test_crd_validation_is_not_vacuous():
    objs = build("overlays/keda")
    sm = copy.deepcopy(find(objs, "ServiceMonitor"))
    sm["spec"]["endpoints"][0]["scrapeInterval"] = sm["spec"]["endpoints"][0].pop("interval")
    assert _crd_errors(sm)
    so = copy.deepcopy(find(objs, "ScaledObject"))
    del so["spec"]["triggers"][1]["type"]
    assert _crd_errors(so)
    rule = copy.deepcopy(find(objs, "PrometheusRule"))
    rule["spec"]["groups"][0]["rules"][0]["expression"] = rule["spec"]["groups"][0]["rules"][0].pop("expr")
    assert _crd_errors(rule)


# ------------------------------------------------------- generated monitoring objects


def _generator():
    import importlib.util

    spec = importlib.util.spec_from_file_location("lbh_k8s_generate", K8S / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_files_are_up_to_date():
    assert _generator().main(["--check"]) == 0, "run: python deploy/k8s/generate.py"


@pytest.mark.parametrize("entry", ["overlays/prometheus-adapter", "overlays/keda"])
def test_prometheus_rule_equals_the_rules_in_alerts(entry):
    rule = find(build(entry), "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    groups = []
    for name in ("recording_rules.yml", "alert_rules.yml"):
        groups += yaml.safe_load((ROOT / "alerts" / name).read_text())["groups"]
    assert rule["spec"]["groups"] == groups
    records = sum(1 for g in groups for r in g["rules"] if "record" in r)
    alerts = sum(1 for g in groups for r in g["rules"] if "alert" in r)
    assert records > 0 and alerts > 0


def test_dashboards_configmap_holds_every_dashboard():
    cm = find(build("overlays/keda"), "ConfigMap", "lbh-dashboards")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    _, files = _generator().dashboard_files()
    assert files, "dashboards/json/*.json is missing: the ConfigMap would be empty"
    assert sorted(cm["data"]) == sorted(p.name for p in files)
    for path in files:
        assert json.loads(cm["data"][path.name]) == json.loads(path.read_text()), path.name
    text = build_text("overlays/keda")
    assert len(text.encode()) < 900_000  # ConfigMaps are capped at 1 MiB


# ---------------------------------------------------------------- the service wiring


def test_deployment_is_probed_bounded_and_locked_down():
    objs = build("base")
    dep = find(objs, "Deployment", "lbh-service")
    assert "replicas" not in dep["spec"], "the HPA owns replicas"
    spec = pod_spec(dep)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["automountServiceAccountToken"] is False
    (c,) = spec["containers"]
    assert c["command"] == ["workloads", "serve"]
    args = c["args"]
    assert args[args.index("--host") + 1] == "0.0.0.0"
    port = int(args[args.index("--port") + 1])
    assert c["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    for kind in ("requests", "limits"):
        assert set(c["resources"][kind]) == {"cpu", "memory"}
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    _shutdown_fits_the_grace_period(spec, c)


def _shutdown_fits_the_grace_period(spec: Dict[str, Any], c: Dict[str, Any]) -> None:
    """Everything SIGTERM sets off, each at its configured bound, ends inside the grace
    period (counted from the start of preStop): the preStop sleep, the readiness period
    (/readyz draining, above the probe's period so the probe sees it), uvicorn's drain of
    requests in progress and then the work pool's wait (each up to the drain timeout),
    and the span flush at exit (OTEL_BSP_EXPORT_TIMEOUT, ms)."""
    from workloads.service.config import ServiceConfig

    env = env_of(c)
    defaults = ServiceConfig()
    pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    delay = float(env.get("LBH_SERVICE_DRAIN_DELAY", defaults.drain_delay_seconds))
    drain = float(env.get("LBH_SERVICE_DRAIN_TIMEOUT", defaults.drain_timeout_seconds))
    export = float(env["OTEL_BSP_EXPORT_TIMEOUT"]) / 1000.0
    assert export <= 5, "the span flush bound must stay well inside the grace period"
    assert delay > c["readinessProbe"]["periodSeconds"]
    worst = pre_stop + delay + 2 * drain + export
    assert spec["terminationGracePeriodSeconds"] >= worst + 5, (spec["terminationGracePeriodSeconds"], worst)


def test_shutdown_budget_check_can_fail():
    dep = find(build("base"), "Deployment", "lbh-service")
    spec = copy.deepcopy(pod_spec(dep))
    (c,) = spec["containers"]
    _shutdown_fits_the_grace_period(spec, c)
    spec["terminationGracePeriodSeconds"] = 35  # the old value: an unreachable collector's 30 s flush did not fit
    with pytest.raises(AssertionError):
        _shutdown_fits_the_grace_period(spec, c)


def test_deployment_env_names_are_settings_the_service_reads():
    from workloads.service.config import ENV_NAMES

    dep = find(build("base"), "Deployment", "lbh-service")
    names = [n for n in env_of(pod_spec(dep)["containers"][0]) if n.startswith("LBH_SERVICE_")]
    assert names and set(names) <= set(ENV_NAMES.values()), sorted(set(names) - set(ENV_NAMES.values()))


def test_service_pdb_and_servicemonitor_select_the_pods():
    objs = build("overlays/prometheus-adapter")
    dep = find(objs, "Deployment", "lbh-service")
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    svc = find(objs, "Service", "lbh-service")
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert ports["http"]["port"] == 8000 and ports["http"]["targetPort"] == "http"
    assert ports["metrics"]["targetPort"] == "http"  # /metrics lives on the service's port
    pdb = find(objs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    sm = find(objs, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert [e["port"] for e in sm["spec"]["endpoints"]] == ["metrics"]
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"


def _hpa_checks(hpa: Dict[str, Any], pdb: Dict[str, Any]) -> None:
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "lbh-service"}
    assert hpa["spec"]["minReplicas"] > pdb["spec"]["minAvailable"]
    up, down = hpa["spec"]["behavior"]["scaleUp"], hpa["spec"]["behavior"]["scaleDown"]
    assert up["stabilizationWindowSeconds"] < down["stabilizationWindowSeconds"]
    assert down["stabilizationWindowSeconds"] >= 60


def test_base_hpa_scales_on_cpu_with_explicit_behaviour():
    objs = build("base")
    hpa = find(objs, "HorizontalPodAutoscaler", "lbh-service")
    _hpa_checks(hpa, find(objs, "PodDisruptionBudget"))
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource"]
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


def test_adapter_overlay_hpa_adds_in_flight_per_pod_from_an_adapter_rule():
    objs = build("overlays/prometheus-adapter")
    hpa = find(objs, "HorizontalPodAutoscaler", "lbh-service")
    _hpa_checks(hpa, find(objs, "PodDisruptionBudget"))
    by_type = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert set(by_type) == {"Resource", "Pods"}
    pods = by_type["Pods"]["pods"]
    served = {r["name"]["as"] for r in adapter_rules()}
    assert pods["metric"]["name"] in served
    assert pods["target"]["type"] == "AverageValue"
    # The target sits below the point where a pod starts shedding (max_concurrency).
    dep = find(objs, "Deployment", "lbh-service")
    limit = int(env_of(pod_spec(dep)["containers"][0])["LBH_SERVICE_MAX_CONCURRENCY"])
    assert 0 < float(pods["target"]["averageValue"]) < limit


def test_keda_overlay_scaledobject_matches_the_hpa_it_replaces():
    base_hpa = find(build("base"), "HorizontalPodAutoscaler")
    objs = build("overlays/keda")
    so = find(objs, "ScaledObject", "lbh-service")
    assert so["spec"]["scaleTargetRef"]["name"] == "lbh-service"
    hpa_cfg = so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]
    assert hpa_cfg["name"] == "lbh-service"  # what `harness scale-test --hpa` watches
    assert hpa_cfg["behavior"] == base_hpa["spec"]["behavior"]
    assert so["spec"]["minReplicaCount"] == base_hpa["spec"]["minReplicas"]
    assert so["spec"]["maxReplicaCount"] == base_hpa["spec"]["maxReplicas"]
    triggers = {t["type"]: t for t in so["spec"]["triggers"]}
    assert set(triggers) == {"cpu", "prometheus"}
    assert triggers["cpu"]["metadata"]["value"] == str(base_hpa["spec"]["metrics"][0]["resource"]["target"]
                                                       ["averageUtilization"])
    prom = triggers["prometheus"]
    assert prom["metricType"] == "AverageValue"
    assert f'namespace="{NAMESPACE}"' in prom["metadata"]["query"]
    adapter_hpa = find(build("overlays/prometheus-adapter"), "HorizontalPodAutoscaler")
    pods_target = [m for m in adapter_hpa["spec"]["metrics"] if m["type"] == "Pods"][0]["pods"]["target"]
    assert prom["metadata"]["threshold"] == pods_target["averageValue"]  # one target, either add-on


# ----------------------------------------------------------------------- RBAC, Jobs


def test_scale_test_role_may_only_read_and_scale_its_one_deployment():
    objs = build("jobs/scale-test")
    role = find(objs, "Role", "lbh-scale-test")
    reads = [rule for rule in role["rules"] if "resourceNames" not in rule]
    granted = {(g, r, v) for rule in reads for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    assert granted == {(g, r, v) for g, r in (("autoscaling", "horizontalpodautoscalers"), ("apps", "deployments"),
                                              ("", "pods")) for v in ("get", "list", "watch")}
    # the replica sweep: patch on the scale subresource of the one Deployment it sweeps, nothing more
    (scale,) = [rule for rule in role["rules"] if "resourceNames" in rule]
    assert scale == {"apiGroups": ["apps"], "resources": ["deployments/scale"], "resourceNames": ["lbh-service"],
                     "verbs": ["patch"]}
    deployment = find(build("base"), "Deployment")
    assert scale["resourceNames"] == [deployment["metadata"]["name"]]
    assert all("nonResourceURLs" not in rule for rule in role["rules"])
    binding = find(objs, "RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "lbh-scale-test"}
    sa = find(objs, "ServiceAccount")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}]
    job = find(objs, "Job", "lbh-scale-test")
    assert pod_spec(job)["serviceAccountName"] == sa["metadata"]["name"]
    assert not [o for o in objs if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]


def _substitute(args: List[str], env: Dict[str, str]) -> List[str]:
    for name, value in env.items():
        args = [a.replace(f"$({name})", value) for a in args]
    return args


def test_scale_test_job_flags_are_accepted_by_the_harness_cli():
    from harness.cli.main import build_parser

    objs = build("jobs/scale-test")
    job = find(objs, "Job", "lbh-scale-test")
    (c,) = pod_spec(job)["containers"]
    _payload_is_mounted_on_pythonpath(objs, job, c["args"][c["args"].index("--payload") + 1])
    _podmonitor_scrapes(job)
    assert c["command"][:2] == ["harness", "scale-test"]
    args = _substitute(c["args"], {"POD_NAMESPACE": NAMESPACE, "JOB_UID": "uid"})
    assert args[args.index("--hpa") + 1] == "lbh-service"
    assert args[args.index("--deployment") + 1] == "lbh-service"
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert "scale-test" in commands, "`harness scale-test` must exist: the Job runs it"
    parsed = parser.parse_args([*c["command"][1:], *args])
    assert parsed.hpa == "lbh-service" and parsed.namespace == NAMESPACE


def test_results_volume_is_shared_by_the_jobs():
    pvc = find(build("jobs/results"), "PersistentVolumeClaim", "lbh-results")
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]  # an emptyDir is per pod
    for entry, name in (("jobs/load", "lbh-load"), ("jobs/scale-test", "lbh-scale-test")):
        job = find(build(entry), "Job", name)
        claims = [v["persistentVolumeClaim"]["claimName"] for v in pod_spec(job)["volumes"]
                  if "persistentVolumeClaim" in v]
        assert claims == ["lbh-results"], entry
    reader = find(build("jobs/results"), "Pod", "lbh-results")
    assert reader["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "lbh-results"


def _configmap(objs: List[Dict[str, Any]], prefix: str) -> Dict[str, Any]:
    """The kustomize-generated ConfigMap ``<prefix>-<hash>``."""
    (cm,) = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].rsplit("-", 1)[0] == prefix]
    return cm


def _load_job():
    objs = build("jobs/load")
    return objs, find(objs, "Job", "lbh-load"), _configmap(objs, "lbh-load-scenario")


def _payload_is_mounted_on_pythonpath(objs: List[Dict[str, Any]], job: Dict[str, Any], payload_spec: str) -> None:
    cm = _configmap(objs, "lbh-payload")
    assert set(cm["data"]) == {"lbh_payload.py"}
    assert cm["data"]["lbh_payload.py"] == (K8S / "jobs" / "payload" / "lbh_payload.py").read_text()
    (c,) = pod_spec(job)["containers"]
    volumes = {v["name"]: v for v in pod_spec(job)["volumes"]}
    (mount,) = [m for m in c["volumeMounts"] if volumes[m["name"]].get("configMap", {}).get("name") == cm["metadata"]["name"]]
    assert env_of(c)["PYTHONPATH"] == mount["mountPath"]
    module, _, function = payload_spec.partition(":")
    assert module + ".py" in cm["data"] and f"def {function}(" in cm["data"][module + ".py"]


def test_load_job_is_indexed_with_one_segment_per_pod():
    objs, job, cm = _load_job()
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"], "segments run side by side"
    assert spec["backoffLimit"] == 0
    (c,) = pod_spec(job)["containers"]
    env = env_of(c)
    assert int(env["LBH_SEGMENTS"]) == spec["completions"]
    assert env["LBH_RUN_ID"] == {"fieldRef": {"apiVersion": "v1",
                                              "fieldPath": "metadata.labels['batch.kubernetes.io/controller-uid']"}} \
        or env["LBH_RUN_ID"] == {"fieldRef": {"fieldPath": "metadata.labels['batch.kubernetes.io/controller-uid']"}}
    # The ConfigMap (hash-suffixed by kustomize) is the one mounted, and holds what the pod runs.
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(job)["volumes"]}
    assert volumes["scenario"]["configMap"]["name"] == cm["metadata"]["name"]
    assert c["command"] == ["python", f"{mounts['scenario']}/run_segment.py"]
    assert env["LBH_SCENARIO"] == f"{mounts['scenario']}/scenario.yaml"
    assert set(cm["data"]) == {"scenario.yaml", "run_segment.py"}
    for name, text in cm["data"].items():
        assert text == (K8S / "jobs" / "load" / name).read_text()
    _payload_is_mounted_on_pythonpath(objs, job, yaml.safe_load(cm["data"]["scenario.yaml"])["payload"])
    _podmonitor_scrapes(job)


def _podmonitor_scrapes(job: Dict[str, Any]) -> None:
    """The PodMonitor selects the Job's pods and scrapes the port the harness serves its
    live /metrics on."""
    podmon = find(build("overlays/keda"), "PodMonitor", "lbh-load")
    (expr,) = podmon["spec"]["selector"]["matchExpressions"]
    assert expr["operator"] == "In"
    assert job["spec"]["template"]["metadata"]["labels"][expr["key"]] in expr["values"]
    (c,) = pod_spec(job)["containers"]
    port = {p["name"]: p["containerPort"] for p in c["ports"]}[podmon["spec"]["podMetricsEndpoints"][0]["port"]]
    assert c["args"][c["args"].index("--metrics-port") + 1] == str(port)
    assert c["args"][c["args"].index("--metrics-addr") + 1] == "0.0.0.0"


def test_load_scenario_and_flags_are_valid_for_the_harness(tmp_path, capsys):
    from harness.cli.main import build_parser, main

    _, job, cm = _load_job()
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(cm["data"]["scenario.yaml"])
    assert main(["validate", str(scenario)]) == 0, capsys.readouterr().err
    doc = yaml.safe_load(cm["data"]["scenario.yaml"])
    assert doc["target"].startswith("http://lbh-service:8000/")
    svc = find(build("base"), "Service", "lbh-service")
    assert doc["target"].split("/")[2] == f"{svc['metadata']['name']}:{8000}"
    # What run_segment.py passes to `harness run`, with the Job's extra args.
    (c,) = pod_spec(job)["containers"]
    args = build_parser().parse_args(["run", str(scenario), "--segment", "3/4", "--out", "/results/x.json",
                                      *c["args"]])
    assert args.segment == "3/4"
    build_parser().parse_args(["merge", "a.json", "b.json", "--out", "merged.json"])


# ------------------------------------------------------ the scaling queries, evaluated


def test_scaling_queries_compute_in_flight_and_rate_per_pod(tmp_path):
    """The KEDA query and the adapter rules (their templates filled as the adapter fills
    them) evaluated by promtool on series shaped like the ServiceMonitor's: two pods, one
    holding 3 in-flight requests and one 9, each gauge counting its own scrape."""
    from tests.support.ci import require_binary

    promtool = require_binary("promtool", "prometheus")
    so = find(build("overlays/keda"), "ScaledObject", "lbh-service")
    (keda_query,) = [t["metadata"]["query"] for t in so["spec"]["triggers"] if t["type"] == "prometheus"]
    rules = {r["name"]["as"]: r for r in adapter_rules()}

    def adapter(name: str) -> str:
        rule = rules[name]
        series = rule["seriesQuery"].split("{")[0]
        return (rule["metricsQuery"].replace("<<.Series>>", series)
                .replace("<<.LabelMatchers>>", f'namespace="{NAMESPACE}",pod=~"a|b"').replace("<<.GroupBy>>", "pod"))

    labels = f'namespace="{NAMESPACE}",job="lbh-service"'
    test = {
        "rule_files": [],
        "evaluation_interval": "15s",
        "tests": [{
            "interval": "15s",
            "input_series": [
                {"series": f'lbh_http_requests_in_flight{{{labels},pod="a"}}', "values": "4x8"},
                {"series": f'lbh_http_requests_in_flight{{{labels},pod="b"}}', "values": "10x8"},
                # 1 request/s on a work route, 10/s on the probes (not load)
                {"series": f'lbh_http_request_duration_seconds_count{{{labels},pod="a",route="/v1/features",'
                           'method="POST",status="200"}', "values": "0+15x8"},
                {"series": f'lbh_http_request_duration_seconds_count{{{labels},pod="a",route="/readyz",'
                           'method="GET",status="200"}', "values": "0+150x8"},
            ],
            "promql_expr_test": [
                {"expr": keda_query, "eval_time": "2m", "exp_samples": [{"labels": "{}", "value": 12}]},
                {"expr": adapter("lbh_http_requests_in_flight_avg"), "eval_time": "2m", "exp_samples": [
                    {"labels": f'{{{labels},pod="a"}}', "value": 3},
                    {"labels": f'{{{labels},pod="b"}}', "value": 9},
                ]},
                {"expr": adapter("lbh_http_requests_per_second"), "eval_time": "2m", "exp_samples": [
                    {"labels": '{pod="a"}', "value": 1},
                ]},
            ],
        }],
    }
    path = tmp_path / "scaling_test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    proc = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ------------------------------------------------------------------ network policies


def _selects(selector: Dict[str, Any], labels: Dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions In/NotIn/Exists/
    DoesNotExist) applied to ``labels``; ``{}`` selects everything."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        key, op, values = e["key"], e["operator"], e.get("values", [])
        ok = {"In": key in labels and labels[key] in values, "NotIn": labels.get(key) not in values,
              "Exists": key in labels, "DoesNotExist": key not in labels}[op]
        if not ok:
            return False
    return True


def _port_matches(rule_ports: List[Dict[str, Any]] | None, port: int, name: str | None, protocol: str) -> bool:
    if not rule_ports:
        return True  # no ports: every port
    return any(p.get("protocol", "TCP") == protocol and ("port" not in p or p["port"] in (port, name))
               for p in rule_ports)


def _allows(policy: Dict[str, Any], direction: str, peer: Dict[str, str], peer_ns: Dict[str, str],
            port: int, name: str | None = None, protocol: str = "TCP") -> bool:
    """Does ``policy`` (in namespace lbh) allow this connection to/from a pod labelled
    ``peer`` in a namespace labelled ``peer_ns``, as the NetworkPolicy spec defines?
    Only the features the manifests use: podSelector, namespaceSelector, both in one
    peer, ports (number or name)."""
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    if direction not in policy["spec"]["policyTypes"]:
        return True  # this policy does not restrict that direction
    for rule in policy["spec"].get(key, []):
        if not _port_matches(rule.get("ports"), port, name, protocol):
            continue
        peers = rule.get(peers_key)
        if not peers:
            return True
        for p in peers:
            assert "ipBlock" not in p, "the checker does not model ipBlock"
            ns_ok = (_selects(p["namespaceSelector"], peer_ns) if "namespaceSelector" in p
                     else peer_ns.get("kubernetes.io/metadata.name") == NAMESPACE)
            pod_ok = _selects(p["podSelector"], peer) if "podSelector" in p else True
            if ns_ok and pod_ok:
                return True
    return False


LBH_NS = {"kubernetes.io/metadata.name": NAMESPACE}
MONITORING_NS = {"kubernetes.io/metadata.name": "monitoring"}
KUBE_SYSTEM = {"kubernetes.io/metadata.name": "kube-system"}
PROMETHEUS = {"app.kubernetes.io/name": "prometheus", "prometheus": "kube-prometheus-stack-prometheus"}
KUBE_DNS = {"k8s-app": "kube-dns"}


def _template_labels(obj: Dict[str, Any]) -> Dict[str, str]:
    return obj["spec"]["template"]["metadata"]["labels"]


def test_service_network_policy_admits_only_the_load_prometheus_and_dns():
    objs = build("base")
    pol = find(objs, "NetworkPolicy", "lbh-service")
    dep = find(objs, "Deployment", "lbh-service")
    pod = _template_labels(dep)
    assert _selects(pol["spec"]["podSelector"], pod)
    assert set(pol["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    (c,) = pod_spec(dep)["containers"]
    (port,) = c["ports"]
    http = (port["containerPort"], port["name"])
    load = _template_labels(find(build("jobs/load"), "Job", "lbh-load"))
    scale = _template_labels(find(build("jobs/scale-test"), "Job", "lbh-scale-test"))
    # who may call the service
    assert _allows(pol, "Ingress", load, LBH_NS, *http)
    assert _allows(pol, "Ingress", scale, LBH_NS, *http)
    assert _allows(pol, "Ingress", PROMETHEUS, MONITORING_NS, *http)  # the ServiceMonitor's scrape
    # and who may not
    assert not _allows(pol, "Ingress", {"app.kubernetes.io/name": "something-else"}, LBH_NS, *http)
    assert not _allows(pol, "Ingress", load, {"kubernetes.io/metadata.name": "other"}, *http)
    assert not _allows(pol, "Ingress", PROMETHEUS, LBH_NS, *http)  # a pod named like Prometheus, elsewhere
    assert not _allows(pol, "Ingress", {"app.kubernetes.io/name": "grafana"}, MONITORING_NS, *http)
    assert not _allows(pol, "Ingress", load, LBH_NS, 9090, None)
    # where the service may connect: DNS, an OTLP collector; nothing else
    assert _allows(pol, "Egress", KUBE_DNS, KUBE_SYSTEM, 53, None, "UDP")
    assert _allows(pol, "Egress", KUBE_DNS, KUBE_SYSTEM, 53, None, "TCP")
    assert _allows(pol, "Egress", {"app": "otel-collector"}, {"kubernetes.io/metadata.name": "observability"}, 4318)
    assert not _allows(pol, "Egress", {"app": "anything"}, LBH_NS, 443)
    assert not _allows(pol, "Egress", {"app": "anything"}, LBH_NS, 53, None, "UDP")


def test_load_job_network_policy_reaches_only_the_service_and_dns():
    objs = build("jobs/load")
    pol = find(objs, "NetworkPolicy", "lbh-load")
    job = find(objs, "Job", "lbh-load")
    assert _selects(pol["spec"]["podSelector"], _template_labels(job))
    assert set(pol["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    dep = find(build("base"), "Deployment", "lbh-service")
    service_pod = _template_labels(dep)
    (svc_port,) = pod_spec(dep)["containers"][0]["ports"]
    # the scenario's target resolves to the Service, whose targetPort is that container port
    svc = find(build("base"), "Service", "lbh-service")
    assert {p["targetPort"] for p in svc["spec"]["ports"]} == {svc_port["name"]}
    assert _allows(pol, "Egress", service_pod, LBH_NS, svc_port["containerPort"], svc_port["name"])
    assert _allows(pol, "Egress", KUBE_DNS, KUBE_SYSTEM, 53, None, "UDP")
    assert not _allows(pol, "Egress", service_pod, LBH_NS, 9000, None)
    assert not _allows(pol, "Egress", {"app.kubernetes.io/name": "other"}, LBH_NS, svc_port["containerPort"])
    assert not _allows(pol, "Egress", {"any": "pod"}, {"kubernetes.io/metadata.name": "internet"}, 443)
    # only Prometheus may connect, and only to the port the PodMonitor scrapes
    (c,) = pod_spec(job)["containers"]
    metrics = {p["name"]: p["containerPort"] for p in c["ports"]}
    podmon = find(build("overlays/keda"), "PodMonitor", "lbh-load")
    scraped = podmon["spec"]["podMetricsEndpoints"][0]["port"]
    assert _allows(pol, "Ingress", PROMETHEUS, MONITORING_NS, metrics[scraped], scraped)
    assert not _allows(pol, "Ingress", service_pod, LBH_NS, metrics[scraped], scraped)
    assert not _allows(pol, "Ingress", PROMETHEUS, MONITORING_NS, 8080, None)


def test_scale_test_network_policy_admits_only_prometheus():
    objs = build("jobs/scale-test")
    pol = find(objs, "NetworkPolicy", "lbh-scale-test")
    job = find(objs, "Job", "lbh-scale-test")
    assert _selects(pol["spec"]["podSelector"], _template_labels(job))
    (c,) = pod_spec(job)["containers"]
    port = {p["name"]: p["containerPort"] for p in c["ports"]}["harness-metrics"]
    assert _allows(pol, "Ingress", PROMETHEUS, MONITORING_NS, port, "harness-metrics")
    assert not _allows(pol, "Ingress", {"app.kubernetes.io/name": "lbh-load"}, LBH_NS, port, "harness-metrics")


def test_network_policy_checker_is_not_vacuous():
    pol = copy.deepcopy(find(build("base"), "NetworkPolicy", "lbh-service"))
    anyone = {"app.kubernetes.io/name": "something-else"}
    assert not _allows(pol, "Ingress", anyone, LBH_NS, 8000, "http")
    pol["spec"]["ingress"].append({})  # an empty rule admits everyone
    assert _allows(pol, "Ingress", anyone, LBH_NS, 8000, "http")
    pol["spec"]["policyTypes"] = ["Egress"]
    assert _allows(pol, "Ingress", anyone, {"kubernetes.io/metadata.name": "x"}, 1)


# ------------------------------------------------------------ remote write (load Job)


def _run_segment_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("lbh_run_segment", K8S / "jobs" / "load" / "run_segment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_load_job_remote_write_is_an_option_off_by_default():
    from harness.cli.main import build_parser
    from harness.cli.run import remote_write_from_args

    objs, job, _cm = _load_job()
    (c,) = pod_spec(job)["containers"]
    env = env_of(c)
    assert env["LBH_REMOTE_WRITE_URL"] == "", "off by default"
    assert env["LBH_REMOTE_WRITE_HEADERS"] == {"secretKeyRef": {"name": "lbh-remote-write", "key": "headers",
                                                                "optional": True}}
    assert "--remote-write" not in c["args"]
    flags = _run_segment_module().remote_write_flags
    assert flags({"LBH_REMOTE_WRITE_URL": ""}) == [] and flags({}) == []
    got = flags({"LBH_REMOTE_WRITE_URL": "http://prometheus-operated.monitoring:9090/api/v1/write",
                 "LBH_REMOTE_WRITE_HEADERS": "Authorization: Bearer t\n\nX-Scope-OrgID: lbh\n"})
    args = build_parser().parse_args(["run", "s.yaml", "--segment", "0/4", *c["args"], *got])
    cfg = remote_write_from_args(args)
    assert cfg.url.endswith(":9090/api/v1/write")
    assert cfg.headers == {"Authorization": "Bearer t", "X-Scope-OrgID": "lbh"}
    # the pods may reach Prometheus's remote-write port, and nothing else new
    pol = find(objs, "NetworkPolicy", "lbh-load")
    assert _allows(pol, "Egress", PROMETHEUS, MONITORING_NS, 9090)
    assert not _allows(pol, "Egress", PROMETHEUS, MONITORING_NS, 9093)
    assert not _allows(pol, "Egress", PROMETHEUS, LBH_NS, 9090)
    assert not _allows(pol, "Egress", {"app.kubernetes.io/name": "grafana"}, MONITORING_NS, 9090)
