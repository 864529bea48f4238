"""Request bodies for POST /v1/features: ``features_body(k)`` is the body of request ``k``.

This file is a ConfigMap mounted on PYTHONPATH: edit it to send other bodies without
rebuilding the image. By default it uses the harness's own generator, a walk through
2,048 seeded market windows (more than the service's cache holds, so the cache does not
flatter the result; the N pods' segments take different requests of the same walk). Set
``LBH_PAYLOAD_WINDOWS=<n>`` to cycle n windows instead (cache hits).
"""

import os

from workloads.plugin.payloads import feature_window, feature_window_cycle

DISTINCT = int(os.environ.get("LBH_PAYLOAD_WINDOWS", "0"))

_body = feature_window_cycle(DISTINCT) if DISTINCT > 0 else feature_window


def features_body(k: int) -> bytes:
    """The body of request ``k`` (JSON, encoded once per window; the harness sends it as is)."""
    return _body(k)
