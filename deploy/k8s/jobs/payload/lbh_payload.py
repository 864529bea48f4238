"""Request bodies for POST /v1/features: ``features_body(k)`` is the body of request ``k``.

Each request gets its own market window (seeded by its ordinal, so the N pods never send
the same one and the service's cache does not flatter the result). Set
``LBH_PAYLOAD_WINDOWS=<n>`` to cycle through n windows instead (cache hits).
"""

import os

from workloads import MarketDataGenerator

TIMESTEPS = int(os.environ.get("LBH_PAYLOAD_TIMESTEPS", "60"))
DISTINCT = int(os.environ.get("LBH_PAYLOAD_WINDOWS", "0"))


def features_body(k: int) -> dict:
    seed = k % DISTINCT if DISTINCT > 0 else k
    return {"window": MarketDataGenerator(seed).window(TIMESTEPS).astype(float).tolist()}
