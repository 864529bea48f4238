"""deploy/k8s as kustomize renders it, and lookups in the rendered objects (shared by the
manifest tests and the tests that run the manifests' service and jobs)."""

from __future__ import annotations

import shutil
import subprocess
from functools import lru_cache
from typing import Any, Dict, List

import pytest
import yaml

from tests.support import REPO_ROOT
from tests.support.ci import IN_CI

K8S = REPO_ROOT / "deploy" / "k8s"

KUSTOMIZE_INSTALL = (
    "install kubectl >= 1.27 (embeds kustomize v5): apt-get install -y --no-install-recommends kubectl "
    "from the Kubernetes apt repository (pkgs.k8s.io) or the Google Cloud SDK repository; Debian's own "
    "kubernetes-client 1.20 is too old (no kustomize components). A standalone `kustomize` v5 works too."
)


def missing(msg: str) -> None:
    """A failure under CI=true, a skip elsewhere."""
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg)


@lru_cache(maxsize=None)
def _kustomize_cmd() -> tuple:
    kubectl = shutil.which("kubectl")
    if kubectl:
        return (kubectl, "kustomize")
    kustomize = shutil.which("kustomize")
    if kustomize:
        return (kustomize, "build")
    return ()


@lru_cache(maxsize=None)
def build_text(entry: str) -> str:
    cmd = _kustomize_cmd()
    proc = subprocess.run([*cmd, str(K8S / entry)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"kustomize failed for deploy/k8s/{entry}:\n{proc.stderr}"
    return proc.stdout


def build(entry: str) -> List[Dict[str, Any]]:
    """The objects `kubectl kustomize deploy/k8s/<entry>` renders (a fresh copy)."""
    if not _kustomize_cmd():
        missing("neither kubectl nor kustomize is on PATH; " + KUSTOMIZE_INSTALL)
    return [d for d in yaml.safe_load_all(build_text(entry)) if d]


def find(objs: List[Dict[str, Any]], kind: str, name: str | None = None) -> Dict[str, Any]:
    hits = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(hits) == 1, f"expected one {kind} {name or ''}, found {len(hits)}"
    return hits[0]


def pod_spec(obj: Dict[str, Any]) -> Dict[str, Any]:
    return obj["spec"]["template"]["spec"]


def adapter_rules() -> List[Dict[str, Any]]:
    values = yaml.safe_load((K8S / "overlays" / "prometheus-adapter" / "adapter-values.yaml").read_text())
    return values["rules"]["custom"]
