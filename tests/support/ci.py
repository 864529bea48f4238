"""Prerequisites of a test: under CI=true a missing binary or package fails, never skips."""

from __future__ import annotations

import importlib
import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_binary(name: str, package: str) -> str:
    """Path of ``name``; a failure under CI, a skip (with the install line) elsewhere."""
    path = shutil.which(name)
    if path:
        return path
    msg = f"{name} not found on PATH; install it: apt-get install -y --no-install-recommends {package}"
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg)


def require_module(module: str):
    """Import ``module``; a missing package fails under CI, skips the module elsewhere."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if IN_CI:
            raise
        pytest.skip(f"{module} is not installed ({exc}); pip install -e '.[test]'", allow_module_level=True)
