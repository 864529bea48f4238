"""Schemathesis against the served OpenAPI document: generated valid and invalid requests
to every operation of a real server never get a 5xx, and the answers match the schema.

Bounded: a small configuration (windows of 10..16 rows, at most 4 assets, episodes of at
most 5 steps) keeps generated bodies small, and each operation gets ``MAX_EXAMPLES``
examples, so the whole run takes seconds.
"""

from __future__ import annotations


import pytest


from tests.support.ci import require_module as _require  # noqa: E402
from tests.support.service import require_service  # noqa: E402


schemathesis = _require("schemathesis")
httpx = require_service()

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from workloads import ExtractorConfig  # noqa: E402
from workloads.service import ServiceConfig, ServiceThread, create_app  # noqa: E402

MAX_EXAMPLES = 12
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]


CONFIG = ServiceConfig(
    max_assets=4,
    max_batch=3,
    max_episode_steps=5,
    max_sessions=1000,
    mc_scenarios=1000,
    warmup_inferences=1,
    extractor=ExtractorConfig(min_timesteps=10, max_timesteps=16),
)

# Operations from the app's own document (building the app loads no model); negative
# cases only where there is something to get wrong (a body or a path parameter).
_DOC = create_app(CONFIG, registry=CollectorRegistry()).openapi()
OPERATIONS = [(method.upper(), path) for path, item in _DOC["paths"].items() for method in item]
CASES = [
    (method, path, mode)
    for method, path in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE
    or {"requestBody", "parameters"} & set(_DOC["paths"][path][method.lower()])
]


@pytest.fixture(scope="module")
def served():
    with ServiceThread(CONFIG, registry=CollectorRegistry()) as svc:
        yield svc


@pytest.fixture(scope="module")
def http(served):
    with httpx.Client(timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def api_schema(served):
    return schemathesis.openapi.from_url(served.url + "/openapi.json")


def test_every_operation_is_covered():
    assert len(OPERATIONS) >= 11 and ("POST", "/v1/env/{session_id}/step") in OPERATIONS


def generate(api_schema, served, http, method, path, mode, *, validate=True) -> list[tuple[str, str, str, int]]:
    """Send ``MAX_EXAMPLES`` generated requests (derandomized: the same ones every time) to
    the operation; each answer checked against ``CHECKS`` when ``validate``. Returns
    ``(method, path, mode, status)`` of every request sent."""
    operation = api_schema[path][method]
    statuses: list[tuple[str, str, str, int]] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    def run(case):
        kwargs = case.as_transport_kwargs(base_url=served.url)
        response = send(http, kwargs)
        statuses.append((method, path, mode.value, response.status_code))
        if validate:
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)

    run()
    return statuses


@pytest.mark.parametrize("method, path, mode", CASES, ids=[f"{m} {p} {mode.value}" for m, p, mode in CASES])
def test_schemathesis_finds_no_server_error(api_schema, served, http, method, path, mode):
    generate(api_schema, served, http, method, path, mode)


def send(client: "httpx.Client", kwargs: dict) -> "httpx.Response":
    """The request schemathesis serialised (requests-style kwargs), sent with httpx.

    Not ``case.call()``: its requests transport reads urllib3 internals that differ when
    urllib3-future (pulled in by niquests, a grafana-client dependency) shadows urllib3."""
    extra = {}
    if "json" in kwargs:
        extra["json"] = kwargs["json"]
    data = kwargs.get("data")
    if isinstance(data, (bytes, str)):
        extra["content"] = data
    elif data is not None:
        extra["data"] = data
    if kwargs.get("files"):
        extra["files"] = kwargs["files"]
    unknown = set(kwargs) - {"method", "url", "headers", "params", "cookies", "json", "data", "files"}
    assert not unknown, f"unhandled request arguments {unknown}"
    assert not kwargs.get("cookies"), "the API uses no cookies"
    return client.request(kwargs["method"], kwargs["url"], headers=kwargs.get("headers"),
                          params=kwargs.get("params") or None, **extra)


def test_generated_valid_requests_were_answered_200(api_schema, served, http):
    """The positive run really exercised the workloads, not only the validators: the same
    generated valid requests as test_schemathesis_finds_no_server_error's (derandomized),
    sent by this test itself so that it needs no other test to have run before it."""
    ops = [("POST", "/v1/features"), ("POST", "/v1/env/reset"), ("POST", "/v1/risk/var"),
           ("POST", "/v1/risk/limits"), ("GET", "/healthz")]
    statuses = [row for method, path in ops
                for row in generate(api_schema, served, http, method, path, GenerationMode.POSITIVE, validate=False)]
    ok = {(m, p) for m, p, mode, status in statuses if mode == "positive" and status == 200}
    for op in ops:
        assert op in ok, (op, sorted({(m, p, s) for m, p, mode, s in statuses if (m, p) == op}))
