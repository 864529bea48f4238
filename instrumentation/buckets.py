"""Histogram bucket layouts that sit on the latency budget's edges.

A p95 computed by ``histogram_quantile`` is only as good as the buckets around it, so the
defaults are dense between 50 ms and 300 ms (the 100 ms / 200 ms budget lives there) and
keep finite buckets well above it so a breach is measured, not lumped into ``+Inf``.
"""

from __future__ import annotations

import math
from typing import Iterable, Tuple

__all__ = ["DEFAULT_BUCKETS", "BUDGET_EDGES", "validate_buckets"]

#: Edges every layout must contain exactly: the p95 and p99 budgets (seconds).
BUDGET_EDGES: Tuple[float, ...] = (0.1, 0.2)

DEFAULT_BUCKETS: Tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)


def validate_buckets(buckets: Iterable[float]) -> Tuple[float, ...]:
    """Return the finite, sorted bucket bounds or raise ``ValueError`` saying why.

    Rejects layouts that would make the budget alerts lie: missing 0.1 / 0.2 edges,
    or nothing finite above 0.2 s (a slow call would only show as ``+Inf``).
    """
    bounds = [float(b) for b in buckets]
    finite = [b for b in bounds if not math.isinf(b)]
    if not finite:
        raise ValueError("buckets: need at least one finite bound")
    if finite != sorted(finite) or len(set(finite)) != len(finite):
        raise ValueError(f"buckets: must be strictly increasing, got {finite}")
    if finite[0] <= 0:
        raise ValueError(f"buckets: bounds must be > 0, got {finite[0]}")
    missing = [e for e in BUDGET_EDGES if e not in finite]
    if missing:
        raise ValueError(f"buckets: must contain the budget edges {list(BUDGET_EDGES)} exactly; missing {missing}")
    if finite[-1] <= max(BUDGET_EDGES):
        raise ValueError(f"buckets: need a finite bound above {max(BUDGET_EDGES)} s so breaches are measured")
    return tuple(finite)
