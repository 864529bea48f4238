"""The Alertmanager webhook: loopback only, and only its per-run secret path is recorded
(a forged "page" from anyone else never reaches a result)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from harness.observe.stack import WEBHOOK_PATH, WebhookReceiver

PAGE = {"receiver": "page", "status": "firing",
        "alerts": [{"labels": {"alertname": "Forged", "severity": "page"}, "status": "firing"}]}


def _post(url: str, body: dict) -> int:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def webhook():
    w = WebhookReceiver()
    yield w
    w.close()


def test_listens_on_loopback_with_a_secret_path(webhook):
    host, _port = webhook._server.server_address
    assert host == "127.0.0.1" and webhook.url.startswith(f"http://127.0.0.1:{webhook.port}{WEBHOOK_PATH}/")
    token = webhook.url.rsplit("/", 1)[1]
    assert len(token) >= 20
    other = WebhookReceiver()
    try:
        assert other.url != webhook.url  # one token per receiver (per run)
    finally:
        other.close()


@pytest.mark.parametrize("path", [WEBHOOK_PATH, WEBHOOK_PATH + "/", WEBHOOK_PATH + "/wrong-token", "/"])
def test_a_post_without_the_token_is_refused_and_not_recorded(webhook, path):
    assert _post(f"http://127.0.0.1:{webhook.port}{path}", PAGE) == 404
    assert webhook.notifications == [] and webhook.summary() == []
    assert webhook.rejected == 1


def test_a_post_with_the_token_is_recorded(webhook):
    assert _post(webhook.url, PAGE) == 200
    (note,) = webhook.summary()
    assert note["alerts"][0]["alertname"] == "Forged"


def test_a_prefix_of_the_token_is_not_enough(webhook):
    assert _post(webhook.url[:-1], PAGE) == 404
    assert _post(webhook.url + "x", PAGE) == 404
    assert webhook.notifications == []
