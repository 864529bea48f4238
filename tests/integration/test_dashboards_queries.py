"""Every dashboard query, run on a real Prometheus that scraped a real harness run.

One harness run on the in-process workloads (local Prometheus + Alertmanager with the
repo's rules, an injected error rate so errors, fallbacks, faults and alerts have data).
Near its end, every panel query, variable query and Prometheus annotation query of the
latency-budget and load-run dashboards is sent to that Prometheus with the variables
substituted (each variable resolved from its own query, as Grafana would) and must return
at least one finite sample. The queries on the HTTP service's own series (``needs`` ==
``http`` in ``dashboards/definitions.py``) get the same check in a second run against the
real HTTP service, scraped beside the harness. The scaling dashboard needs a cluster
(kube-state-metrics, cAdvisor): its queries, and every other query too, go through
``promtool check rules`` so they are at least valid PromQL.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
import yaml

from harness.observe import dashboards as hd
from harness.observe.stack import PrometheusClient
from tests.support.ci import require_binary

pytestmark = pytest.mark.binaries

RUN_S = 20
QUERY_AT_S = 14  # elapsed seconds at which the queries first run (the stack stops with the run)
RATE_INTERVAL = "5s"  # Grafana: max($__interval + scrape interval, 4 x scrape interval); scrape = 1 s here
RANGE = "15s"

DASHBOARDS = {d["uid"]: d for d in hd.load_dashboards()}
DEFS = hd.load_definitions()


def _panels(dash: Dict[str, Any]):
    for p in dash["panels"]:
        yield p
        yield from p.get("panels", [])


def _substitute(expr: str, values: Dict[str, str]) -> str:
    expr = expr.replace("$__rate_interval", RATE_INTERVAL).replace("$__range", RANGE).replace("$__interval", "1s")
    for name, value in sorted(values.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace("${" + name + "}", value).replace("$" + name, value)
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


_LABEL_VALUES = re.compile(r"^label_values\((?:(.*),\s*)?(\w+)\)$")


def _variable_values(client: Any, dash: Dict[str, Any]) -> Tuple[Dict[str, str], List[str]]:
    """Resolve each query variable the way Grafana does; All becomes its allValue."""
    values: Dict[str, str] = {}
    problems = []
    for v in dash["templating"]["list"]:
        if v["type"] != "query":
            continue
        m = _LABEL_VALUES.match(v["query"])
        assert m, f"{dash['uid']}: variable {v['name']}: expected label_values(...), got {v['query']}"
        metric, label = _substitute(m.group(1) or "up", values), m.group(2)
        found = sorted({s["metric"].get(label) for s in client.query(f"group by ({label}) ({metric})")} - {None})
        if not found:
            problems.append(f"{dash['uid']}: variable {v['name']} ({v['query']}): no values")
            values[v["name"]] = "no-value"
        elif v.get("includeAll"):
            values[v["name"]] = v.get("allValue", ".*")
        else:
            values[v["name"]] = found[0]
    return values, problems


def _has_data(result: List[Dict[str, Any]]) -> bool:
    for series in result:
        samples = series.get("values") or ([series["value"]] if "value" in series else [])
        if any(math.isfinite(float(v)) for _t, v in samples):
            return True
    return False


def _local_queries() -> List[Tuple[str, str, Dict[str, Any]]]:
    """(dashboard uid, where, target) for every query a local harness run must feed."""
    out = []
    for uid, dash in DASHBOARDS.items():
        needs = DEFS.needs(uid)
        if len(needs) == sum(len(p.get("targets", [])) for p in _panels(dash)):
            continue  # a cluster-only dashboard (scaling): its annotations filter on cluster labels too
        for p in _panels(dash):
            for t in p.get("targets", []):
                if (p["id"], t["refId"]) not in needs:
                    out.append((uid, f"{p['title']}/{t['refId']}", t))
        for a in dash["annotations"]["list"]:
            if "expr" in a:
                out.append((uid, f"annotation {a['name']}", {"expr": a["expr"], "range": True}))
    return out


def test_documented_exceptions_are_only_cluster_and_http_queries() -> None:
    for uid in DASHBOARDS:
        assert set(DEFS.needs(uid).values()) <= {"cluster", "http"}
    scaling = DASHBOARDS["lbh-scaling"]
    n_targets = sum(len(p.get("targets", [])) for p in _panels(scaling))
    assert len(DEFS.needs("lbh-scaling")) == n_targets  # the whole scaling dashboard is cluster-only
    for (panel_id, ref), scope in DEFS.needs("lbh-load-run").items():
        [panel] = [p for p in _panels(DASHBOARDS["lbh-load-run"]) if p["id"] == panel_id]
        [target] = [t for t in panel["targets"] if t["refId"] == ref]
        assert scope == "http" and "lbh_http_" in target["expr"]
    # everything the budget dashboard shows comes from the instrumentation: no exceptions
    assert DEFS.needs("lbh-latency-budget") == {}


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    promtool = require_binary("promtool", "prometheus")
    rules = []
    for uid, dash in DASHBOARDS.items():
        values = {v["name"]: ("x" if v["type"] == "query" else "prometheus") for v in dash["templating"]["list"]}
        exprs = [t["expr"] for p in _panels(dash) for t in p.get("targets", [])]
        exprs += [a["expr"] for a in dash["annotations"]["list"] if "expr" in a]
        for i, expr in enumerate(exprs):
            rules.append({"record": f"lbh_dashboard_check:{uid.replace('-', '_')}_{i}",
                          "expr": _substitute(expr, values)})
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}, sort_keys=False))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(rules)} rules found" in proc.stdout


def test_broken_promql_is_caught_by_the_check(tmp_path: Path) -> None:
    promtool = require_binary("promtool", "prometheus")
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [
        {"record": "x:y", "expr": "sum by (pod) (rate(foo[5s])"}]}]}))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0


def _checker(queries: List[Tuple[str, str, Dict[str, Any]]], prometheus_url: Any, report: Dict[str, Any],
             threads: List[threading.Thread]) -> Any:
    """A ``started`` event listener: from QUERY_AT_S on, run every query until each has data
    (or the run is about to end); the findings land in ``report``."""

    def query_all(run: Any) -> None:
        try:
            while run.elapsed_s() < QUERY_AT_S and not run.finished:
                time.sleep(0.2)
            client = PrometheusClient(prometheus_url(run))
            problems: List[str] = []
            values: Dict[str, Dict[str, str]] = {}
            for uid in {q[0] for q in queries}:
                values[uid], var_problems = _variable_values(client, DASHBOARDS[uid])
                problems += var_problems
            pending = list(queries)
            while True:  # a query without data yet is asked again until the run ends (slow CI machines)
                end = time.time()
                missing = []
                for uid, where, target in pending:
                    expr = _substitute(target["expr"], values[uid])
                    try:
                        if target.get("instant"):
                            result = client.query(expr, at=end)
                        else:
                            result = client.query_range(expr, end - 6, end, step=1.0)
                    except Exception as exc:
                        problems.append(f"{uid} {where}: {exc}: {expr}")
                        continue
                    if not _has_data(result):
                        missing.append((uid, where, target))
                pending = missing
                if not pending or run.finished or run.elapsed_s() > RUN_S - 0.5:
                    break
                time.sleep(0.5)
            problems += [f"{uid} {where}: no data: {_substitute(t['expr'], values[uid])}" for uid, where, t in pending]
            report["problems"] = problems
            report["checked"] = len(queries)
        except BaseException as exc:  # surfaced by the caller's assertion
            report["error"] = repr(exc)

    def on_started(event: Any) -> None:
        threads.append(threading.Thread(target=query_all, args=(event.run,), name="dashboard-queries", daemon=True))
        threads[0].start()
    return on_started


def _assert_report(report: Dict[str, Any], threads: List[threading.Thread], at_least: int) -> None:
    assert threads, "the run never started"
    threads[0].join(timeout=30)
    assert "error" not in report, report["error"]
    assert report.get("checked", 0) >= at_least, report
    assert report["problems"] == [], json.dumps(report["problems"], indent=1)


def test_every_panel_query_returns_data_after_a_harness_run() -> None:
    """In-process workloads: everything but the cluster and HTTP-service queries."""
    require_binary("prometheus", "prometheus")
    require_binary("prometheus-alertmanager", "prometheus-alertmanager")
    from harness.run.runner import Run, RunOptions
    from harness.config.scenario import load_scenario

    report: Dict[str, Any] = {}
    threads: List[threading.Thread] = []
    on_started = _checker(_local_queries(), lambda run: run.stack_urls["prometheus"], report, threads)
    sc = load_scenario(None, {"duration": f"{RUN_S}s", "profile.rate": 20, "faults": {"error_rate": 0.1}}, env={})
    opts = RunOptions(stack="local", progress="off", install_signal_handlers=False, settle_s=2.0)
    opts.events.started.add_listener(on_started)
    Run(sc, opts).execute()
    _assert_report(report, threads, 40)


def test_http_service_queries_return_data_against_the_service() -> None:
    """The HTTP service (as docker-compose runs it), scraped beside the harness: the
    ``http`` queries, and every other non-cluster query too, return data."""
    require_binary("prometheus", "prometheus")
    require_binary("prometheus-alertmanager", "prometheus-alertmanager")
    import socket

    from prometheus_client import CollectorRegistry

    from harness.run.runner import Run, RunOptions
    from harness.config.scenario import load_scenario
    from harness.observe.stack import LocalStack
    from workloads.service import ServiceConfig, ServiceThread

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        harness_port = sock.getsockname()[1]
    config = ServiceConfig.from_env({"LBH_SERVICE_WARMUP_INFERENCES": "1", "LBH_FAULT_ERROR_RATE": "0.1"})
    queries = _local_queries_all()
    report: Dict[str, Any] = {}
    threads: List[threading.Thread] = []
    with ServiceThread(config, registry=CollectorRegistry()) as svc, \
            LocalStack({"harness": [f"127.0.0.1:{harness_port}"], "service": [f"127.0.0.1:{svc.port}"]},
                       scrape_interval_s=1.0) as stack:
        on_started = _checker(queries, lambda run: stack.prometheus_url, report, threads)
        sc = load_scenario(None, {"target": f"{svc.url}/v1/features", "payload": "feature_window_hot",
                                  "duration": f"{RUN_S}s", "profile.rate": 15}, env={})
        opts = RunOptions(metrics_port=harness_port, progress="off", install_signal_handlers=False)
        opts.events.started.add_listener(on_started)
        Run(sc, opts).execute()
        _assert_report(report, threads, 45)


def _local_queries_all() -> List[Tuple[str, str, Dict[str, Any]]]:
    """Like :func:`_local_queries`, with the ``http`` queries included (not the cluster ones)."""
    out = []
    for uid, dash in DASHBOARDS.items():
        needs = DEFS.needs(uid)
        if "cluster" in needs.values():
            continue
        for p in _panels(dash):
            for t in p.get("targets", []):
                out.append((uid, f"{p['title']}/{t['refId']}", t))
        for a in dash["annotations"]["list"]:
            if "expr" in a:
                out.append((uid, f"annotation {a['name']}", {"expr": a["expr"], "range": True}))
    return out


def test_no_data_means_no_finite_sample() -> None:
    assert not _has_data([])
    assert not _has_data([{"metric": {}, "values": [[1.0, "NaN"], [2.0, "+Inf"]]}])
    assert _has_data([{"metric": {}, "value": [1.0, "0"]}])
    assert _substitute('rate(x{job=~"$job"}[$__rate_interval])', {"job": ".*"}) == 'rate(x{job=~".*"}[5s])'
