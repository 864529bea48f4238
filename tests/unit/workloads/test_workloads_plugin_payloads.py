"""Payload generators for the reference service: encoded once, valid for the service."""

from __future__ import annotations

import json

import pytest

from harness.targets import JsonBody
from workloads.plugin import payloads


def test_feature_windows_are_encoded_json_the_service_accepts():
    from workloads.service.config import ServiceConfig
    from workloads.service.schemas import build_request_models

    body = payloads.feature_window(5)
    assert isinstance(body, JsonBody)
    window = json.loads(body)["window"]
    assert len(window) == 60 and {len(row) for row in window} == {15}
    build_request_models(ServiceConfig()).Features.model_validate_json(body)
    assert payloads.feature_window(5) is body  # encoded once, not per request


def test_the_cold_walk_and_the_hot_cycle():
    cold = {payloads.feature_window(k) for k in range(payloads.POOL_SIZE)}
    assert len(cold) == payloads.POOL_SIZE
    hot = [payloads.feature_window_hot(k) for k in range(3 * payloads.HOT_WINDOWS)]
    assert len(set(hot)) == payloads.HOT_WINDOWS and hot[0] is hot[payloads.HOT_WINDOWS]
    with pytest.raises(ValueError, match="windows"):
        payloads.feature_window_cycle(0)
