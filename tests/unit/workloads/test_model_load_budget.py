"""The model load budget is one number: the service's constant, its gauge and the alerts'
documented constant agree; the gauges are created once per registry."""

from __future__ import annotations

import importlib.util

from prometheus_client import CollectorRegistry

from tests.support import REPO_ROOT
from workloads.model import MODEL_LOAD_BUDGET_SECONDS, model_load_gauges


def test_budget_is_the_seeds_and_matches_the_alerts_constant():
    spec = importlib.util.spec_from_file_location("alerts_generate_budget", REPO_ROOT / "alerts" / "generate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert MODEL_LOAD_BUDGET_SECONDS == mod.MODEL_LOAD_BUDGET_SECONDS == 5.0


def test_gauges_once_per_registry_with_the_budget_set():
    reg = CollectorRegistry()
    g = model_load_gauges(reg)
    assert model_load_gauges(reg) is g  # a second app on the same registry shares them
    assert reg.get_sample_value("lbh_model_load_budget_seconds") == MODEL_LOAD_BUDGET_SECONDS
    g.load_seconds.set(1.25)
    assert reg.get_sample_value("lbh_model_load_seconds") == 1.25
    assert model_load_gauges(CollectorRegistry()) is not g
