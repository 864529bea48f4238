"""The Grafana dashboards, offline: Grafana's JSON schemas, ids, datasource uids, drift.

Grafana cannot run here; these checks stand in for "Grafana loads them": the dashboard
schema (and each panel plugin's options schema, and the Prometheus query schema) from
``../shared/schemas/grafana``, unique panel ids, a non-overlapping grid, every datasource
uid provisioned, exemplar links to the trace datasource, and the committed JSON equal to
what ``dashboards/definitions.py`` generates.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest
import yaml

from harness.observe import dashboards as hd
from tests.support import REPO_ROOT
from tests.support.ci import IN_CI

ROOT = REPO_ROOT
SCHEMAS = ROOT.parent / "shared" / "schemas" / "grafana"
PROVISIONING = ROOT / "dashboards" / "provisioning"

jsonschema = pytest.importorskip("jsonschema") if not IN_CI else __import__("jsonschema")


def _schema(name: str, definition: str | None = None) -> Dict[str, Any]:
    path = SCHEMAS / f"{name}.jsonschema.json"
    if not path.exists():
        if IN_CI:
            pytest.fail(f"{path} missing")
        pytest.skip(f"{path} missing")
    s = json.loads(path.read_text())
    if definition:
        s = {"$schema": s["$schema"], "definitions": s["definitions"], "$ref": f"#/definitions/{definition}"}
    return s


def _errors(schema: Dict[str, Any], doc: Any) -> List[str]:
    v = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in v.iter_errors(doc)]


DASHBOARDS = {p.stem: json.loads(p.read_text()) for p in sorted((ROOT / "dashboards" / "json").glob("*.json"))}


def _panels(dash: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
    for p in dash["panels"]:
        yield p
        yield from p.get("panels", [])


def _provisioned() -> Dict[str, Dict[str, Any]]:
    out = {}
    for f in sorted((PROVISIONING / "datasources").glob("*.yml")):
        for ds in yaml.safe_load(f.read_text()).get("datasources", []):
            out[ds["uid"]] = ds
    return out


def test_the_three_dashboards_exist() -> None:
    assert set(DASHBOARDS) == {"latency-budget", "load-run", "scaling"}
    uids = [d["uid"] for d in DASHBOARDS.values()]
    assert len(set(uids)) == len(uids)
    assert all(8 <= len(u) <= 40 for u in uids)


@pytest.mark.parametrize("stem", sorted(DASHBOARDS))
def test_dashboard_validates_against_grafana_schema(stem: str) -> None:
    dash = DASHBOARDS[stem]
    assert _errors(_schema("dashboard"), dash) == []
    plugin = {"timeseries": _schema("timeseries", "Options"), "stat": _schema("stat", "Options")}
    custom = _schema("timeseries", "FieldConfig")
    query = _schema("prometheus")
    problems = []
    for p in _panels(dash):
        if p["type"] == "row":
            continue
        assert p["type"] in plugin, f"{stem}: panel type {p['type']} has no schema here"
        problems += [f"{p['title']}: options {e}" for e in _errors(plugin[p["type"]], p["options"])]
        if p["type"] == "timeseries":
            problems += [f"{p['title']}: custom {e}" for e in _errors(custom, p["fieldConfig"]["defaults"]["custom"])]
        assert p["targets"], f"{stem}/{p['title']}: no query"
        for t in p["targets"]:
            problems += [f"{p['title']}/{t['refId']}: {e}" for e in _errors(query, t)]
    assert problems == []


def test_the_schema_check_is_not_vacuous() -> None:
    """A typo'd key is caught at every level we validate."""
    dash = json.loads(json.dumps(DASHBOARDS["latency-budget"]))
    dash["panelz"] = []
    assert _errors(_schema("dashboard"), dash)
    panel = next(p for p in dash["panels"] if p["type"] == "timeseries")
    assert _errors(_schema("timeseries", "Options"), {**panel["options"], "legnd": {}})
    assert _errors(_schema("prometheus"), {**panel["targets"][0], "exprr": "up"})


