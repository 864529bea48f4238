"""Shared fixtures. Under CI=true a missing binary or package fails the run, never skips.

The helpers live in ``tests/support/`` (import them from there, never from this file):
``tests.support.ci`` (``IN_CI``, ``require_binary``, ``require_module``) and
``tests.support.clock`` (``FakeClock``). They are re-exported here for the record.

Layout: ``tests/unit/<package>/`` fast tests of one package, ``tests/integration/`` real
servers, processes and binaries (marked ``slow`` by their conftest), ``tests/e2e/`` the
product as users get it (marked ``e2e`` and ``slow``). The fast loop:
``pytest -m "not slow and not e2e"``.
"""

from __future__ import annotations

import pytest

from tests.support.ci import IN_CI, require_binary, require_module  # noqa: F401
from tests.support.clock import FakeClock


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()
