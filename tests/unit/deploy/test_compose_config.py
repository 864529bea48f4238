"""docker-compose.yml and what it mounts, checked offline (no Docker engine here).

The Compose file validates against the Compose specification's JSON schema
(``../shared/schemas/compose``); every image is pinned; long-running services have
healthchecks (or say why not) and ``depends_on`` uses conditions; every bind mount exists;
the Prometheus config it mounts passes ``promtool check config`` (with the mounted rule
files); the Alertmanager config passes ``amtool check-config``; the collector sends traces
to the trace store that Grafana's provisioned datasource reads; the harness's one-shot
command parses with the real CLI and its scenario and payload are valid.
"""

from __future__ import annotations


import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml

from tests.support import REPO_ROOT
from tests.support.ci import IN_CI, require_binary

ROOT = REPO_ROOT
SCHEMA = ROOT.parent / "shared" / "schemas" / "compose" / "compose-spec.json"
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: Dict[str, Dict[str, Any]] = COMPOSE["services"]

jsonschema = pytest.importorskip("jsonschema") if not IN_CI else __import__("jsonschema")


def _schema() -> Dict[str, Any]:
    if not SCHEMA.exists():
        if IN_CI:
            pytest.fail(f"{SCHEMA} missing")
        pytest.skip(f"{SCHEMA} missing")
    return json.loads(SCHEMA.read_text())


def _errors(doc: Any) -> List[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
            for e in jsonschema.Draft7Validator(_schema()).iter_errors(doc)]


def _bind_mounts(service: str) -> Dict[str, Path]:
    """container path -> host path, for the service's ./ bind mounts."""
    out = {}
    for v in SERVICES[service].get("volumes", []):
        if isinstance(v, str) and v.startswith("./"):
            src, dst = v.split(":")[:2]
            out[dst] = ROOT / src
    return out


def test_compose_validates_against_the_compose_spec() -> None:
    assert _errors(COMPOSE) == []


def test_the_schema_check_is_not_vacuous() -> None:
    bad = json.loads(json.dumps(COMPOSE))
    bad["services"]["prometheus"]["healthcheck"]["intervall"] = "5s"
    bad["services"]["grafana"]["depends_on"]["prometheus"]["condition"] = "service_ready"
    assert len(_errors(bad)) >= 2


def test_the_stack_has_every_part() -> None:
    assert {"service", "prometheus", "alertmanager", "grafana", "otel-collector", "tempo", "harness"} <= set(SERVICES)
    assert SERVICES["harness"]["profiles"] == ["load"]
    assert SERVICES["harness"]["restart"] == "no"


def test_images_are_pinned() -> None:
    for name, svc in SERVICES.items():
        image = svc.get("image")
        assert image, f"{name}: no image"
        repo, _, tag = image.rpartition(":")
        assert repo and re.fullmatch(r"v?\d+\.\d+\.\d+(?:[-.][\w.]+)?", tag), f"{name}: image {image!r} is not pinned"
    assert SERVICES["service"]["image"] == SERVICES["harness"]["image"]


def test_healthchecks_and_depends_on_conditions() -> None:
    for name in ("service", "prometheus", "alertmanager", "grafana"):
        test = SERVICES[name]["healthcheck"]["test"]
        assert test[0] == "CMD" and len(test) > 1, name
    for name, svc in SERVICES.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in SERVICES, f"{name} depends on unknown {dep}"
            assert cond["condition"] in ("service_healthy", "service_started", "service_completed_successfully")
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[dep] and not SERVICES[dep]["healthcheck"].get("disable"), dep
    assert SERVICES["harness"]["depends_on"]["service"]["condition"] == "service_healthy"
    assert SERVICES["tempo"]["depends_on"]["tempo-init"]["condition"] == "service_completed_successfully"


def test_grafana_admin_password_comes_from_the_environment() -> None:
    env = SERVICES["grafana"]["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD")
    for name, svc in SERVICES.items():
        for key, value in (svc.get("environment") or {}).items():
            if "PASSWORD" in key or "TOKEN" in key:
                assert str(value).startswith("${"), f"{name}: a literal secret in {key}"


def test_bind_mounts_exist() -> None:
    for name in SERVICES:
        for dst, src in _bind_mounts(name).items():
            if src.name == "results":
                continue  # created by the run
            assert src.exists(), f"{name}: {src} (mounted at {dst}) does not exist"


