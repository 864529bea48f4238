"""Integration tests: real servers and processes on loopback, real models under load,
promtool/amtool/kubectl/chromium, fake Kubernetes and Grafana APIs. All of them are
``slow`` (outside the fast loop ``pytest -m "not slow and not e2e"``)."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before -m selects on the markers
def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.slow)
