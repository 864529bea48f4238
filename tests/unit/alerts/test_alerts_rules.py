"""Static checks of alerts/: generated files up to date, every alert documented and tested,
only metric names that exist, no secrets in alertmanager.yml. No binaries needed."""

from __future__ import annotations

import importlib.util
import re

import pytest
import yaml

from tests.support import REPO_ROOT

ROOT = REPO_ROOT
ALERTS = ROOT / "alerts"
RUNBOOKS = ROOT / "docs" / "runbooks"
TEST_FILES = sorted((ALERTS / "tests").glob("*.yml"))
SEVERITIES = {"critical", "page", "warning", "info"}

# Metric names the project exports (instrumentation, workloads.faults, harness.run.live,
# prometheus_client's process collector) plus Prometheus's own `up`.
_HISTOGRAMS = {
    "lbh_operation_duration_seconds",
    "lbh_harness_latency_seconds",
    "lbh_harness_service_time_seconds",
    "lbh_harness_schedule_lag_seconds",
    "lbh_harness_generator_lag_seconds",
}
KNOWN_METRICS = {f"{h}{s}" for h in _HISTOGRAMS for s in ("_bucket", "_count", "_sum")} | {
    "lbh_operation_errors_total",
    "lbh_operation_in_flight",
    "lbh_operation_flags_total",
    "lbh_faults_injected_total",
    "lbh_fault_setting",
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
    "up",
    "lbh_harness_requests_total",
    "lbh_harness_intended_rate",
    "lbh_harness_achieved_rate",
    "lbh_harness_in_flight",
    "lbh_harness_run_info",
}
PROMQL_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
                   "offset", "bool", "inf", "nan"}


def _load(name: str) -> dict:
    return yaml.safe_load((ALERTS / name).read_text())


def _rules(name: str) -> list[dict]:
    return [r for g in _load(name)["groups"] for r in g["rules"]]


