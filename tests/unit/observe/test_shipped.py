"""The rules, Alertmanager config and dashboards ship with the package (one source: the
top-level alerts/ and dashboards/), and a missing rule file is an error naming it, never a
Prometheus started with no rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.observe import shipped
from harness.observe.stack import LocalStack, StackConfigError
from tests.support.ci import require_binary

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())


def test_the_package_reads_the_top_level_sources_byte_for_byte():
    for name, text in shipped.rule_texts().items():
        assert text == (ROOT / "alerts" / name).read_text()
        assert "alert:" in text or "record:" in text
    assert shipped.read_text(shipped.alerts_dir(), shipped.ALERTMANAGER_FILE) == \
        (ROOT / "alerts" / "alertmanager.yml").read_text()
    json_dir = shipped.dashboards_dir() / "json"
    names = sorted(p.name for p in json_dir.iterdir() if p.name.endswith(".json"))
    assert names == sorted(p.name for p in (ROOT / "dashboards" / "json").glob("*.json")) and len(names) == 3


def test_a_missing_rule_file_is_an_error_naming_it(tmp_path):
    (tmp_path / "recording_rules.yml").write_text("groups: []\n")
    with pytest.raises(shipped.AssetError, match=r"alert_rules\.yml: cannot read"):
        shipped.rule_texts(tmp_path)


def test_the_stack_refuses_to_start_without_its_rules(tmp_path):
    require_binary("prometheus", "prometheus")
    require_binary("prometheus-alertmanager", "prometheus-alertmanager")
    (tmp_path / "alertmanager.yml").write_text("route: {receiver: harness}\nreceivers: [{name: harness}]\n")
    stack = LocalStack({}, alerts_dir=tmp_path)
    with pytest.raises(StackConfigError, match=r"recording_rules\.yml: cannot read"):
        stack.start()
    assert stack.dir is None  # its folder is removed, nothing was started