@pytest.mark.slow  # runs promtool
def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    promtool = require_binary("promtool", "prometheus")
    mounts = _bind_mounts("prometheus")
    cfg_src = mounts["/etc/prometheus/prometheus.yml"]
    cfg = yaml.safe_load(cfg_src.read_text())
    # the rule files are the repo's own, mounted: check them at their host paths
    rules = []
    for path in cfg["rule_files"]:
        assert path in mounts, f"rule file {path} is not mounted into the prometheus container"
        rules.append(str(mounts[path]))
    assert sorted(Path(r).name for r in rules) == ["alert_rules.yml", "recording_rules.yml"]
    cfg["rule_files"] = rules
    target = tmp_path / "prometheus.yml"
    target.write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = subprocess.run([promtool, "check", "config", str(target)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert jobs["service"]["static_configs"][0]["targets"] == ["service:8000"]
    assert jobs["harness"]["dns_sd_configs"][0]["names"] == ["harness"]
    assert jobs["harness"]["dns_sd_configs"][0]["port"] == 9100
    assert cfg["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    assert "--enable-feature=exemplar-storage" in SERVICES["prometheus"]["command"]


@pytest.mark.slow  # runs amtool
def test_alertmanager_config_passes_amtool() -> None:
    amtool = require_binary("amtool", "prometheus-alertmanager")
    src = _bind_mounts("alertmanager")["/etc/alertmanager/alertmanager.yml"]
    assert src == ROOT / "alerts" / "alertmanager.yml"
    proc = subprocess.run([amtool, "check-config", str(src)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_traces_flow_from_the_apps_to_the_datasource_grafana_reads() -> None:
    otel = yaml.safe_load(_bind_mounts("otel-collector")["/etc/otelcol-contrib/config.yaml"].read_text())
    pipeline = otel["service"]["pipelines"]["traces"]
    assert pipeline["receivers"] == ["otlp"]
    assert set(otel["receivers"]["otlp"]["protocols"]) == {"grpc", "http"}
    [exporter] = pipeline["exporters"]
    host, port = otel["exporters"][exporter]["endpoint"].rsplit(":", 1)
    assert host == "tempo"
    tempo = yaml.safe_load(_bind_mounts("tempo")["/etc/tempo.yaml"].read_text())
    assert tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(f":{port}")
    for name in ("service", "harness"):
        env = SERVICES[name]["environment"]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
        assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    datasources = yaml.safe_load(_bind_mounts("grafana")["/etc/grafana/provisioning/datasources"]
                                 .joinpath("datasources.yml").read_text())["datasources"]
    urls = {d["uid"]: d["url"] for d in datasources}
    assert urls["tempo"] == f"http://tempo:{tempo['server']['http_listen_port']}"
    assert urls["prometheus"] == "http://prometheus:9090"


def test_the_harness_one_shot_command_parses_and_its_scenario_is_valid() -> None:
    from harness.cli.main import build_parser
    from harness.config.scenario import load_scenario
    from harness.targets.resolve import resolve_payload

    cmd = SERVICES["harness"]["command"]
    assert cmd[:2] == ["harness", "run"]
    args = build_parser().parse_args(cmd[1:])
    assert args.stack == "external" and args.prometheus_url == "http://prometheus:9090"
    assert args.metrics_port == 9100 and args.metrics_addr == "0.0.0.0"
    mounts = _bind_mounts("harness")
    scenario_host = mounts["/scenarios"] / Path(args.scenario).relative_to("/scenarios")
    sc = load_scenario(str(scenario_host), {}, env={})
    assert sc.target.startswith("http://service:8000/")
    assert [p.name for p in sc.profile.phases()] == ["warm-up", "steady", "spike"]
    # the payload generator is registered by the workloads plug-in the image installs
    assert sc.payload == "feature_window_hot"
    body = resolve_payload(sc.payload)(7)
    from workloads.service.config import ServiceConfig
    from workloads.service.schemas import build_request_models

    build_request_models(ServiceConfig()).Features.model_validate_json(body)  # what the service accepts


def test_service_command_matches_the_cli() -> None:
    from workloads.cli import build_parser as workloads_parser  # the module the container runs

    cmd = SERVICES["service"]["command"]
    assert cmd[:3] == ["python", "-m", "workloads.cli"]
    args = workloads_parser().parse_args(cmd[3:])
    assert args.command == "serve" and args.host == "0.0.0.0" and str(args.port) == "8000"
    assert [_published(p)[1:] for p in SERVICES["service"]["ports"]] == [("8000", "8000")]


_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def _interpolate(text: str, env: Dict[str, str]) -> str:
    """Compose's ``${VAR}`` / ``${VAR:-default}`` substitution (what the file uses)."""
    return _VAR.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), text)


def _published(spec: Any, env: Dict[str, str] | None = None) -> tuple:
    """(host address, host port, container port) of a short-syntax port, as Compose reads
    it with ``env``; no address means all interfaces."""
    assert isinstance(spec, str), f"long port syntax not expected here: {spec!r}"
    parts = _interpolate(spec, env or {}).split(":")
    if len(parts) == 2:
        return ("0.0.0.0", *parts)
    assert len(parts) == 3, spec
    return tuple(parts)


def test_published_ports_bind_loopback_unless_lbh_bind_says_otherwise() -> None:
    published = [(name, p) for name, svc in SERVICES.items() for p in svc.get("ports", [])]
    assert {name for name, _ in published} >= {"service", "prometheus", "alertmanager", "grafana",
                                               "otel-collector", "tempo"}
    for name, spec in published:
        assert _published(spec)[0] == "127.0.0.1", f"{name}: {spec} is published on every interface"
        assert _published(spec, {"LBH_BIND": "0.0.0.0"})[0] == "0.0.0.0", f"{name}: {spec} ignores LBH_BIND"
    header = (ROOT / "docker-compose.yml").read_text().split("\nname:")[0]
    assert "LBH_BIND=0.0.0.0" in header, "the file's header says how to open the ports"
    assert "LBH_BIND" in (ROOT / "README.md").read_text()


def test_port_check_is_not_vacuous() -> None:
    assert _published("9090:9090")[0] == "0.0.0.0"
    assert _published("0.0.0.0:9090:9090")[0] == "0.0.0.0"
    assert _published("${LBH_BIND:-127.0.0.1}:9090:9090", {"LBH_BIND": ""})[0] == "127.0.0.1"


def test_prometheus_runs_without_the_lifecycle_api() -> None:
    cmd = SERVICES["prometheus"]["command"]
    assert any(c.startswith("--config.file=") for c in cmd)  # the list is the real command line
    assert not [c for c in cmd if "enable-lifecycle" in c], "POST /-/quit and /-/reload would be open"


def test_service_stop_grace_covers_its_drain_and_span_flush() -> None:
    from workloads.service.config import ServiceConfig

    svc = SERVICES["service"]
    env = {**COMPOSE["x-otel-env"], **svc["environment"]}
    cfg = ServiceConfig()
    delay = float(env.get("LBH_SERVICE_DRAIN_DELAY", cfg.drain_delay_seconds))
    drain = float(env.get("LBH_SERVICE_DRAIN_TIMEOUT", cfg.drain_timeout_seconds))
    export_s = float(env.get("OTEL_BSP_EXPORT_TIMEOUT", 5000)) / 1000
    grace = svc["stop_grace_period"]
    assert grace.endswith("s")
    assert float(grace[:-1]) >= delay + 2 * drain + export_s


def test_dockerfile_is_cpu_torch_non_root_and_runs_the_service() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:\d+\.\d+\.\d+-slim", text, re.M)
    assert "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in text
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and not users[-1].startswith(("root", "0")), "the image must end as a non-root user"
    cmd = json.loads(re.search(r"^CMD\s+(\[.*\])", text, re.M).group(1))
    assert cmd == SERVICES["service"]["command"]
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "results"} <= set(ignore)
    # everything the COPY lines name from the context exists (--from= copies a stage's files)
    for line in re.findall(r"^COPY\s+(?!--from=)(.+)$", text, re.M):
        for src in shlex.split(line)[:-1]:
            assert (ROOT / src).exists(), src
    # the image installs the built wheel, never the checkout in editable mode
    assert re.search(r"^RUN pip wheel --no-deps --wheel-dir /dist \.$", text, re.M)
    assert "pip install -e" not in text and "/dist/*.whl" in text