@pytest.mark.parametrize("stem", sorted(DASHBOARDS))
def test_panel_ids_unique_and_grid_does_not_overlap(stem: str) -> None:
    panels = list(_panels(DASHBOARDS[stem]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {stem}"
    cells: Dict[Tuple[int, int], int] = {}
    for p in panels:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, f"{p['title']} leaves the 24-column grid"
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p.get('title')} overlaps panel {cells[(x, y)]}"
                cells[(x, y)] = p["id"]


@pytest.mark.parametrize("stem", sorted(DASHBOARDS))
def test_every_datasource_uid_is_provisioned(stem: str) -> None:
    dash = DASHBOARDS[stem]
    provisioned = _provisioned()
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    ds_var = variables["datasource"]
    assert ds_var["type"] == "datasource" and ds_var["query"] == "prometheus"
    assert ds_var["current"]["value"] in provisioned
    assert provisioned[ds_var["current"]["value"]]["type"] == "prometheus"

    def check(ref: Dict[str, Any], where: str) -> None:
        uid = ref["uid"]
        if uid == "-- Grafana --":  # Grafana's built-in annotation datasource
            assert ref["type"] == "grafana", where
            return
        m = re.fullmatch(r"\$\{?(\w+)\}?", uid)
        if m:
            var = variables[m.group(1)]
            assert var["type"] == "datasource", where
            uid = var["current"]["value"]
        assert uid in provisioned, f"{where}: datasource uid {uid!r} is not provisioned"
        assert provisioned[uid]["type"] == ref["type"], where

    for p in _panels(dash):
        if "datasource" in p:
            check(p["datasource"], p["title"])
        for t in p.get("targets", []):
            check(t["datasource"], f"{p['title']}/{t['refId']}")
    for v in variables.values():
        if "datasource" in v:
            check(v["datasource"], f"variable {v['name']}")
    for a in dash["annotations"]["list"]:
        check(a["datasource"], f"annotation {a['name']}")


def test_exemplars_link_to_the_provisioned_trace_datasource() -> None:
    provisioned = _provisioned()
    dest = provisioned["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    # instrumentation/metrics.py puts the trace id under this exemplar label
    assert [d["name"] for d in dest] == ["trace_id"]
    assert provisioned[dest[0]["datasourceUid"]]["type"] == "tempo"
    latency_panels = [p for d in DASHBOARDS.values() for p in _panels(d)
                      if p["type"] == "timeseries" and p["fieldConfig"]["defaults"]["unit"] == "s"
                      and any("_seconds_bucket" in t["expr"] and "lag" not in t["expr"] for t in p["targets"])]
    assert len(latency_panels) >= 4
    for p in latency_panels:
        assert all(t.get("exemplar") for t in p["targets"] if "_seconds_bucket" in t["expr"]), p["title"]


def test_queries_use_rate_interval_and_the_variables() -> None:
    window = re.compile(r"\[([^\]\[]+)\]\s*\)")  # a range selector: [..] closing a call
    for stem, dash in DASHBOARDS.items():
        names = {v["name"] for v in dash["templating"]["list"]}
        assert "datasource" in names
        for p in _panels(dash):
            for t in p.get("targets", []):
                for w in window.findall(t["expr"]):
                    assert w in ("$__rate_interval", "$__range"), f"{stem}/{p['title']}: fixed window [{w}]"
                for var in re.findall(r"\$(\w+)", t["expr"]):
                    assert var.startswith("__") or var in names, f"{stem}/{p['title']}: unknown variable ${var}"
    lb = {v["name"] for v in DASHBOARDS["latency-budget"]["templating"]["list"]}
    assert {"datasource", "job", "operation"} <= lb


def test_budget_lines_are_drawn() -> None:
    lat = next(p for p in _panels(DASHBOARDS["latency-budget"]) if p["title"].startswith("Latency p50"))
    steps = [s["value"] for s in lat["fieldConfig"]["defaults"]["thresholds"]["steps"]]
    assert 0.1 in steps and 0.2 in steps
    assert lat["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] != "off"


def test_firing_alerts_are_annotations() -> None:
    for stem in ("latency-budget", "load-run"):
        exprs = [a.get("expr", "") for a in DASHBOARDS[stem]["annotations"]["list"]]
        assert any(e.startswith('ALERTS{alertstate="firing"') for e in exprs), stem
        tags = [a.get("target", {}).get("tags") for a in DASHBOARDS[stem]["annotations"]["list"]]
        assert ["lbh-run"] in tags, f"{stem}: no annotation query for the harness's run annotations"


def test_committed_json_matches_the_definition() -> None:
    assert hd.stale(ROOT / "dashboards" / "json") == [], "run `python -m harness.observe.dashboards generate` and commit dashboards/json"


def test_drift_check_notices_a_hand_edit(tmp_path: Path) -> None:
    hd.generate(tmp_path)
    assert hd.stale(tmp_path) == []
    f = tmp_path / "load-run.json"
    f.write_text(f.read_text().replace('"Load run"', '"Load run (edited)"', 1))
    (tmp_path / "extra.json").write_text("{}")
    assert sorted(hd.stale(tmp_path)) == ["extra.json (not in the definition)", "load-run.json (differs)"]


def test_dashboard_provider_points_where_compose_mounts_the_json() -> None:
    prov = yaml.safe_load((PROVISIONING / "dashboards" / "dashboards.yml").read_text())
    [provider] = prov["providers"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = dict(reversed(v.split(":")[:2]) for v in compose["services"]["grafana"]["volumes"] if v.startswith("./"))
    assert mounts[provider["options"]["path"]] == "./dashboards/json"
    assert mounts["/etc/grafana/provisioning/datasources"] == "./dashboards/provisioning/datasources"
