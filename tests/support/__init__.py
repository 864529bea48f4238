"""Helpers the tests share (not tests): import them as ``tests.support.<module>``.

- ``ci``: ``IN_CI``, ``require_binary``, ``require_module`` (under CI=true a missing binary
  or package fails the test, never skips it);
- ``clock``: ``FakeClock`` (also the ``fake_clock`` fixture of tests/conftest.py);
- ``targets_for_tests``, ``targets_capacity``: targets the harness drives, named in
  scenarios as ``tests.support.targets_for_tests:noop`` and the like;
- ``fake_kube_api``: a fake Kubernetes API server on loopback;
- ``recorders``: ``ListRecorder``, every record kept;
- ``k8s``: ``deploy/k8s`` rendered with kustomize, and lookups in the objects.
"""

from __future__ import annotations

from pathlib import Path

#: The repository's root (the folder holding harness/, workloads/, tests/).
REPO_ROOT = Path(__file__).resolve().parents[2]