def _generator():
    spec = importlib.util.spec_from_file_location("alerts_generate", ALERTS / "generate.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def test_generated_rule_files_are_up_to_date():
    gen = _generator()
    for path, text in gen.render().items():
        assert path.read_text() == text, f"{path.name} is stale: run `python alerts/generate.py`"


def test_every_alert_has_severity_summary_description_and_an_existing_runbook():
    base = _generator().RUNBOOK_BASE
    alerts = _rules("alert_rules.yml")
    assert alerts
    for rule in alerts:
        name = rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, name
        ann = rule["annotations"]
        for key in ("summary", "description", "runbook_url"):
            assert ann.get(key, "").strip(), f"{name}: no {key}"
        assert "{{" in ann["description"], f"{name}: description has no templated value"
        url = ann["runbook_url"]
        assert url.startswith(base), f"{name}: runbook_url {url} outside {base}"
        page = RUNBOOKS / url[len(base):]
        assert page.is_file(), f"{name}: runbook {page} missing"
        assert page.read_text().splitlines()[0] == f"# {name}", f"{page.name} should start with '# {name}'"


def test_every_runbook_belongs_to_an_alert():
    names = {r["alert"] for r in _rules("alert_rules.yml")}
    for page in RUNBOOKS.glob("*.md"):
        title = page.read_text().splitlines()[0].removeprefix("# ")
        assert title in names, f"{page.name}: no alert named {title!r}"


def test_severity_escalation_and_burn_rate_structure():
    by_name: dict[str, list[dict]] = {}
    for rule in _rules("alert_rules.yml"):
        by_name.setdefault(rule["alert"], []).append(rule)
    sev = {n: sorted(r["labels"]["severity"] for r in rs) for n, rs in by_name.items()}
    assert sev["LatencyP95OverBudget"] == ["critical", "page"]
    assert sev["LatencyP99OverBudget"] == ["critical", "warning"]
    assert sev["ErrorRatioOverBudget"] == ["critical", "page"]
    assert sev["MemoryGrowthOverBudget"] == ["critical", "warning"]
    assert sev["TargetDown"] == ["page"] and sev["FaultInjectionActive"] == ["info"]
    assert sev["OperationP95OverBudget"] == ["critical", "page"]
    # the seeds' agent budget: agent_action p95 < 50 ms (page), critical above 1.2x it
    agent = {r["labels"]["severity"]: r["expr"] for r in by_name["OperationP95OverBudget"]
             if 'operation="agent_action"' in r["expr"]}
    assert agent == {"page": 'job_operation:lbh_operation_duration_seconds:p95_rate1m{operation="agent_action"} > 0.05',
                     "critical": 'job_operation:lbh_operation_duration_seconds:p95_rate1m{operation="agent_action"} > 0.06'}
    assert sev["LoadGeneratorLagHigh"] == ["warning"]
    for name in ("LatencyBudgetBurn", "ErrorBudgetBurn"):
        windows = {r["labels"]["window"]: r for r in by_name[name]}
        assert set(windows) == {"1h", "6h", "1d", "3d"}
        for long_w, short_w, factor in (("1h", "5m", "14.4"), ("6h", "30m", "6"), ("1d", "2h", "3"), ("3d", "6h", "1")):
            expr = windows[long_w]["expr"]
            assert f"ratio_rate{long_w}" in expr and f"ratio_rate{short_w}" in expr and f"> {factor}\n" in expr, expr


def _metric_names(expr: str) -> set[str]:
    s = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # string literals
    s = re.sub(r"\{[^}]*\}", "", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", "", s)  # range selectors
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", s)
    s = re.sub(r"\b[a-zA-Z_][a-zA-Z0-9_]*\s*\(", "(", s)  # function names
    s = re.sub(r"\b\d+(?:\.\d+)?(?:e[+-]?\d+)?\b", "", s)  # numbers
    tokens = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", s))
    return {t for t in tokens if t.lower() not in PROMQL_KEYWORDS}


def test_metric_name_scan_finds_names():
    assert _metric_names('sum by (le, job) (rate(a_b_bucket{le="0.1"}[5m])) / on(job) x:y:z > 1e9 and up') == {
        "a_b_bucket", "x:y:z", "up"}


def test_rules_use_only_existing_metrics_and_recorded_names():
    recorded = {r["record"] for r in _rules("recording_rules.yml")}
    for name in recorded:
        assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", name), f"{name}: not level:metric:operations"
    for rule in _rules("recording_rules.yml") + _rules("alert_rules.yml"):
        unknown = _metric_names(rule["expr"]) - KNOWN_METRICS - recorded
        assert not unknown, f"{rule.get('record') or rule.get('alert')}: unknown metric(s) {sorted(unknown)}"


def test_recording_rules_cover_every_window_and_quantile():
    recorded = {r["record"] for r in _rules("recording_rules.yml")}
    for w in ("1m", "5m", "30m", "1h", "2h", "6h", "1d", "3d"):
        for name in (f"job_operation:lbh_operation_calls:rate{w}",
                     f"job_operation:lbh_operation_errors:ratio_rate{w}",
                     f"job_operation:lbh_operation_good_latency:ratio_rate{w}",
                     f"job_operation:lbh_operation_duration_seconds:p95_rate{w}",
                     f"job_operation:lbh_operation_duration_seconds:p99_rate{w}"):
            assert name in recorded
    for w in ("1m", "5m"):
        assert f"job_target:lbh_harness_latency_seconds:p95_rate{w}" in recorded
        assert f"job_instance:lbh_harness_generator_lag_seconds:p99_rate{w}" in recorded


def _dur(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", str(text)))


def test_promtool_tests_cover_fire_no_fire_and_resolve_for_every_alert_and_severity():
    """Structure only; `promtool test rules` (test_alerts_promtool.py) proves they pass."""
    rules = _rules("alert_rules.yml")
    fire, no_fire, resolve, severities = set(), set(), set(), set()
    for path in TEST_FILES:
        for group in yaml.safe_load(path.read_text())["tests"]:
            cases: dict[str, list[tuple[float, list]]] = {}
            for case in group.get("alert_rule_test", []):
                cases.setdefault(case["alertname"], []).append((_dur(case["eval_time"]), case.get("exp_alerts") or []))
            for name, seq in cases.items():
                seq.sort(key=lambda c: c[0])
                first_fire = next((t for t, exp in seq if exp), None)
                for t, exp in seq:
                    if exp:
                        fire.add(name)
                        severities |= {(name, a["exp_labels"]["severity"]) for a in exp}
                    elif first_fire is None or t < first_fire:
                        no_fire.add(name)
                    else:
                        resolve.add(name)
    names = {r["alert"] for r in rules}
    assert names - fire == set(), "alerts never seen firing"
    assert names - no_fire == set(), "alerts without a no-fire case"
    assert names - resolve == set(), "alerts without a resolve case"
    assert {(r["alert"], r["labels"]["severity"]) for r in rules} - severities == set(), "severity variants never fired"


def test_promtool_test_files_order_every_group():
    """promtool evaluates unlisted groups in no fixed order; alerts must see this step's records."""
    groups = [g["name"] for f in ("recording_rules.yml", "alert_rules.yml") for g in _load(f)["groups"]]
    assert TEST_FILES
    for path in TEST_FILES:
        assert yaml.safe_load(path.read_text())["group_eval_order"] == groups, path.name


# ---------------------------------------------------------------------------- alertmanager

PLACEHOLDER = "http://127.0.0.1:9099/alertmanager"


def test_alertmanager_webhook_placeholder_appears_once_and_reaches_every_receiver():
    text = (ALERTS / "alertmanager.yml").read_text()
    assert text.count(PLACEHOLDER) == 1, "the harness replaces this URL: keep it in one place (the anchor)"
    cfg = yaml.safe_load(text)
    receivers = {r["name"]: r for r in cfg["receivers"]}
    assert set(receivers) == {"harness", "pager", "chat", "info"}
    for name, r in receivers.items():
        assert [w["url"] for w in r["webhook_configs"]] == [PLACEHOLDER], name
        assert r["webhook_configs"][0]["send_resolved"] is True
    assert cfg["route"]["receiver"] == "harness"
    assert cfg["route"]["group_by"] == ["alertname", "job", "operation"]
    for rule in cfg["inhibit_rules"]:
        assert rule["equal"], rule


@pytest.mark.parametrize("key", ["api_url", "routing_key", "service_key", "auth_password", "smtp_auth_password",
                                 "api_key", "bot_token", "password"])
def test_alertmanager_config_holds_no_inline_secret(key):
    for line in (ALERTS / "alertmanager.yml").read_text().splitlines():
        code = line.split("#", 1)[0] if not line.lstrip().startswith("#") else line.lstrip("# ")
        assert not re.match(rf"\s*-?\s*{key}\s*:", code), f"inline secret field {key!r}: use {key}_file"
